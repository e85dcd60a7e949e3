"""``python -m mvlib <command>``: the same functions the notebooks call, from a terminal.

User mistakes (bad variant, missing file, no data) end in one ``error: ...`` line and exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import keras
import numpy as np

USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, KeyError, ImportError)


def cmd_summary(args) -> None:
    from mvlib.model import VARIANTS, create_mobilevit, parameter_counts

    print(f"MobileViT variants at {args.image_size}x{args.image_size}, {args.num_classes} classes")
    print(f"{'variant':<10}{'params':>12}{'trainable':>12}")
    for variant in args.variants or list(VARIANTS):
        model = create_mobilevit(variant, args.num_classes, args.image_size)
        total, trainable = parameter_counts(model)
        print(f"{variant:<10}{total:>12,}{trainable:>12,}")
        if args.verbose:
            model.summary(line_length=110)


def _load_data(args, settings: dict | None = None, **kwargs):
    """The data the command asks for; for a trained run (its ``settings``), split with the run's own seed, so
    that its validation photos are the ones it never trained on."""
    from mvlib.data import load_flowers

    if settings is not None:
        kwargs["seed"] = settings.get("seed", 42)
    data = load_flowers(args.source, args.data_dir, image_size=args.image_size, limit=args.limit, **kwargs)
    print(data.describe(), flush=True)
    return data


def _evaluate_and_save(model, data, out_dir: Path) -> None:
    from mvlib.training.evaluate import evaluate_model
    from mvlib.analysis.figures import plot_confusion_matrix

    evaluation = evaluate_model(model, data.val, data.class_names)
    print(evaluation.report())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "evaluation.json").write_text(json.dumps(evaluation.to_dict(), indent=1))
    plot_confusion_matrix(evaluation).savefig(out_dir / "confusion_matrix.png", dpi=120)
    print(f"wrote {out_dir / 'evaluation.json'} and {out_dir / 'confusion_matrix.png'}")


def cmd_train(args) -> None:
    from mvlib.training.recipes import get_recipe
    from mvlib.training.run import train

    recipe = get_recipe(args.recipe, epochs=args.epochs, batch_size=args.batch_size)
    data = _load_data(args, batch_size=recipe.batch_size, seed=args.seed)
    run_dir = Path(args.run_dir or f"runs/{args.variant}-{recipe.name}")
    result = train(args.variant, data, run_dir, recipe, seed=args.seed, steps_per_epoch=args.steps_per_epoch,
                   initial_weights=args.initial_weights, commit_every=args.commit_every)
    print(result.summary())
    if result.epochs < recipe.epochs:  # stopped by a signal; `train` has said where and how to go on
        raise SystemExit(1)
    if not args.no_evaluate:
        # The weights that `evaluate`, `export` and `publish` use by default: the last epoch's.
        from mvlib.training.pretrained import load_trained

        print("evaluating the last epoch's weights")
        _evaluate_and_save(load_trained(run_dir)[0], data, run_dir)


def cmd_evaluate(args) -> None:
    from mvlib.training.pretrained import load_trained

    model, settings = load_trained(args.run_dir, args.weights, args.image_size)
    args.image_size = settings["image_size"]
    data = _load_data(args, settings, augment=False)
    print(f"evaluating at {args.image_size}x{args.image_size}")
    if data.class_names != settings["class_names"]:
        raise ValueError(f"the data's classes {data.class_names} differ from the run's {settings['class_names']}")
    _evaluate_and_save(model, data, Path(args.out or args.run_dir))


def cmd_predict(args) -> None:
    from mvlib.data.images import preprocess_images, read_image
    from mvlib.training.pretrained import load_trained

    model, settings = load_trained(args.run_dir, args.weights, args.image_size)
    names = settings["class_names"]
    for path in args.images:
        image = preprocess_images([read_image(path)], settings["image_size"])
        probs = keras.ops.convert_to_numpy(model(image, training=False))[0]
        top = np.argsort(-probs)[: args.top_k]
        print(f"{path}: " + ", ".join(f"{names[i]} {probs[i]:.1%}" for i in top))


def cmd_export(args) -> None:
    from mvlib.litert.export import KINDS, export_all
    from mvlib.training.pretrained import load_trained

    model, settings = load_trained(args.run_dir, args.weights, args.image_size)
    args.image_size = settings["image_size"]
    # Calibrate on training images (evaluation preprocessing), check on validation images. The splits are
    # stored class by class, so take a class-balanced slice (`limit` picks the classes in turn), not the
    # first N photos, which would all be daisies.
    if args.check_images is not None:
        args.limit = args.limit or max(args.calibration_images, args.check_images)
    data = _load_data(args, settings, augment=False)
    out = Path(args.out or Path("artifacts") / Path(args.run_dir).name)
    kinds = args.kinds or KINDS
    # --min-agreement overrides the gate of the quantized kinds (float32 keeps its max |diff| check).
    limits = {} if args.min_agreement is None else {k: {"min_agreement": args.min_agreement} for k in kinds if k != "float32"}
    results = export_all(model, out, kinds, stem=settings["variant"],
                         representative_images=data.balanced_images("train", args.calibration_images),
                         check_images=data.val_images if args.check_images is None else data.balanced_images("val", args.check_images),
                         limits=limits)
    for kind, result in results.items():
        print(f"{kind:>8}: {result.path} {result.size_bytes / 1e6:.2f} MB  {result.parity.summary()}")


def cmd_measure(args) -> None:
    """One table for every export in --exports, beside the keras-io model's dynamic-range export."""
    from mvlib.litert.measure import BASELINE_FILE, format_markdown, measure_with_baseline
    from mvlib.model import create_mobilevit
    from mvlib.training.pretrained import load_trained

    model, settings = load_trained(args.run_dir, args.weights, args.image_size)
    args.image_size = settings["image_size"]
    data = _load_data(args, settings, augment=False)
    exports = Path(args.exports or Path("artifacts") / Path(args.run_dir).name)
    files = sorted(p for p in exports.glob("*.tflite") if p.name != BASELINE_FILE)
    if not files:
        raise FileNotFoundError(f"no .tflite files in {exports}; run `python -m mvlib export` first")
    # The baseline: the keras-io model, trained if a keras-io run exists, exported the example's way (dynamic range).
    baseline_run = Path(args.baseline_run)
    if (baseline_run / "state.json").exists():
        baseline, _ = load_trained(baseline_run)
        label, trained = "keras-io (trained)", True
    else:
        baseline = create_mobilevit("keras-io", len(data.class_names), settings["image_size"])
        label, trained = "keras-io (untrained: latency and size only)", False
    out = Path(args.out or exports / "measurements")
    rows = measure_with_baseline(files, model, baseline, data=data.val, baseline_label=label, baseline_trained=trained, runs=args.runs,
                                 check_images=data.balanced_images("val", 32), output=out, settings={"command": " ".join(sys.argv)})
    print(format_markdown(rows))
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")


