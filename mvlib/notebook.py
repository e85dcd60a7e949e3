"""Support for the numbered notebooks: repository URL and Colab, quick mode, small reporting helpers.

Conventions every notebook follows (tests/test_notebooks_sync.py checks the mechanical ones):

* a markdown cell with the Colab badge (``colab_badge(file)``) first, then the Colab install cell
  (exactly ``colab_install_source()``, tagged ``nbval-ignore-output``), then a cell that starts with
  ``import mvlib`` (it silences TensorFlow's C++ start-up chatter, so it must come before TF/Keras);
* ``quick_mode()`` (``MVLIB_QUICK=1``, set by the root ``conftest.py`` under pytest) shrinks only
  steps, epochs and example counts -- never image size, variant or class count -- so every cell nbval
  compares prints the same thing in quick and in full mode; cells whose output legitimately varies
  (timings, training logs, versions, which data was found) carry the tag ``nbval-ignore-output``;
* plotting cells end with ``plt.show()``, so the only text nbval sees is ``<Figure size ... with N Axes>``;
  figures made of photos go through ``show_jpeg(fig)`` instead (a PNG of photos bloats the notebook).

``python -m mvlib.notebook execute notebooks/01_building_blocks.ipynb ...`` re-executes notebooks (cells
from the more recently edited twin, full mode unless ``--quick``) and writes both files of each pair.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np

from mvlib.tables import format_table

__all__ = [
    "REPO",
    "REPO_URL",
    "PIP_SPEC",
    "colab_url",
    "colab_badge",
    "colab_install_source",
    "quick_mode",
    "by_mode",
    "block_model",
    "format_table",
    "layer_table",
    "block_report",
    "architecture_facts",
    "example_photo",
    "show_jpeg",
    "show_source",
    "execute",
]

# The one place that names the repository (badges, the Colab install cell and the docs follow it).
REPO = "mobilevit-keras/mobilevit-teaching"
BRANCH = "main"
REPO_URL = f"https://github.com/{REPO}"
# Colab has TensorFlow and Keras already; the package brings what else the notebooks need (LiteRT for 05)
# and leaves Colab's TensorFlow alone.
PIP_SPEC = f"mvlib[litert] @ git+{REPO_URL}"
NOTEBOOK_DIR = "notebooks"

# --- Colab ----------------------------------------------------------------------------------------------


def colab_url(notebook: str) -> str:
    """``01_building_blocks.ipynb`` -> the URL that opens it from GitHub in Colab."""
    return f"https://colab.research.google.com/github/{REPO}/blob/{BRANCH}/{NOTEBOOK_DIR}/{Path(notebook).name}"


def colab_badge(notebook: str) -> str:
    """The markdown badge line a notebook starts with."""
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(notebook)})"


def colab_install_source() -> str:
    """The notebooks' first code cell, verbatim. It cannot import mvlib (not installed yet on Colab), so it
    spells the pip spec out; the sync test keeps it equal to this function's output."""
    return (
        "# On Colab, install this repository's package first (elsewhere: `pip install -e .` in a clone).\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        "    import subprocess\n"
        "\n"
        f'    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "{PIP_SPEC}"], check=True)'
    )


# --- quick mode -------------------------------------------------------------------------------------------


def quick_mode() -> bool:
    """True when ``MVLIB_QUICK`` is "1"/"true"/"yes"/"on" (pytest's root conftest sets "1" by default)."""
    return os.environ.get("MVLIB_QUICK", "0").strip().lower() in {"1", "true", "yes", "on"}


def by_mode(full, quick):
    """``full`` normally, ``quick`` in quick mode: ``epochs = by_mode(30, 1)``. Only for steps, epochs and
    example counts -- never for anything a compared cell prints (shapes, parameter counts)."""
    return quick if quick_mode() else full


# --- small reporting helpers ------------------------------------------------------------------------------


def block_model(builder, input_shape, *, name: str, **kwargs) -> keras.Model:
    """Wrap one ``mvlib.model.blocks`` builder in a ``keras.Model`` so it can be summarised and counted.

    ``block_model(blocks.inverted_residual, (64, 64, 16), name="mv2", expanded_channels=32,
    output_channels=16)`` -- the builder's layers are named ``mv2_...``.
    """
    inputs = keras.Input(tuple(input_shape), name=f"{name}_input")
    return keras.Model(inputs, builder(inputs, name=name, **kwargs), name=name)


def _shape(tensor) -> str:
    return "(" + ", ".join("B" if d is None else str(d) for d in tensor.shape) + ")"


def layer_table(model: keras.Model, prefix: str = "") -> str:
    """Layer name, type, output shape and parameter count of every layer (or those whose name starts
    with ``prefix``), in graph order; ``B`` is the batch axis. A compact stand-in for ``model.summary()``,
    whose width depends on the terminal."""
    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer) or not layer.name.startswith(prefix):
            continue
        outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
        rows.append([layer.name, type(layer).__name__, ", ".join(_shape(t) for t in outputs), layer.count_params()])
    return format_table(["layer", "type", "output shape", "params"], rows, align="lllr")


