"""Plots shared by the notebooks and the CLI. Every function returns the matplotlib Figure."""

from __future__ import annotations

import matplotlib

if not matplotlib.get_backend().lower().startswith(("module://", "nbagg", "qt", "tk", "macosx", "gtk", "wx")):
    matplotlib.use("Agg")  # headless CLI runs: write files, never try to open a window
import matplotlib.pyplot as plt
import numpy as np


def plot_confusion_matrix(evaluation, title: str = "Confusion matrix (validation)"):
    c = evaluation.confusion
    names = evaluation.class_names
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2, 1.1 * len(names) + 1.5))
    ax.imshow(c / np.maximum(1, c.sum(axis=1, keepdims=True)), cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, str(c[i, j]), ha="center", va="center", color="white" if i == j else "black")
    ax.set(xticks=range(len(names)), yticks=range(len(names)), xticklabels=names, yticklabels=names,
           xlabel="predicted", ylabel="true", title=f"{title}\ntop-1 {evaluation.accuracy:.1%}")
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
    fig.tight_layout()
    return fig


def plot_history(histories: dict[str, list[dict]]):
    """Loss and accuracy curves; ``histories`` maps a run label to its list of per-epoch rows."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for label, rows in histories.items():
        epochs = [r["epoch"] for r in rows]
        for ax, key in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            line, = ax.plot(epochs, [r[key] for r in rows], "--", alpha=0.7)
            ax.plot(epochs, [r[f"val_{key}"] for r in rows], color=line.get_color(), label=label if ax is ax_acc else None)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="top-1 accuracy", title="accuracy", ylim=(0, 1))
    # one entry per run, below the plots where it hides no curve; the line style says train or val
    fig.legend(loc="outside lower center", ncols=2, fontsize=8, title="dashed: training split; solid: validation split",
               title_fontsize=8)
    return fig


def show_images(images, titles=None, columns: int = 6, size: float = 2.0):
    """A grid of images given as float [0, 255] or uint8 arrays."""
    images = [np.clip(np.asarray(im), 0, 255).astype("uint8") for im in images]
    rows = -(-len(images) // columns)
    title_lines = max((str(t).count("\n") + 1 for t in titles), default=0) if titles is not None else 0
    # room for the titles: ~0.17 in per line of 8-pt text, so multi-line titles are not clipped
    fig, axes = plt.subplots(rows, columns, figsize=(size * columns, rows * (size + 0.17 * title_lines + 0.1)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, im in enumerate(images):
        axes.flat[i].imshow(im)
        if titles is not None:
            axes.flat[i].set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig


def plot_exports(rows, threads: int = 1):
    """Size and latency of each LiteRT export, from the rows of ``mvlib.litert.measure.measure_with_baseline`` (or
    ``measure_exports``): one horizontal bar per file (the Keras rows, which have neither, are left out),
    the median latency with ``threads`` threads and a whisker to its 90th percentile. Rows marked
    ``"baseline"`` are drawn in grey, so the reference stands apart."""
    files = [r for r in rows if r.get("size_mb") is not None]
    labels = [r["file"].replace(".tflite", "") for r in files]
    colors = ["0.65" if r.get("baseline") else "C0" for r in files]
    median = [r.get(f"latency_{threads}t_median_ms") for r in files]
    p90 = [r.get(f"latency_{threads}t_p90_ms") for r in files]
    y = np.arange(len(files))[::-1]
    fig, (ax_size, ax_time) = plt.subplots(1, 2, figsize=(11, 0.45 * len(files) + 1.4), sharey=True)
    ax_size.barh(y, [r["size_mb"] for r in files], color=colors)
    for yi, r in zip(y, files):
        ax_size.text(r["size_mb"], yi, f" {r['size_mb']:.2f}", va="center", fontsize=8)
    ax_size.set(yticks=y, yticklabels=labels, xlabel="MB", title="file size")
    if all(m is not None for m in median):
        err = [[0] * len(files), [max(0.0, (q or m) - m) for m, q in zip(median, p90)]]
        ax_time.barh(y, median, color=colors, xerr=err, error_kw={"capsize": 3, "elinewidth": 1})
        for yi, m, q in zip(y, median, p90):
            ax_time.text(max(m, q or m), yi, f" {m:.0f}", va="center", fontsize=8)
    ax_time.set(xlabel="ms per image (batch 1)", title=f"latency, {threads} thread{'s' if threads > 1 else ''}: median (whisker: p90)")
    for ax in (ax_size, ax_time):
        ax.margins(x=0.18)
    fig.tight_layout()
    return fig
