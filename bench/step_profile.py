"""Where a training step's time goes, on JAX: op by op, layer by layer, forward against backward.

    KERAS_BACKEND=jax python bench/step_profile.py --variant xxs --batch-size 64      # the GPU profile of issue 15
    KERAS_BACKEND=jax python bench/step_profile.py --variant keras-io --batch-size 64
    KERAS_BACKEND=jax python bench/step_profile.py --image-size 64 --batch-size 8     # a quick look on a CPU

It runs ``--warmup`` untimed calls of ``model.train_on_batch`` (``--mode infer``: ``predict_on_batch``) --
the very step bench/speed.py times -- then ``--steps`` more under JAX's profiler (``jax.profiler.trace``),
while XLA writes the optimised HLO of every program it compiles (``XLA_FLAGS=--xla_dump_to``). Each op the
profiler saw execute is matched to its HLO instruction, whose metadata names the Keras layer it came from:
``jit(train_step)/transpose(jvp(stage3_mvit_transformer0_attn))/dot_general`` is the backward pass of the
first transformer layer of stage 3; ``jit(train_step)/adam/...`` is the optimizer. The report gives

* the step time, and the share of it in which the device was running an op (the rest: waiting for the host
  to launch work -- what many small kernels cost on a GPU);
* time by pass (forward, backward, optimizer), by stage and by kind of layer (a layer's name without its
  stage and block numbers: every ``stageN_mvit_transformerK_attn`` counts as ``mvit_transformer_attn``);
* the slowest ops, with the layer each belongs to.

Times are self times (an op that contains others, such as a loop, counts only its own), summed over the
profiled steps and divided by their number. Reports go to ``<out>/profile-<device>-<mode>-<variant>.md`` and
``.json``.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("keras-io", "xxs", "xs", "s")
HLO_LINE = re.compile(r'^\s*(?:ROOT\s+)?%?([\w.\-]+) = .*?metadata=\{[^}]*?op_name="([^"]*)"')
CALLS = re.compile(r'^\s*(?:ROOT\s+)?%?([\w.\-]+) = .*?\bcalls=%?([\w.\-]+)')


# --- reading what the profiler and XLA wrote -------------------------------------------------------------


def read_trace(trace_dir: Path) -> list[dict]:
    """The trace events of the newest Perfetto trace (``perfetto_trace.json.gz``) under ``trace_dir``."""
    traces = sorted(trace_dir.glob("**/perfetto_trace.json.gz"), key=lambda p: p.stat().st_mtime)
    if not traces:
        raise FileNotFoundError(f"no perfetto_trace.json.gz under {trace_dir}: did jax.profiler.trace run?")
    with gzip.open(traces[-1], "rt") as f:
        data = json.load(f)
    return data["traceEvents"] if isinstance(data, dict) else data


def device_ops(events: list[dict]) -> tuple[list[dict], bool]:
    """The executed XLA ops -- complete events that name an HLO op -- and whether they ran on an accelerator.

    On a GPU the host also records an event for every kernel it launches; only the device's own (processes
    named ``/device:...``, one event per kernel on a stream) are kept then, and a trace with a device but no
    op events on it is an error rather than a silent profile of kernel launches. On a CPU the ops run on
    host threads, which are all there is."""
    names = {e["pid"]: e.get("args", {}).get("name", "") for e in events if e.get("ph") == "M" and e.get("name") == "process_name"}
    ops = [e for e in events if e.get("ph") == "X" and "hlo_op" in e.get("args", {}) and not e["name"].startswith("end: ")]
    devices = {pid for pid, name in names.items() if name.startswith("/device:")}
    if not devices:
        return ops, False
    on_device = [e for e in ops if e["pid"] in devices]
    if not on_device:
        raise RuntimeError(f"the trace has device processes ({', '.join(sorted(names[p] for p in devices))}) but no op "
                           "events on them (is CUPTI available?)")
    return on_device, True


def op_key(event: dict) -> str:
    """``module/op``: an HLO instruction's name is unique within its module only."""
    args = event["args"]
    return f"{args.get('hlo_module', '')}/{args['hlo_op']}"


