"""What is inside a ``.tflite`` file, read from its flatbuffer (no interpreter, no delegate)."""

from __future__ import annotations

import collections
from pathlib import Path

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


def count_float_ops(tflite) -> int:
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


def infer_kind(tflite) -> str:
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
