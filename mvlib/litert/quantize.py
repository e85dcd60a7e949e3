"""Full-integer (int8) LiteRT that is worth shipping: the smallest file, as fast as float and nearly as accurate.

The converter's default int8 recipe gives this model a file that is *slower* than float32 and lost
~4.5 points of top-1 on 28-epoch weights (docs/experiments.md, "Full-integer int8"). A per-op profile (:mod:`mvlib.litert.opprofile`) says why: XNNPACK, the CPU
delegate LiteRT uses by default, has no int8 kernels for BATCH_MATMUL, SOFTMAX or SQUARED_DIFFERENCE,
so attention and every LayerNormalization fall back to LiteRT's slow reference kernels. The recipe here:

1. every ``LayerNormalization`` is swapped, for the int8 file only, for :class:`IntegerFriendlyLayerNorm`:
   the same function and weights written as MEAN, SUB, MUL, MEAN, ADD, RSQRT, MUL, ADD -- ops XNNPACK runs
   in int8 -- instead of Keras' SQUARED_DIFFERENCE / NEG formulation;
2. ``BATCH_MATMUL`` and ``SOFTMAX`` (:data:`FLOAT_OPS`) stay float (XNNPACK runs them in float in ~2.7
   ms; their int8 reference kernels took 33 ms), everything else is int8;
3. calibration ranges are the *mean over images* of each tensor's per-image min and max, not the global
   min/max over all images: one unusual photo no longer widens a range for every other one (agreement
   with Keras on the validation photos: 0.918 -> 0.982);
4. dense layers get one weight scale per tensor (no accuracy change measured, ~120 kB less), tensor
   names are shortened (~64 kB of Keras scope names).

The converter's public API cannot express 2 and 3, so this drives its two stages the way
``tf.lite.experimental.QuantizationDebugger`` does: calibrate (``_experimental_calibrate_only``), then
quantize the calibrated model (``mlir_quantize``) with a denylist; the ranges are replaced in between.
Needs TensorFlow; the float graph of the other exports is not touched.
"""

from __future__ import annotations

import copy
import csv
import io
import warnings
from collections import defaultdict
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from mvlib.litert.runtime import native_stderr_captured

#: ops kept float in the int8 file: XNNPACK runs them in float, not in int8.
FLOAT_OPS = ("BATCH_MATMUL", "SOFTMAX")
#: images the converter's own calibrator sees, only to produce the calibrated graph whose ranges are replaced.
STRUCTURE_IMAGES = 8


