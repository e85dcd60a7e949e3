"""The paper's MobileViT building blocks (apple/ml-cvnets) as Keras 3 functional builders.

Conv + BatchNorm + SiLU with PyTorch-style symmetric padding for strided convs; MobileNetV2's inverted
residual; a pre-norm transformer layer; and the MobileViT block: local 3x3 -> 1x1 projection,
unfold -> transformer -> fold, 1x1 projection back, concat with the input, 3x3 fusion. The keras-io
example's blocks live beside these in ``mvlib.model.kerasio``.

Every builder takes a ``name`` prefix and names each layer under it, so summaries and weight
converters can address ``stage3_mvit_transformer0_attn`` and friends by name.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from mvlib.model.unfold import fold, unfold

# ml-cvnets initialisation: Kaiming-normal (fan_out) convolutions, normal(0.02) linears. A new initializer for
# every layer: a Keras initializer draws its seed when it is created and then returns the same values for the
# same shape, so one shared instance would start every layer of a shape identical (and, created at import,
# ignore `keras.utils.set_random_seed`).
def paper_conv_init(depthwise: bool = False) -> keras.initializers.Initializer:
    """PyTorch's ``kaiming_normal_(mode="fan_out")``: std sqrt(2 / fan_out).

    PyTorch stores a depthwise kernel as (C, 1, k, k) and counts its fan_out as C*k*k; Keras stores it as
    (k, k, C, 1) and counts C*k*k as its fan_in (fan_out: k*k, a std sqrt(C) times too large)."""
    return keras.initializers.VarianceScaling(2.0, mode="fan_in" if depthwise else "fan_out",
                                              distribution="untruncated_normal")


def paper_dense_init() -> keras.initializers.Initializer:
    """ml-cvnets' ``trunc_normal_(std=0.02)``: PyTorch truncates at +-2 (absolute, 100 std), so in effect a
    plain normal; Keras' ``TruncatedNormal`` would cut at 2 std and shrink the std to 0.0176."""
    return keras.initializers.RandomNormal(stddev=0.02)


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
        x = layers.Conv2D(filters, kernel_size, kernel_initializer=paper_conv_init(), name=f"{name}_conv", **common)(x)
    else:  # only depthwise grouping is used by MobileViT
        x = layers.DepthwiseConv2D(kernel_size, depthwise_initializer=paper_conv_init(depthwise=True), name=f"{name}_dwconv", **common)(x)
    if norm:
        # PyTorch's BatchNorm defaults, as ml-cvnets has them: momentum 0.1 in PyTorch's convention is 0.9 in
        # Keras' (the weight of the old average), epsilon 1e-5.
        x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    if activation:
        x = layers.Activation("silu", name=f"{name}_silu")(x)
    return x


def inverted_residual(x, expanded_channels: int, output_channels: int, strides: int = 1, *, name: str):
    """MobileNetV2 block: 1x1 expand -> 3x3 depthwise (stride) -> 1x1 project; residual if shapes match."""
    shortcut = x
    m = conv_bn_act(x, expanded_channels, 1, name=f"{name}_expand")
    m = conv_bn_act(m, expanded_channels, 3, strides, groups=expanded_channels, name=f"{name}_dw")
    m = conv_bn_act(m, output_channels, 1, activation=False, name=f"{name}_project")
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
        kernel_initializer=paper_dense_init(),
        name=f"{name}_attn",
    )(h, h)
    if dropout:
        h = layers.Dropout(dropout, name=f"{name}_attn_drop")(h)
    x = layers.Add(name=f"{name}_add1")([x, h])
    h = layers.LayerNormalization(epsilon=1e-5, name=f"{name}_norm2")(x)
    h = layers.Dense(ffn_dim, activation="silu", kernel_initializer=paper_dense_init(), name=f"{name}_ffn1")(h)
    h = layers.Dense(dim, kernel_initializer=paper_dense_init(), name=f"{name}_ffn2")(h)
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
):
    """The paper's MobileViT block (C channels in and out, transformer width ``dim``, ``depth`` layers)."""
    channels, height, width = x.shape[-1], x.shape[1], x.shape[2]
    # Local representation: 3x3 conv C->C (BN, SiLU), then a plain 1x1 projection C->d.
    local = conv_bn_act(x, channels, 3, name=f"{name}_local")
    local = layers.Conv2D(dim, 1, use_bias=False, kernel_initializer=paper_conv_init(), name=f"{name}_local_proj_conv")(local)
    # Global representation: unfold -> L transformer layers -> LayerNorm -> fold.
    seq = Unfold(patch, name=f"{name}_unfold")(local)
    for i in range(depth):
        seq = transformer_layer(seq, num_heads, ffn_multiplier * dim, dropout, name=f"{name}_transformer{i}")
    seq = layers.LayerNormalization(epsilon=1e-5, name=f"{name}_norm")(seq)
    glob = Fold(height, width, patch, name=f"{name}_fold")(seq)
    # Fusion: 1x1 d->C, concat with the block input, 3x3 2C->C.
    glob = conv_bn_act(glob, channels, 1, name=f"{name}_proj")
    fused = layers.Concatenate(name=f"{name}_concat")([x, glob])
    return conv_bn_act(fused, channels, 3, name=f"{name}_fusion")
