"""Trained weights: those that ship with the package (so notebooks, export and predict work without
training), and those of a run folder.

``mvlib/pretrained/<name>/`` holds ``model.weights.h5`` (weights only, no optimizer state: ~3.8 MB for
XXS), ``history.csv`` (the run's per-epoch log) and ``run.json`` (the run's settings and results).
They are package data, so a ``pip install`` from the repository (Colab) carries them too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras

from mvlib.model import create_mobilevit
from mvlib.training.evaluate import evaluate_model
from mvlib.training.run import RunFolder

PRETRAINED_DIR = Path(__file__).parents[1] / "pretrained"  # package data: mvlib/pretrained/<name>/
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


def load_pretrained(name: str = DEFAULT, image_size: int | None = None):
    """``(model, info)``: the shipped model with its trained weights, and :func:`pretrained_info`.

    Built for ``image_size``, else the size the weights are meant to be used at (``run.json``'s
    ``image_size``; the training size when that is missing)."""
    info = pretrained_info(name)
    s = info["settings"]
    model = create_mobilevit(s["variant"], s["num_classes"], info.get("image_size", s["image_size"]) if image_size is None else image_size)
    model.load_weights(info["weights_path"])
    return model, info


def publish_run(run_dir: str | os.PathLike, name: str = DEFAULT, weights: str | None = None, command: str | None = None,
                image_size: int | None = None, data=None, folder: str | os.PathLike | None = None) -> Path:
    """Copy a run's weights (``weights`` as in :func:`load_trained`: the last epoch's by default), log and
    settings into the package (or ``folder``), with the ``command`` that trained it, where it was trained,
    and the ``image_size`` it is meant to be used at (default: the training size).

    When ``image_size`` is not the training size, the history's ``val_accuracy`` does not describe the
    weights as shipped: ``data`` (a :class:`mvlib.data.FlowerData` loaded at ``image_size``) is then
    required, and the validation accuracy measured on it is recorded as ``val_accuracy_at_image_size``.
    """
    run = RunFolder(run_dir)
    state = run.load_state()
    if state is None:
        raise FileNotFoundError(f"{run.path} is not a run folder (no state.json); train first")
    settings = state["settings"]
    image_size = image_size or settings["image_size"]
    if image_size != settings["image_size"]:
        if data is None or data.image_size != image_size:
            raise ValueError(f"the run was trained at {settings['image_size']}; to publish it for {image_size}, "
                             f"pass the data loaded at {image_size} so its accuracy there can be measured")
        if data.class_names != settings["class_names"]:
            raise ValueError(f"the data's classes {data.class_names} differ from the run's {settings['class_names']}")
    model, _ = load_trained(run_dir, weights, image_size)  # uncompiled: its weights file has no optimizer
    stages = run_stages(settings, state["history"])
    history = [row for stage in stages for row in stage.pop("history")]
    results = {k: state[k] for k in ("epoch", "best_epoch", "best_val_accuracy")}
    results["last_val_accuracy"] = state["history"][-1]["val_accuracy"]
    if state.get("environments"):
        results["devices"] = device_spans(state)
    if len(stages) > 1:  # epochs and the best epoch counted over all stages, as history.csv numbers them
        results.update(epoch=len(history), best_epoch=state["best_epoch"] + len(history) - len(state["history"]),
                       stages=stages)
        earlier = {k: v for k, v in settings["initial_weights"].items() if k not in ("history", "environments")}  # in results
        settings = {**settings, "initial_weights": earlier}
    if image_size != settings["image_size"]:
        results["val_accuracy_at_image_size"] = evaluate_model(model, data.val, data.class_names).accuracy
        results["note"] = (f"trained at {settings['image_size']}x{settings['image_size']}: the history's "
                           f"val_accuracy is measured at that size; val_accuracy_at_image_size is measured at "
                           f"{image_size}, the size the weights are meant to be used at")
    if command:
        results["command"] = command
    results["weights"] = {None: "last epoch", "best": "best epoch (chosen on the validation split)"}.get(weights, str(weights))
    folder = Path(folder) if folder else PRETRAINED_DIR / name
    folder.mkdir(parents=True, exist_ok=True)
    model.save_weights(folder / "model.weights.h5")
    RunFolder(folder).write_csv(history)
    info = {"settings": settings, "image_size": image_size, "results": results}
    (folder / "run.json").write_text(json.dumps(info, indent=1) + "\n")
    return folder


def stage_settings(settings: dict) -> list[dict]:
    """The settings of every stage of a run, first to last: a run that started from another run's last
    epoch (``train(initial_weights=run folder)``) continues that run at a new recipe or image size."""
    earlier = settings.get("initial_weights", {}).get("settings")
    return (stage_settings(earlier) if earlier else []) + [settings]


def device_spans(state: dict) -> list[dict]:
    """Where each span of a run's epochs (all its stages, numbered as in its history) was trained:
    ``[{"device": "1 x NVIDIA H200, Keras 3.15.1 on jax", "epochs": [1, 102]}, ...]``; a resume on the same
    kind of machine continues its span. ``state`` is the run's state.json."""
    parts, offset = [], 0
    for record in [later["initial_weights"] for later in stage_settings(state["settings"])[1:]] + [state]:
        for e in record.get("environments", []):
            where = f"{e['device']}, Keras {e['keras']} on {e['backend']}"
            if not parts or parts[-1]["device"] != where:
                parts.append({"device": where, "epochs": [e["from_epoch"] + offset + 1, None]})
        offset += len(record["history"])
    for part, following in zip(parts, parts[1:] + [None]):
        part["epochs"][1] = following["epochs"][0] - 1 if following else offset
    return parts


