"""tf_flowers as ``tf.data`` pipelines for training and validation, from tfds, a local folder or synthetic images.

``load_flowers()`` returns a ``FlowerData`` whose ``train`` and ``val`` datasets yield batches of
``(images, one_hot_labels)``: float32 RGB pixels in [0, 255] (the models rescale internally) and float32
one-hot labels. Preprocessing follows the keras-io MobileViT example:

* training: resize to ``image_size + 24`` (280 for 256), random crop ``image_size``, random left-right flip;
* evaluation: resize to ``image_size``;
* batches of 64, training shuffled, ``prefetch(AUTOTUNE)``.

One deliberate difference: images are decoded and resized once, rounded to uint8 and kept in memory
(``.cache()``), so later epochs skip JPEG decoding. That keeps the full training set at ~700 MB instead of
2.8 GB of float32, and moves each pixel by at most half a grey level from the example's float values.
Random crop, flip and shuffling come after the cache, so every epoch still sees new augmentations; they
use stateless ops with per-image seeds redrawn each epoch, because stateful random ops inside ``tf.data``
repeat the same crops every epoch once a global seed is set (``keras.utils.set_random_seed``).

``FlowerData.train_stream(initial_epoch, augment, ...)`` is the resumable variant for ``mvlib.train``: an
endless stream whose epoch ``e`` depends only on (seed, e), with "keras-io" or "inception" augmentation.

Where the data comes from (``source=``):

* ``"tfds"``: ``tfds.load("tf_flowers")`` with the example's split ``train[:90%]`` / ``train[90%:]``.
  Its class order is tfds's (dandelion, daisy, tulips, sunflowers, roses), not alphabetical.
* ``"folder"``: ``<root>/<class>/<image>`` (TensorFlow's ``flower_photos`` layout). Classes are the
  sorted folder names; the 90/10 split is stratified and fixed by ``seed`` (tfds's order cannot be
  reproduced from files, so this is the offline equivalent, not the same split).
* ``"synthetic"``: generated JPEGs of coloured shapes in the same layout, for checking pipelines and
  training loops without the photos. Accuracy on them says nothing about flowers.
* ``"auto"``: a folder you named (``data_dir`` or ``MVLIB_DATA_DIR``), else tfds (when already prepared
  or its download host answers), else ``default_data_dir()``, else ``DataSourceError``.

Bad files in a folder never stop training halfway: every candidate file is decoded once before the
pipeline is built (see ``find_unreadable``). What counts as a candidate:

* at the root, only non-hidden folders are classes; files there (README, checksum lists) are ignored;
* inside a class folder, every non-hidden file is a candidate whatever its extension: PNG, GIF, BMP,
  WebP, grayscale and CMYK JPEGs decode to RGB and are used; anything that does not decode (corrupt or
  truncated JPEG, README.txt, empty file) is left out and reported, in ``FlowerData.skipped`` and in a
  ``SkippedFilesWarning``;
* hidden entries (``.DS_Store``, ``._x.jpg`` AppleDouble files, ``.ipynb_checkpoints``) are operating-system
  or tool metadata, never photos, and are ignored without a report; nested sub-folders are not read;
* a missing root, a root without class folders, an empty class folder, or a class whose every file is
  unreadable raises ``DataSourceError`` naming the path.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import mvlib  # noqa: F401  (quiet TensorFlow start-up)
import tensorflow as tf

__all__ = [
    "DataSourceError",
    "augment_image",
    "FlowerData",
    "SkippedFilesWarning",
    "decode_image",
    "resize_rounded",
    "default_data_dir",
    "find_unreadable",
    "tfds_available",
    "list_image_files",
    "load_flowers",
    "load_image",
    "make_synthetic_flowers",
    "preprocess_eval",
    "preprocess_train",
    "split_stratified",
]

AUTOTUNE = tf.data.AUTOTUNE
RESIZE_MARGIN = 24  # keras-io: resize to 280, random-crop 256
TFDS_NAME = "tf_flowers"
TFDS_SPLITS = ["train[:90%]", "train[90%:]"]  # the keras-io example's split
TFDS_DOWNLOAD_HOST = "storage.googleapis.com"  # where tfds fetches flower_photos.tgz
SYNTHETIC_CLASSES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")
SYNTHETIC_PER_CLASS = 60
SYNTHETIC_IMAGE_SIZE = 128
SYNTHETIC_MARKER = "SYNTHETIC.txt"
SOURCES = ("auto", "tfds", "folder", "synthetic")
AUGMENTATIONS = ("keras-io", "inception", "none")  # train_stream(augment=...)
INCEPTION_AREA = (0.08, 1.0)  # random-resized crop as in ml-cvnets / torchvision
INCEPTION_ASPECT = (3 / 4, 4 / 3)


class DataSourceError(FileNotFoundError):
    """No usable data where we looked: the message names the path or the ways to provide data."""


class SkippedFilesWarning(UserWarning):
    """Some files in a class folder could not be decoded and were left out (listed in ``FlowerData.skipped``)."""


@dataclass
class FlowerData:
    """The two pipelines plus what a notebook needs to say where they came from."""

    train: tf.data.Dataset
    val: tf.data.Dataset
    class_names: list[str]
    source: str  # "tfds" | "folder" | "synthetic"
    num_train: int
    num_val: int
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    data_dir: str | None = None  # the folder read, for "folder" and "synthetic"
    image_size: int = 256
    batch_size: int = 64
    seed: int = 42
    _train_cache: tf.data.Dataset | None = field(default=None, repr=False)  # resized uint8 training images
    _cached: bool = field(default=True, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def train_stream(
        self,
        initial_epoch: int = 0,
        augment: str = "keras-io",
        batch_size: int | None = None,
        seed: int | None = None,
        steps_per_epoch: int | None = None,
    ) -> tf.data.Dataset:
        """Endless training batches, epoch after epoch from ``initial_epoch``, reproducible from (seed, epoch).

        Epoch ``e`` visits every training image once, in an order and with augmentations drawn from
        stateless seeds derived from (seed, e, position), never from TensorFlow's global seed, so a run
        resumed at epoch ``e`` sees exactly the batches an uninterrupted run would have. Batches do not
        straddle epochs: ``steps_per_epoch = ceil(num_train / batch_size)`` keeps Keras's epochs aligned
        with the stream's. With ``steps_per_epoch`` (quick mode, or longer epochs) every epoch yields
        exactly that many batches: the first ones of epoch ``e``'s pass, continued by further passes seeded
        from (seed, e, pass) if needed, so resuming stays exact whatever the epoch length. ``augment``: "keras-io" (random crop of the cached ``image_size + 24`` image,
        flip), "inception" (random-resized crop: 8-100% of the area, aspect 3/4-4/3, then flip) or "none".
        Reads the same in-memory cache as ``train``; fills it first if no epoch has yet. (After
        ``load_flowers(augment=False)`` that cache holds ``image_size`` images, so "keras-io" only flips.)
        """
        if augment not in AUGMENTATIONS:
            raise ValueError(f"unknown augment {augment!r}; valid: {', '.join(AUGMENTATIONS)}")
        if self._train_cache is None:
            raise ValueError("train_stream needs a FlowerData made by load_flowers")
        if self.num_train == 0:
            raise ValueError("no training images: an endless stream of empty epochs would never yield")
        if self.source == "tfds" and not self._cached:
            raise ValueError("train_stream on tfds data needs load_flowers(cache=True) (tfds has no random access)")
        cache, n, num_classes, size = self._train_cache, self.num_train, self.num_classes, self.image_size
        batch_size = batch_size or self.batch_size
        seed = tf.constant(self.seed if seed is None else seed, tf.int64)
        if self._cached:
            for _ in cache:  # a full pass completes the cache (a no-op walk through memory once it is)
                pass

        if steps_per_epoch is not None and steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be None or >= 1, got {steps_per_epoch!r}")
        endless = np.iinfo(np.int64).max

        def one_pass(epoch, pass_index):
            """Every training image once, order and augmentation from (seed, epoch, pass_index)."""
            pass_seed = tf.stack([seed, epoch])
            if pass_index is not None:  # pass 0 is the plain epoch; later passes get their own seeds
                further = tf.random.experimental.stateless_fold_in(pass_seed, -pass_index)
                pass_seed = tf.where(pass_index == 0, pass_seed, further)
            order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=pass_seed)

            def element(position, index):
                image, label = tf.data.experimental.at(cache, index)
                element_seed = tf.random.experimental.stateless_fold_in(pass_seed, position)
                return augment_image(image, size, augment, element_seed), tf.one_hot(label, num_classes)

            positions = tf.data.Dataset.from_tensor_slices((tf.range(n, dtype=tf.int64), order))
            return positions.map(element, num_parallel_calls=AUTOTUNE).batch(batch_size)

        def one_epoch(epoch):
            if steps_per_epoch is None:
                return one_pass(epoch, None)
            passes = tf.data.Dataset.range(endless).flat_map(lambda p: one_pass(epoch, p))
            return passes.take(steps_per_epoch)

        return tf.data.Dataset.range(initial_epoch, endless).flat_map(one_epoch).prefetch(AUTOTUNE)

    def describe(self) -> str:
        """One line for a notebook cell or a log: source, sizes, classes, skipped files."""
        origin = {
            "tfds": "tf_flowers from tensorflow-datasets",
            "folder": f"photos from {self.data_dir}",
            "synthetic": f"SYNTHETIC images (coloured shapes, not flower photos) from {self.data_dir}",
        }[self.source]
        text = (
            f"{origin}: {self.num_train} train / {self.num_val} val images, "
            f"{self.num_classes} classes ({', '.join(self.class_names)})"
        )
        if self.skipped:
            text += f"; {len(self.skipped)} unreadable file(s) skipped (see .skipped)"
        return text


# --- one image ----------------------------------------------------------------------------------------


def decode_image(contents: tf.Tensor | bytes) -> tf.Tensor:
    """Encoded bytes -> uint8 RGB (H, W, 3).

    ``decode_image`` rather than ``decode_jpeg`` so PNG, GIF (first frame), BMP and WebP work too, and
    ``channels=3`` turns grayscale, RGBA and CMYK into RGB, so every image has the model's 3 channels.
    """
    image = tf.io.decode_image(contents, channels=3, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def resize_rounded(image: tf.Tensor, size: int | tuple[int, int]) -> tf.Tensor:
    """Bilinear resize (as the example) rounded back to uint8: 4x less memory in the cache, error <= 0.5.

    The evaluation preprocessing; :class:`mvlib.predict.LiteRTPredictor` uses it too, so a photo gets the
    same pixels in both."""
    resized = tf.image.resize(image, (size, size) if isinstance(size, int) else size)
    return tf.saturate_cast(tf.round(resized), tf.uint8)


def _crop_and_flip(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """The example's augmentation: a random ``image_size`` square and a random left-right flip."""
    image = tf.image.random_crop(image, (image_size, image_size, 3))
    return tf.image.random_flip_left_right(image)


