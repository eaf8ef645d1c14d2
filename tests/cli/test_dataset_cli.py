"""``lexactum dataset info`` and ``prepare`` through the real command-line entry point."""

from __future__ import annotations

import json

import pytest

from lexactum.cli import main
from lexactum.data.layouts import ChallengeDataset


@pytest.fixture
def ground_set(make_dataset):
    """A ground training set with one band file missing and one catalog row without images."""
    root = make_dataset(survey="ground", n=7, layout="train")
    dataset = ChallengeDataset(root)
    missing = [dataset.band_paths[2][1], dataset.band_paths[2][3]]  # two bands of one object
    for path in missing:
        path.unlink()
    with open(root / "classifications.csv", "a") as fh:
        fh.write("199999,1,0,0,0\n")
    return root, dataset, missing


def test_info_json(ground_set, tmp_path, capsys):
    root, dataset, missing = ground_set
    assert main(["dataset", "info", str(root), "--json", "--cache-dir", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    kept = [k for k in range(7) if k != 2]
    assert report["survey"] == "ground" and report["layout"] == "train" and report["bands"] == ["R", "I", "G", "U"]
    assert report["objects"] == 6
    assert report["lenses"] == int(dataset.labels[kept].sum())
    assert report["non_lenses"] == 6 - report["lenses"]
    assert report["incomplete"] == [{"id": int(dataset.ids[2]), "missing": sorted(map(str, missing))}]
    assert report["unlabelled"] == []
    assert report["missing_images"] == {"count": 1, "examples": [199999]}
    assert report["cache"]["state"] == "missing" and report["cache"]["path"].startswith(str(tmp_path))


def test_prepare_then_info_shows_valid_cache(make_dataset, tmp_path, capsys):
    root = make_dataset(survey="space", n=5, layout="test")
    cache_dir = str(tmp_path / "cache")
    assert main(["dataset", "prepare", str(root), "--cache-dir", cache_dir, "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "prepared 5 objects" in out and "images/s" in out
    assert main(["dataset", "prepare", str(root), "--cache-dir", cache_dir]) == 0
    assert "already valid" in capsys.readouterr().out
    assert main(["dataset", "info", str(root), "--cache-dir", cache_dir]) == 0
    text = capsys.readouterr().out
    assert "space (1 band: VIS)" in text and "layout       test" in text and "cache        valid" in text
    assert main(["dataset", "info", str(root), "--cache-dir", cache_dir, "--no-mask", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cache"]["state"] == "missing"  # another option, another cache


def test_info_text_lists_problems(ground_set, tmp_path, capsys):
    root, dataset, missing = ground_set
    assert main(["dataset", "info", str(root), "--cache-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "incomplete   1 left out" in text  # one object, though two of its files are missing
    assert f"{dataset.ids[2]}: missing {', '.join(sorted(map(str, missing)))}" in text
    assert "1 catalog IDs without any image file: 199999" in text


@pytest.mark.parametrize("case", ["missing folder", "no id column", "wrong survey", "bad normalisation",
                                  "bad normalisation (info)"])
def test_errors_exit_2_with_one_line(make_dataset, tmp_path, capsys, case):
    root = make_dataset(survey="space", n=3, layout="train")
    argv = ["dataset", "info", str(root)]
    if case == "missing folder":
        argv[2] = str(tmp_path / "nowhere")
    elif case == "no id column":
        (root / "classifications.csv").write_text("name,is_lens\nx,1\n")
    elif case == "wrong survey":
        argv += ["--survey", "ground"]
    elif case == "bad normalisation (info)":
        argv += ["--normalisation", "nonsense", "--cache-dir", str(tmp_path)]
    else:
        argv = ["dataset", "prepare", str(root), "--normalisation", "nonsense", "--cache-dir", str(tmp_path)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lexactum dataset: error: ")
    assert captured.out == ""


def test_dataset_without_action_prints_help(capsys):
    assert main(["dataset"]) == 0
    assert "info" in capsys.readouterr().out


def _break(root, case):
    """Spoil the ground training set at ``root`` as ``case`` says; returns the path the error must name."""
    import numpy as np
    from astropy.io import fits

    dataset = ChallengeDataset(root)
    catalog = root / "classifications.csv"
    if case == "empty folder":
        for path in sorted(root.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        return root
    if case == "no catalog":
        catalog.unlink()
        return root
    if case == "no label column":
        catalog.write_text("ID,lens\n100000,1\n")
        return catalog
    if case == "catalog not CSV":
        catalog.write_bytes(b"PK\x03\x04\x14\0\x06\0\x08\0\0\0!\0")
        return catalog
    if case == "survey cannot be told":
        for path in root.rglob("*.fits"):
            path.unlink()
        return root
    bad = dataset.band_paths[0][0] if case == "other shape, first file" else dataset.band_paths[4][2]
    if case == "truncated image":
        bad.write_bytes(bad.read_bytes()[:5000])
    elif case == "image not FITS":
        bad.write_text("not an image\n")
    elif case == "empty image file":
        bad.write_bytes(b"")
    else:
        fits.writeto(bad, np.zeros((64, 64), np.float32), overwrite=True)
    return bad


def _as_shown(text: str) -> list[str]:
    """The non-blank lines a terminal shows for ``text`` (a carriage return starts its line again)."""
    shown = [line.split("\r")[-1] for line in text.split("\n")]
    return [line for line in shown if line.strip()]


@pytest.mark.parametrize("case, workers", [
    ("empty folder", 1), ("no catalog", 1), ("no label column", 1), ("catalog not CSV", 1),
    ("survey cannot be told", 1), ("truncated image", 2), ("image not FITS", 1), ("empty image file", 2),
    ("other shape", 1), ("other shape, first file", 1),
])
def test_prepare_bad_input_one_line_nothing_written(make_dataset, tmp_path, capsys, monkeypatch, case, workers):
    """Every bad input of the issue: exit 2, one line naming the file (the progress bar erased), no cache."""
    from lexactum.data import cache

    monkeypatch.delenv("LEXACTUM_NO_PROGRESS", raising=False)  # the bar is on, as for a user
    monkeypatch.setattr(cache, "CHUNK_OBJECTS", 2)  # several chunks, so --workers 2 runs in processes
    root = make_dataset(survey="ground", n=6, layout="train")
    named = _break(root, case)
    cache_dir = tmp_path / "cache"
    argv = ["dataset", "prepare", str(root), "--cache-dir", str(cache_dir), "--workers", str(workers)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = _as_shown(captured.err)
    assert len(lines) == 1 and lines[0].startswith("lexactum dataset: error: "), captured.err
    assert str(named) in lines[0]
    if "shape" in case:
        assert "64x64" in lines[0]
    assert captured.out == ""
    assert not cache_dir.exists() or list(cache_dir.iterdir()) == []


#: Runs the command line; with 'during', the space check sees a huge free space, so that the disk fills up
#: while the cache is written.
FULL_DISK_DRIVER = """
import shutil, sys
if sys.argv[1] == "during":
    real_usage = shutil.disk_usage
    shutil.disk_usage = lambda path: real_usage(path)._replace(free=10**12)
from lexactum.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("when", ["before", "during"])
def test_prepare_on_a_full_disk_exits_2_with_one_line(make_dataset, small_disk, when):
    """A real full file system as --cache-dir: exit 2 (no bus error), one line, no temporary folder left."""
    import subprocess
    import sys

    disk = small_disk("1m").root
    root = make_dataset(survey="space", n=40, layout="train")  # 1.6 MB of images for 1 MB of disk
    argv = [sys.executable, "-c", FULL_DISK_DRIVER, when, "dataset", "prepare", str(root),
            "--cache-dir", str(disk), "--workers", "2"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = _as_shown(result.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"lexactum dataset: error: no space left on {disk}")
    assert ("need 1.6 MB, 1.0 MB free" in lines[0]) == (when == "before")
    assert result.stdout == "" and list(disk.iterdir()) == []


def test_odd_entries_are_skipped_by_info_and_prepare_alike(make_dataset, tmp_path):
    """A named pipe (which used to hang prepare), a broken link and a link loop among the band files: both
    commands leave those objects out with the same one warning line on stderr."""
    import os
    import subprocess
    import sys

    root = make_dataset(survey="ground", n=6, layout="train")
    dataset = ChallengeDataset(root)
    odd = [dataset.band_paths[1][0], dataset.band_paths[3][2], dataset.band_paths[4][3]]
    for path in odd:
        path.unlink()
    os.mkfifo(odd[0])
    odd[1].symlink_to(tmp_path / "elsewhere.fits")
    odd[2].symlink_to(odd[2].name)
    runs = {}
    for action in ("prepare", "info"):
        argv = [sys.executable, "-m", "lexactum", "dataset", action, str(root), "--cache-dir", str(tmp_path / "c")]
        runs[action] = subprocess.run(argv + (["--json"] if action == "info" else []),
                                      capture_output=True, text=True, timeout=60)
        assert runs[action].returncode == 0, runs[action].stderr
    warnings = {action: _as_shown(run.stderr) for action, run in runs.items()}
    assert warnings["prepare"] == warnings["info"] and len(warnings["info"]) == 1
    assert warnings["info"][0].startswith(f"lexactum: warning: skipped 3 entries under {root} that cannot be read")
    assert "prepared 3 objects" in runs["prepare"].stdout
    report = json.loads(runs["info"].stdout)
    assert report["objects"] == 3 and report["cache"]["state"] == "valid"
    assert [e["path"] for e in report["skipped"]] == sorted(map(str, odd))
    assert [e["id"] for e in report["incomplete"]] == [int(dataset.ids[k]) for k in (1, 3, 4)]


def test_prepare_into_a_read_only_cache_folder_is_one_line(make_dataset, read_only, tmp_path, capsys):
    (tmp_path / "read-only").mkdir()
    read_only_folder = read_only(tmp_path / "read-only")
    root = make_dataset(survey="space", n=3, layout="train")
    assert main(["dataset", "prepare", str(root), "--cache-dir", str(read_only_folder), "--workers", "1"]) == 2
    lines = _as_shown(capsys.readouterr().err)
    assert len(lines) == 1
    assert lines[0].startswith(f"lexactum dataset: error: {read_only_folder}: cannot write the prepared dataset: "
                               "Read-only file system")


def test_prepare_refuses_zero_workers_before_any_work(make_dataset, tmp_path, capsys, monkeypatch):
    from lexactum.data import cache

    monkeypatch.setattr(cache, "_allocate", lambda *args: pytest.fail("work started"))
    root = make_dataset(survey="space", n=3, layout="train")
    assert main(["dataset", "prepare", str(root), "--cache-dir", str(tmp_path / "c"), "--workers", "0"]) == 2
    assert capsys.readouterr().err.strip() == "lexactum dataset: error: --workers must be 1 or more, not 0"
    assert not (tmp_path / "c").exists()
