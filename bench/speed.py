"""Training and inference speed of the MobileViT variants, on any Keras backend, beside timm's PyTorch model.

    python bench/speed.py                                   # keras-io and xxs, batch 64, float32
    python bench/speed.py --variants keras-io xxs xs s --batch-sizes 64 128 256 \
        --precisions float32 mixed_bfloat16 --timm           # the GPU run of issue 15
    KERAS_BACKEND=jax python bench/speed.py ...             # another backend (default: mvlib's choice)

Every configuration (model, precision) runs in its own Python process, so a mixed-precision policy, XLA
caches and memory peaks never leak from one into the next. Within a process each batch size is measured in
turn, the same way for every model:

* **training**: ``model.train_on_batch(x, y)`` on one batch of float32 RGB pixels in [0, 255] with one-hot
  labels, held on the device (as timm's is: no step copies its batch from the host), compiled with the
  keras-io recipe (Adam 2e-3, label smoothing 0.1) for every model. ``train_on_batch`` returns Python
  floats, so each call ends with the step finished on the device.
  ``--warmup`` untimed calls (tracing, compilation), then ``--steps`` timed ones; images/s = batch x steps /
  their total time;
* **inference**: ``model.predict_on_batch(x)`` (output copied to the host), timed the same way;
* **shifted depthwise** (``--shifted-depthwise``): ``xxs`` again, its depthwise convolutions computed as
  sums of shifted copies (``bench/shifted_depthwise.py``: the same weights and outputs; an experiment);
* **timm** (``--timm``, where PyTorch and timm are installed): ``timm.create_model("mobilevit_xxs",
  num_classes=5)``, channels-last, the same batch, resolution, optimizer (Adam 2e-3), loss (label smoothing
  0.1) and step counts, eager; ``mixed_bfloat16`` = ``torch.autocast(dtype=bfloat16)``; timed with
  ``torch.cuda.synchronize()`` on a GPU.

The report (``<out>/speed-<device>-<backend>.md`` and ``.json``) names the device, backend and versions;
measure the models you compare in one run, on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "BENCH_RESULT "  # the child's one JSON line starts with this
VARIANTS = ("keras-io", "xxs", "xs", "s")
SHIFTED = " shifted-dw"  # a model name ending in this: the variant with bench/shifted_depthwise.py's layers
PRECISIONS = ("float32", "mixed_bfloat16")


# --- measuring, in the child process ---------------------------------------------------------------------


def time_calls(fn, warmup: int, steps: int) -> dict:
    """``warmup`` untimed calls of ``fn``, then ``steps`` timed ones -> seconds per call."""
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"step_s": times, "median_step_ms": 1e3 * sorted(times)[len(times) // 2]}


def images_per_s(timing: dict, batch_size: int) -> float:
    return batch_size * len(timing["step_s"]) / sum(timing["step_s"])


def peak_rss_mib() -> float | None:
    """The process's peak resident memory (VmHWM, Linux); None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def synthetic_step(variant: str, precision: str, batch_size: int, image_size: int, shifted_depthwise: bool = False):
    """What the benchmarks time: an mvlib variant compiled with the keras-io recipe under ``precision``, and
    one batch of float32 RGB pixels in [0, 255] with one-hot labels, as tensors on the backend's default
    device -> ``(model, x, y)``. From numpy, every call would first copy the batch to the device (200 MB
    at batch 256: milliseconds of a GPU step), which timm's measurement does not pay."""
    import keras
    import numpy as np

    from mvlib.model import create_mobilevit
    from mvlib.training.recipes import compile_model, get_recipe

    keras.config.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32")
    y = np.eye(5, dtype="float32")[rng.integers(0, 5, batch_size)]
    model = create_mobilevit(variant, 5, image_size)
    if shifted_depthwise:
        from shifted_depthwise import with_shifted_depthwise

        model = with_shifted_depthwise(model)
    compile_model(model, get_recipe("keras-io", batch_size=batch_size), steps_per_epoch=1)
    return model, keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)


def measure_keras(model_name: str, precision: str, batch_size: int, image_size: int, warmup: int, steps: int) -> dict:
    """Training and inference images/s of one mvlib variant (optionally ``SHIFTED``) on the current Keras backend."""
    variant = model_name.removesuffix(SHIFTED)
    model, x, y = synthetic_step(variant, precision, batch_size, image_size, shifted_depthwise=model_name != variant)
    train = time_calls(lambda: model.train_on_batch(x, y), warmup, steps)
    infer = time_calls(lambda: model.predict_on_batch(x), warmup, steps)
    return {"train_images_per_s": images_per_s(train, batch_size), "infer_images_per_s": images_per_s(infer, batch_size),
            "train_median_step_ms": train["median_step_ms"], "infer_median_step_ms": infer["median_step_ms"]}


