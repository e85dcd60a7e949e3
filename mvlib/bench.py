"""Side-by-side CPU benchmark of the keras-io model and the paper's variants (GitHub issue #6).

One run measures, for each variant (default ``keras-io`` and ``xxs``):

* **training throughput** -- images/s of ``model.train_on_batch(x, y)`` on one in-memory batch
  (float32 RGB in [0, 255], one-hot labels, reused every step), compiled with the *same* recipe for
  every variant (``keras-io``: Adam 2e-3, label smoothing 0.1, accuracy metric), so the optimizer cost is
  identical. The first ``warmup_steps`` calls (tracing, first-run allocations) are not timed; then each
  of ``steps`` calls is timed on its own (``train_on_batch`` returns Python floats, so every call ends
  with the step finished). images/s = batch * steps / (sum of step times);
* **inference throughput** -- images/s of ``model.predict_on_batch(x)`` (the Keras predict function,
  ``training=False``, output copied to NumPy) on the same batch, after ``warmup_steps`` untimed calls;
* **peak resident memory** of the training run: each variant runs in its own Python process
  (``python -m mvlib.bench --child ...``), which reports ``VmHWM`` from ``/proc/self/status`` right after
  the training steps (before inference) in one JSON line that the parent parses. ``VmHWM`` rather than
  ``getrusage(RUSAGE_SELF).ru_maxrss``: on Linux, ``ru_maxrss`` survives ``execve`` and so starts at the
  *parent's* peak (the parent has TensorFlow loaded too); both are recorded. Separate processes also give
  each model fresh thread pools and graph caches.

and, without any model, the **input pipeline** on the real photos (``mvlib.data.load_flowers`` from a
folder, ``limit=pipeline_images`` training images), in its own process as well:

* **first epoch** -- one pass over ``FlowerData.train``: read + decode + resize to ``image_size + 24``
  (uint8, cached) + random crop + flip + batch. The files were just decoded once by ``load_flowers``'s
  unreadable-file check, so they are in the OS page cache (as they are in a real run);
* **cached steady state** -- ``FlowerData.train_stream(augment="keras-io")``, the stream ``mvlib.train``
  feeds to ``model.fit``: random access into the in-memory cache + crop + flip + batch, timed over
  ``ceil(pipeline_images / batch)`` batches after 2 untimed ones.

The pipeline gets the whole CPU here; during training it shares the cores with the model.

Results: ``<out>/results.md`` and ``<out>/results.json`` with ratios against ``keras-io`` and pass/fail
columns for the issue's targets (xxs training >= 3x keras-io, inference >= 3x, cached pipeline >= 3x the
xxs training images/s, xxs peak memory <= keras-io's), the machine (CPU model, cores, RAM, load average,
TensorFlow/Keras versions), TensorFlow's thread settings and the exact command.

API::

    report = run_benchmark(variants=("keras-io", "xxs"), batch_size=64, image_size=256, ...)
    paths = write_report(report, "bench")            # results.md / results.json
    add_bench_arguments(parser); run_from_args(parser.parse_args())   # for the CLI

Timings depend on everything else running on the machine: run it on an otherwise idle machine (the
report records the load average before and after).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import queue
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

__all__ = [
    "TARGETS",
    "add_bench_arguments",
    "format_markdown",
    "machine_info",
    "measure_pipeline",
    "measure_variant",
    "memory_usage",
    "profile_stages",
    "run_benchmark",
    "run_from_args",
    "run_in_subprocess",
    "summarize",
    "write_report",
]

BASELINE = "keras-io"
DEFAULT_VARIANTS = ("keras-io", "xxs")
VARIANT_NAMES = ("keras-io", "xxs", "xs", "s")  # mvlib.model.VARIANTS, without importing Keras for --help
RESULT_MARKER = "MVLIB_BENCH_RESULT "  # the child's one JSON line starts with this
# The issue's targets: ratios against the keras-io model (memory: at most keras-io's peak).
TARGETS = {
    "train_speedup_min": 3.0,  # variant training images/s >= 3x keras-io's
    "inference_speedup_min": 3.0,  # variant inference images/s >= 3x keras-io's
    "pipeline_over_train_min": 3.0,  # cached pipeline images/s >= 3x the xxs training images/s
    "memory_ratio_max": 1.0,  # variant peak RSS <= keras-io's
}
TARGET_VARIANT = "xxs"  # the variant the pipeline target is stated for


def _say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


# --------------------------------------------------------------------------------------------------
# Memory and machine
# --------------------------------------------------------------------------------------------------


def _proc_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def memory_usage() -> dict:
    """This process's memory in MiB: ``rss`` now, ``peak_rss`` (VmHWM), ``ru_maxrss`` (see module docstring)."""
    import resource

    rss, hwm = _proc_status_kb("VmRSS"), _proc_status_kb("VmHWM")
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    mib = lambda kb: None if kb is None else round(kb / 1024, 1)  # noqa: E731
    return {"rss_mib": mib(rss), "peak_rss_mib": mib(hwm if hwm is not None else ru), "ru_maxrss_mib": mib(ru)}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _loadavg() -> list[float] | None:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def machine_info() -> dict:
    """CPU model, cores, RAM, load average, Python/TensorFlow/Keras versions, accelerators."""
    import keras
    import tensorflow as tf

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "ram_gib": _mem_total_gib(),
        "loadavg": _loadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
    }