def run_stages(settings: dict, history: list[dict]) -> list[dict]:
    """Recipe, image size, epochs and history of each stage, first to last, with the epochs numbered across
    all stages (an earlier stage's history as the next stage's settings recorded it)."""
    chain = stage_settings(settings)
    histories = [later["initial_weights"]["history"] for later in chain[1:]] + [history]
    stages, offset = [], 0
    for stage, rows in zip(chain, histories):
        stages.append({"recipe": stage["recipe"]["name"], "image_size": stage["image_size"], "epochs": len(rows),
                       "history": [{**row, "epoch": row["epoch"] + offset} for row in rows]})
        offset += len(rows)
    return stages


def read_history(path: str | os.PathLike) -> list[dict]:
    """A run's ``history.csv`` (or a log in ``PRETRAINED_DIR / "logs"``) as one dict per epoch."""
    lines = Path(path).read_text().split()
    keys = lines[0].split(",")
    return [{k: (int(v) if k == "epoch" else float(v)) for k, v in zip(keys, line.split(","))} for line in lines[1:]]


def load_trained(run_dir: str | os.PathLike, weights: str | os.PathLike | None = None,
                 image_size: int | None = None) -> tuple[keras.Model, dict]:
    """The model of a run folder with its last epoch's weights, plus the run's settings.

    ``weights``: ``"best"`` for the epoch with the best validation accuracy (chosen on the validation split
    itself, so an optimistic pick), or a weights file. ``image_size``: build the model for another input size
    than it was trained at (MobileViT's weights do not depend on it). ``run_dir="pretrained"`` gives the
    weights shipped in the package (:mod:`mvlib.training.pretrained`).
    """
    if str(run_dir) == "pretrained" and not Path(run_dir).exists():
        model, info = load_pretrained(image_size=image_size)
        if str(weights) == "best":
            raise ValueError("the shipped weights are one epoch's (the last); there is no best epoch to load")
        if weights:
            model.load_weights(weights)
        return model, {**info["settings"], "image_size": model.input_shape[1]}
    run = RunFolder(run_dir)
    state = run.load_state()
    if state is None:
        raise FileNotFoundError(f"{run.path} is not a run folder (no state.json); train first")
    s = dict(state["settings"])
    s["image_size"] = s["image_size"] if image_size is None else image_size
    model = create_mobilevit(s["variant"], s["num_classes"], s["image_size"])
    if weights is None:
        path = run.checkpoint_path(state["epoch"])
    elif str(weights) == "best":
        path = run.path / "best.weights.h5"
    else:
        path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file {path}")
    model.load_weights(path)
    return model, s
