# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mobilevit-keras/mobilevit-teaching/blob/main/notebooks/02_unfold_and_fold.ipynb)
#
# # 02 · Unfold and fold
#
# A transformer needs sequences; a MobileViT block has an H×W×d feature map. The paper's answer is
# **unfold**: cut the map into 2x2 patches and form P = 4 sequences, where sequence p collects *pixel p of
# every patch* (p = 2i + j for the pixel in row i, column j of its patch), each N = HW/4 tokens long.
# Attention runs **inside each sequence**: a pixel attends to the pixels at the same position in all
# other patches. Combined with the 3x3 convolution before it (which brings each pixel its neighbourhood),
# that reaches the whole map at a quarter of the cost of attention over all HW pixels. **Fold** is the
# exact inverse.
#
# The keras-io example writes `Reshape((4, H*W // 4, d))` instead, then applies Keras `MultiHeadAttention`
# with its default `attention_axes=None`. This notebook shows, with pictures, what each of the two does:
#
# 1. which pixels form each sequence, under unfold and under the raster reshape;
# 2. the same for a photo;
# 3. fold(unfold(x)) == x;
# 4. what `attention_axes` changes: which pixels one pixel can attend to;
# 5. what the attention costs, stage by stage.
#
# The code lives in `mvlib.model.unfold` (`unfold`, `fold`, `raster_reshape`, `raster_fold`) and
# `mvlib.analysis.explain` (the index maps and figures); tensors are channels-last (B, H, W, C).

# %% tags=["nbval-ignore-output"]
# On Colab, install this repository's package first (elsewhere: `pip install -e .` in a clone).
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "mvlib[litert] @ git+https://github.com/mobilevit-keras/mobilevit-teaching"], check=True)

# %%
import mvlib  # first: selects the TensorFlow backend and keeps TensorFlow's C++ start-up logs out of the cells

import keras
import matplotlib.pyplot as plt
import numpy as np

from mvlib.analysis import explain
from mvlib.model.blocks import Unfold
from mvlib.analysis.flops import attention_by_stage, count_macs
from mvlib.model import create_mobilevit
from mvlib.notebook import example_photo, format_table, show_jpeg, show_source
from mvlib.model.unfold import fold, raster_fold, raster_reshape, unfold

# %% [markdown]
# ## 1. Which pixels form a sequence
#
# Push an 8x8 map whose value is each pixel's index through `unfold` and through `raster_reshape`, and
# read back, for every pixel, the sequence it landed in (`explain.sequence_index_map`). First the code:
# both are nothing but reshapes and transposes. Follow the shapes in the comments for an 8x8 map
# (nh = nw = 4 patches per side, patch = 2):

# %%
show_source(unfold, fold, raster_reshape)

# %% [markdown]
# The raster reshape only re-reads memory in order, so its "sequence 0" is the first quarter of the rows.
# Unfold moves the within-patch position (i, j) to its own axis before flattening, so sequence p = 2i + j
# takes pixel (i, j) from every patch:

# %%
paper_seq, paper_pos = explain.sequence_index_map(8, 8, "unfold")
raster_seq, raster_pos = explain.sequence_index_map(8, 8, "raster")
print("sequence of each pixel, paper unfold:")
print(paper_seq)
print("sequence of each pixel, keras-io Reshape:")
print(raster_seq)

# %%
explain.plot_index_maps({"paper unfold: sequence index": paper_seq, "keras-io Reshape: sequence index": raster_seq})
plt.show()

# %% [markdown]
# Under unfold the four sequences are interleaved: each one is a regular grid with stride 2, covering the
# whole map. The raster reshape keeps memory order, so its "sequence" 0 is simply the top quarter of the
# rows (here rows 0-1): nothing is interleaved. Within a sequence, unfold keeps the patches in raster
# order, so position n is patch n:

# %%
print("position of each pixel within its sequence, paper unfold:")
print(paper_pos)

# %% [markdown]
# The same with a coordinate-coloured 32x32 image (red grows downwards, green to the right), each sequence
# reshaped into a picture of its tokens: every unfold sequence is the whole image at half resolution,
# shifted by its pixel offset in the patch; every raster sequence is one horizontal strip.

