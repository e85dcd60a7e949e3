"""mvlib.bench: ratio arithmetic, report structure, the child-process JSON protocol, tiny real measures.

Timings themselves are never checked (they depend on the machine); only that they are there, positive
and consistent with each other. One tiny real run (64 px, batch 4, 1 warm-up + 2 steps) of one variant goes through a
child process; the pipeline runs in this process on a handful of synthetic JPEGs.
"""

import argparse
import json
import os

import pytest

import mvlib  # noqa: F401
from mvlib import bench
from mvlib.data import make_synthetic_flowers
from mvlib.model import VARIANTS

TINY = dict(batch_size=4, image_size=64, warmup_steps=1, steps=2)


def fake_variant(name, train, infer, peak, params=1000):
    """A measure_variant-shaped result with chosen throughputs (images/s) and peak memory (MiB)."""
    def timing(ips):
        return {"images_per_s": ips, "median_step_ms": 64e3 / ips, "step_s": [64 / ips] * 2, "warmup_s": [1.0]}
    return {"variant": name, "params": params, "train": timing(train), "inference": timing(infer),
            "peak_rss_mib": peak, "memory": {"built": {"rss_mib": 600.0}, "after_train": {"peak_rss_mib": peak}},
            "threads": {"intra_op": 0, "inter_op": 0, "meaning": "0 = default", "note": None}}


def fake_pipeline(first, cached, n=128):
    return {"data_dir": "/photos", "num_images": n, "augment": "keras-io", "setup_s": 1.0,
            "first_epoch": {"images": n, "seconds": n / first, "images_per_s": first},
            "cached": {"images": n, "seconds": n / cached, "images_per_s": cached},
            "memory": {"peak_rss_mib": 900.0}}


def fake_report(variants, pipeline):
    return {
        "command": "python -m mvlib bench --steps 2",
        "settings": {"variants": list(variants), "batch_size": 64, "image_size": 256, "warmup_steps": 3, "steps": 10,
                     "recipe": "keras-io", "isolate": True},
        "machine": {"cpu_model": "Test CPU", "cpu_count": 2, "cpus_usable": 2, "ram_gib": 8.0, "platform": "Linux",
                    "python": "3.11", "tensorflow": "2.21.0", "keras": "3.15.0", "gpus": [],
                    "loadavg_before": [0.1, 0.1, 0.1], "loadavg_after": [1.0, 0.5, 0.2]},
        "busy": False,
        "threads": {"intra_op": 0, "inter_op": 0, "meaning": "0 = default", "note": None},
        "variants": variants,
        "pipeline": pipeline,
        "summary": bench.summarize(variants, pipeline),
        "notes": ["a note"],
    }


def test_ratios_and_targets():
    variants = {"keras-io": fake_variant("keras-io", 10.0, 40.0, 2000.0),
                "xxs": fake_variant("xxs", 35.0, 100.0, 1500.0),
                "s": fake_variant("s", 20.0, 130.0, 2400.0)}
    summary = bench.summarize(variants, fake_pipeline(first=50.0, cached=140.0))
    base, xxs, s = (summary["variants"][k] for k in ("keras-io", "xxs", "s"))
    assert base["train_speedup"] == 1.0 and base["inference_speedup"] == 1.0 and base["memory_ratio"] == 1.0
    assert base["pass_train"] is None and base["pass_inference"] is None and base["pass_memory"] is None
    assert xxs["train_speedup"] == pytest.approx(3.5) and xxs["pass_train"] is True
    assert xxs["inference_speedup"] == pytest.approx(2.5) and xxs["pass_inference"] is False
    assert xxs["memory_ratio"] == pytest.approx(0.75) and xxs["pass_memory"] is True
    assert xxs["pipeline_cached_over_train"] == pytest.approx(4.0) and xxs["pass_pipeline"] is True
    assert xxs["pipeline_first_epoch_over_train"] == pytest.approx(50 / 35)
    assert s["pass_train"] is False and s["inference_speedup"] == pytest.approx(3.25) and s["pass_inference"] is True
    assert s["memory_ratio"] == pytest.approx(1.2) and s["pass_memory"] is False
    assert list(summary["headline"].values()) == [True, False, True, True]  # the targets are stated for xxs

    exactly = bench.summarize({"keras-io": fake_variant("keras-io", 10.0, 10.0, 100.0),
                               "xxs": fake_variant("xxs", 30.0, 30.0, 100.0)}, fake_pipeline(10.0, 90.0))
    assert all(exactly["headline"].values())  # >= 3x and <= keras-io's memory: the boundaries pass

    alone = bench.summarize({"xxs": fake_variant("xxs", 30.0, 30.0, 100.0)}, None)
    row = alone["variants"]["xxs"]
    assert row["train_speedup"] is None and row["pass_train"] is None and row["pass_pipeline"] is None
    assert set(alone["headline"].values()) == {None}