def augment_image(image: tf.Tensor, image_size: int, mode: str, seed: tf.Tensor) -> tf.Tensor:
    """Seeded (stateless) training augmentation of one cached image -> float32 (image_size, image_size, 3).

    The same ``seed`` (shape [2]) always gives the same crop and flip, whatever TensorFlow's global seed
    is; ``train_stream`` uses this so resumed runs repeat their batches exactly.
    """
    flip_seed = tf.random.experimental.stateless_fold_in(seed, 1)
    if mode == "keras-io":
        image = tf.cast(tf.image.stateless_random_crop(image, (image_size, image_size, 3), seed=seed), tf.float32)
    elif mode == "inception":
        begin, crop, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image),
            bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
            seed=seed,
            min_object_covered=0.0,
            aspect_ratio_range=INCEPTION_ASPECT,
            area_range=INCEPTION_AREA,
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        image = tf.image.resize(tf.slice(image, begin, crop), (image_size, image_size))
    else:  # "none": resize only, no flip (exactly the evaluation pixels when cached at image_size)
        if image.shape[0] == image_size and image.shape[1] == image_size:
            return tf.cast(image, tf.float32)
        return tf.image.resize(image, (image_size, image_size))
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def preprocess_train(image, label, image_size: int = 256, num_classes: int = 5):
    """Training preprocessing of the keras-io example, for one decoded image (e.g. to show augmentation).

    Resize to ``image_size + 24``, random crop to ``image_size``, random flip; float32 in [0, 255] and a
    one-hot label. The pipelines do the same, with the resize done once before the cache.
    """
    margin = image_size + RESIZE_MARGIN
    image = tf.image.resize(image, (margin, margin))
    return _crop_and_flip(image, image_size), tf.one_hot(label, num_classes)


