"""The trained weights that ship with the package, so notebooks, export and predict work without training.

``mvlib/pretrained/<name>/`` holds ``model.weights.h5`` (weights only, no optimizer state: ~3.8 MB for
XXS), ``history.csv`` (the run's per-epoch log) and ``run.json`` (the run's settings and results).
They are package data, so a ``pip install`` from the repository (Colab) carries them too.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
DEFAULT = "xxs-flowers"


def available() -> list[str]:
    """Names of the shipped weight sets."""
    return sorted(p.parent.name for p in PRETRAINED_DIR.glob("*/run.json"))


def pretrained_info(name: str = DEFAULT) -> dict:
    """Settings and results of the run that produced ``name`` (its ``run.json``), plus its history rows."""
    folder = PRETRAINED_DIR / name
    if not (folder / "run.json").is_file():
        raise FileNotFoundError(f"no pretrained weights named {name!r}; available: {', '.join(available()) or 'none'}")
    info = json.loads((folder / "run.json").read_text())
    info["history"] = read_history(folder / "history.csv")
    info["weights_path"] = str(folder / "model.weights.h5")
    return info


def load_pretrained(name: str = DEFAULT):
    """``(model, info)``: the shipped model with its trained weights, and :func:`pretrained_info`."""
    from mvlib.model import create_mobilevit

    info = pretrained_info(name)
    s = info["settings"]
    model = create_mobilevit(s["variant"], s["num_classes"], s["image_size"])
    model.load_weights(info["weights_path"])
    return model, info


def publish_run(run_dir: str | os.PathLike, name: str = DEFAULT, weights: str | None = None) -> Path:
    """Copy a finished (or interrupted) run's best weights, log and settings into the package."""
    from mvlib.train import RunFolder, load_trained

    run = RunFolder(run_dir)
    state = run.load_state()
    model, settings = load_trained(run_dir, weights)  # an uncompiled model: its weights file has no optimizer
    folder = PRETRAINED_DIR / name
    folder.mkdir(parents=True, exist_ok=True)
    model.save_weights(folder / "model.weights.h5")
    shutil.copyfile(run.path / "history.csv", folder / "history.csv")
    results = {k: state[k] for k in ("epoch", "best_epoch", "best_val_accuracy")}
    results["last_val_accuracy"] = state["history"][-1]["val_accuracy"]
    if state.get("note"):
        results["note"] = state["note"]
    results["weights"] = "best epoch (chosen on the validation split)" if weights is None else Path(weights).name
    (folder / "run.json").write_text(json.dumps({"settings": settings, "results": results}, indent=1) + "\n")
    return folder


def read_history(path: str | os.PathLike) -> list[dict]:
    """A run's ``history.csv`` (or a log in ``PRETRAINED_DIR / "logs"``) as one dict per epoch."""
    lines = Path(path).read_text().split()
    keys = lines[0].split(",")
    return [{k: (int(v) if k == "epoch" else float(v)) for k, v in zip(keys, line.split(","))} for line in lines[1:]]

