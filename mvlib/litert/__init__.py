"""LiteRT (``.tflite``): export with a parity check (``export``, ``parity``), what a file holds
(``inspect``), running it as an app would (``runtime``) and measuring it (``measure``).

Export needs TensorFlow (the converter); running and measuring need only ``ai-edge-litert``. Import the
submodules you need; this package itself imports neither."""