def preprocess_eval(image, label, image_size: int = 256, num_classes: int = 5):
    """Evaluation preprocessing of the keras-io example: resize to ``image_size``; float32 [0, 255], one-hot label."""
    return tf.image.resize(image, (image_size, image_size)), tf.one_hot(label, num_classes)


def load_image(path: str | os.PathLike, image_size: int = 256) -> tf.Tensor:
    """One file as the validation pipeline sees it: float32 (image_size, image_size, 3) in [0, 255].

    Rounded to whole grey levels like the cached validation images, so a predictor given this file gets
    exactly the pixels the evaluation metrics were computed on.
    """
    image = decode_image(tf.io.read_file(str(path)))
    return tf.cast(resize_rounded(image, image_size), tf.float32)


# --- folders ------------------------------------------------------------------------------------------


def default_data_dir() -> Path:
    """``../shared/data/flower_photos`` next to the repository: where this project's offline machines keep the photos.

    Returned whether or not it exists; ``load_flowers(source="auto")`` only uses it if it does.
    """
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "flower_photos"


def _visible(entries):
    """Drop hidden entries (.DS_Store, ._* AppleDouble, .ipynb_checkpoints): metadata, never photos."""
    return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def list_image_files(root: str | os.PathLike) -> tuple[list[str], list[int], list[str]]:
    """``<root>/<class>/<file>`` -> (paths, labels, class_names), classes in sorted folder-name order.

    Files directly in ``root`` (README, checksums) are not images of any class and are ignored; every
    non-hidden file inside a class folder is returned, whatever its extension, so that ``find_unreadable``
    can report the ones that are not images instead of dropping them silently.
    """
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise DataSourceError(f"data folder not found: {root}" if not root.exists() else f"not a folder: {root}")
    with os.scandir(root) as it:
        class_dirs = [e for e in _visible(it) if e.is_dir()]
    if not class_dirs:
        raise DataSourceError(f"no class folders in {root}: expected {root}/<class name>/<image files>")
    paths, labels, class_names = [], [], []
    for label, class_dir in enumerate(class_dirs):
        with os.scandir(class_dir.path) as it:
            # broken symlinks are kept so they get reported; sockets and FIFOs are not files to read
            files = [e.path for e in _visible(it) if e.is_file() or (e.is_symlink() and not e.is_dir())]
        if not files:
            raise DataSourceError(f"class folder {class_dir.path} has no files (every class needs images)")
        class_names.append(class_dir.name)
        paths += files
        labels += [label] * len(files)
    return paths, labels, class_names


