"""The int8 recipe's pieces: the integer-friendly LayerNorm computes what Keras' does, the swap keeps the
model's outputs, the file holds no op that XNNPACK cannot run in int8 except the ones kept float on
purpose, and the size and op profiles account for the file. Small models at 64 px, so it stays quick."""

import numpy as np
import pytest

import mvlib  # noqa: F401  (selects the TensorFlow backend before keras is imported)
import keras
from keras import layers

from mvlib.data import synthetic_images
from mvlib.litert import opprofile, quantize
from mvlib.litert.export import export_litert
from mvlib.litert.inspect import list_ops
from mvlib.litert.parity import check_parity
from mvlib.model import create_mobilevit

SIZE = 64


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(1)
    return create_mobilevit("xxs", num_classes=5, image_size=SIZE)


@pytest.fixture(scope="module")
def int8_file(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("int8") / "xxs_int8.tflite"
    export_litert(model, path, "int8", representative_images=synthetic_images(24, SIZE, seed=1),
                  check_images=synthetic_images(8, SIZE, seed=2), min_agreement=0.0, max_abs_diff=0.2)
    return path


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


def test_int8_file_keeps_only_attention_in_float(model, int8_file):
    ops = list_ops(int8_file)
    assert "SQUARED_DIFFERENCE" not in ops and "NEG" not in ops  # the LayerNorms became integer-friendly
    assert ops["BATCH_MATMUL"] > 0 and ops["SOFTMAX"] > 0 and ops["QUANTIZE"] > 1 and ops["DEQUANTIZE"] > 1
    report = check_parity(model, int8_file, synthetic_images(8, SIZE, seed=3), "int8", min_agreement=0.0, max_abs_diff=0.2)
    assert report.passed, report.summary()


def test_size_breakdown_accounts_for_every_byte(int8_file):
    sizes = quantize.size_breakdown(int8_file)
    assert sum(sizes.values()) == int8_file.stat().st_size
    assert max(sizes, key=sizes.get) == "INT8 constants"  # the weights are the file
    assert sizes["tensor names"] < 10_000  # shortened


def test_op_profile_covers_every_op(int8_file):
    rows = opprofile.profile_ops(int8_file, runs=1, warmup=0)
    assert len(rows) == sum(list_ops(int8_file).values())
    totals = opprofile.by_op_type(rows)
    assert sum(t["count"] for t in totals.values()) == len(rows)
    assert totals["CONV_2D"]["xnnpack"] == totals["CONV_2D"]["count"]  # int8 convolutions run in XNNPACK
    assert list(totals.values())[0]["ms"] >= list(totals.values())[-1]["ms"]
    fig = opprofile.plot_profiles({"int8": rows}, top=5)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(totals)[:5]
