"""``lexactum predict``: any folder of cutouts -> ranked scores.csv and the challenge submission file."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from lexactum.cli import main


def read_outputs(out):
    with open(out / "scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    submission = (out / "submission.txt").read_text().splitlines()
    return rows, submission


def test_predict_challenge_dataset(toy_model_file, make_dataset, tmp_path):
    from lexactum.data.layouts import ChallengeDataset

    root = make_dataset("space", n=11, layout="test", seed=2)
    model = toy_model_file(tmp_path / "space.safetensors", 1, seed=1)
    assert main(["predict", "--model", str(model), str(root), "--out", str(tmp_path / "pred"),
                 "--batch-size", "4", "--device", "cpu"]) == 0
    rows, submission = read_outputs(tmp_path / "pred")
    dataset = ChallengeDataset(root)
    # Submission: every object once, "ID score", no header.
    assert len(submission) == len(dataset) == 11
    parsed = [line.split() for line in submission]
    assert all(len(fields) == 2 for fields in parsed)
    assert sorted(int(i) for i, _ in parsed) == sorted(dataset.ids.tolist())
    by_id = {int(i): float(s) for i, s in parsed}
    assert all(0.0 <= s <= 1.0 for s in by_id.values())
    # Ranked list: most lens-like first, same scores, labels from the catalog.
    assert list(rows[0]) == ["ID", "score", "label"]
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert {int(r["ID"]): float(r["score"]) for r in rows} == by_id
    label_of = dict(zip(dataset.ids.tolist(), dataset.labels.tolist(), strict=True))
    assert all(int(r["label"]) == label_of[int(r["ID"])] for r in rows)
    config = json.loads((tmp_path / "pred" / "config.json").read_text())
    assert config["n_objects"] == 11 and config["survey"] == "space"


def test_predict_loose_multiband_cutouts_match_the_challenge_layout(toy_model_file, make_dataset, tmp_path):
    """One file per object with all bands (any names) scores like the same images in the challenge layout."""
    from astropy.io import fits

    from lexactum.data.layouts import ChallengeDataset

    root = make_dataset("ground", n=5, layout="test", seed=4)
    dataset = ChallengeDataset(root)
    loose = tmp_path / "loose" / "night1"
    loose.mkdir(parents=True)
    for k, object_id in enumerate(dataset.ids):
        fits.PrimaryHDU(dataset.read(k)).writeto(loose / f"candidate_{object_id}.fits")
    model = toy_model_file(tmp_path / "ground.safetensors", 4, seed=1)
    assert main(["predict", "--model", str(model), str(root), "--out", str(tmp_path / "a")]) == 0
    assert main(["predict", "--model", str(model), str(tmp_path / "loose"), "--out", str(tmp_path / "b")]) == 0
    rows_a, _ = read_outputs(tmp_path / "a")
    rows_b, submission_b = read_outputs(tmp_path / "b")
    assert list(rows_b[0]) == ["ID", "score"]  # no labels for loose cutouts
    assert len(submission_b) == 5
    a = {r["ID"]: float(r["score"]) for r in rows_a}
    b = {r["ID"]: float(r["score"]) for r in rows_b}
    assert a.keys() == b.keys()
    np.testing.assert_allclose([b[k] for k in a], list(a.values()), rtol=1e-5)


def test_predict_unlabelled_challenge_files(toy_model_file, make_dataset, tmp_path):
    root = make_dataset("space", n=4, layout="train")
    (root / "classifications.csv").unlink()
    model = toy_model_file(tmp_path / "space.safetensors", 1, seed=1)
    assert main(["predict", "--model", str(model), str(root), "--out", str(tmp_path / "p")]) == 0
    rows, submission = read_outputs(tmp_path / "p")
    assert list(rows[0]) == ["ID", "score"] and len(submission) == 4


def test_predict_errors(toy_model_file, make_dataset, tmp_path, capsys):
    root = make_dataset("space", n=3)
    ground = toy_model_file(tmp_path / "ground.safetensors", 4, seed=1)
    assert main(["predict", "--model", str(ground), str(root), "--out", str(tmp_path / "x")]) == 2
    assert "ground" in capsys.readouterr().err
    space = toy_model_file(tmp_path / "space.safetensors", 1, seed=1)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    assert main(["predict", "--model", str(space), str(empty), "--out", str(tmp_path / "y")]) == 2
    assert "no FITS files" in capsys.readouterr().err
    assert main(["predict", "--model", str(space), str(tmp_path / "nowhere"), "--out", str(tmp_path / "z")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # A bad batch size fails before any work: no output folder with a config.json for a run that never ran.
    assert main(["predict", "--model", str(space), str(root), "--out", str(tmp_path / "b"), "--batch-size", "0"]) == 2
    assert "--batch-size must be a positive whole number, got 0" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


# ------------------------------------------------------------------------------------ faults and bad input
def nan_model_file(path):
    """A lens_flow model file whose weights are all NaN (as a diverged training leaves them)."""
    import torch

    from lexactum.models import create_model, save_model

    model = create_model("lens_flow", in_channels=1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
    return save_model(model, path)


def contents(folder):
    """The files of ``folder`` but the resumable shards a failed run keeps (see test_shards_of_a_failed_run...)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "shards"}


@pytest.fixture
def earlier_prediction(toy_model_file, make_dataset, tmp_path):
    """(dataset, good model, output folder holding a good run's outputs and a user's own file)."""
    root = make_dataset("space", n=6, layout="test", seed=2)
    model = toy_model_file(tmp_path / "space.safetensors", 1, seed=1)
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(model), str(root), "--out", str(out)]) == 0
    (out / "notes.txt").write_text("the user's own file")
    return root, model, out


