# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mobilevit-keras/mobilevit-teaching/blob/main/notebooks/03_architecture.ipynb)
#
# # 03 · Architecture
#
# The blocks of notebook 01, assembled. Every variant is one row of a single config table,
# `mvlib.model.config.VARIANTS`, and `create_mobilevit(variant, num_classes, image_size)` builds it: a stem
# (3x3 stride-2 conv), stage 1 (one MV2 block), stage 2 (three MV2 blocks, the first with stride 2),
# stages 3-5 (a stride-2 MV2 block, then a MobileViT block with C channels, transformer width d and L
# layers), a final 1x1 convolution, global average pooling and the classifier. The input is 256x256 RGB
# in [0, 255] (the model rescales it), the output stride is 32, so the last map is 8x8.
#
# This notebook compares the keras-io example's model with the paper's XXS stage by stage (shapes,
# parameters, MACs), then all four variants, then lists every difference between the two families.
# MACs are counted analytically from the Keras layers (`mvlib.analysis.flops`): convolutions, dense layers and
# attention, including the QK^T and AV matmuls; normalisation, activations and pooling add a few percent
# and are left out, the usual convention for published MAC counts.

# %% tags=["nbval-ignore-output"]
# On Colab, install this repository's package first (elsewhere: `pip install -e .` in a clone).
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "mvlib[litert] @ git+https://github.com/mobilevit-keras/mobilevit-teaching"], check=True)

# %%
import mvlib  # first: selects the TensorFlow backend and keeps TensorFlow's C++ start-up logs out of the cells

import matplotlib.pyplot as plt

from mvlib.analysis import explain
from mvlib.analysis.flops import attention_macs, count_macs, stage_summary
from mvlib.model import VARIANTS, create_mobilevit, parameter_counts
from mvlib.model import config, mobilevit
from mvlib.notebook import architecture_facts, format_table, layer_table, show_source

# %% [markdown]
# ## 1. The whole network
#
# ```text
#  image 256x256x3
#   └─ stem: 3x3 conv, stride 2 ──────────────────────────── 128x128x16
#   └─ stage 1: MV2 ──────────────────────────────────────── 128x128x16
#   └─ stage 2: MV2 (stride 2), MV2, MV2 ─────────────────── 64x64x24
#   └─ stage 3: MV2 (stride 2) + MobileViT C=48, d=64,  L=2 ── 32x32x48  (P=4 sequences of N=256 tokens)
#   └─ stage 4: MV2 (stride 2) + MobileViT C=64, d=80,  L=4 ── 16x16x64  (P=4, N=64)
#   └─ stage 5: MV2 (stride 2) + MobileViT C=80, d=96,  L=3 ── 8x8x80    (P=4, N=16)
#   └─ final: 1x1 conv ──────────────────────────────────────── 8x8x320
#   └─ global average pool → dropout 0.1 → dense ────────────── 5 classes
# ```
#
# (XXS's numbers; XS and S widen every stage.) Here is the code that builds it, whole. First the config
# table: one row per variant, each stage written out with its kind, channels C, depth (MV2 blocks, or
# transformer layers L), stride and transformer width d. The keras-io model is a row of the same table.

# %%
show_source(config)

# %% [markdown]
# Then the assembly: `create_mobilevit` checks its arguments, walks the row's stages and stacks the blocks
# of notebook 01 -- the paper's, or the example's for the keras-io row -- between the rescaling input and
# the classifier head.

# %%
show_source(mobilevit)

# %% [markdown]
# ## 2. The config table

# %%
rows = []
for name, c in VARIANTS.items():
    mv2 = " / ".join(f"{s.channels}x{s.depth}" for s in c.stages if s.kind == "mv2")
    mvit = ", ".join(f"{s.channels}/{s.dim}/{s.depth}" for s in c.stages if s.kind == "mvit")
    rows.append([name, c.style, c.stem, mv2, mvit, c.final_channels, c.expansion, c.num_heads, c.transformer_dropout, c.classifier_dropout])
