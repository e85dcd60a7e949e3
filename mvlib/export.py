"""Export a Keras MobileViT to LiteRT (``.tflite``) -- and never hand over a file that was not checked.

Why this module exists: the keras-io example's recipe (``tf.saved_model.save(model)`` then
``TFLiteConverter.from_saved_model`` with ``Optimize.DEFAULT``) still *runs* under TF 2.21 / Keras 3.15,
but the converter does not freeze Keras 3's variables: the ``.tflite`` keeps ``VAR_HANDLE`` /
``READ_VARIABLE`` ops with no values behind them, is about 1/10 of the expected size, and outputs NaN.
(``TFLiteConverter.from_concrete_functions`` fails the same way.) :func:`export_seed_recipe`
reproduces it, so a test and a notebook can show :func:`check_parity` catching it.

What works: write the model with Keras 3's own ``keras.export.ExportArchive`` (what ``model.export``
uses) and convert that SavedModel. ``model.export(path, format="litert")`` exists in Keras 3.15 and does
the same, but always enables ``SELECT_TF_OPS`` (Flex) and writes straight to ``path`` unchecked, so
:func:`export_litert` drives the converter itself:

* builtin ops only (``TFLITE_BUILTINS``; ``allow_flex=True`` adds ``SELECT_TF_OPS``). Neither xxs nor
  keras-io needs Flex ops, in any kind (xs and s are built from the same layers as xxs): the paper's
  unfold/fold is rank <= 5 RESHAPE/TRANSPOSE, and Keras' MultiHeadAttention lowers to BATCH_MATMUL,
  SOFTMAX and friends.
* a fixed batch of 1 by default (static shapes: fewer ops, no SHAPE/GATHER shape arithmetic);
  ``batch_size=None`` exports a dynamic batch (the runner resizes the input tensor).
* four kinds (see ``KINDS``):

  ``float32``  no quantization (reference; must match Keras to ``max_abs_diff`` 1e-4).
  ``dynamic``  dynamic-range quantization: int8 weights, float activations, float32 I/O (~1/3.3 the size).
  ``float16``  float16 weights, dequantized to float32 at load time (~1/2 the size), float32 I/O.
  ``int8``     full-integer quantization calibrated on ``representative_images``: int8 weights and
               activations, **uint8 input** = the raw RGB pixels [0, 255] (scale ~1, zero point 0, because
               the model rescales internally -- an app feeds camera bytes as they are), and **float32
               output** = probabilities (one DEQUANTIZE at the end, so callers need no output arithmetic).
               A few ops without int8 kernels (the NEG inside LayerNormalization) run in float between
               DEQUANTIZE/QUANTIZE pairs; ``ExportResult.float_ops`` counts them.

Every export is written to a temporary file next to ``path``, run through :func:`check_parity` against
the Keras model, and moved into place only if it passes; otherwise the temporary file is deleted and
:class:`ExportCheckError` (carrying the :class:`ParityReport`) is raised.

Measurement helpers: :func:`measure_latency` (one file, median/p90 ms of ``invoke``),
:func:`measure_exports` (a table -- size, validation top-1, agreement with Keras, latency with 1 and 2
threads -- as markdown and JSON) and :func:`measure_with_baseline` (the same beside the keras-io model's
dynamic-range export, with a latency-ratio column: what ``python -m mvlib measure`` and notebook 05 show);
:func:`check_targets` holds the int8 row against :data:`TARGETS`.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import mvlib
from mvlib.predict import LiteRTRunner, native_stderr_captured

__all__ = [
    "KINDS",
    "ExportError",
    "ExportCheckError",
    "ParityReport",
    "ExportResult",
    "export_litert",
    "export_all",
    "export_seed_recipe",
    "check_parity",
    "list_ops",
    "measure_latency",
    "measure_exports",
    "measure_with_baseline",
    "write_measurements",
    "format_markdown",
    "TARGETS",
    "check_targets",
    "synthetic_images",
]

KINDS = ("float32", "dynamic", "float16", "int8")

#: float32 must reproduce Keras to this max |diff| of the outputs (probabilities); measured ~1e-7.
FLOAT32_MAX_ABS_DIFF = 1e-4
#: quantized kinds must agree with Keras' top-1 class on at least this fraction of the check images.
DEFAULT_MIN_AGREEMENT = 0.9
#: calibration images used for int8 at most (the converter runs each one through the float model).
MAX_CALIBRATION_IMAGES = 300
#: check images used at most.
MAX_CHECK_IMAGES = 256
#: synthetic check images used when neither ``check_images`` nor ``representative_images`` is given.
NUM_SYNTHETIC_CHECK_IMAGES = 16


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


# --------------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------------


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


@dataclass
class ExportResult:
    """A checked ``.tflite`` file."""

    path: Path
    kind: str
    size_bytes: int
    input_dtype: str
    output_dtype: str
    input_shape: tuple[int, ...]  # -1 for a dynamic batch
    ops: dict[str, int]  # op name -> count in the flatbuffer (custom ops by their custom code, e.g. "FlexErf")
    flex_ops: list[str]
    float_ops: int  # int8 kind: ops computing in float32 (besides QUANTIZE/DEQUANTIZE); 0 otherwise
    parity: ParityReport
    seconds: float

    @property
    def size_mb(self) -> float:
        return self.size_bytes / 1e6


# --------------------------------------------------------------------------------------------------
# Images: arrays or iterables of batches -> float32 (N, S, S, 3) in [0, 255]
# --------------------------------------------------------------------------------------------------


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


def synthetic_images(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Smooth random colour images (bilinearly upsampled 8x8 noise plus a little pixel noise), [0, 255].

    Only a stand-in when no real images are given: they exercise every op and catch NaNs, broken
    shapes and float32 mismatches, but quantization agreement is only meaningful on real images.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (n, 8, 8, 3)).astype(np.uint8)
    smooth = np.stack([np.asarray(Image.fromarray(c).resize(size[::-1], Image.BILINEAR)) for c in coarse]).astype(np.float32)
    return np.clip(smooth + rng.normal(0, 8, smooth.shape), 0, 255).astype(np.float32)


def _model_image_size(model) -> tuple[int, int]:
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[3] != 3 or shape[1] is None or shape[2] is None:
        raise ValueError(f"expected a model with one image input (None, H, W, 3) of static size, got {shape}")
    return int(shape[1]), int(shape[2])


# --------------------------------------------------------------------------------------------------
# Inspecting a flatbuffer
# --------------------------------------------------------------------------------------------------


def _read_model(tflite) -> bytes:
    if isinstance(tflite, (bytes, bytearray)):
        return bytes(tflite)
    return Path(tflite).read_bytes()


def _flatbuffer(tflite):
    from ai_edge_litert import schema_py_generated as schema

    return schema, schema.Model.GetRootAs(_read_model(tflite), 0)


def list_ops(tflite) -> dict[str, int]:
    """Op name -> count over all subgraphs, read from the flatbuffer (no interpreter, no delegate).

    Builtin ops by their ``BuiltinOperator`` name (``CONV_2D``); custom ops by their custom code, so
    Flex (Select TF) ops show up as ``Flex<TFOpName>``.
    """
    schema, model = _flatbuffer(tflite)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())  # see tflite schema_util
        codes.append(oc.CustomCode().decode() if code == schema.BuiltinOperator.CUSTOM else names.get(code, str(code)))
    counts: collections.Counter[str] = collections.Counter()
    for g in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(g)
        for j in range(subgraph.OperatorsLength()):
            counts[codes[subgraph.Operators(j).OpcodeIndex()]] += 1
    return dict(counts)


def _count_float_ops(tflite) -> int:
    """Ops (besides QUANTIZE/DEQUANTIZE) with a float32 input tensor -- the float islands of an int8 model."""
    schema, model = _flatbuffer(tflite)
    quantize_op_codes = set()
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        if max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()) in (schema.BuiltinOperator.QUANTIZE, schema.BuiltinOperator.DEQUANTIZE):
            quantize_op_codes.add(i)
    count = 0
    for g in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(g)
        for j in range(subgraph.OperatorsLength()):
            op = subgraph.Operators(j)
            if op.OpcodeIndex() in quantize_op_codes:
                continue
            inputs = [op.Inputs(k) for k in range(op.InputsLength())]
            if any(t >= 0 and subgraph.Tensors(t).Type() == schema.TensorType.FLOAT32 for t in inputs):
                count += 1
    return count


# --------------------------------------------------------------------------------------------------
# Parity check
# --------------------------------------------------------------------------------------------------


def _default_limits(kind: str, max_abs_diff: float | None, min_agreement: float | None):
    if kind == "float32":
        return (FLOAT32_MAX_ABS_DIFF if max_abs_diff is None else max_abs_diff), min_agreement
    return max_abs_diff, (DEFAULT_MIN_AGREEMENT if min_agreement is None else min_agreement)


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
    >= ``min_agreement`` (default 0.9). Either limit may be given for any kind (``max_abs_diff`` then
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
        report.problems.append(f"top-1 agreement {report.top1_agreement:.3f} < {agreement_limit:g}")
    return report


# --------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _tf_info_logs_muted():
    """Keep TensorFlow's Python INFO records ("Assets written to: /tmp/...") out of notebook cells."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def _tensorflow():
    """TensorFlow, for the converter; the Keras model must live in the TensorFlow backend to be traced."""
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ImportError(
            f"LiteRT export converts a TensorFlow graph, but Keras runs on {keras.backend.backend()!r}: "
            "run it with KERAS_BACKEND=tensorflow (weights trained on any backend load there unchanged)"
        )
    return mvlib.require("tensorflow", "LiteRT export")


