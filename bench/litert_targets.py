"""Issue 14's acceptance targets for the shipped full-integer file, held against ``python -m mvlib measure`` rows.

Infrastructure, not teaching: ``python bench/litert_targets.py artifacts/pretrained/measurements.json`` prints where
the int8 row stands.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

#: What the shipped int8 model should achieve (the project's targets for the LiteRT export).
TARGETS = {
    "size_mb_max": 1.2,  # int8 file size
    "top1_drop_points_max": 0.5,  # validation top-1 of the Keras float32 model minus the file's, in points
    "latency_vs_baseline_max": 0.5,  # median latency (1 thread) / the keras-io dynamic-range export's
}


def check_targets(rows: Sequence[dict], kind: str = "int8", targets: dict = TARGETS) -> list[dict]:
    """Where the ``kind`` export of :func:`measure_with_baseline` rows stands against ``targets``.

    Returns one dict per target: ``target`` (its statement), ``measured`` (the value, in ``unit``), ``met``
    (True, False, or None when the rows lack what it needs, e.g. no labels or no baseline). The targets are
    stated for ``int8``; other kinds can be held against them for comparison. The baseline's rows are never
    the ones checked.
    """
    ours = [r for r in rows if not r.get("baseline")]
    row = next((r for r in ours if r["kind"] == kind), None)
    keras_row = next((r for r in ours if r["kind"] == "keras"), None)
    if row is None:
        raise ValueError(f"no {kind} export among the rows ({', '.join(r['file'] for r in ours)})")
    size = row["size_mb"]
    drop = None
    if keras_row is not None and keras_row["val_top1"] is not None and row["val_top1"] is not None:
        drop = 100 * (keras_row["val_top1"] - row["val_top1"])
    ratio = row.get("latency_vs_baseline")

    def met(value, limit):
        return None if value is None else bool(value <= limit)

    return [
        {"target": f"file size <= {targets['size_mb_max']:g} MB", "measured": size, "unit": "MB",
         "met": met(size, targets["size_mb_max"])},
        {"target": f"top-1 drop vs Keras float32 <= {targets['top1_drop_points_max']:g} points", "measured": drop,
         "unit": "points", "met": met(drop, targets["top1_drop_points_max"])},
        {"target": f"median latency <= {targets['latency_vs_baseline_max']:g}x the keras-io dynamic-range export's", "measured": ratio,
         "unit": "x", "met": met(ratio, targets["latency_vs_baseline_max"])},
    ]


def main(argv=None) -> int:
    path = (argv or sys.argv[1:] or ["artifacts/pretrained/measurements.json"])[0]
    rows = json.loads(open(path).read())["rows"]
    results = check_targets(rows)
    for r in results:
        value = "--" if r["measured"] is None else f"{r['measured']:.2f} {r['unit']}"
        print(f"{'MET ' if r['met'] else 'open' if r['met'] is False else '  ? '}  {r['target']}: {value}")
    return 0 if all(r["met"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