@keras.saving.register_keras_serializable(package="mvlib")
class IntegerFriendlyLayerNorm(layers.Layer):
    """``LayerNormalization(axis=-1)`` written with ops that XNNPACK runs in int8: no NEG, no
    SQUARED_DIFFERENCE. Same weights (``gamma``, ``beta``), same float outputs (to float rounding)."""

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        self.gamma = self.add_weight(name="gamma", shape=(input_shape[-1],), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(input_shape[-1],), initializer="zeros")

    def call(self, x):
        centred = x - ops.mean(x, axis=-1, keepdims=True)
        variance = ops.mean(centred * centred, axis=-1, keepdims=True)
        return centred * ops.rsqrt(variance + self.epsilon) * self.gamma + self.beta

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def replace_layer_norms(model: keras.Model) -> keras.Model:
    """A copy of the functional ``model`` with every last-axis ``LayerNormalization`` replaced by
    :class:`IntegerFriendlyLayerNorm` (same names, same weights)."""

    def clone(layer):
        if isinstance(layer, layers.LayerNormalization):
            ndim = len(layer.input.shape)
            axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
            if layer.rms_scaling or not (layer.center and layer.scale) or [a % ndim for a in axes] != [ndim - 1]:
                raise ValueError(f"{layer.name}: only a last-axis LayerNormalization with centre and scale can be replaced")
            return IntegerFriendlyLayerNorm(epsilon=layer.epsilon, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        copy.get_layer(layer.name).set_weights(layer.get_weights())
    return copy


# --------------------------------------------------------------------------------------------------
# The converter's two stages, with the ranges replaced in between
# --------------------------------------------------------------------------------------------------


def _one_at_a_time(images):
    def generate():
        for i in range(len(images)):
            yield [images[i : i + 1]]

    return generate


def calibrate(saved_model_dir: str, images: np.ndarray) -> bytes:
    """The float model annotated with the calibrator's per-tensor min/max (stage 1 of int8 conversion)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _one_at_a_time(np.asarray(images, np.float32))
    converter._experimental_calibrate_only = True  # as tf.lite.experimental.QuantizationDebugger does
    with native_stderr_captured():
        return converter.convert()


def per_image_ranges(tflite: bytes, images: np.ndarray) -> dict[str, tuple[float, float]]:
    """``{tensor name: (min, max)}``: every float tensor's min and max on each image, averaged over images.
    ``tflite`` may be the calibrated model itself: it is still a float model, and its tensor names
    are the ones :func:`apply_ranges` looks up."""
    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():  # "intended for debugging purposes only": keeping every tensor is the point
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
        interpreter = Interpreter(model_content=bytes(tflite), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    tensors = [t for t in interpreter.get_tensor_details() if t["dtype"] == np.float32]
    lows, highs = defaultdict(list), defaultdict(list)
    for image in np.asarray(images, np.float32):
        interpreter.set_tensor(index, image[None])
        interpreter.invoke()
        for t in tensors:
            try:
                value = interpreter.get_tensor(t["index"])
            except ValueError:  # a tensor the runtime did not keep
                continue
            if value.size:
                lows[t["name"]].append(float(value.min()))
                highs[t["name"]].append(float(value.max()))
    return {name: (float(np.mean(lows[name])), float(np.mean(highs[name]))) for name in lows}


def apply_ranges(calibrated: bytes, ranges: dict[str, tuple[float, float]], input_range=(0.0, 255.0)) -> bytes:
    """``calibrated`` with every recorded min/max replaced by ``ranges[name]`` (widened to contain 0); the
    graph's input gets ``input_range``, the pixels' own, so uint8 camera bytes go in unchanged (scale 1)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated))
    graph = model.subgraphs[0]
    missing = []
    for index, tensor in enumerate(graph.tensors):
        q = tensor.quantization
        if q is None or q.min is None or not len(q.min):
            continue
        name = tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name
        if index in graph.inputs:
            low, high = input_range
        elif name in ranges:
            low, high = ranges[name]
        else:
            missing.append(name)
            continue
        q.min, q.max = np.array([min(low, 0.0)], np.float32), np.array([max(high, 0.0)], np.float32)
    if missing:
        raise KeyError(f"{len(missing)} calibrated tensors have no per-image range, e.g. {missing[:3]}")
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def quantize_calibrated(calibrated: bytes, float_ops=FLOAT_OPS) -> bytes:
    """Stage 2: full-integer quantization -- uint8 input (raw pixels), float32 output, ``float_ops`` kept
    float, per-channel weights for convolutions, per-tensor for dense layers."""
    import tensorflow as tf
    from tensorflow.lite.python import convert

    with native_stderr_captured():
        quantized = convert.mlir_quantize(
            calibrated,
            fully_quantize=True,
            output_data_type=tf.float32,
            denylisted_ops=list(float_ops) or None,
            disable_per_channel_for_dense_layers=True,
        )
    return app_io(quantized)


