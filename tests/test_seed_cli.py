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
    assert load_run != train_run and (load_run / "roc.png").is_file()
    first, second = (json.loads((d / "metrics.json").read_text()) for d in (train_run, load_run))
    assert second["n"] == first["n"] == 48  # the same test part
    assert second["auc"] == pytest.approx(first["auc"], abs=1e-9)
    assert second["tpr0"] == pytest.approx(first["tpr0"], abs=1e-9)



def test_a_space_model_is_refused_by_ground(tmp_path, monkeypatch, capsys):
    from lexactum.models import create_model, save_model

    save_model(create_model("lens_flow", 1), tmp_path / "models" / "space.safetensors", {"survey": "space"})
    monkeypatch.chdir(tmp_path)
    args = ["--dataset", str(tmp_path), "--train_or_load", "load", "--model_name", "space.safetensors"]
    assert main("ground", args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "space" in err[0] and "ground" in err[0], err
