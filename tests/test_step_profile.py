"""bench/step_profile.py: reading a JAX profile and XLA's HLO into time per pass, layer and op -- on small
hand-made traces, and once end to end on a tiny model in a fresh JAX process. Timings are never checked."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("step_profile", ROOT / "bench" / "step_profile.py")
step_profile = importlib.util.module_from_spec(spec)
spec.loader.exec_module(step_profile)


def op(name, ts, dur, pid=1, tid=1, module="jit_train_step"):
    args = {"hlo_op": name, **({"hlo_module": module} if module else {})}
    return {"ph": "X", "pid": pid, "tid": tid, "ts": ts, "dur": dur, "name": name, "args": args}


def test_self_times_subtract_nested_ops_and_busy_time_is_the_union():
    ops = [op("while.1", 0, 100), op("fusion.2", 10, 30), op("fusion.3", 50, 10), op("convolution.4", 90, 30, tid=2)]
    assert sorted(step_profile.self_times(ops)) == [("jit_train_step/convolution.4", 30.0), ("jit_train_step/fusion.2", 30.0),
                                                   ("jit_train_step/fusion.3", 10.0), ("jit_train_step/while.1", 60.0)]
    assert step_profile.busy_us(ops) == 120.0  # 0-100 on one thread and 90-120 on the other overlap


def test_device_ops_keep_the_accelerator_s_events_when_there_are_any():
    meta = [{"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/host:CPU"}},
            {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "/device:GPU:0"}}]
    host, device = op("fusion.1", 0, 5, pid=1), op("fusion.1", 1, 4, pid=2)
    untagged = {"ph": "X", "pid": 2, "tid": 1, "ts": 0, "dur": 9, "name": "ThunkExecutor::Execute", "args": {}}
    assert step_profile.device_ops(meta + [host, device, untagged, {**device, "name": "end: fusion.1"}]) == ([device], True)
    assert step_profile.device_ops(meta[:1] + [host, untagged]) == ([host], False)  # a CPU run: the host's ops are all there is
    with pytest.raises(RuntimeError, match="no op events on them"):  # not a silent profile of kernel launches
        step_profile.device_ops(meta + [host, untagged])


def test_kernels_on_a_gpu_stream_never_nest():
    back_to_back = [op("fusion.1", 0.0, 10.0001), op("fusion.2", 10.0, 5.0)]  # a rounded start inside the last one
    assert step_profile.self_times(back_to_back, nested=False) == [("jit_train_step/fusion.1", 10.0001),
                                                                   ("jit_train_step/fusion.2", 5.0)]


def test_hlo_names_come_from_metadata_or_from_the_computation_a_fusion_calls(tmp_path):
    (tmp_path / "module_0001.jit_train_step.sm_9.0_gpu_after_optimizations.txt").write_text(textwrap.dedent("""\
        HloModule jit_train_step

        %fused_computation.7 (param_0: f32[8]) -> f32[8] {
          %param_0 = f32[8]{0} parameter(0)
          ROOT %multiply.3 = f32[8]{0} multiply(%param_0, %param_0), metadata={op_name="jit(train_step)/transpose(jvp(stage3_mvit_transformer0_attn))/mul" source_file="x.py"}
        }

        ENTRY %main.9 (state: f32[8]) -> f32[8] {
          %state = f32[8]{0} parameter(0), metadata={op_name="state[0][0]"}
          %loop_multiply_fusion.7 = f32[8]{0} fusion(%state), kind=kLoop, calls=%fused_computation.7
          ROOT %add.1 = f32[8]{0} add(%loop_multiply_fusion.7, %state), metadata={op_name="jit(train_step)/adam/add"}
        }
        """))
    (tmp_path / "module_0002.jit__normal.sm_9.0_gpu_after_optimizations.txt").write_text(textwrap.dedent("""\
        HloModule jit__normal, entry_computation_layout={()->f32[8]{0}}

        ENTRY %main.2 () -> f32[8] {
          ROOT %add.1 = f32[8]{0} add(), metadata={op_name="jit(_normal)/add"}
        }
        """))
    names = step_profile.hlo_op_names(tmp_path)
    backward_attention = "jit(train_step)/transpose(jvp(stage3_mvit_transformer0_attn))/mul"
    assert names["jit_train_step/loop_multiply_fusion.7"] == backward_attention
    assert names["jit_train_step/loop_multiply_fusion_7"] == backward_attention  # the GPU kernel's spelling
    assert names["jit_train_step/add.1"] == "jit(train_step)/adam/add"  # the same name in another module ...
    assert names["jit__normal/add.1"] == "jit(_normal)/add"  # ... is another op
    assert names["/loop_multiply_fusion_7"] == backward_attention  # for a trace event that names no module
    summary = step_profile.summarize([op("loop_multiply_fusion_7", 0, 300, module=None), op("add.1", 300, 100),
                                      op("copy.5", 400, 100)], names, steps=2)
    assert summary["by_pass"] == {"backward": 0.15, "optimizer": 0.05, "unattributed": 0.05}  # ms per step
    assert summary["by_kind"] == {"mvit_transformer_attn": {"backward": 0.15}}
    assert summary["matched_share"] == 0.8 and summary["busy_ms"] == 0.25
    assert summary["top_ops"][0]["layer"] == "stage3_mvit_transformer0_attn"


@pytest.mark.parametrize("op_name, expected", [
    ("jit(train_step)/transpose(jvp(stage3_mvit_transformer0_attn))/dot_general", ("backward", "stage3_mvit_transformer0_attn")),
    ("jit(train_step)/jvp(stage1_mv2_0_dw_dwconv)/conv_general_dilated", ("forward", "stage1_mv2_0_dw_dwconv")),
    ("jit(train_step)/adam/sqrt", ("optimizer", "optimizer")),
    ("jit(predict_step)/stage5_mvit_fold/reshape", ("forward", "stage5_mvit_fold")),
    ("state[0][192]", ("other", "state[0][192]")),
    (None, ("unattributed", "(no metadata)")),
])
def test_attribute(op_name, expected):
    assert step_profile.attribute(op_name) == expected


def test_layer_kind_drops_stage_and_block_numbers():
    assert step_profile.layer_kind("stage4_mvit_transformer2_norm1") == "mvit_transformer_norm1"
    assert step_profile.layer_kind("stage2_mv2_1_dw_dwconv") == "mv2_dw_dwconv"
    assert step_profile.layer_kind("stem_conv") == "stem_conv"
    assert step_profile.layer_stage("stage4_mvit_unfold") == "stage4" and step_profile.layer_stage("optimizer") == "optimizer"


def test_a_real_profile_of_a_tiny_model(tmp_path):
    """JAX's trace and XLA's dump as they really are: a fresh process, so XLA_FLAGS is read at start-up."""
    pytest.importorskip("jax")
    code = textwrap.dedent(f"""
        import importlib.util, json, pathlib
        spec = importlib.util.spec_from_file_location("step_profile", {str(ROOT / "bench" / "step_profile.py")!r})
        P = importlib.util.module_from_spec(spec); spec.loader.exec_module(P)
        work = pathlib.Path({str(tmp_path)!r}); P.start_xla_dump(work)
        import keras, numpy as np
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.Conv2D(8, 3, name="stage1_conv")(inputs)
        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
        model = keras.Model(inputs, keras.layers.Dense(5, name="head_classifier")(x))
        model.compile(keras.optimizers.Adam(), "mse")
        images, targets = np.ones((4, 16, 16, 3), "float32"), np.ones((4, 5), "float32")
        traced = P.trace(lambda: model.train_on_batch(images, targets), warmup=1, steps=2, work=work)
        print("SUMMARY", json.dumps(P.summarize(traced["ops"], traced["op_names"], steps=2)))
        """)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("SUMMARY "))[8:])
    assert {"forward", "backward", "optimizer"} <= set(summary["by_pass"])
    assert "conv" in summary["by_kind"] and "stage1" in summary["by_stage"]
    assert summary["ops_per_step"] > 0 and summary["busy_ms"] > 0
