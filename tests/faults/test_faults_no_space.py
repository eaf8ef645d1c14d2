"""No space left: the cache, checkpoints, model files, predictions and simulations on a full disk.

Each case runs twice: on a small tmpfs that fills up mid-way (where mounting is allowed), and with a simulated
ENOSPC (in-process, every ``os.fsync`` of the files concerned fails as a full disk would, or the free space
reported is zero) that runs everywhere. Either way: one line saying so, exit 2, no temporary left, nothing
that looks complete but is not.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import traceback

import pytest
from faultkit import NO_SPACE, TRAIN_ARGS, assert_one_line_error, no_space, run_cli, snapshot, temporaries

pytestmark = pytest.mark.faults

#: One epoch of the small dataset: the no-space cases need a checkpoint and a model file, not a good model.
QUICK = [*TRAIN_ARGS, "--epochs", "1"]


def _checkpoints_load(folder):
    """Every .ckpt in ``folder`` loads whole (a truncated one would not)."""
    import torch

    for path in folder.glob("*.ckpt"):
        torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.parametrize("command", ["dataset prepare", "train"])
def test_cache_on_a_full_disk(command, small_dataset, tmpfs, tmp_path):
    full = tmpfs("4m")  # the cache needs 8 MB
    if command == "train":
        argv = ["train", "--dataset", small_dataset, *QUICK, "--run-dir", tmp_path / "run", "--model-out",
                tmp_path / "model.safetensors", "--cache-dir", full]
    else:
        argv = ["dataset", "prepare", small_dataset, "--workers", "2", "--cache-dir", full]
    proc = run_cli(argv)
    assert_one_line_error(proc, command.split()[0], [full], NO_SPACE)
    assert temporaries(full, tmp_path) == []
    assert not list(full.rglob("index.json")) and not list(full.rglob("images.f32"))


def test_checkpoints_on_a_full_disk(small_dataset, tmpfs, tmp_path):
    full = tmpfs("1m")  # config.json and split.json fit, a checkpoint (1.2 MB) does not
    proc = run_cli(["train", "--dataset", small_dataset, *QUICK, "--run-dir", full, "--model-out",
                    tmp_path / "model.safetensors", "--cache-dir", tmp_path / "cache"])
    assert_one_line_error(proc, "train", [full], NO_SPACE)
    assert temporaries(full, tmp_path) == []
    _checkpoints_load(full)


def test_model_file_on_a_full_disk(small_dataset, tmpfs, tmp_path):
    full = tmpfs("256k")  # the model file needs 400 kB
    run_dir = tmp_path / "run"
    proc = run_cli(["train", "--dataset", small_dataset, *QUICK, "--run-dir", run_dir, "--model-out",
                    full / "model.safetensors", "--cache-dir", tmp_path / "cache"])
    assert_one_line_error(proc, "train", [full], NO_SPACE)
    assert temporaries(full, run_dir) == [] and list(full.iterdir()) == []
    assert (run_dir / "last.ckpt").is_file(), "the trained run must stay resumable"
    _checkpoints_load(run_dir)


def test_predictions_on_a_full_disk(small_dataset, toy_model, tmpfs):
    full = tmpfs("12k")  # three pages: two hold an earlier prediction; scores.csv of 200 objects needs 6 kB
    (full / "scores.csv").write_text("ID,score\n100000,0.5\n")
    (full / "submission.txt").write_text("100000 0.5\n")
    before = snapshot(full)
    proc = run_cli(["predict", "--model", toy_model, "--out", full, "--device", "cpu", "--overwrite", small_dataset])
    assert_one_line_error(proc, "predict", [full], NO_SPACE)
    assert temporaries(full) == []
    after = snapshot(full)
    assert {k: after.get(k) for k in before} == before, "the earlier prediction must be kept whole"


def test_simulation_on_a_full_disk(tmpfs):
    full = tmpfs("64k")  # a space FITS file is 41 kB
    proc = run_cli(["simulate", "--survey", "space", "--n", "6", "--workers", "1", "--out", full / "sim"])
    assert_one_line_error(proc, "simulate", [full], NO_SPACE)
    assert temporaries(full) == []


# -- the same without a tmpfs: simulated ENOSPC, in process -------------------------------------------------

def _main(argv) -> subprocess.CompletedProcess:
    """``lexactum.cli.main(argv)`` in this process, as a finished process: an exception that escapes it is
    what the user would see as a traceback (exit 1)."""
    from lexactum.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except BaseException:  # noqa: BLE001 - reported as the traceback the user would get
            code = 1
            err.write(traceback.format_exc())
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def _fsync_fails_for(monkeypatch, wanted):
    """Make ``os.fsync`` of the files whose path ``wanted(path)`` accepts fail with ENOSPC (the last step of
    every atomic write before its rename)."""
    real = os.fsync

    def fsync(fd):
        number = fd if isinstance(fd, int) else fd.fileno()
        if wanted(os.readlink(f"/proc/self/fd/{number}")):
            no_space()
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_simulated_no_space_for_the_cache(small_dataset, tmp_path, monkeypatch):
    """The cache's size is known before it is built: a disk that reports no free space is refused up front."""
    real = os.statvfs
    cache = tmp_path / "cache"

    def statvfs(path):
        values = list(real(path))
        values[3] = values[4] = 0  # f_bfree, f_bavail
        return os.statvfs_result(values)

    monkeypatch.setattr(os, "statvfs", statvfs)
    proc = _main(["dataset", "prepare", small_dataset, "--workers", "1", "--cache-dir", cache])
    assert_one_line_error(proc, "dataset", [cache], NO_SPACE)
    assert temporaries(cache) == [] and not list(cache.rglob("index.json"))


@pytest.mark.parametrize("what", ["checkpoints", "model file"])
def test_simulated_no_space_while_training(what, small_dataset, tmp_path, monkeypatch):
    run_dir, model = tmp_path / "run", tmp_path / "models" / "model.safetensors"
    suffix = ".ckpt" if what == "checkpoints" else ".safetensors"
    _fsync_fails_for(monkeypatch, lambda path: suffix in path)
    proc = _main(["train", "--dataset", small_dataset, *QUICK, "--run-dir", run_dir, "--model-out", model,
                  "--cache-dir", tmp_path / "cache"])
    assert_one_line_error(proc, "train", [run_dir if what == "checkpoints" else model.parent], NO_SPACE)
    assert temporaries(tmp_path) == [] and not model.exists()
    _checkpoints_load(run_dir)


def test_simulated_no_space_for_predictions(small_dataset, toy_model, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _fsync_fails_for(monkeypatch, lambda path: path.startswith(str(out)))
    proc = _main(["predict", "--model", toy_model, "--out", out, "--device", "cpu", small_dataset])
    assert_one_line_error(proc, "predict", [out], NO_SPACE)
    assert temporaries(out) == [] and not (out / "scores.csv").exists()


def test_simulated_no_space_for_a_simulation(tmp_path, monkeypatch):
    out = tmp_path / "sim"
    _fsync_fails_for(monkeypatch, lambda path: path.endswith(".fits"))
    proc = _main(["simulate", "--survey", "space", "--n", "3", "--workers", "1", "--out", out])
    assert_one_line_error(proc, "simulate", [out], NO_SPACE)
    assert temporaries(out) == []

