"""MAC counts, cross-checked against numbers worked out by hand."""

import keras
import numpy as np
import pytest

import mvlib  # noqa: F401
from mvlib.analysis import flops
from mvlib.model import blocks
from mvlib.model import create_mobilevit, parameter_counts


def small_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", name="a_conv")(inputs)  # 8*8*16 * 3*3*3
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", name="b_dw")(x)  # 4*4*16 * 3*3
    x = keras.layers.Conv2D(8, 1, groups=2, name="c_grouped")(x)  # 4*4*8 * 16/2
    x = keras.layers.Reshape((16, 8), name="d_reshape")(x)
    x = keras.layers.Dense(7, name="e_dense")(x)  # 16 tokens * 8 * 7
    return keras.Model(inputs, x)


def test_convolutions_and_dense_by_hand():
    rows = {r.name: r.macs for r in flops.layer_macs(small_model())}
    assert rows == {"a_conv": 27_648, "b_dw": 2_304, "c_grouped": 1_024, "e_dense": 896}
    assert flops.count_macs(small_model()) == 27_648 + 2_304 + 1_024 + 896


def test_transformer_layer_by_hand():
    n, d, heads = 16, 8, 2
    inputs = keras.Input((n, d))
    model = keras.Model(inputs, blocks.transformer_layer(inputs, heads, 2 * d, name="t"))
    (attn,) = flops.attention_macs(model)
    assert attn.scores == n * n  # per head
    assert attn.qk == attn.av == heads * (d // heads) * n * n
    assert attn.projections == 4 * n * d * d  # Q, K, V, output: each d -> d
    ffn = n * d * 2 * d + n * 2 * d * d
    assert flops.count_macs(model) == attn.total + ffn


def test_unfold_makes_four_sequences_per_image():
    """Layers after Unfold see a batch of 4 per image; the attention count must include all 4."""
    inputs = keras.Input((8, 8, 6))
    model = keras.Model(inputs, blocks.mobilevit_block(inputs, dim=8, depth=1, num_heads=2, name="m"))
    (attn,) = flops.attention_macs(model)
    assert attn.query_shape == (4, 16, 8)
    assert attn.scores == 4 * 16 * 16
    ffn1 = [r for r in flops.layer_macs(model) if r.name == "m_transformer0_ffn1"][0]
    assert ffn1.macs == 64 * 8 * 16  # all 64 tokens of the image, not 16


@pytest.fixture(scope="module")
def models():
    return {v: create_mobilevit(v) for v in ("keras-io", "xxs")}


def test_full_models_by_hand(models):
    for model in models.values():
        stages = flops.macs_by_stage(model)
        assert stages["stem"] == 128 * 128 * 16 * 3 * 3 * 3
        # MV2 16 -> 32 -> 16 at 128x128: expand, depthwise 3x3, project
        assert stages["stage1"] == 128 * 128 * (16 * 32 + 32 * 9 + 32 * 16)
    paper = flops.attention_macs(models["xxs"])[0]
    kerasio = flops.attention_macs(models["keras-io"])[0]
    # stage 3, 32x32 map, d = 64: paper 4 heads x 16 within 4 sequences of 256 tokens ...
    assert paper.qk == 4 * 16 * (4 * 256 * 256)
    # ... keras-io 2 heads x 64 over all 1,024 pixels: 8x the matmuls, 2x the projections
    assert kerasio.qk == 2 * 64 * (1024 * 1024)
    assert kerasio.qk == 8 * paper.qk and kerasio.av == 8 * paper.av
    assert kerasio.projections == 2 * paper.projections
    assert 0.40e9 < flops.count_macs(models["xxs"]) < 0.42e9  # the paper's ~0.4 G "FLOPs" (MACs)


def test_attention_by_stage_sums_layers(models):
    stages = flops.attention_by_stage(models["xxs"])
    assert [(s.stage, s.layers, s.keys_per_query) for s in stages] == [("stage3", 2, 256), ("stage4", 4, 64), ("stage5", 3, 16)]
    assert sum(s.total for s in stages) == sum(a.total for a in flops.attention_macs(models["xxs"]))
    assert [s.keys_per_query for s in flops.attention_by_stage(models["keras-io"])] == [1024, 256, 64]


def test_stage_summary_adds_up(models):
    for model in models.values():
        rows = flops.stage_summary(model)
        assert [r.stage for r in rows] == ["rescale", "stem", "stage1", "stage2", "stage3", "stage4", "stage5", "final", "head"]
        assert (sum(r.params for r in rows), sum(r.trainable for r in rows)) == parameter_counts(model)
        assert sum(r.macs for r in rows) == flops.count_macs(model)
        assert rows[-1].output_shape == (None, 5)
    assert flops.stage_summary(models["keras-io"])[4].output_shape == (None, 32, 32, 64)  # d, not C = 48
    assert np.all([flops.stage_of(n) == "stage3" for n in ("stage3_mvit_transformer0_attn", "stage3_mv2_add")])
