"""Recipes, checkpoint/resume and MirroredStrategy, on a tiny synthetic run (64 px, a few steps)."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mvlib  # noqa: F401
import keras
from mvlib.data import load_flowers
from mvlib.train import RECIPES, get_recipe, load_trained, make_optimizer, train

TINY = dict(image_size=64, steps_per_epoch=2)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return load_flowers("synthetic", tmp_path_factory.mktemp("synthetic"), image_size=64, batch_size=8, limit=20)


def tiny_recipe(epochs=2):
    return get_recipe("improved", epochs=epochs, batch_size=8, warmup_epochs=1)


class StopAfterFirstEpoch(keras.callbacks.Callback):
    """Stands in for a kill: raises once epoch 1 has been committed."""

    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt


def test_recipes_and_errors():
    assert RECIPES["keras-io"].learning_rate == 2e-3 and RECIPES["keras-io"].epochs == 30
    assert RECIPES["keras-io"].label_smoothing == 0.1 and RECIPES["keras-io"].optimizer == "adam"
    with pytest.raises(ValueError, match="valid recipes: keras-io, improved"):
        get_recipe("fast")
    assert np.isclose(float(make_optimizer(get_recipe("keras-io"), 10).learning_rate), 2e-3)


def test_learning_rate_warms_up_then_decays():
    optimizer = make_optimizer(get_recipe("improved", epochs=10, warmup_epochs=2), steps_per_epoch=10)
    lr, peak = optimizer._learning_rate, RECIPES["improved"].learning_rate  # the schedule, its peak
    values = [float(lr(step)) for step in (0, 10, 20, 60, 100)]
    assert values[0] < values[1] < values[2] == pytest.approx(peak)
    assert values[2] > values[3] > values[4] == pytest.approx(peak / 100, rel=1e-3)


def test_resume_after_interruption_matches_uninterrupted_run(tiny_data, tmp_path):
    straight = train("xxs", tiny_data, tmp_path / "straight", tiny_recipe(), verbose=0, **TINY)

    with pytest.raises(KeyboardInterrupt):
        train("xxs", tiny_data, tmp_path / "resumed", tiny_recipe(), verbose=0, callbacks=[StopAfterFirstEpoch()], **TINY)
    state = json.loads((tmp_path / "resumed" / "state.json").read_text())
    assert state["epoch"] == 1 and len(state["history"]) == 1
    with pytest.raises(ValueError, match="holds a different run"):  # other settings, same folder
        train("xxs", tiny_data, tmp_path / "resumed", tiny_recipe(epochs=3), verbose=0, **TINY)
    resumed = train("xxs", tiny_data, tmp_path / "resumed", tiny_recipe(), verbose=0, **TINY)

    assert resumed.resumed_from == 1 and resumed.epochs == straight.epochs == 2
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    # Same batches, same augmentation, same dropout RNG and optimizer state: the same weights.
    for a, b in zip(straight.model.weights, resumed.model.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-6, err_msg=a.path)
    assert resumed.history[1]["loss"] == pytest.approx(straight.history[1]["loss"], abs=1e-5)
    assert len(list((tmp_path / "resumed").glob("ckpt-*.keras"))) == 1
    lines = (tmp_path / "resumed" / "history.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,") and len(lines) == 3

    again = train("xxs", tiny_data, tmp_path / "resumed", tiny_recipe(), verbose=0, **TINY)
    assert again.resumed_from == 2  # finished runs are not trained further

    model, settings = load_trained(tmp_path / "resumed")
    assert settings["class_names"] == tiny_data.class_names and model.input_shape == (None, 64, 64, 3)


MIRRORED = textwrap.dedent(
    """
    import mvlib, sys, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from mvlib.data import load_flowers
    from mvlib.train import get_recipe, train
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    data = load_flowers("synthetic", sys.argv[1], image_size=64, batch_size=8, limit=16)
    result = train("xxs", data, sys.argv[2], get_recipe("improved", epochs=1, batch_size=8), image_size=64,
                   steps_per_epoch=2, strategy=strategy, verbose=0)
    print("replicas", strategy.num_replicas_in_sync, "epochs", result.epochs)
    """
)


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    out = subprocess.run([sys.executable, "-c", MIRRORED, str(tmp_path / "data"), str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "replicas 2 epochs 1" in out.stdout
