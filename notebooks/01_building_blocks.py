# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mobilevit-keras/mobilevit-teaching/blob/main/notebooks/01_building_blocks.ipynb)
#
# # 01 · Building blocks
#
# MobileViT (Mehta & Rastegari, [arXiv 2110.02178](https://arxiv.org/abs/2110.02178)) is assembled from
# four blocks: a strided convolution, the MobileNetV2 inverted residual ("MV2"), a transformer encoder
# layer, and the MobileViT block that puts transformers between convolutions. This notebook builds each
# one: first its code, exactly as the package has it (`show_source` renders the package's own source, so
# what you read is what runs), then what it does to a tensor and what it costs in weights.
#
# Every block exists twice, on purpose:
#
# * the **paper's** blocks (Apple's ml-cvnets), in `mvlib.model.blocks`, which the `"xxs"`, `"xs"` and
#   `"s"` variants are built from and which reproduce Hugging Face's PyTorch port of ml-cvnets: the same
#   weights give the same logits within 1e-4 (`tests/test_convert.py`, on random weights and BatchNorm
#   statistics), so Apple's ImageNet weights load through `mvlib/model/convert.py`;
# * the **keras-io example's** blocks (variant `"keras-io"`), in `mvlib.model.kerasio`, kept exactly as
#   the example has them, under the example's own names, because that is where most readers come from.
#
# Each block is wrapped in a small `keras.Model` (`mvlib.notebook.block_model`) so Keras can report
# shapes and parameters. Counts are printed as *total (trainable)*: Keras' total includes BatchNorm's
# moving mean and variance, which PyTorch calls buffers, so the trainable count is the one to compare
# with the paper. `B` in a shape is the batch axis.

# %% tags=["nbval-ignore-output"]
# On Colab, install this repository's package first (elsewhere: `pip install -e .` in a clone).
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "mvlib[litert] @ git+https://github.com/mobilevit-keras/mobilevit-teaching"], check=True)

# %%
import mvlib  # first: selects the TensorFlow backend and keeps TensorFlow's C++ start-up logs out of the cells

import matplotlib.pyplot as plt
import numpy as np

from mvlib.analysis import explain
from mvlib.model import blocks, kerasio
from mvlib.model import parameter_counts
from mvlib.notebook import block_model, block_report, format_table, layer_table, show_source

# %% [markdown]
# ## 1. Convolution block
#
# The network opens with a 3x3 stride-2 convolution (the "stem", 3 → 16 channels), and most later
# convolutions in the paper have the same form: **convolution without bias → BatchNorm → SiLU**. The bias
# would be redundant: BatchNorm subtracts the mean and adds its own learned shift β. Two leave a part out:
# the MV2 block's 1x1 projection has no SiLU (section 2), and the MobileViT block's 1x1 projection to the
# transformer's width has neither BatchNorm nor SiLU (section 6).
#
# The keras-io example's `conv_block` is a plain `Conv2D` *with* bias and a swish activation (swish =
# SiLU), and no BatchNorm. Same shapes, slightly different parameters: 3·3·3·16 = 432 weights in
# both, plus 16 biases (keras-io) or 16 γ + 16 β (+ 32 moving statistics) for BatchNorm (paper).
#
# The paper's weights start as ml-cvnets starts them in PyTorch (Kaiming-normal convolutions, normal(0.02)
# linears), from a new initializer for every layer: a Keras initializer draws its seed once, when it is
# created, so one instance shared by all layers would start every layer of the same shape from identical
# weights. Keras and PyTorch count a depthwise kernel's fans differently, hence the `depthwise` switch
# (`tests/test_model.py` checks every kernel's spread against PyTorch's own initializers).

# %%
show_source(blocks.paper_conv_init, blocks.paper_dense_init, blocks.conv_bn_act, kerasio.conv_block)

# %%
stem = block_model(blocks.conv_bn_act, (256, 256, 3), name="stem", filters=16, kernel_size=3, strides=2)
stem_kerasio = block_model(kerasio.conv_block, (256, 256, 3), name="stem_kerasio", filters=16, kernel_size=3, strides=2)
print(layer_table(stem))
print()
print(layer_table(stem_kerasio))
print()
print(block_report(stem))
print(block_report(stem_kerasio))

