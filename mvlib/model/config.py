"""Every MobileViT variant as one row of a table: what each stage is, how wide, how deep, what stride.

A network is a stem, five stages and a head. Stages 1-2 are MobileNetV2 (``mv2``) stages; stages 3-5
(``mvit``) open with a stride-2 MV2 block and then a MobileViT block whose transformer has ``depth``
layers of width ``dim``. Rows follow apple/ml-cvnets ``config/mobilevit.py`` (the paper's Table 4);
``"keras-io"`` is the keras-io example: the XXS widths, built from that example's own blocks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One stage. ``mv2``: ``depth`` MV2 blocks, the first with ``stride``. ``mvit``: one MV2 block
    with ``stride``, then a MobileViT block of ``channels`` C and a ``depth``-layer transformer of
    width ``dim`` (d)."""

    kind: str  # "mv2" or "mvit"
    channels: int
    depth: int
    stride: int
    dim: int | None = None


def mv2(channels: int, depth: int, stride: int) -> Stage:
    return Stage("mv2", channels, depth, stride)


def mvit(channels: int, dim: int, depth: int, stride: int = 2) -> Stage:
    return Stage("mvit", channels, depth, stride, dim)


@dataclass(frozen=True)
class MobileViTConfig:
    stem: int  # channels of the stride-2 3x3 stem conv
    stages: tuple[Stage, ...]
    final_channels: int  # the 1x1 conv before global pooling
    expansion: int  # MV2 expansion factor
    num_heads: int
    transformer_dropout: float
    classifier_dropout: float
    style: str = "paper"  # which family of blocks builds it: "paper" or "keras-io"


VARIANTS: dict[str, MobileViTConfig] = {
    # keras-io: 2 heads each as wide as the embedding, its own dropout, no classifier dropout.
    "keras-io": MobileViTConfig(
        stem=16,
        stages=(mv2(16, depth=1, stride=1), mv2(24, depth=3, stride=2),
                mvit(48, dim=64, depth=2), mvit(64, dim=80, depth=4), mvit(80, dim=96, depth=3)),
        final_channels=320, expansion=2, num_heads=2, transformer_dropout=0.1, classifier_dropout=0.0, style="keras-io",
    ),
    "xxs": MobileViTConfig(
        stem=16,
        stages=(mv2(16, depth=1, stride=1), mv2(24, depth=3, stride=2),
                mvit(48, dim=64, depth=2), mvit(64, dim=80, depth=4), mvit(80, dim=96, depth=3)),
        final_channels=320, expansion=2, num_heads=4, transformer_dropout=0.05, classifier_dropout=0.1,
    ),
    "xs": MobileViTConfig(
        stem=16,
        stages=(mv2(32, depth=1, stride=1), mv2(48, depth=3, stride=2),
                mvit(64, dim=96, depth=2), mvit(80, dim=120, depth=4), mvit(96, dim=144, depth=3)),
        final_channels=384, expansion=4, num_heads=4, transformer_dropout=0.1, classifier_dropout=0.1,
    ),
    "s": MobileViTConfig(
        stem=16,
        stages=(mv2(32, depth=1, stride=1), mv2(64, depth=3, stride=2),
                mvit(96, dim=144, depth=2), mvit(128, dim=192, depth=4), mvit(160, dim=240, depth=3)),
        final_channels=640, expansion=4, num_heads=4, transformer_dropout=0.1, classifier_dropout=0.1,
    ),
}
