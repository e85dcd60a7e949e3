"""bench/shifted_depthwise.py, issue 15's experiment: the depthwise convolution as a sum of shifted copies
computes what keras.layers.DepthwiseConv2D computes (outputs and gradients), and a model copy with every
such layer swapped keeps the model's outputs and weights."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import mvlib  # noqa: F401  (selects the TensorFlow backend before keras is imported)
import keras
import tensorflow as tf

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("shifted_depthwise", ROOT / "bench" / "shifted_depthwise.py")
shifted = importlib.util.module_from_spec(spec)
sys.modules["shifted_depthwise"] = shifted
spec.loader.exec_module(shifted)


@pytest.mark.parametrize("kernel_size, strides, padding", [(3, 1, "same"), (3, 2, "same"), (3, 2, "valid"), (5, 1, "same"), (5, 3, "valid")])
def test_outputs_and_gradients_match_the_grouped_convolution(kernel_size, strides, padding):
    rng = np.random.default_rng(kernel_size * 10 + strides)
    x = tf.constant(rng.normal(size=(2, 9, 10, 6)).astype("float32"))  # odd sizes: "same" pads unevenly
    config = dict(kernel_size=kernel_size, strides=strides, padding=padding, use_bias=True, activation="silu")
    reference, swapped = keras.layers.DepthwiseConv2D(**config), shifted.ShiftedDepthwiseConv2D(**config)
    reference.build(x.shape), swapped.build(x.shape)
    weights = [rng.normal(size=w.shape).astype("float32") for w in reference.weights]
    reference.set_weights(weights), swapped.set_weights(weights)
    results = []
    for layer in (reference, swapped):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * tf.cos(y))  # any scalar that weighs every output differently
        results.append([y, *tape.gradient(loss, [x, *layer.trainable_weights])])
    assert results[0][0].shape == results[1][0].shape
    for a, b in zip(*results):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)


def test_unsupported_settings_are_refused():
    with pytest.raises(ValueError, match="depth_multiplier 1"):
        shifted.ShiftedDepthwiseConv2D(kernel_size=3, depth_multiplier=2)


def test_a_model_copy_swaps_every_depthwise_layer_and_keeps_outputs():
    from mvlib.model import create_mobilevit

    model = create_mobilevit("xxs", 5, 64)
    copy = shifted.with_shifted_depthwise(model)
    depthwise = [layer.name for layer in model.layers if type(layer) is keras.layers.DepthwiseConv2D]
    assert len(depthwise) == 7
    assert all(isinstance(copy.get_layer(name), shifted.ShiftedDepthwiseConv2D) for name in depthwise)
    assert [w.path for w in copy.weights] == [w.path for w in model.weights]
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(copy(x, training=False)), np.asarray(model(x, training=False)), atol=1e-6)