def measure_torch(make_model, precision: str, batch_size: int, image_size: int, warmup: int, steps: int) -> dict:
    """The same measurement for a PyTorch classifier from ``make_model()`` (timm's mobilevit_xxs in a run)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = make_model().to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    generator = torch.Generator().manual_seed(0)
    x = (torch.rand(batch_size, 3, image_size, image_size, generator=generator) * 255).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 5, (batch_size,), generator=generator).to(device)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "mixed_bfloat16")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def train_step():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_fn(model(x / 255.0), y)
        loss.backward()
        optimizer.step()
        sync()

    def infer_step():
        model.eval()
        with torch.no_grad(), autocast:
            model(x / 255.0).float().cpu()

    train = time_calls(train_step, warmup, steps)
    infer = time_calls(infer_step, warmup, steps)
    return {"train_images_per_s": images_per_s(train, batch_size), "infer_images_per_s": images_per_s(infer, batch_size),
            "train_median_step_ms": train["median_step_ms"], "infer_median_step_ms": infer["median_step_ms"]}


def timm_mobilevit_xxs():
    import timm

    return timm.create_model("mobilevit_xxs", num_classes=5)


def child(request: dict) -> dict:
    """Measure one model at one precision, for every batch size asked for."""
    rows = []
    for batch_size in request["batch_sizes"]:
        kwargs = dict(precision=request["precision"], batch_size=batch_size, image_size=request["image_size"],
                      warmup=request["warmup"], steps=request["steps"])
        try:
            if request["model"] == "timm mobilevit_xxs":
                result = measure_torch(timm_mobilevit_xxs, **kwargs)
            else:
                result = measure_keras(request["model"], **kwargs)
        except Exception as e:  # noqa: BLE001  (out of memory at a big batch: report it, go on)
            result = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
        rows.append({"model": request["model"], "precision": request["precision"], "batch_size": batch_size, **result})
    return {"rows": rows, "peak_rss_mib": peak_rss_mib(), "environment": environment(request["model"])}


def environment(model: str) -> dict:
    """Device, backend and versions of the process that measured ``model``."""
    import numpy as np

    info = {"python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine(),
            "cpu_count": os.cpu_count()}
    if model.startswith("timm"):
        import timm
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        return {**info, "framework": f"PyTorch {torch.__version__}, timm {timm.__version__}", "device": gpu or "CPU"}
    import keras

    from mvlib.device import describe_device

    return {**info, "framework": f"Keras {keras.__version__} on {keras.backend.backend()}", "device": describe_device()}


# --- running and reporting, in the parent process --------------------------------------------------------


def run_child(request: dict, timeout: float) -> dict:
    """Run :func:`child` in a fresh interpreter and return its one JSON line."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(request)], capture_output=True, text=True,
                         timeout=timeout, env=env)
    for line in out.stdout.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
    raise RuntimeError(f"{request['model']} ({request['precision']}) failed, exit code {out.returncode}: " + " | ".join(tail))


def format_markdown(report: dict) -> str:
    """The table of every row, and ratios of ``xxs`` against keras-io and timm at each row's best batch size."""
    lines = [f"# Speed: {report['title']}", "", f"`{report['command']}`", ""]
    for model, env in report["environments"].items():
        lines.append(f"- {model}: {env['framework']}, {env['device']}, Python {env['python']}")
    lines += ["", "| model | precision | batch | training img/s | inference img/s |", "|---|---|---|---|---|"]
    for r in report["rows"]:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['precision']} | {r['batch_size']} | {r['error']} | |")
        else:
            lines.append(f"| {r['model']} | {r['precision']} | {r['batch_size']} | {r['train_images_per_s']:,.1f} | {r['infer_images_per_s']:,.1f} |")
    best = best_rows(report["rows"])
    if "xxs" in best:
        lines += ["", "Best of each model over batch sizes and precisions:", "",
                  "| model | training img/s (batch, precision) | inference img/s | xxs training / this | xxs inference / this |",
                  "|---|---|---|---|---|"]
        for model, (train, infer) in best.items():
            lines.append(f"| {model} | {train['train_images_per_s']:,.1f} ({train['batch_size']}, {train['precision']}) | "
                         f"{infer['infer_images_per_s']:,.1f} | {best['xxs'][0]['train_images_per_s'] / train['train_images_per_s']:.2f}x | "
                         f"{best['xxs'][1]['infer_images_per_s'] / infer['infer_images_per_s']:.2f}x |")
    return "\n".join(lines) + "\n"


