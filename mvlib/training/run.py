"""``train``: a run that survives being killed, on any backend and any number of devices.

A run folder holds everything about one run::

    runs/xxs/
      state.json          # the commit point: finished epochs, history, best epoch, run settings
      ckpt-0007.keras     # model + optimizer (+ dropout RNG state) after the last committed epoch
      best.weights.h5     # weights of the epoch with the best validation accuracy
      history.csv         # one row per finished epoch, rewritten from state.json
      results.json        # written when the run has trained all its epochs

A commit writes a new checkpoint file and *then* atomically replaces ``state.json``; only then is the
previous checkpoint deleted. A ``kill -9`` at any moment therefore leaves a state that names a complete
checkpoint, and re-running the same command resumes from the last committed epoch. SIGTERM (which
``timeout`` and batch schedulers send before they kill) or Ctrl-C ends the run at the end of the epoch it
arrives in, committed; a second Ctrl-C stops at once. An epoch is committed
when it ends at least ``commit_every`` seconds (default 30) after the last commit, and the run's last
epoch always: on a CPU, whose epochs take minutes, that is every epoch; on a GPU, where an epoch can take
about as long as the ~1 s that writing a checkpoint does, every few epochs.

The training stream and the dropout masks are functions of (seed, epoch): epoch ``e`` shuffles,
augments and drops with seeds derived from ``e``, so a resumed run computes exactly what an
uninterrupted run would have computed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import keras
import numpy as np

from mvlib.device import describe_device
from mvlib.model import create_mobilevit
from mvlib.training.recipes import Recipe, compile_model, get_recipe


def data_parallel():
    """A context in which a model is built and trained on every local accelerator, one batch split across them.

    TensorFlow: ``tf.distribute.MirroredStrategy`` over the GPUs. JAX: Keras' own distribution API,
    ``keras.distribution.DataParallel`` over the devices (GPUs, else the CPU devices, of which
    ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` makes N). With one device: nothing to do.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy([d.name for d in gpus]).scope()
    elif backend == "jax":
        devices = keras.distribution.list_devices()
        if len(devices) > 1:
            return keras.distribution.DataParallel(devices=devices).scope()
    return contextlib.nullcontext()


def default_verbose() -> int:
    """Keras progress bars for people (terminal or notebook), one line per epoch for log files."""
    interactive = sys.stdout.isatty() or "ipykernel" in sys.modules
    return 1 if interactive else 2


class RunFolder:
    """Reads and writes one run folder (see the module docstring for the layout and the commit order)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.state_path = self.path / "state.json"

    def load_state(self) -> dict | None:
        if not self.state_path.exists():
            return None
        return json.loads(self.state_path.read_text())

    def checkpoint_path(self, epoch: int) -> Path:
        return self.path / f"ckpt-{epoch:04d}.keras"

    def commit_epoch(self, model: keras.Model, state: dict) -> None:
        """Save the checkpoint of ``state['epoch']``, then atomically publish the new state."""
        self.path.mkdir(parents=True, exist_ok=True)
        ckpt = self.checkpoint_path(state["epoch"])
        tmp = ckpt.with_name(ckpt.stem + ".tmp.keras")
        model.save(tmp)
        os.replace(tmp, ckpt)
        _write_atomic(self.state_path, json.dumps(state, indent=1))
        self.write_csv(state["history"])
        for old in self.path.glob("ckpt-*.keras"):  # only now is the previous checkpoint redundant
            if old != ckpt:
                old.unlink()

    def write_csv(self, history: list[dict]) -> None:
        if not history:
            return
        keys = list(history[0])
        lines = [",".join(keys)] + [",".join(f"{row[k]:.6g}" if isinstance(row[k], float) else str(row[k]) for k in keys) for row in history]
        _write_atomic(self.path / "history.csv", "\n".join(lines) + "\n")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class EpochSeeder(keras.callbacks.Callback):
    """Reseeds every dropout RNG from (seed, epoch) when an epoch begins.

    Keras does not save ``SeedGenerator`` states in a ``.keras`` file, so a resumed run would draw
    different dropout masks than an uninterrupted one. Deriving them from the epoch number instead
    makes epoch ``e`` identical however the run got there (like the data stream).
    """

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch, logs=None):
        generators = [sg for layer in self.model._flatten_layers() for sg in getattr(layer, "_seed_generators", ())]
        for i, generator in enumerate(generators):
            state = generator.state
            value = np.array([self._derived_seed(epoch, i), 0])
            state.assign(value.astype(keras.backend.standardize_dtype(state.dtype)))
        if keras.backend.backend() == "torch":
            # On PyTorch, a Dropout layer built without a seed of its own ignores its SeedGenerator and draws
            # from torch's global generator (keras/src/backend/torch/random.py, `dropout`): seed that too.
            import torch

            torch.manual_seed(self._derived_seed(epoch, len(generators)))

    def _derived_seed(self, epoch: int, index: int) -> int:
        return (self.seed * 1_000_003 + epoch * 1009 + index) % 2**31


class StopRequest:
    """Turns the first SIGTERM or Ctrl-C (SIGINT) while :meth:`listening` into a request to stop after the
    current epoch, which :class:`EpochCommitter` commits; the signals' own handlers are back from then on,
    so a second Ctrl-C interrupts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signal: int | None = None

    @contextlib.contextmanager
    def listening(self):
        if threading.current_thread() is not threading.main_thread():  # only the main thread can handle signals
            yield self
            return
        previous = {s: signal.getsignal(s) for s in self.SIGNALS}

        def request(signum, frame):
            self.signal = signum
            for s, handler in previous.items():
                signal.signal(s, handler)
            print(f"\n{signal.Signals(signum).name}: the run stops when this epoch ends, and commits it "
                  "(Ctrl-C again: stop now, losing the epochs since the last commit)", flush=True)

        for s in self.SIGNALS:
            signal.signal(s, request)
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


class EpochCommitter(keras.callbacks.Callback):
    """Commits finished epochs to the run folder (each one that ends ``every`` seconds or more after the last
    commit, the last one, and the one that ends the run when ``stop`` asks) and keeps the best epoch's weights: in
    memory until the commit that writes them."""

    def __init__(self, run: RunFolder, state: dict, every: float = 0.0, stop: StopRequest | None = None):
        super().__init__()
        self.run, self.state, self.every, self.stop = run, state, every, stop
        self.committed, self.last_commit = state["epoch"], time.perf_counter()
        self.best_weights = self.epoch_weights = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - self._start, 1)}
        row["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row.update({k: float(v) for k, v in logs.items() if k != "learning_rate"})
        state = self.state
        state["history"].append(row)
        state["epoch"] = epoch + 1
        self.epoch_weights = self.model.get_weights()
        if row.get("val_accuracy", -1) > state["best_val_accuracy"]:
            state["best_val_accuracy"], state["best_epoch"] = row["val_accuracy"], epoch + 1
            self.best_weights = self.epoch_weights
        if epoch + 1 == self.params["epochs"] or time.perf_counter() - self.last_commit >= self.every:
            self.commit()
        if self.stop is not None and self.stop.signal is not None:
            self.model.stop_training = True  # and on_train_end commits

    def on_train_end(self, logs=None):
        if self.epoch_weights is not None and self.state["epoch"] < self.params["epochs"]:  # stopped early
            # By now fit() has called the optimizer's finalize_variable_values, which for a weight average
            # stopped before its last epoch puts the raw weights (waiting in the optimizer) into the model:
            # the epoch ended with the average there, and that is what its checkpoint holds.
            self.model.set_weights(self.epoch_weights)
        if self.state["epoch"] > self.committed:  # a callback stopped the run between commits
            self.commit()

    def commit(self):
        if self.best_weights is not None:
            earlier = self.best_weights is not self.epoch_weights  # the best epoch is not this one
            if earlier:
                self.model.set_weights(self.best_weights)
            self.model.save_weights(self.run.path / "best.weights.h5")
            if earlier:
                self.model.set_weights(self.epoch_weights)
            self.best_weights = None
        self.run.commit_epoch(self.model, self.state)
        self.committed, self.last_commit = self.state["epoch"], time.perf_counter()


class AveragedWeightsBetweenEpochs(keras.callbacks.SwapEMAWeights):
    """For a recipe with ``ema_momentum``: Keras' ``SwapEMAWeights(swap_on_epoch=True)``, which validates
    the averaged weights and puts them in the model when an epoch ends, so that the checkpoint, the best
    epoch's weights and everything that reads a run folder get the average; the raw weights wait in the
    optimizer's slots and come back when the next epoch begins. Runs before :class:`EpochCommitter`."""

    def __init__(self, resumed: bool):
        super().__init__(swap_on_epoch=True)
        # A checkpoint holds the average in the model (it was saved at an epoch's end): a resumed run
        # starts in the state that SwapEMAWeights would be in after that epoch, so the swap-back happens.
        self._ema_weights_in_model = resumed


class Progress(keras.callbacks.Callback):
    """How long the run will take, said once from its first timed steps, and progress lines for log files.

    Keras prints one line per epoch when its output is not a terminal (``verbose=2``); an epoch on a
    2-core CPU takes minutes, so with ``lines=True`` this adds a line at least every ``every`` seconds:
    step, images/s, and the time left in the epoch and in the run. The first steps include compilation,
    so the estimate is taken from steps ``2..2+timed`` of the first epoch trained here.
    """

    def __init__(self, epochs: int, steps: int, batch_size: int, *, lines: bool, every: float = 30.0, timed: int = 3):
        super().__init__()
        self.epochs, self.steps, self.batch_size, self.lines, self.every, self.timed = epochs, steps, batch_size, lines, every, timed
        self.estimated, self.first_epoch = False, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.epoch_start = epoch, time.perf_counter()
        self.last_print, self.timer = self.epoch_start, None
        self.first_epoch = epoch if self.first_epoch is None else self.first_epoch

    def on_epoch_end(self, epoch, logs=None):
        # The first estimate can be far off where the loader, not the step, sets the pace: its steps come
        # from batches queued while the step compiled (on the H100 box: "~39 s for the 90 epochs left"; 72 of
        # them took ~7 min). The second epoch trained here is timed whole: loading, validation, commit.
        left = self.epochs - epoch - 1
        if epoch == self.first_epoch + 1 and left:
            seconds = time.perf_counter() - self.epoch_start
            print(f"\nepoch {epoch + 1} took {_duration(seconds)} in all (loading, validation, commit): the {left} "
                  f"epochs left take ~{_duration(left * seconds)}", flush=True)

    def on_train_batch_end(self, batch, logs=None):
        now, done = time.perf_counter(), batch + 1
        if done == 2:
            self.timer = now
        if self.timer is None or done <= 2:
            return
        seconds_per_step = (now - self.timer) / (done - 2)
        if not self.estimated and (done == 2 + self.timed or done == self.steps):
            self.estimated = True
            left = (self.epochs - self.epoch) * self.steps * seconds_per_step
            print(f"\nestimate: {seconds_per_step:.2f} s/step, ~{_duration(self.steps * seconds_per_step)} per epoch, "
                  f"~{_duration(left)} for the {self.epochs - self.epoch} epochs left (plus validation). Shorter: "
                  "--epochs N, a smaller --image-size or variant; faster: a GPU (README, 'Training on a GPU').",
                  flush=True)
        if self.lines and now - self.last_print >= self.every and done < self.steps:
            self.last_print = now
            epoch_left = (self.steps - done) * seconds_per_step
            run_left = epoch_left + (self.epochs - self.epoch - 1) * self.steps * seconds_per_step
            print(f"epoch {self.epoch + 1}/{self.epochs} step {done}/{self.steps}: "
                  f"{self.batch_size / seconds_per_step:.1f} images/s, loss {float(logs.get('loss', float('nan'))):.4f}, "
                  f"epoch ends in {_duration(epoch_left)}, run in {_duration(run_left)}", flush=True)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


@dataclass
class TrainResult:
    model: keras.Model
    run_dir: Path
    epochs: int
    history: list[dict]
    last_val_accuracy: float
    best_val_accuracy: float  # picked on the validation set itself: an optimistic estimate
    best_epoch: int
    resumed_from: int

    def summary(self) -> str:
        secs = [row["seconds"] for row in self.history]
        return (
            f"{self.epochs} epochs ({sum(secs) / max(1, len(secs)):.0f} s/epoch): last-epoch val top-1 "
            f"{self.last_val_accuracy:.2%}, best val top-1 {self.best_val_accuracy:.2%} at epoch "
            f"{self.best_epoch} (best chosen on the validation set)"
        )


def train(
    variant: str,
    data,
    run_dir: str | os.PathLike,
    recipe: Recipe | str = "improved",
    *,
    image_size: int | None = None,
    seed: int = 42,
    steps_per_epoch: int | None = None,
    distribution=None,
    verbose: int | str = "auto",
    initial_weights: str | os.PathLike | None = None,
    callbacks: list[keras.callbacks.Callback] = (),
    run_eagerly: bool = False,
    commit_every: float = 30.0,
) -> TrainResult:
    """Train ``variant`` on ``data`` (a :class:`mvlib.data.FlowerData`), resuming from ``run_dir``.

    Re-running with the same arguments after an interruption continues from the last committed epoch;
    a finished run returns its results without training. ``steps_per_epoch`` shortens epochs (quick
    mode); by default one epoch is one pass over the training split. ``commit_every``: the seconds
    between commits to the run folder (see the module docstring; 0: every epoch). ``callbacks`` run after
    the run folder's callback. ``run_eagerly=True`` skips compiling the training step:
    slower per step, but for a handful of steps (a demonstration, a test) it saves the ~40 s that tracing
    a whole MobileViT takes on a small CPU. Either way the run resumes exactly.
    """
    recipe = get_recipe(recipe) if isinstance(recipe, str) else recipe
    verbose = default_verbose() if verbose == "auto" else verbose
    image_size = image_size or data.image_size
    if image_size != data.image_size:
        raise ValueError(f"image_size {image_size} differs from the data's {data.image_size}; load the data at {image_size}")
    run = RunFolder(run_dir)
    steps = steps_per_epoch or math.ceil(data.num_train / recipe.batch_size)
    settings = {"variant": variant, "recipe": asdict(recipe), "image_size": image_size, "seed": seed,
                "steps_per_epoch": steps, "num_classes": len(data.class_names), "class_names": list(data.class_names),
                "data_source": data.source}
    if initial_weights:
        settings["initial_weights"] = describe_weights(initial_weights)
    state = run.load_state()
    run.path.mkdir(parents=True, exist_ok=True)
    if state is not None:
        _check_same_run(run, state["settings"], settings)
    if keras.backend.backend() != "tensorflow":
        import mvlib  # Keras seeds TensorFlow too whenever it is installed: import it without its C++ chatter

        if importlib.util.find_spec("tensorflow"):
            mvlib.require("tensorflow", "seeding")
    keras.utils.set_random_seed(seed)
    with distribution or data_parallel():
        model = create_mobilevit(variant, len(data.class_names), image_size, bn_momentum=recipe.bn_momentum)
        compile_model(model, recipe, steps, run_eagerly=run_eagerly)
        if state is not None:
            # Not keras.saving.load_model: a deserialised AdamW forgets exclude_from_weight_decay and
            # would decay biases and norms after a resume. Restore weights + optimizer state instead.
            model.optimizer.build(model.trainable_variables)
            model.load_weights(run.checkpoint_path(state["epoch"]))
        else:
            if initial_weights:
                load_initial_weights(model, initial_weights)
            state = {"settings": settings, "epoch": 0, "history": [], "best_val_accuracy": -1.0, "best_epoch": 0}
        resumed_from = state["epoch"]
        environment = {"backend": keras.backend.backend(), "keras": keras.__version__, "device": describe_device(),
                       "from_epoch": resumed_from}
        if resumed_from < recipe.epochs:
            state.setdefault("environments", []).append(environment)  # where each part of the run was trained
            if resumed_from:
                print(f"resuming {run.path} after epoch {resumed_from}/{recipe.epochs}", flush=True)
            stream = data.train_stream(initial_epoch=resumed_from, augment=recipe.augment,
                                       batch_size=recipe.batch_size, seed=seed, steps_per_epoch=steps, mix=recipe.mix)
            progress = [Progress(recipe.epochs, steps, recipe.batch_size, lines=verbose == 2)] if verbose else []
            averaging = [AveragedWeightsBetweenEpochs(resumed=resumed_from > 0)] if recipe.ema_momentum is not None else []
            try:
                with StopRequest().listening() as stop:
                    model.fit(
                        stream,
                        epochs=recipe.epochs,
                        initial_epoch=resumed_from,
                        validation_data=data.val,
                        callbacks=[stream.epoch_callback(), EpochSeeder(seed), *averaging,
                                   EpochCommitter(run, state, commit_every, stop), *progress, *callbacks],
                        shuffle=False,  # the stream is already shuffled, per epoch, reproducibly
                        verbose=verbose,
                    )
            finally:  # worker processes and their shared memory, if the stream started any
                stream.close()
            if stop.signal is not None:
                print(f"stopped after epoch {state['epoch']}/{recipe.epochs}, committed: the same call continues the run",
                      flush=True)
    history = state["history"]
    result = TrainResult(model, run.path, state["epoch"], history, history[-1]["val_accuracy"],
                         state["best_val_accuracy"], state["best_epoch"], resumed_from)
    if result.epochs < recipe.epochs:
        return result
    _write_atomic(run.path / "results.json", json.dumps({
        "variant": variant, "recipe": recipe.name, "epochs": result.epochs,
        "last_val_accuracy": result.last_val_accuracy, "best_val_accuracy": result.best_val_accuracy,
        "best_epoch": result.best_epoch, "seconds_per_epoch": sum(r["seconds"] for r in history) / len(history),
        "data_source": data.source, "num_train": data.num_train, "num_val": data.num_val,
        "note": "best_val_accuracy is selected on the validation split itself (optimistic)",
    }, indent=1))
    return result


def describe_weights(initial_weights: str | os.PathLike) -> dict:
    """Where a run's starting weights came from, for its settings: a file, or a run folder's last epoch
    (with that run's settings, history and devices, so the two stages can be read as one run)."""
    path = Path(initial_weights)
    if path.is_dir():
        state = RunFolder(path).load_state()
        if state is None:
            raise FileNotFoundError(f"{path} is a folder but not a run folder (no state.json)")
        return {"run_dir": str(path), "epoch": state["epoch"], "settings": state["settings"], "history": state["history"],
                "environments": state.get("environments", [])}
    if not path.is_file():
        raise FileNotFoundError(f"no weights file or run folder {path}")
    return {"file": str(path)}


def load_initial_weights(model: keras.Model, initial_weights: str | os.PathLike) -> None:
    """A weights file, or the last epoch of a run folder (trained at any image size: MobileViT's weights
    do not depend on it)."""
    run = RunFolder(initial_weights)
    state = run.load_state() if run.path.is_dir() else None
    if state is None:
        model.load_weights(initial_weights)
        return
    settings = state["settings"]
    source = create_mobilevit(settings["variant"], settings["num_classes"], settings["image_size"])
    source.load_weights(run.checkpoint_path(state["epoch"]))  # the model's weights; the optimizer state stays behind
    model.set_weights(source.get_weights())


def _check_same_run(run: RunFolder, saved: dict, wanted: dict) -> None:
    # A run folder written before a recipe field existed was trained with that field's default.
    defaults = {f.name: f.default for f in fields(Recipe) if f.default is not MISSING}
    saved = {**saved, "recipe": {**defaults, **saved.get("recipe", {})}}
    diffs = [k for k in wanted if saved.get(k) != wanted[k]]
    if diffs:
        raise ValueError(
            f"{run.path} holds a different run (differs in {', '.join(diffs)}); "
            "use another --run-dir or delete that folder to start over"
        )
