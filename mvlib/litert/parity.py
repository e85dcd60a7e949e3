"""The parity check every export passes before it is written: the ``.tflite`` file against the Keras model.

A file is refused when its weights are not in it (variables read but never written), the interpreter
fails, the output shape differs, any output is NaN/inf, or it is too far from Keras: for ``float32``
max |diff| of the probabilities <= ``FLOAT32_MAX_ABS_DIFF``; for the quantized kinds top-1 agreement
>= ``DEFAULT_MIN_AGREEMENT`` (``INT8_MIN_AGREEMENT`` for the int8 file, the one to ship). Images are float32 RGB in [0, 255], as arrays or iterables of batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from mvlib.litert.inspect import list_ops
from mvlib.litert.runtime import LiteRTRunner

KINDS = ("float32", "dynamic", "float16", "int8")


#: float32 must reproduce Keras to this max |diff| of the outputs (probabilities); measured ~1e-7.
FLOAT32_MAX_ABS_DIFF = 1e-4


#: quantized kinds must agree with Keras' top-1 class on at least this fraction of the check images.
DEFAULT_MIN_AGREEMENT = 0.9
#: the full-integer file, the one to ship, must agree with Keras' top-1 class at least this often.
INT8_MIN_AGREEMENT = 0.98


#: check images used at most.
MAX_CHECK_IMAGES = 512  # tf_flowers has 331 validation photos: all of them


class ExportError(RuntimeError):
    """The converter could not produce a model (e.g. an op outside the allowed op sets)."""


class ExportCheckError(ExportError):
    """An exported model failed its parity check; ``.report`` is the :class:`ParityReport`."""

    def __init__(self, message: str, report: ParityReport | None = None, size_bytes: int | None = None,
                 ops: dict | None = None):
        super().__init__(message)
        self.report = report
        self.size_bytes = size_bytes  # of the rejected flatbuffer, when an export was checked
        self.ops = ops or {}  # its ops, as list_ops counts them


@dataclass
class ParityReport:
    """How a ``.tflite`` model's outputs compare with the Keras model's on the same images."""

    kind: str
    num_images: int
    images_source: str  # "given", "representative" or "synthetic"
    expected_shape: tuple[int, ...]
    output_shape: tuple[int, ...] | None
    nan_images: int  # images whose output has a NaN or inf
    max_abs_diff: float  # of the outputs (probabilities for softmax models); nan if not comparable
    mean_abs_diff: float
    top1_agreement: float  # fraction of images with the same argmax as Keras
    max_abs_diff_limit: float | None
    min_agreement: float | None
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        status = "PASSED" if self.passed else "FAILED: " + "; ".join(self.problems)
        return (
            f"{self.kind}: {status} -- {self.num_images} {self.images_source} images, max |diff| {self.max_abs_diff:.3g}, "
            f"top-1 agreement {self.top1_agreement:.3f}, NaN/inf outputs on {self.nan_images} images"
        )

    def raise_for_failure(self, what: str = "exported model") -> None:
        if not self.passed:
            raise ExportCheckError(f"{what} failed the parity check: {self.summary()}", self)


def _iter_image_batches(images) -> Iterable[np.ndarray]:
    """Yield image batches from an array ``(N, H, W, 3)`` / ``(H, W, 3)`` or an iterable of batches.

    A batch may be an array, a ``(images, labels, ...)`` tuple/list, or a dict with an ``"image"`` key
    (so a ``tf.data.Dataset`` of ``(images, labels)`` works as is).
    """
    if hasattr(images, "shape") and not isinstance(images, dict):  # numpy / tf tensor
        array = np.asarray(images)
        yield array[None] if array.ndim == 3 else array
        return
    for batch in images:
        if isinstance(batch, dict):
            batch = batch["image"]
        elif isinstance(batch, (tuple, list)):
            batch = batch[0]
        array = np.asarray(batch)
        yield array[None] if array.ndim == 3 else array


def _resize_if_needed(batch: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"expected image batches of shape (N, H, W, 3), got {batch.shape}")
    if tuple(batch.shape[1:3]) == size:
        return batch.astype(np.float32, copy=False)
    from mvlib.data import resize

    if size[0] != size[1]:
        raise ValueError(f"expected a square model input, got {size}")
    return np.stack([resize(np.clip(image, 0, 255).astype(np.uint8), size[0]) for image in batch]).astype(np.float32)


def _collect_images(images, size: tuple[int, int], limit: int) -> np.ndarray:
    """At most ``limit`` images as float32 ``(N, H, W, 3)`` pixels in [0, 255], resized to ``size``."""
    out, count = [], 0
    for batch in _iter_image_batches(images):
        batch = _resize_if_needed(batch[: limit - count], size)
        out.append(batch)
        count += len(batch)
        if count >= limit:
            break
    if not out:
        raise ValueError("no images given")
    return np.concatenate(out)


def _model_image_size(model) -> tuple[int, int]:
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[3] != 3 or shape[1] is None or shape[2] is None:
        raise ValueError(f"expected a model with one image input (None, H, W, 3) of static size, got {shape}")
    return int(shape[1]), int(shape[2])


def _default_limits(kind: str, max_abs_diff: float | None, min_agreement: float | None):
    if kind == "float32":
        return (FLOAT32_MAX_ABS_DIFF if max_abs_diff is None else max_abs_diff), min_agreement
    default = INT8_MIN_AGREEMENT if kind == "int8" else DEFAULT_MIN_AGREEMENT
    return max_abs_diff, (default if min_agreement is None else min_agreement)


def check_parity(
    model,
    tflite_path_or_bytes,
    images,
    kind: str,
    *,
    max_abs_diff: float | None = None,
    min_agreement: float | None = None,
    images_source: str = "given",
    num_threads: int | None = None,
) -> ParityReport:
    """Compare a ``.tflite`` model with the Keras ``model`` on ``images`` (array or iterable of batches).

    Checks: the weights are in the file (no unwritten variables); the interpreter runs; the output shape is the Keras one; no NaN/inf; for ``kind="float32"``
    max |diff| <= ``max_abs_diff`` (default 1e-4); for the quantized kinds top-1 agreement with Keras
    >= ``min_agreement`` (default 0.9; 0.98 for int8). Either limit may be given for any kind (``max_abs_diff`` then
    also applies to quantized kinds; ``min_agreement`` to float32). Never raises on a failed check --
    look at ``report.passed`` / ``report.problems`` or call ``report.raise_for_failure()``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    diff_limit, agreement_limit = _default_limits(kind, max_abs_diff, min_agreement)
    size = _model_image_size(model)
    pixels = _collect_images(images, size, MAX_CHECK_IMAGES)
    expected = np.asarray(model.predict(pixels, batch_size=16, verbose=0), np.float32)
    report = ParityReport(
        kind=kind,
        num_images=len(pixels),
        images_source=images_source,
        expected_shape=tuple(expected.shape),
        output_shape=None,
        nan_images=0,
        max_abs_diff=float("nan"),
        mean_abs_diff=float("nan"),
        top1_agreement=0.0,
        max_abs_diff_limit=diff_limit,
        min_agreement=agreement_limit,
    )
    ops = list_ops(tflite_path_or_bytes)
    if ops.get("READ_VARIABLE") and not ops.get("ASSIGN_VARIABLE"):
        # What the keras-io recipe produces: nothing in the file gives the variables a value, so the
        # outputs are whatever the interpreter's memory held (NaN in a fresh process, anything later).
        report.problems.append(
            f"{ops['READ_VARIABLE']} READ_VARIABLE ops but no ASSIGN_VARIABLE: the weights were not frozen into the file"
        )
    try:
        runner = LiteRTRunner(tflite_path_or_bytes, num_threads=num_threads)
        if runner.image_size != size:
            report.problems.append(f"input size {runner.image_size} differs from the Keras model's {size}")
            return report
        got = runner(pixels)
        report.output_shape = tuple(got.shape)
    except Exception as e:  # noqa: BLE001 -- any interpreter failure is a failed check, with its message
        report.problems.append(f"the interpreter failed: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
        return report
    if got.shape != expected.shape:
        report.problems.append(f"output shape {got.shape} != Keras output shape {expected.shape}")
        return report
    bad = ~np.isfinite(got).all(axis=1)
    report.nan_images = int(bad.sum())
    if report.nan_images:
        report.problems.append(f"NaN/inf outputs on {report.nan_images}/{len(got)} images")
    diff = np.abs(got - expected)
    report.max_abs_diff = float(np.nanmax(diff)) if np.isfinite(diff).any() else float("nan")
    report.mean_abs_diff = float(np.nanmean(diff)) if np.isfinite(diff).any() else float("nan")
    ok = ~bad
    report.top1_agreement = float(np.mean((got.argmax(1) == expected.argmax(1)) & ok))
    if diff_limit is not None and not (report.max_abs_diff <= diff_limit):
        report.problems.append(f"max |diff| {report.max_abs_diff:.3g} > {diff_limit:g}")
    if agreement_limit is not None and report.top1_agreement < agreement_limit:
        short = math.ceil(agreement_limit * len(got) - 1e-9) - round(report.top1_agreement * len(got))
        report.problems.append(f"top-1 agreement {report.top1_agreement:.3f} < {agreement_limit:g} "
                               f"({short} more of the {len(got)} images would have to agree)")
    return report