def self_times(ops: list[dict], nested: bool = True) -> list[tuple[str, float]]:
    """``(module/op, self time in us)`` for each event: its duration less that of the events nested in it
    on the same thread (a ``while`` loop and the ops of its body, say, on a CPU). Kernels on a GPU stream
    never nest (``nested=False``), and back-to-back ones must not be taken for nested by a rounded time."""
    if not nested:
        return [(op_key(e), float(e["dur"])) for e in ops]
    result = []
    by_thread = collections.defaultdict(list)
    for e in ops:
        by_thread[(e["pid"], e["tid"])].append(e)
    for events in by_thread.values():
        events.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack: list[list] = []  # [end time, index in result]
        for e in events:
            while stack and e["ts"] >= stack[-1][0]:
                stack.pop()
            if stack:
                result[stack[-1][1]][1] -= e["dur"]
            result.append([op_key(e), float(e["dur"])])
            stack.append([e["ts"] + e["dur"], len(result) - 1])
    return [(name, max(0.0, us)) for name, us in result]


def busy_us(ops: list[dict]) -> float:
    """How long at least one op was running: the length of the union of the events' intervals."""
    total, end = 0.0, float("-inf")
    for e in sorted(ops, key=lambda e: e["ts"]):
        start, stop = e["ts"], e["ts"] + e["dur"]
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def hlo_op_names(dump_dir: Path) -> dict[str, str]:
    """``{module/instruction: the op_name of its metadata}`` from every optimised HLO module XLA dumped
    (and ``/instruction`` for trace events that do not name their module).

    A fusion often carries no metadata of its own; it then takes that of the computation it calls (its
    root's, else the first that has one). GPU kernels XLA generates are named after their instruction with
    ``.`` turned into ``_``, so those spellings map too (for trace events named after a kernel)."""
    names: dict[str, str] = {}
    for path in sorted(dump_dir.glob("*after_optimizations.txt")):  # module_0001 ... : a recompiled module's newest wins
        in_computation: dict[str, str] = {}  # computation -> the op_name its instructions stand for
        calls: dict[str, str] = {}  # instruction without metadata -> the computation it calls
        module = computation = None
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("HloModule "):
                module = line.split()[1].rstrip(",")
                continue
            if line and not line[0].isspace() and line.rstrip().endswith("{"):
                computation = line.split()[1 if line.startswith("ENTRY") else 0].lstrip("%")
                continue
            m = HLO_LINE.match(line)
            if m:
                names[f"{module}/{m.group(1)}"] = m.group(2)
                if computation and (line.lstrip().startswith("ROOT") or computation not in in_computation):
                    in_computation[computation] = m.group(2)
            else:
                c = CALLS.match(line)
                if c:
                    calls[c.group(1)] = c.group(2)
        for instruction, computation in calls.items():
            if computation in in_computation:
                names.setdefault(f"{module}/{instruction}", in_computation[computation])
    for key, op in list(names.items()):
        module, instruction = key.split("/", 1)
        for alias in {instruction, instruction.replace(".", "_")}:
            names.setdefault(f"{module}/{alias}", op)
            names.setdefault(f"/{alias}", op)
    return names


# --- naming what the time was spent on -------------------------------------------------------------------


