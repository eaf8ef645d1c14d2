"""``lexactum train``: options become the right TrainConfig, --resume keeps the run's settings, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lexactum import runs
from lexactum.cli import build_parser, main
from lexactum.cli.train import config_from_args
from lexactum.errors import LexactumError
from lexactum.training import parse_split


def _config(*argv):
    return config_from_args(build_parser().parse_args(["train", *map(str, argv)]))


def test_options_become_the_training_configuration(tmp_path):
    config = _config("--dataset", tmp_path, "--network", "wsi_net", "--survey", "ground", "--epochs", 3,
                     "--batch-size", 4, "--no-augment", "--split", "0.5,0.25,0.25", "--seed", 7,
                     "--device", "cpu", "--precision", "bf16-mixed", "--patience", 2, "--run-dir", tmp_path / "r",
                     "--model-out", tmp_path / "m.safetensors", "--cache-dir", tmp_path / "c",
                     "--normalisation", "zscale", "--bootstrap", 0, "--test-dataset", tmp_path / "t")
    assert (config.network, config.survey, config.epochs, config.batch_size, config.augment) == \
        ("wsi_net", "ground", 3, 4, False)
    assert config.split == (0.5, 0.25, 0.25) and config.seed == 7 and config.patience == 2
    assert (config.device, config.precision, config.bootstrap) == ("cpu", "bf16-mixed", 0)
    assert Path(config.run_dir) == tmp_path / "r" and Path(config.model_out) == tmp_path / "m.safetensors"
    assert Path(config.test_dataset) == tmp_path / "t" and not config.resume
    assert not config.overwrite and _config("--dataset", tmp_path, "--overwrite").overwrite
    resumed = runs.write_config(tmp_path / "run", {"config": {"dataset": str(tmp_path), "epochs": 2}}).parent
    assert _config("--resume", resumed, "--overwrite").overwrite  # a resume may ask for it too


def test_defaults_are_the_seeds(tmp_path):
    config = _config("--dataset", tmp_path)
    assert (config.network, config.epochs, config.batch_size, config.augment, config.seed) == \
        ("lens_flow", 10, 8, True, 0)
    assert config.resolved_split() == (0.19, 0.01, 0.80)
    assert config.device == "auto" and config.precision is None and config.patience is None


def test_resume_keeps_the_run_settings_and_refuses_changes(tmp_path):
    runs.write_config(tmp_path, {"config": {"dataset": str(tmp_path), "network": "lens_flow", "epochs": 2,
                                            "batch_size": 16, "split": [0.5, 0.25, 0.25], "seed": 3}})
    config = _config("--resume", tmp_path, "--epochs", 6, "--device", "cpu")
    assert config.resume and Path(config.run_dir) == tmp_path
    assert (config.epochs, config.batch_size, config.seed, config.device) == (6, 16, 3, "cpu")
    assert config.split == (0.5, 0.25, 0.25)
    with pytest.raises(LexactumError, match="batch_size was 16"):
        _config("--resume", tmp_path, "--batch-size", 8)
    with pytest.raises(LexactumError, match="not both"):
        _config("--resume", tmp_path, "--run-dir", tmp_path)


@pytest.mark.parametrize(("argv", "message"), [
    ([], "--dataset PATH is required"),
    (["--dataset", "nowhere"], "does not exist"),
    (["--dataset", ".", "--split", "0.5;0.5"], "--split must be"),
    (["--dataset", ".", "--epochs", "0"], "epochs must be a positive"),
    (["--dataset", ".", "--network", "alexnet"], "unknown network 'alexnet'"),
    (["--dataset", ".", "--seed", str(2**32)], "seed must be a whole number from 0 to 4294967295, got 4294967296"),
    (["--resume", "nowhere"], "run folder does not exist"),
])
def test_errors_are_one_line_with_exit_status_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lexactum train: error:") and message in err[0], err


def test_parse_split():
    assert parse_split("0.19,0.01,0.80") == (0.19, 0.01, 0.8)
    assert parse_split("0.9,0.1") == (0.9, 0.1)
    with pytest.raises(LexactumError, match="'a,b,c'"):
        parse_split("a,b,c")


def test_train_command_end_to_end(make_dataset, tmp_path, capsys):
    dataset = make_dataset(survey="ground", n=48, seed=2, mask_fraction=0.5)
    rc = main(["train", "--dataset", str(dataset), "--epochs", "1", "--batch-size", "16", "--split",
               "0.5,0.25,0.25", "--device", "cpu", "--run-dir", str(tmp_path / "run"), "--model-out",
               str(tmp_path / "model.safetensors"), "--cache-dir", str(tmp_path / "cache"), "--bootstrap", "0"])
    assert rc == 0
    out = capsys.readouterr().out
    assert f"run folder: {tmp_path / 'run'}" in out and f"model file: {tmp_path / 'model.safetensors'}" in out
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["config"]["epochs"] == 1 and saved["config"]["split"] == [0.5, 0.25, 0.25]
    assert saved["config"]["survey"] == "ground"
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "run" / "roc.png").is_file()
