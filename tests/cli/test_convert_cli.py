"""``lexactum convert``: the seed's .h5 models to our model files, through the command line."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys

import pytest

from lexactum.cli import main


@pytest.fixture
def h5_copy(keras_fixtures, tmp_path):
    target = tmp_path / "space_lens_flow_3epochs.h5"
    shutil.copyfile(keras_fixtures / "lens_flow_c1.h5", target)
    return target


def test_convert_writes_next_to_the_input(h5_copy, capsys):
    from lexactum.models.files import load_model

    assert main(["convert", str(h5_copy)]) == 0
    out = h5_copy.with_suffix(".safetensors")
    assert str(out) in capsys.readouterr().out
    metadata = load_model(out, survey="space").metadata
    assert metadata["network"] == "lens_flow"
    assert metadata["source"] == str(h5_copy)
    assert metadata["source_sha256"] == hashlib.sha256(h5_copy.read_bytes()).hexdigest()
    assert metadata["keras_version"] == "2.15.0"


def test_existing_output_is_kept_unless_overwrite(h5_copy, capsys):
    out = h5_copy.with_suffix(".safetensors")
    out.write_bytes(b"precious")
    assert main(["convert", str(h5_copy)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "already exists" in error and "--overwrite" in error
    assert out.read_bytes() == b"precious"
    assert main(["convert", str(h5_copy), "--overwrite"]) == 0
    assert out.read_bytes() != b"precious"


def test_out_option_and_bare_name_in_models(h5_copy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    shutil.move(h5_copy, tmp_path / "models" / h5_copy.name)
    assert main(["convert", h5_copy.name]) == 0
    assert (tmp_path / "models" / h5_copy.with_suffix(".safetensors").name).is_file()
    assert main(["convert", h5_copy.name, "--out", "elsewhere/flow.safetensors"]) == 0
    assert (tmp_path / "elsewhere" / "flow.safetensors").is_file()


def test_bad_input_is_one_line_error(tmp_path, capsys):
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    assert main(["convert", str(text)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(text) in error
    assert not text.with_suffix(".safetensors").exists()
    assert main(["convert", str(tmp_path / "absent.h5")]) == 2
    assert "not found" in capsys.readouterr().err


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", "--help"])
    assert exit_info.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_module_imports_nothing_heavy():
    code = ("import sys, lexactum.cli.convert; "
            "heavy = [m for m in ('numpy', 'torch', 'h5py', 'safetensors') if m in sys.modules]; "
            "sys.exit(str(heavy) if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("extra", [[], ["--overwrite"], ["--out", "copy.safetensors"]])
def test_a_safetensors_input_is_refused_by_name_and_kept(tmp_path, capsys, monkeypatch, extra):
    from lexactum.models import create_model, save_model

    monkeypatch.chdir(tmp_path)
    model = save_model(create_model("lens_flow", 1), tmp_path / "space.safetensors", {"survey": "space"})
    before = model.read_bytes()
    assert main(["convert", str(model), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"lexactum convert: error: {model}: already a .safetensors model file (convert reads the "
                   "seed's Keras .h5 files); use it as it is"]
    assert model.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["space.safetensors"]
