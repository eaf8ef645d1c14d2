"""Space.py and Ground.py: exactly the seed's flags, its train-then-load flow end to end, one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lexactum.seed_cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
SEED_FLAGS = {"-h", "--help", "--dataset", "--train_or_load", "--model_name", "--no_of_epochs", "--batch_size",
              "--augment_images"}


def _run(script: str, *args, cwd=None, env_extra=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    env.update(MPLBACKEND="Agg", LEXACTUM_NO_PROGRESS="1", **(env_extra or {}))
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("script", ["Space.py", "Ground.py"])
def test_help_lists_exactly_the_seed_flags(script):
    done = _run(script, "--help")
    assert done.returncode == 0, done.stderr
    assert set(re.findall(r"(?<![\w-])(--?[a-z][a-z_]*)", done.stdout.split("examples:")[0])) == SEED_FLAGS
    assert "{train,load}" in done.stdout and "{True,False}" in done.stdout
    assert done.stdout.startswith(f"usage: {script}")


def test_defaults_and_choices_are_the_seeds():
    args = build_parser("space").parse_args([])
    assert (args.dataset, args.train_or_load, args.model_name, args.no_of_epochs, args.batch_size,
            args.augment_images) == (None, "train", "lens_flow", 10, 8, True)
    for text, value in (("False", False), ("True", True), ("false", False)):
        assert build_parser("ground").parse_args(["--augment_images", text]).augment_images is value


@pytest.mark.parametrize("args", [["--no_of_epochs", "ten"], ["--augment_images", "maybe"],
                                  ["--train_or_load", "fit"], ["--epochs", "3"]])
def test_bad_flags_exit_non_zero_with_one_line(args, tmp_path):
    done = _run("Space.py", *args, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Space.py: error:"), done.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--model_name", "alexnet"], "alexnet"),
    (["--dataset", "no/such/folder"], "does not exist"),
    (["--no_of_epochs", "0"], "epochs must be a positive"),
    (["--batch_size", "-1"], "batch_size must be a positive"),
    (["--train_or_load", "load", "--model_name", "missing.safetensors"], "missing.safetensors"),
    (["--train_or_load", "load", "--batch_size", "0"], "batch_size must be a positive"),
    (["--train_or_load", "load", "--no_of_epochs", "-3"], "epochs must be a positive"),
])
def test_bad_values_fail_with_one_line(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    dataset = [] if "--dataset" in args else ["--dataset", str(tmp_path)]
    assert main("space", [*dataset, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Space.py: error:") and message in err[0], err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "models").exists()


def test_train_then_load_end_to_end(make_dataset, tmp_path):
    dataset = make_dataset(n=60, seed=4)  # 19/1/80: 11 train, 1 validation, 48 test images
    env = {"LEXACTUM_CACHE_DIR": str(tmp_path / "cache")}
    trained = _run("Space.py", "--dataset", dataset, "--no_of_epochs", "1", "--batch_size", "8",
                   "--augment_images", "False", cwd=tmp_path, env_extra=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    model = tmp_path / "models" / "space_lens_flow_1epochs.safetensors"
    assert model.is_file()
    assert f"model saved as {Path('models') / model.name}" in trained.stdout
    for label in ("AUC", "TPR0", "TPR10", "TPR at 0.5", "FPR at 0.5", "ms/image"):
        assert label in trained.stdout
    train_run = Path(tmp_path / re.search(r"results: (\S+)", trained.stdout).group(1))
    assert (train_run / "roc.png").is_file()

    loaded = _run("Space.py", "--dataset", dataset, "--train_or_load", "load", "--model_name", model.name,
                  cwd=tmp_path, env_extra=env)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    load_run = Path(tmp_path / re.search(r"results: (\S+)", loaded.stdout).group(1))
    assert load_run != train_run and (load_run / "roc.png").is_file() and (load_run / "config.json").is_file()
    assert load_run.name.endswith(f"_{Path(model.name).stem}_load") and "space_space" not in load_run.name
    first, second = (json.loads((d / "metrics.json").read_text()) for d in (train_run, load_run))
    assert second["n"] == first["n"] == 48  # the same test part
    first_split, second_split = (json.loads((d / "split.json").read_text()) for d in (train_run, load_run))
    assert second_split["test"]["ids"] == first_split["test"]["ids"]
    assert second["auc"] == pytest.approx(first["auc"], abs=1e-9)
    assert second["tpr0"] == pytest.approx(first["tpr0"], abs=1e-9)



def test_training_again_keeps_the_other_model_under_a_backup_name(make_dataset, toy_model_file, tmp_path,
                                                                  monkeypatch, capsys):
    """The seed's fixed name gets the new model (load mode expects it); the model that was there is kept."""
    dataset = make_dataset(n=60, seed=4)
    seed_name = tmp_path / "models" / "space_lens_flow_1epochs.safetensors"
    toy_model_file(seed_name, 1, seed=9)
    before = seed_name.read_bytes()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEXACTUM_CACHE_DIR", str(tmp_path / "cache"))
    args = ["--dataset", str(dataset), "--no_of_epochs", "1", "--augment_images", "False"]
    assert main("space", args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    backups = [p for p in seed_name.parent.iterdir() if p != seed_name]
    assert len(backups) == 1 and re.fullmatch(r"space_lens_flow_1epochs\.\d{8}-\d{6}\.safetensors", backups[0].name)
    assert backups[0].read_bytes() == before and seed_name.read_bytes() != before
    assert f"kept as {Path('models') / backups[0].name}" in out
    assert "model saved as models/space_lens_flow_1epochs.safetensors" in out


def test_a_space_model_is_refused_by_ground(tmp_path, monkeypatch, capsys):
    from lexactum.models import create_model, save_model

    save_model(create_model("lens_flow", 1), tmp_path / "models" / "space.safetensors", {"survey": "space"})
    monkeypatch.chdir(tmp_path)
    args = ["--dataset", str(tmp_path), "--train_or_load", "load", "--model_name", "space.safetensors"]
    assert main("ground", args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "space" in err[0] and "ground" in err[0], err


def test_a_model_giving_nan_scores_is_named_by_its_file(make_dataset, tmp_path, monkeypatch, capsys):
    import torch

    from lexactum.models import create_model, save_model

    model = create_model("lens_flow", 1)
    with torch.no_grad():
        for weight in model.parameters():
            weight.fill_(float("nan"))
    save_model(model, tmp_path / "models" / "broken.safetensors", {"survey": "space"})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEXACTUM_CACHE_DIR", str(tmp_path / "cache"))
    args = ["--dataset", str(make_dataset(n=20, seed=8)), "--train_or_load", "load", "--model_name",
            "broken.safetensors"]
    assert main("space", args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"Space.py: error: {Path('models') / 'broken.safetensors'} gave 16 "
                                               "non-finite score(s)"), err


def test_load_scores_a_set_too_small_for_a_validation_part(make_dataset, toy_model_file, tmp_path, monkeypatch,
                                                          capsys):
    # 20 objects: the seed's 1% validation part is empty, which matters for training only.
    dataset = make_dataset(n=20, seed=8)
    toy_model_file(tmp_path / "models" / "space_lens_flow_1epochs.safetensors", 1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEXACTUM_CACHE_DIR", str(tmp_path / "cache"))
    args = ["--dataset", str(dataset), "--train_or_load", "load", "--model_name", "space_lens_flow_1epochs.safetensors"]
    assert main("space", args) == 0, capsys.readouterr().err
    run_dir = tmp_path / re.search(r"results: (\S+)", capsys.readouterr().out).group(1)
    assert json.loads((run_dir / "metrics.json").read_text())["n"] == 16  # the 80% test part


def test_load_a_seed_keras_file_end_to_end(make_dataset, keras_fixtures, tmp_path):
    """Issue 5: the seed's `--train_or_load load --model_name X.h5`, the file in a models/ folder, no TensorFlow."""
    import shutil

    import numpy as np

    from lexactum.data import ChallengeDataset
    from lexactum.data.cache import prepare
    from lexactum.data.loader import split_indices
    from lexactum.evaluation.evaluate import score
    from lexactum.models import load_model

    (tmp_path / "models").mkdir()
    name = "space_lens_flow_500epochs.h5"
    shutil.copyfile(keras_fixtures / "lens_flow_c1.h5", tmp_path / "models" / name)
    dataset = make_dataset(n=60, seed=5)
    env = {"LEXACTUM_CACHE_DIR": str(tmp_path / "cache")}
    loaded = _run("Space.py", "--dataset", dataset, "--train_or_load", "load", "--model_name", name,
                  cwd=tmp_path, env_extra=env)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    for label in ("AUC", "TPR0", "TPR10", "TPR at 0.5", "FPR at 0.5", "ms/image"):
        assert label in loaded.stdout
    run_dir = tmp_path / re.search(r"results: (\S+)", loaded.stdout).group(1)
    assert (run_dir / "roc.png").is_file() and not list((tmp_path / "models").glob("*.safetensors"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n"] == 48 and metrics["model"]["network"] == "lens_flow"  # the seed's 80% test part
    config = json.loads((run_dir / "config.json").read_text())  # every run records what it did
    assert config["model"] == str((tmp_path / "models" / name).resolve()) and config["n_test"] == 48
    assert json.loads((run_dir / "split.json").read_text())["test"]["n"] == 48

    # The scores written are the imported network's on the test part of the seed's split (seed 0).
    model = load_model(tmp_path / "models" / name)
    prepared = prepare(ChallengeDataset(dataset, survey="space"), cache_dir=tmp_path / "cache")
    test = split_indices(len(prepared), (0.19, 0.01, 0.80), 0)[2]
    expected = score(model, np.asarray(prepared.images)[test], "cpu")
    lines = (run_dir / "scores.csv").read_text().splitlines()
    assert lines[0] == "ID,label,score"
    written = np.array([float(line.split(",")[2]) for line in lines[1:]])
    ids = np.array([int(line.split(",")[0]) for line in lines[1:]])
    np.testing.assert_array_equal(ids, np.asarray(prepared.ids)[test])
    np.testing.assert_allclose(written, expected, rtol=0, atol=1e-6)

    # A 1-band file does not fit the 4-band survey: one clear line, non-zero exit.
    refused = _run("Ground.py", "--dataset", dataset, "--train_or_load", "load", "--model_name", name,
                   cwd=tmp_path, env_extra=env)
    assert refused.returncode == 2
    err = refused.stderr.strip().splitlines()
    assert len(err) == 1 and name in err[0] and "ground" in err[0], refused.stderr
