"""bench/litert_targets.py: issue 14's targets held against measurement rows (the arithmetic; no timing)."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("litert_targets", ROOT / "bench" / "litert_targets.py")
targets = importlib.util.module_from_spec(spec)
spec.loader.exec_module(targets)
check_targets = targets.check_targets


def test_check_targets_arithmetic():
    rows = [
        {"file": "(keras) m", "kind": "keras", "size_mb": None, "val_top1": 0.900, "baseline": False},
        {"file": "m_int8.tflite", "kind": "int8", "size_mb": 1.1, "val_top1": 0.897, "latency_vs_baseline": 0.6, "baseline": False},
        {"file": "m_dynamic.tflite", "kind": "dynamic", "size_mb": 1.3, "val_top1": 0.890, "latency_vs_baseline": 0.4, "baseline": False},
        {"file": "(keras) keras-io", "kind": "keras", "size_mb": None, "val_top1": 0.5, "baseline": True},
        {"file": "keras-io_dynamic.tflite", "kind": "dynamic", "size_mb": 1.4, "val_top1": 0.5, "latency_vs_baseline": 1.0, "baseline": True},
    ]
    assert [t["met"] for t in check_targets(rows)] == [True, True, False]
    assert [t["met"] for t in check_targets(rows, "dynamic")] == [False, False, True]  # ours, not the baseline's
    assert check_targets(rows)[1]["measured"] == pytest.approx(0.3)
    unlabelled = [{**r, "val_top1": None} for r in rows]
    assert check_targets(unlabelled)[1]["met"] is None
    with pytest.raises(ValueError, match="no float16 export"):
        check_targets(rows, "float16")


def test_command_line_exit_status(tmp_path, capsys):
    rows = [
        {"file": "(keras) m", "kind": "keras", "size_mb": None, "val_top1": 0.9, "baseline": False},
        {"file": "m_int8.tflite", "kind": "int8", "size_mb": 1.0, "val_top1": 0.9, "latency_vs_baseline": 0.4, "baseline": False},
    ]
    path = tmp_path / "measurements.json"
    path.write_text(json.dumps({"settings": {}, "rows": rows}))
    assert targets.main([str(path)]) == 0
    rows[1]["size_mb"] = 1.3
    path.write_text(json.dumps({"settings": {}, "rows": rows}))
    assert targets.main([str(path)]) == 1
    assert "open" in capsys.readouterr().out
