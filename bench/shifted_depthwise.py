"""An experiment for issue 15: the depthwise convolutions of a model computed as sums of shifted copies.

A k x k depthwise convolution is, per output pixel and channel, a weighted sum of k*k input pixels of
that channel. XLA lowers it to a grouped convolution (``feature_group_count`` = channels), whose backward
pass on CUDA is reported as slow as a full convolution's (jax-ml/jax#13800, open) and whose forward pass
as slower than PyTorch's (jax-ml/jax#23713). Written as k*k strided slices of the padded input, each times
one kernel tap per channel, it is elementwise work that XLA fuses -- forward and backward -- into a few
kernels. ``with_shifted_depthwise(model)`` gives a copy of a model with every such layer swapped, sharing
nothing and holding the same weights, so ``bench/speed.py --shifted-depthwise`` can time both side by
side. It computes what the model computes (the sums in another order: float rounding only); whether it
is faster is for the GPU to say, and it moves into ``mvlib.model`` only if it is.
"""

from __future__ import annotations

import keras
from keras import ops


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's (and Keras') "same": the output has ceil(size / stride) pixels, extra padding after."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class ShiftedDepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """``keras.layers.DepthwiseConv2D`` (channels last, depth multiplier 1, no dilation), with the same
    weights and config, computed as ``sum over taps (i, j) of input[i::stride, j::stride] * kernel[i, j]``."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.depth_multiplier != 1 or tuple(self.dilation_rate) != (1, 1) or self.data_format != "channels_last":
            raise ValueError(f"{self.name}: only channels_last, depth_multiplier 1, no dilation")

    def call(self, inputs):
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        height, width = inputs.shape[1], inputs.shape[2]
        if self.padding == "same":
            pad_h, pad_w = _same_padding(height, kh, sh), _same_padding(width, kw, sw)
            inputs = ops.pad(inputs, [(0, 0), pad_h, pad_w, (0, 0)])
            height, width = height + sum(pad_h), width + sum(pad_w)
        out_h, out_w = (height - kh) // sh + 1, (width - kw) // sw + 1
        kernel = self.kernel
        outputs = None
        for i in range(kh):
            for j in range(kw):
                tap = inputs[:, i : i + (out_h - 1) * sh + 1 : sh, j : j + (out_w - 1) * sw + 1 : sw, :] * kernel[i, j, :, 0]
                outputs = tap if outputs is None else outputs + tap
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs) if self.activation is not None else outputs


def with_shifted_depthwise(model: keras.Model) -> keras.Model:
    """A copy of ``model`` in which every ``DepthwiseConv2D`` is a :class:`ShiftedDepthwiseConv2D`, with
    the same layer names and weights."""

    def swap(layer):
        if type(layer) is keras.layers.DepthwiseConv2D:
            return ShiftedDepthwiseConv2D(**layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=swap)
    copy.set_weights(model.get_weights())
    return copy
