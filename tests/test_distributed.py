"""lexactum.distributed: the options of many devices and nodes, checked once, and which process is rank 0."""

from __future__ import annotations

import argparse
import os

import pytest
import torch

from lexactum import distributed
from lexactum.distributed import Distribution, add_distribution_arguments, is_global_zero, resolve_distribution
from lexactum.errors import LexactumError

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "SLURM_NTASKS")


@pytest.fixture(autouse=True)
def plain_launch(monkeypatch):
    """A command started by hand on a CPU machine with 4 cores, whatever runs these tests (CI, srun, a GPU)."""
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    return monkeypatch


def _gpus(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_the_options_parse_with_their_defaults():
    parser = argparse.ArgumentParser()
    add_distribution_arguments(parser)
    args = parser.parse_args([])
    assert (args.accelerator, args.devices, args.num_nodes, args.strategy) == (None, None, 1, "auto")
    args = parser.parse_args(["--accelerator", "cpu", "--devices", "2", "--num-nodes", "3", "--strategy", "ddp"])
    assert (args.accelerator, args.devices, args.num_nodes, args.strategy) == ("cpu", 2, 3, "ddp")
    with pytest.raises(SystemExit):  # sharded weights: rank 0 could not write the whole model
        parser.parse_args(["--strategy", "fsdp"])


def test_one_process_by_default_and_several_with_ddp():
    single = resolve_distribution()
    assert not single.is_distributed and single.world_size == 1 and single.strategy == "auto"
    assert single.trainer_kwargs() == {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto"}
    assert single.describe() == "cpu"
    two = resolve_distribution(accelerator="cpu", devices=2)
    assert two == Distribution("cpu", 2, 1, "ddp") and two.world_size == 2
    assert two.describe() == "2 cpu processes (ddp, 1 node(s))"
    assert resolve_distribution(accelerator="cpu", devices=2, num_nodes=3).world_size == 6
    assert resolve_distribution(accelerator="cpu", devices=2, strategy="ddp_spawn").strategy == "ddp_spawn"
    assert resolve_distribution(accelerator="cpu", devices=1, strategy="ddp").strategy == "auto"


def test_devices_count_gpus_when_there_are_some(plain_launch):
    _gpus(plain_launch, 2)
    assert resolve_distribution(devices=2) == Distribution("cuda", 2, 1, "ddp")
    assert resolve_distribution(accelerator="auto", devices=2).accelerator == "cuda"
    assert resolve_distribution("cuda:1") == Distribution("cuda", [1], 1, "auto")
    with pytest.raises(LexactumError, match=r"^--devices 3: this machine has 2 GPU\(s\)$"):
        resolve_distribution(accelerator="gpu", devices=3)


@pytest.mark.parametrize(("options", "message"), [
    ({"accelerator": "cpu", "devices": 5}, r"--devices 5 CPU processes: this machine lets us use 4 core\(s\)"),
    ({"device": "cuda:0", "devices": 2}, r"--device cuda:0 names one device; .* give one or the other"),
    ({"device": "cpu", "accelerator": "cpu"}, r"--device cpu names one device"),
    ({"accelerator": "gpu", "devices": 2}, r"--accelerator gpu asked for, but torch sees no CUDA GPU"),
    ({"accelerator": "tpu"}, r"unknown accelerator 'tpu'"),
    ({"devices": 0}, r"--devices must be a positive whole number, got 0"),
    ({"num_nodes": 0}, r"--num-nodes must be a positive whole number, got 0"),
])
def test_what_cannot_run_is_one_line(options, message):
    with pytest.raises(LexactumError, match=message) as caught:
        resolve_distribution(**options)
    assert "\n" not in str(caught.value)


def test_under_srun_or_torchrun_each_process_has_its_own_cores(plain_launch):
    """srun gives each task its own cores (often one): the count of this process's cores does not limit
    --devices there, but the processes the launcher started must be the ones asked for."""
    plain_launch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    with pytest.raises(LexactumError, match="lets us use 1 core"):
        resolve_distribution(accelerator="cpu", devices=2)
    plain_launch.setenv("SLURM_NTASKS", "4")
    plain_launch.setenv("SLURM_PROCID", "1")
    assert resolve_distribution(accelerator="cpu", devices=2, num_nodes=2).world_size == 4
    with pytest.raises(LexactumError, match=r"srun/torchrun started 4 processes, but .* make 2"):
        resolve_distribution(accelerator="cpu", devices=2)
    for name in ("SLURM_NTASKS", "SLURM_PROCID"):
        plain_launch.delenv(name)
    plain_launch.setenv("RANK", "0")
    plain_launch.setenv("WORLD_SIZE", "3")
    assert distributed.launcher_world_size() == 3
    with pytest.raises(LexactumError, match="srun/torchrun started 3 processes"):
        resolve_distribution()  # each of them would train alone


def test_launcher_world_size_is_one_for_a_plain_command_or_lightnings_own_processes(plain_launch):
    assert distributed.launcher_world_size() == 1
    plain_launch.setenv("LOCAL_RANK", "1")  # what Lightning's launcher sets in the processes it starts
    plain_launch.setenv("WORLD_SIZE", "2")
    assert distributed.launcher_world_size() == 1


@pytest.mark.parametrize(("variables", "zero"), [
    ({}, True),
    ({"LOCAL_RANK": "0", "NODE_RANK": "0", "WORLD_SIZE": "2"}, True),  # Lightning's rank 0, once it launched
    ({"LOCAL_RANK": "1", "WORLD_SIZE": "2"}, False),  # a process Lightning started
    ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False),  # first process of the second node
    ({"RANK": "0", "LOCAL_RANK": "0"}, True),  # torchrun
    ({"RANK": "2", "LOCAL_RANK": "0"}, False),
    ({"SLURM_NTASKS": "4", "SLURM_PROCID": "0"}, True),  # srun
    ({"SLURM_NTASKS": "4", "SLURM_PROCID": "3"}, False),
    ({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}, True),  # a one-task job: a plain command
])
def test_is_global_zero_from_the_launchers_variables(plain_launch, variables, zero):
    for name, value in variables.items():
        plain_launch.setenv(name, value)
    assert is_global_zero() is zero