def test_nan_scores_are_an_error_naming_the_model_and_nothing_is_written(earlier_prediction, tmp_path, capsys):
    root, _, out = earlier_prediction
    before = contents(out)
    broken = nan_model_file(tmp_path / "diverged.safetensors")
    capsys.readouterr()
    assert main(["predict", "--model", str(broken), str(root), "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"{broken} gave 6 non-finite score(s)" in err and "e.g. ID 100000" in err
    assert len(err.strip().splitlines()) == 1
    assert contents(out) == before  # the earlier outputs, whole, and nothing else


def test_allow_nonfinite_writes_the_other_scores_and_lists_the_rest(earlier_prediction, monkeypatch, capsys):
    from lexactum.inference.engine import CommitteeScorer

    root, model, out = earlier_prediction
    real_step = CommitteeScorer.predict_step

    def two_nan(self, batch, batch_idx=0):
        result = real_step(self, batch, batch_idx)
        for position, value in ((1, np.nan), (4, np.inf)):
            result["scores"][result["positions"] == position] = value
        return result

    monkeypatch.setattr(CommitteeScorer, "predict_step", two_nan)
    assert main(["predict", "--model", str(model), str(root), "--out", str(out), "--overwrite"]) == 2
    assert "2 non-finite score(s)" in capsys.readouterr().err
    # The scores are kept in shards: the second command only merges them, leaving those two out.
    monkeypatch.setattr(CommitteeScorer, "predict_step", real_step)
    assert main(["predict", "--model", str(model), str(root), "--out", str(out), "--allow-nonfinite"]) == 0
    assert f"left out 2 object(s) (2 non-finite score): listed in {out / 'left_out.csv'}" in capsys.readouterr().out
    rows, submission = read_outputs(out)
    assert sorted(int(r["ID"]) for r in rows) == [100000, 100002, 100003, 100005] and len(submission) == 4
    with open(out / "left_out.csv", newline="") as fh:
        left = list(csv.DictReader(fh))
    assert [(r["ID"], r["reason"]) for r in left] == [("100001", "non-finite score (nan)"),
                                                      ("100004", "non-finite score (inf)")]
    assert json.loads((out / "config.json").read_text())["left_out"] == 2


def test_objects_left_out_are_counted_and_listed(toy_model_file, make_dataset, tmp_path, capsys):
    from lexactum.data.layouts import ChallengeDataset

    root = make_dataset("ground", n=6, layout="test", seed=5)
    dataset = ChallengeDataset(root)
    dataset.band_paths[1][2].unlink()  # object 2: its G band is missing
    for path in dataset.band_paths[3]:  # object 4: a catalog row without any image
        path.unlink()
    model = toy_model_file(tmp_path / "ground.safetensors", 4, seed=1)
    assert main(["predict", "--model", str(model), str(root), "--out", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert (f"left out 2 object(s) (1 band file missing, 1 catalog row without image files): listed in "
            f"{tmp_path / 'p' / 'left_out.csv'}") in out
    with open(tmp_path / "p" / "left_out.csv", newline="") as fh:
        left = list(csv.DictReader(fh))
    ids = dataset.ids.tolist()
    assert [(int(r["ID"]), r["reason"]) for r in left] == [(ids[1], "band file missing"),
                                                           (ids[3], "catalog row without image files")]
    assert left[0]["file"] == str(dataset.band_paths[1][2])
    assert len(read_outputs(tmp_path / "p")[1]) == 4


def test_disk_full_in_out_is_one_line_and_keeps_the_earlier_outputs(toy_model_file, make_dataset, tmp_path,
                                                                     small_disk, capsys):
    root = make_dataset("space", n=6, layout="test", seed=2)
    model = toy_model_file(tmp_path / "space.safetensors", 1, seed=1)
    other = toy_model_file(tmp_path / "other.safetensors", 1, seed=7)
    disk = small_disk("256k")
    out = disk.root / "pred"
    assert main(["predict", "--model", str(model), str(root), "--out", str(out)]) == 0
    before = contents(out)
    disk.fill()
    capsys.readouterr()
    assert main(["predict", "--model", str(other), str(root), "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lexactum predict: error: cannot write {out}/") and "no space left on device" in err
    assert len(err.strip().splitlines()) == 1
    assert contents(out) == before  # old outputs whole, no temporary file
    disk.free()
    assert main(["predict", "--model", str(other), str(root), "--out", str(out), "--overwrite"]) == 0


def test_disk_full_simulated(earlier_prediction, toy_model_file, tmp_path, monkeypatch, capsys):
    """The same where mounting a small disk is refused: the disk fills up when the files are synced."""
    import errno
    import os

    root, _, out = earlier_prediction
    before = contents(out)
    other = toy_model_file(tmp_path / "other.safetensors", 1, seed=7)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert main(["predict", "--model", str(other), str(root), "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {out}/shards/manifest.json: no space left on device" in err and "Traceback" not in err
    assert contents(out) == before


def test_read_only_out_is_one_line_and_keeps_the_earlier_outputs(earlier_prediction, read_only, capsys):
    root, model, out = earlier_prediction
    before = contents(out)
    read_only(out)
    capsys.readouterr()
    assert main(["predict", "--model", str(model), str(root), "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    # refused before the scoring pass, not after it
    assert f"--out {out}: cannot write in {out} (read-only or no permission)" in err
    assert len(err.strip().splitlines()) == 1
    assert contents(out) == before
