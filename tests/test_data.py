"""The flower data: split, preprocessing, the training stream, every kind of bad input, sources and their errors.

All offline: folders of tiny JPEGs are written into tmp_path; tfds is mocked; the real photos are only
read (a small slice) when ``../shared/data/flower_photos`` exists.
"""

import concurrent.futures
import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

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
    return ds[0]


def all_images(ds):
    return np.concatenate([images for images, _ in ds])


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


# --- preprocessing and batches --------------------------------------------------------------------------


def test_batches_match_the_keras_io_example(folder):
    flowers = load_flowers("folder", folder, image_size=256, batch_size=4, val_fraction=0.2)
    assert flowers.class_names == ["daisy", "roses", "tulips"]
    assert (flowers.num_train, flowers.num_val) == (15, 3)
    assert flowers.train_images.shape == (15, 280, 280, 3) and flowers.train_images.dtype == np.uint8  # resize 280 once
    images, labels = first_batch(flowers.train)
    assert images.shape == (4, 256, 256, 3) and images.dtype == np.float32  # random crop 256
    assert labels.shape == (4, 3) and np.all(labels.sum(1) == 1)
    assert 0 <= images.min() and images.max() <= 255 and images.max() > 1  # [0, 255]: the model rescales
    val_images, _ = first_batch(flowers.val)
    assert val_images.shape == (3, 256, 256, 3)


def test_validation_is_fixed_and_training_changes_every_epoch(folder):
    flowers = load_flowers("folder", folder, image_size=16, batch_size=8)
    stream = flowers.train
    epoch0 = all_images(stream)
    stream.epoch_callback().on_epoch_begin(1)  # what fit() calls as epoch 1 begins
    assert not np.array_equal(epoch0, all_images(stream))
    np.testing.assert_array_equal(all_images(flowers.val), all_images(flowers.val))
    np.testing.assert_array_equal(all_images(flowers.train), epoch0)  # a new stream starts at epoch 0 again


def test_load_image_gives_the_validation_pixels(folder):
    flowers = load_flowers("folder", folder, image_size=32, val_fraction=0.2, limit=3)
    paths, labels, _ = data.list_image_files(folder)
    _, _, val_paths, _ = data.split_stratified(paths, labels, 0.2, seed=42)
    by_name = {Path(p).name + str(Path(p).parent.name): p for p in val_paths}
    loaded = np.stack([data.load_image(p, 32) for p in val_paths[:1]])
    assert loaded.dtype == np.float32 and loaded.shape == (1, 32, 32, 3)
    assert any(np.array_equal(loaded[0], image.astype(np.float32)) for image in flowers.val_images), by_name


def test_bad_arguments_are_named(folder):
    with pytest.raises(ValueError, match="valid sources"):
        load_flowers("imagenet", folder)
    with pytest.raises(ValueError, match="val_fraction"):
        load_flowers("folder", folder, val_fraction=1.0)
    with pytest.raises(ValueError, match="limit"):
        load_flowers("folder", folder, limit=0)
    with pytest.raises(ValueError, match="valid: keras-io, inception, none"):
        load_flowers("folder", folder, image_size=8).train_stream(augment="mixup")


def test_limit_takes_classes_in_turn(folder):
    flowers = load_flowers("folder", folder, image_size=8, batch_size=64, limit=4)
    assert sorted(flowers.train_labels.tolist()) == [0, 0, 1, 2]


@pytest.mark.parametrize("mode", ["keras-io", "inception"])
def test_augment_is_a_function_of_the_generator_state(mode):
    image = noise(np.random.default_rng(0), 40, 40)
    draw = lambda seed: data.augment(image, 32, mode, np.random.default_rng(seed))  # noqa: E731
    np.testing.assert_array_equal(draw(1), draw(1))
    assert draw(1).shape == (32, 32, 3) and draw(1).dtype == np.float32
    assert not np.array_equal(draw(1), draw(2))


def test_inception_crop_keeps_the_documented_share_of_the_image():
    # A ramp image: the crop's corner values tell which part of the source it came from.
    ramp = np.tile(np.arange(200, dtype=np.uint8)[None, :, None], (200, 1, 3))
    widths = []
    for seed in range(200):
        crop = data.augment(ramp, 200, "inception", np.random.default_rng(seed))
        row = crop[0, :, 0]
        widths.append(abs(float(row[-1]) - float(row[0])) + 1)
    lo, hi = data.images.INCEPTION_AREA
    aspect_hi = data.images.INCEPTION_ASPECT[1]
    assert min(widths) >= 200 * np.sqrt(lo / aspect_hi) - 3 and max(widths) <= 201


