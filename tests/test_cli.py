"""``python -m mvlib``: the commands call the library, and user mistakes end in one ``error:`` line."""

import pytest

import mvlib  # noqa: F401
from mvlib import cli
from mvlib.data import make_synthetic_flowers


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_summary_prints_the_parameter_table(capsys):
    code, out, _ = run(capsys, "summary", "xxs", "keras-io")
    assert code == 0
    assert "xxs            956,741     952,629" in out and "keras-io     1,307,621   1,305,077" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["summary", "xxl"], "unknown variant 'xxl'"),
        (["predict", "no/such/photo.jpg", "--run-dir", "pretrained"], "no such image file: 'no/such/photo.jpg'"),
        (["evaluate", "--run-dir", "no/such/run"], "no/such/run is not a run folder"),
        (["train", "--variant", "xxl", "--source", "synthetic", "--data-dir", "{tmp}", "--epochs", "1"], "unknown variant 'xxl'"),
        (["predict", "x.jpg", "--run-dir", "pretrained", "--weights", "best"], "there is no best epoch"),
        (["predict", "x.jpg", "--run-dir", "pretrained", "--image-size", "0"], "image_size must be a positive multiple of 32"),
    ],
)
def test_user_mistakes_are_one_line(capsys, tmp_path, argv, message):
    code, _, err = run(capsys, *[a.replace("{tmp}", str(tmp_path / "photos")) for a in argv])
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1], err
    assert "Traceback" not in err


def test_top_k_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        cli.main(["predict", "x.jpg", "-k", "0"])
    assert "expected a whole number >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["evaluate", "export", "measure"])
def test_a_trained_run_is_checked_on_its_own_validation_split(monkeypatch, command):
    """The split depends on the seed: data loaded for a run trained with --seed 7 must be split with 7 too,
    or its validation photos would be mostly photos it trained on."""
    from mvlib.training import pretrained

    class Loaded(Exception):
        pass

    def load_flowers(*args, seed, **kwargs):
        raise Loaded(seed)

    monkeypatch.setattr(pretrained, "load_trained", lambda *a, **k: (None, {"seed": 7, "image_size": 64}))
    monkeypatch.setattr("mvlib.data.load_flowers", load_flowers)
    with pytest.raises(Loaded) as loaded:
        cli.main([command, "--run-dir", "somewhere"])
    assert loaded.value.args == (7,)


def test_predict_with_the_shipped_weights(capsys, tmp_path):
    photos = make_synthetic_flowers(tmp_path / "photos", num_per_class=1, image_size=96)
    photo = sorted(photos.glob("*/*.jpg"))[0]
    code, out, _ = run(capsys, "predict", str(photo), "--run-dir", "pretrained", "-k", "2")
    assert code == 0
    line = out.strip().splitlines()[-1]
    assert line.startswith(f"{photo}: ") and line.count("%") == 2  # top-2 classes with probabilities


def test_run_trains_small_then_evaluates_and_exports_at_the_serving_size(monkeypatch, capsys):
    """The main job's wiring (each command is tested on its own): train at 160, the rest at 256 with the
    `evaluate` and `export` commands' own defaults, on the same data and run folder."""
    calls = []
    for name in ("cmd_summary", "cmd_train", "cmd_evaluate", "cmd_export"):
        monkeypatch.setattr(cli, name, lambda args, name=name: calls.append((name, vars(args))))
    assert run(capsys, "run", "--source", "folder", "--data-dir", "photos", "--epochs", "3")[0] == 0
    (_, summary), (_, train), (_, evaluate), (_, export) = calls
    assert [c[0] for c in calls] == ["cmd_summary", "cmd_train", "cmd_evaluate", "cmd_export"]
    assert summary["image_size"] == 256 and train["image_size"] == 160 and train["epochs"] == 3
    assert train["no_evaluate"] and train["recipe"] == "improved" and train["run_dir"] is None
    for step in (evaluate, export):
        assert (step["run_dir"], step["image_size"], step["source"], step["data_dir"]) == ("runs/xxs-improved", 256, "folder", "photos")
    assert export["calibration_images"] == 300 and export["check_images"] is None and export["kinds"] is None
