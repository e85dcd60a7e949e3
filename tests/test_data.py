"""The flower pipelines: split, preprocessing, caching, every kind of bad input, sources and their errors.

All offline: folders of tiny JPEGs are written into tmp_path; tfds is mocked; the real photos are only
read (a small slice) when ``../shared/data/flower_photos`` exists.
"""

import io
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import mvlib  # noqa: F401
import tensorflow as tf
from mvlib import data
from mvlib.data import DataSourceError, SkippedFilesWarning, load_flowers

PIL = pytest.importorskip("PIL.Image")  # a pyproject dependency; only used to write PNG/grayscale/CMYK files

JPEG_MAGIC = b"\xff\xd8\xff"


def write_image(path: Path, array: np.ndarray, fmt: str = "JPEG", mode: str | None = None) -> Path:
    image = PIL.fromarray(array)
    if mode:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, quality=95) if fmt == "JPEG" else image.save(buffer, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path


def noise(rng, height=24, width=32, tint=(1.0, 1.0, 1.0)):
    return (rng.uniform(0, 255, (height, width, 3)) * np.array(tint)).astype(np.uint8)


def make_folder(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """<root>/<class>/img_NN.jpg with random-noise JPEGs (structure, so crops and flips change pixels)."""
    rng = np.random.default_rng(seed)
    for name, n in counts.items():
        for i in range(n):
            write_image(root / name / f"img_{i:02d}.jpg", noise(rng))
    return root


@pytest.fixture
def folder(tmp_path):
    # created out of alphabetical order: class order must still be sorted
    return make_folder(tmp_path / "flowers", {"tulips": 7, "daisy": 5, "roses": 6})


def first_batch(ds):
    images, labels = next(iter(ds))
    return images.numpy(), labels.numpy()


def all_images(ds):
    return np.concatenate([images.numpy() for images, _ in ds])


# --- listing and splitting ----------------------------------------------------------------------------


def test_classes_are_sorted_folder_names_and_metadata_is_ignored(folder):
    (folder / "README.md").write_text("not a class")
    (folder / "checksums.sha256").write_text("abc  daisy/img_00.jpg\n")
    (folder / ".ipynb_checkpoints").mkdir()
    (folder / "daisy" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    paths, labels, class_names = data.list_image_files(folder)
    assert class_names == ["daisy", "roses", "tulips"]
    assert len(paths) == 5 + 6 + 7
    assert labels == [0] * 5 + [1] * 6 + [2] * 7
    assert not any(".DS_Store" in p or "README" in p for p in paths)


def test_split_is_deterministic_disjoint_and_stratified(folder):
    paths, labels, _ = data.list_image_files(folder)
    first = data.split_stratified(paths, labels, val_fraction=0.2, seed=7)
    assert first == data.split_stratified(list(reversed(paths)), list(reversed(labels)), 0.2, seed=7)
    train_paths, train_labels, val_paths, val_labels = first
    assert not set(train_paths) & set(val_paths)
    assert sorted(train_paths + val_paths) == sorted(paths)
    assert sorted(set(val_labels)) == [0, 1, 2]  # every class in val
    assert [val_labels.count(c) for c in range(3)] == [1, 1, 1]  # round(5*.2)=1, round(6*.2)=1, round(7*.2)=1
    assert data.split_stratified(paths, labels, 0.2, seed=8) != first


def test_split_is_fixed_across_processes():
    # A hard-coded answer: the split depends on file names and the seed only (no hashing, no dict order).
    files = [f"f{i:02d}.jpg" for i in range(10)]
    _, _, val, _ = data.split_stratified(files, [0] * 10, val_fraction=0.3, seed=42)
    assert val == ["f05.jpg", "f06.jpg", "f00.jpg"]


def test_small_classes_keep_one_image_in_each_split():
    files = ["a0", "a1", "b0", "b1", "b2", "c0"]
    train, train_labels, val, val_labels = data.split_stratified(files, [0, 0, 1, 1, 1, 2], 0.1, seed=0)
    assert val_labels == [0, 1]  # at least 1 when n >= 2; a class of 1 stays in train
    assert train_labels.count(0) == 1 and train_labels.count(1) == 2 and train_labels == sorted(train_labels)
    assert data.split_stratified(files, [0, 0, 1, 1, 1, 2], 0.0, seed=0)[2] == []


# --- preprocessing and pipelines -----------------------------------------------------------------------


def test_full_size_batches_match_the_keras_io_example(folder):
    flowers = load_flowers("folder", folder, image_size=256, batch_size=4, val_fraction=0.2)
    assert (flowers.source, flowers.num_train, flowers.num_val) == ("folder", 15, 3)
    assert flowers.class_names == ["daisy", "roses", "tulips"] and flowers.num_classes == 3
    images, labels = first_batch(flowers.train)
    assert images.shape == (4, 256, 256, 3) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 255.0 and images.max() > 1.0  # [0, 255], not [0, 1]
    assert labels.shape == (4, 3) and labels.dtype == np.float32
    np.testing.assert_array_equal(labels.sum(axis=1), 1.0)
    assert set(np.unique(labels)) <= {0.0, 1.0}
    val_images, _ = first_batch(flowers.val)
    assert val_images.shape == (3, 256, 256, 3) and val_images.dtype == np.float32
    assert "photos from" in flowers.describe() and "15 train / 3 val" in flowers.describe()


def test_augmentation_changes_every_epoch_and_evaluation_does_not(folder):
    tf.random.set_seed(0)  # as keras.utils.set_random_seed does: must not freeze the augmentation
    flowers = load_flowers("folder", folder, image_size=16, batch_size=8, shuffle=False)
    epoch1, epoch2 = all_images(flowers.train), all_images(flowers.train)
    assert epoch1.shape == epoch2.shape == (flowers.num_train, 16, 16, 3)
    assert not np.array_equal(epoch1, epoch2)
    np.testing.assert_array_equal(all_images(flowers.val), all_images(flowers.val))
    plain = load_flowers("folder", folder, image_size=16, batch_size=8, shuffle=False, augment=False)
    np.testing.assert_array_equal(all_images(plain.train), all_images(plain.train))


def test_shuffling_mixes_classes_and_changes_order_each_epoch(folder):
    flowers = load_flowers("folder", folder, image_size=8, batch_size=64, augment=False)
    (_, labels1), (_, labels2) = next(iter(flowers.train)), next(iter(flowers.train))
    order1, order2 = labels1.numpy().argmax(1), labels2.numpy().argmax(1)
    assert sorted(order1) == sorted(order2) and len(order1) == flowers.num_train
    assert not np.array_equal(order1, np.sort(order1))  # not grouped by class
    assert not np.array_equal(order1, order2)  # a new order every epoch (18! orders: equal by chance ~never)


def test_decoding_happens_once_thanks_to_the_cache(tmp_path):
    root = make_folder(tmp_path / "flowers", {"a": 4, "b": 4})
    flowers = load_flowers("folder", root, image_size=16, batch_size=4, val_fraction=0.25, augment=False, shuffle=False)
    train1, val1 = all_images(flowers.train), all_images(flowers.val)
    shutil.rmtree(root)  # a second epoch must not need the files
    np.testing.assert_array_equal(all_images(flowers.train), train1)
    np.testing.assert_array_equal(all_images(flowers.val), val1)


def test_preprocess_functions_and_load_image_agree_with_the_pipeline(folder):
    image = tf.constant(noise(np.random.default_rng(1), 50, 70))
    train_image, train_label = data.preprocess_train(image, 2, image_size=32, num_classes=3)
    eval_image, eval_label = data.preprocess_eval(image, 2, image_size=32, num_classes=3)
    for x in (train_image, eval_image):
        assert x.shape == (32, 32, 3) and x.dtype == tf.float32
        assert 0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 255
    np.testing.assert_array_equal(train_label.numpy(), [0, 0, 1])
    np.testing.assert_array_equal(eval_label.numpy(), [0, 0, 1])

    flowers = load_flowers("folder", folder, image_size=32, batch_size=64, val_fraction=0.2)
    paths, labels, _ = data.list_image_files(folder)
    val_paths = data.split_stratified(paths, labels, 0.2, seed=42)[2]
    val_images = all_images(flowers.val)
    for path, pipeline_image in zip(val_paths, val_images):
        loaded = data.load_image(path, image_size=32).numpy()
        np.testing.assert_array_equal(loaded, pipeline_image)
        # the uint8 cache moves pixels by at most half a grey level from the example's float resize
        exact, _ = data.preprocess_eval(data.decode_image(tf.io.read_file(path)), 0, image_size=32)
        assert np.abs(exact.numpy() - loaded).max() <= 0.5 + 1e-4


def test_limit_takes_every_class_in_turn(folder):
    flowers = load_flowers("folder", folder, image_size=8, batch_size=64, limit=4, shuffle=False)
    assert (flowers.num_train, flowers.num_val) == (4, 3)  # val has only 3 images (1 per class)
    _, labels = first_batch(flowers.train)
    assert sorted(labels.argmax(1)) == [0, 0, 1, 2]


def test_bad_arguments_fail_early(folder):
    with pytest.raises(ValueError, match="unknown source"):
        load_flowers("imagenet", folder)
    with pytest.raises(ValueError, match="val_fraction"):
        load_flowers("folder", folder, val_fraction=1.0)
    with pytest.raises(ValueError, match="limit"):
        load_flowers("folder", folder, limit=0)


# --- the resumable training stream ----------------------------------------------------------------------


def stream_batches(flowers, steps, **kwargs):
    return [(x.numpy(), y.numpy()) for x, y in flowers.train_stream(**kwargs).take(steps)]


@pytest.mark.parametrize("augment", ["keras-io", "inception"])
def test_train_stream_is_a_function_of_seed_and_epoch(folder, augment):
    # Two loads (as in two processes), different global seeds: the same batches. Resuming at epoch 1 gives
    # exactly what an uninterrupted stream gives after one epoch (3 batches of <= 7 for 15 images).
    tf.random.set_seed(1)
    first = load_flowers("folder", folder, image_size=16, batch_size=7, val_fraction=0.2)
    uninterrupted = stream_batches(first, 6, augment=augment)
    tf.random.set_seed(2)
    second = load_flowers("folder", folder, image_size=16, batch_size=7, val_fraction=0.2)
    resumed = stream_batches(second, 3, augment=augment, initial_epoch=1)
    assert [x.shape[0] for x, _ in uninterrupted] == [7, 7, 1, 7, 7, 1]  # batches never straddle epochs
    for (x1, y1), (x2, y2) in zip(uninterrupted[3:], resumed):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    epoch0, epoch1 = (np.concatenate([x for x, _ in uninterrupted[i : i + 3]]) for i in (0, 3))
    assert epoch0.shape == (15, 16, 16, 3) and epoch0.dtype == np.float32
    assert 0 <= epoch0.min() and epoch0.max() <= 255
    assert not np.array_equal(epoch0, epoch1)  # new order and augmentation each epoch
    assert not np.array_equal(epoch0, np.concatenate([x for x, _ in stream_batches(first, 3, augment=augment, seed=9)]))


@pytest.mark.parametrize("steps", [2, 5])
def test_train_stream_resumes_exactly_with_shorter_or_longer_epochs(folder, steps):
    # Quick mode (2 steps < 3 batches per pass) and long epochs (5 steps > 3) both stay aligned with Keras.
    flowers = load_flowers("folder", folder, image_size=8, batch_size=7, val_fraction=0.2)
    uninterrupted = stream_batches(flowers, 2 * steps, steps_per_epoch=steps)
    resumed = stream_batches(flowers, steps, steps_per_epoch=steps, initial_epoch=1)
    for (x1, y1), (x2, y2) in zip(uninterrupted[steps:], resumed):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    plain = stream_batches(flowers, 3)
    for (x1, _), (x2, _) in zip(plain[:steps], uninterrupted):  # pass 0 of epoch 0 is the plain epoch 0
        np.testing.assert_array_equal(x1, x2)
    if steps == 5:  # the second pass is a new permutation, not a repeat
        assert not np.array_equal(uninterrupted[3][0], uninterrupted[0][0])


def test_train_stream_visits_every_image_once_per_epoch(folder):
    flowers = load_flowers("folder", folder, image_size=16, augment=False, val_fraction=0.2)
    batches = stream_batches(flowers, 2, augment="none", batch_size=15)
    plain = load_flowers("folder", folder, image_size=16, augment=False, shuffle=False, val_fraction=0.2)
    reference = sorted(map(bytes, all_images(plain.train)))
    for images, labels in batches:  # two epochs, each a permutation of the training images
        assert sorted(map(bytes, images)) == reference
        assert labels.sum(0).tolist() == [4, 5, 6]
    assert not np.array_equal(batches[0][1], batches[1][1])
    with pytest.raises(ValueError, match="unknown augment"):
        flowers.train_stream(augment="mixup")


# --- bad input ------------------------------------------------------------------------------------------


def test_bad_files_are_reported_and_the_rest_train_without_errors(tmp_path):
    rng = np.random.default_rng(3)
    root = make_folder(tmp_path / "flowers", {"daisy": 4, "roses": 4})
    good = root / "daisy" / "img_00.jpg"
    (root / "daisy" / "corrupt.jpg").write_bytes(JPEG_MAGIC + rng.bytes(500))
    (root / "daisy" / "truncated.jpg").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (root / "roses" / "README.txt").write_text("photos by ...")
    (root / "roses" / "empty.jpg").write_bytes(b"")
    (root / "roses" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")  # hidden metadata: ignored, not reported
    (root / "roses" / "moved.jpg").symlink_to(tmp_path / "gone.jpg")  # a broken link is reported, not dropped
    write_image(root / "daisy" / "picture.png", noise(rng), "PNG")
    write_image(root / "daisy" / "gray.jpg", noise(rng), mode="L")
    red = np.zeros((20, 20, 3), np.uint8) + np.array([200, 30, 40], np.uint8)
    cmyk = write_image(root / "roses" / "cmyk.jpg", red, mode="CMYK")

    with pytest.warns(SkippedFilesWarning, match=r"skipped 5 file\(s\)") as record:
        flowers = load_flowers("folder", root, image_size=16, batch_size=4, val_fraction=0.2)
    message = str(record[0].message)
    assert "corrupt.jpg" in message and "README.txt" in message

    reasons = dict(flowers.skipped)
    assert sorted(Path(p).name for p in reasons) == ["README.txt", "corrupt.jpg", "empty.jpg", "moved.jpg", "truncated.jpg"]
    assert all(Path(p).is_absolute() for p in reasons)
    assert "Unknown image file format" in reasons[str(root / "roses" / "README.txt")]
    assert "Invalid JPEG data" in reasons[str(root / "daisy" / "truncated.jpg")]
    assert "empty" in reasons[str(root / "roses" / "empty.jpg")]
    assert "cannot read file" in reasons[str(root / "roses" / "moved.jpg")]
    assert flowers.num_train + flowers.num_val == 8 + 3  # the 8 good ones + PNG, grayscale and CMYK
    assert "5 unreadable file(s) skipped" in flowers.describe()

    for _ in range(2):  # two whole epochs, no decode error mid-way
        n = sum(int(images.shape[0]) for images, _ in flowers.train)
        assert n == flowers.num_train
    assert sum(int(images.shape[0]) for images, _ in flowers.val) == flowers.num_val

    # grayscale becomes 3 equal channels; CMYK comes back as its RGB colour
    gray = data.decode_image(tf.io.read_file(str(root / "daisy" / "gray.jpg"))).numpy()
    assert gray.shape[-1] == 3 and np.array_equal(gray[..., 0], gray[..., 2])
    np.testing.assert_allclose(data.decode_image(cmyk.read_bytes()).numpy().reshape(-1, 3).mean(0), [200, 30, 40], atol=4)


def test_good_folders_load_without_warnings(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedFilesWarning)
        assert load_flowers("folder", folder, image_size=8).skipped == []


def test_missing_folder_names_the_path(tmp_path):
    with pytest.raises(DataSourceError, match="data folder not found: .*nowhere"):
        load_flowers("folder", tmp_path / "nowhere")


def test_empty_class_folder_names_the_path(folder):
    (folder / "sunflowers").mkdir()
    with pytest.raises(DataSourceError, match=r"class folder .*sunflowers has no files"):
        load_flowers("folder", folder)


def test_folder_without_class_folders_says_what_layout_it_expects(tmp_path):
    write_image(tmp_path / "img.jpg", noise(np.random.default_rng(0)))
    with pytest.raises(DataSourceError, match="no class folders"):
        load_flowers("folder", tmp_path)


def test_class_of_only_unreadable_files_is_an_error(folder):
    (folder / "weeds").mkdir()
    (folder / "weeds" / "notes.txt").write_text("todo: take photos")
    with pytest.raises(DataSourceError, match=r"weeds has no readable images; e.g. notes.txt: Unknown image file format"):
        load_flowers("folder", folder, val_fraction=0.0)


# --- sources --------------------------------------------------------------------------------------------


@pytest.fixture
def nothing_available(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "tfds_available", lambda: False)
    monkeypatch.setattr(data, "default_data_dir", lambda: tmp_path / "no_shared_folder")
    monkeypatch.delenv("MVLIB_DATA_DIR", raising=False)


def test_auto_without_any_data_names_the_three_ways(nothing_available):
    with pytest.raises(DataSourceError) as error:
        load_flowers()
    message = str(error.value)
    for hint in ("tfds", "data_dir", "MVLIB_DATA_DIR", 'source="synthetic"', "no_shared_folder"):
        assert hint in message


def test_explicit_tfds_offline_fails_fast_with_alternatives(nothing_available):
    with pytest.raises(DataSourceError, match="MVLIB_DATA_DIR"):
        load_flowers("tfds")


def test_auto_uses_the_env_folder_then_the_shared_folder(nothing_available, monkeypatch, folder, tmp_path):
    monkeypatch.setenv("MVLIB_DATA_DIR", str(folder))
    assert load_flowers(image_size=8).data_dir == str(folder)
    monkeypatch.delenv("MVLIB_DATA_DIR")
    shared = make_folder(tmp_path / "shared", {"x": 2, "y": 2})
    monkeypatch.setattr(data, "default_data_dir", lambda: shared)
    flowers = load_flowers(image_size=8)
    assert (flowers.source, flowers.class_names) == ("folder", ["x", "y"])


def test_tfds_source_with_mocked_tfds(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.delenv("MVLIB_DATA_DIR", raising=False)  # a named folder would win over tfds in "auto"
    monkeypatch.setattr(data, "tfds_available", lambda: True)
    with tfds.testing.mock_data(num_examples=6):
        flowers = load_flowers(image_size=16, batch_size=4, limit=5)
        assert flowers.source == "tfds"
        assert flowers.class_names == ["dandelion", "daisy", "tulips", "sunflowers", "roses"]  # tfds order
        assert (flowers.num_train, flowers.num_val) == (5, 5)
        images, labels = first_batch(flowers.train)
        streamed, _ = next(iter(flowers.train_stream(augment="inception")))
    assert images.shape == (4, 16, 16, 3) and labels.shape == (4, 5)
    assert streamed.shape == (4, 16, 16, 3)


def test_synthetic_images_are_real_jpegs_with_class_dependent_content(tmp_path):
    root = data.make_synthetic_flowers(tmp_path / "syn", num_per_class=6, image_size=32, seed=1)
    _, labels, class_names = data.list_image_files(root)
    assert class_names == sorted(data.SYNTHETIC_CLASSES) and len(labels) == 30
    assert "SYNTHETIC" in (root / data.SYNTHETIC_MARKER).read_text()
    means = []
    for name in class_names:
        files = sorted((root / name).iterdir())
        assert all(f.read_bytes()[:3] == JPEG_MAGIC for f in files)
        means.append(np.mean([data.decode_image(f.read_bytes()).numpy().reshape(-1, 3).mean(0) for f in files], 0))
    distances = [np.abs(a - b).sum() for i, a in enumerate(means) for b in means[i + 1 :]]
    assert min(distances) > 10  # each class has its own average colour

    stamp = (root / "daisy" / "daisy_0000.jpg").stat().st_mtime_ns
    assert data.make_synthetic_flowers(root, num_per_class=6, image_size=32, seed=1) == root  # reused
    assert (root / "daisy" / "daisy_0000.jpg").stat().st_mtime_ns == stamp
    data.make_synthetic_flowers(root, num_per_class=3, image_size=32, seed=1)  # other parameters: regenerated
    assert len(data.list_image_files(root)[0]) == 15


def test_synthetic_never_writes_into_someone_elses_folder(folder):
    with pytest.raises(DataSourceError, match="refusing"):
        data.make_synthetic_flowers(folder, num_per_class=1, image_size=8)


def test_synthetic_source_is_labelled(tmp_path, monkeypatch):
    monkeypatch.setenv("MVLIB_CACHE_DIR", str(tmp_path / "cache"))
    flowers = load_flowers("synthetic", image_size=32, batch_size=8, limit=10)
    assert flowers.source == "synthetic" and "SYNTHETIC" in flowers.describe()
    assert flowers.data_dir.startswith(str(tmp_path / "cache"))
    assert (flowers.num_train, flowers.num_val) == (10, 10) and flowers.num_classes == 5
    assert first_batch(flowers.train)[0].shape == (8, 32, 32, 3)


# --- the real photos ------------------------------------------------------------------------------------

REAL = data.default_data_dir()


@pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} not present")
def test_real_flower_photos_slice():
    paths, labels, class_names = data.list_image_files(REAL)
    assert class_names == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert len(paths) == 3303
    train, _, val, val_labels = data.split_stratified(paths, labels, 0.1, seed=42)
    assert (len(train), len(val)) == (2972, 331)
    assert [val_labels.count(c) for c in range(5)] == [57, 81, 58, 63, 72]

    flowers = load_flowers("folder", REAL, image_size=64, batch_size=10, limit=10)
    assert flowers.class_names == class_names and (flowers.num_train, flowers.num_val) == (10, 10)
    assert flowers.skipped == []
    images, labels = first_batch(flowers.train)
    assert images.shape == (10, 64, 64, 3) and sorted(labels.argmax(1)) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_env_override_points_at_a_folder(folder, monkeypatch):
    monkeypatch.setenv("MVLIB_DATA_DIR", os.fspath(folder))
    assert load_flowers("folder", image_size=8).class_names == ["daisy", "roses", "tulips"]
