"""How many augmented training images per second the input pipeline makes, by loader and number of workers.

    python bench/pipeline.py --data-dir data/flowers256                  # 1 worker and one per core
    KERAS_BACKEND=jax python bench/pipeline.py --workers 16 --mix none mixup-or-cutmix ...

A GPU trains ``xxs`` at ~2,000 images/s (issue 12): the pipeline has to make at least that many. This
builds batches exactly as training does -- ``stream[i]`` of a :class:`mvlib.data.TrainStream` (decoded
photos in memory, the recipe's augmentation, MixUp/CutMix in numpy), asked for in order as ``fit`` asks,
while the stream's threads make the next ones, each in that thread or, with ``--loader processes``, in a
worker process -- and reports images/s for each loader, number of workers and mix. Each setting's first
``workers`` batches are untimed (a warm-up: the workers start, the allocator grows), and each batch is
dropped once made, as training drops it. The report (``<out>/pipeline-<device>-<backend>.md`` and
``.json``) names the device and backend.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def measure(stream, batches: int) -> float:
    """Images/s of ``batches`` batches, asked for in order from epoch 0 on, after ``stream.batch_workers`` untimed."""
    def make(i):
        stream.epoch, index = divmod(i, len(stream))  # as fit and the stream's epoch callback move it
        stream[index]  # dropped at once, as training does: kept, each would need fresh memory

    warm_up = stream.batch_workers
    for i in range(warm_up):
        make(i)
    start = time.perf_counter()
    for i in range(warm_up, warm_up + batches):
        make(i)
    return batches * stream.batch_size / (time.perf_counter() - start)


def run(args) -> dict:
    import keras

    from mvlib.data import load_flowers
    from mvlib.device import describe_device
    from mvlib.tables import format_table

    data = load_flowers(args.source, args.data_dir, image_size=args.image_size, limit=args.limit)
    workers = args.workers or sorted({1, min(16, os.cpu_count() or 1)})
    rows = []
    for loader in args.loader:
        for mix in args.mix:
            for n in workers:
                stream = data.train_stream(augment=args.augment, batch_size=args.batch_size, seed=0, workers=n,
                                           mix=None if mix == "none" else mix, processes=loader == "processes")
                rows.append({"augment": args.augment, "mix": mix, "loader": loader, "workers": n,
                             "images_per_s": measure(stream, args.batches)})
                stream.close()
                print(rows[-1], flush=True)
    report = {"command": "python bench/pipeline.py " + " ".join(sys.argv[1:]), "device": describe_device(),
              "cpu_count": os.cpu_count(), "backend": keras.backend.backend(), "image_size": args.image_size,
              "batch_size": args.batch_size, "rows": rows}
    table = format_table(["augment", "mix", "loader", "workers", "images/s"],
                         [[r["augment"], r["mix"], r["loader"], r["workers"], round(r["images_per_s"])] for r in rows],
                         markdown=True)
    text = (f"# Input pipeline, {report['device']}, Keras on {report['backend']}\n\n"
            f"`{report['command']}`: batches of {args.batch_size} at {args.image_size} px.\n\n{table}\n")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^a-z0-9]+", "-", f"pipeline {report['device']} {report['backend']}".lower()).strip("-")
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / f"{stem}.md").write_text(text)
    print(text + f"wrote {out / stem}.md and .json")
    return report


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default="folder")
    p.add_argument("--data-dir", default=None, help="class/*.jpg photos (default: as for `python -m mvlib train`)")
    p.add_argument("--limit", type=int, default=640, help="photos decoded into memory (each split)")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--augment", default="inception")
    p.add_argument("--mix", nargs="+", default=["none", "mixup-or-cutmix"])
    p.add_argument("--loader", nargs="+", choices=["threads", "processes"], default=["threads", "processes"],
                   help="where each batch's crops are made: in the stream's threads, or in worker processes")
    p.add_argument("--workers", nargs="+", type=int, help="batches made at once (default: 1 and one per core, up to 16)")
    p.add_argument("--batches", type=int, default=16, help="timed batches per setting")
    p.add_argument("--out", default=str(ROOT / "bench"))
    return p.parse_args(argv)


if __name__ == "__main__":
    run(parse_args())
