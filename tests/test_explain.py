"""The computations behind notebooks 01-02's figures."""

import matplotlib

matplotlib.use("Agg")

import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import mvlib  # noqa: E402,F401
from mvlib import blocks, explain  # noqa: E402
from mvlib.flops import attention_by_stage  # noqa: E402
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
    kerasio = block_model(blocks.kerasio_inverted_residual_block, (8, 8, 2), name="k", expanded_channels=4, output_channels=2, strides=2)
    w_paper, w_kerasio = explain.impulse_windows(paper), explain.impulse_windows(kerasio)
    assert w_paper.shape == (4, 4, 8, 8)
    assert explain.rows_read(w_paper) == [[0, 1], [1, 2, 3], [3, 4, 5], [5, 6, 7]]  # centred on 2i
    assert explain.rows_read(w_kerasio) == [[0, 1, 2], [2, 3, 4], [4, 5, 6], [6, 7]]  # centred on 2i + 1
    assert explain._centres(w_paper, 1) == [0, 2, 4, 6] and explain._centres(w_kerasio, 1) == [1, 3, 5, 7]
    biased = block_model(blocks.kerasio_conv_block, (8, 8, 2), name="b", filters=2)
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
