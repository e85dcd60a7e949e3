"""What the explanatory figures of notebooks 01-02 and 04 show, computed from the library's own functions.

* ``sequence_index_map`` / ``sequences_as_images``: which pixels form each of the P sequences, obtained
  by pushing a pixel-index image (or a picture) through ``mvlib.model.unfold.unfold`` or ``raster_reshape``;
* ``attention_reach``: which pixels one pixel can attend to, within its sequence or globally;
* ``impulse_windows``: which input pixels each output pixel of a (strided) block reads, found by feeding
  the block one impulse per input pixel -- used to compare symmetric and ``correct_pad`` padding;
* ``plot_*``: the matching matplotlib figures (each returns the Figure; the notebooks call ``plt.show()``).

Training (notebook 04):

* ``recipe_table`` / ``learning_rate_curve``: the recipes side by side and their learning-rate schedules;
* ``augmentation_draws``, ``examples_per_class``, ``class_counts``, ``images_at``: looking at the data;
* ``PressCtrlC``: a callback that interrupts training as a Ctrl-C does, during a given epoch;
* ``lag_batchnorm_statistics``: a copy of a model whose BatchNorm moving statistics lag behind its
  weights, as they do after a few hundred steps at momentum 0.99 -- the keras-io run's 19% plateau.
"""

from __future__ import annotations

import dataclasses
import os
import signal

import keras
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Rectangle

from mvlib.model.unfold import raster_reshape, unfold

LAYOUTS = ("unfold", "raster")
SEQUENCE_COLOURS = ListedColormap(["#4477AA", "#EE6677", "#228833", "#CCBB44"])

__all__ = [
    "coordinate_image",
    "sequence_index_map",
    "sequences_as_images",
    "attention_reach",
    "impulse_windows",
    "rows_read",
    "plot_index_maps",
    "plot_sequences",
    "plot_images",
    "plot_attention_reach",
    "plot_stride2_windows",
    "plot_attention_cost",
    "plot_stage_macs",
    "recipe_table",
    "learning_rate_curve",
    "plot_learning_rates",
    "augmentation_draws",
    "examples_per_class",
    "class_counts",
    "images_at",
    "PressCtrlC",
    "lag_batchnorm_statistics",
    "plot_prediction_counts",
]


