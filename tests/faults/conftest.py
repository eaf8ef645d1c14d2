"""The fault suite: what every LEXACTUM command must guarantee when things go wrong.

The contract checked here, for ``python -m lexactum <command>``:

* A fault or bad input ends with exit status 2 (never 1, a signal such as 135 bus error or 137), no
  "Traceback" anywhere on stderr, and a last stderr line ``lexactum <command>: error: ...`` that names the path
  involved (and says "space" when the disk is full, "read-only"/"permission"/"cannot write" when the folder
  is read-only, the checkpoint's name when a checkpoint is corrupt).
* Nothing half-written: after a failure no file in the output, run, cache or model folder has a temporary
  name (``.NAME.XXXXXXXX.partSUFFIX``, ``.NAME.tmp-PID-XXXXXXXX``...), and every file that was there before
  is byte-identical. A temporary left by a *killed* process may stay until the next run, which removes it.
* kill -9 then the same command again (``train --resume``): the final outputs equal an uninterrupted run's,
  byte for byte (the cache's ``images.f32``, FITS files and catalogs, ``scores.csv``/``submission.txt``),
  bit for bit for the trained weights, ``metrics.csv`` except its ``seconds`` column.
* No process outlives a killed command: every command runs with a unique ``LEXACTUM_TEST_TAG`` in its
  environment, and within a few seconds of the SIGKILL no process carrying it may remain (workers, the
  forkserver and the resource tracker included).

Kill points are drawn from a seeded RNG: set ``LEXACTUM_FAULT_SEED`` to replay a failure (the seed and the
delay are in every assertion message). No-space tests mount a small tmpfs (skipped with the reason where
mounting is refused) and have a simulated-ENOSPC twin that runs everywhere; read-only tests use a read-only
bind mount (root only, skipped otherwise). Reference runs are built once per session and shared by the
pytest-xdist workers through a file lock.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

import pytest
from faultkit import (
    COMMAND_TIMEOUT,
    PREPARE_N,
    SIMULATE_ARGS,
    SMALL_N,
    TRAIN_ARGS,
    TRAIN_N,
    Reference,
    Started,
    left_behind,
    prepare_started,
    simulate_started,
    train_started,
)

#: One seed per session unless replaying; each test derives its own RNG from it and its node id.
SESSION_SEED = int(os.environ.get("LEXACTUM_FAULT_SEED") or random.SystemRandom().randrange(2**31))


def pytest_configure(config):
    config.addinivalue_line("markers", "faults: the fault suite (kills, full disks, read-only folders, corrupt files)")


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def fault_rng(request):
    """(random.Random, description) of this test: reproducible from the session seed and the test's id."""
    rng = random.Random(f"{SESSION_SEED}:{request.node.nodeid}")
    return rng, f"LEXACTUM_FAULT_SEED={SESSION_SEED}"


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory) -> Path:
    """A folder common to all xdist workers of this session (the base temp folder's parent under xdist)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "faults-shared"
    root.mkdir(exist_ok=True)
    return root


def built_once(shared_dir: Path, name: str, build) -> Path:
    """``shared_dir/name``, built by ``build(folder)`` by the first worker that asks; the others wait."""
    from filelock import FileLock

    folder = shared_dir / name
    with FileLock(str(shared_dir / f"{name}.lock")):
        if not (folder / ".built").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder


def _toy(folder: Path, n: int, layout: str, seed: int) -> None:
    from lexactum.simulate.toy import write_toy_dataset

    write_toy_dataset(folder, survey="space", n=n, layout=layout, seed=seed)


@pytest.fixture(scope="session")
def prepare_dataset(shared_dir) -> Path:
    return built_once(shared_dir, "prepare-dataset", lambda d: _toy(d, PREPARE_N, "test", 11))


@pytest.fixture(scope="session")
def train_dataset(shared_dir) -> Path:
    return built_once(shared_dir, "train-dataset", lambda d: _toy(d, TRAIN_N, "train", 12))


@pytest.fixture(scope="session")
def small_dataset(shared_dir) -> Path:
    return built_once(shared_dir, "small-dataset", lambda d: _toy(d, SMALL_N, "train", 13))


def _reference(shared_dir: Path, name: str, argv, progress=None) -> Reference:
    """Run ``lexactum ARGV(folder)`` once for the session, uninterrupted, and keep how long it worked after
    ``progress(folder)`` first held (after its start when None): the kill tests draw their kill points
    within that time, whatever the speed of the machine."""
    def build(folder):
        run = Started(argv(folder), folder / "logs")
        if progress is not None:
            run.wait_for(lambda: progress(folder))
        since = time.monotonic()
        run.proc.wait(timeout=COMMAND_TIMEOUT)
        seconds = time.monotonic() - (since if progress is not None else run.started)
        assert run.proc.returncode == 0, f"reference run failed:\n{run.stderr.read_text()[-3000:]}"
        assert not (left := left_behind(run.tag)), f"reference run left processes behind:\n{left}"
        (folder / "seconds").write_text(f"{seconds:.3f}")

    folder = built_once(shared_dir, name, build)
    return Reference(folder, float((folder / "seconds").read_text()))


@pytest.fixture(scope="session")
def prepare_reference(shared_dir, prepare_dataset) -> Reference:
    """An uninterrupted ``dataset prepare --workers 2`` into ``cache/``."""
    return _reference(shared_dir, "prepare-reference", lambda folder: [
        "dataset", "prepare", prepare_dataset, "--workers", "2", "--cache-dir", folder / "cache"],
        progress=lambda folder: prepare_started(folder / "cache"))


@pytest.fixture(scope="session")
def train_reference(shared_dir, train_dataset) -> Reference:
    """An uninterrupted training: ``run/`` (its run folder), ``model.safetensors`` and ``cache/`` (the
    dataset's cache, reused read-only by the other trainings on it)."""
    return _reference(shared_dir, "train-reference", lambda folder: [
        "train", "--dataset", train_dataset, *TRAIN_ARGS, "--run-dir", folder / "run", "--model-out",
        folder / "model.safetensors", "--cache-dir", folder / "cache"],
        progress=lambda folder: train_started(folder / "run"))


@pytest.fixture(scope="session")
def toy_model(shared_dir) -> Path:
    """A freshly initialised space lens_flow model file."""
    def build(folder):
        import torch

        from lexactum.models import create_model, save_model

        torch.manual_seed(0)
        save_model(create_model("lens_flow", in_channels=1), folder / "model.safetensors")

    return built_once(shared_dir, "toy-model", build) / "model.safetensors"


@pytest.fixture(scope="session")
def predict_reference(shared_dir, prepare_dataset, toy_model) -> Reference:
    """An uninterrupted ``predict`` of the prepare dataset into ``out/``."""
    return _reference(shared_dir, "predict-reference", lambda folder: [
        "predict", "--model", toy_model, "--out", folder / "out", "--device", "cpu", prepare_dataset])


@pytest.fixture(scope="session")
def simulate_reference(shared_dir) -> Reference:
    """An uninterrupted ``simulate`` (2 workers) into ``out/``."""
    return _reference(shared_dir, "simulate-reference", lambda folder: [
        "simulate", *SIMULATE_ARGS, "--workers", "2", "--out", folder / "out"],
        progress=lambda folder: simulate_started(folder / "out"))


@pytest.fixture
def tmpfs(small_disk):
    """Factory: ``tmpfs(size)`` -> a folder with a tmpfs of ``size`` (e.g. '1m') mounted on it (the root
    conftest's ``small_disk``: skips with the reason where mounting is refused, always unmounts)."""
    return lambda size: small_disk(size).root