def _write_saved_model(model, directory: str, batch_size: int | None) -> None:
    """Keras 3's own SavedModel writer (what ``model.export(format="tf_saved_model")`` does), inference mode."""
    tf = _tensorflow()
    from keras.export import ExportArchive

    height, width = _model_image_size(model)
    archive = ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve",
        functools.partial(model.__call__, training=False),
        input_signature=[tf.TensorSpec((batch_size, height, width, 3), tf.float32, name="image")],
    )
    with _tf_info_logs_muted():
        archive.write_out(directory, verbose=False)


def _calibration_dataset(images, size: tuple[int, int], limit: int):
    pixels = _collect_images(images, size, limit)

    def generate():
        for i in range(len(pixels)):
            yield [pixels[i : i + 1]]

    return generate, pixels


def _convert(saved_model_dir: str, kind: str, *, representative=None, allow_flex: bool = False) -> bytes:
    tf = _tensorflow()

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if kind != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if kind == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if kind == "int8":
        converter.representative_dataset = representative
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.inference_input_type = tf.uint8  # raw pixels [0, 255]; the model rescales internally
        converter.inference_output_type = tf.float32  # probabilities, dequantized inside the model
    if allow_flex:
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    converter.target_spec.supported_ops = ops
    try:
        with native_stderr_captured():  # the int8 converter prints its settings ("fully_quantize: 0, ...") to fd 2
            return converter.convert()
    except Exception as e:  # ConverterError and friends
        hint = "" if allow_flex else " (if it names ops outside the TFLite builtins, allow_flex=True adds Flex/Select TF ops)"
        raise ExportError(f"LiteRT conversion ({kind}) failed{hint}: {e}") from e


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_and_place(
    model,
    tflite: bytes,
    path: Path,
    kind: str,
    check_pixels: np.ndarray,
    images_source: str,
    *,
    max_abs_diff,
    min_agreement,
    started: float,
) -> ExportResult:
    """Write ``tflite`` to a temporary file next to ``path``, check it, and move it into place (or delete it and raise)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(tflite)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the final file the usual permissions
        report = check_parity(
            model, tmp, check_pixels, kind, max_abs_diff=max_abs_diff, min_agreement=min_agreement, images_source=images_source
        )
        if not report.passed:
            raise ExportCheckError(
                f"the {kind} export for {str(path)!r} ({len(tflite) / 1e6:.2f} MB) failed its parity check and was "
                f"not written: {report.summary()}",
                report,
                size_bytes=len(tflite),
                ops=list_ops(tflite),
            )
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    ops = list_ops(tflite)
    runner = LiteRTRunner(tflite)
    return ExportResult(
        path=path,
        kind=kind,
        size_bytes=len(tflite),
        input_dtype=runner.input_dtype.name,
        output_dtype=runner.output_dtype.name,
        input_shape=tuple(int(d) for d in runner._input["shape_signature"]),
        ops=ops,
        flex_ops=sorted(op for op in ops if op.startswith("Flex")),
        float_ops=_count_float_ops(tflite) if kind == "int8" else 0,
        parity=report,
        seconds=time.perf_counter() - started,
    )


def _prepare_images(model, kind, representative_images, check_images, max_calibration_images):
    size = _model_image_size(model)
    representative = None
    calibration = None
    if kind == "int8":
        if representative_images is None:
            raise ValueError("kind='int8' needs representative_images (a few hundred training images) to calibrate")
        representative, calibration = _calibration_dataset(representative_images, size, max_calibration_images)
    if check_images is not None:
        return representative, _collect_images(check_images, size, MAX_CHECK_IMAGES), "given"
    if representative_images is not None:
        pixels = calibration if calibration is not None else _collect_images(representative_images, size, 32)
        return representative, pixels[:32], "representative"
    return representative, synthetic_images(NUM_SYNTHETIC_CHECK_IMAGES, size), "synthetic"


def export_litert(
    model,
    path: str | os.PathLike,
    kind: str = "float32",
    *,
    representative_images=None,
    check_images=None,
    allow_flex: bool = False,
    batch_size: int | None = 1,
    max_abs_diff: float | None = None,
    min_agreement: float | None = None,
    max_calibration_images: int = MAX_CALIBRATION_IMAGES,
    saved_model_dir: str | os.PathLike | None = None,
) -> ExportResult:
    """Convert a Keras image classifier to a checked ``.tflite`` file at ``path``.

    Args:
        model: a Keras model with one image input ``(None, H, W, 3)`` taking float pixels in [0, 255].
        path: where the ``.tflite`` goes (written only if the check passes).
        kind: ``"float32"``, ``"dynamic"``, ``"float16"`` or ``"int8"`` (see the module docstring).
        representative_images: int8 calibration images -- an array ``(N, H, W, 3)`` (uint8 or float in
            [0, 255]) or an iterable of batches (arrays, ``(images, labels)`` tuples, ``{"image": ...}``
            dicts, a ``tf.data.Dataset``); at most ``max_calibration_images`` are used, resized to the model's
            size if needed. Use training images, never the validation set you report.
        check_images: images for the parity check (same formats; at most 256). Default: the first 32
            representative images if given, else 16 synthetic images (see :func:`synthetic_images`).
        allow_flex: also allow Select TF (Flex) ops; the app then needs the Flex delegate. (Untested: no
            mvlib model needs Flex. The check runs the file with ``ai_edge_litert``'s interpreter; if that
            build cannot run Flex ops, such a file fails the check rather than being written unchecked.)
        batch_size: the exported batch dimension; ``1`` (default, static shapes) or ``None`` (dynamic).
        max_abs_diff, min_agreement: override the check's limits (see :func:`check_parity`).
        saved_model_dir: reuse a SavedModel already written by this module (see :func:`export_all`).

    Returns:
        an :class:`ExportResult`. Raises :class:`ExportCheckError` (no file written) if the check fails,
        :class:`ExportError` if the conversion fails.
    """
    started = time.perf_counter()
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    _tensorflow()  # fail before any work when the backend cannot be exported
    path = Path(path)
    representative, check_pixels, source = _prepare_images(model, kind, representative_images, check_images, max_calibration_images)
    if saved_model_dir is not None:
        tflite = _convert(str(saved_model_dir), kind, representative=representative, allow_flex=allow_flex)
    else:
        with tempfile.TemporaryDirectory(prefix="mvlib_savedmodel_") as tmp:
            _write_saved_model(model, tmp, batch_size)
            tflite = _convert(tmp, kind, representative=representative, allow_flex=allow_flex)
    return _check_and_place(
        model, tflite, path, kind, check_pixels, source, max_abs_diff=max_abs_diff, min_agreement=min_agreement, started=started
    )


def export_all(
    model,
    directory: str | os.PathLike,
    kinds: Sequence[str] = KINDS,
    *,
    stem: str | None = None,
    representative_images=None,
    check_images=None,
    batch_size: int | None = 1,
    limits: dict[str, dict] | None = None,
    **kwargs,
) -> dict[str, ExportResult]:
    """Export several kinds to ``directory/{stem}_{kind}.tflite``, writing the SavedModel only once.

    ``limits`` maps a kind to ``{"max_abs_diff": ..., "min_agreement": ...}`` overrides; other keyword
    arguments go to :func:`export_litert`. Stops at the first failure (files already written are valid).
    """
    directory = Path(directory)
    stem = stem or model.name
    results = {}
    with tempfile.TemporaryDirectory(prefix="mvlib_savedmodel_") as tmp:
        _write_saved_model(model, tmp, batch_size)
        for kind in kinds:
            results[kind] = export_litert(
                model,
                directory / f"{stem}_{kind}.tflite",
                kind,
                representative_images=representative_images,
                check_images=check_images,
                saved_model_dir=tmp,
                **(limits or {}).get(kind, {}),
                **kwargs,
            )
    return results


def export_seed_recipe(model, path: str | os.PathLike, *, check_images=None) -> ExportResult:
    """The keras-io example's export, verbatim, followed by the same check as :func:`export_litert`.

    ``tf.saved_model.save(model, dir)`` + ``TFLiteConverter.from_saved_model(dir)`` with
    ``optimizations=[tf.lite.Optimize.DEFAULT]`` and ``supported_ops=[TFLITE_BUILTINS, SELECT_TF_OPS]``.
    Under TF 2.21 / Keras 3.15 the converter leaves Keras 3's variables unfrozen and the model outputs NaN,
    so this raises :class:`ExportCheckError` (its ``.report`` shows the NaNs, its ``.ops`` the file's ops)
    and leaves no file. It exists to demonstrate the check; don't use it to export.
    """
    tf = _tensorflow()

    started = time.perf_counter()
    path = Path(path)
    _, check_pixels, source = _prepare_images(model, "dynamic", None, check_images, 0)
    with tempfile.TemporaryDirectory(prefix="mvlib_seed_") as tmp:
        with _tf_info_logs_muted():
            tf.saved_model.save(model, tmp)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
        with native_stderr_captured():
            tflite = converter.convert()
    # Agreement alone can be met by chance when a model predicts one class for every check image; a
    # dynamic-range file of a working model stays far below 0.25 in every probability (0.04 measured on XXS).
    return _check_and_place(
        model, tflite, path, "dynamic", check_pixels, source, max_abs_diff=0.25, min_agreement=None, started=started
    )


# --------------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------------


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
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - start) * 1e3)
    times = np.asarray(times)
    return {
        "median_ms": float(np.median(times)),
        "p90_ms": float(np.percentile(times, 90)),
        "mean_ms": float(times.mean()),
        "min_ms": float(times.min()),
        "threads": threads,
        "runs": runs,
    }


def _infer_kind(tflite) -> str:
    """Best guess of how a file was exported, from its tensor types."""
    schema, model = _flatbuffer(tflite)
    subgraph = model.Subgraphs(0)
    t = schema.TensorType
    types = {subgraph.Tensors(i).Type() for i in range(subgraph.TensorsLength())}
    input_type = subgraph.Tensors(subgraph.Inputs(0)).Type()
    # full-integer models take integer input or QUANTIZE it first; dynamic-range ones have no QUANTIZE op
    if input_type in (t.UINT8, t.INT8) or "QUANTIZE" in list_ops(tflite):
        return "int8"
    if t.FLOAT16 in types:
        return "float16"
    if t.INT8 in types:
        return "dynamic"
    return "float32"


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
            "kind": _infer_kind(path),
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


def _machine() -> dict:
    return {
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }


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
    meta = {**(settings or {}), **_machine()}
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
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["file"], row["kind"], fmt(row["size_mb"], ".2f"), fmt(row["val_top1"], ".3f"), fmt(row["agreement"], ".3f")]
        for t in threads:
            cells += [fmt(row.get(f"latency_{t}t_median_ms"), ".1f"), fmt(row.get(f"latency_{t}t_p90_ms"), ".1f")]
        if ratio:
            cells.append(fmt(row.get("latency_vs_baseline"), ".2f") + ("x" if row.get("latency_vs_baseline") is not None else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------------

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
