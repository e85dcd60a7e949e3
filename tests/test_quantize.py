"""The int8 recipe's pieces: the integer-friendly LayerNorm computes what Keras' does and the swap keeps
the model's outputs. The int8 file itself (its ops, size and op profiles) is tested in test_export.py,
which exports it once for all its tests. Small models at 64 px, so it stays quick."""

import numpy as np
import pytest

import mvlib  # noqa: F401  (selects the TensorFlow backend before keras is imported)
import keras
from keras import layers

from mvlib.data import synthetic_images
from mvlib.litert import quantize
from mvlib.model import create_mobilevit

SIZE = 64


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(1)
    return create_mobilevit("xxs", num_classes=5, image_size=SIZE)


@pytest.mark.parametrize("epsilon", [1e-5, 1e-6])
def test_integer_friendly_layer_norm_is_layer_normalization(epsilon):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 16, 48)) * 3 + 5).astype("float32")  # an offset, as activations have
    weights = [rng.standard_normal(48).astype("float32"), rng.standard_normal(48).astype("float32")]
    reference, ours = layers.LayerNormalization(epsilon=epsilon), quantize.IntegerFriendlyLayerNorm(epsilon=epsilon)
    for layer in (reference, ours):
        layer.build(x.shape)
        layer.set_weights(weights)
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(reference(x)), atol=2e-5)


def test_replacing_the_layer_norms_keeps_the_outputs(model):
    swapped = quantize.replace_layer_norms(model)
    kinds = {type(layer).__name__ for layer in swapped.layers}
    assert "LayerNormalization" not in kinds and "IntegerFriendlyLayerNorm" in kinds
    assert [layer.name for layer in swapped.layers] == [layer.name for layer in model.layers]
    images = synthetic_images(4, SIZE)
    np.testing.assert_allclose(swapped.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-5)
    with pytest.raises(ValueError, match="last-axis"):
        inputs = keras.Input((4, 6))
        quantize.replace_layer_norms(keras.Model(inputs, layers.LayerNormalization(axis=1)(inputs)))
