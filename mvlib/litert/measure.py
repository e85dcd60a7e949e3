"""How big, how accurate and how fast exported files are, side by side (what ``python -m mvlib measure``
and notebook 05 show).

:func:`measure_latency` times one file's ``invoke`` (median/p90 ms); :func:`measure_exports` makes one
row per file -- size, validation top-1, top-1 agreement with Keras, latency with 1 and 2 threads;
:func:`measure_with_baseline` adds the keras-io example's dynamic-range export, measured on the same
data and machine, and a latency-ratio column. Latency depends on everything else running on the
machine: compare files measured in the same session, on an otherwise idle CPU.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mvlib.data.synthetic import synthetic_images
from mvlib.litert.export import export_litert
from mvlib.litert.inspect import infer_kind
from mvlib.litert.parity import _collect_images, _model_image_size, _resize_if_needed
from mvlib.litert.runtime import LiteRTRunner, invoke_times
from mvlib.tables import format_table
from mvlib.device import describe_machine

def measure_latency(
    tflite_path: str | os.PathLike,
    image_size: int | None = None,
    threads: int = 1,
    warmup: int = 10,
    runs: int = 50,
) -> dict:
    """Wall-clock latency of one ``invoke`` on a batch of 1, with the default XNNPACK delegate.

    Returns ``{"median_ms", "p90_ms", "mean_ms", "min_ms", "threads", "runs"}``. The input is the model's own
    size; ``image_size``, if given, is only checked against it. Latency depends on everything else running
    on the machine: compare files measured in the same session, on an otherwise idle CPU.
    """
    if runs < 1:
        raise ValueError("runs must be >= 1")
    runner = LiteRTRunner(tflite_path, num_threads=threads)
    interpreter, detail = runner.interpreter, runner._input
    if image_size is not None and (image_size, image_size) != runner.image_size:
        raise ValueError(f"image_size {image_size} differs from the model's input size {runner.image_size}")
    pixels = synthetic_images(1, runner.image_size)
    batch = runner.quantize_input(pixels)
    if not runner.dynamic_batch and runner._batch > 1:
        batch = np.repeat(batch, runner._batch, axis=0)
    interpreter.set_tensor(detail["index"], batch)
    times = invoke_times(interpreter, runs, warmup)
    return {
        "median_ms": float(np.median(times)),
        "p90_ms": float(np.percentile(times, 90)),
        "mean_ms": float(times.mean()),
        "min_ms": float(times.min()),
        "threads": threads,
        "runs": runs,
    }


def _iter_labelled(data, images, labels):
    if data is not None:
        for batch in data:
            if isinstance(batch, dict):
                yield np.asarray(batch["image"]), np.asarray(batch["label"])
            else:
                yield np.asarray(batch[0]), np.asarray(batch[1])
    elif images is not None:
        yield np.asarray(images), None if labels is None else np.asarray(labels)


def _measure(paths, model, data, images, labels, threads, warmup, runs, max_images) -> tuple[list[dict], dict]:
    """The rows of :func:`measure_exports` and the settings they were measured with."""
    runners = [LiteRTRunner(p) for p in paths]
    size = runners[0].image_size if runners else None
    correct = np.zeros(len(paths) + 1, np.int64)
    agree = np.zeros(len(paths), np.int64)
    n_images = n_labelled = 0
    for batch, batch_labels in _iter_labelled(data, images, labels):
        if batch.ndim == 3:
            batch = batch[None]
        if max_images is not None:
            batch = batch[: max_images - n_images]
            batch_labels = None if batch_labels is None else batch_labels[: len(batch)]
        if not len(batch):
            break
        pixels = _resize_if_needed(batch, size)
        preds = [runner(pixels).argmax(1) for runner in runners]
        keras_pred = np.asarray(model.predict(pixels, batch_size=16, verbose=0)).argmax(1) if model is not None else None
        if batch_labels is not None:
            truth = batch_labels.argmax(1) if batch_labels.ndim == 2 else batch_labels.reshape(-1)
            correct[: len(paths)] += [int((p == truth).sum()) for p in preds]
            if keras_pred is not None:
                correct[-1] += int((keras_pred == truth).sum())
            n_labelled += len(batch)
        if keras_pred is not None:
            agree += [int((p == keras_pred).sum()) for p in preds]
        n_images += len(batch)
        if max_images is not None and n_images >= max_images:
            break
    rows = []
    if model is not None:
        rows.append(
            {
                "file": f"(keras) {model.name}",
                "kind": "keras",
                "size_mb": None,
                "val_top1": correct[-1] / n_labelled if n_labelled else None,
                "agreement": 1.0 if n_images else None,
                **{f"latency_{t}t_{stat}": None for t in threads for stat in ("median_ms", "p90_ms")},
            }
        )
    for i, path in enumerate(paths):
        row = {
            "file": path.name,
            "kind": infer_kind(path),
            "size_mb": path.stat().st_size / 1e6,
            "val_top1": correct[i] / n_labelled if n_labelled else None,
            "agreement": agree[i] / n_images if (n_images and model is not None) else None,
        }
        for t in threads:
            latency = measure_latency(path, threads=t, warmup=warmup, runs=runs)
            row[f"latency_{t}t_median_ms"] = latency["median_ms"]
            row[f"latency_{t}t_p90_ms"] = latency["p90_ms"]
        rows.append(row)
    for row in rows:
        for key, value in row.items():
            if isinstance(value, np.generic):
                row[key] = value.item()
    settings = {"num_images": n_images, "num_labelled": n_labelled, "threads": list(threads), "warmup": warmup, "runs": runs}
    return rows, settings


def measure_exports(
    tflite_paths: Sequence[str | os.PathLike],
    *,
    model=None,
    images=None,
    labels=None,
    data=None,
    output: str | os.PathLike | None = None,
    threads: Sequence[int] = (1, 2),
    warmup: int = 10,
    runs: int = 50,
    max_images: int | None = None,
) -> list[dict]:
    """One row per ``.tflite`` file: size, validation top-1, top-1 agreement with Keras, latency per thread count.

    Data (optional): ``images`` (``(N, H, W, 3)``, [0, 255]) with ``labels`` (class indices or one-hot), or
    ``data``, an iterable of ``(images, labels)`` batches (e.g. a ``tf.data.Dataset``), iterated once.
    Images are resized to the model's input size if needed. ``model`` (the Keras model) adds a
    ``keras`` row and the agreement column. ``output`` (a path without suffix, or ending in
    ``.md``/``.json``) writes ``output.md`` (the table) and ``output.json`` (rows and settings); see
    :func:`write_measurements`. :func:`measure_with_baseline` adds the keras-io reference beside them.
    """
    paths = [Path(p) for p in tflite_paths]
    rows, settings = _measure(paths, model, data, images, labels, threads, warmup, runs, max_images)
    if output is not None:
        write_measurements(rows, output, settings, threads)
    return rows


def write_measurements(
    rows: Sequence[dict], output: str | os.PathLike, settings: dict | None = None, threads: Sequence[int] = (1, 2)
) -> tuple[Path, Path]:
    """Write ``output.md`` (:func:`format_markdown`) and ``output.json`` (``{"settings", "rows"}``; the
    settings get the machine's description added). ``output`` may end in ``.md``/``.json`` or have no suffix.
    Returns the two paths."""
    out = Path(output)
    if out.suffix in (".md", ".json"):
        out = out.with_suffix("")
    out.parent.mkdir(parents=True, exist_ok=True)
    md, js = out.parent / f"{out.name}.md", out.parent / f"{out.name}.json"
    md.write_text(format_markdown(rows, threads) + "\n")
    meta = {**(settings or {}), **describe_machine()}
    js.write_text(json.dumps({"settings": meta, "rows": list(rows)}, indent=2) + "\n")
    return md, js


#: the baseline's file name, next to the measured exports (see :func:`measure_with_baseline`).
BASELINE_FILE = "keras-io_dynamic.tflite"


def measure_with_baseline(
    tflite_paths: Sequence[str | os.PathLike],
    model,
    baseline_model,
    *,
    data=None,
    images=None,
    labels=None,
    baseline_label: str = "keras-io",
    baseline_trained: bool = True,
    baseline_path: str | os.PathLike | None = None,
    baseline_min_agreement: float | None = 0.0,
    check_images=None,
    threads: Sequence[int] = (1, 2),
    warmup: int = 10,
    runs: int = 50,
    max_images: int | None = None,
    output: str | os.PathLike | None = None,
    settings: dict | None = None,
) -> list[dict]:
    """:func:`measure_exports` for ``tflite_paths`` beside a reference: ``baseline_model`` exported the way
    the keras-io example ships it (dynamic-range quantization), measured on the same data and machine.

    The baseline is exported (with :func:`export_litert`, kind ``"dynamic"``) to ``baseline_path``
    (default: :data:`BASELINE_FILE` next to the first measured file; a file of that path among
    ``tflite_paths`` -- a previous run's baseline -- is replaced, not measured twice). Its check uses
    ``check_images`` (default: the first 32 measured images) and ``baseline_min_agreement`` (default 0:
    the baseline may be untrained, when only its size and latency mean something; NaN outputs and wrong
    shapes are still rejected). ``baseline_trained=False`` blanks the baseline's accuracy columns: an untrained
    model's accuracy means nothing.

    Returns the rows of :func:`measure_exports` -- the measured files (with a ``keras`` row for ``model``
    first), then the baseline's (its ``keras`` row and its file, named with ``baseline_label``) -- each with
    ``"baseline"`` (True for the reference's rows) and ``"latency_vs_baseline"``: its median latency with
    ``threads[0]`` threads divided by the baseline file's (None for the ``keras`` rows). ``data`` is iterated
    twice (a one-shot iterator is materialised first). ``output`` writes ``.md`` and ``.json`` (with
    ``settings`` added, e.g. the command line) via :func:`write_measurements`.
    """
    paths = [Path(p) for p in tflite_paths]
    if not paths:
        raise ValueError("no .tflite files to measure")
    baseline_path = Path(baseline_path) if baseline_path is not None else paths[0].parent / BASELINE_FILE
    paths = [p for p in paths if p.resolve() != baseline_path.resolve()]
    if data is not None and iter(data) is data:  # a generator: keep its batches for the second pass
        data = list(data)
    if check_images is None:
        check_images = _collect_images(data if data is not None else images, _model_image_size(model), 32)
    export_litert(baseline_model, baseline_path, "dynamic", check_images=check_images, min_agreement=baseline_min_agreement)
    rows, measured = _measure(paths, model, data, images, labels, threads, warmup, runs, max_images)
    base_rows, _ = _measure([baseline_path], baseline_model, data, images, labels, threads, warmup, runs, max_images)
    for row in rows:
        row["baseline"] = False
    for row in base_rows:
        row["baseline"] = True
        if not baseline_trained:
            row["val_top1"] = row["agreement"] = None
        if row["kind"] != "keras":  # exported as "dynamic" above (a tiny model may have no weight big enough to quantize)
            row["file"], row["kind"] = f"{row['file']} ({baseline_label})", "dynamic"
        else:
            row["file"] = f"(keras) {baseline_label}"
    key = f"latency_{threads[0]}t_median_ms"
    reference = base_rows[-1][key]
    rows += base_rows
    for row in rows:
        row["latency_vs_baseline"] = row[key] / reference if row.get(key) is not None and reference else None
    if output is not None:
        meta = {**measured, "baseline": {"file": baseline_path.name, "label": baseline_label, "ratio_threads": threads[0]}}
        write_measurements(rows, output, {**meta, **(settings or {})}, threads)
    return rows


def format_markdown(rows: Sequence[dict], threads: Sequence[int] = (1, 2)) -> str:
    """The :func:`measure_exports` / :func:`measure_with_baseline` rows as a markdown table (with a
    latency-ratio column when the rows have one)."""

    def fmt(value, spec):
        return "--" if value is None else format(value, spec)

    ratio = any("latency_vs_baseline" in row for row in rows)
    header = ["file", "kind", "size (MB)", "val top-1", "agreement w/ Keras"]
    for t in threads:
        header += [f"{t} thr median (ms)", f"{t} thr p90 (ms)"]
    if ratio:
        header.append(f"latency vs baseline ({threads[0]} thr)")
    table = []
    for row in rows:
        cells = [row["file"], row["kind"], fmt(row["size_mb"], ".2f"), fmt(row["val_top1"], ".3f"), fmt(row["agreement"], ".3f")]
        for t in threads:
            cells += [fmt(row.get(f"latency_{t}t_median_ms"), ".1f"), fmt(row.get(f"latency_{t}t_p90_ms"), ".1f")]
        if ratio:
            cells.append(fmt(row.get("latency_vs_baseline"), ".2f") + ("x" if row.get("latency_vs_baseline") is not None else ""))
        table.append(cells)
    return format_table(header, table, align="ll" + "r" * (len(header) - 2), markdown=True)