# %% [markdown]
# The paper's stride-2 convolution has an extra `ZeroPadding2D` layer. Section 3 explains why.
#
# ## 2. MobileNetV2 inverted residual (MV2)
#
# MV2 is the workhorse of the cheap, high-resolution stages: **1x1 expand** (×t channels; t = 2 for
# XXS and keras-io, 4 for XS and S) → **3x3 depthwise** (the only spatial mixing; stride 1 or 2) →
# **1x1 project** back down, *without* an activation (a "linear bottleneck": a nonlinearity on the
# low-dimensional output would destroy information that the residual path carries). When the block keeps
# the resolution and the channel count (stride 1, C_in = C_out) the input is added back: that is the
# residual.
#
# Depthwise convolution is what makes the block cheap: 9 weights per channel instead of 9·C. For
# C = 16 → 32 → 16 that is 16·32 + 9·32 + 32·16 = 1,312 weights, plus 2·(32 + 32 + 16) = 160 BatchNorm
# γ/β: 1,472 trainable parameters.

# %%
show_source(blocks.inverted_residual)

# %%
mv2 = block_model(blocks.inverted_residual, (128, 128, 16), name="mv2_residual", expanded_channels=32, output_channels=16)
print(layer_table(mv2))

# %% [markdown]
# Stride 2, or a change of width (here 16 → 24 channels at stride 2, the first block of stage 2), and the
# `Add` disappears: input and output no longer have the same shape. The keras-io example's version, for
# comparison (`correct_pad` is section 3's subject):

# %%
show_source(kerasio.inverted_residual_block, kerasio.correct_pad)

# %%
mv2_down = block_model(blocks.inverted_residual, (128, 128, 16), name="mv2_stride2", expanded_channels=32, output_channels=24, strides=2)
mv2_kerasio = block_model(kerasio.inverted_residual_block, (128, 128, 16), name="mv2_residual_kerasio", expanded_channels=32, output_channels=16)
mv2_down_kerasio = block_model(kerasio.inverted_residual_block, (128, 128, 16), name="mv2_stride2_kerasio", expanded_channels=32, output_channels=24, strides=2)
for model in (mv2, mv2_down, mv2_kerasio, mv2_down_kerasio):
    has_add = any(layer.name.endswith("_add") for layer in model.layers)
    print(f"{block_report(model)}, residual: {has_add}")

# %% [markdown]
# The keras-io MV2 block has as many weights as the paper's, of the same shapes; it differs in how they
# start (Keras' Glorot-uniform default against Kaiming-normal), in BatchNorm's hyperparameters (Keras
# defaults: momentum 0.99, ε = 1e-3, against ml-cvnets' 0.9 and 1e-5) and in how it pads a stride-2
# depthwise convolution.
#
# ## 3. Stride-2 padding: symmetric (paper) vs `correct_pad` (keras-io)
#
# A 3x3 stride-2 convolution on an even-sized map needs one row and one column of padding in total.
# PyTorch (and so ml-cvnets, whose ImageNet weights `mvlib.model.convert` loads) pads **one pixel on every side** (`padding=1`), so
# output pixel *i* is centred on input pixel 2i. TensorFlow's `padding="same"` and keras-applications'
# `correct_pad` (which the keras-io example copies) pad **only bottom and right**, so output pixel *i* is
# centred on input pixel 2i + 1. The sampling grid moves by one pixel at each of the five stride-2 layers
# of the network: harmless when training from scratch, but Apple's pretrained weights only reproduce
# their logits with the padding they were trained with. That is why the paper blocks pad explicitly with
# `ZeroPadding2D(1)` followed by a `"valid"` convolution.
#
# We do not have to take this on trust. Feed each stride-2 MV2 block an 8x8 map that is zero except for
# one pixel and see which output pixels respond; doing that for every input pixel gives the window each
# output pixel reads (`mvlib.analysis.explain.impulse_windows`; BatchNorm at its initial state and no biases
# keep zeros at zero).

# %%
pad_paper = block_model(blocks.inverted_residual, (8, 8, 4), name="paper", expanded_channels=8, output_channels=4, strides=2)
pad_kerasio = block_model(kerasio.inverted_residual_block, (8, 8, 4), name="kerasio", expanded_channels=8, output_channels=4, strides=2)
windows = {
    "paper: symmetric padding": explain.impulse_windows(pad_paper),
    "keras-io: correct_pad": explain.impulse_windows(pad_kerasio),
}
pads = {"paper: symmetric padding": ((1, 1), (1, 1)), "keras-io: correct_pad": kerasio.correct_pad(np.zeros((1, 8, 8, 8)), 3)}
print(format_table(["block", "padding (top, bottom), (left, right)", "input rows read by output rows 0..3"], [[k, str(pads[k]), str(explain.rows_read(w))] for k, w in windows.items()]))

# %%
explain.plot_stride2_windows(windows, pads)
plt.show()