def _to_sequences(x: np.ndarray, layout: str, patch: int = 2) -> np.ndarray:
    """(1, H, W, C) -> (P, N, C) with the paper's unfold or the keras-io raster reshape."""
    if layout == "unfold":
        seq = unfold(x, patch)
    elif layout == "raster":
        seq = raster_reshape(x, patch * patch)
    else:
        raise ValueError(f"unknown layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    return np.asarray(seq)[0]


def coordinate_image(height: int, width: int) -> np.ndarray:
    """An RGB image in [0, 255] whose colour encodes position: red grows down, green grows right."""
    r, c = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    return (255 * np.stack([r, c, 0.6 * (1 - r) * (1 - c) + 0.2], axis=-1)).astype("float32")


def sequence_index_map(height: int, width: int, layout: str = "unfold", patch: int = 2):
    """``(seq, pos)``: two (H, W) int arrays, the sequence each pixel lands in and its position there."""
    index = np.arange(height * width, dtype="float32").reshape(1, height, width, 1)
    seq = _to_sequences(index, layout, patch)[..., 0].astype(int)  # (P, N): pixel id at each slot
    sequence, position = np.empty(height * width, int), np.empty(height * width, int)
    for p in range(seq.shape[0]):
        sequence[seq[p]] = p
        position[seq[p]] = np.arange(seq.shape[1])
    return sequence.reshape(height, width), position.reshape(height, width)


def sequences_as_images(image: np.ndarray, layout: str = "unfold", patch: int = 2) -> list[np.ndarray]:
    """The P sequences of an (H, W, C) image, each reshaped into a picture of its N tokens.

    Paper unfold: sequence p is pixel (i, j) of every patch, an (H/patch, W/patch) image -- the whole
    scene at lower resolution, shifted by (i, j). Raster reshape: sequence p is rows
    ``[p*H/P, (p+1)*H/P)``, an (H/P, W) strip.
    """
    height, width = image.shape[:2]
    seq = _to_sequences(np.asarray(image, "float32")[None], layout, patch)
    shape = (height // patch, width // patch) if layout == "unfold" else (height // patch**2, width)
    return [s.reshape(shape + image.shape[2:]) for s in seq]


def attention_reach(height: int, width: int, pixel: tuple[int, int], layout: str = "unfold", attention: str = "within", patch: int = 2):
    """(H, W) bool: the pixels that ``pixel`` attends to.

    ``attention="within"``: attention inside each sequence (the paper; ``MultiHeadAttention`` on
    ``(B*P, N, d)``, or ``attention_axes=(2,)`` on ``(B, P, N, d)``). ``"global"``: over both axes of
    ``(B, P, N, d)``, Keras' default ``attention_axes=None`` -- every pixel, whatever the layout.
    """
    if attention == "global":
        return np.ones((height, width), bool)
    if attention != "within":
        raise ValueError(f"unknown attention {attention!r}; valid: within, global")
    sequence, _ = sequence_index_map(height, width, layout, patch)
    return sequence == sequence[pixel]


def impulse_windows(model, batch: int = 256) -> np.ndarray:
    """(out_h, out_w, in_h, in_w) bool: ``[i, j, r, c]`` is True when output pixel (i, j) changes in
    response to an impulse at input pixel (r, c) -- the input window each output pixel reads.

    Needs a block that maps an all-zero input to zero (no biases, BatchNorm at its initial state), so a
    response means the impulse is inside the window (random weights make an exact cancellation
    practically impossible).
    """
    _, height, width, channels = model.input.shape
    images = np.zeros((height * width, height, width, channels), "float32")
    images[np.arange(height * width), np.repeat(np.arange(height), width), np.tile(np.arange(width), height)] = 1.0
    zero = np.asarray(model(np.zeros((1, height, width, channels), "float32"), training=False))
    if np.abs(zero).max() > 0:
        raise ValueError("impulse_windows needs a block that maps zeros to zeros (no biases, fresh BatchNorm)")
    out = np.concatenate([np.asarray(model(images[i : i + batch], training=False)) for i in range(0, len(images), batch)])
    hit = np.abs(out).max(axis=-1) > 0  # (in_h*in_w, out_h, out_w)
    return hit.reshape(height, width, *hit.shape[1:]).transpose(2, 3, 0, 1)


def rows_read(windows: np.ndarray) -> list[list[int]]:
    """For each output row i, the input rows any output pixel of that row reads."""
    return [sorted(set(np.nonzero(windows[i])[1].tolist())) for i in range(windows.shape[0])]


# --- figures -------------------------------------------------------------------------------------------------


def plot_index_maps(maps: dict, numbers: bool = True, size: float = 3.2):
    """Colour each pixel by its sequence index; ``maps`` is ``{title: (H, W) int array}``."""
    fig, axes = plt.subplots(1, len(maps), figsize=(size * len(maps), size + 0.4), squeeze=False)
    for ax, (title, m) in zip(axes.flat, maps.items()):
        ax.imshow(m, cmap=SEQUENCE_COLOURS, vmin=-0.5, vmax=3.5)
        if numbers and m.size <= 256:
            for (r, c), v in np.ndenumerate(m):
                ax.text(c, r, str(v), ha="center", va="center", color="white", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def plot_sequences(rows: dict, size: float = 2.2):
    """One row of P small images per entry of ``rows`` (``{label: [image, ...]}``, images in [0, 255])."""
    labels = list(rows)
    columns = max(len(v) for v in rows.values())
    ratios = [max(im.shape[0] / im.shape[1] for im in rows[label]) for label in labels]  # row heights follow the images
    fig, axes = plt.subplots(
        len(labels), columns, figsize=(size * columns, size * sum(ratios) + 0.35 * len(labels)),
        squeeze=False, gridspec_kw={"height_ratios": ratios},
    )
    for r, label in enumerate(labels):
        for p, ax in enumerate(axes[r]):
            ax.axis("off")
            if p < len(rows[label]):
                im = rows[label][p]
                ax.imshow(np.clip(im, 0, 255).astype("uint8"))
                ax.set_title(f"{label}: seq {p}  {im.shape[0]}x{im.shape[1]}", fontsize=8)
    fig.tight_layout()
    return fig


def plot_images(images: dict, size: float = 3.0):
    """One row of titled images (``{title: image in [0, 255]}``), each with its size in the title."""
    fig, axes = plt.subplots(1, len(images), figsize=(size * len(images), size + 0.3), squeeze=False)
    for ax, (title, im) in zip(axes.flat, images.items()):
        ax.imshow(np.clip(im, 0, 255).astype("uint8"))
        ax.set_title(f"{title}  {im.shape[0]}x{im.shape[1]}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_attention_reach(reaches: dict, pixel: tuple[int, int], size: float = 3.2):
    """``reaches``: ``{title: (H, W) bool}``; the chosen pixel is marked with a star."""
    fig, axes = plt.subplots(1, len(reaches), figsize=(size * len(reaches), size + 0.5), squeeze=False)
    for ax, (title, reach) in zip(axes.flat, reaches.items()):
        ax.imshow(reach, cmap=ListedColormap(["#eeeeee", "#EE6677"]), vmin=0, vmax=1)
        ax.plot(pixel[1], pixel[0], marker="*", color="black", markersize=12)
        ax.set_title(f"{title}\n{int(reach.sum())} of {reach.size} pixels", fontsize=9)
        ax.set_xticks(np.arange(-0.5, reach.shape[1], 1), minor=True)
        ax.set_yticks(np.arange(-0.5, reach.shape[0], 1), minor=True)
        ax.grid(which="minor", color="white", linewidth=0.5)
        ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    fig.tight_layout()
    return fig


def _centres(windows: np.ndarray, axis: int) -> list[int]:
    """Centre row (axis 0) or column (axis 1) of each output's 3-wide window, edges included."""
    size = windows.shape[2 + axis]
    centres = []
    for i in range(windows.shape[axis]):
        w = windows[i] if axis == 0 else windows[:, i]
        hits = sorted(set(np.nonzero(w)[1 if axis == 0 else 2].tolist()))  # w: (other output axis, in_h, in_w)
        if len(hits) == 3:
            centres.append(hits[1])
        else:  # cut by the border: the missing row is padding
            centres.append(hits[0] if hits[0] == 0 else hits[-1] if hits[-1] == size - 1 else hits[1])
    return centres


def plot_stride2_windows(cases: dict, pads: dict, size: float = 3.6):
    """Where a 3x3 stride-2 conv samples an H x W map.

    ``cases``: ``{title: impulse_windows(...)}``; ``pads``: ``{title: ((top, bottom), (left, right))}``.
    Grey cells are padding, dots the window centres, boxes the windows of the first and last output.
    """
    fig, axes = plt.subplots(1, len(cases), figsize=(size * len(cases), size + 0.5), squeeze=False)
    for ax, (title, windows) in zip(axes.flat, cases.items()):
        _, _, height, width = windows.shape
        (top, bottom), (left, right) = pads[title]
        for r in range(-1, height + 1):
            for c in range(-1, width + 1):
                inside = 0 <= r < height and 0 <= c < width
                padded = (r == -1 and top) or (r == height and bottom) or (c == -1 and left) or (c == width and right)
                if inside or padded:
                    colour = "#dddddd" if not inside else "white"
                    ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, facecolor=colour, edgecolor="#999999", linewidth=0.5))
        rows, cols = _centres(windows, 0), _centres(windows, 1)
        ax.scatter([c for _ in rows for c in cols], [r for r in rows for _ in cols], color="black", s=12, zorder=3)
        for (i, j), colour in (((0, 0), "#EE6677"), ((len(rows) - 1, len(cols) - 1), "#4477AA")):
            r, c = rows[i], cols[j]
            ax.add_patch(Rectangle((c - 1.5, r - 1.5), 3, 3, fill=False, edgecolor=colour, linewidth=2.5, zorder=4))
        ax.set_xlim(-1.7, width + 0.7)
        ax.set_ylim(height + 0.7, -1.7)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(f"{title}\ncentres: rows {rows}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_attention_cost(costs: dict, size: tuple = (8.5, 3.4)):
    """Grouped bars of attention MACs per stage; ``costs`` is ``{label: attention_by_stage(model)}``.

    Left: the two attention matmuls (QK^T and AV); right: the Q/K/V/output projections.
    """
    labels = list(costs)
    stages = [r.stage for r in costs[labels[0]]]
    fig, axes = plt.subplots(1, 2, figsize=size)
    width = 0.8 / len(labels)
    for ax, (title, key) in zip(axes, (("QK^T + AV", "matmuls"), ("Q, K, V, output projections", "projections"))):
        for k, label in enumerate(labels):
            values = [getattr(r, key) / 1e6 for r in costs[label]]
            bars = ax.bar(np.arange(len(stages)) + (k - (len(labels) - 1) / 2) * width, values, width, label=label)
            ax.bar_label(bars, fmt="%.0f", fontsize=7)
        ax.set_xticks(np.arange(len(stages)), stages)
        ax.set_ylabel("million MACs per image")
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_stage_macs(summaries: dict, size: tuple = (8.5, 3.6)):
    """Stacked bars: per-image MACs of each stage, one bar per model (``{label: flops.stage_summary(model)}``)."""
    labels = list(summaries)
    stages = list(dict.fromkeys(r.stage for rows in summaries.values() for r in rows if r.macs))
    colours = plt.get_cmap("tab10")(np.arange(len(stages)) % 10)
    fig, ax = plt.subplots(figsize=size)
    bottom = np.zeros(len(labels))
    for stage, colour in zip(stages, colours):
        values = np.array([sum(r.macs for r in summaries[label] if r.stage == stage) / 1e6 for label in labels])
        ax.barh(labels, values, left=bottom, color=colour, label=stage)
        bottom += values
    for i, total in enumerate(bottom):
        ax.text(total, i, f" {total:,.0f} M", va="center", fontsize=8)
    ax.set_xlabel("million MACs per image at 256x256")
    ax.set_xlim(0, bottom.max() * 1.15)
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="stage", title_fontsize=8)
    fig.tight_layout()
    return fig


# --- training (notebook 04) ------------------------------------------------------------------------------


def _setting(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def recipe_table(recipes: dict) -> str:
    """The recipes side by side: one row per :class:`mvlib.training.recipes.Recipe` field, one column per recipe."""
    from mvlib.tables import format_table

    fields = [f.name for f in dataclasses.fields(next(iter(recipes.values()))) if f.name != "name"]
    rows = [[field] + [_setting(getattr(r, field)) for r in recipes.values()] for field in fields]
    return format_table(["setting", *recipes], rows, align="l" * (len(recipes) + 1))


def learning_rate_curve(recipe, steps_per_epoch: int):
    """``(epochs, lrs)``: the learning rate the recipe's optimizer uses at every step, ``epochs`` in
    fractional epochs (step / steps_per_epoch), read from :func:`mvlib.training.recipes.make_optimizer` itself."""
    from mvlib.training.recipes import make_optimizer

    optimizer = make_optimizer(recipe, steps_per_epoch)
    steps = np.arange(recipe.epochs * steps_per_epoch + 1)
    lrs = []
    for step in steps:
        optimizer.iterations.assign(int(step))
        lrs.append(float(keras.ops.convert_to_numpy(optimizer.learning_rate)))
    return steps / steps_per_epoch, np.array(lrs)


def plot_learning_rates(curves: dict, size: tuple = (7.0, 3.2)):
    """``curves``: ``{label: (epochs, learning rates)}`` (from :func:`learning_rate_curve` or a run's log)."""
    fig, ax = plt.subplots(figsize=size)
    for label, (x, y) in curves.items():
        ax.plot(x, y, label=label, marker="o" if len(x) < 40 else None, markersize=3)
    ax.set(xlabel="epoch", ylabel="learning rate", title="learning-rate schedules")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def augmentation_draws(image, mode: str, draws: int, image_size: int = 256, seed: int = 0) -> list[np.ndarray]:
    """``draws`` training views of one cached image (``image_size + 24`` square for the pipelines) under
    ``mvlib.data.augment(..., mode, ...)``: draw ``i`` uses ``numpy.random.default_rng((seed, i))``."""
    from mvlib.data import augment

    image = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
    return [augment(image, image_size, mode, np.random.default_rng((seed, i))) for i in range(draws)]


def examples_per_class(dataset, num_classes: int, per_class: int):
    """``(images, labels)``: the first ``per_class`` images of every class in a dataset of
    ``(images, one-hot labels)`` batches, in round-robin order (example 0 of each class, then example 1,
    ...), so a grid with ``num_classes`` columns shows one class per column. Stops reading once it has them."""
    found: dict[int, list] = {c: [] for c in range(num_classes)}
    for images, one_hot in dataset:
        for image, label in zip(np.asarray(images), np.asarray(one_hot).argmax(axis=1)):
            if len(found[int(label)]) < per_class:
                found[int(label)].append(image)
        if all(len(v) == per_class for v in found.values()):
            break
    images, labels = [], []
    for i in range(per_class):
        for c in range(num_classes):
            if i < len(found[c]):
                images.append(found[c][i])
                labels.append(c)
    return np.stack(images), np.array(labels)


def class_counts(dataset, num_classes: int) -> np.ndarray:
    """How many examples of each class a dataset of ``(images, one-hot labels)`` batches holds (one pass)."""
    counts = np.zeros(num_classes, int)
    for _, one_hot in dataset:
        counts += np.bincount(np.asarray(one_hot).argmax(axis=1), minlength=num_classes)
    return counts


def images_at(dataset, indices) -> np.ndarray:
    """The images at positions ``indices`` (in dataset order, as in ``Evaluation``) of a batched dataset."""
    wanted = {int(i): k for k, i in enumerate(indices)}
    out = [None] * len(wanted)
    start = 0
    for images, _ in dataset:
        images = np.asarray(images)
        for i in range(start, start + len(images)):
            if i in wanted:
                out[wanted[i]] = images[i - start]
        start += len(images)
        if all(x is not None for x in out):
            break
    missing = [i for i, k in wanted.items() if out[k] is None]
    if missing:
        raise IndexError(f"the dataset has {start} images; no image at {missing}")
    return np.stack(out) if out else np.zeros((0,))


class PressCtrlC(keras.callbacks.Callback):
    """Sends this process SIGINT -- what Ctrl-C sends -- when the first step of epoch ``epoch`` (1-based) ends:
    ``mvlib.training.run.train`` then finishes that epoch, commits it and returns."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.pressed = epoch + 1 != self.epoch

    def on_train_batch_end(self, batch, logs=None):
        if not self.pressed:
            self.pressed = True
            os.kill(os.getpid(), signal.SIGINT)


def lag_batchnorm_statistics(model: keras.Model, keep: float) -> keras.Model:
    """A copy of ``model`` whose BatchNorm moving statistics still hold ``keep`` of their initial values.

    Every BatchNormalization layer's moving mean and variance become
    ``keep * initial + (1 - keep) * trained`` (initial: the layer's initializers, mean 0 and variance 1);
    all other weights are copied unchanged and ``model`` itself is not modified. An exponential moving
    average with momentum ``m`` keeps ``m**n`` of its starting value after ``n`` updates, so
    ``keep = 0.99**52`` is what is left after one 52-step epoch at Keras' default momentum. (It models the
    averages as if every batch had produced the final statistics; in a real run those move too.)
    """
    if not 0.0 <= keep <= 1.0:
        raise ValueError(f"keep must be in [0, 1], got {keep!r}")
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for layer in clone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            for variable, initializer in (
                (layer.moving_mean, layer.moving_mean_initializer),
                (layer.moving_variance, layer.moving_variance_initializer),
            ):
                initial = keras.ops.convert_to_numpy(initializer(variable.shape, variable.dtype))
                trained = keras.ops.convert_to_numpy(variable)
                variable.assign((keep * initial + (1.0 - keep) * trained).astype(trained.dtype))
    return clone


def plot_prediction_counts(evaluations: dict, size: tuple = (8.5, 3.2)):
    """Grouped bars: how often each class is predicted, per ``{label: mvlib.training.evaluate.Evaluation}``, with
    the true class counts of the first evaluation as outlines; the legend gives each one's accuracy."""
    labels = list(evaluations)
    first = evaluations[labels[0]]
    names = first.class_names
    x = np.arange(len(names))
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=size)
    for k, label in enumerate(labels):
        e = evaluations[label]
        counts = np.bincount(e.predictions, minlength=len(names))
        ax.bar(x + (k - (len(labels) - 1) / 2) * width, counts, width, label=f"{label}: top-1 {e.accuracy:.1%}")
    ax.bar(x, np.bincount(first.labels, minlength=len(names)), 0.85, fill=False, edgecolor="black",
           linestyle="--", label="true class counts")
    ax.set_xticks(x, names)
    ax.set_ylabel("images predicted as")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
