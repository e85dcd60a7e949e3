"""``python -m mvlib <command>``: the same functions the notebooks call, from a terminal.

User mistakes (bad variant, missing file, no data) end in one ``error: ...`` line and exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys

USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, KeyError)


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


def cmd_run(args) -> None:
    """The README's main job."""
    cmd_summary(args)


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

    p = sub.add_parser("run", help="the main job (see README)")
    model_args(p)
    p.set_defaults(func=cmd_run, variants=None, verbose=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import mvlib  # noqa: F401  (quiet TensorFlow start-up before any command imports keras)

    try:
        args.func(args)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