headers = ["variant", "blocks", "stem", "MV2 stages 1 / 2 (C x blocks)", "MobileViT C/d/L (stages 3, 4, 5)", "final", "MV2 t", "heads", "tf drop", "cls drop"]
print(format_table(headers, rows, align="lllllrrrrr"))

# %% [markdown]
# `"keras-io"` has XXS's numbers in the table but is built from the keras-io blocks (`style`), which is
# where all its differences come from; its transformer dropout 0.1 and absent classifier dropout are the
# example's.
#
# ## 3. keras-io vs XXS, stage by stage
#
# Output shape, parameters (Keras' total, BatchNorm statistics included) and MACs per image of each stage:

# %%
models = {"keras-io": create_mobilevit("keras-io", num_classes=5), "xxs": create_mobilevit("xxs", num_classes=5)}
summaries = {name: stage_summary(model) for name, model in models.items()}
rows = []
for k, x in zip(summaries["keras-io"], summaries["xxs"]):
    rows.append([k.stage, str(k.output_shape[1:]), k.params, f"{k.macs / 1e6:,.1f}", str(x.output_shape[1:]), x.params, f"{x.macs / 1e6:,.1f}"])
rows.append(["total", "", sum(r.params for r in summaries["keras-io"]), f"{count_macs(models['keras-io']) / 1e6:,.1f}", "", sum(r.params for r in summaries["xxs"]), f"{count_macs(models['xxs']) / 1e6:,.1f}"])
print(format_table(["stage", "keras-io output", "params", "MMACs", "xxs output", "params", "MMACs"], rows, align="llrrlrr"))
for name, model in models.items():
    total, trainable = parameter_counts(model)
    print(f"{name}: {total:,} parameters, {trainable:,} trainable, {total - trainable:,} BatchNorm statistics")

# %% [markdown]
# The stem and stages 1-2 match in shapes, parameters and MACs (the stem differs only by bias vs BatchNorm;
# padding, BatchNorm settings and initialisation differ too: notebook 01 and section 6). From stage 3 on, the
# keras-io model is heavier in both parameters and compute:
#
# * its MobileViT blocks output d channels, not C (64/80/96 instead of 48/64/80), so every following
#   layer is wider;
# * its local representation is a 3x3 convolution C → d plus a 1x1 d → d with bias and activation
#   (the paper: 3x3 C → C, then a plain 1x1 C → d), and its fusion convolution maps 2C → d;
# * its attention has 2 heads as wide as d each, twice the projection weights of 4 heads of d/4,
#   and runs globally: at stage 3 (32x32 map, 1,024 tokens) attention alone is most of the model's MACs
#   (notebook 02 counts it).
#
# 1,307,621 parameters is the keras-io example's own count; 952,629 trainable is what Hugging Face's
# PyTorch `MobileViTForImageClassification` reports for XXS at 5 classes.
#
# ## 4. All variants
#
# Parameters at 5 classes (tf_flowers) and 1000 classes (ImageNet), against the counts measured on
# Hugging Face's PyTorch models, and MACs at 256x256. A "FLOP" in the paper's and timm's tables is one
# of these MACs; count 2 FLOPs per MAC if you want floating-point operations.

# %%
reference = {  # trainable parameters of HF transformers' MobileViTForImageClassification (5 / 1000 classes)
    "xxs": (952_629, 1_272_024),
    "xs": (1_934_773, 2_317_848),
    "s": (4_940_837, 5_578_632),
}
rows = []
for name in VARIANTS:
    model = models.get(name) or create_mobilevit(name, num_classes=5)
    total, trainable = parameter_counts(model)
    macs = count_macs(model)
    if name in reference:
        trainable_1000 = parameter_counts(create_mobilevit(name, num_classes=1000))[1]
        ref = reference[name]
        match = "yes" if (trainable, trainable_1000) == ref else "NO"
        rows.append([name, total, trainable, trainable_1000, f"{ref[0]:,} / {ref[1]:,}", match, f"{macs / 1e6:,.0f}"])
    else:
        rows.append([name, total, trainable, "-", "-", "-", f"{macs / 1e6:,.0f}"])
    summaries[name] = stage_summary(model)
headers = ["variant", "params @5", "trainable @5", "trainable @1000", "HF reference @5 / @1000", "match", "MMACs @256"]
print(format_table(headers, rows, align="lrrrlrr"))

# %%
explain.plot_stage_macs(summaries)
plt.show()

# %% [markdown]
# XXS, XS and S come out at about 0.4, 1.0 and 2.0 GMACs, in line with the figures usually quoted for
# MobileViT (often labelled FLOPs). The keras-io model, with XXS's channel numbers, costs about 2.6x XXS,
# 70% of it in stage 3.
#
# ## 5. The head
#
# The last layers of both models: the final 1x1 convolution to 320 channels, global average pooling and
# the classifier. The paper puts dropout 0.1 before the classifier; the keras-io example has none.

# %%
for name, model in models.items():
    print(name)
    print(layer_table(model, prefix="final"))
    print(layer_table(model, prefix="head"))
    print()

# %% [markdown]
# ## 6. Every difference, side by side
#
# | | keras-io example (`"keras-io"`) | paper (`"xxs"`, `"xs"`, `"s"`) |
# | --- | --- | --- |
# | map → sequences | `Reshape((4, HW/4, d))`: raster order, "sequence" 0 = the top quarter of the rows | unfold into 2x2 patches: sequence p = pixel p of every patch; fold is its exact inverse |
# | attention | on (B, 4, N, d) with `attention_axes=None`: global attention over all HW pixels, 2 heads of `key_dim = d` | within each sequence of N = HW/4 tokens, 4 heads of d/4 |
# | MobileViT local representation | 3x3 C → d (bias, swish), 1x1 d → d (bias, swish) | 3x3 C → C (BN, SiLU), 1x1 C → d (no bias, no BN, no activation) |
# | MobileViT fusion / output | 1x1 d → C, concat, 3x3 2C → **d**: the block outputs d channels | 1x1 d → C (BN, SiLU), concat, 3x3 2C → **C** (BN, SiLU) |
# | feed-forward | Dense 2d (swish) → Dense d (**swish**) | Dense 2d (SiLU) → Dense d (linear) |
# | initialisation | Keras defaults (Glorot uniform) | ml-cvnets: Kaiming normal (fan out) convolutions, normal(0.02) linears |
#
# What they cost, computed from the models above (attention: the QK^T and AV products, then with the Q, K,
# V and output projections), and the remaining differences -- padding, biases, BatchNorm and LayerNorm
# settings, heads, dropout -- read straight off the layers by `architecture_facts`, so this part cannot
# drift from the code:

# %%
def attention_mmacs(model, with_projections=False):
    return sum(a.qk + a.av + (a.projections if with_projections else 0) for a in attention_macs(model)) / 1e6


cost_rows = [
    ["parameters (trainable)", *["{:,} ({:,})".format(*parameter_counts(m)) for m in models.values()]],
    ["MMACs at 256 px", *[f"{count_macs(m) / 1e6:,.0f}" for m in models.values()]],
    ["attention MMACs: QK^T + AV", *[f"{attention_mmacs(m):,.0f}" for m in models.values()]],
    ["attention MMACs with the projections", *[f"{attention_mmacs(m, True):,.0f}" for m in models.values()]],
]
print(format_table(["at 5 classes", *models], cost_rows, align="lrr"))
print()
facts = {name: architecture_facts(model) for name, model in models.items()}
print(format_table(["read from the layers", "keras-io", "xxs"], [[key, facts["keras-io"][key], facts["xxs"][key]] for key in facts["xxs"]], align="lll"))

# %% [markdown]
# (Keras calls swish `silu`; they are the same function.) None of these differences is a bug in the
# keras-io example: it is a compact, readable MobileViT that trains well on tf_flowers. But it is not the
# paper's network: it cannot load Apple's ImageNet weights, and its attention, being global, costs 8x the
# QK^T and AV work that MobileViT's design intends (5.2x for all of attention). Notebook 04 trains XXS on
# tf_flowers and sets the keras-io example's own published training log beside it.
