"""tf_flowers for every Keras backend: decoded once into memory, augmented with numpy + Pillow.

``load_flowers()`` returns a :class:`FlowerData`. Its ``train`` / ``train_stream(...)`` and ``val`` are
``keras.utils.PyDataset`` objects yielding batches of ``(images, one_hot_labels)``: float32 RGB pixels
in [0, 255] (the models rescale internally) and float32 one-hot labels. ``model.fit`` takes them on
TensorFlow, JAX and PyTorch alike, and a plain ``for images, labels in data.val`` works too. Nothing
here imports TensorFlow (only the ``"tfds"`` source does).

Preprocessing follows the keras-io MobileViT example:

* every photo is decoded and resized once (bilinear) and kept in memory as uint8: training images at
  ``image_size + 24`` (280 for 256), validation images at ``image_size``. For the 2,972 training
  photos that is ~700 MB;
* training: a random ``image_size`` crop + random left-right flip (``augment="keras-io"``, the
  example's), or a random-resized crop (``"inception"``: a random part of the image, resized to
  ``image_size``, then flipped). :func:`augment` is the one definition of both;
* evaluation: the cached ``image_size`` image as it is.

Every random draw comes from ``numpy.random.default_rng((seed, epoch, pass, position))``, so epoch ``e``
of the training stream is a function of (seed, e) alone: a run resumed at epoch ``e`` sees exactly the
batches an uninterrupted run would have, whichever backend and however many worker threads.

Where the data comes from (``source=``):

* ``"tfds"``: ``tfds.load("tf_flowers")`` with the example's split ``train[:90%]`` / ``train[90%:]``
  (needs ``tensorflow-datasets``, hence TensorFlow). Its class order is tfds's, not alphabetical.
* ``"folder"``: ``<root>/<class>/<image>`` (TensorFlow's ``flower_photos`` layout). Classes are the
  sorted folder names; the 90/10 split is stratified and fixed by ``seed``.
* ``"synthetic"``: generated JPEGs of coloured shapes in the same layout, for checking pipelines and
  training loops without the photos. Accuracy on them says nothing about flowers.
* ``"auto"``: a folder you named (``data_dir`` or ``MVLIB_DATA_DIR``), else tfds (when already prepared
  or its download host answers), else ``default_data_dir()``, else ``DataSourceError``.

Bad files in a folder never stop training halfway: every file is decoded while loading. What counts:

* at the root, only non-hidden folders are classes; files there (README, checksum lists) are ignored;
* inside a class folder, every non-hidden file is a candidate whatever its extension: PNG, GIF, BMP,
  WebP, grayscale and CMYK JPEGs decode to RGB and are used; anything that does not decode (corrupt or
  truncated JPEG, README.txt, empty file) is left out and reported, in ``FlowerData.skipped`` and in one
  ``SkippedFilesWarning`` (Pillow raises instead of printing libjpeg's own messages);
* hidden entries (``.DS_Store``, ``._x.jpg``, ``.ipynb_checkpoints``) are ignored without a report;
* a missing root, a root without class folders, an empty class folder, or a class whose every file is
  unreadable raises ``DataSourceError`` naming the path.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from mvlib.data.images import RESIZE_MARGIN, decode_image, resize
from mvlib.data.pipeline import Batches, TrainStream
from mvlib.data.synthetic import synthetic_image

TFDS_NAME = "tf_flowers"


TFDS_SPLITS = ["train[:90%]", "train[90%:]"]  # the keras-io example's split


TFDS_DOWNLOAD_HOST = "storage.googleapis.com"  # where tfds fetches flower_photos.tgz


SYNTHETIC_CLASSES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")


SYNTHETIC_MARKER = "SYNTHETIC.txt"


SOURCES = ("auto", "tfds", "folder", "synthetic")


class DataSourceError(FileNotFoundError):
    """No usable data where we looked: the message names the path or the ways to provide data."""


class SkippedFilesWarning(UserWarning):
    """Some files in a class folder could not be decoded and were left out (listed in ``FlowerData.skipped``)."""


@dataclass
class FlowerData:
    """The decoded photos in memory plus what a notebook needs to say where they came from."""

    train_images: np.ndarray  # uint8 (n, image_size + 24, image_size + 24, 3), or image_size when augment=False
    train_labels: np.ndarray
    val_images: np.ndarray  # uint8 (n, image_size, image_size, 3)
    val_labels: np.ndarray
    class_names: list[str]
    source: str  # "tfds" | "folder" | "synthetic"
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    data_dir: str | None = None  # the folder read, for "folder" and "synthetic"
    image_size: int = 256
    batch_size: int = 64
    seed: int = 42
    augment: str = "keras-io"  # what ``train`` uses

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_train(self) -> int:
        return len(self.train_images)

    @property
    def num_val(self) -> int:
        return len(self.val_images)

    @property
    def train(self) -> TrainStream:
        """Epoch 0 of the training stream with this data's default augmentation."""
        return self.train_stream(augment=self.augment)

    @property
    def val(self) -> Batches:
        return Batches(self.val_images, self.val_labels, self.num_classes, self.batch_size)

    def train_stream(self, initial_epoch: int = 0, augment: str | None = None, batch_size: int | None = None,
                     seed: int | None = None, steps_per_epoch: int | None = None, workers: int | None = None,
                     mix: str | None = None, processes: bool | None = None) -> TrainStream:
        """The training stream from ``initial_epoch`` (see :class:`TrainStream`)."""
        if augment == "keras-io" and self.train_images.shape[1] < self.image_size + RESIZE_MARGIN:
            augment = "none"  # load_flowers(augment=False) cached image_size images: nothing to crop from
        return TrainStream(
            self.train_images, self.train_labels, self.num_classes, image_size=self.image_size,
            augment_mode=augment or self.augment, batch_size=batch_size or self.batch_size,
            seed=self.seed if seed is None else seed, initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch, workers=workers, mix=mix, processes=processes,
        )

    def balanced_images(self, split: str, limit: int) -> np.ndarray:
        """Up to ``limit`` float32 images of ``split`` ("train" at ``image_size``, or "val"), classes in turn."""
        images, labels = (self.val_images, self.val_labels) if split == "val" else (self.train_images, self.train_labels)
        order = _round_robin(labels, limit)
        return np.stack([resize(images[i], self.image_size) for i in order]).astype(np.float32)

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


