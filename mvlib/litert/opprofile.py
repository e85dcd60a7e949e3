"""Where a ``.tflite`` file spends its time, op by op.

LiteRT's Python interpreter has no op profiler, so every operator of the graph is cut out into a one-op
model (its constants -- weights, biases, quantization parameters -- kept, its other inputs made graph
inputs) and timed alone with the runtime's default settings (the XNNPACK delegate, ``threads``). Whether
XNNPACK took the op is read from the interpreter's node list. Summed per op type this gives "op type ->
total ms". The sum of the parts is not the whole model's latency: running ops together adds delegate
partitions and layout changes, and caches behave differently -- compare files by their totals, look at the
parts to see why. Needs TensorFlow (its flatbuffer tools).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from pathlib import Path

import numpy as np

from mvlib.litert.runtime import invoke_times, native_stderr_captured


def split_ops(tflite) -> list[tuple[str, bytes]]:
    """``[(op type, one-op model)]`` for every operator of the main subgraph, in graph order."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    raw = bytes(tflite) if isinstance(tflite, (bytes, bytearray)) else Path(tflite).read_bytes()
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(raw))
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    graph = model.subgraphs[0]
    result = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        op_type = op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), f"CUSTOM:{code.customCode}")
        one = schema.ModelT()
        one.version, one.operatorCodes, one.buffers = model.version, [copy.copy(code)], [schema.BufferT()]
        tensors, remap, inputs = [], {}, []

        def take(i, is_input):
            if i < 0:
                return -1
            if i not in remap:
                tensor = copy.copy(graph.tensors[i])
                buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
                if buffer is not None and buffer.data is not None and len(buffer.data):
                    one.buffers.append(copy.copy(buffer))
                    tensor.buffer = len(one.buffers) - 1
                else:
                    tensor.buffer = 0
                    if is_input:
                        inputs.append(len(tensors))
                tensors.append(tensor)
                remap[i] = len(tensors) - 1
            return remap[i]

        node = copy.copy(op)
        node.opcodeIndex = 0
        node.inputs = [take(i, True) for i in op.inputs]
        node.outputs = [take(i, False) for i in op.outputs]
        if op.intermediates is not None and len(op.intermediates):
            node.intermediates = [take(i, False) for i in op.intermediates]
        subgraph = schema.SubGraphT()
        subgraph.tensors, subgraph.inputs, subgraph.outputs, subgraph.operators = tensors, inputs, list(node.outputs), [node]
        one.subgraphs, one.signatureDefs, one.metadata, one.metadataBuffer = [subgraph], [], [], []
        result.append((op_type, bytes(flatbuffer_utils.convert_object_to_bytearray(one))))
    return result


def _timed(content: bytes, threads: int, runs: int, warmup: int, rng) -> tuple[float, bool]:
    from ai_edge_litert.interpreter import Interpreter

    with native_stderr_captured():
        interpreter = Interpreter(model_content=content, num_threads=threads)
        interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        dtype = np.dtype(detail["dtype"])
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            value = rng.integers(max(info.min, -100), min(info.max, 100), size=detail["shape"]).astype(dtype)
        else:  # positive-ish, so RSQRT and friends stay finite
            value = (rng.standard_normal(detail["shape"]) + 2.0).astype(dtype)
        interpreter.set_tensor(detail["index"], value)
    delegated = any("DELEGATE" in str(node["op_name"]).upper() for node in interpreter._get_ops_details())
    return float(np.median(invoke_times(interpreter, runs, warmup))), delegated


def profile_ops(tflite, threads: int = 1, runs: int = 20, warmup: int = 3, seed: int = 0) -> list[dict]:
    """One row per operator: ``{"op", "ms", "xnnpack"}`` (median ms of ``runs`` invokes; ``ms`` is NaN for
    an op that cannot run alone)."""
    rng = np.random.default_rng(seed)
    rows = []
    for op_type, content in split_ops(tflite):
        try:
            ms, delegated = _timed(content, threads, runs, warmup, rng)
        except (RuntimeError, ValueError):  # an op that cannot run on its own: counted, not timed
            ms, delegated = float("nan"), False
        rows.append({"op": op_type, "ms": ms, "xnnpack": delegated})
    return rows


def by_op_type(rows: list[dict]) -> dict[str, dict]:
    """``{op type: {"ms", "count", "xnnpack"}}`` (totals; ``xnnpack`` counts the delegated ones), largest first."""
    totals = defaultdict(lambda: {"ms": 0.0, "count": 0, "xnnpack": 0})
    for row in rows:
        entry = totals[row["op"]]
        entry["ms"] += 0.0 if np.isnan(row["ms"]) else row["ms"]
        entry["count"] += 1
        entry["xnnpack"] += bool(row["xnnpack"])
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]["ms"]))


def plot_profiles(profiles: dict[str, list[dict]], top: int = 12, size: tuple = (8.5, 4.2)):
    """Bars of total ms per op type, one bar per file (``{label: profile_ops rows}``), the ``top`` costliest types."""
    import matplotlib.pyplot as plt

    tables = {label: by_op_type(rows) for label, rows in profiles.items()}
    ops = sorted({op for t in tables.values() for op in t}, key=lambda op: -max(t.get(op, {"ms": 0.0})["ms"] for t in tables.values()))[:top]
    fig, ax = plt.subplots(figsize=size)
    height = 0.8 / len(tables)
    for k, (label, table) in enumerate(tables.items()):
        ax.barh(np.arange(len(ops)) + k * height, [table.get(op, {"ms": 0.0})["ms"] for op in ops], height=height, label=label)
    ax.set_yticks(np.arange(len(ops)) + height * (len(tables) - 1) / 2, ops)
    ax.invert_yaxis()
    ax.set_xlabel("ms per inference, summed over the ops of a type (each op timed alone, 1 thread)")
    ax.legend()
    fig.tight_layout()
    return fig
