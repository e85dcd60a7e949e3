"""The paper's unfold/fold and the keras-io raster reshape, checked on coordinate-encoded inputs."""

import numpy as np
import pytest

import mvlib  # noqa: F401
from mvlib.model.unfold import fold, raster_fold, raster_reshape, unfold


def coordinate_map(height, width, batch=2):
    """A map whose channels are (batch index, row, column) of each pixel."""
    b, r, c = np.meshgrid(np.arange(batch), np.arange(height), np.arange(width), indexing="ij")
    return np.stack([b, r, c], axis=-1).astype("float32")


@pytest.mark.parametrize("height,width", [(8, 8), (4, 6), (32, 32), (16, 8)])
def test_fold_inverts_unfold_exactly(height, width):
    x = np.random.default_rng(0).normal(size=(3, height, width, 5)).astype("float32")
    seq = unfold(x)
    assert tuple(seq.shape) == (3, 4, height * width // 4, 5)
    np.testing.assert_array_equal(np.asarray(fold(seq, height, width)), x)


@pytest.mark.parametrize("patch", [2, 4])
def test_each_sequence_is_one_pixel_position_of_every_patch(patch):
    height, width = 8, 12
    seq = np.asarray(unfold(coordinate_map(height, width), patch))
    nw = width // patch
    for p in range(patch * patch):
        i, j = divmod(p, patch)
        for n in range(seq.shape[2]):
            r, c = divmod(n, nw)  # patches in raster order
            np.testing.assert_array_equal(seq[:, p, n, 1:], np.broadcast_to([r * patch + i, c * patch + j], (2, 2)))
    np.testing.assert_array_equal(seq[1, ..., 0], 1)  # batch items never mix


def test_raster_reshape_takes_quarters_of_the_rows():
    seq = np.asarray(raster_reshape(coordinate_map(8, 8)))
    for p in range(4):  # keras-io "sequence" p is simply rows 2p and 2p+1: no interleaving
        assert set(seq[0, p, :, 1].astype(int)) == {2 * p, 2 * p + 1}
    np.testing.assert_array_equal(np.asarray(raster_fold(seq, 8, 8)), coordinate_map(8, 8))


@pytest.mark.parametrize("height,width", [(5, 5), (8, 7)])
def test_non_divisible_maps_raise_clear_error(height, width):
    with pytest.raises(ValueError, match="divisible by the patch size 2"):
        unfold(np.zeros((1, height, width, 3), "float32"))
    with pytest.raises(ValueError, match="divisible"):
        fold(np.zeros((1, 4, 9, 3), "float32"), height, width)


def test_unfold_layer_resizes_odd_maps_like_ml_cvnets():
    """Inside the model, a 5x5 map (160 px input) is resized to 6x6 first and back after folding."""
    from mvlib.model.blocks import Fold, Unfold

    x = np.random.default_rng(0).normal(size=(2, 5, 5, 3)).astype("float32")
    seq = Unfold(2)(x)
    assert tuple(seq.shape) == (8, 9, 3)
    assert tuple(Fold(5, 5, 2)(seq).shape) == (2, 5, 5, 3)
    even = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(Fold(6, 6, 2)(Unfold(2)(even))), even)
