"""How many augmented training images per second the input pipeline makes, by number of threads.

    python bench/pipeline.py --data-dir data/flowers256                  # 1 thread and one per core
    KERAS_BACKEND=jax python bench/pipeline.py --threads 16 --mix none mixup-or-cutmix ...

A GPU trains ``xxs`` at ~2,000 images/s (issue 12): the pipeline has to make at least that many. This
builds batches exactly as training does -- :meth:`mvlib.data.TrainStream.batch` (decoded photos in memory,
the recipe's augmentation, MixUp/CutMix in numpy) called from a pool of threads, as Keras' own
PyDataset workers call it -- and reports images/s for each thread count and mix. The first batch of each
setting is untimed (a warm-up). The report (``<out>/pipeline-<device>-<backend>.md``
and ``.json``) names the device and backend.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def measure(stream, threads: int, batches: int) -> float:
    """Images/s of ``batches`` batches of epoch 0 built by ``threads`` threads."""
    stream.batch(0, 0)  # untimed: a warm-up (first allocations, caches)
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda i: stream.batch(0, i % len(stream)), range(1, batches + 1)))
    return batches * stream.batch_size / (time.perf_counter() - start)


def run(args) -> dict:
    import keras

    from mvlib.data import load_flowers
    from mvlib.device import describe_device
    from mvlib.tables import format_table

    data = load_flowers(args.source, args.data_dir, image_size=args.image_size, limit=args.limit)
    threads = args.threads or sorted({1, min(16, os.cpu_count() or 1)})
    rows = []
    for mix in args.mix:
        stream = data.train_stream(augment=args.augment, batch_size=args.batch_size, seed=0,
                                   mix=None if mix == "none" else mix, workers=1)
        for n in threads:
            rows.append({"augment": args.augment, "mix": mix, "threads": n, "images_per_s": measure(stream, n, args.batches)})
            print(rows[-1], flush=True)
    report = {"command": "python bench/pipeline.py " + " ".join(sys.argv[1:]), "device": describe_device(),
              "cpu_count": os.cpu_count(), "backend": keras.backend.backend(), "image_size": args.image_size,
              "batch_size": args.batch_size, "rows": rows}
    table = format_table(["augment", "mix", "threads", "images/s"],
                         [[r["augment"], r["mix"], r["threads"], round(r["images_per_s"])] for r in rows], markdown=True)
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
    p.add_argument("--threads", nargs="+", type=int, help="thread counts (default: 1 and one per core, up to 16)")
    p.add_argument("--batches", type=int, default=16, help="timed batches per setting")
    p.add_argument("--out", default=str(ROOT / "bench"))
    return p.parse_args(argv)


if __name__ == "__main__":
    run(parse_args())
