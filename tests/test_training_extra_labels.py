"""``lexactum train --extra-labels``: graded objects become training examples, used in training (the batches
seen hold their images), never in validation or test, recorded for a resume; bad input refused in one line
with nothing written."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from lexactum import runs
from lexactum.cli import main
from lexactum.data.normalise import normalise
from lexactum.simulate.toy import toy_images
from lexactum.training import LensFinderModule
from lexactum.training.sharding import TrainingDataModule

HEADER = "ID,grade,grader,timestamp\n"
EXTRA_IDS = 900_000 + np.arange(6)
#: The grades of the six extra objects: three lenses, two non-lenses, one left out (grade 1).
EXTRA_GRADES = (3, 2, 0, 1, 3, 0)


def write_cube(path, survey="space", n=6, seed=9):
    """An HDF5 cube of raw toy images with IDs 900000..., half lenses; returns (path, raw images)."""
    import h5py

    images = toy_images(survey, n, np.arange(n) % 2, np.random.default_rng(seed))
    with h5py.File(path, "w") as fh:
        fh["images"] = images
        fh["ids"] = 900_000 + np.arange(n)
    return path, images


def write_grades(path, ids, grades_given, grader="alice"):
    rows = "".join(f"{i},{g},{grader},2026-11-29T15:00:{k:02d}Z\n"
                   for k, (i, g) in enumerate(zip(ids, grades_given, strict=True)))
    path.write_text(HEADER + rows, encoding="utf-8")
    return path


def train_argv(dataset, tmp_path, *more):
    return ["train", "--dataset", str(dataset), "--epochs", "1", "--batch-size", "8", "--split", "0.5,0.25,0.25",
            "--device", "cpu", "--no-augment", "--bootstrap", "0", "--cache-dir", str(tmp_path / "cache"),
            "--run-dir", str(tmp_path / "run"), "--model-out", str(tmp_path / "model.safetensors"), *map(str, more)]


@pytest.fixture
def seen(monkeypatch):
    """What the network is given: the (images, labels, indices) of every training and validation batch."""
    batches = {"train": [], "val": []}
    train_step, val_step = LensFinderModule.training_step, LensFinderModule.validation_step

    def training_step(self, batch, batch_idx):
        batches["train"].append([t.detach().cpu().numpy().copy() for t in batch])
        return train_step(self, batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        if not self.trainer.sanity_checking:
            batches["val"].append([t.detach().cpu().numpy().copy() for t in batch])
        return val_step(self, batch, batch_idx)

    monkeypatch.setattr(LensFinderModule, "training_step", training_step)
    monkeypatch.setattr(LensFinderModule, "validation_step", validation_step)
    return batches


def test_graded_objects_are_trained_on_and_never_validated_or_tested(make_dataset, tmp_path, seen, capsys):
    dataset = make_dataset(n=24, seed=3)
    cube, raw = write_cube(tmp_path / "survey.h5")
    grades_file = write_grades(tmp_path / "alice.csv", EXTRA_IDS, EXTRA_GRADES)
    assert main(train_argv(dataset, tmp_path, "--extra-labels", grades_file, "--extra-dataset", cube)) == 0

    split = runs.read_split(tmp_path / "run")
    expected_labels = {int(i): int(g >= 2) for i, g in zip(EXTRA_IDS, EXTRA_GRADES, strict=True) if g != 1}
    extra = split["extra"]
    assert dict(zip(extra["ids"], extra["labels"], strict=True)) == expected_labels
    n_main = 24
    train_indices = set(split["train"]["ids"])  # toy IDs are 100000 + position
    trained = np.concatenate([indices for _, _, indices in seen["train"]])
    assert sorted(trained.tolist()) == sorted([i - 100_000 for i in train_indices] +
                                              list(range(n_main, n_main + len(expected_labels))))
    images = np.concatenate([b[0] for b in seen["train"]])
    labels = np.concatenate([b[1] for b in seen["train"]])
    for k, object_id in enumerate(extra["ids"]):  # position n_main + k: the k-th extra
        at = int(np.flatnonzero(trained == n_main + k)[0])
        expected = normalise(raw[object_id - 900_000][None], method="zscale")[0]
        np.testing.assert_array_equal(images[at], expected)  # the graded object's own image, normalised
        assert labels[at] == expected_labels[object_id]
    validated = np.concatenate([indices for _, _, indices in seen["val"]])
    assert validated.max() < n_main and sorted(validated + 100_000) == split["val"]["ids"]
    scored = [row["ID"] for row in runs.read_csv(tmp_path / "run" / "scores.csv")]
    assert len(scored) == split["test"]["n"] and not {str(i) for i in EXTRA_IDS} & set(scored)
    summary = json.loads((tmp_path / "run" / runs.CONFIG).read_text())["extra"]
    assert (summary["n_lenses"], summary["n_non_lenses"], summary["n_left_out"]) == (3, 2, 1)
    assert summary["labels_file"] == str(grades_file) and summary["dataset"] == str(cube.resolve())


def test_a_resume_must_learn_from_the_same_grades(make_dataset, tmp_path, capsys):
    dataset = make_dataset(n=24, seed=3)
    cube, _ = write_cube(tmp_path / "survey.h5")
    grades_file = write_grades(tmp_path / "alice.csv", EXTRA_IDS, EXTRA_GRADES)
    assert main(train_argv(dataset, tmp_path, "--extra-labels", grades_file, "--extra-dataset", cube)) == 0
    run = tmp_path / "run"
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    write_grades(grades_file, EXTRA_IDS, (3, 2, 0, 1, 0, 0))  # a grader changed their mind
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the extra examples from" in err and "differ from the run's split.json" in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert main(["train", "--resume", str(run), "--epochs", "2", "--extra-labels", str(cube)]) == 2
    assert "extra_labels was" in capsys.readouterr().err
    write_grades(grades_file, EXTRA_IDS, EXTRA_GRADES)  # the grades it began with: it continues
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    assert runs.read_split(run)["extra"]["n"] == 5


def test_the_training_loader_serves_the_extras_and_validation_and_test_do_not(make_dataset, tmp_path):
    module = TrainingDataModule(make_dataset(n=20, seed=1), batch_size=4, split=(0.5, 0.25, 0.25),
                                cache_dir=tmp_path, progress=False)
    extra = np.full((3, 1, 101, 101), 7.0, dtype=np.float32)
    module.add_extra(extra, [1, 0, 1])
    served = [(images.numpy(), labels.numpy(), indices.numpy()) for images, labels, indices in
              module.train_dataloader()]
    indices = np.concatenate([s[2] for s in served])
    assert sorted(indices.tolist()) == sorted([*module.train_indices.tolist(), 20, 21, 22])
    images, labels = np.concatenate([s[0] for s in served]), np.concatenate([s[1] for s in served])
    assert (images[indices >= 20] == 7.0).all() and labels[indices >= 20].tolist() == \
        [[1, 0, 1][k - 20] for k in indices[indices >= 20]]
    for loader in (module.val_dataloader(), module.test_dataloader()):
        assert max(int(i.max()) for _, _, i in loader) < 20
    halves = []
    for rank in (0, 1):  # DDP: each process takes its slice of every batch, extras included
        module.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        halves.append({int(k) for _, _, i in module.train_dataloader() for k in i})
    assert halves[0] | halves[1] == set(indices.tolist()) and {20, 21, 22} & halves[0] and {20, 21, 22} & halves[1]


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(("case", "message"), [
    ("unknown_id", r"alice.csv line 3: ID 123 is not in --extra-dataset .*survey.h5$"),
    ("other_survey", r"--extra-dataset .*ground.h5: holds ground images, but the run trains on space images"),
    ("only_grade_1", r"alice.csv: none of its 6 graded objects is a lens \(mean grade >= 2\) or a non-lens "
                     r"\(below 0.5\): nothing to learn from"),
    ("leak", r"alice.csv line 2: ID 1000\d\d is in the (validation|test) part of .*: an object graded for "
             r"training must not be scored in validation or test \(leakage\)"),
    ("no_dataset", r"--extra-labels needs --extra-dataset PATH"),
    ("bad_min_grade", r"--extra-min-grade must be a number from 0.5 to 3, got 4.0"),
    ("bad_grade", r"alice.csv line 2: grade '7' is not a whole number from 0 to 3"),
])
def test_bad_extra_labels_are_one_line_and_nothing_is_written(make_dataset, tmp_path, capsys, case, message):
    dataset = make_dataset(n=24, seed=3)
    cube, _ = write_cube(tmp_path / "survey.h5")
    ids, given, extra_dataset, more = list(EXTRA_IDS), list(EXTRA_GRADES), cube, []
    if case == "unknown_id":
        ids[1] = 123
    elif case == "other_survey":
        extra_dataset, _ = write_cube(tmp_path / "ground.h5", survey="ground")
    elif case == "only_grade_1":
        given = [1] * 6
    elif case == "leak":
        extra_dataset = dataset
        split = np.random.default_rng(0).permutation(24)  # the split's order: positions 12.. are not training
        ids = [100_000 + int(split[-1 - k]) for k in range(6)]
    elif case == "bad_min_grade":
        more = ["--extra-min-grade", "4"]
    elif case == "bad_grade":
        given[0] = 7
    grades_file = write_grades(tmp_path / "alice.csv", ids, given)
    argv = ["--extra-labels", grades_file, *([] if case == "no_dataset" else ["--extra-dataset", extra_dataset])]
    assert main(train_argv(dataset, tmp_path, *argv, *more)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    import re
    assert re.search(message, err.strip().removeprefix("lexactum train: error: ")), err
    assert not (tmp_path / "run").exists() and not (tmp_path / "model.safetensors").exists()


def test_a_npy_cube_with_its_ids_file_and_a_merged_table_plan_the_extras(tmp_path):
    from lexactum.data.surveys import get_survey
    from lexactum.errors import LexactumError
    from lexactum.training import TrainConfig
    from lexactum.training.extras import plan_extras

    images = toy_images("space", 4, np.zeros(4), np.random.default_rng(0))
    np.save(tmp_path / "cube.npy", images)
    (tmp_path / "ids.txt").write_text("".join(f"{i}\n" for i in EXTRA_IDS[:4]))
    table = tmp_path / "merged.csv"
    table.write_text("ID,mean_grade,n_graders,class,spread\n900003,2.500,2,A,1\n900001,1.000,2,C,2\n"
                     "900000,0.000,1,,0\n")

    def plan(**settings):
        config = TrainConfig(dataset=tmp_path, extra_labels=table, extra_dataset=tmp_path / "cube.npy", **settings)
        config.validate()
        return plan_extras(config, get_survey("space"))

    extras = plan(extra_ids=tmp_path / "ids.txt")
    assert (extras.ids, extras.labels.tolist(), extras.rows.tolist()) == ([900003, 900000], [1, 0], [3, 0])
    assert extras.record()["n_left_out"] == 1
    assert plan(extra_ids=tmp_path / "ids.txt", extra_min_grade=1).labels.tolist() == [1, 1, 0]
    with pytest.raises(LexactumError, match=r"merged.csv line 2: ID 900003 is not in --extra-dataset .*cube.npy "
                                            r"\(2 more graded IDs are not there either\)"):
        plan()  # without the IDs file the cube's IDs are its row numbers


def test_an_id_of_another_dataset_is_another_object_not_a_leak(make_dataset, tmp_path, capsys):
    """Toy datasets and many surveys number their objects alike: graded objects of another dataset whose IDs
    are also IDs of the run's test part are other objects, and are trained on."""
    import json

    dataset = make_dataset(n=24, seed=3)
    other = make_dataset(n=24, seed=8)  # the same IDs 100000..100023, other images
    grades_file = write_grades(tmp_path / "alice.csv", [100_000 + k for k in range(6)], list(EXTRA_GRADES))
    assert main(train_argv(dataset, tmp_path, "--extra-labels", grades_file, "--extra-dataset", other)) == 0
    assert "leakage" not in capsys.readouterr().err
    extra = json.loads((tmp_path / "run" / "split.json").read_text())["extra"]
    assert len(extra["ids"]) == 5  # grade 1 left out
