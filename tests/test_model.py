"""Parameter counts and shapes of every block and variant, and clear errors for bad arguments.

Expected numbers are computed here from PyTorch-style formulas (weights + biases + BN affine), not read
back from Keras, so a wrong layer shows up as a wrong count.
"""

import keras
import numpy as np
import pytest

import mvlib  # noqa: F401
from mvlib.model import blocks, kerasio
from mvlib.model import create_mobilevit


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def block_model(builder, input_shape, **kwargs):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, builder(inputs, **kwargs))


# --- blocks -----------------------------------------------------------------------------------------


def conv_params(k, cin, cout, bias=False):
    return k * k * cin * cout + (cout if bias else 0)


def bn(c):
    return 2 * c  # gamma, beta (moving mean/var are non-trainable)


def mv2_params(cin, hidden, cout):
    return conv_params(1, cin, hidden) + bn(hidden) + 9 * hidden + bn(hidden) + conv_params(1, hidden, cout) + bn(cout)


def transformer_params(d, ffn):
    attention = 4 * (d * d + d)
    return 2 * bn(d) + attention + (d * ffn + ffn) + (ffn * d + d)


@pytest.mark.parametrize("strides,size_out", [(1, 32), (2, 16)])
def test_conv_bn_act(strides, size_out):
    m = block_model(blocks.conv_bn_act, (32, 32, 8), filters=16, kernel_size=3, strides=strides, name="c")
    assert m.output_shape == (None, size_out, size_out, 16)
    assert trainable(m) == conv_params(3, 8, 16) + bn(16)


@pytest.mark.parametrize("cin,cout,strides,residual", [(16, 16, 1, True), (16, 24, 1, False), (16, 24, 2, False)])
def test_inverted_residual(cin, cout, strides, residual):
    m = block_model(blocks.inverted_residual, (32, 32, cin), expanded_channels=2 * cin, output_channels=cout, strides=strides, name="b")
    assert m.output_shape == (None, 32 // strides, 32 // strides, cout)
    assert trainable(m) == mv2_params(cin, 2 * cin, cout)
    assert any(layer.name == "b_add" for layer in m.layers) == residual


def test_paper_stride2_pads_symmetrically():
    """PyTorch pads 1 pixel on every side; keras-io's correct_pad pads (0, 1) on an even map."""
    m = block_model(blocks.conv_bn_act, (8, 8, 1), filters=1, strides=2, name="c")
    assert m.get_layer("c_pad").padding == ((1, 1), (1, 1))
    assert kerasio.correct_pad(keras.Input((8, 8, 1)), 3) == ((0, 1), (0, 1))
    assert kerasio.correct_pad(keras.Input((7, 7, 1)), 3) == ((1, 1), (1, 1))


def test_transformer_layer():
    m = block_model(blocks.transformer_layer, (64, 80), num_heads=4, ffn_dim=160, name="t")
    assert m.output_shape == (None, 64, 80)
    assert trainable(m) == transformer_params(80, 160)


@pytest.mark.parametrize("size", [8, 5])  # 5x5: the map of a 160 px input at stage 5
def test_mobilevit_block(size):
    c, d, depth = 48, 64, 2
    m = block_model(blocks.mobilevit_block, (size, size, c), dim=d, depth=depth, name="mv")
    assert m.output_shape == (None, size, size, c)
    expected = (
        conv_params(3, c, c) + bn(c) + conv_params(1, c, d)  # local rep
        + depth * transformer_params(d, 2 * d) + bn(d)  # transformer + final LayerNorm
        + conv_params(1, d, c) + bn(c) + conv_params(3, 2 * c, c) + bn(c)  # projection + fusion
    )
    assert trainable(m) == expected


def test_kerasio_blocks():
    m = block_model(kerasio.conv_block, (32, 32, 3), filters=16, name="k")
    assert m.output_shape == (None, 16, 16, 16) and trainable(m) == conv_params(3, 3, 16, bias=True)
    m = block_model(kerasio.inverted_residual_block, (32, 32, 16), expanded_channels=32, output_channels=24, strides=2, name="k")
    assert m.output_shape == (None, 16, 16, 24) and trainable(m) == mv2_params(16, 32, 24)
    m = block_model(kerasio.mobilevit_block, (8, 8, 48), num_blocks=2, projection_dim=64, name="k")
    d = 64
    # MHA with 2 heads of width d: q/k/v d->2d with bias, output 2d->d with bias
    attention = 3 * (d * 2 * d + 2 * d) + (2 * d * d + d)
    kerasio_transformer = 2 * bn(d) + attention + (d * 2 * d + 2 * d) + (2 * d * d + d)
    expected = (
        conv_params(3, 48, d, bias=True) + conv_params(1, d, d, bias=True)  # local features
        + 2 * kerasio_transformer
        + conv_params(1, d, 48, bias=True) + conv_params(3, 96, d, bias=True)  # folded + fused
    )
    assert m.output_shape == (None, 8, 8, d) and trainable(m) == expected


# --- whole models -------------------------------------------------------------------------------------


def test_kerasio_model_matches_the_example_exactly():
    m = create_mobilevit("keras-io", 5, 256)
    assert m.count_params() == 1_307_621
    assert trainable(m) == 1_305_077


# Hugging Face transformers' PyTorch MobileViTForImageClassification parameter counts. Keras' totals
# also include BatchNorm moving statistics (buffers in PyTorch), so compare trainable parameters.
REFERENCE = {("xxs", 1000): 1_272_024, ("xxs", 5): 952_629, ("xs", 1000): 2_317_848,
             ("xs", 5): 1_934_773, ("s", 1000): 5_578_632, ("s", 5): 4_940_837}


@pytest.mark.parametrize("variant,num_classes", list(REFERENCE))
def test_paper_variants_match_reference_counts(variant, num_classes):
    assert trainable(create_mobilevit(variant, num_classes, 256)) == REFERENCE[variant, num_classes]


def test_stage_shapes_xxs():
    m = create_mobilevit("xxs", 5, 256)
    expected = {"stem_silu": 128, "stage1_mv2_0_project_bn": 128, "stage2_mv2_2_add": 64,
                "stage3_mvit_fusion_silu": 32, "stage4_mvit_fusion_silu": 16, "stage5_mvit_fusion_silu": 8}
    for name, size in expected.items():
        assert m.get_layer(name).output.shape[1:3] == (size, size), name
    assert m.output_shape == (None, 5)


@pytest.mark.parametrize("size", [160, 192, 288, 320])
def test_xxs_runs_at_multi_scale_sizes(size):
    m = create_mobilevit("xxs", 5, size)
    probs = np.asarray(m(np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype("float32")))
    assert probs.shape == (1, 5)
    np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-5)
    assert trainable(m) == REFERENCE["xxs", 5]  # size-independent


def test_logits_option():
    m = create_mobilevit("xxs", 3, 64, classifier_activation=None)
    assert m.get_layer("head_classifier").activation.__name__ == "linear"


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(variant="xxxs"), "valid variants: keras-io, xxs, xs, s"),
        (dict(image_size=250), "multiple of 32"),
        (dict(image_size=0), "multiple of 32"),
        (dict(num_classes=0), "num_classes must be an integer >= 1"),
        (dict(num_classes=2.5), "num_classes"),
        (dict(variant="keras-io", image_size=160), "multiple of 64"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_mobilevit(**kwargs)


def test_initial_weights_are_distinct_per_layer_and_follow_the_seed():
    def kernels(seed):
        keras.utils.set_random_seed(seed)
        model = create_mobilevit("xxs", 5, 64)
        return {v.path: np.asarray(v) for v in model.trainable_weights if v.path.endswith("kernel")}

    first, again, other = kernels(0), kernels(0), kernels(1)
    seen = {}
    for path, value in first.items():  # no two layers start from the same draw
        twin = seen.setdefault((value.shape, value.tobytes()), path)
        assert twin == path, f"{path} starts identical to {twin}"
    assert all(np.array_equal(first[p], again[p]) for p in first)  # the seed decides them ...
    assert not any(np.array_equal(first[p], other[p]) for p in first)  # ... and only the seed


def test_initial_weights_are_drawn_like_ml_cvnets_draws_them_in_pytorch():
    """Each kernel's spread against PyTorch's own initializer on the PyTorch-shaped tensor (the two count
    fans differently for depthwise kernels); the tolerance is ~4 standard errors of a std estimate."""
    torch = pytest.importorskip("torch")
    keras.utils.set_random_seed(0)
    torch.manual_seed(0)
    model = create_mobilevit("xxs", 5, 64)
    checked = 0
    for v in model.trainable_weights:
        if not v.path.endswith("kernel"):
            continue
        w = np.asarray(v)
        if w.ndim == 4:  # Keras (k, k, in, out) -> PyTorch (out, in, k, k); depthwise (k, k, C, 1) -> (C, 1, k, k)
            k, _, cin, cout = w.shape
            reference = torch.empty((cin, 1, k, k) if "dwconv" in v.path else (cout, cin, k, k))
            torch.nn.init.kaiming_normal_(reference, mode="fan_out")
        else:  # the linears, attention's included
            reference = torch.nn.init.trunc_normal_(torch.empty(w.size), std=0.02)
        assert w.std() == pytest.approx(float(reference.std()), rel=4 / np.sqrt(w.size)), v.path
        checked += 1
    assert checked > 40


@pytest.mark.parametrize("variant, own", [("keras-io", 0.99), ("xxs", 0.9)])
def test_bn_momentum_defaults_to_the_variant_s_own_and_can_be_set_for_any(variant, own):
    def momenta(model):
        return {layer.momentum for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}

    assert momenta(create_mobilevit(variant, 5, 64)) == {own}
    model = create_mobilevit(variant, 5, 64, bn_momentum=0.8)
    assert momenta(model) == {0.8}
    assert {layer["config"]["momentum"] for layer in model.get_config()["layers"]
            if layer["class_name"] == "BatchNormalization"} == {0.8}  # and it is saved with the model
