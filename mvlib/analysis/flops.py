"""Multiply-accumulates (MACs) of a Keras model, counted analytically from its layers.

What is counted, per image (batch 1):

* ``Conv2D``: ``out_h * out_w * out_c * k_h * k_w * in_c / groups``;
* ``DepthwiseConv2D``: ``out_h * out_w * out_c * k_h * k_w``;
* ``Dense``: ``tokens * in_dim * units`` (``tokens`` = every axis of the output except the last);
* ``MultiHeadAttention``: the four projections (Q, K, V, output) plus the two attention matmuls,
  ``QK^T`` (``heads * key_dim`` per score) and ``AV`` (``heads * value_dim`` per score). The number of
  scores depends on ``attention_axes``: tokens attend only along those axes, the other axes are batch.

Not counted (a few percent at most): biases, BatchNorm/LayerNorm, activations, softmax, pooling, resizes.
This is the usual convention of published MAC counts, which are often labelled FLOPs; in the strict
sense one MAC is two floating-point operations.

The paper's ``Unfold`` layer stacks the P sequences of an image into the batch axis, so the layers after
it see a batch of P per image. ``layer_macs`` follows each layer's batch factor through the graph (via
``compute_output_shape``), which is what makes the per-image attention count right for both layouts.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

import keras

__all__ = [
    "LayerMacs",
    "AttentionMacs",
    "StageSummary",
    "StageAttention",
    "layer_macs",
    "count_macs",
    "macs_by_stage",
    "attention_macs",
    "stage_summary",
    "attention_by_stage",
    "stage_of",
]


@dataclass(frozen=True)
class LayerMacs:
    """MACs of one layer for one image; ``parts`` splits attention into its projections and matmuls."""

    name: str
    kind: str  # the layer class name
    macs: int
    parts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AttentionMacs:
    """One MultiHeadAttention layer, per image: where its MACs go."""

    name: str
    heads: int
    key_dim: int
    query_shape: tuple  # per image, batch axis = the number of independent sequences
    attention_axes: tuple
    scores: int  # attention-matrix entries per head
    qk: int  # QK^T
    av: int  # attention-weighted values
    projections: int  # Q, K, V and output projections together

    @property
    def total(self) -> int:
        return self.qk + self.av + self.projections


def stage_of(layer_name: str) -> str:
    """``stage3_mvit_transformer0_attn`` -> ``stage3``: the prefix every mvlib layer name starts with."""
    return layer_name.split("_", 1)[0]


def _flat(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _batch_factors(model: keras.Model) -> dict[int, int]:
    """id(KerasTensor) -> how many rows of the batch axis one image occupies there (P after Unfold)."""
    factors = {id(t): 1 for t in model.inputs}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        inputs, outputs = _flat(layer.input), _flat(layer.output)
        f = factors.get(id(inputs[0]), 1)
        out_f = f
        if len(inputs) == 1 and len(outputs) == 1:
            try:
                shape = layer.compute_output_shape((f,) + tuple(inputs[0].shape[1:]))
                if shape and isinstance(shape[0], int):
                    out_f = shape[0]
            except Exception:  # noqa: BLE001  (layers that cannot say keep the input's factor)
                out_f = f
        for t in outputs:
            factors[id(t)] = out_f
    return factors


def _attention(layer: keras.layers.MultiHeadAttention, query_shape, key_shape, factor: int, name: str) -> AttentionMacs:
    q_in, heads, key_dim = layer.query_dense.kernel.shape
    k_in = layer.key_dense.kernel.shape[0]
    v_in, _, value_dim = layer.value_dense.kernel.shape
    d_out = layer.output_dense.kernel.shape[-1]
    axes = tuple(layer.attention_axes)  # set at build; None means all but batch and channels
    q_dims = (factor,) + tuple(query_shape[1:-1])  # per image; axis 0 = independent sequences
    k_dims = (factor,) + tuple(key_shape[1:-1])
    batch_like = math.prod(d for i, d in enumerate(q_dims) if i not in axes)
    q_tokens = math.prod(q_dims[i] for i in axes)
    k_tokens = math.prod(k_dims[i] for i in axes)
    scores = batch_like * q_tokens * k_tokens
    nq, nk = math.prod(q_dims), math.prod(k_dims)
    projections = nq * q_in * heads * key_dim + nk * k_in * heads * key_dim + nk * v_in * heads * value_dim
    projections += nq * heads * value_dim * d_out
    return AttentionMacs(
        name=name,
        heads=heads,
        key_dim=key_dim,
        query_shape=(factor,) + tuple(query_shape[1:]),
        attention_axes=axes,
        scores=scores,
        qk=heads * key_dim * scores,
        av=heads * value_dim * scores,
        projections=projections,
    )


def layer_macs(model: keras.Model) -> list[LayerMacs]:
    """Per-image MACs of every layer that has any (Conv2D, DepthwiseConv2D, Dense, MultiHeadAttention)."""
    factors = _batch_factors(model)
    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        inputs = _flat(layer.input)
        f = factors.get(id(inputs[0]), 1)
        if isinstance(layer, keras.layers.MultiHeadAttention):
            key = inputs[2] if len(inputs) > 2 else inputs[1]
            a = _attention(layer, inputs[0].shape, key.shape, f, layer.name)
            parts = {"projections": a.projections, "qk": a.qk, "av": a.av}
            rows.append(LayerMacs(layer.name, "MultiHeadAttention", a.total, parts))
            continue
        out = layer.output.shape
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            macs = f * math.prod(out[1:]) * kh * kw
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            in_c = inputs[0].shape[-1]
            macs = f * math.prod(out[1:]) * kh * kw * in_c // layer.groups
        elif isinstance(layer, keras.layers.Dense):
            macs = f * math.prod(out[1:-1]) * inputs[0].shape[-1] * out[-1]
        else:
            continue
        rows.append(LayerMacs(layer.name, type(layer).__name__, int(macs)))
    return rows


def count_macs(model: keras.Model) -> int:
    """Total per-image MACs of ``model`` (see the module docstring for what counts)."""
    return sum(r.macs for r in layer_macs(model))


def macs_by_stage(model: keras.Model) -> "OrderedDict[str, int]":
    """MACs summed by layer-name prefix (``stem``, ``stage1`` ... ``stage5``, ``final``, ``head``), in model order."""
    stages: OrderedDict[str, int] = OrderedDict()
    for r in layer_macs(model):
        stages[stage_of(r.name)] = stages.get(stage_of(r.name), 0) + r.macs
    return stages


def attention_macs(model: keras.Model) -> list[AttentionMacs]:
    """One entry per MultiHeadAttention layer, per image, in model order."""
    factors = _batch_factors(model)
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.MultiHeadAttention):
            inputs = _flat(layer.input)
            key = inputs[2] if len(inputs) > 2 else inputs[1]
            out.append(_attention(layer, inputs[0].shape, key.shape, factors[id(inputs[0])], layer.name))
    return out


@dataclass(frozen=True)
class StageSummary:
    """One stage of a model (layers sharing a name prefix): its output, weights and per-image MACs."""

    stage: str
    output_shape: tuple  # of the stage's last layer, batch axis None
    params: int  # including BatchNorm moving statistics, as Keras counts
    trainable: int
    macs: int


def stage_summary(model: keras.Model) -> list[StageSummary]:
    """Per-stage output shape, parameter counts and MACs, in model order (the input layer is skipped)."""
    macs = macs_by_stage(model)
    order: OrderedDict[str, list] = OrderedDict()
    for layer in model.layers:
        if not isinstance(layer, keras.layers.InputLayer):
            order.setdefault(stage_of(layer.name), []).append(layer)
    rows = []
    for stage, stage_layers in order.items():
        trainable = sum(math.prod(w.shape) for layer in stage_layers for w in layer.trainable_weights)
        rows.append(
            StageSummary(
                stage=stage,
                output_shape=tuple(stage_layers[-1].output.shape),
                params=sum(layer.count_params() for layer in stage_layers),
                trainable=int(trainable),
                macs=macs.get(stage, 0),
            )
        )
    return rows


@dataclass(frozen=True)
class StageAttention:
    """All MultiHeadAttention layers of one stage together, per image."""

    stage: str
    layers: int
    queries: int  # tokens that attend, per layer (all sequences together)
    keys_per_query: int  # how many tokens each query attends to
    heads: int
    key_dim: int
    qk: int
    av: int
    projections: int

    @property
    def matmuls(self) -> int:
        return self.qk + self.av

    @property
    def total(self) -> int:
        return self.qk + self.av + self.projections


def attention_by_stage(model: keras.Model) -> list[StageAttention]:
    """``attention_macs`` summed per stage (over the stage's L transformer layers), in model order."""
    groups: OrderedDict[str, list[AttentionMacs]] = OrderedDict()
    for a in attention_macs(model):
        groups.setdefault(stage_of(a.name), []).append(a)
    rows = []
    for stage, items in groups.items():
        first = items[0]
        queries = math.prod(first.query_shape[:-1])
        rows.append(
            StageAttention(
                stage=stage,
                layers=len(items),
                queries=queries,
                keys_per_query=first.scores // queries,
                heads=first.heads,
                key_dim=first.key_dim,
                qk=sum(a.qk for a in items),
                av=sum(a.av for a in items),
                projections=sum(a.projections for a in items),
            )
        )
    return rows
