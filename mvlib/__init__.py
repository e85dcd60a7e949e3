"""mvlib: the small library behind the MobileViT teaching notebooks.

Importing it selects the TensorFlow backend for Keras 3 and keeps TensorFlow's C++ start-up chatter
("Could not find cuda drivers ...") out of notebook cells and terminals.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"


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


_import_tensorflow_quietly()
