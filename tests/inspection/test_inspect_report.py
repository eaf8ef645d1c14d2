"""``lexactum inspect`` as a library: the report folder's contents for labelled and unlabelled scores, and that it
appears whole or not at all."""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lexactum.cli import main
from lexactum.inspection.report import DATA_PREFIX, InspectRequest, inspect


def read_report(folder: Path) -> dict:
    text = (folder / "data.js").read_text(encoding="utf-8")
    assert text.startswith(DATA_PREFIX) and text.rstrip().endswith(";")
    return json.loads(text[len(DATA_PREFIX):].rstrip().rstrip(";"))


def read_scores(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def picture(path: Path):
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return image


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A labelled space evaluation (train layout: its catalog has the lensed quantities) by a toy lens_flow."""
    import torch

    from lexactum.models import create_model, save_model
    from lexactum.simulate.toy import write_toy_dataset

    root = tmp_path_factory.mktemp("evaluated")
    dataset = write_toy_dataset(root / "data", survey="space", n=24, layout="train", seed=3)
    torch.manual_seed(0)
    model = save_model(create_model("lens_flow", in_channels=1), root / "space.safetensors")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEXACTUM_NO_PROGRESS", "1")
        assert main(["evaluate", "--model", str(model), "--dataset", str(dataset), "--out", str(root / "ev"),
                     "--bootstrap", "50", "--device", "cpu"]) == 0
    return root / "ev"


@pytest.fixture
def evaluation(evaluated, tmp_path):
    """A copy of the evaluation output that a test may spoil."""
    return Path(shutil.copytree(evaluated, tmp_path / "ev"))


def test_labelled_report_contents(evaluated, tmp_path):
    out = tmp_path / "report"
    summary = inspect(InspectRequest(str(evaluated), str(out), top=4, random=5, seed=1))
    data = read_report(out)
    rows = read_scores(evaluated / "scores.csv")
    metrics = json.loads((evaluated / "metrics.json").read_text())
    config = json.loads((evaluated / "config.json").read_text())
    assert data["version"] == 1 and data["source"] == "evaluate" and data["survey"] == "space"
    assert data["models"] == config["models"] and data["dataset"] == config["dataset"]
    assert data["created"].endswith("Z")
    lenses = sum(r["label"] == "1" for r in rows)
    assert data["counts"] == {"scored": len(rows), "lenses": lenses, "cards": len(data["cards"])}
    assert data["metrics"]["auc"] == metrics["auc"] and data["metrics"]["n_lenses"] == lenses
    assert data["metrics"]["intervals"]["auc"] == metrics["intervals"]["auc"]
    assert data["roc"] == "roc.png" and (out / "roc.png").read_bytes() == (evaluated / "roc.png").read_bytes()
    assert data["saliency_method"].startswith("Grad-CAM")
    # galleries, against scores.csv
    score = {r["ID"]: float(r["score"]) for r in rows}
    label = {r["ID"]: int(r["label"]) for r in rows}
    ranked = sorted(score, key=lambda i: -score[i])
    galleries = {g["key"]: [data["cards"][k]["id"] for k in g["cards"]] for g in data["galleries"]}
    assert list(galleries) == ["top", "false_positives", "missed", "random"]
    assert galleries["top"] == ranked[:4]
    assert galleries["false_positives"] == [i for i in ranked if label[i] == 0][:4]
    assert galleries["missed"] == [i for i in reversed(ranked) if label[i] == 1][:4]
    assert len(set(galleries["random"])) == 5
    ids = [c["id"] for c in data["cards"]]
    assert len(ids) == len(set(ids)) == summary["cards"]
    for k, card in enumerate(data["cards"]):
        assert card["score"] == score[card["id"]] and card["label"] == label[card["id"]]
        assert card["rank"] == ranked.index(card["id"]) + 1
        assert card["thumb"] == f"thumbs/{k}.png" and card["saliency"] == f"saliency/{k}.png"
        assert card["catalog"] is not None and set(card["catalog"]) == {"einstein_area", "lensed_pixels",
                                                                        "lensed_flux"}
        thumb = picture(out / card["thumb"])
        assert thumb.mode == "L" and thumb.size == (101, 101) and np.asarray(thumb).std() > 0
        overlay = picture(out / card["saliency"]).convert("RGB")
        assert overlay.size == (101, 101)
    assert sorted(p.name for p in (out / "thumbs").iterdir()) == sorted(f"{k}.png" for k in range(len(ids)))
    assert leftovers(tmp_path) == [] and leftovers(out / "thumbs") == []


def test_saliency_overlays_differ_between_cards(evaluated, tmp_path):
    out = tmp_path / "report"
    inspect(InspectRequest(str(evaluated), str(out), top=3, random=0))
    overlays = [np.asarray(picture(p).convert("RGB"), dtype=np.int16) for p in sorted((out / "saliency").iterdir())]
    assert len(overlays) >= 3 and not np.array_equal(overlays[0], overlays[1])


def test_unlabelled_prediction_report(toy_model_file, make_dataset, tmp_path):
    """Ground cutouts without a catalog: colour thumbnails, galleries top and random only, no metrics."""
    root = make_dataset("ground", n=9, layout="train", seed=5)
    (root / "classifications.csv").unlink()
    model = toy_model_file(tmp_path / "ground.safetensors", 4, seed=2)
    assert main(["predict", "--model", str(model), str(root), "--out", str(tmp_path / "pred"),
                 "--device", "cpu"]) == 0
    out = tmp_path / "report"
    inspect(InspectRequest(str(tmp_path / "pred"), str(out), top=3, random=2))
    data = read_report(out)
    assert data["source"] == "predict" and data["survey"] == "ground"
    assert data["models"] == [str(model.resolve())]
    assert data["counts"] == {"scored": 9, "lenses": None, "cards": len(data["cards"])}
    assert data["metrics"] is None and data["roc"] is None and not (out / "roc.png").exists()
    assert [g["key"] for g in data["galleries"]] == ["top", "random"]
    ranked = [r["ID"] for r in read_scores(tmp_path / "pred" / "scores.csv")]  # predict ranks its rows
    assert [data["cards"][k]["id"] for k in data["galleries"][0]["cards"]] == ranked[:3]
    for card in data["cards"]:
        assert card["label"] is None and card["catalog"] is None
        thumb = picture(out / card["thumb"])
        assert thumb.mode == "RGB" and np.asarray(thumb).std() > 0


def test_labelled_prediction_gets_metrics_and_a_roc(toy_model_file, make_dataset, tmp_path):
    root = make_dataset("space", n=12, layout="test", seed=6)
    model = toy_model_file(tmp_path / "space.safetensors", 1, seed=2)
    assert main(["predict", "--model", str(model), str(root), "--out", str(tmp_path / "pred")]) == 0
    out = tmp_path / "report"
    inspect(InspectRequest(str(tmp_path / "pred"), str(out), top=2, random=0, saliency=False))
    data = read_report(out)
    rows = read_scores(tmp_path / "pred" / "scores.csv")
    from lexactum.evaluation.metrics import auc

    labels = np.array([int(r["label"]) for r in rows])
    assert data["metrics"]["auc"] == pytest.approx(auc(labels, np.array([float(r["score"]) for r in rows])))
    assert data["metrics"]["n"] == 12 and len(data["metrics"]["intervals"]["auc"]) == 2
    assert data["roc"] == "roc.png" and picture(out / "roc.png").size[0] > 100
    assert [g["key"] for g in data["galleries"]] == ["top", "false_positives", "missed", "random"]
    assert data["saliency_method"] is None and not (out / "saliency").exists()
    assert all(card["saliency"] is None for card in data["cards"])


def test_committee_saliency_is_the_first_members(toy_model_file, make_dataset, tmp_path):
    root = make_dataset("space", n=6, layout="test", seed=7)
    first = toy_model_file(tmp_path / "a.safetensors", 1, seed=1)
    second = toy_model_file(tmp_path / "b.safetensors", 1, seed=2)
    assert main(["predict", "--model", str(first), "--model", str(second), str(root), "--out",
                 str(tmp_path / "pred")]) == 0
    inspect(InspectRequest(str(tmp_path / "pred"), str(tmp_path / "report"), top=2, random=0))
    data = read_report(tmp_path / "report")
    assert data["models"] == [str(first.resolve()), str(second.resolve())]
    assert "first" in data["saliency_method"] and "a.safetensors" in data["saliency_method"]


def test_run_folder_report(make_dataset, tmp_path):
    """A training run's own test evaluation, found from its config.json (its test part and model file)."""
    dataset = make_dataset("space", n=24, layout="train", seed=8)
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(dataset), "--network", "lens_flow", "--epochs", "1", "--batch-size",
                 "8", "--split", "0.5,0.25,0.25", "--device", "cpu", "--run-dir", str(run), "--model-out",
                 str(tmp_path / "model.safetensors"), "--cache-dir", str(tmp_path / "cache"),
                 "--bootstrap", "20"]) == 0
    inspect(InspectRequest(str(run), str(tmp_path / "report"), top=2, random=1))
    data = read_report(tmp_path / "report")
    split = json.loads((run / "split.json").read_text())
    assert data["source"] == "run" and data["counts"]["scored"] == split["test"]["n"]
    assert data["models"] == [str(tmp_path / "model.safetensors")]
    assert {c["id"] for c in data["cards"]} <= {str(i) for i in split["test"]["ids"]}
    assert data["metrics"]["auc"] == json.loads((run / "metrics.json").read_text())["auc"]
    assert data["saliency_method"] and all((tmp_path / "report" / c["saliency"]).is_file() for c in data["cards"])


