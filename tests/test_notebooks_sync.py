"""The notebooks' mechanical conventions: .ipynb and .py twins agree, Colab cells follow mvlib.notebook.REPO,
and the committed outputs come from a clean top-to-bottom run.

nbval (``python -m pytest`` runs it on notebooks/*.ipynb) checks that the outputs are still what the code
produces; these tests check what nbval cannot: that the reviewed .py says the same as the executed .ipynb.
After editing a notebook, run ``jupytext --sync notebooks/*.ipynb`` (or the pre-commit hook), and
``python -m mvlib.notebook execute notebooks/NN_name.ipynb`` to refresh its outputs.
"""

import json
import re
from pathlib import Path

import jupytext
import pytest

from mvlib import notebook

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
IGNORE_OUTPUT = "nbval-ignore-output"


def cells(path):
    nb = jupytext.read(path)
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOK_DIR}"
    for path in NOTEBOOKS:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), f"{path.name}: name notebooks NN_snake_case.ipynb"


def test_every_py_has_a_notebook():
    for py in NOTEBOOK_DIR.glob("*.py"):
        assert py.with_suffix(".ipynb").exists(), f"{py.name} has no .ipynb twin: run `jupytext --sync {py}`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_ipynb_and_py_have_the_same_cells(path):
    py = path.with_suffix(".py")
    assert py.exists(), f"{path.name} has no .py twin: run `jupytext --sync {path}`"
    ipynb_cells, py_cells = cells(path), cells(py)
    for i, (a, b) in enumerate(zip(ipynb_cells, py_cells)):
        assert a == b, f"{path.name} and {py.name} differ at cell {i}: run `jupytext --sync {path}` (then re-execute)"
    assert len(ipynb_cells) == len(py_cells), f"{path.name} has {len(ipynb_cells)} cells, {py.name} {len(py_cells)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_badge_and_install_cell(path):
    nb = jupytext.read(path)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(notebook.colab_badge(path.name)), (
        f"{path.name} must start with the badge:\n{notebook.colab_badge(path.name)}"
    )
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].source.strip() == notebook.colab_install_source(), (
        f"{path.name}: the first code cell must be exactly mvlib.notebook.colab_install_source():\n"
        f"{notebook.colab_install_source()}"
    )
    assert IGNORE_OUTPUT in code[0].metadata.get("tags", [])
    assert code[1].source.startswith("import mvlib"), f"{path.name}: the second code cell must start with `import mvlib`"


def test_every_repository_link_uses_repo():
    """Badges, install cells and the notebooks' README name one repository: mvlib.notebook.REPO."""
    pattern = re.compile(r"(?:github\.com|colab\.research\.google\.com/github)/([\w.-]+/[\w.-]+)")
    files = NOTEBOOKS + [p.with_suffix(".py") for p in NOTEBOOKS] + [NOTEBOOK_DIR / "README.md"]
    for path in files:
        if path.exists():
            for repo in pattern.findall(path.read_text()):
                assert repo == notebook.REPO, f"{path.name} links to {repo}, not mvlib.notebook.REPO = {notebook.REPO}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_outputs_come_from_a_clean_run(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    counts = [c["execution_count"] for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: execution counts {counts}; re-execute top to bottom"
    for i, cell in enumerate(code):
        for out in cell["outputs"]:
            assert out["output_type"] != "error", f"{path.name}, code cell {i}: error output"
            assert not (out["output_type"] == "stream" and out["name"] == "stderr"), (
                f"{path.name}, code cell {i} wrote to stderr (TensorFlow logs? warnings?): {''.join(out['text'])[:300]}"
            )
            text = "".join(out.get("data", {}).get("text/plain", ""))
            assert not re.search(r"at 0x[0-9a-f]+>", text), f"{path.name}, code cell {i}: an object repr with an address"
