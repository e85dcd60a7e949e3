"""The computations behind notebooks 01-02's figures."""

import signal

import matplotlib

matplotlib.use("Agg")

import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import mvlib  # noqa: E402,F401
from mvlib.analysis import explain  # noqa: E402
from mvlib.model import blocks, kerasio  # noqa: E402
from mvlib.analysis.flops import attention_by_stage  # noqa: E402
from mvlib.notebook import block_model  # noqa: E402


def test_sequence_index_maps():
    seq, pos = explain.sequence_index_map(4, 4, "unfold")
    np.testing.assert_array_equal(seq, [[0, 1, 0, 1], [2, 3, 2, 3], [0, 1, 0, 1], [2, 3, 2, 3]])
    np.testing.assert_array_equal(pos, [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    raster, raster_pos = explain.sequence_index_map(4, 6, "raster")
    np.testing.assert_array_equal(raster, np.repeat(np.arange(4), 6).reshape(4, 6))
    np.testing.assert_array_equal(raster_pos, np.tile(np.arange(6), 4).reshape(4, 6))
    with pytest.raises(ValueError, match="unknown layout"):
        explain.sequence_index_map(4, 4, "zigzag")


def test_sequences_as_images():
    image = explain.coordinate_image(8, 12)
    assert image.shape == (8, 12, 3) and image.min() >= 0 and image.max() <= 255
    seqs = explain.sequences_as_images(image, "unfold")
    for p, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        np.testing.assert_array_equal(seqs[p], image[i::2, j::2])
    strips = explain.sequences_as_images(image, "raster")
    for p in range(4):
        np.testing.assert_array_equal(strips[p], image[2 * p : 2 * p + 2])


def test_attention_reach():
    paper = explain.attention_reach(8, 8, (5, 2))
    assert paper.sum() == 16 and paper[5, 2]
    rows, cols = np.nonzero(paper)
    assert set(rows % 2) == {1} and set(cols % 2) == {0}  # same position in every patch
    assert explain.attention_reach(8, 8, (5, 2), "raster", "global").all()
    band = explain.attention_reach(8, 8, (5, 2), "raster", "within")
    assert set(np.nonzero(band)[0]) == {4, 5}
    with pytest.raises(ValueError):
        explain.attention_reach(8, 8, (0, 0), attention="local")


def test_impulse_windows_show_the_two_paddings():
    paper = block_model(blocks.inverted_residual, (8, 8, 2), name="p", expanded_channels=4, output_channels=2, strides=2)
    example = block_model(kerasio.inverted_residual_block, (8, 8, 2), name="k", expanded_channels=4, output_channels=2, strides=2)
    w_paper, w_kerasio = explain.impulse_windows(paper), explain.impulse_windows(example)
    assert w_paper.shape == (4, 4, 8, 8)
    assert explain.rows_read(w_paper) == [[0, 1], [1, 2, 3], [3, 4, 5], [5, 6, 7]]  # centred on 2i
    assert explain.rows_read(w_kerasio) == [[0, 1, 2], [2, 3, 4], [4, 5, 6], [6, 7]]  # centred on 2i + 1
    assert explain._centres(w_paper, 1) == [0, 2, 4, 6] and explain._centres(w_kerasio, 1) == [1, 3, 5, 7]
    biased = block_model(kerasio.conv_block, (8, 8, 2), name="b", filters=2)
    biased.get_layer("b_conv").bias.assign(np.ones(2, "float32"))
    with pytest.raises(ValueError, match="zeros to zeros"):
        explain.impulse_windows(biased)


def test_plots_return_figures():
    image = explain.coordinate_image(8, 8)
    seq = explain.sequence_index_map(8, 8)[0]
    inputs = keras.Input((8, 8, 8))
    model = keras.Model(inputs, blocks.mobilevit_block(inputs, dim=8, depth=1, num_heads=2, name="m"))
    window = explain.impulse_windows(block_model(blocks.inverted_residual, (4, 4, 1), name="p", expanded_channels=2, output_channels=1, strides=2))
    figures = [
        (explain.plot_index_maps({"a": seq, "b": seq}), 2),
        (explain.plot_sequences({"unfold": explain.sequences_as_images(image)}), 4),
        (explain.plot_images({"x": image}), 1),
        (explain.plot_attention_reach({"a": explain.attention_reach(8, 8, (1, 1))}, (1, 1)), 1),
        (explain.plot_stride2_windows({"p": window}, {"p": ((1, 1), (1, 1))}), 1),
        (explain.plot_attention_cost({"m": attention_by_stage(model)}), 2),
    ]
    for fig, n_axes in figures:
        assert isinstance(fig, plt.Figure) and len(fig.axes) == n_axes
        plt.close(fig)


# --- training (notebook 04) ------------------------------------------------------------------------------


def bn_model():
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(2, 1, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    bn = model.get_layer("bn")
    bn.moving_mean.assign(np.array([4.0, -2.0], "float32"))
    bn.moving_variance.assign(np.array([9.0, 0.25], "float32"))
    return model


def test_lag_batchnorm_statistics_blends_initial_and_trained():
    model = bn_model()
    lagged = explain.lag_batchnorm_statistics(model, keep=0.25)
    bn = lagged.get_layer("bn")
    np.testing.assert_allclose(np.asarray(bn.moving_mean), [3.0, -1.5], rtol=1e-6)  # 0.25 * 0 + 0.75 * trained
    np.testing.assert_allclose(np.asarray(bn.moving_variance), [7.0, 0.4375], rtol=1e-6)  # 0.25 * 1 + 0.75 * trained
    np.testing.assert_allclose(np.asarray(model.get_layer("bn").moving_mean), [4.0, -2.0])  # original untouched
    for name in ("conv", "head"):
        for a, b in zip(model.get_layer(name).weights, lagged.get_layer(name).weights):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype("float32")
    same = explain.lag_batchnorm_statistics(model, keep=0.0)
    np.testing.assert_allclose(np.asarray(same(x, training=False)), np.asarray(model(x, training=False)), rtol=1e-5, atol=1e-6)
    fresh = explain.lag_batchnorm_statistics(model, keep=1.0).get_layer("bn")
    np.testing.assert_array_equal(np.asarray(fresh.moving_mean), [0, 0])
    np.testing.assert_array_equal(np.asarray(fresh.moving_variance), [1, 1])
    with pytest.raises(ValueError, match="keep"):
        explain.lag_batchnorm_statistics(model, keep=1.5)


def labelled_batches(labels, batch=3, size=2):
    import tensorflow as tf

    labels = np.array(labels)
    images = np.arange(len(labels), dtype="float32")[:, None, None, None] * np.ones((1, size, size, 3), "float32")
    return tf.data.Dataset.from_tensor_slices((images, np.eye(3, dtype="float32")[labels])).batch(batch)


def test_dataset_helpers():
    ds = labelled_batches([0, 0, 1, 2, 0, 1, 2, 2])
    np.testing.assert_array_equal(explain.class_counts(ds, 3), [3, 2, 3])
    images, labels = explain.examples_per_class(ds, 3, per_class=2)
    np.testing.assert_array_equal(labels, [0, 1, 2, 0, 1, 2])  # round robin: one class per grid column
    np.testing.assert_array_equal(images[:, 0, 0, 0], [0, 2, 3, 1, 5, 6])
    np.testing.assert_array_equal(explain.images_at(ds, [7, 1, 4])[:, 0, 0, 0], [7, 1, 4])
    with pytest.raises(IndexError, match="no image at"):
        explain.images_at(ds, [8])


def test_augmentation_draws_are_seeded():
    image = explain.coordinate_image(40, 40)
    for mode in ("keras-io", "inception"):
        a, b = explain.augmentation_draws(image, mode, 3, image_size=32), explain.augmentation_draws(image, mode, 3, image_size=32)
        assert [x.shape for x in a] == [(32, 32, 3)] * 3
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
        assert not np.array_equal(a[0], a[1])


def test_recipe_table_and_learning_rates():
    from mvlib.training.recipes import RECIPES, get_recipe

    table = explain.recipe_table(RECIPES)
    assert table.splitlines()[0].split() == ["setting", *RECIPES]
    assert "learning_rate    0.002     0.001" in table and "bn_momentum" in table
    epochs, lrs = explain.learning_rate_curve(get_recipe("improved", epochs=4, warmup_epochs=1), steps_per_epoch=5)
    assert len(epochs) == 21 and epochs[-1] == 4
    assert lrs.argmax() == 5 and lrs.max() == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-5, rel=1e-3)
    _, constant = explain.learning_rate_curve(get_recipe("keras-io", epochs=2), steps_per_epoch=3)
    np.testing.assert_allclose(constant, 2e-3)


def test_ctrl_c_in_epoch_two_and_training_figures():
    from mvlib.training.evaluate import Evaluation
    from mvlib.training.run import StopRequest

    model = bn_model()
    model.compile("sgd", "mse")
    x, y = np.zeros((4, 4, 4, 3), "float32"), np.zeros((4, 3), "float32")
    seen = []  # the stop request after each step
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(stop.signal))
    with StopRequest().listening() as stop:
        model.fit(x, y, epochs=2, batch_size=2, verbose=0, callbacks=[explain.PressCtrlC(2), record])
    assert seen == [None, None, signal.SIGINT, signal.SIGINT]  # pressed once, in epoch 2's first step
    e = Evaluation(["a", "b", "c"], np.array([0, 1, 2]), np.eye(3)[[0, 0, 2]])
    figures = [
        (explain.plot_learning_rates({"a": (np.arange(3), np.ones(3))}), 1),
        (explain.plot_prediction_counts({"x": e, "y": e}), 1),
    ]
    for fig, n_axes in figures:
        assert isinstance(fig, plt.Figure) and len(fig.axes) == n_axes
        plt.close(fig)
