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
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for label, rows in histories.items():
        epochs = [r["epoch"] for r in rows]
        for ax, key in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            line, = ax.plot(epochs, [r[key] for r in rows], "--", alpha=0.7, label=f"{label} train")
            ax.plot(epochs, [r[f"val_{key}"] for r in rows], color=line.get_color(), label=f"{label} val")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="top-1 accuracy", title="accuracy", ylim=(0, 1))
    ax_acc.legend(fontsize=8)
    fig.tight_layout()
    return fig


def show_images(images, titles=None, columns: int = 6, size: float = 2.0):
    """A grid of images given as float [0, 255] or uint8 arrays."""
    images = [np.clip(np.asarray(im), 0, 255).astype("uint8") for im in images]
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows + 0.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, im in enumerate(images):
        axes.flat[i].imshow(im)
        if titles is not None:
            axes.flat[i].set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig
