"""Recipes, checkpoint/resume, progress lines and multi-device training, on tiny synthetic runs (64 px, a few steps).

These run on the default (TensorFlow) backend; tests/test_backends.py trains on JAX and PyTorch.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

import mvlib  # noqa: F401
import keras
from mvlib.analysis import explain
from mvlib.data import load_flowers
from mvlib.training.evaluate import evaluate_model
from mvlib.model import create_mobilevit
from mvlib.training.pretrained import device_spans, load_trained, publish_run, read_history
from mvlib.training.recipes import RECIPES, get_recipe, make_optimizer
from mvlib.training.run import (AveragedWeightsBetweenEpochs, EpochCommitter, Progress, RunFolder, StopRequest,
                               _check_same_run, load_initial_weights, train)

ROOT = Path(__file__).resolve().parents[1]
# Two steps: tracing the graph would cost more than they do. A commit after every epoch, as on a CPU (the
# default commits epochs that end 30 s or more after the last commit, and a tiny epoch takes a second).
TINY = dict(steps_per_epoch=2, run_eagerly=True, commit_every=0)


@pytest.fixture(scope="module")
def tiny_data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture(scope="module")
def tiny_data(tiny_data_dir):
    return load_flowers("synthetic", tiny_data_dir, image_size=64, batch_size=8, limit=20)


def tiny_recipe(epochs=2):
    return get_recipe("improved", epochs=epochs, batch_size=8, warmup_epochs=1, mix="mixup-or-cutmix", ema_momentum=0.9)


def test_recipe_errors_and_constant_learning_rate():
    with pytest.raises(ValueError, match="valid recipes: keras-io, improved"):
        get_recipe("fast")
    assert np.isclose(float(make_optimizer(get_recipe("keras-io"), 10).learning_rate), 2e-3)


def test_a_run_folder_from_before_a_recipe_field_existed_is_the_same_run(tmp_path):
    settings = {"variant": "xxs", "recipe": asdict(get_recipe("improved"))}
    older = {**settings, "recipe": {k: v for k, v in settings["recipe"].items() if k != "ema_momentum"}}
    _check_same_run(RunFolder(tmp_path), older, settings)  # the field's default: the same run
    with pytest.raises(ValueError, match="differs in recipe"):
        _check_same_run(RunFolder(tmp_path), older, {**settings, "recipe": asdict(get_recipe("improved", ema_momentum=0.99))})


def test_learning_rate_warms_up_then_decays():
    optimizer = make_optimizer(get_recipe("improved", epochs=10, warmup_epochs=2), steps_per_epoch=10)
    lr, peak = optimizer._learning_rate, RECIPES["improved"].learning_rate  # the schedule, its peak
    values = [float(lr(step)) for step in (0, 10, 20, 60, 100)]
    assert values[0] < values[1] < values[2] == pytest.approx(peak)
    assert values[2] > values[3] > values[4] == pytest.approx(peak * RECIPES["improved"].min_lr_ratio, rel=1e-3)


class RawWeightsOfFirstSteps(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        if len(self.steps) < 2:
            self.steps.append({v.path: np.array(v) for v in self.model.trainable_variables})


def test_resume_after_interruption_matches_uninterrupted_run(tiny_data, tiny_data_dir, tmp_path):
    raw = RawWeightsOfFirstSteps()
    straight = train("xxs", tiny_data, tmp_path / "straight", tiny_recipe(), verbose=0, callbacks=[raw], **TINY)
    # The same run, given a Ctrl-C in its first step with no commit due for a day: it ends with epoch 1, committed.
    handler = signal.getsignal(signal.SIGINT)
    stopped = train("xxs", tiny_data, tmp_path / "resumed", tiny_recipe(), verbose=0, callbacks=[explain.PressCtrlC(1)],
                    **{**TINY, "commit_every": 86400})
    assert stopped.epochs == 1 and signal.getsignal(signal.SIGINT) is handler
    assert not (tmp_path / "resumed" / "results.json").exists()  # written once all the epochs are trained

    state = json.loads((tmp_path / "resumed" / "state.json").read_text())
    assert state["epoch"] == 1 and len(state["history"]) == 1
    # The recipe averages the weights (ema_momentum 0.9): after epoch 1's two steps the run folder holds
    # the average, 0.9 * (weights after step 1) + 0.1 * (after step 2), not the raw weights.
    averaged = load_trained(tmp_path / "resumed")[0]
    for v in averaged.trainable_variables:
        expected = 0.9 * raw.steps[0][v.path] + 0.1 * raw.steps[1][v.path]
        np.testing.assert_allclose(np.asarray(v), expected, rtol=0, atol=1e-6, err_msg=v.path)
    with pytest.raises(ValueError, match="holds a different run"):  # other settings, same folder
        train("xxs", tiny_data, tmp_path / "resumed", tiny_recipe(epochs=3), verbose=0, **TINY)
    resumed = train("xxs", tiny_data, tmp_path / "resumed", tiny_recipe(), verbose=0, **TINY)

    assert resumed.resumed_from == 1 and resumed.epochs == straight.epochs == 2
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    # Same batches, same augmentation and mixing, same dropout RNG and optimizer state: the same weights.
    for a, b in zip(straight.model.weights, resumed.model.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-6, err_msg=a.path)
    assert resumed.history[1]["loss"] == pytest.approx(straight.history[1]["loss"], abs=1e-5)
    assert len(list((tmp_path / "resumed").glob("ckpt-*.keras"))) == 1
    lines = (tmp_path / "resumed" / "history.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,") and len(lines) == 3

    again = train("xxs", tiny_data, tmp_path / "resumed", tiny_recipe(), verbose=0, **TINY)
    assert again.resumed_from == 2  # finished runs are not trained further

    model, settings = load_trained(tmp_path / "resumed")  # the last epoch's weights
    assert settings["class_names"] == tiny_data.class_names and model.input_shape == (None, 64, 64, 3)
    for a, b in zip(model.weights, resumed.model.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)

    evaluation = evaluate_model(model, tiny_data.val, tiny_data.class_names)
    direct = np.concatenate([np.asarray(model(x, training=False)).argmax(1) for x, _ in tiny_data.val])
    assert len(evaluation.labels) == tiny_data.num_val
    np.testing.assert_array_equal(evaluation.predictions, direct)
    np.testing.assert_array_equal(evaluation.labels, tiny_data.val_labels)

    # Publishing for another input size measures the accuracy there; without data at that size it refuses.
    with pytest.raises(ValueError, match="trained at 64; to publish it for 96, pass the data loaded at 96"):
        publish_run(tmp_path / "resumed", image_size=96, folder=tmp_path / "shipped")
    data96 = load_flowers("synthetic", tiny_data_dir, image_size=96, batch_size=8, limit=20, augment=False)
    info = json.loads((publish_run(tmp_path / "resumed", image_size=96, data=data96, folder=tmp_path / "shipped")
                       / "run.json").read_text())
    model96 = load_trained(tmp_path / "resumed", image_size=96)[0]  # the same weights, built for 96 px
    assert model96.input_shape == (None, 96, 96, 3)
    assert info["image_size"] == 96 and info["results"]["epoch"] == 2
    assert info["results"]["val_accuracy_at_image_size"] == evaluate_model(model96, data96.val, data96.class_names).accuracy

    # A second stage at another size starts from the run folder's last epoch and ships as one run.
    stage2 = train("xxs", data96, tmp_path / "stage2", get_recipe("fixres", epochs=1, batch_size=8), verbose=0,
                   initial_weights=tmp_path / "resumed", **{**TINY, "steps_per_epoch": 1})
    start = create_mobilevit("xxs", tiny_data.num_classes, 96)
    load_initial_weights(start, tmp_path / "resumed")
    for a, b in zip(start.weights, model96.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    info = json.loads((publish_run(tmp_path / "stage2", folder=tmp_path / "two-stage") / "run.json").read_text())
    assert [(s["recipe"], s["image_size"], s["epochs"]) for s in info["results"]["stages"]] == [("improved", 64, 2), ("fixres", 96, 1)]
    assert info["results"]["epoch"] == 3 and not {"history", "environments"} & set(info["settings"]["initial_weights"])
    assert [span["epochs"] for span in info["results"]["devices"]] == [[1, 3]]  # both stages and the resume, on this machine
    shipped = read_history(tmp_path / "two-stage" / "history.csv")
    assert [r["epoch"] for r in shipped] == [1, 2, 3]
    assert shipped[-1]["val_accuracy"] == pytest.approx(stage2.last_val_accuracy, abs=1e-6)
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        train("xxs", data96, tmp_path / "stage3", "fixres", initial_weights=tmp_path / "two-stage")


def test_device_spans_number_epochs_across_stages():
    """A run started on a GPU, resumed there, finished on a CPU, then a second stage on the CPU."""
    gpu = {"device": "1 x NVIDIA H200", "keras": "3.15.1", "backend": "jax"}
    cpu = {"device": "CPU, 2 cores", "keras": "3.15.1", "backend": "tensorflow"}
    first = {"settings": {"recipe": {"name": "long"}}, "environments": [{**gpu, "from_epoch": 0}, {**gpu, "from_epoch": 59}, {**cpu, "from_epoch": 102}],
             "history": [{}] * 200}
    second = {"settings": {"initial_weights": first}, "environments": [{**cpu, "from_epoch": 0}], "history": [{}] * 5}
    assert device_spans(second) == [
        {"device": "1 x NVIDIA H200, Keras 3.15.1 on jax", "epochs": [1, 102]},
        {"device": "CPU, 2 cores, Keras 3.15.1 on tensorflow", "epochs": [103, 205]}]
    one_run = {"settings": {}, "environments": [{**cpu, "from_epoch": 0}, {**gpu, "from_epoch": 3}], "history": [{}] * 4}
    assert [span["epochs"] for span in device_spans(one_run)] == [[1, 3], [4, 4]]


class RecordEpochs(keras.callbacks.Callback):
    """After each epoch (and after the run folder's callback): the model's weights and what state.json says."""

    def __init__(self, run_dir):
        super().__init__()
        self.run_dir, self.weights, self.committed = Path(run_dir), [], []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())
        state = RunFolder(self.run_dir).load_state()
        self.committed.append(state and state["epoch"])


class ScriptedValidation(keras.callbacks.Callback):
    """Sets each epoch's validation accuracy, before the run folder's callback reads it."""

    def __init__(self, accuracies):
        super().__init__()
        self.accuracies = accuracies

    def on_epoch_end(self, epoch, logs=None):
        logs["val_accuracy"] = self.accuracies[epoch]


@pytest.mark.parametrize("accuracies, best_epoch", [([0.5, 0.4, 0.6], 1), ([0.4, 0.5, 0.6], 2)])
def test_epochs_between_commits_are_committed_when_the_run_stops(tmp_path, accuracies, best_epoch):
    # The callbacks of `train` on a tiny model, with a weight average and commits at most once a day: epochs
    # 1 and 2 (of 3) stay in memory until a Ctrl-C in epoch 2 ends the run after it, which commits epoch 2 --
    # with the average it ended with, not the raw weights that fit() puts back when a run stops early -- and
    # the best epoch's weights (by the scripted accuracies: an earlier epoch's, or the committed one's).
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(keras.optimizers.AdamW(0.1, use_ema=True, ema_momentum=0.5), "mse")
    x, y = np.random.default_rng(0).normal(size=(8, 4)), np.random.default_rng(1).normal(size=(8, 3))
    state = {"settings": {}, "epoch": 0, "history": [], "best_val_accuracy": -1.0, "best_epoch": 0}
    record = RecordEpochs(tmp_path)
    with StopRequest().listening() as stop:
        model.fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[
            explain.PressCtrlC(2), ScriptedValidation(accuracies), AveragedWeightsBetweenEpochs(resumed=False),
            EpochCommitter(RunFolder(tmp_path), state, every=86400, stop=stop), record])

    assert record.committed == [None, None]
    saved = RunFolder(tmp_path).load_state()
    assert saved["epoch"] == 2 and saved["best_epoch"] == best_epoch and len(saved["history"]) == 2
    assert sorted(p.name for p in tmp_path.glob("ckpt-*.keras")) == ["ckpt-0002.keras"]
    assert not np.allclose(record.weights[0][0], record.weights[1][0])
    for path, epoch in (("best.weights.h5", best_epoch), ("ckpt-0002.keras", 2)):
        model.load_weights(tmp_path / path)
        for loaded, recorded in zip(model.get_weights(), record.weights[epoch - 1]):
            np.testing.assert_array_equal(loaded, recorded, err_msg=path)


def test_a_second_ctrl_c_stops_at_once(tmp_path):
    # The first Ctrl-C asks for the end of the epoch; it puts the previous handler back, which takes the second.
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile("sgd", "mse")
    state = {"settings": {}, "epoch": 0, "history": [], "best_val_accuracy": -1.0, "best_epoch": 0}
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own: KeyboardInterrupt
    try:
        stop = StopRequest()
        with pytest.raises(KeyboardInterrupt), stop.listening():
            model.fit(np.zeros((8, 4)), np.zeros((8, 3)), batch_size=4, epochs=3, verbose=0, callbacks=[
                EpochCommitter(RunFolder(tmp_path), state, every=86400, stop=stop), explain.PressCtrlC(1),
                explain.PressCtrlC(1)])
        assert stop.signal == signal.SIGINT and state["epoch"] == 0 and RunFolder(tmp_path).load_state() is None
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_progress_lines_for_log_files(capsys):
    """Line mode (output not a terminal): an up-front estimate, then a line at least every `every` seconds."""
    progress = Progress(epochs=3, steps=10, batch_size=8, lines=True, every=0.0, timed=2)
    progress.on_epoch_begin(0)
    for step in range(10):
        progress.on_train_batch_end(step, {"loss": 1.5})
    out = capsys.readouterr().out
    assert out.count("estimate:") == 1 and "for the 3 epochs left" in out
    steps = [line for line in out.splitlines() if line.startswith("epoch 1/3 step ")]
    assert [line.split()[3] for line in steps] == [f"{n}/10:" for n in range(3, 10)]
    assert "images/s" in steps[0] and "run in" in steps[0]
    for epoch in (1, 2):  # the second epoch is timed whole: the estimate again, once
        progress.on_epoch_begin(epoch)
        progress.on_epoch_end(epoch)
    out = capsys.readouterr().out
    assert out.count("in all (loading, validation, commit)") == 1 and "epoch 2 took" in out and "the 1 epochs left" in out


MIRRORED = textwrap.dedent(
    """
    import mvlib, sys, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from mvlib.data import load_flowers
    from mvlib.training.recipes import get_recipe
    from mvlib.training.run import train
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    data = load_flowers("synthetic", sys.argv[1], image_size=64, batch_size=8, limit=16)
    result = train("xxs", data, sys.argv[2], get_recipe("improved", epochs=1, batch_size=8),
                   steps_per_epoch=2, distribution=strategy.scope(), verbose=0)
    print("replicas", strategy.num_replicas_in_sync, "epochs", result.epochs)
    """
)


@pytest.mark.skipif(not os.environ.get("MVLIB_SLOW_TESTS"), reason="~2 minutes of tf.distribute start-up; "
                    "data_parallel's JAX path is tested by default (MVLIB_SLOW_TESTS=1 runs this)")
def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    out = subprocess.run([sys.executable, "-c", MIRRORED, str(tmp_path / "data"), str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "replicas 2 epochs 1" in out.stdout
