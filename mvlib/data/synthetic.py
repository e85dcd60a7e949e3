"""Synthetic stand-ins for photos: coloured shapes whose colour and form depend on the class.

For checking pipelines, training loops and exports without the photos -- accuracy on them says nothing
about flowers. :func:`make_synthetic_flowers` (in ``mvlib.data.flowers``) writes them as a JPEG folder.
"""

from __future__ import annotations

import numpy as np

def synthetic_image(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """A coloured shape on a noisy green background; colour and shape both depend on the class.

    Classes: 0 white disc, 1 yellow square, 2 red triangle, 3 orange ring, 4 magenta cross (cycling for
    more classes), at a random position and scale, with colour jitter, so a model has something to learn
    but cannot memorise single pixels.
    """
    colours = [(235, 235, 235), (240, 210, 30), (200, 30, 40), (245, 140, 20), (200, 40, 180)]
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    image = np.empty((size, size, 3), np.float32)
    image[:] = rng.uniform(40, 110, size=3) * np.array([0.5, 1.0, 0.4])  # greenish background
    image += rng.normal(0, 12, size=image.shape)
    cy, cx = rng.uniform(0.35, 0.65, size=2)
    r = rng.uniform(0.15, 0.3)
    dy, dx = y - cy, x - cx
    shape = label % 5
    if shape == 0:
        mask = dy**2 + dx**2 < r**2
    elif shape == 1:
        mask = (np.abs(dy) < r * 0.85) & (np.abs(dx) < r * 0.85)
    elif shape == 2:
        mask = (dy < r * 0.8) & (dy > -r) & (np.abs(dx) < (dy + r) * 0.6)
    elif shape == 3:
        mask = (dy**2 + dx**2 < r**2) & (dy**2 + dx**2 > (0.55 * r) ** 2)
    else:
        mask = ((np.abs(dy) < r * 0.3) & (np.abs(dx) < r)) | ((np.abs(dx) < r * 0.3) & (np.abs(dy) < r))
    colour = np.array(colours[shape], np.float32) + rng.normal(0, 10, size=3)
    image[mask] = colour + rng.normal(0, 8, size=(int(mask.sum()), 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def synthetic_images(n: int, size: int | tuple[int, int], seed: int = 0) -> np.ndarray:
    """``n`` synthetic images of classes 0, 1, 2, ... in turn, float32 ``(n, size, size, 3)`` in [0, 255]."""
    if not isinstance(size, int):
        if size[0] != size[1]:
            raise ValueError(f"synthetic images are square, got size {size}")
        size = size[0]
    rng = np.random.default_rng(seed)
    return np.stack([synthetic_image(rng, i, size) for i in range(n)]).astype(np.float32)
