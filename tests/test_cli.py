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
    ],
)
def test_user_mistakes_are_one_line(capsys, tmp_path, argv, message):
    code, _, err = run(capsys, *[a.replace("{tmp}", str(tmp_path / "photos")) for a in argv])
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1], err
    assert "Traceback" not in err


def test_predict_with_the_shipped_weights(capsys, tmp_path):
    photos = make_synthetic_flowers(tmp_path / "photos", num_per_class=1, image_size=96)
    photo = sorted(photos.glob("*/*.jpg"))[0]
    code, out, _ = run(capsys, "predict", str(photo), "--run-dir", "pretrained", "-k", "2")
    assert code == 0
    line = out.strip().splitlines()[-1]
    assert line.startswith(f"{photo}: ") and line.count("%") == 2  # top-2 classes with probabilities