def split_stratified(paths, labels, val_fraction: float = 0.1, seed: int = 42):
    """Deterministic stratified split -> (train_paths, train_labels, val_paths, val_labels).

    Per class: sort the paths, shuffle them with a fresh ``numpy.random.default_rng(seed)`` and take the
    first ``round(n * val_fraction)`` as validation (at least 1 and at most n - 1 when n >= 2, so every
    class is in both splits). Depends only on the file names and the seed, so it is the same in every
    call and every process, and the two splits are disjoint.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    by_class: dict[int, list[str]] = {}
    for path, label in zip(paths, labels):
        by_class.setdefault(int(label), []).append(str(path))
    train_paths, train_labels, val_paths, val_labels = [], [], [], []
    for label in sorted(by_class):
        files = sorted(by_class[label])
        n = len(files)
        n_val = round(n * val_fraction)
        if val_fraction > 0 and n >= 2:
            n_val = min(max(n_val, 1), n - 1)
        else:
            n_val = min(n_val, max(n - 1, 0))
        order = np.random.default_rng(seed).permutation(n)
        val_paths += [files[i] for i in order[:n_val]]
        train_paths += [files[i] for i in order[n_val:]]
        val_labels += [label] * n_val
        train_labels += [label] * (n - n_val)
    return train_paths, train_labels, val_paths, val_labels


def _take_per_class_round_robin(paths, labels, limit: int | None):
    """At most ``limit`` items, taking classes in turn so a small slice still covers every class."""
    if limit is None:
        return list(paths), list(labels)
    queues: dict[int, list[str]] = {}
    for path, label in zip(paths, labels):
        queues.setdefault(int(label), []).append(path)
    picked: list[tuple[str, int]] = []
    for i in range(max((len(q) for q in queues.values()), default=0)):
        picked += [(q[i], label) for label, q in sorted(queues.items()) if i < len(q)]
    picked = picked[:limit]
    return [p for p, _ in picked], [y for _, y in picked]


# --- validation of files --------------------------------------------------------------------------------

_checked: dict[tuple[str, int, int], str | None] = {}  # (path, size, mtime_ns) -> reason, None if it decodes


def _clean_tf_message(message: str) -> str:
    """Strip TensorFlow's op-name decoration: '{{function_node ...}} Unknown image file format. [Op:DecodeImage]'."""
    message = re.sub(r"^\{\{[^}]*\}\}\s*", "", message.strip())
    return re.sub(r"\s*\[Op:\w+\]$", "", message)