def _configure_threads(intra_op: int | None, inter_op: int | None) -> dict:
    """Apply thread settings (before TensorFlow runs any op) and report the values in effect."""
    import tensorflow as tf

    note = None
    try:
        if intra_op is not None:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        if inter_op is not None:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError as e:  # the eager context exists already (in-process runs)
        note = f"could not set threads: {e}"
    return {
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        "requested_intra_op": intra_op,
        "requested_inter_op": inter_op,
        "meaning": "0 = TensorFlow's default (intra-op: one thread per usable core; inter-op: chosen by TF)",
        "note": note,
    }


# --------------------------------------------------------------------------------------------------
# Measurements (run in a child process by run_benchmark; callable in-process too)
# --------------------------------------------------------------------------------------------------


def _time_calls(fn: Callable[[], object], warmup: int, steps: int) -> dict:
    """Call ``fn`` ``warmup`` times untimed (times kept for information), then ``steps`` times, each timed."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps!r}")
    if warmup < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup!r}")
    warm, timed = [], []
    for _ in range(warmup):
        start = time.perf_counter()
        fn()
        warm.append(time.perf_counter() - start)
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        timed.append(time.perf_counter() - start)
    return {"warmup_s": warm, "step_s": timed}


def _throughput(times: dict, batch_size: int) -> dict:
    steps = sorted(times["step_s"])
    total = sum(steps)
    median = steps[len(steps) // 2] if len(steps) % 2 else (steps[len(steps) // 2 - 1] + steps[len(steps) // 2]) / 2
    return {
        "images_per_s": batch_size * len(steps) / total,
        "median_step_ms": 1e3 * median,
        "min_step_ms": 1e3 * steps[0],
        "max_step_ms": 1e3 * steps[-1],
        "images_per_s_at_median": batch_size / median,
        "first_step_s": times["warmup_s"][0] if times["warmup_s"] else None,
        "warmup_s": [round(t, 4) for t in times["warmup_s"]],
        "step_s": [round(t, 4) for t in times["step_s"]],
    }


def _synthetic_batch(batch_size: int, image_size: int, num_classes: int, seed: int):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32")
    y = np.eye(num_classes, dtype="float32")[rng.integers(0, num_classes, batch_size)]
    return tf.constant(x), tf.constant(y)


def _build_training_state(model, x, y) -> None:
    """Create the optimizer slots and metric variables before the first ``train_on_batch``.

    Left to the first call (Keras does so with TensorFlow when no distribution strategy is set), they are
    created while ``tf.function`` traces the train step, and TensorFlow then traces the whole step a second
    time: double the (untimed) warm-up. Same variables, same initial values, same numerics.
    """
    symbolic_build = getattr(model, "_symbolic_build", None)  # Keras 3's own pre-build (private API)
    if symbolic_build is not None:
        try:
            symbolic_build(data_batch=(x, y, None))
            return
        except Exception:  # noqa: BLE001  (an optimisation only: fall back to the public part)
            pass
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def measure_variant(
    variant: str,
    *,
    batch_size: int = 64,
    image_size: int = 256,
    warmup_steps: int = 3,
    steps: int = 10,
    recipe: str = "keras-io",
    num_classes: int = 5,
    seed: int = 0,
    intra_op: int | None = None,
    inter_op: int | None = None,
    profile: bool = False,
    progress: Callable[[str], None] = _say,
) -> dict:
    """Training and inference throughput of one variant, and this process's peak memory after training.

    Meant to run alone in a fresh process (``run_in_subprocess``): the peak memory is the process's, and
    thread settings only apply before TensorFlow's first op.
    """
    threads = _configure_threads(intra_op, inter_op)
    import keras

    from mvlib.model import create_mobilevit, parameter_counts
    from mvlib.train import compile_model, get_recipe

    memory_start = memory_usage()
    keras.utils.set_random_seed(seed)
    model = create_mobilevit(variant, num_classes, image_size)
    compile_model(model, get_recipe(recipe, batch_size=batch_size), steps_per_epoch=max(1, steps))
    x, y = _synthetic_batch(batch_size, image_size, num_classes, seed)
    _build_training_state(model, x, y)
    total_params, trainable = parameter_counts(model)
    memory_built = memory_usage()

    progress(f"{variant}: training, {warmup_steps} warm-up + {steps} timed train_on_batch steps of {batch_size} "
             f"at {image_size}px")
    train = _throughput(_time_calls(lambda: model.train_on_batch(x, y), warmup_steps, steps), batch_size)
    memory_train = memory_usage()
    progress(f"{variant}: training {train['images_per_s']:.2f} images/s (median step {train['median_step_ms']:.0f} ms), "
             f"peak RSS {memory_train['peak_rss_mib']:.0f} MiB")

    progress(f"{variant}: inference, {warmup_steps} warm-up + {steps} timed predict_on_batch calls")
    infer = _throughput(_time_calls(lambda: model.predict_on_batch(x), warmup_steps, steps), batch_size)
    progress(f"{variant}: inference {infer['images_per_s']:.2f} images/s (median {infer['median_step_ms']:.0f} ms)")

    result = {
        "variant": variant,
        "params": total_params,
        "trainable_params": trainable,
        "recipe": recipe,
        "optimizer": type(model.optimizer).__name__,
        "jit_compile": bool(model.jit_compile),
        "batch_size": batch_size,
        "image_size": image_size,
        "train": train,
        "inference": infer,
        "memory": {
            "start": memory_start,  # after importing TensorFlow
            "built": memory_built,  # model built and compiled, batch in memory
            "after_train": memory_train,  # peak_rss_mib here = the training run's peak
            "end": memory_usage(),
        },
        "peak_rss_mib": memory_train["peak_rss_mib"],
        "threads": threads,
        "pid": os.getpid(),
    }
    if profile:
        progress(f"{variant}: forward time per stage")
        result["profile"] = profile_stages(model, x, warmup_steps=max(1, warmup_steps), steps=steps)
    return result


def profile_stages(model, x, *, warmup_steps: int = 1, steps: int = 5) -> list[dict]:
    """Inference time of ``model`` split by stage (``stem``, ``stage1`` ... ``stage5``, ``final``, ``head``).

    Layers are grouped by their name prefix (``mvlib.flops.stage_of``); each group becomes a sub-model
    from the previous group's output to its own last layer's output (same layers, same weights, so the
    numerics are the model's), run as a ``tf.function`` with ``training=False`` on that stage's real
    input. Returns one row per stage: median ms per batch, share of the summed time, and per-image MACs
    (``mvlib.flops``), so time and arithmetic can be compared. Stage times exclude the hand-over between
    stages and so add up to slightly less than one whole-model call.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from mvlib.flops import macs_by_stage, stage_of

    groups: dict[str, list] = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        groups.setdefault(stage_of(layer.name), []).append(layer)
    macs = macs_by_stage(model)
    rows, previous, value = [], model.inputs[0], x
    for stage, layers in groups.items():
        sub = keras.Model(previous, layers[-1].output, name=f"profile_{stage}")
        fn = tf.function(lambda t, sub=sub: sub(t, training=False))
        times = _time_calls(lambda: fn(value).numpy(), warmup_steps, steps)["step_s"]
        rows.append({"stage": stage, "layers": len(layers), "median_ms": 1e3 * float(np.median(times)),
                     "macs_per_image": int(macs.get(stage, 0))})
        value, previous = fn(value), layers[-1].output
    total = sum(r["median_ms"] for r in rows) or 1.0
    for r in rows:
        r["share"] = r["median_ms"] / total
    return rows


def measure_pipeline(
    data_dir: str | os.PathLike | None = None,
    *,
    images: int = 1024,
    image_size: int = 256,
    batch_size: int = 64,
    augment: str = "keras-io",
    seed: int = 42,
    intra_op: int | None = None,
    inter_op: int | None = None,
    progress: Callable[[str], None] = _say,
) -> dict:
    """Images/s of the training input pipeline on a photo folder, without a model (see module docstring).

    ``images`` training images are used (``load_flowers(limit=images)``; fewer if the folder has fewer).
    """
    threads = _configure_threads(intra_op, inter_op)
    from mvlib.data import default_data_dir, load_flowers

    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    progress(f"pipeline: listing and checking up to {images} training photos in {folder}")
    start = time.perf_counter()
    data = load_flowers("folder", folder, image_size=image_size, batch_size=batch_size, seed=seed, limit=images)
    setup_s = time.perf_counter() - start
    n = data.num_train

    progress(f"pipeline: first (uncached) epoch over {n} images: decode + resize + crop/flip + batch")
    start, seen = time.perf_counter(), 0
    for batch, _ in data.train:
        seen += int(batch.shape[0])
    first_s = time.perf_counter() - start
    progress(f"pipeline: first epoch {seen / first_s:.1f} images/s")

    timed_batches = max(1, math.ceil(n / batch_size))
    progress(f"pipeline: cached steady state, train_stream(augment={augment!r}), {timed_batches} batches")
    start = time.perf_counter()
    stream = iter(data.train_stream(augment=augment, batch_size=batch_size, seed=seed))
    stream_setup_s = time.perf_counter() - start  # the cache is full: a walk through memory
    for _ in range(2):  # untimed: builds the per-epoch graphs, fills the prefetch buffer
        next(stream)
    start, steady = time.perf_counter(), 0
    for _ in range(timed_batches):
        batch, _ = next(stream)
        steady += int(batch.shape[0])
    steady_s = time.perf_counter() - start
    progress(f"pipeline: cached steady state {steady / steady_s:.1f} images/s")
    return {
        "data_dir": str(data.data_dir),
        "source": data.source,
        "num_images": n,
        "image_size": image_size,
        "batch_size": batch_size,
        "augment": augment,
        "setup_s": setup_s,  # list files + decode each once (unreadable-file check) + build the pipelines
        "first_epoch": {"images": seen, "seconds": first_s, "images_per_s": seen / first_s},
        "cached": {"images": steady, "seconds": steady_s, "images_per_s": steady / steady_s,
                   "stream_setup_s": stream_setup_s},
        "memory": memory_usage(),
        "threads": threads,
    }


# --------------------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------------------

_CHILD_FUNCTIONS = {"variant": "measure_variant", "pipeline": "measure_pipeline"}


def run_in_subprocess(
    kind: str,
    kwargs: dict,
    *,
    timeout: float | None = None,
    progress: Callable[[str], None] = _say,
) -> dict:
    """Run ``measure_variant`` (``kind="variant"``) or ``measure_pipeline`` in a fresh Python process.

    The child (``python -m mvlib.bench --child '<json>'``) prints its progress lines, which are passed on
    to ``progress`` as they come, and one line ``MVLIB_BENCH_RESULT <json>`` with the result. A child
    that fails raises ``RuntimeError`` with the end of its stderr.
    """
    if kind not in _CHILD_FUNCTIONS:
        raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(_CHILD_FUNCTIONS)}")
    request = json.dumps({"kind": kind, "kwargs": kwargs})
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    result = None
    lines: queue.Queue = queue.Queue()
    with tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mvlib.bench", "--child", request],
            stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
        )

        def pump():  # a thread, so a silent child still times out
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is not None and wait <= 0:
                    raise subprocess.TimeoutExpired(proc.args, timeout)
                try:
                    line = lines.get(timeout=wait)
                except queue.Empty:
                    continue
                if line is None:
                    break
                line = line.rstrip("\n")
                if line.startswith(RESULT_MARKER):
                    result = json.loads(line[len(RESULT_MARKER):])
                elif line.strip():
                    progress(line[len("[bench] "):] if line.startswith("[bench] ") else line)
            proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if proc.returncode != 0 or result is None:
            stderr.seek(0)
            tail = stderr.read()[-3000:]
            what = "and printed no result" if result is None else ""
            raise RuntimeError(f"benchmark child ({kind} {kwargs}) exited with code {proc.returncode} {what}:\n{tail}")
    return result