# %%
grid = explain.coordinate_image(32, 32)
explain.plot_sequences({"unfold": explain.sequences_as_images(grid, "unfold"), "Reshape": explain.sequences_as_images(grid, "raster")})
plt.show()

# %% [markdown]
# ## 2. A photo
#
# One flower photo, resized to the model's 256x256 as the validation split is: from the offline copy of
# tf_flowers (`mvlib.data.default_data_dir()`) when it exists, else through tensorflow-datasets when it can
# download (Colab), else a generated synthetic image. The cell below prints which.

# %% tags=["nbval-ignore-output"]
photo, where = example_photo(256)
print(where)

# %%
show_jpeg(explain.plot_images({"input": photo}, size=2.6))
show_jpeg(explain.plot_sequences({"unfold": explain.sequences_as_images(photo, "unfold"), "Reshape": explain.sequences_as_images(photo, "raster")}, size=2.4))

# %% [markdown]
# The four unfold sequences look almost identical: each is a 128x128 subsampling of the whole flower.
# In a MobileViT block these tokens are 3x3-convolved features, so a token already describes its 2x2
# patch's surroundings; a sequence is a complete, lower-resolution view of the map, and attention within
# it relates every region to every other. The four raster "sequences" are four 64x256 strips: within one
# strip, a token would only see its quarter of the image.
#
# ## 3. Fold inverts unfold, exactly
#
# Fold undoes unfold bit for bit (it is only reshapes and transposes, all of rank <= 5 so LiteRT runs them
# with builtin ops). The raster reshape has its own inverse; mixing the two scrambles the image.

# %%
x = photo[None]  # (1, 256, 256, 3)
seq = unfold(x)
print("unfold:", tuple(x.shape), "->", tuple(seq.shape))
print("fold(unfold(x)) == x:", bool(np.array_equal(np.asarray(fold(seq, 256, 256)), x)))
print("raster_fold(raster_reshape(x)) == x:", bool(np.array_equal(np.asarray(raster_fold(raster_reshape(x), 256, 256)), x)))
features = np.random.default_rng(0).normal(size=(2, 32, 32, 64)).astype("float32")  # a batch of stage-3 features
print("fold(unfold(features)) == features:", bool(np.array_equal(np.asarray(fold(unfold(features), 32, 32)), features)))
print("raster_fold(unfold(x)) == x:", bool(np.array_equal(np.asarray(raster_fold(seq, 256, 256)), x)))
print("Unfold layer (sequences stacked into the batch):", tuple(Unfold(2)(features).shape))

# %%
show_jpeg(explain.plot_images({"fold(unfold(x))": np.asarray(fold(seq, 256, 256))[0], "raster_fold(unfold(x))": np.asarray(raster_fold(seq, 256, 256))[0]}))

# %% [markdown]
# The wrong inverse writes the tokens back in raster order: sequence 0 (pixel (0, 0) of every patch, a
# 128x128 image) fills the top quarter, two of its 128-pixel rows per 256-pixel row, so each quarter
# shows two half-height copies side by side. Memory order is all the raster reshape keeps; the paper's
# unfold is a real regrouping of pixels.
#
# ## 4. What `attention_axes` changes
#
# Keras' `MultiHeadAttention` attends over the axes listed in `attention_axes`; every other axis except the
# last (features) is treated as batch. With the default `attention_axes=None` it attends over **all** axes
# between batch and features. The scores tensor shows this directly. Take a (1, 4, 16, 8) input: an 8x8
# map of width 8 split into 4 sequences of 16 tokens:

# %%
tokens = np.random.default_rng(0).normal(size=(1, 4, 16, 8)).astype("float32")  # (B, P, N, d)
rows = []
for axes in (None, (2,)):
    mha = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8, attention_axes=axes)
    _, scores = mha(tokens, tokens, return_attention_scores=True)
    keys = int(np.prod(scores.shape)) // (2 * 4 * 16)  # per head and query
    rows.append([f"attention_axes={axes}", str(mha.attention_axes), str(tuple(scores.shape)), keys])
