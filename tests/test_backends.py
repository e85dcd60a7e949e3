"""mvlib on the JAX and PyTorch backends, each in one subprocess (the backend is chosen at import, and
starting it and compiling the model is most of the cost): importing mvlib leaves TensorFlow out, the export
says what to do instead, the model is the TensorFlow-backend model (its weights move between backends), and
training resumes exactly -- on JAX data-parallel over two virtual CPU devices. Its epochs are eight steps,
so that batches made ahead cross from one epoch into the next inside the run: a stream that served one
epoch's batches in another would resume differently here. A file of its own so that pytest-xdist runs it
beside the TensorFlow tests."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64

SCRIPT = textwrap.dedent(
    """
    import shutil, sys
    import mvlib.model, mvlib.data, mvlib.training.run, mvlib.training.pretrained, mvlib.training.evaluate
    import mvlib.litert.runtime, mvlib.cli
    print("tensorflow imported", "tensorflow" in sys.modules)
    import keras, numpy as np
    from mvlib.data import load_flowers
    from mvlib.litert.export import export_litert
    from mvlib.model import create_mobilevit, parameter_counts
    from mvlib.training.recipes import get_recipe
    from mvlib.training.run import train

    out, size = sys.argv[2], int(sys.argv[3])
    backend = keras.backend.backend()  # Keras' distribution API has no PyTorch implementation
    print("backend", backend, "devices", len(keras.distribution.list_devices()) if backend == "jax" else 1)

    try:
        export_litert(keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D()]), out + "/x.tflite", "float32")
    except ImportError as e:
        print("export ImportError:", e)

    model = create_mobilevit("xxs", 5, size)
    print("parameters", *parameter_counts(model))
    model.save_weights(out + "/model.weights.h5")
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    np.save(out + "/outputs.npy", model.predict_on_batch(x))  # on JAX jitted: eager JAX would compile op by op

    class Snapshot(keras.callbacks.Callback):  # what a run killed after epoch 1 leaves (see the TF test)
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                shutil.copytree(out + "/straight", out + "/resumed")

    data = load_flowers("synthetic", sys.argv[1], image_size=size, batch_size=8, limit=16)
    recipe = get_recipe("improved", epochs=2, batch_size=8, warmup_epochs=1, ema_momentum=0.9)
    straight = train("xxs", data, out + "/straight", recipe, steps_per_epoch=8, verbose=0, callbacks=[Snapshot()], commit_every=0)
    resumed = train("xxs", data, out + "/resumed", recipe, steps_per_epoch=8, verbose=0)
    print("resumed from", resumed.resumed_from)
    worst = max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(straight.model.weights, resumed.model.weights))
    kernel = straight.model.get_layer("head_classifier").kernel
    print("sharding", getattr(getattr(kernel.value, "sharding", None), "num_devices", 1))
    print("max weight difference", worst)
    """
)


# XLA compiles ~140 programs here (one per initializer shape, then the training steps) to run each a few times on
# tiny inputs: at its cheapest optimisation level the script takes about a third less time. The resumed run
# compiles the same programs again: the compilation cache lets it read them from disk (~25% of its time).
BACKEND_ENV = {
    "jax": lambda tmp: {
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0 "
                     "--xla_llvm_disable_expensive_passes=true",
        "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(tmp / "jax-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"},
    # one OpenMP thread: torch's threads spin while they wait, which slows the other pytest-xdist worker 2-3x
    "torch": lambda tmp: {"OMP_NUM_THREADS": "1"},
}


@pytest.fixture(scope="module", params=list(BACKEND_ENV))
def backend_run(request, tmp_path_factory):
    """(the script's output lines, its folder, the backend) for each backend that is installed."""
    backend = request.param
    pytest.importorskip(backend)
    tmp = tmp_path_factory.mktemp(backend)
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT), **BACKEND_ENV[backend](tmp)}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp / "data"), str(tmp), str(SIZE)],
                         capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out.stdout, tmp, backend


def said(stdout: str, prefix: str) -> str:
    lines = [line[len(prefix):].strip() for line in stdout.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, f"expected one line starting {prefix!r} in:\n{stdout}"
    return lines[0]


def test_importing_mvlib_leaves_tensorflow_out(backend_run):
    stdout, _, backend = backend_run
    assert said(stdout, "tensorflow imported") == "False"
    assert said(stdout, "backend") == f"{backend} devices {2 if backend == 'jax' else 1}"


def test_export_says_what_to_do(backend_run):
    assert "KERAS_BACKEND=tensorflow" in said(backend_run[0], "export ImportError:")


def test_models_are_the_same_and_weights_move_between_backends(backend_run):
    """The model built on this backend has the TensorFlow-built model's parameters, and weights saved there give
    the same outputs in the TensorFlow-backend model (so a model trained on a GPU box ships like any other)."""
    import mvlib  # noqa: F401  (the TensorFlow backend, in this process)
    from mvlib.model import create_mobilevit, parameter_counts

    stdout, tmp, _ = backend_run
    model = create_mobilevit("xxs", 5, SIZE)
    assert tuple(map(int, said(stdout, "parameters").split())) == parameter_counts(model)
    model.load_weights(tmp / "model.weights.h5")
    x = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(model(x, training=False)), np.load(tmp / "outputs.npy"), atol=1e-5)


def test_trains_and_resumes_exactly(backend_run):
    stdout, _, backend = backend_run
    assert said(stdout, "resumed from") == "1"
    if backend == "jax":  # the weights are replicated over both devices: DataParallel was on
        assert said(stdout, "sharding") == "2"
    assert float(said(stdout, "max weight difference")) <= 1e-6
