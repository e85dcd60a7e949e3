"""bench/speed.py, the speed benchmark tool: one tiny real run through its child process, the PyTorch path on a
tiny model, and the report's arithmetic. Timings themselves are never checked (they depend on the machine)."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("speed", ROOT / "bench" / "speed.py")
speed = importlib.util.module_from_spec(spec)
spec.loader.exec_module(speed)


def test_tiny_keras_run_writes_a_report(tmp_path, monkeypatch):
    # The child runs on Keras' PyTorch backend where it is installed: eager, so nothing to trace or compile;
    # the bench's own code is the same on every backend. One OpenMP thread: beside another busy process (the
    # other pytest worker), torch's spinning threads made each step ~40x slower (this test: 58 -> 29 s in CI).
    if importlib.util.find_spec("torch"):
        monkeypatch.setenv("KERAS_BACKEND", "torch")
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
    args = speed.parse_args(["--variants", "xxs", "--shifted-depthwise", "--batch-sizes", "2", "--image-size", "64",
                             "--warmup", "1", "--steps", "1", "--out", str(tmp_path)])
    report = speed.run(args)
    assert [(r["model"], r["batch_size"]) for r in report["rows"]] == [("xxs", 2), ("xxs shifted-dw", 2)]
    assert all(r["train_images_per_s"] > 0 and r["infer_images_per_s"] > 0 for r in report["rows"])
    env = report["environments"]["xxs"]
    assert env["framework"].startswith("Keras ") and env["device"]
    saved = json.loads(next(tmp_path.glob("speed-*.json")).read_text())
    assert saved["rows"] == report["rows"]
    assert "| xxs | float32 | 2 |" in next(tmp_path.glob("speed-*.md")).read_text()


def test_the_timed_batch_stays_on_the_device():
    """Backend tensors, not numpy: from numpy, every timed call would copy the batch to the device first."""
    import keras

    import mvlib  # noqa: F401  (selects the backend before keras is used)

    _, x, y = speed.synthetic_step("xxs", "float32", batch_size=2, image_size=64)
    assert keras.ops.is_tensor(x) and keras.ops.is_tensor(y)
    assert tuple(x.shape) == (2, 64, 64, 3) and tuple(y.shape) == (2, 5)


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_torch_path_on_a_tiny_model(precision):
    torch = pytest.importorskip("torch")

    def tiny():
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 5))

    result = speed.measure_torch(tiny, precision, batch_size=2, image_size=16, warmup=1, steps=2)
    assert result["train_images_per_s"] > 0 and result["infer_images_per_s"] > 0


def test_best_rows_and_ratios():
    rows = [
        {"model": "keras-io", "precision": "float32", "batch_size": 64, "train_images_per_s": 100.0, "infer_images_per_s": 300.0},
        {"model": "xxs", "precision": "float32", "batch_size": 64, "train_images_per_s": 150.0, "infer_images_per_s": 600.0},
        {"model": "xxs", "precision": "mixed_bfloat16", "batch_size": 128, "train_images_per_s": 250.0, "infer_images_per_s": 500.0},
        {"model": "xxs", "precision": "float32", "batch_size": 512, "error": "ResourceExhaustedError: out of memory"},
    ]
    best = speed.best_rows(rows)
    assert best["xxs"][0]["batch_size"] == 128 and best["xxs"][1]["batch_size"] == 64
    report = {"title": "test", "command": "python bench/speed.py", "rows": rows,
              "environments": {"xxs": {"framework": "Keras", "device": "CPU", "python": "3.11"}}}
    markdown = speed.format_markdown(report)
    assert "| keras-io | 100.0 (64, float32) | 300.0 | 2.50x | 2.00x |" in markdown
    assert "ResourceExhaustedError" in markdown


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        speed.parse_args(["--variants", "xxl"])
    with pytest.raises(ValueError, match="steps >= 1"):
        speed.time_calls(lambda: None, warmup=0, steps=0)


pipeline_spec = importlib.util.spec_from_file_location("pipeline", ROOT / "bench" / "pipeline.py")
pipeline = importlib.util.module_from_spec(pipeline_spec)
pipeline_spec.loader.exec_module(pipeline)


def test_pipeline_bench_measures_each_loader_mix_and_worker_count(tmp_path):
    def bench(*options):
        return pipeline.run(pipeline.parse_args([
            "--source", "synthetic", "--data-dir", str(tmp_path / "photos"), "--limit", "10", "--image-size", "64",
            "--batch-size", "4", "--batches", "2", "--out", str(tmp_path), *options]))

    report = bench("--loader", "threads", "--workers", "1", "2", "--mix", "none", "mixup")
    assert [(r["mix"], r["workers"]) for r in report["rows"]] == [("none", 1), ("none", 2), ("mixup", 1), ("mixup", 2)]
    assert all(r["images_per_s"] > 0 and r["loader"] == "threads" for r in report["rows"])
    assert json.loads(next(tmp_path.glob("pipeline-*.json")).read_text())["rows"] == report["rows"]
    assert "| inception | mixup | threads" in next(tmp_path.glob("pipeline-*.md")).read_text()
    # in worker processes (tests/test_data.py checks that they make the batches threads make)
    report = bench("--loader", "processes", "--workers", "1", "--mix", "none")
    assert [(r["loader"], r["workers"]) for r in report["rows"]] == [("processes", 1)]
    assert report["rows"][0]["images_per_s"] > 0


def test_models_run_in_order_and_the_report_survives_a_stop(tmp_path, monkeypatch):
    """timm's model comes right after xxs, the shifted-depthwise experiment last, and the report is on disk
    after every model, so a run cut off by a time limit keeps what it measured."""
    measured = []

    def fake_child(request, timeout):
        if len(measured) == 4:
            raise KeyboardInterrupt  # the time limit
        measured.append(request["model"])
        row = {"model": request["model"], "precision": request["precision"], "batch_size": 2,
               "train_images_per_s": 1.0, "infer_images_per_s": 2.0}
        env = {"framework": "Keras 3 on jax", "device": "CPU, 2 cores", "python": "3.11"}
        return {"rows": [row], "environment": env}

    monkeypatch.setattr(speed, "run_child", fake_child)
    args = speed.parse_args(["--variants", "keras-io", "xxs", "xs", "--timm", "--shifted-depthwise", "--out", str(tmp_path)])
    with pytest.raises(KeyboardInterrupt):
        speed.run(args)
    assert measured == ["keras-io", "xxs", "timm mobilevit_xxs", "xs"]
    saved = json.loads((tmp_path / "speed-cpu-2-cores-jax.json").read_text())
    assert [r["model"] for r in saved["rows"]] == measured


def test_a_model_that_crashes_is_reported_and_the_run_goes_on(tmp_path, monkeypatch):
    def fake_child(request, timeout):
        if request["model"] == "keras-io":
            raise RuntimeError("keras-io (float32) failed, exit code -9: Killed")
        return {"rows": [{"model": request["model"], "precision": request["precision"], "batch_size": 2,
                          "train_images_per_s": 1.0, "infer_images_per_s": 2.0}],
                "environment": {"framework": "Keras 3 on jax", "device": "CPU, 2 cores", "python": "3.11"}}

    monkeypatch.setattr(speed, "run_child", fake_child)
    report = speed.run(speed.parse_args(["--variants", "keras-io", "xxs", "--out", str(tmp_path)]))
    assert [("error" in r, r["model"]) for r in report["rows"]] == [(True, "keras-io"), (False, "xxs")]
    assert "exit code -9: Killed" in (tmp_path / "speed-cpu-2-cores-jax.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["speed-cpu-2-cores-jax.json", "speed-cpu-2-cores-jax.md"]  # no stale "speed.md"
