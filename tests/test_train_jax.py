"""Training on the JAX backend, in a subprocess (the backend is chosen at import): no TensorFlow import,
``keras.distribution.DataParallel`` over two virtual CPU devices, and a resumed run that ends with the
uninterrupted run's weights. A file of its own so that pytest-xdist can run it beside the TensorFlow tests."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


JAX_SCRIPT = textwrap.dedent(
    """
    import shutil, sys
    import mvlib.model, mvlib.data, mvlib.training.run, mvlib.training.pretrained, mvlib.training.evaluate
    assert "tensorflow" not in sys.modules, "importing mvlib under JAX imported TensorFlow"
    import keras, numpy as np
    from mvlib.data import load_flowers
    from mvlib.training.recipes import get_recipe
    from mvlib.training.run import train

    class Snapshot(keras.callbacks.Callback):  # what a run killed after epoch 1 leaves (see the TF test)
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                shutil.copytree(sys.argv[2] + "/straight", sys.argv[2] + "/resumed")

    print("backend", keras.backend.backend(), "devices", len(keras.distribution.list_devices()))
    data = load_flowers("synthetic", sys.argv[1], image_size=64, batch_size=8, limit=16)
    recipe = get_recipe("improved", epochs=2, batch_size=8, warmup_epochs=1, ema_momentum=0.9)
    straight = train("xxs", data, sys.argv[2] + "/straight", recipe, steps_per_epoch=2, verbose=0, callbacks=[Snapshot()])
    resumed = train("xxs", data, sys.argv[2] + "/resumed", recipe, steps_per_epoch=2, verbose=0)
    assert resumed.resumed_from == 1
    worst = max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(straight.model.weights, resumed.model.weights))
    kernel = straight.model.get_layer("head_classifier").kernel
    print("sharding", getattr(getattr(kernel.value, "sharding", None), "num_devices", 1))
    print("max weight difference", worst)
    """
)


def test_jax_backend_trains_resumes_exactly_on_two_devices(tmp_path):
    """JAX: no TensorFlow import, DataParallel over two virtual CPU devices, bitwise-close resume."""
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT),
           # the resumed run compiles the same programs again: let it read them from disk (~25% of this test)
           "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-cache"), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    out = subprocess.run([sys.executable, "-c", JAX_SCRIPT, str(tmp_path / "data"), str(tmp_path)],
                         capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "backend jax devices 2" in out.stdout
    assert "sharding 2" in out.stdout  # the weights are replicated over both devices: DataParallel was on
    worst = float(out.stdout.split("max weight difference")[1].split()[0])
    assert worst <= 1e-6
