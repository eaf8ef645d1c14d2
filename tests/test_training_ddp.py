"""Training on several processes (Lightning DDP on CPU, gloo): the data each process trains on, rank 0 alone
writing, and whole runs of ``lexactum train --devices 2 --accelerator cpu`` as a user starts them."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import lexactum
from lexactum import runs
from lexactum.data.loader import BatchSampler
from lexactum.errors import LexactumError
from lexactum.training import EpochMetricsCSV, LensFinderModule, TrainConfig, epochs_done, load_checkpoint
from lexactum.training.sharding import RankSlices, TrainingDataModule

SRC = Path(lexactum.__file__).resolve().parents[1]
TAG = "LEXACTUM_TEST_TAG"
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "SLURM_NTASKS")


@pytest.fixture
def four_cores(monkeypatch):
    """A plain command on a machine with 4 cores, whatever runs the tests."""
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return monkeypatch


# ------------------------------------------------------------------------------- each process's batches
def test_the_processes_slices_of_a_step_make_the_global_batch_of_one_process():
    def sampler():
        return BatchSampler(np.arange(37), 8, shuffle=True, seed=3)

    single = list(sampler())
    ranks = [list(RankSlices(sampler(), rank, 2)) for rank in range(2)]
    assert [len(r) for r in ranks] == [len(single)] * 2 == [len(RankSlices(sampler(), 0, 2))] * 2
    for step, batch in enumerate(single):
        parts = [ranks[rank][step] for rank in range(2)]
        assert sorted(np.concatenate(parts).tolist()) == sorted(batch.tolist())
        assert abs(len(parts[0]) - len(parts[1])) <= 1
    assert [len(p) for p in (ranks[0][0], ranks[1][0])] == [4, 4]  # a full global batch: equal halves


def test_a_last_batch_smaller_than_the_processes_gives_every_process_an_image():
    sampler = BatchSampler(np.arange(9), 4)  # batches of 4, 4, 1
    slices = [list(RankSlices(sampler, rank, 3)) for rank in range(3)]
    assert all(len(batches) == 3 and all(len(b) >= 1 for b in batches) for batches in slices)
    assert {int(s[2][0]) for s in slices} == {8}


def test_the_epoch_lightning_sets_reaches_the_order_of_the_batches():
    reference = BatchSampler(np.arange(20), 4, shuffle=True, seed=1)
    reference.set_epoch(3)
    expected = [b[:2] for b in reference]
    sliced = RankSlices(BatchSampler(np.arange(20), 4, shuffle=True, seed=1), 0, 2)
    sliced.set_epoch(3)
    assert [b.tolist() for b in sliced] == [b.tolist() for b in expected]
    sliced.set_epoch(0)
    assert [b.tolist() for b in sliced] != [b.tolist() for b in expected]


def test_the_training_loader_of_a_process_serves_its_slices(make_dataset, tmp_path):
    dataset = make_dataset(n=24, seed=5)
    module = TrainingDataModule(dataset, batch_size=8, split=(0.5, 0.25, 0.25), cache_dir=tmp_path, progress=False)
    whole = [indices.tolist() for _, _, indices in module.train_dataloader()]  # no trainer: one process
    module.trainer = SimpleNamespace(global_rank=1, world_size=2)
    halves = [indices.tolist() for _, _, indices in module.train_dataloader()]
    assert len(halves) == len(whole) and all(set(h) < set(w) for h, w in zip(halves, whole, strict=True))
    assert [len(h) for h in halves] == [len(w) // 2 for w in whole]
    assert len(list(module.val_dataloader())[0][2]) == len(module.val_indices)  # validation stays whole


# ------------------------------------------------------------------------------- seeds, records, settings
def test_processes_other_than_rank_zero_draw_their_own_dropout_and_augmentation():
    def draws(rank):
        module = LensFinderModule("lens_flow", 1, seed=4)
        if rank is not None:
            module._trainer = SimpleNamespace(global_rank=rank, current_epoch=2)
        module.on_train_batch_start(None, 5)
        return torch.rand(4)

    single = LensFinderModule("lens_flow", 1, seed=4)
    single._trainer = SimpleNamespace(global_rank=0, current_epoch=2)
    assert single._rank_keys(2, 1) == (2, 1)  # rank 0 keeps the seeds of a single process
    assert torch.equal(draws(0), draws(0)) and not torch.equal(draws(0), draws(1))
    assert not torch.equal(draws(1), draws(2))


def test_only_rank_zero_writes_metrics_csv(tmp_path):
    def trainer(zero):
        return SimpleNamespace(sanity_checking=False, is_global_zero=zero, current_epoch=0, optimizers=[],
                               callback_metrics={"train_loss": torch.tensor(0.5)})

    callback = EpochMetricsCSV(tmp_path / "metrics.csv")
    callback.on_train_epoch_end(trainer(False), None)
    assert not (tmp_path / "metrics.csv").exists()
    callback.on_train_epoch_end(trainer(True), None)
    assert runs.read_csv(tmp_path / "metrics.csv")[0]["train_loss"] == "0.5"


def test_the_batch_size_is_the_global_batch_and_must_divide_among_the_processes(four_cores, tmp_path):
    config = TrainConfig(dataset=tmp_path, batch_size=6, accelerator="cpu", devices=4)
    with pytest.raises(LexactumError, match=r"^--batch-size 6 is the global batch .* 4 processes .* multiple "
                                            r"of 4$"):
        config.validate()
    assert TrainConfig(dataset=tmp_path, batch_size=8, accelerator="cpu", devices=4).validate().world_size == 4


def test_processes_started_apart_must_be_given_the_run_folder(four_cores, tmp_path):
    """srun and torchrun start all processes at once, and each node starts its own: a run folder named from
    the time would differ between them."""
    four_cores.setenv("RANK", "1")
    four_cores.setenv("WORLD_SIZE", "2")
    settings = {"dataset": tmp_path, "accelerator": "cpu", "devices": 2}
    with pytest.raises(LexactumError, match="--run-dir DIR is needed on several nodes or under srun/torchrun"):
        TrainConfig(**settings).validate()
    assert TrainConfig(**settings, run_dir=tmp_path / "run").validate().world_size == 2
    for name in ("RANK", "WORLD_SIZE"):
        four_cores.delenv(name)
    with pytest.raises(LexactumError, match="--run-dir DIR is needed"):
        TrainConfig(**{**settings, "devices": 1}, num_nodes=2).validate()
    assert TrainConfig(**settings).validate().is_distributed  # one machine: rank 0 tells the others


def test_a_resume_takes_where_to_run_from_its_command_not_from_the_run(tmp_path):
    runs.write_config(tmp_path, {"config": {"dataset": str(tmp_path), "epochs": 2, "devices": 4,
                                            "accelerator": "gpu", "num_nodes": 2, "strategy": "ddp"}})
    config = TrainConfig.from_run(tmp_path)
    assert (config.devices, config.accelerator, config.num_nodes, config.strategy) == (None, None, 1, "auto")
    assert TrainConfig.from_run(tmp_path, devices=2, num_nodes=1).devices == 2


# ------------------------------------------------------------------------------- whole runs, 2 processes
N_IMAGES, BATCH, EPOCHS = 160, 16, 2
SPLIT = "0.5,0.25,0.25"


def _lexactum(*argv, cwd: Path, timeout: float = 240, launcher: tuple = ()) -> subprocess.CompletedProcess:
    """``python -m lexactum ARGV`` as a user runs it (or under ``python -m LAUNCHER... -m lexactum ARGV``);
    ``left_behind`` lists its processes still alive after."""
    tag = uuid.uuid4().hex
    env = {**os.environ, TAG: tag, "LEXACTUM_NO_PROGRESS": "1", "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])}
    for name in LAUNCH_VARIABLES:
        env.pop(name, None)
    proc = subprocess.run([sys.executable, *launcher, "-m", "lexactum", *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    proc.left_behind = _tagged_processes(tag)
    return proc


def _tagged_processes(tag: str) -> list[str]:
    """The processes whose environment carries ``tag`` (they are killed: nothing runs on into other tests)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"{TAG}={tag}".encode() in environ.read_bytes().split(b"\0"):
                found.append(environ.parent.name)
                os.kill(int(environ.parent.name), 9)
        except OSError:
            continue
    return found