def stream_batches(flowers, steps, **kwargs):
    stream = flowers.train_stream(**kwargs)
    return [stream.batch(epoch, i) for epoch in range(stream.epoch, stream.epoch + 2) for i in range(steps)]


@pytest.mark.parametrize("augment", ["keras-io", "inception"])
def test_train_stream_is_a_function_of_seed_and_epoch(folder, augment):
    flowers = load_flowers("folder", folder, image_size=16, batch_size=7, val_fraction=0.2)
    stream = flowers.train_stream(augment=augment)
    assert len(stream) == 3  # ceil(15 / 7): every image once, the last batch topped up
    x, y = stream.batch(3, 0)
    again = load_flowers("folder", folder, image_size=16, batch_size=7, val_fraction=0.2).train_stream(augment=augment, initial_epoch=3)
    np.testing.assert_array_equal(again[0][0], x)  # a resumed stream starts where an uninterrupted one is
    np.testing.assert_array_equal(again[0][1], y)
    assert not np.array_equal(stream.batch(4, 0)[0], x)
    other_seed = flowers.train_stream(augment=augment, seed=7)
    assert not np.array_equal(other_seed.batch(3, 0)[0], x)


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_mixed_batches_blend_images_and_labels_alike(folder, mix):
    flowers = load_flowers("folder", folder, augment=False, image_size=32, batch_size=15, val_fraction=0.2)
    plain, mixed = flowers.train_stream(augment="none"), flowers.train_stream(augment="none", mix=mix)
    (x, y), (mx, my) = plain.batch(2, 0), mixed.batch(2, 0)
    np.testing.assert_array_equal(mixed.batch(2, 0)[0], mx)  # a function of (seed, epoch, index)
    assert not np.array_equal(mx, x) and (my.max(1) < 0.99).any()  # images mixed, some labels soft
    np.testing.assert_allclose(my.sum(1), 1, atol=1e-5)
    pixels = x.reshape(len(x), -1, 3)
    for image, label in zip(mx.reshape(len(mx), -1, 3), my):
        if mix == "mixup":  # image = w * a + (1 - w) * b, label = w * label(a) + (1 - w) * label(b)
            shares = np.linalg.lstsq(pixels.reshape(len(x), -1).T, image.reshape(-1), rcond=None)[0]
            np.testing.assert_allclose(shares @ y, label, atol=1e-3)
        else:  # every pixel is a's or b's; label(b)'s share is the pasted rectangle's share of the area
            from_image = np.all(np.isclose(pixels, image[None], atol=1e-3), axis=2)  # (batch, pixel)
            assert from_image.any(axis=0).all() and from_image.any(axis=1).sum() <= 2
            np.testing.assert_allclose(from_image.mean(axis=1) @ y, label, atol=0.07)  # area of whole pixels vs the box's
    with pytest.raises(ValueError, match="unknown mix 'mixed'"):
        flowers.train_stream(mix="mixed")


def test_fit_trains_on_batch_i_of_epoch_e(folder):
    """Through Keras' loader, which builds the model from a batch first and resets itself between epochs,
    each step of a fit resumed at epoch 1 gets ``stream.batch(epoch, step)``."""
    import keras

    flowers = load_flowers("folder", folder, image_size=16, batch_size=4, val_fraction=0.2)
    stream = flowers.train_stream(augment="inception", mix="mixup", initial_epoch=1, steps_per_epoch=5, workers=2)
    seen = []

    class Recorder(keras.Model):
        def train_step(self, data):
            seen.append(np.asarray(data[0]))
            return {"steps": len(seen)}

    inputs = keras.Input((16, 16, 3))
    model = Recorder(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(inputs)))
    model.compile(loss="categorical_crossentropy", run_eagerly=True)
    model.fit(stream, epochs=3, initial_epoch=1, callbacks=[stream.epoch_callback()], shuffle=False, verbose=0)
    assert not stream._ahead  # the batches made ahead for epoch 3, which will not come, are dropped
    stream.close()
    expected = [stream.batch(epoch, step)[0] for epoch in (1, 2) for step in range(5)]
    assert len(seen) == len(expected)
    for got, want in zip(seen, expected):
        np.testing.assert_array_equal(got, want)