def _round_robin(labels, limit: int | None) -> list[int]:
    """Indices of at most ``limit`` items, taking the classes in turn so a small slice covers every class."""
    queues: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        queues.setdefault(int(label), []).append(index)
    picked: list[int] = []
    for i in range(max((len(q) for q in queues.values()), default=0)):
        picked += [q[i] for _, q in sorted(queues.items()) if i < len(q)]
    return picked if limit is None else picked[:limit]


def default_data_dir() -> Path:
    """``../shared/data/flower_photos`` next to the repository: where this project's offline machines keep the photos.

    Returned whether or not it exists; ``load_flowers(source="auto")`` only uses it if it does.
    """
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "flower_photos"


def _visible(entries):
    """Drop hidden entries (.DS_Store, ._* AppleDouble, .ipynb_checkpoints): metadata, never photos."""
    return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def list_image_files(root: str | os.PathLike) -> tuple[list[str], list[int], list[str]]:
    """``<root>/<class>/<file>`` -> (paths, labels, class_names), classes in sorted folder-name order.

    Files directly in ``root`` (README, checksums) are not images of any class and are ignored; every
    non-hidden file inside a class folder is returned, whatever its extension, so that the loader can
    report the ones that are not images instead of dropping them silently.
    """
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise DataSourceError(f"data folder not found: {root}" if not root.exists() else f"not a folder: {root}")
    with os.scandir(root) as it:
        class_dirs = [e for e in _visible(it) if e.is_dir()]
    if len(class_dirs) < 2:
        found = f"only one, {class_dirs[0].name}" if class_dirs else "none"
        raise DataSourceError(f"a classifier needs at least two class folders in {root} ({found}): "
                              f"expected {root}/<class name>/<image files>")
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


