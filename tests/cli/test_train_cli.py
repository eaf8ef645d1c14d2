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


# ------------------------------------------------------------------------------- many processes (DDP)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "SLURM_NTASKS")


@pytest.fixture
def two_cores(monkeypatch):
    """A plain command on a CPU machine with 2 cores (CI's), whatever runs the tests."""
    import os

    import torch

    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return monkeypatch


def test_the_options_of_many_processes_reach_the_configuration(tmp_path):
    config = _config("--dataset", tmp_path, "--devices", 2, "--accelerator", "cpu", "--num-nodes", 3,
                     "--strategy", "ddp")
    assert (config.devices, config.accelerator, config.num_nodes, config.strategy) == (2, "cpu", 3, "ddp")
    config = _config("--dataset", tmp_path)
    assert (config.devices, config.accelerator, config.num_nodes, config.strategy) == (None, None, 1, "auto")


@pytest.mark.parametrize(("argv", "message"), [
    (["--devices", "3", "--accelerator", "cpu"], r"--devices 3 CPU processes: this machine lets us use 2 core\(s\)"),
    (["--devices", "2", "--device", "cuda:0"], r"--device cuda:0 names one device; --accelerator/--devices count"),
    (["--devices", "2", "--accelerator", "cpu", "--batch-size", "5"],
     r"--batch-size 5 is the global batch and must divide evenly among the 2 processes"),
    (["--devices", "0"], r"--devices must be a positive whole number, got 0"),
])
def test_many_processes_that_cannot_run_are_refused_before_anything_is_written(argv, message, two_cores,
                                                                               make_dataset, tmp_path, capsys):
    import re

    dataset = make_dataset(n=12)
    two_cores.chdir(tmp_path)
    assert main(["train", "--dataset", str(dataset), "--cache-dir", str(tmp_path / "cache"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lexactum train: error:") and re.search(message, err[0]), err
    assert list(tmp_path.iterdir()) == []  # no run folder, model or cache


def _command_lines(script: Path, start: str) -> list[str]:
    """The lines of ``script`` (comments' '#' dropped) that begin with ``start``, continuation lines joined."""
    lines = [line.lstrip("#").strip() for line in script.read_text().splitlines()]
    commands, current = [], None
    for line in lines:
        if current is not None:
            current += " " + line.rstrip("\\").strip()
        elif line.startswith(start):
            current = line.rstrip("\\").strip()
        if current is not None and not line.endswith("\\"):
            commands.append(current)
            current = None
    return commands


def _expand(text: str, variables: dict) -> str:
    """``$NAME`` and ``${NAME}`` replaced by their values (an unknown one is a KeyError: the test must know it)."""
    import re

    return re.sub(r"\$\{?(\w+)\}?", lambda match: variables[match[1]], text)


def test_the_slurm_example_is_bash_and_its_train_commands_parse(tmp_path):
    """examples/slurm_train.sh cannot rot: bash reads it, and its srun and torchrun command lines are accepted
    by this version's parser, with as many processes as the #SBATCH lines ask for."""
    import re
    import shlex
    import subprocess

    script = EXAMPLES / "slurm_train.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    sbatch = dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)", text, re.MULTILINE))
    variables = {"SLURM_NNODES": sbatch["nodes"], "SLURM_JOB_ID": "1234", "HOME": str(tmp_path)}
    for name, value in re.findall(r"^(\w+)=(\S+)$", text, re.MULTILINE):  # in order: later ones use earlier
        variables[name] = _expand(value, variables)
    srun = [c for c in _command_lines(script, "srun") if " lexactum train " in c]
    torchrun = _command_lines(script, "torchrun")
    assert len(srun) == 1 and len(torchrun) == 1
    configs = []
    for command in (*srun, *torchrun):
        argv = shlex.split(_expand(command, variables))
        configs.append(config_from_args(build_parser().parse_args(argv[argv.index("train"):])))
    for config in configs:
        assert config.accelerator == "gpu" and config.run_dir is not None
        assert config.batch_size % (config.devices * config.num_nodes) == 0
    assert configs[0].devices == int(sbatch["ntasks-per-node"]) == int(sbatch["gpus-per-node"])
    assert configs[0].num_nodes == int(sbatch["nodes"]) and configs[0].run_dir == "runs/slurm-1234"
