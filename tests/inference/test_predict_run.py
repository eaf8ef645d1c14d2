"""``lexactum predict`` at survey scale: cubes, committees, views, shards that survive a kill, and 2 processes."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from lexactum.cli import main


def read_scores(out) -> dict[str, dict[str, str]]:
    with open(out / "scores.csv", newline="") as fh:
        return {row["ID"]: row for row in csv.DictReader(fh)}


def submission(out) -> dict[int, float]:
    lines = (out / "submission.txt").read_text().splitlines()
    return {int(i): float(s) for i, s in (line.split() for line in lines)}


@pytest.fixture
def cube(make_dataset, tmp_path):
    """(challenge dataset, HDF5 cube of the same raw images and IDs, its images)."""
    from lexactum.data.layouts import ChallengeDataset

    root = make_dataset("space", n=23, layout="test", seed=3)
    dataset = ChallengeDataset(root)
    images = np.stack([dataset.read(i) for i in range(len(dataset))])
    path = tmp_path / "cube.h5"
    with h5py.File(path, "w") as fh:
        fh["images"], fh["ids"] = images, dataset.ids
    return root, path, images


def test_a_cube_needs_no_option_and_scores_like_its_folder(cube, toy_model_file, tmp_path, monkeypatch):
    root, path, _ = cube
    model = toy_model_file(tmp_path / "m.safetensors", 1, seed=1)
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "--model", str(model), str(path)]) == 0
    assert main(["predict", "--model", str(model), str(root), "--out", "folder", "--batch-size", "5"]) == 0
    from_cube, from_folder = submission(tmp_path / "predictions" / "cube"), submission(tmp_path / "folder")
    assert from_cube.keys() == from_folder.keys() and len(from_cube) == 23
    np.testing.assert_allclose([from_cube[k] for k in from_cube], [from_folder[k] for k in from_cube], rtol=1e-6)
    assert not (tmp_path / "predictions" / "cube" / "shards").exists()  # merged, then dropped
    config = json.loads((tmp_path / "predictions" / "cube" / "config.json").read_text())
    assert config["input_kind"] == "hdf5" and config["n_scored"] == 23


def test_npy_cube_with_ids_file_and_nan_only_images_left_out(cube, toy_model_file, tmp_path, capsys):
    _, _, images = cube
    images = images.copy()
    images[[4, 9]] = np.nan
    np.save(tmp_path / "cube.npy", images)
    ids = np.arange(500, 523)
    (tmp_path / "ids.txt").write_text("\n".join(map(str, ids)) + "\n")
    model = toy_model_file(tmp_path / "m.safetensors", 1, seed=1)
    out = tmp_path / "p"
    assert main(["predict", "--model", str(model), str(tmp_path / "cube.npy"), "--ids", str(tmp_path / "ids.txt"),
                 "--out", str(out)]) == 0
    assert f"left out 2 object(s) (2 image has no finite pixel): listed in {out / 'left_out.csv'}" \
        in capsys.readouterr().out
    assert sorted(submission(out)) == sorted(set(ids.tolist()) - {504, 509})
    with open(out / "left_out.csv", newline="") as fh:
        assert [(r["ID"], r["reason"]) for r in csv.DictReader(fh)] == [("504", "image has no finite pixel"),
                                                                         ("509", "image has no finite pixel")]
    np.save(tmp_path / "blank.npy", np.full((3, 1, 101, 101), np.nan, np.float32))
    assert main(["predict", "--model", str(model), str(tmp_path / "blank.npy"), "--out", str(tmp_path / "b")]) == 2
    assert "no image has a finite pixel" in capsys.readouterr().err


def test_committee_columns_and_views_match_their_members_and_a_manual_average(cube, toy_model_file, tmp_path):
    import torch

    from lexactum.data.normalise import normalise
    from lexactum.models import load_model

    _, path, images = cube
    a = toy_model_file(tmp_path / "a.safetensors", 1, seed=1)
    b = toy_model_file(tmp_path / "b.safetensors", 1, seed=2)
    for name, models in (("a", [a]), ("b", [b]), ("ab", [a, b])):
        arguments = [x for m in models for x in ("--model", str(m))]
        assert main(["predict", *arguments, str(path), "--out", str(tmp_path / name), "--tta", "8",
                     "--parquet"]) == 0
    both, alone_a, alone_b = (read_scores(tmp_path / n) for n in ("ab", "a", "b"))
    assert list(next(iter(both.values()))) == ["ID", "score", "a", "b"]
    for object_id, row in both.items():
        assert float(row["a"]) == pytest.approx(float(alone_a[object_id]["score"]), rel=1e-9)
        assert float(row["b"]) == pytest.approx(float(alone_b[object_id]["score"]), rel=1e-9)
        assert float(row["score"]) == pytest.approx((float(row["a"]) + float(row["b"])) / 2, rel=1e-12)
    ranked = [float(row["score"]) for row in both.values()]
    assert ranked == sorted(ranked, reverse=True)
    # --tta 8: the mean probability over the 8 flips and quarter turns, each scored by the network itself
    network = load_model(a)
    x = normalise(images)
    views = [np.rot90(x, k % 4, axes=(-2, -1))[..., ::-1] if k >= 4 else np.rot90(x, k, axes=(-2, -1))
             for k in range(8)]
    with torch.inference_mode():
        manual = np.mean([torch.sigmoid(network(torch.from_numpy(v.copy())).double()).numpy().ravel()
                          for v in views], axis=0)
    from_file = submission(tmp_path / "a")
    with h5py.File(path) as fh:
        ids = fh["ids"][:]
    np.testing.assert_allclose([from_file[int(i)] for i in ids], manual, rtol=1e-6)
    import pandas as pd

    table = pd.read_parquet(tmp_path / "ab" / "scores.parquet")
    assert list(table.columns) == ["ID", "score", "a", "b"]
    assert table["ID"].astype(str).tolist() == list(both)


def test_restart_with_other_options_is_refused_and_results_are_never_replaced(cube, toy_model_file, tmp_path,
                                                                              capsys):
    _, path, _ = cube
    a = toy_model_file(tmp_path / "a.safetensors", 1, seed=1)
    b = toy_model_file(tmp_path / "b.safetensors", 1, seed=2)
    out = tmp_path / "p"
    assert main(["predict", "--model", str(a), str(path), "--out", str(out)]) == 0
    before = (out / "scores.csv").read_bytes()
    capsys.readouterr()
    assert main(["predict", "--model", str(a), str(path), "--out", str(out)]) == 0
    assert "already holds this prediction" in capsys.readouterr().out
    for other in (["--model", str(b)], ["--model", str(a), "--tta", "4"], ["--model", str(a), "--parquet"]):
        assert main(["predict", *other, str(path), "--out", str(out)]) == 2
        assert "of another prediction: use --overwrite" in capsys.readouterr().err
    assert (out / "scores.csv").read_bytes() == before
    assert main(["predict", "--model", str(b), str(path), "--out", str(out), "--overwrite"]) == 0
    assert (out / "scores.csv").read_bytes() != before


def test_bad_committee_and_devices_are_one_line_before_any_work(cube, toy_model_file, tmp_path, capsys):
    _, path, _ = cube
    space = toy_model_file(tmp_path / "space.safetensors", 1, seed=1)
    ground = toy_model_file(tmp_path / "ground.safetensors", 4, seed=1)
    for arguments, message in (
        (["--model", str(space), "--model", str(ground)], "was trained on ground images, but the committee's"),
        (["--model", str(ground)], "ground"),
        (["--model", str(space), "--devices", "4096", "--accelerator", "cpu"], "--devices 4096 CPU processes"),
        (["--model", str(space), "--devices", "2", "--device", "cpu"], "names one device"),
        (["--model", str(space), "--workers", "-1"], "--workers must be 0 or more"),
        (["--model", str(space), "--shard-size", "0"], "--shard-size must be a positive whole number"),
    ):
        assert main(["predict", *arguments, str(path), "--out", str(tmp_path / "x")]) == 2, arguments
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "x").exists()


def run_cli(*arguments, cwd, **kwargs):
    env = {**os.environ, "LEXACTUM_NO_PROGRESS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "lexactum", *arguments], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=240, **kwargs)


SLOW_AFTER_FIRST_SHARD = """
import os, sys, time
from lexactum.inference import engine
read = engine.SourceBatches._read
def slow(self, positions):
    if positions[0] >= 8:
        time.sleep(float(os.environ.get("SLOW_READ", "0.5")))
    return read(self, positions)