def _decode_resized(path: str, size: int) -> np.ndarray | str:
    """The resized uint8 image, or a one-line reason why the file cannot be used."""
    try:
        return resize(decode_image(path), size)
    except OSError as e:  # unreadable, not an image, truncated (Pillow's errors are OSErrors)
        return str(e).split("\n")[0] or type(e).__name__
    except (ValueError, Image.DecompressionBombError) as e:
        return f"{type(e).__name__}: {e}"


def _decode_all(paths, labels, size: int) -> tuple[np.ndarray, np.ndarray, list]:
    """Decode + resize every file in parallel threads -> (images, labels, [(path, reason) of the unreadable])."""
    with ThreadPoolExecutor(min(16, 2 * (os.cpu_count() or 1))) as pool:
        results = list(pool.map(lambda p: _decode_resized(p, size), paths))
    good = [i for i, r in enumerate(results) if isinstance(r, np.ndarray)]
    skipped = [(paths[i], results[i]) for i, r in enumerate(results) if not isinstance(r, np.ndarray)]
    images = np.stack([results[i] for i in good]) if good else np.zeros((0, size, size, 3), np.uint8)
    return images, np.array([labels[i] for i in good], np.int64), skipped


def _warn_skipped(skipped, root, shown: int = 5) -> None:
    if not skipped:
        return
    lines = "\n".join(f"  {path}: {reason}" for path, reason in skipped[:shown])
    more = f"\n  ... and {len(skipped) - shown} more" if len(skipped) > shown else ""
    warnings.warn(
        f"skipped {len(skipped)} file(s) under {root} that do not decode as images "
        f"(full list in FlowerData.skipped):\n{lines}{more}",
        SkippedFilesWarning,
        stacklevel=3,  # the caller of load_flowers
    )


def _load_folder(root, source: str, s: dict, limit: int | None) -> FlowerData:
    root = Path(root).expanduser().absolute()
    paths, labels, class_names = list_image_files(root)
    train_p, train_y, val_p, val_y = split_stratified(paths, labels, s["val_fraction"], s["seed"])
    train_p, train_y = _limited(train_p, train_y, limit)
    val_p, val_y = _limited(val_p, val_y, limit)
    train_x, train_y_kept, skipped_train = _decode_all(train_p, train_y, _train_size(s))
    val_x, val_y_kept, skipped_val = _decode_all(val_p, val_y, s["image_size"])
    skipped = sorted(skipped_train + skipped_val)
    emptied = sorted(set(train_y + val_y) - set(train_y_kept.tolist() + val_y_kept.tolist()))
    if emptied:
        reasons = dict(skipped)
        example = next(p for p, y in zip(train_p + val_p, train_y + val_y) if y == emptied[0])
        raise DataSourceError(f"class folder {root / class_names[emptied[0]]} has no readable images; "
                              f"e.g. {Path(example).name}: {reasons[example]}")
    if not len(val_y_kept) or not len(train_y_kept):
        raise DataSourceError(f"{root} has too few images for both splits ({len(train_y_kept)} train / "
                              f"{len(val_y_kept)} val at a validation fraction of {s['val_fraction']})")
    _warn_skipped(skipped, root)
    return _data(train_x, train_y_kept, val_x, val_y_kept, class_names, source, s, skipped, str(root))


def _limited(paths, labels, limit):
    order = _round_robin(labels, limit)
    return [paths[i] for i in order], [labels[i] for i in order]


def _train_size(s: dict) -> int:
    return s["image_size"] + RESIZE_MARGIN if s["augment"] else s["image_size"]


def _data(train_x, train_y, val_x, val_y, class_names, source, s, skipped=(), data_dir=None) -> FlowerData:
    return FlowerData(train_x, train_y, val_x, val_y, list(class_names), source, list(skipped), data_dir,
                      image_size=s["image_size"], batch_size=s["batch_size"], seed=s["seed"],
                      augment="keras-io" if s["augment"] else "none")