def attribute(op_name: str | None) -> tuple[str, str]:
    """``(pass, layer)`` of an HLO op from its metadata op_name.

    >>> attribute("jit(train_step)/transpose(jvp(stage3_mvit_transformer0_attn))/dot_general")
    ('backward', 'stage3_mvit_transformer0_attn')
    >>> attribute("jit(train_step)/adam/mul")
    ('optimizer', 'optimizer')
    """
    if not op_name:
        return "unattributed", "(no metadata)"
    path = op_name.split("/", 1)[1] if op_name.startswith("jit(") and "/" in op_name else op_name
    m = re.match(r"transpose\(jvp\(([^()]+)\)\)", path)
    if m:
        return "backward", m.group(1)
    m = re.match(r"jvp\(([^()]+)\)", path)
    if m:
        return "forward", m.group(1)
    head = path.split("/", 1)[0]
    if head in ("adam", "adamw", "sgd", "optimizer") or head.endswith("optimizer"):
        return "optimizer", "optimizer"
    if op_name.startswith("jit(predict_step)") and "/" in path:
        return "forward", head  # inference has no jvp(): the first part of the path is the layer
    return "other", head


def layer_kind(layer: str) -> str:
    """A layer's name without its stage and block numbers: ``stage4_mvit_transformer2_norm1`` ->
    ``mvit_transformer_norm1``, ``stage2_mv2_1_dw_dwconv`` -> ``mv2_dw_dwconv``."""
    kind = re.sub(r"^stage\d+_", "", layer)
    kind = re.sub(r"_\d+(?=_|$)", "", kind)
    return re.sub(r"transformer\d+", "transformer", kind)


def layer_stage(layer: str) -> str:
    m = re.match(r"(stage\d+|stem|head|final)", layer)
    return m.group(1) if m else layer


def summarize(ops: list[dict], op_names: dict[str, str], steps: int, top: int = 25, nested: bool = True) -> dict:
    """Per-step device time by pass, stage, layer kind and op, from the profiled ops of ``steps`` steps."""
    rows = collections.defaultdict(float)
    counts = collections.Counter()
    for key, us in self_times(ops, nested):
        rows[key] += us / steps
        counts[key] += 1
    by_pass, by_stage, by_kind = collections.Counter(), collections.Counter(), collections.Counter()
    top_ops, matched = [], 0.0
    for key, us in sorted(rows.items(), key=lambda kv: -kv[1]):
        module, hlo_op = key.split("/", 1)
        op_name = op_names.get(key) if module else op_names.get(f"/{hlo_op}")  # no module named: any module's
        matched += us if op_name else 0.0
        pass_, layer = attribute(op_name)
        by_pass[pass_] += us
        by_stage[layer_stage(layer) if pass_ in ("forward", "backward") else pass_] += us
        if pass_ in ("forward", "backward"):
            by_kind[(layer_kind(layer), pass_)] += us
        if len(top_ops) < top:
            top_ops.append({"hlo_op": hlo_op, "module": module, "ms": us / 1e3, "calls_per_step": counts[key] / steps,
                            "pass": pass_, "layer": layer, "op_name": op_name})
    kinds = collections.defaultdict(dict)
    for (kind, pass_), us in by_kind.items():
        kinds[kind][pass_] = us / 1e3
    return {
        "op_ms": sum(rows.values()) / 1e3,
        "busy_ms": busy_us(ops) / steps / 1e3,
        "distinct_ops": len(rows),
        "ops_per_step": sum(counts.values()) / steps,
        "matched_share": matched / max(sum(rows.values()), 1e-9),
        "by_pass": {k: v / 1e3 for k, v in by_pass.most_common()},
        "by_stage": {k: v / 1e3 for k, v in by_stage.most_common()},
        "by_kind": dict(sorted(kinds.items(), key=lambda kv: -sum(kv[1].values()))),
        "top_ops": top_ops,
    }


