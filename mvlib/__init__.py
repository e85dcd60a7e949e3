"""mvlib: the small library behind the MobileViT teaching notebooks.

Runs on any Keras 3 backend. Importing it picks one when ``KERAS_BACKEND`` is not set -- TensorFlow
when it is installed (the default, and what LiteRT export needs), else JAX, else PyTorch -- without
importing any of them. Only under the TensorFlow backend is TensorFlow imported here, with its C++
start-up chatter ("Could not find cuda drivers ...") kept out of notebook cells and terminals.
"""

import importlib.util
import os

__version__ = "0.2.0"


def _default_backend() -> str:
    for backend, module in (("tensorflow", "tensorflow"), ("jax", "jax"), ("torch", "torch")):
        if importlib.util.find_spec(module) is not None:
            return backend
    return "tensorflow"  # Keras' own default; importing keras will then say what is missing


os.environ.setdefault("KERAS_BACKEND", _default_backend())
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# TensorFlow's CPU tensors come from malloc by default, which maps large blocks fresh from the kernel and
# unmaps them when freed, so every training step page-faults its activations in again. TensorFlow's BFC
# allocator keeps the memory and reuses it: on the 2-core development machine, training steps of 64
# images at 160 px ran ~33% faster with it, with ~40x fewer page faults (README, "Speed", says how it was
# measured). It must be set before TensorFlow creates its CPU allocator, i.e. before the first op.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow and initialise its devices with the process's stderr (fd 2) muted.

    TF 2.21 writes some messages from C++ before its logging is configured, so no environment
    variable silences them; Python-level errors still surface because they are raised, not printed.
    """
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def require(module: str, purpose: str):
    """Import ``module`` for ``purpose``, or fail with an error that names the package to install."""
    packages = {"tensorflow": "tensorflow", "tensorflow_datasets": "tensorflow-datasets", "ai_edge_litert": "ai-edge-litert"}
    if importlib.util.find_spec(module) is None:
        raise ImportError(f"{purpose} needs the package {packages.get(module, module)!r}: pip install "
                          f"{packages.get(module, module)} (the rest of mvlib runs without it)")
    if module == "tensorflow":
        _import_tensorflow_quietly()
    return importlib.import_module(module)


if os.environ["KERAS_BACKEND"] == "tensorflow" and importlib.util.find_spec("tensorflow") is not None:
    _import_tensorflow_quietly()
