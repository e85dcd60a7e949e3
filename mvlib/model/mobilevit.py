"""``create_mobilevit``: any row of ``config.VARIANTS`` assembled from its blocks.

Every model takes raw RGB pixels in [0, 255] (a ``Rescaling(1/255)`` layer comes first, as in the
keras-io example) and, by default, outputs class probabilities (``classifier_activation="softmax"``,
as in ``keras.applications``); pass ``classifier_activation=None`` for logits.
"""

from __future__ import annotations

import keras
from keras import layers

from mvlib.model import blocks, kerasio
from mvlib.model.config import VARIANTS, MobileViTConfig


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
    bn_momentum: float | None = None,
    name: str | None = None,
) -> keras.Model:
    """Build a MobileViT.

    Args:
        variant: one of ``VARIANTS`` -- ``"keras-io"`` (the keras-io example, exactly) or the paper's
            ``"xxs"``, ``"xs"``, ``"s"``.
        num_classes: size of the classifier.
        image_size: square input size, a multiple of 32 (64 for ``"keras-io"``).
        classifier_activation: ``"softmax"`` (probabilities) or ``None`` (logits).
        bn_momentum: Keras BatchNorm momentum of every BatchNorm layer; None keeps the variant's own:
            0.9 for the paper's (PyTorch's 0.1), Keras' default 0.99 for keras-io, as the example has it.
    """
    config = _check_args(variant, num_classes, image_size)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    build = _body_kerasio if config.style == "keras-io" else _body_paper
    x = build(x, config)
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    if config.classifier_dropout:
        x = layers.Dropout(config.classifier_dropout, name="head_drop")(x)
    dense_init = "glorot_uniform" if config.style == "keras-io" else blocks.paper_dense_init()
    outputs = layers.Dense(num_classes, activation=classifier_activation, kernel_initializer=dense_init, name="head_classifier")(x)
    model = keras.Model(inputs, outputs, name=name or f"mobilevit_{variant.replace('-', '_')}")
    if bn_momentum is not None:  # set on the built layers, so the example's blocks stay as it writes them
        for layer in model.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = bn_momentum
    return model


def _body_paper(x, c: MobileViTConfig):
    x = blocks.conv_bn_act(x, c.stem, 3, 2, name="stem")
    for number, stage in enumerate(c.stages, start=1):
        if stage.kind == "mv2":
            for i in range(stage.depth):
                stride = stage.stride if i == 0 else 1
                x = blocks.inverted_residual(x, x.shape[-1] * c.expansion, stage.channels, stride, name=f"stage{number}_mv2_{i}")
        else:
            x = blocks.inverted_residual(x, x.shape[-1] * c.expansion, stage.channels, stage.stride, name=f"stage{number}_mv2")
            x = blocks.mobilevit_block(x, stage.dim, stage.depth, c.num_heads, dropout=c.transformer_dropout, name=f"stage{number}_mvit")
    return blocks.conv_bn_act(x, c.final_channels, 1, name="final")


def _body_kerasio(x, c: MobileViTConfig):
    x = kerasio.conv_block(x, c.stem, name="stem")
    for number, stage in enumerate(c.stages, start=1):
        if stage.kind == "mv2":
            for i in range(stage.depth):
                stride = stage.stride if i == 0 else 1
                x = kerasio.inverted_residual_block(x, x.shape[-1] * c.expansion, stage.channels, stride, name=f"stage{number}_mv2_{i}")
        else:
            x = kerasio.inverted_residual_block(x, x.shape[-1] * c.expansion, stage.channels, stage.stride, name=f"stage{number}_mv2")
            x = kerasio.mobilevit_block(x, stage.depth, stage.dim, c.num_heads, name=f"stage{number}_mvit")
    return kerasio.conv_block(x, c.final_channels, kernel_size=1, strides=1, name="final")


def parameter_counts(model: keras.Model) -> tuple[int, int]:
    """(total, trainable). Keras' total includes BatchNorm moving statistics, which PyTorch calls buffers."""
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    return model.count_params(), trainable