def _child_main(request_json: str) -> int:
    import inspect

    request = json.loads(request_json)
    function = globals()[_CHILD_FUNCTIONS[request["kind"]]]
    inspect.signature(function).bind(**request["kwargs"])  # a bad request fails before any measuring
    import mvlib  # noqa: F401  (quiet TensorFlow start-up)

    result = function(**request["kwargs"])
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------------------------------
# Ratios, targets, report
# --------------------------------------------------------------------------------------------------


def _ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def _at_least(value, threshold):
    return None if value is None else bool(value >= threshold)


def summarize(variants: dict, pipeline: dict | None, targets: dict = TARGETS, baseline: str = BASELINE) -> dict:
    """Ratios against ``baseline`` and pass/fail (True/False, None = not measurable) per variant and target.

    ``variants``: ``{name: measure_variant result}``; ``pipeline``: a ``measure_pipeline`` result or None.
    """
    base = variants.get(baseline)
    rows = {}
    cached = pipeline["cached"]["images_per_s"] if pipeline else None
    first = pipeline["first_epoch"]["images_per_s"] if pipeline else None
    for name, r in variants.items():
        train, infer, peak = r["train"]["images_per_s"], r["inference"]["images_per_s"], r["peak_rss_mib"]
        row = {
            "train_images_per_s": train,
            "inference_images_per_s": infer,
            "peak_rss_mib": peak,
            "train_speedup": _ratio(train, base["train"]["images_per_s"]) if base else None,
            "inference_speedup": _ratio(infer, base["inference"]["images_per_s"]) if base else None,
            "memory_ratio": _ratio(peak, base["peak_rss_mib"]) if base else None,
            "pipeline_cached_over_train": _ratio(cached, train),
            "pipeline_first_epoch_over_train": _ratio(first, train),
        }
        is_base = name == baseline
        row["pass_train"] = None if is_base else _at_least(row["train_speedup"], targets["train_speedup_min"])
        row["pass_inference"] = None if is_base else _at_least(row["inference_speedup"], targets["inference_speedup_min"])
        row["pass_memory"] = (None if is_base or row["memory_ratio"] is None
                              else bool(row["memory_ratio"] <= targets["memory_ratio_max"]))
        row["pass_pipeline"] = _at_least(row["pipeline_cached_over_train"], targets["pipeline_over_train_min"])
        rows[name] = row
    t = rows.get(TARGET_VARIANT, {})
    headline = {
        f"{TARGET_VARIANT} training >= {targets['train_speedup_min']:g}x {baseline}": t.get("pass_train"),
        f"{TARGET_VARIANT} inference >= {targets['inference_speedup_min']:g}x {baseline}": t.get("pass_inference"),
        f"cached pipeline >= {targets['pipeline_over_train_min']:g}x {TARGET_VARIANT} training images/s": t.get("pass_pipeline"),
        f"{TARGET_VARIANT} peak memory <= {baseline}'s": t.get("pass_memory"),
    }
    return {"baseline": baseline, "targets": dict(targets), "variants": rows, "headline": headline}