def format_markdown(report: dict) -> str:
    s, total = report["summary"], report["summary"]["op_ms"]
    step, traced = report["step_ms"], report.get("traced_step_ms", report["step_ms"])

    def pct(ms):
        return f"{100 * ms / total:.1f}%" if total else "-"

    lines = [
        f"# Profile: {report['variant']}, {report['mode']}, batch {report['batch_size']}, {report['image_size']} px, "
        f"{report['precision']}", "", f"`{report['command']}`", "",
        f"- {report['framework']}, {report['device']}",
        f"- step {step:.2f} ms ({report['batch_size'] / step * 1e3:,.0f} images/s); profiled {traced:.2f} ms, of which "
        f"the device ran ops for {s['busy_ms']:.2f} ms ({100 * s['busy_ms'] / traced:.0f}%); {s['ops_per_step']:.0f} ops per step "
        f"({s['distinct_ops']} distinct), their self times sum to {total:.2f} ms",
        f"- {100 * s['matched_share']:.0f}% of that time is matched to HLO metadata (layer names)"
        + ("" if report.get("command_buffers", True) else "; XLA's GPU command buffers were off (`--command-buffers` keeps "
           "them: the step as training runs it, most ops unnamed)"), "",
        "| pass | ms / step | share |", "|---|---|---|",
        *[f"| {k} | {v:.2f} | {pct(v)} |" for k, v in s["by_pass"].items()], "",
        "| stage | ms / step | share |", "|---|---|---|",
        *[f"| {k} | {v:.2f} | {pct(v)} |" for k, v in s["by_stage"].items()], "",
        "Forward and backward time by kind of layer (the 30 largest):", "",
        "| layer kind | forward ms | backward ms | share |", "|---|---|---|---|",
    ]
    for kind, passes in list(s["by_kind"].items())[:30]:
        lines.append(f"| {kind} | {passes.get('forward', 0):.2f} | {passes.get('backward', 0):.2f} | {pct(sum(passes.values()))} |")
    lines += ["", "| op | ms / step | calls / step | pass | layer |", "|---|---|---|---|---|"]
    for r in s["top_ops"]:
        lines.append(f"| `{r['hlo_op']}` | {r['ms']:.3f} | {r['calls_per_step']:g} | {r['pass']} | {r['layer']} |")
    return "\n".join(lines) + "\n"


# --- profiling ------------------------------------------------------------------------------------------


def start_xla_dump(work: Path, command_buffers: bool = False) -> None:
    """Have XLA write the optimised HLO of every program it compiles to ``work/hlo``. XLA reads its flags
    once, when JAX starts its backend: call this before the first computation.

    On a GPU, XLA records runs of ops into command buffers (CUDA graphs) by default, and the profiler names
    such a run ``command_buffer_N``, without the layer names of its ops (73% of the time of an H200 profile
    of ``xxs``): unless ``command_buffers``, they are turned off, at the price of profiling a step that
    launches its kernels one by one."""
    flags = f"--xla_dump_to={work / 'hlo'} --xla_dump_hlo_as_text"
    if not command_buffers:
        flags += " --xla_gpu_enable_command_buffer="
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()
    # A program loaded from JAX's persistent cache (tools/gpu_*.sh turn it on) is not compiled, so not dumped.
    os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)


def trace(step, warmup: int, steps: int, work: Path) -> dict:
    """Call ``step()`` ``warmup`` times, ``steps`` times untraced (the step's own speed), then ``steps`` times
    under JAX's profiler; the executed ops, whether they ran on an accelerator, the layer names XLA recorded
    for them (needs :func:`start_xla_dump` first) and the milliseconds per step, untraced and traced.

    Profiling slows a step (on a GPU, XLA runs ops one by one instead of as CUDA graphs while a profiler
    is active), so the busy share is measured against the traced step and the untraced one is reported
    beside it. Python calls are not traced (``python_tracer_level=0``)."""
    import jax

    def timed():
        start = time.perf_counter()
        for _ in range(steps):
            step()  # train_on_batch and predict_on_batch return host values: each call ends with its step done
        return 1e3 * (time.perf_counter() - start) / steps

    for _ in range(warmup):
        step()
    untraced_ms = timed()
    options = jax.profiler.ProfileOptions()
    options.python_tracer_level = 0
    with jax.profiler.trace(str(work / "trace"), create_perfetto_trace=True, profiler_options=options):
        traced_ms = timed()
    ops, on_device = device_ops(read_trace(work / "trace"))
    if not ops:
        raise RuntimeError(f"the profile under {work / 'trace'} has no XLA op events")
    return {"ops": ops, "on_device": on_device, "op_names": hlo_op_names(work / "hlo"), "step_ms": untraced_ms,
            "traced_step_ms": traced_ms}


