"""``lexactum predict``: any folder of cutouts -> ranked scores.csv and the challenge submission file."""

from __future__ import annotations

import csv
import json

import numpy as np

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
    assert "--batch-size 0" in capsys.readouterr().err and not (tmp_path / "b").exists()