def test_train_stream_visits_every_image_once_per_epoch(folder):
    flowers = load_flowers("folder", folder, augment=False, image_size=16, batch_size=5, val_fraction=0.2)
    stream = flowers.train_stream(augment="none")
    seen = np.concatenate([stream[i][0] for i in range(len(stream))])
    reference = sorted(map(bytes, flowers.train_images.astype(np.float32)))
    assert sorted(map(bytes, seen)) == reference


def test_train_stream_with_longer_epochs_continues_with_new_permutations(folder):
    flowers = load_flowers("folder", folder, augment=False, image_size=16, batch_size=5, val_fraction=0.2)
    stream = flowers.train_stream(augment="none", steps_per_epoch=6)  # 30 images = two permutations of 15
    seen = np.concatenate([stream[i][0] for i in range(6)])
    reference = sorted(map(bytes, flowers.train_images.astype(np.float32)))
    assert sorted(map(bytes, seen[:15])) == reference and sorted(map(bytes, seen[15:])) == reference
    assert not np.array_equal(seen[:15], seen[15:])


def test_worker_processes_make_the_batches_threads_make_and_fall_back_to_threads(folder):
    flowers = load_flowers("folder", folder, image_size=16, batch_size=4, val_fraction=0.2)
    settings = dict(augment="inception", mix="mixup-or-cutmix", initial_epoch=2, workers=1)
    threads, processes = flowers.train_stream(processes=False, **settings), flowers.train_stream(processes=True, **settings)
    try:
        made = {}
        for name, stream in (("threads", threads), ("processes", processes)):
            made[name] = []
            for epoch in (2, 3):  # two epochs: the workers follow the stream's epoch
                stream.epoch = epoch
                made[name] += [stream[i] for i in range(len(stream))]
        for (x, y), (px, py) in zip(made["threads"], made["processes"], strict=True):
            np.testing.assert_array_equal(px, x)
            np.testing.assert_array_equal(py, y)
        shared = processes._pool._dir
        assert shared.is_dir()
        concurrent.futures.wait(processes._ahead.values())  # the batches it made ahead, into epoch 4
        for worker in list(processes._pool._pool._processes.values()):
            worker.kill()  # as the OOM killer would, or a SIGTERM to the process group
        processes.epoch = 6  # batches not made yet
        with pytest.warns(UserWarning, match="worker processes stopped"):
            x, y = processes[1]
        np.testing.assert_array_equal(x, threads.batch(6, 1)[0])
        assert processes._pool is None and not shared.exists() and processes.processes is False
    finally:
        threads.close()
        processes.close()


def test_loader_is_threads_unless_the_environment_asks_for_processes(monkeypatch):
    from mvlib.data.pipeline import _processes_from_environment

    monkeypatch.delenv("MVLIB_LOADER", raising=False)
    assert _processes_from_environment() is False
    monkeypatch.setenv("MVLIB_LOADER", "processes")
    assert _processes_from_environment() is True
    monkeypatch.setenv("MVLIB_LOADER", "gpu")
    with pytest.raises(ValueError, match="MVLIB_LOADER='gpu'"):
        _processes_from_environment()


def test_folders_of_killed_streams_are_removed_by_the_next(tmp_path):
    import subprocess
    import sys

    from mvlib.data.processes import _PREFIX, _remove_stale_folders

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    stale, live = tmp_path / f"{_PREFIX}{ended.pid}-abc", tmp_path / f"{_PREFIX}{os.getpid()}-def"
    for folder in (stale, live):
        folder.mkdir()
        (folder / "images.u8").write_bytes(b"x")
    _remove_stale_folders(str(tmp_path))
    assert not stale.exists() and live.exists()


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
    assert "cannot identify image file" in reasons[str(root / "roses" / "README.txt")]
    assert "truncated" in reasons[str(root / "daisy" / "truncated.jpg")]
    assert "cannot identify image file" in reasons[str(root / "roses" / "empty.jpg")]
    assert "No such file" in reasons[str(root / "roses" / "moved.jpg")]
    assert flowers.num_train + flowers.num_val == 8 + 3  # the 8 good ones + PNG, grayscale and CMYK
    assert "5 unreadable file(s) skipped" in flowers.describe()

    assert sum(len(images) for images, _ in flowers.val) == flowers.num_val

    # grayscale becomes 3 equal channels; CMYK comes back as its RGB colour
    gray = data.decode_image(root / "daisy" / "gray.jpg")
    assert gray.shape[-1] == 3 and np.array_equal(gray[..., 0], gray[..., 2])
    np.testing.assert_allclose(data.decode_image(cmyk.read_bytes()).reshape(-1, 3).mean(0), [200, 30, 40], atol=4)


