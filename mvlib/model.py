"""All MobileViT variants as rows of one config table, assembled by ``create_mobilevit``.

Every model takes raw RGB pixels in [0, 255] (a ``Rescaling(1/255)`` layer comes first, as in the
keras-io example) and, by default, outputs class probabilities (``classifier_activation="softmax"``,
as in ``keras.applications``); pass ``classifier_activation=None`` for logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

from mvlib import blocks


@dataclass(frozen=True)
class MobileViTConfig:
    """One variant. Stage 1-2 are MobileNetV2 stages; stages 3-5 are MV2 (stride 2) + MobileViT block."""

    stem: int  # stem conv channels
    mv2_channels: tuple[int, int]  # output channels of stage 1 (1 block) and stage 2 (3 blocks)
    mvit: tuple[tuple[int, int, int], ...]  # (C, d, L) per MobileViT stage: channels, width, depth
    final_channels: int  # the 1x1 conv before global pooling
    expansion: int  # MV2 expansion factor
    num_heads: int
    transformer_dropout: float
    classifier_dropout: float
    style: str = "paper"  # "paper" or "keras-io" (which family of blocks builds it)


VARIANTS: dict[str, MobileViTConfig] = {
    # The keras-io example: XXS-like channels, but its own blocks (see blocks.kerasio_*).
    "keras-io": MobileViTConfig(16, (16, 24), ((48, 64, 2), (64, 80, 4), (80, 96, 3)), 320, 2, 2, 0.1, 0.0, "keras-io"),
    # apple/ml-cvnets config/mobilevit.py
    "xxs": MobileViTConfig(16, (16, 24), ((48, 64, 2), (64, 80, 4), (80, 96, 3)), 320, 2, 4, 0.05, 0.1),
    "xs": MobileViTConfig(16, (32, 48), ((64, 96, 2), (80, 120, 4), (96, 144, 3)), 384, 4, 4, 0.1, 0.1),
    "s": MobileViTConfig(16, (32, 64), ((96, 144, 2), (128, 192, 4), (160, 240, 3)), 640, 4, 4, 0.1, 0.1),
}


def _check_args(variant: str, num_classes: int, image_size: int) -> MobileViTConfig:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid variants: {', '.join(VARIANTS)}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    if not isinstance(image_size, int) or image_size < 32 or image_size % 32:
        raise ValueError(f"image_size must be a positive multiple of 32 (the network downsamples 32x), got {image_size!r}")
    config = VARIANTS[variant]
    if config.style == "keras-io" and image_size % 64:
        raise ValueError(
            f"the keras-io variant needs an image_size that is a multiple of 64 (its Reshape splits the "
            f"{image_size // 32}x{image_size // 32} last-stage map into 4 equal parts); got {image_size}"
        )
    return config


def create_mobilevit(
    variant: str = "xxs",
    num_classes: int = 5,
    image_size: int = 256,
    *,
    classifier_activation: str | None = "softmax",
    bn_momentum: float = 0.9,
    name: str | None = None,
) -> keras.Model:
    """Build a MobileViT.

    Args:
        variant: one of ``VARIANTS`` -- ``"keras-io"`` (the keras-io example, exactly) or the paper's
            ``"xxs"``, ``"xs"``, ``"s"``.
        num_classes: size of the classifier.
        image_size: square input size, a multiple of 32 (64 for ``"keras-io"``).
        classifier_activation: ``"softmax"`` (probabilities) or ``None`` (logits).
        bn_momentum: Keras BatchNorm momentum for the paper variants (0.9 = PyTorch's 0.1). The
            keras-io variant keeps Keras' defaults, as the example does.
    """
    config = _check_args(variant, num_classes, image_size)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    build = _body_kerasio if config.style == "keras-io" else _body_paper
    x = build(x, config, bn_momentum)
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    if config.classifier_dropout:
        x = layers.Dropout(config.classifier_dropout, name="head_drop")(x)
    dense_init = "glorot_uniform" if config.style == "keras-io" else blocks.PAPER_DENSE_INIT
    outputs = layers.Dense(num_classes, activation=classifier_activation, kernel_initializer=dense_init, name="head_classifier")(x)
    return keras.Model(inputs, outputs, name=name or f"mobilevit_{variant.replace('-', '_')}")


def _body_paper(x, c: MobileViTConfig, bn_momentum: float):
    kw = dict(bn_momentum=bn_momentum)
    x = blocks.conv_bn_act(x, c.stem, 3, 2, name="stem", **kw)
    x = blocks.inverted_residual(x, x.shape[-1] * c.expansion, c.mv2_channels[0], 1, name="stage1_mv2_0", **kw)
    for i in range(3):
        x = blocks.inverted_residual(x, x.shape[-1] * c.expansion, c.mv2_channels[1], 2 if i == 0 else 1, name=f"stage2_mv2_{i}", **kw)
    for stage, (channels, dim, depth) in enumerate(c.mvit, start=3):
        x = blocks.inverted_residual(x, x.shape[-1] * c.expansion, channels, 2, name=f"stage{stage}_mv2", **kw)
        x = blocks.mobilevit_block(x, dim, depth, c.num_heads, dropout=c.transformer_dropout, name=f"stage{stage}_mvit", **kw)
    return blocks.conv_bn_act(x, c.final_channels, 1, name="final", **kw)


def _body_kerasio(x, c: MobileViTConfig, bn_momentum: float):
    del bn_momentum  # the example uses Keras' BatchNorm defaults
    x = blocks.kerasio_conv_block(x, c.stem, name="stem")
    x = blocks.kerasio_inverted_residual_block(x, x.shape[-1] * c.expansion, c.mv2_channels[0], name="stage1_mv2_0")
    for i in range(3):
        x = blocks.kerasio_inverted_residual_block(
            x, x.shape[-1] * c.expansion, c.mv2_channels[1], 2 if i == 0 else 1, name=f"stage2_mv2_{i}"
        )
    for stage, (channels, dim, depth) in enumerate(c.mvit, start=3):
        x = blocks.kerasio_inverted_residual_block(x, x.shape[-1] * c.expansion, channels, 2, name=f"stage{stage}_mv2")
        x = blocks.kerasio_mobilevit_block(x, depth, dim, c.num_heads, name=f"stage{stage}_mvit")
    return blocks.kerasio_conv_block(x, c.final_channels, kernel_size=1, strides=1, name="final")


def parameter_counts(model: keras.Model) -> tuple[int, int]:
    """(total, trainable). Keras' total includes BatchNorm moving statistics, which PyTorch calls buffers."""
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    return model.count_params(), trainable
