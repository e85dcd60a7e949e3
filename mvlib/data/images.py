"""One image: decode, resize, and the training augmentation -- numpy + Pillow, the same on every backend."""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

RESIZE_MARGIN = 24  # keras-io: resize to 280, random-crop 256


AUGMENTATIONS = ("keras-io", "inception", "none")


INCEPTION_AREA = (0.25, 1.0)  # share of the image a random-resized crop keeps (torchvision: 0.08-1; why: notebook 04)


INCEPTION_ASPECT = (3 / 4, 4 / 3)


def decode_image(source: str | os.PathLike | bytes) -> np.ndarray:
    """A file path or encoded bytes -> uint8 RGB ``(H, W, 3)``.

    JPEG, PNG, GIF (first frame), BMP, WebP; grayscale, RGBA and CMYK become RGB, so every image has
    the model's 3 channels. Raises ``OSError`` (Pillow's ``UnidentifiedImageError`` is one) for files
    that are not images or are truncated.
    """
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
        return np.asarray(image.convert("RGB"))


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize to ``size x size`` (aspect ratio not kept, as in the example), uint8 in and out."""
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def load_image(path: str | os.PathLike, image_size: int = 256) -> np.ndarray:
    """One file as the validation split sees it: float32 ``(image_size, image_size, 3)`` in [0, 255]."""
    return resize(read_image(path), image_size).astype(np.float32)


def augment(image: np.ndarray, image_size: int, mode: str, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """Training augmentation of one cached uint8 image -> ``(image_size, image_size, 3)`` pixels in [0, 255].

    ``"keras-io"``: a random ``image_size`` square of the (``image_size + 24``) image, then a random
    left-right flip. ``"inception"``: a random rectangle with ``INCEPTION_AREA`` of the area and an aspect
    ratio in ``INCEPTION_ASPECT`` (log-uniform), resized to ``image_size``, then the flip. ``"none"``:
    resized to ``image_size`` only. ``rng`` makes every draw, so the same generator state gives the same
    pixels. ``dtype=np.uint8`` gives the same pixels unconverted (and possibly a view of ``image``): the
    batch builder converts a whole batch at once, a quarter of the bytes to copy while stacking.
    """
    height, width = image.shape[:2]
    if mode == "keras-io":
        top, left = rng.integers(0, height - image_size + 1), rng.integers(0, width - image_size + 1)
        out = image[top : top + image_size, left : left + image_size]
        if rng.random() < 0.5:
            out = out[:, ::-1]
    elif mode == "inception":
        for _ in range(10):  # rejection sampling as torchvision's RandomResizedCrop; fall back to the whole image
            area = height * width * rng.uniform(*INCEPTION_AREA)
            aspect = math.exp(rng.uniform(*np.log(INCEPTION_ASPECT)))
            w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < w <= width and 0 < h <= height:
                top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
                break
        else:
            top, left, h, w = 0, 0, height, width
        crop = Image.fromarray(image).resize((image_size, image_size), Image.BILINEAR, box=(left, top, left + w, top + h))
        if rng.random() < 0.5:  # flipped by Pillow, in C: Python holds the GIL over less of each image
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out = np.asarray(crop)
    elif mode == "none":
        out = resize(image, image_size)
    else:
        raise ValueError(f"unknown augment {mode!r}; valid: {', '.join(AUGMENTATIONS)}")
    return out.astype(dtype, copy=False)


_IMAGE_SUFFIXES = "JPEG, PNG, GIF or BMP"


def read_image(path: str | os.PathLike) -> np.ndarray:
    """:func:`decode_image` of a file, with errors that say what is wrong with it (for files a user names)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image file: {str(path)!r}")
    try:
        return decode_image(path)
    except OSError as e:
        raise ValueError(f"{str(path)!r} is not a decodable image ({_IMAGE_SUFFIXES}): {str(e).splitlines()[0]}") from None


def _to_rgb(image: np.ndarray, where: str) -> np.ndarray:
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{where}: expected an image (H, W, 3) (or (H, W), (H, W, 1), (H, W, 4)), got shape {image.shape}")
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return image[..., :3]  # drop alpha


def preprocess_images(images, image_size: int | tuple[int, int]) -> np.ndarray:
    """Paths / arrays -> float32 ``(N, S, S, 3)`` pixels in [0, 255], bilinearly resized (the evaluation preprocessing).

    ``images`` may be a path (``str``/``Path``), an array for one image ``(H, W, 3)`` or a batch
    ``(N, H, W, 3)`` (uint8, or float already in [0, 255]), or a list mixing paths and single-image arrays.
    """
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if isinstance(images, (str, os.PathLike)):
        items = [images]
    elif hasattr(images, "shape"):  # numpy or a backend tensor
        array = np.asarray(images)
        items = list(array) if array.ndim == 4 else [array]
    elif isinstance(images, Sequence):
        items = list(images)
    else:
        raise TypeError(f"expected image path(s) or arrays, got {type(images).__name__}")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, (str, os.PathLike)):
            image = read_image(item)
        else:
            array = _to_rgb(np.asarray(item), f"image {i}")
            if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
                raise TypeError(f"image {i}: expected numeric pixels, got dtype {array.dtype}")
            if np.issubdtype(array.dtype, np.floating) and array.size and float(np.nanmax(array)) <= 1.0:
                warnings.warn(
                    f"image {i} is float with values <= 1; the models expect pixels in [0, 255] (they rescale "
                    "internally) -- did you divide by 255 already?",
                    stacklevel=3,
                )
            image = array
        if tuple(image.shape[:2]) != size:
            # The evaluation pipeline's resize (bilinear, uint8), so a photo gets the same pixels here as in
            # `python -m mvlib evaluate`; images already at the model's size pass unchanged.
            if size[0] != size[1]:
                raise ValueError(f"the model's input {size} is not square")
            image = resize(np.clip(np.asarray(image), 0, 255).astype(np.uint8), size[0])
        out.append(np.asarray(image, np.float32))
    if not out:
        return np.zeros((0, *size, 3), np.float32)
    return np.stack(out).astype(np.float32)
