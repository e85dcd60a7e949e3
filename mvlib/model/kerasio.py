"""The keras-io MobileViT example's blocks, kept exactly as the example writes them (only layer names added).

Readers arrive from that example, so its blocks stay here under its own names -- ``conv_block``,
``inverted_residual_block``, ``transformer_block``, ``mobilevit_block`` -- for notebooks 01 and 03 to
set beside the paper's (``mvlib.model.blocks``): a conv with bias and no BatchNorm, ``correct_pad``, the
raster ``Reshape`` instead of unfold, and global attention.
"""

from __future__ import annotations

from keras import layers

def conv_block(x, filters: int = 16, kernel_size: int = 3, strides: int = 2, *, name: str):
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


def inverted_residual_block(x, expanded_channels: int, output_channels: int, strides: int = 1, *, name: str):
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


def transformer_block(x, depth: int, projection_dim: int, num_heads: int = 2, *, name: str):
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


def mobilevit_block(x, num_blocks: int, projection_dim: int, num_heads: int = 2, *, name: str):
    """keras-io ``mobilevit_block``: note the raster ``Reshape`` standing in for unfold, and that the
    block outputs ``projection_dim`` channels (the paper returns C)."""
    height, width = x.shape[1], x.shape[2]
    local = conv_block(x, projection_dim, strides=1, name=f"{name}_local")
    local = conv_block(local, projection_dim, kernel_size=1, strides=1, name=f"{name}_local_proj")
    if (height * width) % 4:
        raise ValueError(
            f"the keras-io block reshapes an {height}x{width} map into 4 sequences, which needs H*W divisible by 4; "
            "use an image size that is a multiple of 64 for the keras-io variant."
        )
    seq = layers.Reshape((4, height * width // 4, projection_dim), name=f"{name}_reshape")(local)
    seq = transformer_block(seq, num_blocks, projection_dim, num_heads, name=name)
    glob = layers.Reshape((height, width, projection_dim), name=f"{name}_unreshape")(seq)
    glob = conv_block(glob, x.shape[-1], kernel_size=1, strides=1, name=f"{name}_proj")
    fused = layers.Concatenate(axis=-1, name=f"{name}_concat")([x, glob])
    return conv_block(fused, projection_dim, strides=1, name=f"{name}_fusion")
