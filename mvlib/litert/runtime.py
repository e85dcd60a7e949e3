"""Run exported LiteRT (``.tflite``) MobileViT models: a low-level runner and a user-facing predictor.

Everything here uses ``ai_edge_litert.interpreter.Interpreter`` (the standalone LiteRT runtime, the one
an app ships), never ``tf.lite.Interpreter``.

* :class:`LiteRTRunner` turns a batch of float32 pixels in [0, 255] into an ``(N, num_classes)``
  float32 array. It hides the three things that differ between export kinds: the input dtype (float32,
  or uint8/int8 with a scale and zero point for full-integer models -- it quantizes for you), the output
  dtype (dequantized for you), and the batch dimension (a batch-1 model is run image by image; a model
  exported with a dynamic batch is resized to the batch).
* :class:`LiteRTPredictor` adds the evaluation preprocessing (decode to RGB, bilinear resize to the
  model's input size, float32 in [0, 255]) and class names::

      predictor = LiteRTPredictor("artifacts/mobilevit_xxs_int8.tflite", class_names)
      predictor.predict("daisy.jpg", top_k=3)   # -> [[("daisy", 0.93), ("dandelion", 0.04), ...]]
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mvlib.data.images import preprocess_images


__all__ = ["LiteRTRunner", "LiteRTPredictor", "native_stderr_captured", "invoke_times"]


@contextlib.contextmanager
def native_stderr_captured():
    """Hold back what native (C/C++) code writes to file descriptor 2 inside the block.

    The LiteRT runtime announces "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." and the
    converter prints its quantization settings straight to fd 2, bypassing Python; in a notebook that text
    becomes a stderr output of the cell. What was written is dropped when the block succeeds and replayed on
    ``sys.stderr`` when it raises, so a real failure keeps its native diagnostics.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (some embedded interpreters): nothing to capture
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            if text.strip():
                sys.stderr.write(text)
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _interpreter(model: str | os.PathLike | bytes, num_threads: int | None = None):
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(model, (bytes, bytearray)):
        return Interpreter(model_content=bytes(model), num_threads=num_threads)
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"no LiteRT model at {str(path)!r}")
    return Interpreter(model_path=str(path), num_threads=num_threads)


