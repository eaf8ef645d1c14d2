"""Training under faults and bad input: refused resumes that touch nothing, model files never replaced,
the test part checked before training, the model saved before the evaluation, checkpoints written
atomically every epoch, and one-line errors instead of tracebacks."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lexactum import runs
from lexactum.cli import main
from lexactum.errors import LexactumError
from lexactum.training import AtomicCheckpointIO, TrainConfig, build_trainer, epochs_done, train

RUN_FILES = ("config.json", "split.json", "metrics.csv", "last.ckpt", "best.ckpt")


def _config(tmp_path, dataset, **overrides) -> TrainConfig:
    settings = dict(dataset=dataset, epochs=1, batch_size=16, device="cpu", progress=False, bootstrap=0,
                    split=(0.5, 0.25, 0.25), seed=1, threads=1, runs_root=tmp_path / "runs",
                    models_dir=tmp_path / "models", cache_dir=tmp_path / "cache")
    settings.update(overrides)
    return TrainConfig(**settings)


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {name: (run_dir / name).read_bytes() for name in RUN_FILES if (run_dir / name).is_file()}


def _one_line_error(capsys, command: str = "train") -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lexactum {command}: error:"), err
    return err[0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from lexactum.simulate.toy import write_toy_dataset

    return write_toy_dataset(tmp_path_factory.mktemp("data"), survey="space", n=48, layout="test", seed=3)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, dataset):
    """A 2-epoch run (folder and model file) that the tests copy before changing anything."""
    tmp_path = tmp_path_factory.mktemp("finished")
    result = train(_config(tmp_path, dataset, epochs=2, run_dir=tmp_path / "run",
                           model_out=tmp_path / "model.safetensors"))
    return result


@pytest.fixture
def run_copy(finished, tmp_path):
    shutil.copytree(finished.run_dir, tmp_path / "run")
    return tmp_path / "run"


@pytest.fixture
def full_disk(small_disk):
    """A 64 KiB tmpfs: writes there run out of space for real (skips where mounting is refused)."""
    return small_disk("64k").root


# --- item 2: a refused resume changes nothing -------------------------------------------------------------

def test_resume_with_fewer_epochs_is_refused_and_the_run_is_untouched(run_copy, capsys):
    before = _snapshot(run_copy)
    with pytest.raises(LexactumError, match="already trained 2 epochs; give --epochs 2 or more"):
        train(TrainConfig.from_run(run_copy, epochs=1))
    assert main(["train", "--resume", str(run_copy), "--epochs", "1"]) == 2
    assert "already trained 2 epochs" in _one_line_error(capsys)
    assert _snapshot(run_copy) == before


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "foreign pickle"])
def test_corrupt_last_checkpoint_is_one_line_and_the_run_is_untouched(run_copy, capsys, damage):
    import pickle
    import warnings

    last = run_copy / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not a checkpoint" * 100,
                      "empty": b"", "foreign pickle": pickle.dumps({"a": object}, protocol=4)}[damage])
    before = _snapshot(run_copy)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        assert main(["train", "--resume", str(run_copy), "--epochs", "3"]) == 2
    assert [str(w.message) for w in shown if "pickle" in str(w.message)] == []  # torch's, before its error
    line = _one_line_error(capsys)
    assert f"{last}: corrupt or truncated checkpoint" in line
    assert "If you are seeing this error" not in line and "Re-running" not in line  # torch's advice to coders
    assert _snapshot(run_copy) == before


def test_an_unreadable_last_checkpoint_is_not_called_corrupt(run_copy, capsys, monkeypatch):
    """EACCES or EIO (simulated: root reads anything) says so; 'corrupt' would advise discarding a good file."""
    last = run_copy / "last.ckpt"

    def refused(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(torch, "load", refused)
    before = _snapshot(run_copy)
    assert main(["train", "--resume", str(run_copy), "--epochs", "3"]) == 2
    line = _one_line_error(capsys)
    assert f"cannot read {last}: permission denied" in line and "corrupt" not in line and "write" not in line
    assert _snapshot(run_copy) == before


def test_corrupt_config_is_one_line(run_copy, capsys):
    (run_copy / "config.json").write_text('{"config": {"dataset": ')
    before = _snapshot(run_copy)
    assert main(["train", "--resume", str(run_copy), "--epochs", "3"]) == 2
    assert "config.json: not a readable JSON file" in _one_line_error(capsys)
    assert _snapshot(run_copy) == before


# --- item 4 and the equal-epochs resume: the model is saved before the evaluation -------------------------

@pytest.mark.parametrize("failing", ["evaluation", "plot"])
def test_model_is_saved_before_the_evaluation_and_a_resume_finishes_the_run(dataset, tmp_path, monkeypatch,
                                                                           capsys, failing):
    from safetensors import safe_open

    if failing == "evaluation":
        def fail(*args, **kwargs):
            raise LexactumError("scoring failed on purpose")
        monkeypatch.setattr("lexactum.evaluation.evaluate.evaluate_model", fail)
    else:
        def fail(*args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "run" / runs.CURVES))
        monkeypatch.setattr("lexactum.evaluation.plots.plot_training_curves", fail)
    config = _config(tmp_path, dataset, run_dir=tmp_path / "run")
    with pytest.raises(LexactumError, match="after training: the model is saved as") as caught:
        train(config)
    model = tmp_path / "models" / "space_lens_flow_1epochs.safetensors"
    assert str(model) in str(caught.value) and "\n" not in str(caught.value)
    last = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)["state_dict"]
    with safe_open(str(model), framework="pt") as handle:
        assert "metrics" not in handle.metadata()
        for key in handle.keys():
            assert torch.equal(handle.get_tensor(key), last[f"network.{key}"]), key
    monkeypatch.undo()

    checkpoint = (tmp_path / "run" / "last.ckpt").read_bytes()
    capsys.readouterr()
    result = train(TrainConfig.from_run(tmp_path / "run"))  # the same epochs: nothing left to train
    assert "already trained 1 epoch, nothing to train" in capsys.readouterr().out
    assert (tmp_path / "run" / "last.ckpt").read_bytes() == checkpoint
    assert result.model_path == model and (tmp_path / "run" / "metrics.json").is_file()  # its own file, reused
    with safe_open(str(model), framework="pt") as handle:
        assert "auc" in handle.metadata()["metrics"]
    assert sorted(p.name for p in model.parent.iterdir()) == [model.name]


def test_one_class_test_part_is_refused_before_training(make_dataset, tmp_path):
    training_set = make_dataset(n=40, layout="train", seed=6)
    no_lenses = make_dataset(n=20, layout="test", seed=7, lens_fraction=0.0)
    with pytest.raises(LexactumError, match=r"test dataset .* cannot be scored: need both lenses and non-lenses.*"
                                            r"; choose a test dataset with both$"):  # its split is not the fault
        train(_config(tmp_path, training_set, test_dataset=no_lenses, split=(0.9, 0.1), run_dir=tmp_path / "run"))
    assert not (tmp_path / "run").exists() and not (tmp_path / "models").exists()


# --- item 3: model files are never replaced silently ------------------------------------------------------

def test_a_taken_default_name_gives_way_to_a_free_one(finished, dataset, tmp_path, capsys):
    models = tmp_path / "models"
    models.mkdir()
    first = models / "space_lens_flow_1epochs.safetensors"
    shutil.copy(finished.model_path, first)
    before = first.read_bytes()
    result = train(_config(tmp_path, dataset))
    assert result.model_path == models / "space_lens_flow_1epochs-2.safetensors"
    assert f"will be saved as {result.model_path}" in capsys.readouterr().out
    assert first.read_bytes() == before and result.model_path.is_file()


def test_an_existing_model_out_is_refused_before_training(finished, dataset, tmp_path, capsys):
    out = tmp_path / "mine.safetensors"
    shutil.copy(finished.model_path, out)
    before = out.read_bytes()
    with pytest.raises(LexactumError, match="mine.safetensors: exists; give --overwrite"):
        train(_config(tmp_path, dataset, model_out=out))
    assert out.read_bytes() == before and not (tmp_path / "runs").exists()
    argv = ["train", "--dataset", str(dataset), "--epochs", "1", "--batch-size", "16", "--split", "0.5,0.25,0.25",
            "--device", "cpu", "--bootstrap", "0", "--run-dir", str(tmp_path / "r"), "--model-out", str(out),
            "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 2
    assert "--overwrite" in _one_line_error(capsys) and not (tmp_path / "r").exists()
    assert main([*argv, "--overwrite"]) == 0
    assert out.read_bytes() != before and (tmp_path / "r" / "last.ckpt").is_file()


@pytest.mark.parametrize("where", ["model_out", "models_dir", "run_dir"])
def test_an_output_folder_that_is_a_file_is_refused_before_training(dataset, tmp_path, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    target = {"model_out": blocker / "m.safetensors", "models_dir": blocker / "models", "run_dir": blocker}[where]
    with pytest.raises(LexactumError, match="not a folder"):
        train(_config(tmp_path, dataset, **{where: target}))
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()


def test_run_dir_naming_a_file_is_one_line(dataset, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["train", "--dataset", str(dataset), "--run-dir", str(tmp_path / "f"), "--device", "cpu"]) == 2
    assert f"--run-dir {tmp_path / 'f'}: not a folder" in _one_line_error(capsys)


# --- item 6 and 9: checkpoints and model files are written whole, a full disk is one line -----------------

def _simulate_full_disk(monkeypatch, match: str, after: int = 0):
    """Writes of temporary files whose name contains ``match`` fail half way with ENOSPC (after ``after`` ok)."""
    real = Path.write_bytes
    calls = []

    def write_bytes(self, data):
        if match in self.name and self.name.startswith("."):
            calls.append(self)
            if len(calls) > after:
                real(self, data[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    return calls


def test_full_disk_while_checkpointing_keeps_the_last_good_checkpoint(dataset, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    calls = _simulate_full_disk(monkeypatch, ".last.", after=1)  # epoch 1 saves, epoch 2 runs out of space
    argv = ["train", "--dataset", str(dataset), "--epochs", "2", "--batch-size", "16", "--split", "0.5,0.25,0.25",
            "--seed", "1", "--device", "cpu", "--bootstrap", "0", "--run-dir", str(run_dir), "--model-out",
            str(tmp_path / "m.safetensors"), "--cache-dir", str(tmp_path / "cache"), "--threads", "1"]
    assert main(argv) == 2
    assert len(calls) == 2
    line = _one_line_error(capsys)
    assert f"{run_dir / 'last.ckpt'}: cannot write the checkpoint (no space left on device)" in line
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == [runs.CLAIM_FILE]
    assert epochs_done(torch.load(run_dir / "last.ckpt", weights_only=True)) == 1
    monkeypatch.undo()
    assert main(["train", "--resume", str(run_dir)]) == 0
    assert epochs_done(torch.load(run_dir / "last.ckpt", weights_only=True)) == 2


def test_checkpoint_writer_on_a_real_full_disk(full_disk):
    last = full_disk / "last.ckpt"
    last.write_bytes(b"the previous checkpoint")
    with pytest.raises(LexactumError, match=r"last.ckpt: cannot write the checkpoint \(no space left on device\)"):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(100_000)}}, last)
    assert [p.name for p in full_disk.iterdir()] == ["last.ckpt"]
    assert last.read_bytes() == b"the previous checkpoint"


@pytest.mark.parametrize("earlier", [False, True], ids=["first epoch", "later epoch"])
def test_full_disk_at_a_checkpoint_offers_resume_only_where_there_is_a_last_ckpt(tmp_path, monkeypatch, earlier):
    if earlier:
        (tmp_path / "last.ckpt").write_bytes(b"an earlier checkpoint")
    _simulate_full_disk(monkeypatch, ".best.")
    with pytest.raises(LexactumError) as info:
        AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, tmp_path / "best.ckpt")
    hint = (f"'lexactum train --resume {tmp_path}' continues the run" if earlier
            else f"train again ({tmp_path} has no finished epoch to resume from)")
    assert str(info.value).endswith(hint)


@pytest.mark.parametrize("disk", ["simulated", "tmpfs"])
def test_full_disk_for_the_model_file_is_one_line(dataset, tmp_path, monkeypatch, capsys, request, disk):
    if disk == "tmpfs":
        out = request.getfixturevalue("full_disk") / "m.safetensors"
    else:
        out = tmp_path / "models" / "m.safetensors"
        _simulate_full_disk(monkeypatch, ".m.")
    argv = ["train", "--dataset", str(dataset), "--epochs", "1", "--batch-size", "16", "--split", "0.5,0.25,0.25",
            "--device", "cpu", "--bootstrap", "0", "--run-dir", str(tmp_path / "run"), "--model-out", str(out),
            "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 2
    line = _one_line_error(capsys)
    assert "no space left on device" in line.lower() and "the model file was not written" in line
    assert f"--resume {tmp_path / 'run'}" in line
    assert line.count(str(out)) == 1, line  # named once, with one piece of advice
    assert list(out.parent.iterdir()) == []  # no temporary file left behind


def test_a_read_only_run_folder_is_not_told_to_free_space(tmp_path, read_only):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    read_only(run_dir)
    with pytest.raises(LexactumError) as caught:
        AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, run_dir / "last.ckpt")
    assert "cannot write the checkpoint (read-only file system)" in str(caught.value)
    assert "free some space" not in str(caught.value) and "make the folder writable" in str(caught.value)


def test_trainer_writes_checkpoints_through_the_atomic_writer(tmp_path):
    trainer = build_trainer(tmp_path, epochs=1, device="cpu", progress=False)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


# --- item 7: last.ckpt every epoch ------------------------------------------------------------------------

def test_last_checkpoint_is_saved_every_epoch_even_without_improvement(dataset, tmp_path, monkeypatch):
    monkeypatch.setattr("lexactum.training.module.validation_auc", lambda *args, **kwargs: 0.5)  # never improves
    result = train(_config(tmp_path, dataset, epochs=3, run_dir=tmp_path / "run"))
    last = torch.load(result.run_dir / "last.ckpt", weights_only=True)
    best = torch.load(result.run_dir / "best.ckpt", weights_only=True)
    assert epochs_done(best) == 1  # AUC 0.5 after the first epoch, never better
    assert epochs_done(last) == 3 and last["global_step"] == 3 * best["global_step"]


def test_resuming_an_early_stopped_run_trains_nothing_more(dataset, tmp_path, monkeypatch, capsys):
    """A run that stopped early, resumed as it was (e.g. to write its model file after a full disk): Lightning
    alone would train on (its stop is not in the checkpoint) and could change best.ckpt, hence the model."""
    monkeypatch.setattr("lexactum.training.module.validation_auc", lambda *args, **kwargs: 0.5)  # never improves
    result = train(_config(tmp_path, dataset, epochs=5, patience=1, run_dir=tmp_path / "run"))
    assert result.epochs_trained == 2
    checkpoints = {name: (result.run_dir / name).read_bytes() for name in ("last.ckpt", "best.ckpt")}
    capsys.readouterr()
    again = train(TrainConfig.from_run(result.run_dir))
    assert "stopped early after 2 epochs, nothing to train" in capsys.readouterr().out
    assert {name: (result.run_dir / name).read_bytes() for name in checkpoints} == checkpoints
    assert again.epochs_trained == 2 and again.model_path == result.model_path


def test_a_resumed_run_keeps_the_patience_it_was_given(tmp_path):
    """--patience may change on a resume: the checkpoint's patience must not replace it (Lightning restores
    it), while the epochs without improvement and the best score carry on."""
    from lightning.pytorch.callbacks import EarlyStopping

    from lexactum.training import GivenPatience, build_trainer

    earlier = EarlyStopping(monitor="val_auc", mode="max", patience=2)
    earlier.wait_count, earlier.best_score = 1, torch.tensor(0.75)
    stopping = [c for c in build_trainer(tmp_path, 3, device="cpu", patience=5, progress=False).callbacks
                if isinstance(c, EarlyStopping)]
    assert len(stopping) == 1 and isinstance(stopping[0], GivenPatience)
    assert stopping[0].state_key == earlier.state_key  # runs saved with Lightning's class resume their state
    stopping[0].load_state_dict(earlier.state_dict())
    assert stopping[0].patience == 5
    assert stopping[0].wait_count == 1 and float(stopping[0].best_score) == 0.75


def test_a_run_being_trained_cannot_be_resumed_by_another_process_meanwhile(run_copy, capsys):
    """Two 'train --resume RUN' at once both wrote RUN's checkpoints and records: the second is refused in one
    line and changes nothing. (flock conflicts between two open files even in one process: the claim held
    here stands for the other process.)"""
    before = _snapshot(run_copy)
    with runs.claimed(run_copy, "is being trained"):
        assert main(["train", "--resume", str(run_copy), "--epochs", "5"]) == 2
    assert f"{run_copy} is being trained by another process" in _one_line_error(capsys)
    assert _snapshot(run_copy) == before


def test_a_resume_after_the_catalog_labels_changed_is_refused(finished, dataset, tmp_path, capsys):
    """split.json records each part's labels: a resume on a catalog whose labels were flipped would train
    on other data without a word; it is refused in one line and changes nothing."""
    import pandas as pd

    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    run_dir = tmp_path / "run"
    shutil.copytree(finished.run_dir, run_dir)
    split = json.loads((run_dir / "split.json").read_text())
    assert len(split["train"]["labels"]) == split["train"]["n"]
    config = json.loads((run_dir / "config.json").read_text())
    config["config"]["dataset"] = str(data)
    (run_dir / "config.json").write_text(json.dumps(config))
    catalog = next(data.glob("*.csv"))
    table = pd.read_csv(catalog, comment="#")
    label = "is_lens" if "is_lens" in table else "no_source"
    table[label] = 1 - table[label]
    catalog.write_text(table.to_csv(index=False))
    before = _snapshot(run_dir)
    assert main(["train", "--resume", str(run_dir), "--epochs", "3", "--cache-dir", str(tmp_path / "cache"),
                 "--model-out", str(tmp_path / "new.safetensors")]) == 2
    assert "label(s) of the train part differ from the run's split.json" in _one_line_error(capsys)
    assert _snapshot(run_dir) == before


def test_a_training_part_of_blank_images_is_refused_before_training(make_dataset, tmp_path, capsys):
    """A dataset of empty (all-NaN) cutouts trained without a word to a model scoring everything 0.5: refused
    now in one line naming the dataset, before any run folder or model file exists."""
    from astropy.io import fits

    from lexactum.data import ChallengeDataset

    root = make_dataset(survey="space", n=20, layout="test")
    for (path,) in ChallengeDataset(root).band_paths:
        with fits.open(path, mode="update") as hdul:
            hdul[0].data[:] = np.nan
    argv = ["train", "--dataset", str(root), "--epochs", "1", "--split", "0.5,0.25,0.25", "--device", "cpu",
            "--run-dir", str(tmp_path / "run"), "--model-out", str(tmp_path / "models" / "m.safetensors"),
            "--cache-dir", str(tmp_path / "cache"), "--bootstrap", "0"]
    assert main(argv) == 2
    line = _one_line_error(capsys)
    assert f"20 of 20 objects of {root} are blank" in line and "the whole training part is blank" in line
    assert not (tmp_path / "run").exists() and not (tmp_path / "models").exists()


def test_a_refused_resume_of_a_folder_that_holds_no_run_makes_nothing_there(tmp_path):
    """The claim on a run folder is taken only once the folder is known to hold a run: a mistyped --resume
    path gets one line and no lock file."""
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    with pytest.raises(LexactumError, match="not a run folder"):
        train(TrainConfig(dataset=str(tmp_path), resume=True, run_dir=str(folder)))
    assert list(folder.iterdir()) == []


def test_a_claim_is_not_kept_by_forked_children(tmp_path):
    """A data loader worker forked while the run folder is claimed must not keep the claim after the
    training process dies (a resume would be refused until the worker noticed)."""
    import fcntl

    with runs.claimed(tmp_path, "is being trained"):
        pid = os.fork()
        if pid == 0:  # the child: its inherited copy of the claim must be closed already
            held = [h for h in range(3, 256) if _is_claim(h, tmp_path)]
            os._exit(1 if held else 0)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    handle = os.open(tmp_path / runs.CLAIM_FILE, os.O_RDWR)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again once the block has ended
    finally:
        os.close(handle)


def _is_claim(handle: int, folder: Path) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{handle}") == str(folder / runs.CLAIM_FILE)
    except OSError:
        return False


def test_a_sigterm_that_lightning_takes_for_ctrl_c_still_ends_as_sigterm(dataset, tmp_path, monkeypatch, capsys):
    """A SIGTERM that arrives before Lightning's own handler is installed raises our Terminated inside the fit;
    Lightning handles it as a Ctrl-C and exits with status 1. It must still end as SIGTERM (143): the CI run
    that found this got 130 from a real signal sent as training started."""
    import signal

    from lexactum import processes
    from lexactum.training.module import LensFinderModule

    def terminated(*args, **kwargs):
        raise processes.Terminated()

    monkeypatch.setattr(LensFinderModule, "training_step", terminated)
    sigint = signal.getsignal(signal.SIGINT)  # Lightning ignores Ctrl-C from then on, for the whole process
    try:
        status = main(["train", "--dataset", str(dataset), "--epochs", "1", "--split", "0.5,0.25,0.25",
                       "--device", "cpu", "--run-dir", str(tmp_path / "run"),
                       "--model-out", str(tmp_path / "m.safetensors"), "--cache-dir", str(tmp_path / "cache")])
    finally:
        signal.signal(signal.SIGINT, sigint)
    assert status == 143
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("lexactum train: terminated (SIGTERM)")