def _host_reachable(host: str, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def tfds_available() -> bool:
    """Can ``tfds.load("tf_flowers")`` deliver without hanging? Installed, and prepared already or its
    download host answers (checked first because, offline, tfds would spend a long time retrying)."""
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


def _load_tfds(s: dict, limit: int | None) -> FlowerData:
    import tensorflow_datasets as tfds

    (train, val), info = tfds.load(TFDS_NAME, split=TFDS_SPLITS, as_supervised=True, with_info=True)
    if limit is not None:
        train, val = train.take(limit), val.take(limit)

    def arrays(split, size):
        pairs = [(resize(image, size), int(label)) for image, label in tfds.as_numpy(split)]
        return np.stack([p[0] for p in pairs]), np.array([p[1] for p in pairs], np.int64)

    train_x, train_y = arrays(train, _train_size(s))
    val_x, val_y = arrays(val, s["image_size"])
    return _data(train_x, train_y, val_x, val_y, info.features["label"].names, "tfds", s)


def _cache_dir() -> Path:
    if os.environ.get("MVLIB_CACHE_DIR"):
        return Path(os.environ["MVLIB_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mvlib"


def make_synthetic_flowers(
    root: str | os.PathLike | None = None,
    num_per_class: int = 60,
    image_size: int = 128,
    seed: int = 0,
    class_names=SYNTHETIC_CLASSES,
) -> Path:
    """Write ``<root>/<class>/<class>_NNNN.jpg`` JPEGs of class-dependent shapes; return ``root``.

    Real JPEG files, so the folder code path is exercised end to end. The default root is
    ``$MVLIB_CACHE_DIR`` (or ``~/.cache/mvlib``) ``/synthetic_flowers/n<N>_s<size>_seed<seed>``.
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
                Image.fromarray(synthetic_image(rng, label, image_size)).save(tmp / name / f"{name}_{i:04d}.jpg", quality=90)
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
) -> FlowerData:
    """tf_flowers decoded into memory, with ``train`` / ``train_stream()`` / ``val`` batches (module docstring).

    ``source``: "tfds", "folder" (``data_dir``, else ``MVLIB_DATA_DIR``, else ``default_data_dir()``),
    "synthetic" (generated into ``data_dir`` or the cache folder) or "auto".
    ``limit`` keeps at most that many images per split, classes in turn (quick runs and tests; from tfds,
    the first ``limit``: its records are already mixed). ``val_fraction`` applies to folders; tfds always
    uses the example's ``train[90%:]``. ``augment=False`` caches training images at ``image_size`` (no
    crop margin), for export calibration and other un-augmented uses.
    """
    _check_args(source, image_size, batch_size, val_fraction, limit)
    s = dict(image_size=image_size, batch_size=batch_size, seed=seed, val_fraction=val_fraction, augment=augment)
    named = data_dir if data_dir is not None else os.environ.get("MVLIB_DATA_DIR") or None

    if source == "tfds":
        if not tfds_available():
            raise DataSourceError(
                f"tfds cannot provide {TFDS_NAME}: tensorflow-datasets is not installed, or {TFDS_NAME} is not "
                f"prepared in its data folder and {TFDS_DOWNLOAD_HOST} is unreachable. Use a local folder "
                '(data_dir= or MVLIB_DATA_DIR) or source="synthetic".'
            )
        return _load_tfds(s, limit)
    if source == "folder":
        return _load_folder(named or default_data_dir(), "folder", s, limit)
    if source == "synthetic":
        return _load_folder(make_synthetic_flowers(data_dir), "synthetic", s, limit)

    # auto: a folder the user named wins; then tfds; then the project's shared folder.
    if named:
        return _load_folder(named, "folder", s, limit)
    if tfds_available():
        try:
            return _load_tfds(s, limit)
        except Exception as e:  # noqa: BLE001  (fall back to the folder; say why)
            warnings.warn(f"tfds could not load {TFDS_NAME} ({type(e).__name__}: {e}); trying a folder", stacklevel=2)
    if default_data_dir().is_dir():
        return _load_folder(default_data_dir(), "folder", s, limit)
    raise _no_data_error(
        [
            f"tfds ({TFDS_NAME} not prepared and not downloadable from here)",
            "data_dir / MVLIB_DATA_DIR (not set)",
            str(default_data_dir()),
        ]
    )
