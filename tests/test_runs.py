"""Run folders and atomic writes: files appear whole or not at all; JSON/CSV read back as written."""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lexactum import runs
from lexactum.errors import LexactumError


def test_atomic_path_renames_on_success_and_cleans_up_on_error(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    with runs.atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".txt" and tmp != target
        tmp.write_text("first")
        assert not target.exists()
    assert target.read_text() == "first"

    with pytest.raises(RuntimeError), runs.atomic_path(target) as tmp:
        tmp.write_text("half-written")
        raise RuntimeError("interrupted")
    assert target.read_text() == "first"  # the old file is untouched
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.txt"]  # no temporary left


def test_writing_where_a_file_or_folder_is_in_the_way_is_one_clear_error(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("mine")
    with pytest.raises(LexactumError, match="afile: is a file, not a folder"):
        runs.write_json(blocker / "config.json", {"a": 1})  # e.g. --out afile
    with pytest.raises(LexactumError, match=r"^--out .*afile: not a folder$"):
        runs.check_output_folder(blocker)  # the same, asked before a long scoring pass
    with pytest.raises(LexactumError, match=r"afile/sub: not a folder \(.*afile is not a folder\)$"):
        runs.check_output_folder(blocker / "sub")
    runs.check_output_folder(tmp_path / "not" / "yet")  # a folder still to be made is fine, and not made
    assert not (tmp_path / "not").exists()
    (tmp_path / "folder").mkdir()
    with pytest.raises(LexactumError, match="folder: is a folder"):
        runs.write_text_atomic(tmp_path / "folder", "text")  # e.g. convert --out somedir
    assert blocker.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["afile", "folder"]


def test_json_round_trip_with_numpy_paths_and_nan(tmp_path):
    record = {"n": np.int64(3), "auc": np.float32(0.5), "ids": np.arange(3), "path": Path("a/b"),
              "split": (0.19, 0.01, 0.8), "missing": float("nan"), "inf": np.float64("inf")}
    path = runs.write_json(tmp_path / "r.json", record)
    back = runs.read_json(path)
    assert back == {"n": 3, "auc": 0.5, "ids": [0, 1, 2], "path": "a/b", "split": [0.19, 0.01, 0.8],
                    "missing": None, "inf": None}
    assert json.loads(path.read_text()) == back  # plain JSON, no NaN tokens


@pytest.mark.parametrize(("content", "message"), [
    (None, "file not found"),
    ("{not json", "not a readable JSON file"),
    ("[1, 2]", "expected a JSON object"),
])
def test_read_json_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(LexactumError, match=message) as info:
        runs.read_json(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_csv_round_trip_matches_pandas(tmp_path):
    rows = [{"epoch": 1, "train_loss": 0.69, "val_auc": float("nan")},
            {"epoch": 2, "train_loss": 0.5, "val_auc": 0.75, "extra": "x"}]
    path = runs.write_csv(tmp_path / "m.csv", rows)
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["epoch", "train_loss", "val_auc", "extra"]
    assert frame["epoch"].tolist() == [1, 2] and frame["train_loss"].tolist() == [0.69, 0.5]
    assert math.isnan(frame["val_auc"][0]) and frame["val_auc"][1] == 0.75
    assert runs.read_csv(path)[1] == {"epoch": "2", "train_loss": "0.5", "val_auc": "0.75", "extra": "x"}
    assert runs.read_csv(tmp_path / "absent.csv") == []


def test_new_run_dir_names_and_never_reuses(tmp_path):
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    first = runs.new_run_dir("space", "lens_flow", root=tmp_path, now=now)
    second = runs.new_run_dir("space", "lens_flow", root=tmp_path, now=now)
    assert first.name == "20260102-030405_space_lens_flow" and first.is_dir()
    assert second.name == "20260102-030405_space_lens_flow-2" and second.is_dir()


def test_config_and_split_records(tmp_path):
    runs.write_config(tmp_path, {"config": {"network": "lens_flow"}, "device": "cpu"})
    saved = runs.read_config(tmp_path)
    assert saved["config"] == {"network": "lens_flow"} and saved["device"] == "cpu"
    assert saved["versions"]["lexactum"] and saved["versions"]["torch"] and saved["created"]

    runs.write_split(tmp_path, {"train": np.array([3, 1]), "test": [2]}, seed=4, fractions=[0.5, 0.5])
    split = runs.read_split(tmp_path)
    assert split == {"seed": 4, "fractions": [0.5, 0.5], "train": {"n": 2, "ids": [3, 1]},
                     "test": {"n": 1, "ids": [2]}}

    with pytest.raises(LexactumError, match="run folder does not exist"):
        runs.read_config(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LexactumError, match="not a run folder"):
        runs.read_config(tmp_path / "empty")


# ------------------------------------------------------------------------------- faults while writing
@pytest.fixture
def umask():
    """Factory: ``umask(mask)`` sets the process umask for the test; the old one comes back after it."""
    import os

    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_written_files_get_the_mode_of_any_new_file(tmp_path, umask, mask):
    """safetensors writes 0600 files whatever the umask; every file we write gets 0666 less the umask."""
    import os
    import stat

    import torch
    from safetensors.torch import save_file

    umask(mask)
    with runs.atomic_path(tmp_path / "model.safetensors") as tmp:
        save_file({"w": torch.zeros(3)}, str(tmp))
    runs.write_text_atomic(tmp_path / "scores.csv", "ID,score\n")
    for name in ("model.safetensors", "scores.csv"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o666 & ~mask, name


def _only_names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_failed_cleanup_never_hides_the_error_that_caused_it(tmp_path, monkeypatch):
    """Disk full while writing in a folder that then refuses the temporary's removal too (read-only)."""
    import errno

    target = tmp_path / "scores.csv"
    target.write_text("earlier\n")

    def refuse(self, missing_ok=False):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    with pytest.raises(runs.WriteError) as caught, runs.atomic_path(target) as tmp:
        tmp.write_text("half")
        monkeypatch.setattr(Path, "unlink", refuse)
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.undo()
    assert str(caught.value).startswith(f"cannot write {target}: no space left on device")
    assert target.read_text() == "earlier\n"


def test_disk_full_is_one_line_naming_the_file_and_keeps_the_old_one(small_disk):
    disk = small_disk("64k")
    target = disk.root / "submission.txt"
    runs.write_text_atomic(target, "earlier\n")
    disk.fill()
    with pytest.raises(runs.WriteError, match=f"^cannot write {target}: no space left on device"):
        runs.write_bytes_atomic(target, b"x" * 200_000)
    assert target.read_text() == "earlier\n"
    assert _only_names(disk.root) == [".filler", "submission.txt"]  # no temporary left


def test_a_read_only_folder_is_one_line_naming_the_file(tmp_path, read_only):
    folder = tmp_path / "out"
    runs.write_text_atomic(folder / "scores.csv", "earlier\n")
    read_only(folder)
    with pytest.raises(runs.WriteError, match=f"^cannot write {folder / 'scores.csv'}: read-only file system"):
        runs.write_text_atomic(folder / "scores.csv", "new\n")
    assert (folder / "scores.csv").read_text() == "earlier\n"


def test_all_or_nothing_keeps_every_earlier_file_when_one_write_fails(tmp_path):
    runs.write_text_atomic(tmp_path / "a.csv", "old a\n")
    runs.write_text_atomic(tmp_path / "b.csv", "old b\n")
    with pytest.raises(RuntimeError), runs.all_or_nothing():
        runs.write_text_atomic(tmp_path / "a.csv", "new a\n")
        assert (tmp_path / "a.csv").read_text() == "old a\n"  # waits for the group's end
        with runs.all_or_nothing():  # a nested group joins the outer one
            runs.write_text_atomic(tmp_path / "c.csv", "new c\n")
        with runs.atomic_path(tmp_path / "b.csv") as tmp:
            tmp.write_text("half b")
            raise RuntimeError("killed")
    assert _only_names(tmp_path) == ["a.csv", "b.csv"]
    assert (tmp_path / "a.csv").read_text() == "old a\n" and (tmp_path / "b.csv").read_text() == "old b\n"

    with runs.all_or_nothing():
        runs.write_text_atomic(tmp_path / "a.csv", "new a\n")
        runs.write_text_atomic(tmp_path / "b.csv", "new b\n")
    assert (tmp_path / "a.csv").read_text() == "new a\n" and (tmp_path / "b.csv").read_text() == "new b\n"
    assert _only_names(tmp_path) == ["a.csv", "b.csv"]


def test_all_or_nothing_renames_its_group_with_the_folder_locked(tmp_path, monkeypatch):
    """Another command's group (it takes the same lock) cannot rename between two renames of this group: two
    ``predict --out DIR`` at once left scores.csv of one run beside submission.txt of the other."""
    fcntl = pytest.importorskip("fcntl")
    real_replace, seen = os.replace, []

    def replace(src, dst):
        probe = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)  # as another process would open it
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append("free")
        except BlockingIOError:
            seen.append("locked")
        finally:
            os.close(probe)
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with runs.all_or_nothing():
        runs.write_text_atomic(tmp_path / "scores.csv", "new\n")
        runs.write_text_atomic(tmp_path / "submission.txt", "new\n")
    assert seen == ["locked", "locked"]


def test_temporaries_of_killed_writers_are_swept_and_live_ones_kept(tmp_path):
    """A kill -9 inside all_or_nothing leaves the group's temporaries: the next write there removes those of
    dead processes (a child that has exited and been reaped), never a running writer's or another file."""
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(child.stdout)
    folder = tmp_path / "out"
    folder.mkdir()
    here = runs.machine_tag()
    abandoned = folder / f".scores.{here}-{dead_pid}-0123abcd.part.csv"
    live = folder / f".metrics.{here}-{os.getppid()}-89abcdef.part.json"  # our parent runs: a live writer's
    elsewhere = folder / f".roc.{'0' * 8 if here != '0' * 8 else '1' * 8}-{dead_pid}-4567cdef.part.png"
    user_file = folder / ".notes.12-notahex.part.txt"
    for path in (abandoned, live, elsewhere, user_file):
        path.write_text("x")
    runs.write_text_atomic(folder / "scores.csv", "ID,score\n")
    assert not abandoned.exists()
    assert live.exists() and user_file.exists()
    # another host or container writing into a shared folder: its pid says nothing here, so it is kept
    assert elsewhere.exists()
    assert runs.TEMPORARY_NAME.fullmatch(abandoned.name) and not runs.TEMPORARY_NAME.fullmatch(user_file.name)
    with runs.atomic_path(folder / "metrics.json") as tmp:  # the writer's own names are the ones swept
        match = runs.TEMPORARY_NAME.fullmatch(tmp.name)
        assert match and match["machine"] == here and int(match["pid"]) == os.getpid()
        tmp.write_text("{}")


def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(tmp_path, read_only):
    """predict, evaluate, features and simulate ask this before their long work: a read-only --out is one line
    then, not after hours of scoring."""
    (tmp_path / "ro").mkdir()
    out = read_only(tmp_path / "ro")
    with pytest.raises(LexactumError, match=r"--out .*ro/new: cannot write in .*ro \(read-only or no permission\)"):
        runs.check_output_folder(out / "new")