class LiteRTRunner:
    """A ``.tflite`` image classifier as a function ``float32 pixels (N, H, W, 3) in [0, 255] -> (N, C)``.

    Args:
        model: path to a ``.tflite`` file, or its bytes.
        num_threads: interpreter threads (``None``: the runtime's default).
    """

    def __init__(self, model: str | os.PathLike | bytes, num_threads: int | None = None):
        self.interpreter = _interpreter(model, num_threads)
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"expected a model with one input and one output, got {len(inputs)} and {len(outputs)}")
        self._input, self._output = inputs[0], outputs[0]
        signature = [int(d) for d in self._input["shape_signature"]]
        if len(signature) != 4 or signature[3] != 3 or signature[1] <= 0 or signature[2] <= 0:
            raise ValueError(f"expected an image input of shape (batch, H, W, 3), got {signature}")
        self.dynamic_batch = signature[0] == -1
        self.image_size: tuple[int, int] = (signature[1], signature[2])
        self.input_dtype = np.dtype(self._input["dtype"])
        self.output_dtype = np.dtype(self._output["dtype"])
        self.num_classes = int(self._output["shape_signature"][-1])
        self._batch = 1 if self.dynamic_batch else signature[0]
        if self.dynamic_batch:
            self.interpreter.resize_tensor_input(self._input["index"], [1, *self.image_size, 3], strict=False)
        with native_stderr_captured():  # the XNNPACK delegate's "INFO: Created ..." line
            self.interpreter.allocate_tensors()

    # -- quantization ------------------------------------------------------------------------------
    def quantize_input(self, pixels: np.ndarray) -> np.ndarray:
        """float32 pixels -> the model's input dtype (round + clip with its scale/zero point if integer)."""
        pixels = np.asarray(pixels, np.float32)
        if self.input_dtype == np.float32:
            return pixels
        if self.input_dtype == np.float16:
            return pixels.astype(np.float16)
        scale, zero_point = self._input["quantization"]
        info = np.iinfo(self.input_dtype)
        q = np.round(pixels / scale + zero_point) if scale else np.round(pixels)
        return np.clip(q, info.min, info.max).astype(self.input_dtype)

    def dequantize_output(self, values: np.ndarray) -> np.ndarray:
        """The model's output -> float32 (``(q - zero_point) * scale`` for integer outputs)."""
        if np.issubdtype(values.dtype, np.integer):
            scale, zero_point = self._output["quantization"]
            return ((values.astype(np.float32) - zero_point) * (scale or 1.0)).astype(np.float32)
        return values.astype(np.float32)

    # -- running -----------------------------------------------------------------------------------
    def _resize_batch(self, n: int) -> None:
        if n != self._batch:
            self.interpreter.resize_tensor_input(self._input["index"], [n, *self.image_size, 3], strict=False)
            with native_stderr_captured():
                self.interpreter.allocate_tensors()
            self._batch = n

    def __call__(self, pixels: np.ndarray, *, max_batch: int = 32) -> np.ndarray:
        """Run a batch ``(N, H, W, 3)`` of float32 pixels in [0, 255]; returns float32 ``(N, num_classes)``."""
        pixels = np.asarray(pixels)
        if pixels.ndim == 3:
            pixels = pixels[None]
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (*self.image_size, 3):
            raise ValueError(f"expected pixels of shape (N, {self.image_size[0]}, {self.image_size[1]}, 3), got {pixels.shape}")
        step = max_batch if self.dynamic_batch else self._batch
        outputs = []
        for start in range(0, len(pixels), step):
            chunk = self.quantize_input(pixels[start : start + step])
            if self.dynamic_batch:
                self._resize_batch(len(chunk))
            elif len(chunk) < step:  # a fixed batch > 1 with a short last chunk: pad, then drop the padding
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - len(chunk), axis=0)])
            self.interpreter.set_tensor(self._input["index"], chunk)
            self.interpreter.invoke()
            out = self.dequantize_output(self.interpreter.get_tensor(self._output["index"]))
            outputs.append(out.reshape(len(chunk), -1)[: len(pixels) - start])
        if not outputs:
            return np.zeros((0, self.num_classes), np.float32)
        return np.concatenate(outputs)


# --------------------------------------------------------------------------------------------------
# Preprocessing (the evaluation pipeline's: decode to RGB, bilinear resize, float32 in [0, 255])
# --------------------------------------------------------------------------------------------------


class LiteRTPredictor:
    """Top-k class predictions from an exported ``.tflite`` MobileViT, for image files or pixel arrays.

    Works with every export kind (float32, dynamic, float16, int8 with uint8 input): the runner quantizes
    the input and dequantizes the output as the model requires.

    Args:
        tflite_path: the exported model.
        class_names: one name per output class, in the model's class order.
        num_threads: interpreter threads (``None``: the runtime's default).
    """

    def __init__(self, tflite_path: str | os.PathLike, class_names: Sequence[str], num_threads: int | None = None):
        self.runner = LiteRTRunner(tflite_path, num_threads=num_threads)
        self.class_names = [str(name) for name in class_names]
        if len(self.class_names) != self.runner.num_classes:
            raise ValueError(
                f"{len(self.class_names)} class names given, but the model has {self.runner.num_classes} outputs"
            )
        self.image_size = self.runner.image_size

    def predict_proba(self, images) -> np.ndarray:
        """Class probabilities ``(N, num_classes)`` for paths/arrays (see :func:`preprocess_images`)."""
        return self.runner(preprocess_images(images, self.image_size))

    def predict(self, images, top_k: int = 3) -> list[list[tuple[str, float]]]:
        """For each image (always a list, even for one image), its ``top_k`` ``(class_name, probability)``
        pairs, most probable first."""
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        probs = self.predict_proba(images)
        k = min(top_k, probs.shape[1])
        results = []
        for row in probs:
            order = np.argsort(-row, kind="stable")[:k]
            results.append([(self.class_names[j], float(row[j])) for j in order])
        return results


def invoke_times(interpreter, runs: int, warmup: int) -> np.ndarray:
    """Milliseconds of each of ``runs`` ``invoke()`` calls on the interpreter's current input, after ``warmup``."""
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - start) * 1e3)
    return np.asarray(times)