def cmd_publish(args) -> None:
    from mvlib.training.pretrained import publish_run
    from mvlib.training.run import RunFolder

    state = RunFolder(args.run_dir).load_state()
    data = None
    if state and args.image_size and args.image_size != state["settings"]["image_size"]:
        data = _load_data(args, state["settings"], augment=False)  # to measure the accuracy at the size the weights ship for
    folder = publish_run(args.run_dir, args.name, args.weights, command=args.command, image_size=args.image_size, data=data)
    print(f"published {args.run_dir} to {folder}")


def cmd_run(args) -> None:
    """The README's main job, made the way the shipped weights were: train (resuming) at --image-size, then
    evaluate and export at --serve-size, with the `evaluate` and `export` commands' own defaults."""
    cmd_summary(argparse.Namespace(variants=None, verbose=False, num_classes=5, image_size=args.serve_size))
    cmd_train(argparse.Namespace(**{**vars(args), "no_evaluate": True}))
    data = ["--source", args.source, *(["--data-dir", args.data_dir] if args.data_dir else []),
            *(["--limit", str(args.limit)] if args.limit else [])]
    run_dir = args.run_dir or f"runs/{args.variant}-{args.recipe}"
    for command in ("evaluate", "export"):
        step = build_parser().parse_args([command, "--run-dir", run_dir, "--image-size", str(args.serve_size), *data])
        step.func(step)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def _default_run() -> str:
    """The local run when there is one, else the trained weights shipped with the package."""
    return "runs/xxs-improved" if Path("runs/xxs-improved/state.json").exists() else "pretrained"