def _why_unreadable(path: str) -> str | None:
    """None if ``decode_image`` can decode the file (as the pipeline will), else a one-line reason."""
    try:
        with open(path, "rb") as f:
            contents = f.read()
    except OSError as e:
        return f"cannot read file: {e.strerror or e}"
    try:
        decode_image(contents)
    except tf.errors.OpError as e:
        return _clean_tf_message(e.message)
    return None


def _file_key(path: str) -> tuple[str, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (path, st.st_size, st.st_mtime_ns)


def find_unreadable(paths, workers: int | None = None) -> dict[str, str]:
    """Decode every file once, in parallel threads (TensorFlow releases the GIL) -> {path: reason} for failures.

    A full decode, not a header check, because truncated JPEGs have valid headers. Results are remembered
    in this process by (path, size, mtime), so a second ``load_flowers`` call does not decode again.
    """
    keys = {str(p): _file_key(str(p)) for p in paths}
    todo = [p for p, key in keys.items() if key not in _checked]  # unstat-able files (key None) always re-checked
    workers = workers or min(16, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        reasons = dict(zip(todo, pool.map(_why_unreadable, todo)))
    for path, reason in reasons.items():
        if keys[path] is not None:
            _checked[keys[path]] = reason
    results = {p: reasons[p] if p in reasons else _checked[key] for p, key in keys.items()}
    return {p: reason for p, reason in results.items() if reason is not None}


def _drop_unreadable(paths, labels, class_names, root):
    """Keep the decodable files; report the others; fail if a class is left with nothing but bad files."""
    bad = find_unreadable(paths)
    keep = [(p, y) for p, y in zip(paths, labels) if p not in bad]
    emptied = sorted(set(labels) - {y for _, y in keep})
    if emptied:
        folder = Path(root) / class_names[emptied[0]]
        example = next(p for p, y in zip(paths, labels) if y == emptied[0])
        raise DataSourceError(
            f"class folder {folder} has no readable images; e.g. {Path(example).name}: {bad[example]}"
        )
    return [p for p, _ in keep], [y for _, y in keep], sorted(bad.items())


def _warn_skipped(skipped, root, shown: int = 5) -> None:
    if not skipped:
        return
    lines = "\n".join(f"  {path}: {reason}" for path, reason in skipped[:shown])
    more = f"\n  ... and {len(skipped) - shown} more" if len(skipped) > shown else ""
    warnings.warn(
        f"skipped {len(skipped)} file(s) under {root} that do not decode as images "
        f"(full list in FlowerData.skipped):\n{lines}{more}",
        SkippedFilesWarning,
        stacklevel=4,  # the caller of load_flowers
    )


# --- pipelines ------------------------------------------------------------------------------------------


@dataclass
class _Settings:
    """What ``load_flowers`` was asked for, passed down to the pipeline builder in one piece."""

    image_size: int
    batch_size: int
    seed: int
    augment: bool
    shuffle: bool
    cache: bool


def _build(train_images, val_images, class_names, source, settings: _Settings, skipped=(), data_dir=None) -> FlowerData:
    """(uint8 image, label) datasets -> FlowerData with the batched train and val pipelines.

    Resize once, round to uint8 and cache; crop/flip, shuffle and float conversion come after the cache
    so augmentation and order change every epoch while decoding happens only in the first.
    """
    s, num_classes = settings, len(class_names)
    num_train, num_val = _count(train_images), _count(val_images)

    def resized(ds, size):
        ds = ds.map(lambda image, label: (resize_rounded(image, size), label), num_parallel_calls=AUTOTUNE)
        return ds.cache() if s.cache else ds

    def train_step(element, seed):
        image, label = element
        image = augment_image(image, s.image_size, "keras-io" if s.augment else "none", seed)
        return image, tf.one_hot(label, num_classes)

    def eval_step(image, label):
        return tf.cast(image, tf.float32), tf.one_hot(label, num_classes)

    train_cache = resized(train_images, s.image_size + RESIZE_MARGIN if s.augment else s.image_size)
    train = train_cache
    if s.shuffle:
        # Cached elements are shared, not copied, so a whole-epoch buffer costs no memory; uncached, the
        # example's 10 batches keep memory bounded.
        buffer = max(num_train, 1) if s.cache else 10 * s.batch_size
        train = train.shuffle(buffer, seed=s.seed, reshuffle_each_iteration=True)
    # One stateless seed per image, redrawn every epoch: stateful random ops inside tf.data would repeat
    # the same crops every epoch once a global seed is set (keras.utils.set_random_seed).
    seeds = tf.data.Dataset.random(seed=s.seed, rerandomize_each_iteration=True).batch(2)
    train = tf.data.Dataset.zip(train, seeds).map(train_step, num_parallel_calls=AUTOTUNE)
    train = train.batch(s.batch_size).prefetch(AUTOTUNE)
    val = resized(val_images, s.image_size).map(eval_step, num_parallel_calls=AUTOTUNE)
    val = val.batch(s.batch_size).prefetch(AUTOTUNE)
    return FlowerData(
        train, val, list(class_names), source, num_train, num_val, sorted(skipped), data_dir,
        image_size=s.image_size, batch_size=s.batch_size, seed=s.seed, _train_cache=train_cache, _cached=s.cache,
    )


def _count(ds: tf.data.Dataset) -> int:
    n = int(ds.cardinality())
    return n if n >= 0 else sum(1 for _ in ds)  # unknown cardinality: count once (small data sets)


def _files_dataset(paths, labels) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((tf.constant(paths, tf.string), tf.constant(labels, tf.int32)))
    return ds.map(lambda path, label: (decode_image(tf.io.read_file(path)), label), num_parallel_calls=AUTOTUNE)


def _load_folder(root, source: str, settings: _Settings, val_fraction: float, limit: int | None) -> FlowerData:
    root = Path(root).expanduser().absolute()
    paths, labels, class_names = list_image_files(root)
    train_p, train_y, val_p, val_y = split_stratified(paths, labels, val_fraction, settings.seed)
    train_p, train_y = _take_per_class_round_robin(train_p, train_y, limit)
    val_p, val_y = _take_per_class_round_robin(val_p, val_y, limit)
    train_p, train_y, skipped_train = _drop_unreadable(train_p, train_y, class_names, root)
    val_p, val_y, skipped_val = _drop_unreadable(val_p, val_y, class_names, root) if val_p else ([], [], [])
    skipped = sorted(skipped_train + skipped_val)
    _warn_skipped(skipped, root)
    if settings.shuffle and train_p:
        # Files arrive grouped by class; mix them once so even a bounded shuffle buffer sees every class.
        order = np.random.default_rng(settings.seed).permutation(len(train_p))
        train_p, train_y = [train_p[i] for i in order], [train_y[i] for i in order]
    train, val = _files_dataset(train_p, train_y), _files_dataset(val_p, val_y)
    return _build(train, val, class_names, source, settings, skipped, str(root))


# --- tfds -----------------------------------------------------------------------------------------------


def _host_reachable(host: str, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def tfds_available() -> bool:
    """Can ``tfds.load("tf_flowers")`` deliver without hanging? Prepared already, or its download host answers.

    Checked first because, offline, tfds would otherwise spend a long time retrying the download.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        return False
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)  # "Variant folder ... has no dataset_info.json" is expected here
    try:
        if tfds.builder(TFDS_NAME).is_prepared():
            return True
    except Exception:  # noqa: BLE001  (a broken tfds install is just "not available")
        return False
    finally:
        absl_logger.setLevel(level)
    return _host_reachable(TFDS_DOWNLOAD_HOST)


def _load_tfds(settings: _Settings, limit: int | None) -> FlowerData:
    import tensorflow_datasets as tfds

    (train, val), info = tfds.load(TFDS_NAME, split=TFDS_SPLITS, as_supervised=True, with_info=True)
    if limit is not None:
        train, val = train.take(limit), val.take(limit)
    return _build(train, val, info.features["label"].names, "tfds", settings)


# --- synthetic ------------------------------------------------------------------------------------------


def _cache_dir() -> Path:
    if os.environ.get("MVLIB_CACHE_DIR"):
        return Path(os.environ["MVLIB_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mvlib"


def _synthetic_image(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
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


def make_synthetic_flowers(
    root: str | os.PathLike | None = None,
    num_per_class: int = SYNTHETIC_PER_CLASS,
    image_size: int = SYNTHETIC_IMAGE_SIZE,
    seed: int = 0,
    class_names=SYNTHETIC_CLASSES,
) -> Path:
    """Write ``<root>/<class>/<class>_NNNN.jpg`` JPEGs of class-dependent shapes; return ``root``.

    Real JPEG files (``tf.io.encode_jpeg``), so the folder code path is exercised end to end. The default
    root is ``$MVLIB_CACHE_DIR`` (or ``~/.cache/mvlib``) ``/synthetic_flowers/n<N>_s<size>_seed<seed>``.
    A ``SYNTHETIC.txt`` at the root labels the folder and records the parameters: a folder with the same
    parameters is reused, one with other parameters is regenerated, and a non-empty folder without that
    file is never written into (so a typo cannot pour shapes into your photos).
    """
    if root is None:
        root = _cache_dir() / "synthetic_flowers" / f"n{num_per_class}_s{image_size}_seed{seed}"
    root = Path(root).expanduser().absolute()
    stamp = f"params: num_per_class={num_per_class} image_size={image_size} seed={seed} classes={','.join(class_names)}"
    marker = root / SYNTHETIC_MARKER

    def ready() -> bool:
        return marker.is_file() and stamp in marker.read_text()

    if ready():
        return root
    if root.exists():
        if marker.is_file():
            shutil.rmtree(root)  # ours, with other parameters
        elif root.is_dir() and any(root.iterdir()):
            raise DataSourceError(
                f"refusing to write synthetic images into {root}: it is not empty and has no {SYNTHETIC_MARKER}"
            )
        elif root.is_dir():
            root.rmdir()  # empty: take it over
        else:
            raise DataSourceError(f"cannot write synthetic images to {root}: it is a file")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=root.parent))
    try:
        rng = np.random.default_rng(seed)
        for label, name in enumerate(class_names):
            (tmp / name).mkdir()
            for i in range(num_per_class):
                jpeg = tf.io.encode_jpeg(_synthetic_image(rng, label, image_size), quality=90)
                (tmp / name / f"{name}_{i:04d}.jpg").write_bytes(jpeg.numpy())
        (tmp / SYNTHETIC_MARKER).write_text(
            "SYNTHETIC data made by mvlib.data.make_synthetic_flowers: coloured shapes, not flower photos.\n"
            "Use it to check pipelines and training loops; accuracy on it says nothing about flowers.\n"
            f"{stamp}\n"
        )
        os.rename(tmp, root)  # atomic: other processes see nothing or the complete folder
    except OSError:
        if not ready():  # not just another process finishing first
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


# --- entry point ----------------------------------------------------------------------------------------


def _no_data_error(looked: list[str]) -> DataSourceError:
    return DataSourceError(
        "no flower data found. Provide it in one of three ways:\n"
        '  1. online: tensorflow-datasets downloads tf_flowers (load_flowers(source="tfds"));\n'
        "  2. a folder of <class>/<image> photos (e.g. flower_photos from TensorFlow's example_images): "
        'load_flowers(data_dir="...") or the MVLIB_DATA_DIR environment variable;\n'
        '  3. load_flowers(source="synthetic"): generated shapes, only for checking that code runs.\n'
        f"Looked in: {'; '.join(looked)}"
    )


def _check_args(source, image_size, batch_size, val_fraction, limit) -> None:
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; valid sources: {', '.join(SOURCES)}")
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be None or a positive integer, got {limit!r}")


def load_flowers(
    source: str = "auto",
    data_dir: str | os.PathLike | None = None,
    image_size: int = 256,
    batch_size: int = 64,
    seed: int = 42,
    val_fraction: float = 0.1,
    limit: int | None = None,
    augment: bool = True,
    shuffle: bool = True,
    cache: bool = True,
) -> FlowerData:
    """tf_flowers as batched ``(float32 images in [0, 255], one-hot labels)`` train/val pipelines.

    ``source``: "tfds", "folder" (``data_dir``, else ``MVLIB_DATA_DIR``, else ``default_data_dir()``),
    "synthetic" (generated into ``data_dir`` or the cache folder) or "auto" (see the module docstring).
    ``limit`` keeps at most that many images per split (quick runs and tests): from a folder, classes in
    turn; from tfds, the first ``limit`` (its records are already mixed).
    ``val_fraction`` applies to folders; tfds always uses the example's ``train[90%:]``.
    ``augment=False`` trains on the evaluation preprocessing; ``shuffle=False`` keeps file order.
    """
    _check_args(source, image_size, batch_size, val_fraction, limit)
    settings = _Settings(image_size, batch_size, seed, augment, shuffle, cache)
    named = data_dir if data_dir is not None else os.environ.get("MVLIB_DATA_DIR") or None

    if source == "tfds":
        if not tfds_available():
            raise DataSourceError(
                f"tfds cannot provide {TFDS_NAME}: it is not prepared in the tfds data folder and "
                f"{TFDS_DOWNLOAD_HOST} is unreachable. Use a local folder (data_dir= or MVLIB_DATA_DIR) "
                'or source="synthetic".'
            )
        return _load_tfds(settings, limit)
    if source == "folder":
        return _load_folder(named or default_data_dir(), "folder", settings, val_fraction, limit)
    if source == "synthetic":
        return _load_folder(make_synthetic_flowers(data_dir), "synthetic", settings, val_fraction, limit)

    # auto: a folder the user named wins; then tfds; then the project's shared folder.
    if named:
        return _load_folder(named, "folder", settings, val_fraction, limit)
    if tfds_available():
        try:
            return _load_tfds(settings, limit)
        except Exception as e:  # noqa: BLE001  (fall back to the folder; say why)
            warnings.warn(f"tfds could not load {TFDS_NAME} ({type(e).__name__}: {e}); trying a folder", stacklevel=2)
    if default_data_dir().is_dir():
        return _load_folder(default_data_dir(), "folder", settings, val_fraction, limit)
    raise _no_data_error(
        [
            f"tfds ({TFDS_NAME} not prepared and not downloadable from here)",
            "data_dir / MVLIB_DATA_DIR (not set)",
            str(default_data_dir()),
        ]
    )