def test_page_files_are_copied(evaluated, tmp_path, monkeypatch):
    from lexactum.inspection import report

    static = tmp_path / "static"
    static.mkdir()
    for name, text in {"index.html": "<html></html>", "app.js": "// app", "style.css": "/* css */",
                       "README": "not copied"}.items():
        (static / name).write_text(text)
    monkeypatch.setattr(report, "STATIC", static)
    inspect(InspectRequest(str(evaluated), str(tmp_path / "report"), top=1, random=0, saliency=False))
    for name in ("index.html", "app.js", "style.css"):
        assert (tmp_path / "report" / name).read_text() == (static / name).read_text()
    assert not (tmp_path / "report" / "README").exists()


def test_existing_report_is_replaced_only_with_overwrite(evaluated, tmp_path):
    from lexactum.errors import LexactumError

    out = tmp_path / "report"
    inspect(InspectRequest(str(evaluated), str(out), top=2, random=0, saliency=False))
    before = (out / "data.js").read_bytes()
    with pytest.raises(LexactumError, match="already exists.*--overwrite"):
        inspect(InspectRequest(str(evaluated), str(out), top=3, random=0, saliency=False))
    assert (out / "data.js").read_bytes() == before
    inspect(InspectRequest(str(evaluated), str(out), top=3, random=0, saliency=False, overwrite=True))
    assert read_report(out)["galleries"][0]["cards"] == [0, 1, 2]
    assert leftovers(tmp_path) == []