def best_rows(rows: list[dict]) -> dict:
    """``{model: (fastest training row, fastest inference row)}`` over batch sizes and precisions."""
    best: dict = {}
    for r in rows:
        if "error" in r:
            continue
        train, infer = best.get(r["model"], (r, r))
        best[r["model"]] = (max(train, r, key=lambda x: x["train_images_per_s"]), max(infer, r, key=lambda x: x["infer_images_per_s"]))
    return best


def run(args) -> dict:
    """Measure every model at every precision, each in its own process; the report is rewritten after each
    one, so a run stopped early (a time limit) still leaves what it measured."""
    # timm's model right after xxs: the comparison that matters most comes first; the shifted-depthwise
    # experiment last (on the H200 a budget that ended while it compiled left no timm or keras-io row).
    timm = ["timm mobilevit_xxs"] * args.timm
    models = [m for v in args.variants for m in ([v, *timm] if v == "xxs" else [v])]
    if "xxs" not in args.variants:
        models += timm
    models += ["xxs" + SHIFTED] * args.shifted_depthwise
    report = {"command": "python bench/speed.py " + " ".join(sys.argv[1:]), "rows": [], "environments": {},
              "settings": {k: getattr(args, k) for k in ("batch_sizes", "precisions", "image_size", "warmup", "steps")}}
    path = None
    for model in models:
        for precision in args.precisions:
            request = {"model": model, "precision": precision, "batch_sizes": args.batch_sizes, "image_size": args.image_size,
                       "warmup": args.warmup, "steps": args.steps}
            print(f"measuring {model}, {precision}, batch sizes {args.batch_sizes} ...", flush=True)
            try:
                result = run_child(request, args.timeout)
            except Exception as e:  # noqa: BLE001  (a crash, a hang or garbled output of one model: report it, go on)
                error = f"{type(e).__name__}: {str(e)[-300:]}"
                result = {"rows": [{"model": model, "precision": precision, "batch_size": b, "error": error}
                                   for b in args.batch_sizes], "environment": None}
            report["rows"] += result["rows"]
            if result["environment"]:
                report["environments"][model] = result["environment"]
            for r in result["rows"]:
                print("   ", {k: (round(v, 1) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
            previous, path = path, write_report(report, Path(args.out))
            if previous and previous != path:  # named after the device once a Keras model has reported it
                for suffix in (".md", ".json"):
                    previous.with_suffix(suffix).unlink(missing_ok=True)
    print(format_markdown(report))
    print(f"wrote {path}.md and .json")
    return report


def write_report(report: dict, out: Path) -> Path:
    """``<out>/speed-<device>-<backend>.md`` and ``.json``; returns the path without its suffix."""
    keras_env = next((e for m, e in report["environments"].items() if not m.startswith("timm")), {})
    report["title"] = f"{keras_env.get('device', 'unknown device')}, {keras_env.get('framework', '')}"
    out.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^a-z0-9]+", "-", f"speed {keras_env.get('device', '')} {keras_env.get('framework', '').split(' on ')[-1]}".lower()).strip("-")
    for suffix, text in ((".json", json.dumps(report, indent=1) + "\n"), (".md", format_markdown(report))):
        (out / f"{stem}{suffix}.tmp").write_text(text)
        os.replace(out / f"{stem}{suffix}.tmp", out / f"{stem}{suffix}")  # never a half-written report
    return out / stem


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=["keras-io", "xxs"], choices=VARIANTS)
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[64])
    p.add_argument("--precisions", nargs="+", default=["float32"], choices=PRECISIONS)
    p.add_argument("--timm", action="store_true", help="also timm's mobilevit_xxs on PyTorch (needs torch and timm)")
    p.add_argument("--shifted-depthwise", action="store_true",
                   help="also xxs with its depthwise convolutions as sums of shifted copies (bench/shifted_depthwise.py)")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first (tracing, compilation)")
    p.add_argument("--steps", type=int, default=10, help="timed calls")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per model and precision")
    p.add_argument("--out", default=str(ROOT / "bench"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.child:
        import mvlib  # noqa: F401  (picks the backend, quiet TensorFlow start-up)

        print(MARKER + json.dumps(child(json.loads(arguments.child))), flush=True)
    else:
        run(arguments)
