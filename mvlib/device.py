"""What the code runs on, in words: for run records, benchmark reports and notebook cells."""

from __future__ import annotations

import os
import platform

import keras

def describe_device() -> str:
    """The accelerator Keras trains on, in words ("1 x NVIDIA H100 80GB HBM3", "CPU, 2 cores")."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        devices = jax.devices()
        if devices[0].platform != "cpu":
            return f"{len(devices)} x {devices[0].device_kind}"
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return f"{len(gpus)} x {tf.config.experimental.get_device_details(gpus[0]).get('device_name', 'GPU')}"
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return f"CPU, {os.cpu_count()} cores"


def describe_machine() -> dict:
    """The machine and the accelerator Keras uses, for measurement reports."""
    return {
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "device": describe_device(),
    }
