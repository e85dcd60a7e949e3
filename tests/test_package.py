"""The package's shape: no import cycles between mvlib's modules, and no TensorFlow import under JAX."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mvlib"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported_modules(path: Path) -> set[str]:
    """Every ``mvlib`` module or package that ``path`` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mvlib"):
            for alias in node.names:  # ``from mvlib.model import blocks`` imports the module mvlib.model.blocks
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("mvlib")}
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A list of modules forming a cycle, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt, path + [nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles_in_mvlib():
    graph = {name: imported_modules(path) - {name} for name, path in MODULES.items()}
    assert graph["mvlib.training.pretrained"] >= {"mvlib.model", "mvlib.training.run"}
    assert "mvlib.data" in graph["mvlib.notebook"]  # the parser sees function-level imports too
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_jax_backend_imports_no_tensorflow():
    pytest.importorskip("jax")
    code = ("import sys, mvlib.model, mvlib.data, mvlib.training.run, mvlib.training.pretrained, mvlib.training.evaluate, mvlib.litert.runtime, mvlib.cli; "
            "import keras; print(keras.backend.backend(), 'tensorflow' in sys.modules)")
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.stdout.split() == ["jax", "False"], out.stderr[-2000:]


def test_export_under_jax_says_what_to_do():
    pytest.importorskip("jax")
    code = ("import mvlib, keras\nfrom mvlib.litert.export import export_litert\n"
            "model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5)])\n"
            "try:\n    export_litert(model, 'x.tflite', 'float32')\n"
            "except ImportError as e:\n    print('ImportError:', e)\n")
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert "KERAS_BACKEND=tensorflow" in out.stdout, out.stdout + out.stderr[-2000:]


JAX_MODEL = """
import sys, numpy as np, keras
from mvlib.model import create_mobilevit, parameter_counts
model = create_mobilevit("xxs", 5, 64)
print("xxs", *parameter_counts(model))
x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
model.save_weights(sys.argv[1])
np.save(sys.argv[2], model.predict_on_batch(x))  # jitted: eager JAX would compile op by op
"""


def test_models_are_the_same_on_jax_and_weights_move_between_backends(tmp_path):
    """The JAX-built model has the TensorFlow-built model's parameters, and weights saved under JAX give the
    same outputs in the TensorFlow-backend model (so a model trained on a GPU box ships like any other)."""
    pytest.importorskip("jax")
    import numpy as np

    import mvlib  # noqa: F401
    from mvlib.model import create_mobilevit, parameter_counts

    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    weights, outputs = tmp_path / "jax.weights.h5", tmp_path / "out.npy"
    out = subprocess.run([sys.executable, "-c", JAX_MODEL, str(weights), str(outputs)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    counts = {line.split()[0]: tuple(map(int, line.split()[1:])) for line in out.stdout.splitlines()}
    assert counts == {"xxs": parameter_counts(create_mobilevit("xxs", 5, 64))}
    model = create_mobilevit("xxs", 5, 64)
    model.load_weights(weights)
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(model(x, training=False)), np.load(outputs), atol=1e-5)