def _fmt(value, spec: str = ".2f", none: str = "--") -> str:
    return none if value is None else format(value, spec)


def _verdict(value) -> str:
    return "n/a" if value is None else ("PASS" if value else "FAIL")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _training_adds(result: dict):
    """Peak RSS of the training run minus the RSS before it (model built, batch in memory), in MiB."""
    try:
        return result["memory"]["after_train"]["peak_rss_mib"] - result["memory"]["built"]["rss_mib"]
    except (KeyError, TypeError):
        return None


def format_markdown(report: dict) -> str:
    """The report (``run_benchmark``'s result) as a markdown page."""
    s, m, summary = report["settings"], report["machine"], report["summary"]
    base = summary["baseline"]
    lines = ["# MobileViT CPU benchmark", "", f"Command: `{report['command']}`", ""]
    load = m.get("loadavg_before"), m.get("loadavg_after")
    lines += [
        f"Machine: {m['cpu_model']}, {m['cpu_count']} CPUs ({m['cpus_usable']} usable), {m['ram_gib']} GiB RAM; "
        f"{m['platform']}; Python {m['python']}, TensorFlow {m['tensorflow']}, Keras {m['keras']}"
        + (f"; GPUs: {', '.join(m['gpus'])}" if m.get("gpus") else "; no GPU") + ".",
        f"Load average (1 min) before the run: {_fmt(load[0] and load[0][0])} (after: {_fmt(load[1] and load[1][0])}, "
        "which includes the benchmark's own load)"
        + (" -- the machine was busy: timings are not representative." if report.get("busy") else "."),
        "",
        f"Settings: batch {s['batch_size']}, {s['image_size']}x{s['image_size']} float32 RGB [0, 255], "
        f"{s['warmup_steps']} untimed warm-up + {s['steps']} timed steps; training = `train_on_batch` on one "
        f"repeated in-memory batch, recipe `{s['recipe']}` for every variant; inference = `predict_on_batch`; "
        + ("each variant and the pipeline in its own process." if s["isolate"]
           else "all in this process (peak memory is cumulative: not per variant)."),
    ]
    threads = report.get("threads") or {}
    if threads:
        lines.append(f"Threads: intra-op {threads.get('intra_op')}, inter-op {threads.get('inter_op')}; "
                     f"{threads.get('meaning')}" + (f"; {threads['note']}" if threads.get("note") else "") + ".")
    lines += ["", "## Models", ""]
    header = ["variant", "params", "train img/s", f"train x {base}", "infer img/s", f"infer x {base}",
              "peak RSS (MiB)", f"memory x {base}", "training adds (MiB)", "train >= 3x", "infer >= 3x",
              f"memory <= {base}"]
    rows = []
    for name, r in report["variants"].items():
        row = summary["variants"][name]
        rows.append([
            f"`{name}`", f"{r['params']:,}", _fmt(row["train_images_per_s"]), _fmt(row["train_speedup"]),
            _fmt(row["inference_images_per_s"]), _fmt(row["inference_speedup"]), _fmt(row["peak_rss_mib"], ".0f"),
            _fmt(row["memory_ratio"]), _fmt(_training_adds(r), ".0f"), _verdict(row["pass_train"]),
            _verdict(row["pass_inference"]),
            _verdict(row["pass_memory"]),
        ])
    lines += _table(header, rows)
    lines += ["", "peak RSS: the variant's process (TensorFlow itself included) right after the training steps; "
              "training adds: that peak minus the RSS just before the first step.",
              "", "Median step (ms): " + "; ".join(
        f"`{n}` train {_fmt(r['train']['median_step_ms'], '.0f')}, infer {_fmt(r['inference']['median_step_ms'], '.0f')}"
        for n, r in report["variants"].items()) + "."]
    p = report.get("pipeline")
    if p:
        lines += ["", f"## Input pipeline (no model): {p['num_images']} photos from `{p['data_dir']}`", ""]
        header = ["phase", "images", "seconds", "img/s"] + [f"/ `{n}` train img/s" for n in report["variants"]]
        header.append(f"pipeline >= 3x `{TARGET_VARIANT}` train")
        target_train = report["variants"].get(TARGET_VARIANT, {}).get("train", {}).get("images_per_s")
        prows = []
        for label, key in (("first epoch: decode + resize + crop/flip", "first_epoch"),
                           (f"cached: train_stream(augment={p['augment']!r})", "cached")):
            ips = p[key]["images_per_s"]
            ratio = _ratio(ips, target_train)
            prows.append([label, str(p[key]["images"]), _fmt(p[key]["seconds"]), _fmt(ips, ".1f")]
                         + [_fmt(_ratio(ips, r["train"]["images_per_s"])) for r in report["variants"].values()]
                         + [_verdict(_at_least(ratio, summary["targets"]["pipeline_over_train_min"]))])
        lines += _table(header, prows)
        lines += ["", f"Setup (list + check-decode every file once + build): {_fmt(p['setup_s'])} s; "
                  f"pipeline process peak RSS {_fmt(p['memory']['peak_rss_mib'], '.0f')} MiB. "
                  "The pipeline had the whole CPU here; in training it shares the cores with the model."]
    lines += ["", "## Targets", ""]
    lines += [f"- {text}: **{_verdict(ok)}**" for text, ok in summary["headline"].items()]
    profiles = {n: r["profile"] for n, r in report["variants"].items() if r.get("profile")}
    if profiles:
        lines += ["", "## Forward time per stage (inference, batch "
                  f"{s['batch_size']})", ""]
        stages = list(dict.fromkeys(st["stage"] for rows_ in profiles.values() for st in rows_))
        header = ["stage"] + [f"`{n}` ms (share) / MMACs per image" for n in profiles]
        prow = []
        for stage in stages:
            cells = [stage]
            for rows_ in profiles.values():
                st = next((x for x in rows_ if x["stage"] == stage), None)
                cells.append("--" if st is None else
                             f"{st['median_ms']:.1f} ({st['share']:.0%}) / {st['macs_per_image'] / 1e6:.1f}")
            prow.append(cells)
        lines += _table(header, prow)
    if report.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: str | os.PathLike = "bench") -> tuple[Path, Path]:
    """Write ``<out>/results.md`` and ``<out>/results.json``; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "results.md", out / "results.json"
    md.write_text(format_markdown(report))
    js.write_text(json.dumps(report, indent=1) + "\n")
    return md, js


# --------------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------------


def _command_line(argv: Sequence[str] | None = None) -> str:
    argv = list(sys.argv if argv is None else argv)
    first = Path(argv[0]) if argv else Path("")
    if first.name == "__main__.py" and first.parent.name == "mvlib":
        head = ["python", "-m", "mvlib"]
    elif first.name == "bench.py" and first.parent.name == "mvlib":
        head = ["python", "-m", "mvlib.bench"]
    else:
        head = [first.name or "python"]
    return " ".join(shlex.quote(a) for a in head + argv[1:])


def run_benchmark(
    variants: Sequence[str] = DEFAULT_VARIANTS,
    *,
    batch_size: int = 64,
    image_size: int = 256,
    warmup_steps: int = 3,
    steps: int = 10,
    recipe: str = "keras-io",
    pipeline_images: int | None = 1024,
    data_dir: str | os.PathLike | None = None,
    intra_op: int | None = None,
    inter_op: int | None = None,
    profile: bool = False,
    isolate: bool = True,
    timeout: float | None = None,
    command: str | None = None,
    progress: Callable[[str], None] = _say,
) -> dict:
    """Measure every variant (each in its own process if ``isolate``) and the pipeline; return the report.

    ``pipeline_images=None`` (or 0) skips the pipeline. ``isolate=False`` runs everything in this process
    (faster, for tests and debugging; peak memory is then cumulative and thread settings may not apply).
    The report is a JSON-ready dict: ``settings``, ``machine``, ``threads``, ``variants`` (raw results by
    name), ``pipeline``, ``summary`` (ratios and pass/fail, see ``summarize``), ``command``, ``notes``.
    """
    from mvlib.model import VARIANTS

    variants = list(dict.fromkeys(variants))
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; valid variants: {', '.join(VARIANTS)}")
    if batch_size < 1 or steps < 1 or warmup_steps < 0:
        raise ValueError("batch_size and steps must be >= 1 and warmup_steps >= 0")
    if pipeline_images:  # fail now, not after minutes of model measurements
        from mvlib.data import default_data_dir, list_image_files

        list_image_files(data_dir if data_dir is not None else default_data_dir())
    machine = machine_info()
    machine["loadavg_before"] = machine.pop("loadavg")
    settings = {"variants": variants, "batch_size": batch_size, "image_size": image_size,
                "warmup_steps": warmup_steps, "steps": steps, "recipe": recipe, "pipeline_images": pipeline_images,
                "data_dir": None if data_dir is None else str(data_dir), "intra_op": intra_op, "inter_op": inter_op,
                "profile": profile, "isolate": isolate,
                "train_method": "model.train_on_batch on one repeated in-memory batch (tf.constant)",
                "inference_method": "model.predict_on_batch on the same batch",
                "memory_method": "VmHWM (/proc/self/status) of the variant's own process, read after training"}
    started = time.perf_counter()

    def run(kind, kwargs, label):
        progress(f"--- {label} ({'own process' if isolate else 'in process'})")
        if isolate:
            return run_in_subprocess(kind, kwargs, timeout=timeout, progress=progress)
        return globals()[_CHILD_FUNCTIONS[kind]](**kwargs, progress=progress)

    results = {}
    for i, variant in enumerate(variants, 1):
        kwargs = dict(batch_size=batch_size, image_size=image_size, warmup_steps=warmup_steps, steps=steps,
                      recipe=recipe, intra_op=intra_op, inter_op=inter_op, profile=profile)
        results[variant] = run("variant", {"variant": variant, **kwargs}, f"variant {i}/{len(variants)}: {variant}")
    pipeline = None
    if pipeline_images:
        pipeline = run("pipeline", dict(data_dir=None if data_dir is None else str(data_dir), images=pipeline_images,
                                        image_size=image_size, batch_size=batch_size, intra_op=intra_op,
                                        inter_op=inter_op), "input pipeline")
    machine["loadavg_after"] = _loadavg()
    busy = any(la and la[0] > 0.25 * (machine["cpus_usable"] or 1) for la in (machine["loadavg_before"],))
    notes = [
        f"Every variant is trained with the `{recipe}` recipe (same optimizer and loss), whatever its usual recipe.",
        "Training and inference use one synthetic in-memory batch, so model numbers exclude the input pipeline.",
        "ru_maxrss is not used for the table: on Linux it carries over the parent's peak through exec "
        "(it is still in the JSON as ru_maxrss_mib).",
    ]
    if busy:
        notes.append("The 1-minute load average before the run was high for this CPU count: other work was "
                     "running, so the absolute numbers (and to a lesser degree the ratios) are unreliable.")
    if not isolate:
        notes.append("Run in one process: peak memory is the process's cumulative peak, not per variant.")
    first = next(iter(results.values()), None)
    report = {
        "command": command if command is not None else _command_line(),
        "settings": settings,
        "machine": machine,
        "busy": busy,
        "threads": first["threads"] if first else (pipeline or {}).get("threads"),
        "variants": results,
        "pipeline": pipeline,
        "summary": summarize(results, pipeline),
        "notes": notes,
        "elapsed_s": time.perf_counter() - started,
    }
    progress(f"done in {report['elapsed_s']:.0f} s")
    return report


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def add_bench_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the benchmark's options to ``parser`` (e.g. the ``bench`` sub-parser of ``python -m mvlib``)."""
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=list(VARIANT_NAMES),
                        help="models to measure; ratios are against keras-io (default: keras-io xxs)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first (tracing); default 3")
    parser.add_argument("--steps", type=int, default=10, help="timed training and inference steps; default 10")
    parser.add_argument("--pipeline-images", type=int, default=1024,
                        help="photos for the input-pipeline measure (0: skip it); default 1024")
    parser.add_argument("--data-dir", help="flower_photos/<class>/*.jpg folder for the pipeline "
                                           "(default: mvlib.data.default_data_dir())")
    parser.add_argument("--recipe", default="keras-io", help="training recipe for every variant (default keras-io: Adam)")
    parser.add_argument("--intra-op", type=int, help="TensorFlow intra-op threads (default: TensorFlow's)")
    parser.add_argument("--inter-op", type=int, help="TensorFlow inter-op threads (default: TensorFlow's)")
    parser.add_argument("--profile", action="store_true", help="also time the forward pass per stage")
    parser.add_argument("--no-subprocess", dest="isolate", action="store_false",
                        help="measure in this process (quicker; peak memory then not per variant)")
    parser.add_argument("--timeout", type=float, help="seconds allowed per child process")
    parser.add_argument("--out", default="bench", help="output folder for results.md / results.json (default bench)")
    return parser


def run_from_args(args: argparse.Namespace) -> dict:
    """Run the benchmark from parsed ``add_bench_arguments`` options, write and print the report."""
    report = run_benchmark(
        args.variants, batch_size=args.batch_size, image_size=args.image_size, warmup_steps=args.warmup_steps,
        steps=args.steps, recipe=args.recipe, pipeline_images=args.pipeline_images or None, data_dir=args.data_dir,
        intra_op=args.intra_op, inter_op=args.inter_op, profile=args.profile, isolate=args.isolate,
        timeout=args.timeout, command=getattr(args, "command_line", None),
    )
    md, js = write_report(report, args.out)
    print(format_markdown(report), flush=True)
    print(f"wrote {md} and {js}", flush=True)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return _child_main(argv[1])
    parser = add_bench_arguments(argparse.ArgumentParser(prog="python -m mvlib.bench", description=__doc__.splitlines()[0]))
    run_from_args(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