def block_report(model: keras.Model) -> str:
    """One line: ``name: (B, 256, 256, 3) -> (B, 128, 128, 16), 496 params (464 trainable)``."""
    from mvlib.model import parameter_counts

    total, trainable = parameter_counts(model)
    return f"{model.name}: {_shape(model.input)} -> {_shape(model.output)}, {total:,} params ({trainable:,} trainable)"


def _values(values) -> str:
    values = list(dict.fromkeys(values))  # distinct, in model order
    return ", ".join(str(v) for v in values) if values else "-"


def architecture_facts(model: keras.Model) -> dict[str, str]:
    """What a model's layers say about its design, read from the layers themselves (not from a config).

    Keys: convolutions (how many have a bias), BatchNorm (count, momentum, epsilon), activations,
    stride-2 padding, how feature maps become sequences, attention (heads x key_dim, attention axes,
    dropout), LayerNorm epsilon, dropout rates in the transformers and before the classifier.
    """
    L = keras.layers
    layers = model.layers
    convs = [x for x in layers if isinstance(x, (L.Conv2D, L.DepthwiseConv2D))]
    bns = [x for x in layers if isinstance(x, L.BatchNormalization)]
    mhas = [x for x in layers if isinstance(x, L.MultiHeadAttention)]
    acts = [x.activation.__name__ for x in layers if isinstance(x, (L.Activation, L.Conv2D, L.DepthwiseConv2D, L.Dense))]
    strided = [x for x in convs if max(x.strides) > 1]
    pads = [tuple(map(tuple, x.padding)) for x in layers if isinstance(x, L.ZeroPadding2D)]
    same = sum(x.padding == "same" for x in strided)
    padding = [f"{pads.count(p)} x ZeroPadding2D {p}" for p in dict.fromkeys(pads)] + ([f'{same} x padding="same"'] if same else [])
    sequences = sorted({type(x).__name__ for x in layers if type(x).__name__ in ("Unfold", "Reshape")})
    drops = [x for x in layers if isinstance(x, L.Dropout)]
    head_drop = [x.rate for x in drops if x.name.startswith("head")]
    return {
        "convolutions (with bias)": f"{len(convs)} ({sum(bool(x.use_bias) for x in convs)})",
        "BatchNorm layers": str(len(bns)),
        "BatchNorm momentum / epsilon": f"{_values(x.momentum for x in bns)} / {_values(x.epsilon for x in bns)}",
        "activations": _values(a for a in acts if a != "linear"),
        "stride-2 convolutions: padding": f"{len(strided)}: " + (", ".join(padding) or "-"),
        "map -> sequences": _values(sequences),
        "attention heads x key_dim": _values(f"{x.num_heads} x {x.key_dim}" for x in mhas),
        "attention_axes (first attention's input)": f"{tuple(mhas[0].attention_axes)} of {_shape(mhas[0].input[0])}" if mhas else "-",
        "dropout inside attention": _values(x.dropout for x in mhas),
        "LayerNorm epsilon": _values(x.epsilon for x in layers if isinstance(x, L.LayerNormalization)),
        "transformer dropout rates": _values(x.rate for x in drops if not x.name.startswith("head")),
        "classifier dropout": _values(head_drop) if head_drop else "none",
    }


class Source:
    """Python source shown in a notebook: highlighted HTML in Jupyter, the plain text everywhere else.

    The plain text is also what nbval compares, so a notebook whose stored output shows code that has since
    changed in ``mvlib`` fails its test until it is re-executed: the code a reader sees is the code that runs.
    """

    def __init__(self, text: str, title: str):
        self.text, self.title = text, title

    def __repr__(self) -> str:
        return f"# {self.title}\n{self.text}"

    def _repr_html_(self) -> str:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        formatter = HtmlFormatter(noclasses=True, style="default")
        caption = f'<div style="font-family:monospace;color:#666;margin-bottom:2px"># {self.title}</div>'
        return caption + highlight(self.text, PythonLexer(), formatter)


def show_source(*objects) -> Source:
    """The source code of functions or classes from ``mvlib``, as it is in the package (one source of truth).

    ``show_source(blocks.conv_bn_act)`` renders the function in the notebook, with the module it lives in;
    several objects are shown one after the other; a module is shown whole.
    """
    import inspect

    parts, titles = [], []
    for obj in objects:
        parts.append(inspect.getsource(obj).rstrip())
        module = inspect.getmodule(obj).__name__
        titles.append(module if inspect.ismodule(obj) else f"{module}.{obj.__qualname__}")
    return Source("\n\n\n".join(parts) + "\n", ", ".join(titles))


def show_jpeg(fig, quality: int = 85, dpi: int = 100):
    """Display a figure of photos as a JPEG and close it: a fraction of a PNG's size in the committed
    notebook. Its text output is a fixed ``<IPython.core.display.Image object>``, so nbval is satisfied."""
    import io

    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    buffer = io.BytesIO()
    fig.savefig(buffer, format="jpeg", dpi=dpi, pil_kwargs={"quality": quality})
    plt.close(fig)
    display(Image(data=buffer.getvalue(), format="jpeg"))


