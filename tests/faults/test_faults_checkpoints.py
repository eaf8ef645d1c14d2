"""Corrupt checkpoints: ``train --resume RUN`` names the broken last.ckpt in one line and changes nothing."""

from __future__ import annotations

import random
import shutil

import pytest
from faultkit import assert_one_line_error, run_cli

pytestmark = pytest.mark.faults


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _random_bytes(path):
    path.write_bytes(random.Random(0).randbytes(path.stat().st_size))


def _something_else(path):
    """A valid torch file (zip + pickle), but not a Lightning checkpoint."""
    import torch

    torch.save({"weights": torch.zeros(3), "note": "not a checkpoint"}, path)


@pytest.mark.parametrize("corrupt", [_truncate, _random_bytes, _something_else], ids=lambda f: f.__name__[1:])
def test_resume_from_a_corrupt_last_checkpoint(corrupt, train_reference, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(train_reference.folder / "run", run_dir)
    corrupt(run_dir / "last.ckpt")
    kept = [run_dir / name for name in ("config.json", "split.json", "metrics.csv", "last.ckpt", "best.ckpt")]
    before = {path: path.read_bytes() for path in kept}
    names = sorted(p.name for p in run_dir.iterdir())
    model = tmp_path / "model.safetensors"
    proc = run_cli(["train", "--resume", run_dir, "--epochs", "4", "--model-out", model, "--cache-dir",
                    train_reference.folder / "cache"])
    assert_one_line_error(proc, "train", ["last.ckpt"])
    assert {path: path.read_bytes() for path in kept} == before
    assert not model.exists()
    assert sorted(p.name for p in run_dir.iterdir()) == names  # nothing new, nothing removed
