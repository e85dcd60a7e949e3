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
  ``dynamic``  dynamic-range quantization: int8 weights, float activations between ops (the conv and dense
               kernels quantize their input to int8 on the fly), float32 I/O (~1/3.3 the size).
  ``float16``  float16 weights, dequantized to float32 at load time (~1/2 the size), float32 I/O.
  ``int8``     full-integer quantization calibrated on ``representative_images``, by the recipe of
               :mod:`mvlib.litert.quantize` (integer-friendly LayerNorm, attention matmuls and softmax
               kept float, ranges averaged over images): int8 weights and activations, **uint8 input**
               = the raw RGB pixels [0, 255] (scale ~1, zero point 0, because the model rescales
               internally -- an app feeds camera bytes as they are), and **float32 output** =
               probabilities (one DEQUANTIZE at the end, so callers need no output arithmetic).
               ``ExportResult.float_ops`` counts the ops that compute in float.

Every export is written to a temporary file next to ``path``, run through :func:`check_parity` against
the Keras model, and moved into place only if it passes; otherwise the temporary file is deleted and
:class:`ExportCheckError` (carrying the :class:`ParityReport`) is raised.

"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import mvlib
from mvlib.data.synthetic import synthetic_images
from mvlib.litert import quantize
from mvlib.litert.inspect import count_float_ops, list_ops
from mvlib.litert.parity import (
    KINDS,
    MAX_CHECK_IMAGES,
    ExportCheckError,
    ExportError,
    ParityReport,
    _collect_images,
    _model_image_size,
    check_parity,
)
from mvlib.litert.runtime import LiteRTRunner, native_stderr_captured

#: calibration images used for int8 at most (the converter runs each one through the float model).
MAX_CALIBRATION_IMAGES = 300


#: synthetic check images used when neither ``check_images`` nor ``representative_images`` is given.
NUM_SYNTHETIC_CHECK_IMAGES = 16


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


def _convert(saved_model_dir: str, kind: str, *, allow_flex: bool = False) -> bytes:
    """float32, dynamic or float16 through the converter's public API."""
    tf = _tensorflow()

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if kind != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if kind == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if allow_flex:
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    converter.target_spec.supported_ops = ops
    try:
        with native_stderr_captured():
            return converter.convert()
    except Exception as e:  # ConverterError and friends
        hint = "" if allow_flex else " (if it names ops outside the TFLite builtins, allow_flex=True adds Flex/Select TF ops)"
        raise ExportError(f"LiteRT conversion ({kind}) failed{hint}: {e}") from e


def _convert_int8(model, calibration: np.ndarray, batch_size: int | None) -> bytes:
    """int8 by the recipe of :mod:`mvlib.litert.quantize`, from its own SavedModel (integer-friendly LayerNorm)."""
    with tempfile.TemporaryDirectory(prefix="mvlib_int8_") as tmp:
        _write_saved_model(quantize.replace_layer_norms(model), tmp, batch_size)
        try:
            return quantize.int8_tflite(tmp, calibration)
        except Exception as e:  # the converter's errors, whatever their class
            raise ExportError(f"LiteRT conversion (int8) failed: {e}") from e


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
        float_ops=count_float_ops(tflite) if kind == "int8" else 0,
        parity=report,
        seconds=time.perf_counter() - started,
    )


def _prepare_images(model, kind, representative_images, check_images, max_calibration_images):
    """(calibration pixels or None, check pixels, where the check pixels came from)."""
    size = _model_image_size(model)
    calibration = None
    if kind == "int8":
        if representative_images is None:
            raise ValueError("kind='int8' needs representative_images (a few hundred training images) to calibrate")
        calibration = _collect_images(representative_images, size, max_calibration_images)
    if check_images is not None:
        return calibration, _collect_images(check_images, size, MAX_CHECK_IMAGES), "given"
    if representative_images is not None:
        pixels = calibration if calibration is not None else _collect_images(representative_images, size, 32)
        return calibration, pixels[:32], "representative"
    return calibration, synthetic_images(NUM_SYNTHETIC_CHECK_IMAGES, size), "synthetic"


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
        check_images: images for the parity check (same formats; at most 512). Default: the first 32
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
    if kind == "int8" and allow_flex:
        raise ValueError("allow_flex is for the float kinds; the int8 recipe uses builtin ops only")
    calibration, check_pixels, source = _prepare_images(model, kind, representative_images, check_images, max_calibration_images)
    if kind == "int8":
        tflite = _convert_int8(model, calibration, batch_size)
    elif saved_model_dir is not None:
        tflite = _convert(str(saved_model_dir), kind, allow_flex=allow_flex)
    else:
        with tempfile.TemporaryDirectory(prefix="mvlib_savedmodel_") as tmp:
            _write_saved_model(model, tmp, batch_size)
            tflite = _convert(tmp, kind, allow_flex=allow_flex)
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