def test_overwrite_never_replaces_a_folder_that_is_no_report(evaluated, tmp_path):
    from lexactum.errors import LexactumError

    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("precious")
    with pytest.raises(LexactumError, match="not a report folder"):
        inspect(InspectRequest(str(evaluated), str(mine), overwrite=True, saliency=False))
    assert (mine / "chapter1.tex").read_text() == "precious" and sorted(os.listdir(mine)) == ["chapter1.tex"]


def full_disk_after(monkeypatch, n_files: int) -> None:
    """Every file written into the report after the first ``n_files`` fails as on a full disk."""
    from lexactum.errors import WriteError
    from lexactum.inspection.folder import Staging

    real = Staging.write
    count = {"n": 0}

    def write(self, name, data):
        count["n"] += 1
        if count["n"] > n_files:
            raise WriteError.of(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), self.path / name)
        return real(self, name, data)

    monkeypatch.setattr(Staging, "write", write)


def test_a_failed_write_leaves_no_report_and_keeps_the_old_one(evaluated, tmp_path, monkeypatch):
    from lexactum.errors import WriteError

    out = tmp_path / "report"
    with monkeypatch.context() as patch:
        full_disk_after(patch, 5)
        with pytest.raises(WriteError, match="no space left"):
            inspect(InspectRequest(str(evaluated), str(out), top=4, random=0))
    assert not out.exists() and leftovers(tmp_path) == []
    inspect(InspectRequest(str(evaluated), str(out), top=2, random=0, saliency=False))
    before = (out / "data.js").read_bytes()
    full_disk_after(monkeypatch, 3)
    with pytest.raises(WriteError):
        inspect(InspectRequest(str(evaluated), str(out), top=4, random=0, overwrite=True))
    assert (out / "data.js").read_bytes() == before and leftovers(tmp_path) == []