paper = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8)  # the paper's layout: sequences in the batch axis
_, scores = paper(tokens.reshape(4, 16, 8), tokens.reshape(4, 16, 8), return_attention_scores=True)
rows.append(["(B*P, N, d), default axes", str(paper.attention_axes), str(tuple(scores.shape)), int(np.prod(scores.shape)) // (2 * 4 * 16)])
print(format_table(["input / setting", "attends over axes", "scores shape", "keys per query"], rows, align="lllr"))

# %% [markdown]
# With `attention_axes=None` on (B, 4, N, d), every query has 4·N = 64 keys: **global attention over all
# pixels**, and the 4-way split does nothing at all (which is also why the raster order of the keras-io
# `Reshape` does not matter there). The paper's layout, sequences stacked into the batch as `mvlib.model.blocks.Unfold`
# does (or `attention_axes=(2,)` on the 4-D tensor), gives each query N = 16 keys: its own sequence.
#
# For one pixel of an 8x8 map, the pixels it can attend to:

# %%
pixel = (5, 2)
explain.plot_attention_reach(
    {
        "paper: unfold, within sequence": explain.attention_reach(8, 8, pixel, "unfold", "within"),
        "keras-io: Reshape, axes=None (global)": explain.attention_reach(8, 8, pixel, "raster", "global"),
        "(hypothetical) Reshape, within sequence": explain.attention_reach(8, 8, pixel, "raster", "within"),
    },
    pixel,
)
plt.show()

# %% [markdown]
# Left: the paper. The starred pixel reaches one pixel in every 2x2 patch; since every token went through
# a 3x3 convolution first, each of those carries its patch's neighbourhood, so the block still sees the
# whole map.
# Middle: the keras-io block, plain global attention. Right: what the keras-io `Reshape` would give if
# attention *were* restricted to each sequence (`attention_axes=(2,)`): a band of rows, blind to
# the other three quarters of the image. The paper's interleaving is what makes the restricted attention
# still global.
#
# ## 5. What attention costs
#
# Attention MACs per image at 256x256, counted from the layers of the two full models
# (`mvlib.analysis.flops.attention_by_stage`; notebook 03 counts everything else). Per head, QK^T costs
# key_dim MACs per score and AV value_dim MACs per score; the number of scores is queries × keys per query.

# %%
models = {"paper (xxs)": create_mobilevit("xxs"), "keras-io": create_mobilevit("keras-io")}
costs = {label: attention_by_stage(model) for label, model in models.items()}
rows = []
for label, stages in costs.items():
    for s in stages:
        rows.append([s.stage, label, s.layers, f"{s.queries:,} x {s.keys_per_query:,}", f"{s.heads} x {s.key_dim}", s.qk, s.av, s.projections])
print(format_table(["stage", "model", "layers", "queries x keys", "heads x key_dim", "QK^T", "AV", "projections"], rows, align="llrllrrr"))

# %%
paper_cost, kerasio_cost = costs["paper (xxs)"], costs["keras-io"]
summary = []
for name in ("qk", "av", "projections", "total"):
    p, k = sum(getattr(s, name) for s in paper_cost), sum(getattr(s, name) for s in kerasio_cost)
    summary.append([name, p, k, f"{k / p:.1f}x"])
print(format_table(["attention MACs", "paper (xxs)", "keras-io", "keras-io / paper"], summary, align="lrrr"))
for label, model in models.items():
    total = sum(s.total for s in costs[label])
    print(f"{label}: attention is {total / count_macs(model):.0%} of the model's {count_macs(model) / 1e6:,.0f} M MACs")

# %%
explain.plot_attention_cost(costs)
plt.show()

# %% [markdown]
# The attention matmuls cost 8x more in the keras-io block, a factor that comes from two places:
#
# * **4x more keys per query**: global attention over 4N tokens instead of N within a sequence;
# * **2x wider heads in total**: 2 heads of `key_dim = d` (2d) instead of 4 heads of d/4 (d).
#
# The projections only pay the second factor (2x). Most of the difference is at stage 3, the 32x32 map,
# where N = 256 and the global attention matrix has 1,024² entries per head.
#
# The 8x ratio of QK^T + AV does not depend on the input size: both models' score counts grow as the
# square of the pixel count (at 512x512 each is 16x larger). What grows with the input is the *absolute*
# gap in MACs, and the share of the model's work that attention takes, since the convolutions only grow
# linearly with the pixel count.