def keep_for_debugging(work: Path, out: Path) -> Path:
    """Copy the trace and the dumped HLO text of a failed profile to ``out`` (a temp folder is lost with the
    machine a GPU run is lent)."""
    target = out / "profile-failed"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(work / "trace", target / "trace", dirs_exist_ok=True) if (work / "trace").is_dir() else None
    for path in (work / "hlo").glob("*after_optimizations.txt"):
        (target / "hlo").mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target / "hlo" / path.name)
    return target


def profile(args) -> dict:
    """Profile one variant's training (or inference) step and summarize where its time goes."""
    work = Path(tempfile.mkdtemp(prefix="mvlib-profile-"))
    start_xla_dump(work, args.command_buffers)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    sys.path.insert(0, str(ROOT))
    import keras

    if keras.backend.backend() != "jax":
        raise SystemExit(f"bench/step_profile.py profiles with JAX's profiler: run it with KERAS_BACKEND=jax "
                         f"(this process has {keras.backend.backend()!r})")
    import jax

    from mvlib.device import describe_device

    sys.path.insert(0, str(ROOT / "bench"))
    from speed import synthetic_step  # the very step bench/speed.py times

    model, x, y = synthetic_step(args.variant, args.precision, args.batch_size, args.image_size)
    step = (lambda: model.train_on_batch(x, y)) if args.mode == "train" else (lambda: model.predict_on_batch(x))
    try:
        traced = trace(step, args.warmup, args.steps, work)
        summary = summarize(traced["ops"], traced["op_names"], args.steps, top=args.top, nested=not traced["on_device"])
    except Exception:
        print(f"profiling failed; the trace and HLO are in {keep_for_debugging(work, Path(args.out))}", file=sys.stderr)
        raise
    if args.keep:
        print(f"kept the trace and HLO dump in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return {"command": " ".join(["python bench/step_profile.py", *sys.argv[1:]]),
            "variant": args.variant, "mode": args.mode, "batch_size": args.batch_size, "image_size": args.image_size,
            "precision": args.precision, "steps": args.steps, "step_ms": traced["step_ms"],
            "traced_step_ms": traced["traced_step_ms"], "command_buffers": args.command_buffers,
            "framework": f"Keras {keras.__version__} on JAX {jax.__version__}", "device": describe_device(),
            "summary": summary}


def run(args) -> dict:
    report = profile(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^a-z0-9]+", "-", f"profile {report['device']} {args.mode} {args.variant}".lower()).strip("-")
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / f"{stem}.md").write_text(format_markdown(report))
    print(format_markdown(report))
    print(f"wrote {out / stem}.md and .json")
    return report


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="xxs", choices=VARIANTS)
    p.add_argument("--mode", default="train", choices=["train", "infer"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first (tracing, compilation)")
    p.add_argument("--steps", type=int, default=5, help="profiled calls")
    p.add_argument("--top", type=int, default=25, help="how many of the slowest ops to list")
    p.add_argument("--command-buffers", action="store_true",
                   help="keep XLA's GPU command buffers (CUDA graphs), which hide the layer names of the ops in them")
    p.add_argument("--keep", action="store_true", help="keep the trace and the HLO dump (prints their folder)")
    p.add_argument("--out", default=str(ROOT / "bench"))
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 1:
        p.error("need --steps >= 1 and --warmup >= 1 (the first call compiles)")
    return args


if __name__ == "__main__":
    run(parse_args())
