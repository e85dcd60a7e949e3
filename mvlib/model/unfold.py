"""How a MobileViT block turns a feature map into sequences, and back.

Two ways, kept side by side because the difference is the point of notebook 02:

* ``unfold`` / ``fold`` -- the paper's (and ml-cvnets') operation. The map is cut into non-overlapping
  ``patch x patch`` patches. Sequence ``p = i * patch + j`` collects *pixel (i, j) of every patch*, so
  there are ``P = patch**2`` sequences, each ``N = H*W / P`` tokens long, in raster order of the
  patches. Attention then runs inside each sequence: a pixel sees the pixels at the same position in
  all other patches. ``fold`` is the exact inverse.
* ``raster_reshape`` -- the keras-io example's ``Reshape((4, H*W // 4, d))``. It keeps raster order,
  so "sequence" 0 is simply the top quarter of the image (the first H/4 rows), not a strided grid.

Everything is written with reshapes/transposes of rank <= 5 in ``keras.ops``, which LiteRT lowers
to builtin RESHAPE/TRANSPOSE ops (no Flex ops). Tensors are channels-last: ``(B, H, W, C)``.
"""

from __future__ import annotations

from keras import ops


def _check_divisible(height: int, width: int, patch: int) -> None:
    if height is None or width is None:
        raise ValueError("unfold needs a static spatial size; got a map of unknown height/width.")
    if height % patch or width % patch:
        raise ValueError(
            f"unfold needs height and width divisible by the patch size {patch}; got {height}x{width}. "
            "(MobileViTBlock resizes such maps to the next multiple first, as ml-cvnets does.)"
        )


def unfold(x, patch: int = 2):
    """``(B, H, W, C) -> (B, P, N, C)`` with ``P = patch**2`` and ``N = H*W/P`` (the paper's unfold).

    ``out[b, i*patch + j, r*(W/patch) + c]`` is ``x[b, r*patch + i, c*patch + j]``: pixel (i, j) of
    patch (r, c).
    """
    _, height, width, channels = x.shape
    _check_divisible(height, width, patch)
    nh, nw = height // patch, width // patch
    # Rows: (B*nh, i, nw, j, C) -- rank 5, batch folded into the first axis.
    x = ops.reshape(x, (-1, patch, nw, patch, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4))  # (B*nh, i, j, nw, C)
    x = ops.reshape(x, (-1, nh, patch * patch, nw, channels))  # (B, nh, P, nw, C)
    x = ops.transpose(x, (0, 2, 1, 3, 4))  # (B, P, nh, nw, C)
    return ops.reshape(x, (-1, patch * patch, nh * nw, channels))


def fold(x, height: int, width: int, patch: int = 2):
    """Exact inverse of :func:`unfold`: ``(B, P, N, C) -> (B, H, W, C)``."""
    _check_divisible(height, width, patch)
    channels = x.shape[-1]
    nh, nw = height // patch, width // patch
    x = ops.reshape(x, (-1, patch * patch, nh, nw, channels))  # (B, P, nh, nw, C)
    x = ops.transpose(x, (0, 2, 1, 3, 4))  # (B, nh, P, nw, C)
    x = ops.reshape(x, (-1, patch, patch, nw, channels))  # (B*nh, i, j, nw, C)
    x = ops.transpose(x, (0, 1, 3, 2, 4))  # (B*nh, i, nw, j, C)
    return ops.reshape(x, (-1, height, width, channels))


def raster_reshape(x, num_sequences: int = 4):
    """The keras-io example's "unfold": ``(B, H, W, C) -> (B, 4, H*W/4, C)`` in raster order."""
    _, height, width, channels = x.shape
    if (height * width) % num_sequences:
        raise ValueError(f"H*W = {height * width} is not divisible by {num_sequences}.")
    return ops.reshape(x, (-1, num_sequences, height * width // num_sequences, channels))


def raster_fold(x, height: int, width: int):
    """Inverse of :func:`raster_reshape`."""
    return ops.reshape(x, (-1, height, width, x.shape[-1]))