def test_markdown_and_json_report(tmp_path):
    variants = {"keras-io": fake_variant("keras-io", 10.0, 40.0, 2000.0, params=1_307_621),
                "xxs": fake_variant("xxs", 35.0, 100.0, 1500.0, params=952_629)}
    report = fake_report(variants, fake_pipeline(first=50.0, cached=140.0))
    md_path, json_path = bench.write_report(report, tmp_path / "out")
    assert (md_path.name, json_path.name) == ("results.md", "results.json")
    md = md_path.read_text()
    assert md == bench.format_markdown(report)
    assert "`python -m mvlib bench --steps 2`" in md and "Test CPU" in md and "TensorFlow 2.21.0" in md
    model_rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert len(model_rows) == 2
    cells = [c.strip() for c in model_rows[1].strip("|").split("|")]
    # variant, params, train, x, infer, x, peak, x, training adds, train>=3x, infer>=3x, memory<=
    assert cells == ["`xxs`", "952,629", "35.00", "3.50", "100.00", "2.50", "1500", "0.75", "900", "PASS", "FAIL",
                     "PASS"]
    assert "| cached: train_stream(augment='keras-io') | 128 |" in md
    assert "cached pipeline >= 3x xxs training images/s: **PASS**" in md
    assert "xxs inference >= 3x keras-io: **FAIL**" in md
    loaded = json.loads(json_path.read_text())
    assert loaded["summary"]["variants"]["xxs"]["train_speedup"] == pytest.approx(3.5)
    assert set(loaded) >= {"command", "settings", "machine", "threads", "variants", "pipeline", "summary"}

    no_pipeline = bench.format_markdown(fake_report(variants, None))
    assert "Input pipeline" not in no_pipeline and "cached pipeline >= 3x xxs training images/s: **n/a**" in no_pipeline


def test_arguments_and_command_line():
    assert bench.VARIANT_NAMES == tuple(VARIANTS)
    parser = bench.add_bench_arguments(argparse.ArgumentParser())
    args = parser.parse_args([])
    assert args.variants == ["keras-io", "xxs"] and (args.batch_size, args.image_size) == (64, 256)
    assert args.out == "bench" and args.isolate is True and args.recipe == "keras-io"
    args = parser.parse_args(["--variants", "xxs", "s", "--steps", "3", "--no-subprocess", "--pipeline-images", "0"])
    assert args.variants == ["xxs", "s"] and args.steps == 3 and args.isolate is False and args.pipeline_images == 0
    with pytest.raises(SystemExit):
        parser.parse_args(["--variants", "xxl"])
    assert bench._command_line(["/repo/mvlib/__main__.py", "bench", "--out", "a b"]) == "python -m mvlib bench --out 'a b'"
    assert bench._command_line(["/repo/mvlib/bench.py", "--steps", "2"]) == "python -m mvlib.bench --steps 2"
    with pytest.raises(ValueError, match="unknown variant"):
        bench.run_benchmark(["xxl"], pipeline_images=None)


def test_memory_usage_reads_the_high_water_mark():
    memory = bench.memory_usage()
    assert memory["peak_rss_mib"] >= memory["rss_mib"] > 0


def test_child_failure_is_reported():
    with pytest.raises(RuntimeError, match="(?s)exited with code 1.*unexpected keyword argument 'bogus'"):
        bench.run_in_subprocess("pipeline", {"bogus": 1}, progress=lambda m: None)
    with pytest.raises(ValueError, match="unknown kind"):
        bench.run_in_subprocess("gpu", {})


def test_pipeline_on_synthetic_photos(tmp_path):
    photos = make_synthetic_flowers(tmp_path / "photos", num_per_class=4, image_size=96)  # 15 train, 5 val
    messages = []
    pipeline = bench.measure_pipeline(photos, images=12, image_size=64, batch_size=4, progress=messages.append)
    assert pipeline["num_images"] == 12 and pipeline["first_epoch"]["images"] == 12
    assert pipeline["cached"]["images"] == 12  # ceil(12 / 4) timed batches of 4
    for phase in ("first_epoch", "cached"):
        assert pipeline[phase]["images_per_s"] == pytest.approx(12 / pipeline[phase]["seconds"])
    assert pipeline["data_dir"] == str(photos) and pipeline["memory"]["peak_rss_mib"] > 0
    assert any("first (uncached) epoch" in m for m in messages) and any("cached steady" in m for m in messages)


def test_one_variant_in_a_child_process(tmp_path):
    """The real thing, tiny: one variant trained and run in its own process, its JSON line parsed."""
    messages = []
    report = bench.run_benchmark(["xxs"], **TINY, pipeline_images=None, timeout=300, command="pytest",
                                 progress=messages.append)
    xxs = report["variants"]["xxs"]
    assert (xxs["params"], xxs["trainable_params"]) == (956_741, 952_629)  # paper XXS, 5 classes (+ BN statistics)
    assert xxs["batch_size"] == 4 and xxs["image_size"] == 64 and xxs["optimizer"] == "Adam"
    for part in ("train", "inference"):
        assert len(xxs[part]["step_s"]) == 2 and len(xxs[part]["warmup_s"]) == 1
        assert xxs[part]["images_per_s"] == pytest.approx(4 * 2 / sum(xxs[part]["step_s"]), rel=1e-2)
    memory = xxs["memory"]
    assert memory["after_train"]["peak_rss_mib"] >= memory["built"]["rss_mib"] > 0
    assert xxs["peak_rss_mib"] == memory["after_train"]["peak_rss_mib"]
    assert xxs["pid"] != os.getpid()  # it ran in a child
    assert xxs["threads"]["intra_op"] == 0 and xxs["threads"]["note"] is None  # TensorFlow's defaults, untouched
    assert any("xxs: training" in m for m in messages) and any("xxs: inference" in m for m in messages)
    assert report["pipeline"] is None and report["summary"]["variants"]["xxs"]["pass_pipeline"] is None

    md, js = bench.write_report(report, tmp_path / "bench")
    assert json.loads(js.read_text())["command"] == "pytest" and "| `xxs` | 956,741 |" in md.read_text()