def test_a_real_full_disk_leaves_nothing(evaluated, small_disk):
    from lexactum.errors import WriteError

    disk = small_disk("1m")
    disk.fill(leave=20_000)
    with pytest.raises(WriteError, match="no space left"):
        inspect(InspectRequest(str(evaluated), str(disk.root / "report"), top=20, random=0))
    assert sorted(p.name for p in disk.root.iterdir()) == [".filler"]


def test_a_killed_commands_staging_folder_is_removed(evaluated, tmp_path):
    from lexactum.runs import machine_tag

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    left = tmp_path / f".report.{machine_tag()}-{int(dead.stdout)}-0123abcd.part"
    (left / "thumbs").mkdir(parents=True)
    (left / "thumbs" / "0.png").write_bytes(b"half")
    inspect(InspectRequest(str(evaluated), str(tmp_path / "report"), top=1, random=0, saliency=False))
    assert not left.exists() and leftovers(tmp_path) == []


def test_missing_model_suggests_no_saliency(evaluation, tmp_path):
    from lexactum.errors import ModelFileError

    config = json.loads((evaluation / "config.json").read_text())
    config["models"] = [str(tmp_path / "gone.safetensors")]
    (evaluation / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match=r"gone\.safetensors.*--no-saliency"):
        inspect(InspectRequest(str(evaluation), str(tmp_path / "report")))
    assert not (tmp_path / "report").exists()
    inspect(InspectRequest(str(evaluation), str(tmp_path / "report"), saliency=False, top=1, random=0))
    assert read_report(tmp_path / "report")["saliency_method"] is None


def test_a_prepared_cache_as_the_dataset(evaluated, tmp_path):
    """A cache holds the images in one normalisation: the right one gives a report, another one is refused
    for the saliency maps (the network would see images unlike its training ones)."""
    from lexactum.data.cache import prepare
    from lexactum.errors import ModelFileError

    dataset = json.loads((evaluated / "config.json").read_text())["dataset"]
    same = prepare(dataset, "zscale", cache_dir=tmp_path / "zscale", workers=1, progress=False)
    inspect(InspectRequest(str(evaluated), str(tmp_path / "a"), top=2, random=0, dataset=str(same.path)))
    data = read_report(tmp_path / "a")
    assert data["dataset"] == str(same.path) and data["cards"][0]["catalog"] is None
    assert np.asarray(picture(tmp_path / "a" / "thumbs" / "0.png")).std() > 0
    other = prepare(dataset, "minmax", cache_dir=tmp_path / "minmax", workers=1, progress=False)
    with pytest.raises(ModelFileError, match="minmax-normalised images.*--no-saliency"):
        inspect(InspectRequest(str(evaluated), str(tmp_path / "b"), dataset=str(other.path)))
    assert not (tmp_path / "b").exists()


def test_every_file_is_on_disk_before_the_report_appears(evaluated, tmp_path, monkeypatch):
    """The folder's rename is the one atomic step: each of its files and folders is fsynced before it."""
    synced: list[str] = []
    real = os.fsync

    def fsync(handle):
        out = tmp_path / "report"
        assert not out.exists()  # before the rename
        synced.append(os.readlink(f"/proc/self/fd/{handle}"))
        return real(handle)

    monkeypatch.setattr(os, "fsync", fsync)
    inspect(InspectRequest(str(evaluated), str(tmp_path / "report"), top=3, random=1))
    written = [p for p in (tmp_path / "report").rglob("*")]
    assert written and all(any(s.endswith(str(p.relative_to(tmp_path / "report"))) for s in synced)
                           for p in written)
