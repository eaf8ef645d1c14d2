"""SIGTERM, as a batch scheduler's ``kill PID`` sends it: the command stops with one line and a non-zero
status (128 + 15), keeps what it finished, and leaves no process behind.

Lightning catches SIGTERM inside ``fit`` and ends it with a bare ``SystemExit``: without care a terminated
training exits 0, silently, as if it had succeeded.
"""

from __future__ import annotations

import signal

import pytest
from faultkit import TRAIN_ARGS, Started, left_behind, temporaries, train_started

pytestmark = pytest.mark.faults


def _terminate(run: Started) -> tuple[int, list[str]]:
    """SIGTERM to the command's own process only (not its group), then its status and last stderr lines."""
    run.proc.send_signal(signal.SIGTERM)
    status = run.proc.wait(timeout=60)
    run.left_behind = left_behind(run.tag)
    return status, run.stderr.read_text(errors="replace").strip().splitlines()


def test_sigterm_during_training_exits_143_with_a_resume_line(train_dataset, tmp_path):
    run_dir, model = tmp_path / "run", tmp_path / "model.safetensors"
    args = [a if a != "3" else "50" for a in TRAIN_ARGS]  # --epochs 50: still training when terminated
    run = Started(["train", "--dataset", train_dataset, *args, "--run-dir", run_dir, "--model-out", model,
                   "--cache-dir", tmp_path / "cache"], tmp_path / "logs")
    assert run.wait_for(lambda: train_started(run_dir)), "training ended before its first epoch"
    status, lines = _terminate(run)
    assert status == 143, f"exit status {status} after SIGTERM:\n" + "\n".join(lines[-5:])
    assert lines[-1] == f"lexactum train: terminated (SIGTERM): 'lexactum train --resume {run_dir}' continues the run"
    assert not model.exists() and (run_dir / "last.ckpt").is_file()
    assert temporaries(tmp_path) == []
    run.assert_nothing_left_behind()


def test_sigterm_as_training_starts_exits_143_with_one_line(train_dataset, tmp_path):
    run_dir = tmp_path / "run"
    args = [a if a != "3" else "50" for a in TRAIN_ARGS]
    run = Started(["train", "--dataset", train_dataset, *args, "--run-dir", run_dir, "--model-out",
                   tmp_path / "model.safetensors", "--cache-dir", tmp_path / "cache"], tmp_path / "logs")
    assert run.wait_for(lambda: (run_dir / "split.json").is_file()), "training ended before it started"
    status, lines = _terminate(run)
    assert status == 143, f"exit status {status} after SIGTERM:\n" + "\n".join(lines[-5:])
    assert lines[-1].startswith("lexactum train: terminated (SIGTERM)")  # with a resume hint once fit began
    assert not any("Traceback" in line for line in lines)
    run.assert_nothing_left_behind()