# --- data ------------------------------------------------------------------------------------------------


def load_data(**kwargs):
    """``mvlib.data.load_flowers("auto", **kwargs)`` -- or, where no real photos can be had (offline, no
    photo folder), the project's generated synthetic set, announced in one line, so that a notebook still
    runs top to bottom (in CI, say). Its ``describe()`` then says SYNTHETIC too."""
    from mvlib import data

    try:
        return data.load_flowers("auto", **kwargs)
    except data.DataSourceError as e:
        print(f"{str(e).splitlines()[0]} -- using the SYNTHETIC set instead (mvlib.data.make_synthetic_flowers)")
        return data.load_flowers("synthetic", **kwargs)


# --- example image -----------------------------------------------------------------------------------------


def example_photo(image_size: int = 256, class_name: str = "sunflowers", index: int = 0):
    """One picture to look at: ``(float32 (image_size, image_size, 3) in [0, 255], description)``.

    Where from, in order: the ``index``-th photo (sorted by file name) of ``class_name`` in
    ``mvlib.data.default_data_dir()`` (offline copy of tf_flowers); else, when tensorflow-datasets can
    deliver tf_flowers (online, e.g. on Colab), its ``index``-th ``class_name`` image; else a generated
    image from ``make_synthetic_flowers`` -- and the description says so. Resized to ``image_size`` as the
    validation pipeline does.
    """
    from mvlib import data
    from mvlib.data import flowers

    folder = flowers.default_data_dir() / class_name
    files = sorted(p for p in folder.glob("*") if p.is_file() and not p.name.startswith(".")) if folder.is_dir() else []
    if files:
        path = files[index % len(files)]
        # The data folder's own name only: a notebook's output should not carry one machine's paths.
        return data.load_image(path, image_size), f"photo {folder.parent.name}/{class_name}/{path.name}"
    if flowers.tfds_available():
        import tensorflow_datasets as tfds

        ds, info = tfds.load(flowers.TFDS_NAME, split="train", as_supervised=True, with_info=True)
        names = info.features["label"].names
        target = names.index(class_name) if class_name in names else 0
        for image, _ in tfds.as_numpy(ds.filter(lambda im, lb: lb == target).skip(index).take(1)):
            return data.resize(image, image_size).astype(np.float32), f"tf_flowers ({names[target]}, image {index}) from tensorflow-datasets"
    root = data.make_synthetic_flowers()
    synthetic_class = class_name if (root / class_name).is_dir() else flowers.SYNTHETIC_CLASSES[0]
    path = sorted((root / synthetic_class).glob("*.jpg"))[index]
    note = f"SYNTHETIC image {synthetic_class}/{path.name} (no photos at {flowers.default_data_dir()})"
    return data.load_image(path, image_size), note


# --- executing notebooks -------------------------------------------------------------------------------------


def execute(paths, quick: bool = False, timeout: int = 1800) -> None:
    """Re-execute notebooks and write both files of each pair.

    The cells come from the more recently modified of ``NN_name.py`` and ``NN_name.ipynb`` (as
    ``jupytext --sync`` decides); they run top to bottom in a fresh kernel whose working directory is the
    notebook's folder and whose ``MVLIB_QUICK`` is ``1`` or ``0`` as asked. Outputs with execution counts
    1, 2, ... go into the ``.ipynb``; no timing metadata is recorded. Stops at the first error (both files
    are then left unchanged).
    """
    import jupytext
    from nbclient import NotebookClient

    for path in paths:
        path = Path(path)
        py, ipynb = path.with_suffix(".py"), path.with_suffix(".ipynb")
        source = ipynb if ipynb.exists() and (not py.exists() or ipynb.stat().st_mtime > py.stat().st_mtime) else py
        nb = jupytext.read(source)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nb.metadata.setdefault("kernelspec", {"display_name": "Python 3", "language": "python", "name": "python3"})
        saved = os.environ.get("MVLIB_QUICK")
        os.environ["MVLIB_QUICK"] = "1" if quick else "0"
        try:
            NotebookClient(
                nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(py.parent)}}, record_timing=False
            ).execute()
        finally:
            if saved is None:
                os.environ.pop("MVLIB_QUICK", None)
            else:
                os.environ["MVLIB_QUICK"] = saved
        jupytext.write(nb, ipynb)
        jupytext.write(nb, py, fmt="py:percent")
        print(f"executed {ipynb} ({'quick' if quick else 'full'} mode)")


def _main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mvlib.notebook", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("execute", help="re-execute notebooks top to bottom, write .ipynb + .py")
    p.add_argument("paths", nargs="+")
    p.add_argument("--quick", action="store_true", help="MVLIB_QUICK=1 (default: full mode)")
    args = parser.parse_args(argv)
    execute(args.paths, quick=args.quick)


if __name__ == "__main__":
    _main()