# %% [markdown]
# Grey cells are padding, dots the centres of the 4x4 output pixels, boxes the windows of the first and
# last output pixel. Both conventions read every input pixel; they disagree on *which* pixels are centres.
#
# ## 4. Attention in one screen
#
# A transformer layer lets every token of a sequence look at every other one. Each token x_i (a vector of
# width d) is projected three ways: a **query** q_i ("what am I looking for"), a **key** k_j ("what do I
# contain") and a **value** v_j ("what I pass on"). Token i's output is a weighted average of all values,
# the weights being how well its query matches each key:
#
# attention(Q, K, V) = softmax(Q Kᵀ / √d_head) V      (one row of weights per query; each row sums to 1)
#
# **Heads** split the width d into h slices of d/h and do this h times in parallel, each with its own
# projections, so one head can follow colour while another follows shape; their outputs are concatenated
# and projected back to d. The two matrix products Q Kᵀ (N x N scores) and the weighted sum with V are
# what costs N² -- the reason MobileViT attends over N = HW/4 tokens per sequence (notebook 02).
#
# Attention itself does not know where a token sits: permute the tokens and the outputs permute with them.
# ViT therefore adds a learned **positional embedding** to every token. MobileViT needs none: its 3x3
# convolutions before attention write each pixel's neighbourhood into its features (the zero padding at
# the borders included, so a token near an edge looks different), and fold puts every token back at the
# pixel it came from. Attention itself stays blind to order; where a token sits reaches it only through
# those convolutional features, as the paper argues. Here is the whole computation for
# 4 tokens of width 8 with 2 heads, in numpy:

# %%
rng = np.random.default_rng(0)
tokens, width, heads = 4, 8, 2
x = rng.normal(size=(tokens, width))
w_q, w_k, w_v = (rng.normal(size=(width, width)) / np.sqrt(width) for _ in range(3))
split = lambda m: m.reshape(tokens, heads, width // heads).transpose(1, 0, 2)  # (heads, tokens, d_head)  # noqa: E731
q, k, v = split(x @ w_q), split(x @ w_k), split(x @ w_v)
scores = q @ k.transpose(0, 2, 1) / np.sqrt(width // heads)  # (heads, tokens, tokens)
weights = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)  # softmax over the keys
out = (weights @ v).transpose(1, 0, 2).reshape(tokens, width)  # heads concatenated again
print("q, k, v per head:", q.shape, " scores:", scores.shape, " output:", out.shape)
print("each row of weights sums to 1:", np.allclose(weights.sum(-1), 1))

# %%
fig, axes = plt.subplots(1, heads, figsize=(6, 2.8))
for h, ax in enumerate(axes):
    ax.imshow(weights[h], cmap="viridis", vmin=0, vmax=1)
    ax.set(title=f"head {h}: softmax(QKᵀ/√{width // heads})", xlabel="key token j", ylabel="query token i",
           xticks=range(tokens), yticks=range(tokens))
fig.tight_layout()
plt.show()

# %% [markdown]
# Each head spreads its attention differently over the same 4 tokens. Keras' `MultiHeadAttention` does
# exactly this, with learned projections and biases, plus an output projection.
#
# ## 5. Transformer layer
#
# The paper's transformer is a standard **pre-norm** encoder layer on a sequence of N tokens of width d:
#
# x ← x + Dropout(MHA(LayerNorm(x))),  x ← x + Dropout(FFN(LayerNorm(x))),  FFN = Dense(2d, SiLU) → Dense(d).
#
# In XXS's first MobileViT stage, d = 64 with 4 heads of width 16, and the layer sees the 32x32 map as
# 4 sequences of N = 256 tokens (notebook 02 explains which 4). Parameters: attention 4·(d² + d) (Q, K,
# V and output projections with biases), FFN d·2d + 2d + 2d·d + d, two LayerNorms 2·2d; for d = 64:
# 16,640 + 16,576 + 256 = 33,472.

# %%
show_source(blocks.transformer_layer)

# %%
transformer = block_model(blocks.transformer_layer, (256, 64), name="transformer", num_heads=4, ffn_dim=128, dropout=0.05)
print(layer_table(transformer))
print()
print(block_report(transformer))
d = 64
print(f"by hand: {4 * (d * d + d) + (d * 2 * d + 2 * d) + (2 * d * d + d) + 2 * 2 * d:,}")

# %% [markdown]
# The keras-io example's transformer block takes the map as one 4-D tensor (B, 4, N, d) and uses 2 heads
# with `key_dim = d` each: every projection is 2d wide instead of d, so its attention has about twice
# the parameters. Its FFN applies swish after *both* Dense layers and dropout after each; attention has
# dropout 0.1 on its weights, and LayerNorm uses ε = 1e-6.

# %%
show_source(kerasio.transformer_block)

# %%
transformer_kerasio = block_model(kerasio.transformer_block, (4, 256, 64), name="transformer_kerasio", depth=1, projection_dim=64, num_heads=2)
print(layer_table(transformer_kerasio))
print()
print(block_report(transformer_kerasio))

# %% [markdown]
# ## 6. MobileViT block
#
# The MobileViT block processes a C-channel map at full resolution and returns C channels:
#
# 1. **local representation**: 3x3 conv C → C (BN, SiLU), then a plain 1x1 projection C → d;
# 2. **global representation**: *unfold* the H×W×d map into P = 4 sequences of N = HW/4 tokens, run L
#    transformer layers, a final LayerNorm, and *fold* back to H×W×d;
# 3. **fusion**: 1x1 conv d → C (BN, SiLU), concatenate with the block's input (2C channels), 3x3 conv
#    2C → C (BN, SiLU).
#
# The 3x3 convolution gives every token its neighbourhood; attention then connects tokens across the
# whole map. After one block, every output pixel depends on every input pixel, at the price of attention
# over N = HW/4 tokens rather than HW. The code, with the two layers that turn the map into sequences and
# back (notebook 02 takes `unfold` and `fold` apart):
#
# ```text
#   x (H, W, C) ──┬─ 3x3 conv C→C ─ 1x1 C→d ─ unfold ─ L x transformer ─ LayerNorm ─ fold ─ 1x1 d→C ─┐
#                 │                 local        (P=4, N=HW/4, d)   global            (H, W, d)       │
#                 └───────────────────────────── concat (H, W, 2C) ◄───────────────────────────────────┘
#                                                      └─ 3x3 conv 2C→C ─► y (H, W, C)
# ```

# %%
show_source(blocks.mobilevit_block, blocks.Unfold, blocks.Fold)

# %% [markdown]
# Here is XXS's first MobileViT block (C = 48, d = 64, L = 2) on its 32x32 input:

# %%
mvit = block_model(blocks.mobilevit_block, (32, 32, 48), name="mvit", dim=64, depth=2, num_heads=4, dropout=0.05)
print(layer_table(mvit))

# %% [markdown]
# `Unfold` stacks the 4 sequences of each image into the batch axis, so Keras' `MultiHeadAttention`, with
# its default `attention_axes`, attends within each sequence only. The table prints its output as
# (B, 256, 64) because Keras writes every unknown batch size as `B`; here that axis holds B·4 sequences.
#
# The keras-io block departs from the paper in more ways than its summary suggests:
#
# * its local 3x3 convolution goes straight from C to d channels (the paper keeps C, then projects);
# * its 1x1 projection d → d has a bias and a swish activation (the paper's C → d has neither);
# * its "unfold" is a `Reshape` to (B, 4, 256, 64), over which attention runs *globally*, across all
#   1,024 pixels (notebook 02), with 2 heads of width d instead of 4 of width d/4;
# * its transformer has dropout inside attention, swish after both FFN layers, LayerNorm ε = 1e-6, and
#   no final LayerNorm after the L layers;
# * its 3x3 fusion convolution outputs d = 64 channels instead of C = 48 (`projection_dim`), so the
#   next stage sees a wider map;
# * its convolutions have biases and no BatchNorm.

# %%
show_source(kerasio.mobilevit_block)

# %%
mvit_kerasio = block_model(kerasio.mobilevit_block, (32, 32, 48), name="mvit_kerasio", num_blocks=2, projection_dim=64, num_heads=2)
print(layer_table(mvit_kerasio))

# %% [markdown]
# ## 7. Side by side

# %%
pairs = [
    ("conv block (stem)", stem, stem_kerasio),
    ("MV2, residual", mv2, mv2_kerasio),
    ("MV2, stride 2", mv2_down, mv2_down_kerasio),
    ("transformer layer", transformer, transformer_kerasio),
    ("MobileViT block (L = 2)", mvit, mvit_kerasio),
]
rows = []
for label, paper, example in pairs:
    counts = ["{:,} ({:,})".format(*parameter_counts(m)) for m in (paper, example)]
    rows.append([label, str(paper.output.shape[1:]), counts[0], str(example.output.shape[1:]), counts[1]])
print(format_table(["block", "paper output", "paper params", "keras-io output", "keras-io params"], rows, align="llrlr"))

# %% [markdown]
# The MV2 blocks match weight for weight, and the convolution blocks differ only where keras-io has a bias
# and the paper a BatchNorm; keras-io's transformer and MobileViT blocks are 40-50% larger (the table above). Above all, the two compute differently: padding, normalisation, and
# how the transformer sees the map. Notebook 02 looks at that last point with pictures; notebook 03
# assembles the blocks into the full networks and counts their parameters and MACs stage by stage.