RUN_HELP = "a run folder, or 'pretrained' for the shipped xxs weights (default: runs/xxs-improved if it exists)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mvlib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def model_args(p):
        p.add_argument("--image-size", type=int, default=256)
        p.add_argument("--num-classes", type=int, default=5)

    p = sub.add_parser("summary", help="build every variant and print its parameter counts")
    p.add_argument("variants", nargs="*", help="default: all")
    p.add_argument("-v", "--verbose", action="store_true", help="also print each Keras summary")
    model_args(p)
    p.set_defaults(func=cmd_summary)

    def data_args(p):
        p.add_argument("--source", default="auto", choices=["auto", "tfds", "folder", "synthetic"])
        p.add_argument("--data-dir", help="a flower_photos/<class>/*.jpg folder (or set MVLIB_DATA_DIR)")
        p.add_argument("--limit", type=int, help="at most this many images per split (quick runs)")

    def trained_args(p):  # which trained model: a run folder (or the shipped weights), which epoch, what input size
        p.add_argument("--run-dir", default=_default_run(), help=RUN_HELP)
        p.add_argument("--weights", help="'best' (the best validation epoch, an optimistic pick) or a weights file; default: the last epoch's")
        p.add_argument("--image-size", type=int, help="input size to build the model at (default: the run's)")

    def train_args(p):
        p.add_argument("--variant", default="xxs", help="keras-io, xxs, xs or s")
        p.add_argument("--recipe", default="improved", help="keras-io, improved, fixres or long (mvlib.training.recipes.RECIPES)")
        p.add_argument("--epochs", type=int, help="default: the recipe's")
        p.add_argument("--batch-size", type=int, help="default: the recipe's (64)")
        p.add_argument("--image-size", type=int, default=256)
        p.add_argument("--steps-per-epoch", type=int, help="default: one pass over the training split")
        p.add_argument("--seed", type=int, default=42)
        p.add_argument("--run-dir", help="default: runs/<variant>-<recipe>; an existing run is resumed")
        p.add_argument("--initial-weights", help="start from a weights file or a run folder's last epoch (any image size): "
                       "the second stage of a two-stage run, e.g. --recipe fixres")
        p.add_argument("--commit-every", type=float, default=30.0, metavar="SECONDS",
                       help="write a checkpoint when an epoch ends this long after the last one, and after the last epoch "
                            "(default 30: every epoch on a CPU, every few on a GPU; 0: every epoch)")
        p.add_argument("--no-evaluate", action="store_true")
        data_args(p)

    p = sub.add_parser("train", help="train a variant (resumes an interrupted run in --run-dir)")
    train_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="accuracy, per-class accuracy and confusion matrix of a trained run")
    trained_args(p)
    p.add_argument("--out", help="output folder (default: the run folder)")
    data_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="top-k classes of image files")
    p.add_argument("images", nargs="+")
    trained_args(p)
    p.add_argument("-k", "--top-k", type=_positive_int, default=3, help="how many classes to print (default 3)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="LiteRT exports (float32, dynamic, float16, int8), each parity-checked")
    trained_args(p)
    p.add_argument("--kinds", nargs="+", choices=["float32", "dynamic", "float16", "int8"])
    p.add_argument("--out", help="default: artifacts/<run folder name>")
    p.add_argument("--calibration-images", type=int, default=300, help="training images for int8 calibration")
    p.add_argument("--check-images", type=int, help="validation images for the parity check (default: all of them)")
    p.add_argument("--min-agreement", type=float,
                   help="top-1 agreement with Keras that the quantized files must reach (default 0.9, int8 0.98; "
                        "0 keeps a file that disagrees more, e.g. to measure it -- NaN and wrong shapes are still refused)")
    data_args(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("measure", help="size / accuracy / agreement / latency table of the exports")
    trained_args(p)
    p.add_argument("--exports", help="folder of .tflite files (default: artifacts/<run folder name>)")
    p.add_argument("--baseline-run", default="runs/keras-io-keras-io", help="a keras-io run folder, if trained")
    p.add_argument("--runs", type=int, default=50, help="timed runs per latency figure (after 10 warm-up runs)")
    p.add_argument("--out", help="table path without suffix (default: <exports>/measurements)")
    data_args(p)
    p.set_defaults(func=cmd_measure)

    p = sub.add_parser("publish", help="copy a run's weights, log and settings into the package (mvlib/pretrained)")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--name", default="xxs-flowers")
    p.add_argument("--weights", help="'best' or a weights file; default: the last epoch's")
    p.add_argument("--image-size", type=int, help="the input size the weights are meant to be used at (default: the training size)")
    p.add_argument("--command", help="the command that trained the run, recorded in run.json")
    data_args(p)
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("run", help="the main job: train (resuming) -> evaluate -> export")
    train_args(p)
    # Training at 160 px takes 80 s per epoch on a 2-core CPU against 186 s at 256, and the weights then score
    # higher at 256 than at 160 (README, Results), so the main job trains small and serves at 256.
    p.set_defaults(image_size=160)
    p.add_argument("--serve-size", type=int, default=256, help="the input size to evaluate and export at")
    p.set_defaults(func=cmd_run)
    return parser


def keep_jax_compilations() -> None:
    """On JAX, keep compiled programs on disk (``$XDG_CACHE_HOME/mvlib/jax``, or ``~/.cache``; the
    ``JAX_COMPILATION_CACHE_DIR`` variable overrides it): a resumed run, or the next one of the same variant,
    batch and image size, reads its compiled steps instead of compiling them again. Compiling was most of
    a first epoch's 82-86 s on the H100 box (the others: ~4 s); on the 2-core CPU the cache cut a tiny
    run's first epoch from 48 to 16 s (what remains is tracing the Python code, which is not cached)."""
    if keras.backend.backend() == "jax" and not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        import jax

        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mvlib" / "jax"
        jax.config.update("jax_compilation_cache_dir", str(cache))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import mvlib  # noqa: F401  (quiet TensorFlow start-up before any command imports keras)

    keep_jax_compilations()

    from mvlib.litert.parity import ExportError

    try:
        args.func(args)
    except (*USER_ERRORS, ExportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