def app_io(tflite: bytes) -> bytes:
    """The app-facing I/O: uint8 pixels in (a QUANTIZE to the int8 input: same scale, zero point + 128), so
    an app feeds the camera's bytes as they are; float32 probabilities out (a DEQUANTIZE after the int8
    output). With a denylist the quantizer leaves both int8, whatever it is asked for."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    graph = model.subgraphs[0]
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]

    def opcode(builtin) -> int:
        if builtin not in codes:
            code = schema.OperatorCodeT()
            code.builtinCode = code.deprecatedBuiltinCode = builtin
            code.version = 1
            model.operatorCodes.append(code)
            codes.append(builtin)
        return codes.index(builtin)

    def retyped(index: int, tensor_type, suffix: bytes) -> int:
        """A copy of tensor ``index`` with another type, taking over its name; returns the copy's index."""
        tensor = graph.tensors[index]
        new = copy.deepcopy(tensor)
        new.type, new.buffer = tensor_type, 0
        tensor.name = (tensor.name or b"t") + suffix
        graph.tensors.append(new)
        return len(graph.tensors) - 1

    renamed = {}
    old = graph.inputs[0]
    if graph.tensors[old].type == schema.TensorType.INT8:
        new = retyped(old, schema.TensorType.UINT8, b"_int8")
        graph.tensors[new].quantization.zeroPoint = np.asarray(graph.tensors[old].quantization.zeroPoint) + 128
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = opcode(schema.BuiltinOperator.QUANTIZE), [new], [old]
        graph.operators.insert(0, op)
        renamed[old] = new
    old = graph.outputs[0]
    if graph.tensors[old].type == schema.TensorType.INT8:
        new = retyped(old, schema.TensorType.FLOAT32, b"_int8")
        graph.tensors[new].quantization = None
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = opcode(schema.BuiltinOperator.DEQUANTIZE), [old], [new]
        graph.operators.append(op)
        renamed[old] = new
    graph.inputs = [renamed.get(i, i) for i in graph.inputs]
    graph.outputs = [renamed.get(i, i) for i in graph.outputs]
    for signature in model.signatureDefs or []:
        for entry in (signature.inputs or []) + (signature.outputs or []):
            entry.tensorIndex = renamed.get(entry.tensorIndex, entry.tensorIndex)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def shorten_names(tflite: bytes) -> bytes:
    """The same model with tensor names ``t<index>`` (the graph's inputs and outputs keep theirs)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    for subgraph in model.subgraphs:
        keep = set(subgraph.inputs) | set(subgraph.outputs)
        for i, tensor in enumerate(subgraph.tensors):
            if i not in keep:
                tensor.name = f"t{i}".encode()
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def int8_tflite(saved_model_dir: str, calibration_images: np.ndarray) -> bytes:
    """The recipe, stages 1-2 and the renaming, on the SavedModel of a :func:`replace_layer_norms` model."""
    images = np.asarray(calibration_images, np.float32)
    calibrated = calibrate(saved_model_dir, images[:STRUCTURE_IMAGES])
    calibrated = apply_ranges(calibrated, per_image_ranges(calibrated, images))
    return shorten_names(quantize_calibrated(calibrated))


# --------------------------------------------------------------------------------------------------
# Where the bytes and the errors are
# --------------------------------------------------------------------------------------------------


def size_breakdown(tflite) -> dict[str, int]:
    """Bytes by what they hold: constant buffers by type (INT8 weights, INT32 biases, ...), quantization
    scales / zero points, tensor names, and the rest (flatbuffer tables, shapes, operators)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    raw = bytes(tflite) if isinstance(tflite, (bytes, bytearray)) else Path(tflite).read_bytes()
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(raw))
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    out, seen = defaultdict(int), set()
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            out["tensor names"] += len(tensor.name or b"")
            q = tensor.quantization
            if q is not None:
                for label, values in (("quantization scales", q.scale), ("quantization zero points", q.zeroPoint)):
                    if values is not None:
                        out[label] += np.asarray(values).nbytes
            buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
            if buffer is not None and buffer.data is not None and len(buffer.data) and tensor.buffer not in seen:
                seen.add(tensor.buffer)
                out[f"{type_names.get(tensor.type, tensor.type)} constants"] += len(buffer.data)
    out = dict(sorted(out.items(), key=lambda kv: -kv[1]))
    out["the rest (tables, shapes, operators)"] = len(raw) - sum(out.values())
    return out


def layer_errors(saved_model_dir: str, calibration_images: np.ndarray, debug_images: np.ndarray) -> list[dict]:
    """Per-layer quantization error of the converter's *default* int8 recipe (global min/max ranges),
    from ``tf.lite.experimental.QuantizationDebugger``: one row per quantized tensor with its op, name and
    ``rmse_per_scale`` -- the root-mean-square error in units of the tensor's quantization step (0.29 is
    the error of ideal rounding), largest first."""
    import tensorflow as tf
    from tensorflow.lite.python import convert

    calibrated = calibrate(saved_model_dir, calibration_images)
    # The debugger runs on tf.lite.Interpreter (deprecated in favour of ai_edge_litert, which it predates)
    # and averages empty metric lists for unquantized tensors: neither warning is ours to act on.
    with native_stderr_captured(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        debug_model = convert.mlir_quantize(calibrated, fully_quantize=False, enable_numeric_verify=True)
        debugger = tf.lite.experimental.QuantizationDebugger(
            quant_debug_model_content=debug_model,
            debug_dataset=_one_at_a_time(np.asarray(debug_images, np.float32)),
        )
        debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    rows = []
    for row in csv.DictReader(io.StringIO(dump.getvalue())):
        scale = float(row["scale"])
        rows.append({"op": row["op_name"], "tensor": row["tensor_name"],
                     "rmse_per_scale": float(np.sqrt(float(row["mean_squared_error"]))) / scale if scale else float("nan")})
    return sorted(rows, key=lambda r: -r["rmse_per_scale"])