def _train_args(dataset: Path, cache: Path, *extra) -> list:
    return ["train", "--dataset", dataset, "--epochs", EPOCHS, "--batch-size", BATCH, "--split", SPLIT,
            "--no-augment", "--bootstrap", 0, "--cache-dir", cache, "--seed", 0, *extra]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """160 toy space images with a faint lens signal: after 2 epochs lens_flow is still learning (test AUC
    about 0.97, validation loss about 0.67), so a run that trains on more or less than it should shows."""
    from lexactum.simulate.toy import write_toy_dataset

    root = tmp_path_factory.mktemp("ddp")
    return write_toy_dataset(root / "toy", survey="space", n=N_IMAGES, seed=1, signal=6.0), root / "cache"


@pytest.fixture(scope="module")
def two_processes(toy, tmp_path_factory):
    """One run on 2 CPU processes, with the default run folder and model file, in an empty folder."""
    dataset, cache = toy
    cwd = tmp_path_factory.mktemp("two")
    return _lexactum(*_train_args(dataset, cache, "--devices", 2, "--accelerator", "cpu"), cwd=cwd), cwd


def _run_folder(cwd: Path) -> Path:
    folders = list((cwd / "runs").iterdir())
    assert len(folders) == 1, folders
    return folders[0]


def test_two_processes_make_one_run_folder_one_model_and_leave_no_process(two_processes):
    proc, cwd = two_processes
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not proc.left_behind
    assert "Traceback" not in proc.stderr and proc.stdout.count("run folder:") == 1
    run_dir = _run_folder(cwd)
    assert re.fullmatch(r"\d{8}-\d{6}_space_lens_flow", run_dir.name)
    assert [p.name for p in (cwd / "models").iterdir()] == [f"space_lens_flow_{EPOCHS}epochs.safetensors"]
    assert set(os.listdir(cwd)) == {"runs", "models"}
    assert [int(r["epoch"]) for r in runs.read_csv(run_dir / runs.METRICS_CSV)] == list(range(1, EPOCHS + 1))
    assert json.loads((run_dir / "metrics.json").read_text())["n"] == N_IMAGES // 4
    assert runs.read_config(run_dir)["processes"] == 2
    assert not [name for name in os.listdir(run_dir) if ".part" in name or ".tmp" in name]
    # Each optimiser step took one global batch: as many steps as one process takes.
    checkpoint = torch.load(run_dir / runs.LAST_CHECKPOINT, map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == EPOCHS * math.ceil(N_IMAGES // 2 / BATCH)


@pytest.mark.slow
def test_under_torchrun_the_processes_start_at_once_into_the_run_folder_given(toy, tmp_path):
    """torchrun starts both processes itself, at once: rank 1 must not take the run that rank 0 is writing into
    --run-dir for an earlier one, nor fail on its claim; and it trains the same run as Lightning's launcher."""
    dataset, cache = toy
    args = _train_args(dataset, cache, "--devices", 2, "--accelerator", "cpu", "--run-dir", tmp_path / "run",
                       "--model-out", tmp_path / "model.safetensors")
    proc = _lexactum(*args, cwd=tmp_path, launcher=("-m", "torch.distributed.run", "--standalone",
                                                    "--nproc-per-node", "2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not proc.left_behind and proc.stdout.count("run folder:") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "run"]
    assert len(runs.read_csv(tmp_path / "run" / runs.METRICS_CSV)) == EPOCHS


@pytest.mark.slow
def test_two_processes_train_as_well_as_one_with_the_same_global_batch(two_processes, toy, tmp_path):
    """Same data, seed, global batch and steps, no augmentation: the runs differ only in their dropout draws
    (each process draws its own). Five single-process runs that differ only in those draws (other dropout
    seeds) ended within 0.009 of one another in validation loss (0.666 to 0.675) and 0.03 in test AUC (0.96
    to 0.99); the tolerances are about twice that. A run that trains on twice the data per epoch (each
    process taking every batch whole) ends near 0.62: far outside. (A run whose steps take twice the global
    batch would not show here: the count of steps above catches that.)"""
    proc, cwd = two_processes
    assert proc.returncode == 0, proc.stderr[-3000:]
    dataset, cache = toy
    single = _lexactum(*_train_args(dataset, cache, "--device", "cpu", "--run-dir", tmp_path / "one",
                                    "--model-out", tmp_path / "one.safetensors"), cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    two_dir, one_dir = _run_folder(cwd), tmp_path / "one"
    losses = [float(runs.read_csv(d / runs.METRICS_CSV)[EPOCHS - 1]["val_loss"]) for d in (one_dir, two_dir)]
    aucs = [json.loads((d / "metrics.json").read_text())["auc"] for d in (one_dir, two_dir)]
    assert abs(losses[0] - losses[1]) < 0.02, losses
    assert abs(aucs[0] - aucs[1]) < 0.06, aucs
    assert min(aucs) > 0.9, aucs


def _start(*argv, cwd: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """``python -m lexactum ARGV`` started in the background (its output in ``log``), and its tag."""
    tag = uuid.uuid4().hex
    env = {**os.environ, TAG: tag, "LEXACTUM_NO_PROGRESS": "1", "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])}
    for name in LAUNCH_VARIABLES:
        env.pop(name, None)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "lexactum", *map(str, argv)], cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    return proc, tag


def _training_started(proc: subprocess.Popen, run_dir: Path, tag: str, timeout: float = 120) -> bool:
    """Both processes are training: the first epoch's checkpoint is written (the second process is up)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if (run_dir / runs.LAST_CHECKPOINT).is_file() and len(_tagged_pids(tag)) >= 2:
            return True
        time.sleep(0.1)
    return False


def _tagged_pids(tag: str) -> list[int]:
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"{TAG}={tag}".encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


def _gone(tag: str, grace: float = 10) -> list[str]:
    """The tagged processes still alive ``grace`` s from now (killed then); [] when all ended."""
    import time

    deadline = time.monotonic() + grace
    while _tagged_pids(tag) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _tagged_processes(tag)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_two_process_run_stopped_on_rank_zero_leaves_no_process_and_one_line(how, toy, tmp_path):
    """A scheduler's SIGTERM reaches rank 0 (Lightning passes it on to the other process): one line, status
    143, and a run that two processes resume. A kill -9 of rank 0 gives it no chance to stop the other
    process, which ends by itself at once (it watches rank 0), without a traceback of its own."""
    import signal

    dataset, cache = toy
    run_dir = tmp_path / "run"
    proc, tag = _start(*_train_args(dataset, cache, "--devices", 2, "--accelerator", "cpu", "--run-dir", run_dir),
                       "--epochs", 500, cwd=tmp_path, log=tmp_path / "log")
    try:
        assert _training_started(proc, run_dir, tag), (tmp_path / "log").read_text()[-3000:]
        proc.send_signal(getattr(signal, how))
        status = proc.wait(timeout=120)  # a loaded CI machine: the two processes stop in turn
    finally:
        left = _gone(tag)
    log = (tmp_path / "log").read_text()
    assert not left, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    if how == "SIGKILL":
        assert status == -signal.SIGKILL
        return
    assert status == 143 and log.count("lexactum train: terminated (SIGTERM)") == 1, log[-3000:]
    assert f"--resume {run_dir}" in log
    # The processes Lightning starts run the command again, --resume included: they must neither claim the
    # run folder that rank 0 holds nor write in it.
    done = epochs_done(load_checkpoint(run_dir / runs.LAST_CHECKPOINT))
    resumed = _lexactum("train", "--resume", run_dir, "--epochs", done + 1, "--devices", 2, "--accelerator", "cpu",
                        cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not resumed.left_behind and resumed.stdout.count("run folder:") == 1
    assert [int(r["epoch"]) for r in runs.read_csv(run_dir / runs.METRICS_CSV)][-1] == done + 1
    assert len(runs.read_config(run_dir)["resumed"]) == 1
    checkpoint = load_checkpoint(run_dir / runs.LAST_CHECKPOINT)
    assert checkpoint["global_step"] == (done + 1) * math.ceil(N_IMAGES // 2 / BATCH)


def test_the_epochs_trained_are_those_of_the_last_checkpoint(tmp_path):
    """With --strategy ddp_spawn the fit runs in spawned processes and the Trainer here counts 0 epochs."""
    from lexactum.training.run import _epochs_trained

    last = tmp_path / runs.LAST_CHECKPOINT
    torch.save({"state_dict": {}, "loops": {"fit_loop": {"epoch_progress": {"current": {"processed": 3}}}}}, last)
    assert _epochs_trained(SimpleNamespace(current_epoch=0), last) == 3
    assert _epochs_trained(SimpleNamespace(current_epoch=2), tmp_path / "none.ckpt") == 2
