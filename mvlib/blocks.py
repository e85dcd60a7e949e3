"""MobileViT building blocks as Keras 3 functional builders with explicitly named layers.

Two families live here, on purpose:

* the paper's blocks (ml-cvnets / Apple): conv + BatchNorm + SiLU, PyTorch-style symmetric padding for
  strided convs, a MobileViT block with local 3x3 -> 1x1 projection, unfold -> transformer -> fold,
  1x1 projection back, concat with the input, 3x3 fusion;
* the keras-io example's blocks, kept exactly (conv with bias and no BatchNorm, ``correct_pad``,
  the raster ``Reshape`` and global attention), because readers arrive from that example.

Every builder takes a ``name`` prefix and names each layer under it, so summaries and weight
converters can address ``stage3_mvit_transformer0_attn`` and friends by name.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from mvlib.unfold import fold, unfold

# ml-cvnets initialisation: Kaiming-normal (fan_out) convolutions, truncated-normal(0.02) linears.
PAPER_CONV_INIT = keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")
PAPER_DENSE_INIT = keras.initializers.TruncatedNormal(stddev=0.02)


# --------------------------------------------------------------------------------------------------
# Paper blocks
# --------------------------------------------------------------------------------------------------


def conv_bn_act(
    x,
    filters: int,
    kernel_size: int = 3,
    strides: int = 1,
    *,
    name: str,
    groups: int = 1,
    norm: bool = True,
    activation: bool = True,
    bn_momentum: float = 0.9,
):
    """Conv (no bias) -> BatchNorm -> SiLU, padded like PyTorch (``kernel_size // 2`` on every side).

    Keras' ``padding="same"`` pads a stride-2 conv only at the bottom/right of an even-sized map;
    PyTorch (and so ml-cvnets' weights) pads both sides, which shifts the sampling grid by one pixel.
    We pad explicitly so the paper variants agree with the reference implementation to float precision.
    """
    pad = kernel_size // 2
    if pad and strides > 1:
        x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"
    common = dict(strides=strides, padding=padding, use_bias=not norm)
    if groups == 1:
        x = layers.Conv2D(filters, kernel_size, kernel_initializer=PAPER_CONV_INIT, name=f"{name}_conv", **common)(x)
    else:  # only depthwise grouping is used by MobileViT
        x = layers.DepthwiseConv2D(kernel_size, depthwise_initializer=PAPER_CONV_INIT, name=f"{name}_dwconv", **common)(x)
    if norm:
        x = layers.BatchNormalization(momentum=bn_momentum, epsilon=1e-5, name=f"{name}_bn")(x)
    if activation:
        x = layers.Activation("silu", name=f"{name}_silu")(x)
    return x


def inverted_residual(x, expanded_channels: int, output_channels: int, strides: int = 1, *, name: str, bn_momentum=0.9):
    """MobileNetV2 block: 1x1 expand -> 3x3 depthwise (stride) -> 1x1 project; residual if shapes match."""
    shortcut = x
    m = conv_bn_act(x, expanded_channels, 1, name=f"{name}_expand", bn_momentum=bn_momentum)
    m = conv_bn_act(m, expanded_channels, 3, strides, groups=expanded_channels, name=f"{name}_dw", bn_momentum=bn_momentum)
    m = conv_bn_act(m, output_channels, 1, activation=False, name=f"{name}_project", bn_momentum=bn_momentum)
    if strides == 1 and x.shape[-1] == output_channels:
        m = layers.Add(name=f"{name}_add")([shortcut, m])
    return m


def transformer_layer(x, num_heads: int, ffn_dim: int, dropout: float = 0.0, *, name: str):
    """Pre-norm transformer encoder layer on ``(batch, tokens, d)``: MHA and an FFN with SiLU.

    Dropout follows ml-cvnets: none inside attention or between the FFN's linears, ``dropout`` after
    the attention output and after the FFN.
    """
    dim = x.shape[-1]
    h = layers.LayerNormalization(epsilon=1e-5, name=f"{name}_norm1")(x)
    h = layers.MultiHeadAttention(
        num_heads,
        key_dim=dim // num_heads,
        kernel_initializer=PAPER_DENSE_INIT,
        name=f"{name}_attn",
    )(h, h)
    if dropout:
        h = layers.Dropout(dropout, name=f"{name}_attn_drop")(h)
    x = layers.Add(name=f"{name}_add1")([x, h])
    h = layers.LayerNormalization(epsilon=1e-5, name=f"{name}_norm2")(x)
    h = layers.Dense(ffn_dim, activation="silu", kernel_initializer=PAPER_DENSE_INIT, name=f"{name}_ffn1")(h)
    h = layers.Dense(dim, kernel_initializer=PAPER_DENSE_INIT, name=f"{name}_ffn2")(h)
    if dropout:
        h = layers.Dropout(dropout, name=f"{name}_ffn_drop")(h)
    return layers.Add(name=f"{name}_add2")([x, h])


@keras.saving.register_keras_serializable(package="mvlib")
class Unfold(layers.Layer):
    """Paper unfold as a layer: ``(B, H, W, C) -> (B*P, N, C)``, the P sequences stacked into the batch.

    If H or W is not a multiple of the patch size (e.g. a 5x5 map from a 160 px input), the map is
    first resized bilinearly to the next multiple -- what ml-cvnets and HF transformers do.
    """

    def __init__(self, patch: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.patch = patch

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        p = self.patch
        return -(-height // p) * p, -(-width // p) * p

    def call(self, x):
        height, width = x.shape[1], x.shape[2]
        size = self.padded_size(height, width)
        if size != (height, width):
            x = ops.image.resize(x, size, interpolation="bilinear", antialias=False)
        seq = unfold(x, self.patch)
        return ops.reshape(seq, (-1, seq.shape[2], seq.shape[3]))

    def compute_output_shape(self, input_shape):
        h, w = self.padded_size(input_shape[1], input_shape[2])
        b = None if input_shape[0] is None else input_shape[0] * self.patch**2
        return (b, h * w // self.patch**2, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "patch": self.patch}


@keras.saving.register_keras_serializable(package="mvlib")
class Fold(layers.Layer):
    """Inverse of :class:`Unfold`: ``(B*P, N, C) -> (B, H, W, C)``, resizing back if Unfold had to."""

    def __init__(self, height: int, width: int, patch: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.height, self.width, self.patch = height, width, patch

    def call(self, x):
        p = self.patch
        h, w = -(-self.height // p) * p, -(-self.width // p) * p
        x = fold(ops.reshape(x, (-1, p * p, x.shape[1], x.shape[2])), h, w, p)
        if (h, w) != (self.height, self.width):
            x = ops.image.resize(x, (self.height, self.width), interpolation="bilinear", antialias=False)
        return x

    def compute_output_shape(self, input_shape):
        b = None if input_shape[0] is None else input_shape[0] // self.patch**2
        return (b, self.height, self.width, input_shape[2])

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width, "patch": self.patch}


def mobilevit_block(
    x,
    dim: int,
    depth: int,
    num_heads: int = 4,
    ffn_multiplier: int = 2,
    dropout: float = 0.1,
    patch: int = 2,
    *,
    name: str,
    bn_momentum: float = 0.9,
):
    """The paper's MobileViT block (C channels in and out, transformer width ``dim``, ``depth`` layers)."""
    channels, height, width = x.shape[-1], x.shape[1], x.shape[2]
    # Local representation: 3x3 conv C->C (BN, SiLU), then a plain 1x1 projection C->d.
    local = conv_bn_act(x, channels, 3, name=f"{name}_local", bn_momentum=bn_momentum)
    local = layers.Conv2D(dim, 1, use_bias=False, kernel_initializer=PAPER_CONV_INIT, name=f"{name}_local_proj_conv")(local)
    # Global representation: unfold -> L transformer layers -> LayerNorm -> fold.
    seq = Unfold(patch, name=f"{name}_unfold")(local)
    for i in range(depth):
        seq = transformer_layer(seq, num_heads, ffn_multiplier * dim, dropout, name=f"{name}_transformer{i}")
    seq = layers.LayerNormalization(epsilon=1e-5, name=f"{name}_norm")(seq)
    glob = Fold(height, width, patch, name=f"{name}_fold")(seq)
    # Fusion: 1x1 d->C, concat with the block input, 3x3 2C->C.
    glob = conv_bn_act(glob, channels, 1, name=f"{name}_proj", bn_momentum=bn_momentum)
    fused = layers.Concatenate(name=f"{name}_concat")([x, glob])
    return conv_bn_act(fused, channels, 3, name=f"{name}_fusion", bn_momentum=bn_momentum)


# --------------------------------------------------------------------------------------------------
# keras-io example blocks (kept exactly; only the layer names are added)
# --------------------------------------------------------------------------------------------------


def kerasio_conv_block(x, filters: int = 16, kernel_size: int = 3, strides: int = 2, *, name: str):
    """keras-io ``conv_block``: Conv2D with bias and swish, "same" padding, no BatchNorm."""
    return layers.Conv2D(
        filters, kernel_size, strides=strides, activation="swish", padding="same", name=f"{name}_conv"
    )(x)


def correct_pad(inputs, kernel_size: int):
    """keras-applications' ``correct_pad``: the padding that makes a stride-2 "valid" conv act like TF's "same".

    For an even-sized map this is ``((0, 1), (0, 1))`` -- bottom/right only (unlike PyTorch's 1 on each side).
    """
    height, width = inputs.shape[1], inputs.shape[2]
    adjust = (1, 1) if height is None else (1 - height % 2, 1 - width % 2)
    correct = kernel_size // 2
    return ((correct - adjust[0], correct), (correct - adjust[1], correct))


def kerasio_inverted_residual_block(x, expanded_channels: int, output_channels: int, strides: int = 1, *, name: str):
    """keras-io ``inverted_residual_block`` (Keras-default BatchNorm: momentum 0.99, epsilon 1e-3)."""
    m = layers.Conv2D(expanded_channels, 1, padding="same", use_bias=False, name=f"{name}_expand_conv")(x)
    m = layers.BatchNormalization(name=f"{name}_expand_bn")(m)
    m = layers.Activation("swish", name=f"{name}_expand_swish")(m)
    if strides == 2:
        m = layers.ZeroPadding2D(padding=correct_pad(m, 3), name=f"{name}_dw_pad")(m)
    m = layers.DepthwiseConv2D(
        3, strides=strides, padding="same" if strides == 1 else "valid", use_bias=False, name=f"{name}_dw_dwconv"
    )(m)
    m = layers.BatchNormalization(name=f"{name}_dw_bn")(m)
    m = layers.Activation("swish", name=f"{name}_dw_swish")(m)
    m = layers.Conv2D(output_channels, 1, padding="same", use_bias=False, name=f"{name}_project_conv")(m)
    m = layers.BatchNormalization(name=f"{name}_project_bn")(m)
    if x.shape[-1] == output_channels and strides == 1:
        return layers.Add(name=f"{name}_add")([m, x])
    return m


def kerasio_transformer_block(x, depth: int, projection_dim: int, num_heads: int = 2, *, name: str):
    """keras-io ``transformer_block`` on ``(B, 4, N, d)``.

    ``MultiHeadAttention`` with ``attention_axes=None`` attends over *both* axes 1 and 2, i.e. every
    pixel attends to every pixel (plain global attention), and ``key_dim=projection_dim`` makes each
    of the 2 heads as wide as the whole embedding.
    """
    for i in range(depth):
        n = f"{name}_transformer{i}"
        x1 = layers.LayerNormalization(epsilon=1e-6, name=f"{n}_norm1")(x)
        attn = layers.MultiHeadAttention(num_heads=num_heads, key_dim=projection_dim, dropout=0.1, name=f"{n}_attn")(x1, x1)
        x2 = layers.Add(name=f"{n}_add1")([attn, x])
        x3 = layers.LayerNormalization(epsilon=1e-6, name=f"{n}_norm2")(x2)
        for j, units in enumerate((x.shape[-1] * 2, x.shape[-1])):
            x3 = layers.Dense(units, activation="swish", name=f"{n}_ffn{j + 1}")(x3)
            x3 = layers.Dropout(0.1, name=f"{n}_ffn{j + 1}_drop")(x3)
        x = layers.Add(name=f"{n}_add2")([x3, x2])
    return x


def kerasio_mobilevit_block(x, num_blocks: int, projection_dim: int, num_heads: int = 2, *, name: str):
    """keras-io ``mobilevit_block``: note the raster ``Reshape`` standing in for unfold, and that the
    block outputs ``projection_dim`` channels (the paper returns C)."""
    height, width = x.shape[1], x.shape[2]
    local = kerasio_conv_block(x, projection_dim, strides=1, name=f"{name}_local")
    local = kerasio_conv_block(local, projection_dim, kernel_size=1, strides=1, name=f"{name}_local_proj")
    if (height * width) % 4:
        raise ValueError(
            f"the keras-io block reshapes an {height}x{width} map into 4 sequences, which needs H*W divisible by 4; "
            "use an image size that is a multiple of 64 for the keras-io variant."
        )
    seq = layers.Reshape((4, height * width // 4, projection_dim), name=f"{name}_reshape")(local)
    seq = kerasio_transformer_block(seq, num_blocks, projection_dim, num_heads, name=name)
    glob = layers.Reshape((height, width, projection_dim), name=f"{name}_unreshape")(seq)
    glob = kerasio_conv_block(glob, x.shape[-1], kernel_size=1, strides=1, name=f"{name}_proj")
    fused = layers.Concatenate(axis=-1, name=f"{name}_concat")([x, glob])
    return kerasio_conv_block(fused, projection_dim, strides=1, name=f"{name}_fusion")
