"""Devices: what --device, --precision and the CPU thread count mean, the same for every command."""

from __future__ import annotations

import os

import pytest
import torch

from lexactum.devices import cpu_threads, idle_cpu_count, lightning_device, resolve_device, resolve_precision
from lexactum.errors import LexactumError


def test_devices_and_precisions():
    assert lightning_device("cpu")[0] == "cpu"
    assert lightning_device(" CPU ")[2] == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_precision(None, "cpu") == "32-true"
    assert resolve_precision("32", "cpu") == "32-true"
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    with pytest.raises(LexactumError, match="fp8"):
        resolve_precision("fp8", "cpu")
    with pytest.raises(LexactumError, match="tpu"):
        lightning_device("tpu")
    if not torch.cuda.is_available():
        for device in ("cuda", "cuda:0"):
            with pytest.raises(LexactumError, match="no CUDA GPU"):
                lightning_device(device)


@pytest.mark.parametrize("device", ["meta", "mps", "xpu", torch.device("meta")])
def test_devices_that_cannot_run_are_refused(device):
    """Names and torch.device objects alike: a torch.device used to pass unchecked into the scoring."""
    with pytest.raises(LexactumError, match="cpu, cuda or cuda:N"):
        resolve_device(device)


def test_cpu_threads_uses_idle_cores_and_restores():
    before = torch.get_num_threads()
    assert 1 <= idle_cpu_count() <= (os.cpu_count() or 1)
    with cpu_threads(1) as inside:
        assert inside == torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
