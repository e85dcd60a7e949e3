"""mvlib: the small library behind the MobileViT teaching notebooks.

Importing it selects the TensorFlow backend for Keras 3 and silences TensorFlow's C++ logging,
so notebook cells show only what they print.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