def test_broken_jpeg_prints_nothing_but_the_warning(tmp_path, capfd):
    """libjpeg's own messages ("Improper call to JPEG library in state 203") must not reach the terminal."""
    root = make_folder(tmp_path / "flowers", {"daisy": 3, "roses": 3})
    good = (root / "daisy" / "img_00.jpg").read_bytes()
    (root / "daisy" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "roses" / "corrupt.jpg").write_bytes(JPEG_MAGIC + np.random.default_rng(1).bytes(300))
    with pytest.warns(SkippedFilesWarning):
        load_flowers("folder", root, image_size=8)
    out, err = capfd.readouterr()
    assert out == "" and err == "", err


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
    with pytest.raises(DataSourceError, match=r"at least two class folders .*\(none\): expected"):
        load_flowers("folder", tmp_path)


def test_one_class_folder_is_not_a_classification_task(tmp_path):
    folder = make_folder(tmp_path / "flowers", {"daisy": 4})
    with pytest.raises(DataSourceError, match=r"at least two class folders .*\(only one, daisy\)"):
        load_flowers("folder", folder)


def test_too_few_images_for_a_validation_split_is_said_before_training(tmp_path):
    folder = make_folder(tmp_path / "flowers", {"daisy": 1, "roses": 1})
    with pytest.raises(DataSourceError, match=r"too few images for both splits \(2 train / 0 val"):
        load_flowers("folder", folder, image_size=32)


def test_class_of_only_unreadable_files_is_an_error(folder):
    (folder / "weeds").mkdir()
    (folder / "weeds" / "notes.txt").write_text("todo: take photos")
    with pytest.raises(DataSourceError, match=r"weeds has no readable images; e.g. notes.txt: cannot identify image file"):
        load_flowers("folder", folder, val_fraction=0.0)


# --- sources --------------------------------------------------------------------------------------------


@pytest.fixture
def nothing_available(monkeypatch, tmp_path):
    monkeypatch.setattr(data.flowers, "tfds_available", lambda: False)
    monkeypatch.setattr(data.flowers, "default_data_dir", lambda: tmp_path / "no_shared_folder")
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
    monkeypatch.setattr(data.flowers, "default_data_dir", lambda: shared)
    flowers = load_flowers(image_size=8)
    assert (flowers.source, flowers.class_names) == ("folder", ["x", "y"])


def test_tfds_source_with_mocked_tfds(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.delenv("MVLIB_DATA_DIR", raising=False)  # a named folder would win over tfds in "auto"
    monkeypatch.setattr(data.flowers, "tfds_available", lambda: True)
    with tfds.testing.mock_data(num_examples=6):
        flowers = load_flowers(image_size=16, batch_size=4, limit=5)
        assert flowers.source == "tfds"
        assert flowers.class_names == ["dandelion", "daisy", "tulips", "sunflowers", "roses"]  # tfds order
        assert (flowers.num_train, flowers.num_val) == (5, 5)
        images, labels = first_batch(flowers.train)
        streamed, _ = flowers.train_stream(augment="inception")[0]
    assert images.shape == (4, 16, 16, 3) and labels.shape == (4, 5)
    assert streamed.shape == (4, 16, 16, 3)


def test_synthetic_images_are_real_jpegs_with_class_dependent_content(tmp_path):
    root = data.make_synthetic_flowers(tmp_path / "syn", num_per_class=6, image_size=32, seed=1)
    _, labels, class_names = data.list_image_files(root)
    assert class_names == sorted(data.flowers.SYNTHETIC_CLASSES) and len(labels) == 30
    assert "SYNTHETIC" in (root / data.flowers.SYNTHETIC_MARKER).read_text()
    means = []
    for name in class_names:
        files = sorted((root / name).iterdir())
        assert all(f.read_bytes()[:3] == JPEG_MAGIC for f in files)
        means.append(np.mean([data.decode_image(f.read_bytes()).reshape(-1, 3).mean(0) for f in files], 0))
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
