"""mvlib.notebook: repository URL and Colab cell, quick mode, reporting helpers, example photo."""

import keras
import pytest

import mvlib  # noqa: F401
from mvlib import notebook
from mvlib.model import blocks, kerasio
from mvlib.notebook import block_model


@pytest.mark.parametrize("value,quick", [("1", True), ("true", True), ("Yes", True), ("0", False), ("", False), ("no", False)])
def test_quick_mode(monkeypatch, value, quick):
    monkeypatch.setenv("MVLIB_QUICK", value)
    assert notebook.quick_mode() is quick
    assert notebook.by_mode(full=30, quick=1) == (1 if quick else 30)


def test_quick_mode_defaults_to_full(monkeypatch):
    monkeypatch.delenv("MVLIB_QUICK", raising=False)
    assert notebook.quick_mode() is False


def test_colab_install_cell_is_plain_python_that_installs_the_package():
    source = notebook.colab_install_source()
    compile(source, "install-cell", "exec")  # plain Python, no shell magics: the .py twin stays valid
    assert repr(notebook.PIP_SPEC).replace("'", '"') in source and '"google.colab" in sys.modules' in source
    url = notebook.colab_url("notebooks/01_building_blocks.ipynb")
    assert url.endswith(f"/{notebook.REPO}/blob/main/notebooks/01_building_blocks.ipynb")


def test_format_table():
    text = notebook.format_table(["name", "count"], [["a", 1234], ["bb", 5]])
    assert text.splitlines() == ["name  count", "----  -----", "a     1,234", "bb        5"]


def test_block_model_reports():
    model = block_model(blocks.conv_bn_act, (16, 16, 3), name="stem", filters=8, strides=2)
    assert notebook.block_report(model) == "stem: (B, 16, 16, 3) -> (B, 8, 8, 8), 248 params (232 trainable)"
    table = notebook.layer_table(model).splitlines()
    assert table[0].split() == ["layer", "type", "output", "shape", "params"]
    assert [line.split()[0] for line in table[2:]] == ["stem_pad", "stem_conv", "stem_bn", "stem_silu"]
    assert table[3].endswith("216")  # 3*3*3*8
    assert len(notebook.layer_table(model, prefix="stem_c").splitlines()) == 3


def test_architecture_facts_read_the_layers():
    inputs = keras.Input((8, 8, 16))
    paper = keras.Model(inputs, blocks.mobilevit_block(inputs, dim=16, depth=1, num_heads=4, dropout=0.05, name="p"))
    example = keras.Model(inputs, kerasio.mobilevit_block(inputs, 1, 16, 2, name="k"))
    p, k = notebook.architecture_facts(paper), notebook.architecture_facts(example)
    assert p["map -> sequences"] == "Unfold" and k["map -> sequences"] == "Reshape"
    assert p["attention heads x key_dim"] == "4 x 4" and k["attention heads x key_dim"] == "2 x 16"
    assert p["attention_axes (first attention's input)"] == "(1,) of (B, 16, 16)"
    assert k["attention_axes (first attention's input)"] == "(1, 2) of (B, 4, 16, 16)"
    assert p["LayerNorm epsilon"] == "1e-05" and k["LayerNorm epsilon"] == "1e-06"
    assert p["convolutions (with bias)"] == "4 (0)" and k["convolutions (with bias)"] == "4 (4)"
    assert p["classifier dropout"] == "none"


def test_example_photo_falls_back_to_synthetic(monkeypatch, tmp_path):
    from mvlib import data

    monkeypatch.setattr(data.flowers, "default_data_dir", lambda: tmp_path / "missing")
    monkeypatch.setattr(data.flowers, "tfds_available", lambda: False)
    monkeypatch.setenv("MVLIB_CACHE_DIR", str(tmp_path / "cache"))
    image, note = notebook.example_photo(64)
    assert image.shape == (64, 64, 3) and note.startswith("SYNTHETIC")


def test_example_photo_reads_the_folder(monkeypatch, tmp_path):
    from mvlib import data

    root = data.make_synthetic_flowers(tmp_path / "photos", num_per_class=2, image_size=32, class_names=("sunflowers",))
    monkeypatch.setattr(data.flowers, "default_data_dir", lambda: root)
    image, note = notebook.example_photo(64)
    assert image.shape == (64, 64, 3) and note == "photo photos/sunflowers/sunflowers_0000.jpg"


def test_show_jpeg_displays_and_closes(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import IPython.display
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    fig = plt.figure()
    notebook.show_jpeg(fig)
    assert shown[0].format == "jpeg" and shown[0].data[:2] == b"\xff\xd8"
    assert not plt.fignum_exists(fig.number)


def test_load_data_falls_back_to_synthetic(monkeypatch, tmp_path, capsys):
    """Where no real photos can be had (CI in a bare clone), the notebooks still get data, labelled synthetic."""
    from mvlib import data

    monkeypatch.setattr(data.flowers, "default_data_dir", lambda: tmp_path / "missing")
    monkeypatch.setattr(data.flowers, "tfds_available", lambda: False)
    monkeypatch.delenv("MVLIB_DATA_DIR", raising=False)
    monkeypatch.setenv("MVLIB_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(data.DataSourceError):
        data.load_flowers("auto", image_size=64)
    flowers = notebook.load_data(image_size=64, batch_size=8, limit=10)
    assert flowers.source == "synthetic" and "SYNTHETIC" in flowers.describe()
    assert "using the SYNTHETIC set instead" in capsys.readouterr().out