engine.SourceBatches._read = slow
from lexactum.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_prediction_resumes_to_the_same_files(cube, toy_model_file, tmp_path):
    _, path, _ = cube
    model = toy_model_file(tmp_path / "m.safetensors", 1, seed=1)
    common = ["predict", "--model", str(model), str(path), "--batch-size", "4", "--shard-size", "8",
              "--workers", "0"]
    assert run_cli(*common, "--out", "whole", cwd=tmp_path).returncode == 0
    env = {**os.environ, "LEXACTUM_NO_PROGRESS": "1"}
    killed = subprocess.Popen([sys.executable, "-c", SLOW_AFTER_FIRST_SHARD, *common, "--out", "cut"],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = tmp_path / "cut" / "shards" / "shard-000000.npz"
    deadline = time.monotonic() + 120
    while not first.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    assert first.exists() and not (tmp_path / "cut" / "scores.csv").exists()
    done_before = sorted(p.name for p in (tmp_path / "cut" / "shards").glob("shard-*.npz"))
    assert done_before and len(done_before) < 3
    resumed = run_cli(*common, "--out", "cut", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    for name in ("scores.csv", "submission.txt"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert not (tmp_path / "cut" / "shards").exists()


def test_a_restart_reads_only_the_shards_still_missing(cube, toy_model_file, tmp_path, monkeypatch, capsys):
    from lexactum.inference import engine

    _, path, _ = cube
    model = toy_model_file(tmp_path / "m.safetensors", 1, seed=1)
    command = ["predict", "--model", str(model), str(path), "--out", str(tmp_path / "p"), "--batch-size", "4",
               "--shard-size", "8", "--workers", "0"]
    read, write = engine.SourceBatches._read, engine.write_shard
    positions_read: list[int] = []

    def crash_after_first_shard(out_dir, s, *arrays):
        if s > 0:
            raise KeyboardInterrupt
        return write(out_dir, s, *arrays)

    def counted(self, positions):
        positions_read.extend(positions.tolist())
        return read(self, positions)

    monkeypatch.setattr(engine, "write_shard", crash_after_first_shard)
    assert main(command) == 130
    monkeypatch.setattr(engine, "write_shard", write)
    monkeypatch.setattr(engine.SourceBatches, "_read", counted)
    capsys.readouterr()
    assert main(command) == 0
    assert sorted(positions_read) == list(range(8, 23))  # shard 0 (positions 0-7) was not read again
    assert len(submission(tmp_path / "p")) == 23


@pytest.mark.slow
def test_two_processes_score_every_object_once_like_one(cube, toy_model_file, tmp_path):
    _, path, _ = cube
    a = toy_model_file(tmp_path / "a.safetensors", 1, seed=1)
    b = toy_model_file(tmp_path / "b.safetensors", 1, seed=2)
    common = ["predict", "--model", str(a), "--model", str(b), str(path), "--batch-size", "3", "--shard-size", "5",
              "--accelerator", "cpu"]
    one = run_cli(*common, "--devices", "1", "--out", "one", cwd=tmp_path)
    two = run_cli(*common, "--devices", "2", "--out", "two", cwd=tmp_path)
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    lines = (tmp_path / "two" / "submission.txt").read_text().splitlines()
    assert len(lines) == len({line.split()[0] for line in lines}) == 23  # each ID exactly once
    single, double = read_scores(tmp_path / "one"), read_scores(tmp_path / "two")
    assert single.keys() == double.keys()
    for object_id, row in single.items():
        for column in ("score", "a", "b"):
            assert float(double[object_id][column]) == pytest.approx(float(row[column]), rel=1e-6)
    assert json.loads((tmp_path / "two" / "config.json").read_text())["world_size"] == 2


def process_tree(pid: int) -> set[int]:
    """``pid`` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parent = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        found.add(current)
        todo.extend(children.get(current, []))
    return found


@pytest.mark.slow
def test_killing_a_two_process_prediction_leaves_no_process_behind(cube, toy_model_file, tmp_path):
    from lexactum.processes import process_alive

    _, path, _ = cube
    model = toy_model_file(tmp_path / "m.safetensors", 1, seed=1)
    env = {**os.environ, "LEXACTUM_NO_PROGRESS": "1", "SLOW_READ": "120"}  # every process busy when killed
    script = tmp_path / "slow_predict.py"  # a file: Lightning starts the second rank by running it again
    script.write_text(SLOW_AFTER_FIRST_SHARD)
    command = [sys.executable, str(script), "predict", "--model", str(model), str(path), "--out", "p",
               "--batch-size", "4", "--shard-size", "8", "--devices", "2", "--accelerator", "cpu", "--workers", "1"]
    parent = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    tree: set[int] = set()
    while time.monotonic() < deadline and parent.poll() is None:  # the second rank and the loader workers
        tree = process_tree(parent.pid)
        if len(tree) >= 4 and (tmp_path / "p" / "shards" / "shard-000000.npz").exists():
            break
        time.sleep(0.1)
    assert parent.poll() is None and len(tree) >= 4, "the two ranks never started their workers"
    parent.kill()
    parent.wait(timeout=30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(process_alive(p) for p in tree - {parent.pid}):
        time.sleep(0.2)
    assert not any(process_alive(p) for p in tree - {parent.pid})


def test_a_ground_cutout_that_is_all_mask_is_left_out_like_a_nan_one(make_dataset, toy_model_file, tmp_path,
                                                                    capsys):
    """Ground files mark missing pixels with 100.0: a cutout of nothing else has no pixel to score."""
    from lexactum.data.layouts import ChallengeDataset

    dataset = ChallengeDataset(make_dataset("ground", n=6, layout="test", seed=2))
    images = np.stack([dataset.read(i) for i in range(len(dataset))])
    images[2] = 100.0
    np.save(tmp_path / "ground.npy", images)
    model = toy_model_file(tmp_path / "g.safetensors", 4, seed=1)
    assert main(["predict", "--model", str(model), str(tmp_path / "ground.npy"), "--out", str(tmp_path / "p")]) == 0
    assert "1 image has no finite pixel" in capsys.readouterr().out
    assert sorted(submission(tmp_path / "p")) == [0, 1, 3, 4, 5]
