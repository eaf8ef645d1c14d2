"""Committees: members from files and globs, one survey, unique column names, and the three ways to combine."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import rankdata

from lexactum.errors import LexactumError, ModelFileError
from lexactum.inference.committee import combine, expand_model_arguments, load_committee


def test_combine_mean_min_and_rank():
    scores = np.array([[0.9, 0.2], [0.5, 0.6], [0.1, 0.1]])
    np.testing.assert_array_equal(combine(scores, "mean"), [0.55, 0.55, 0.1])
    np.testing.assert_array_equal(combine(scores, "min"), [0.2, 0.5, 0.1])
    # ranks per member (1 = lowest): member 0 -> 3, 2, 1; member 1 -> 2, 3, 1; mean fraction of 3
    np.testing.assert_allclose(combine(scores, "rank"), [2.5 / 3, 2.5 / 3, 1 / 3])
    with pytest.raises(LexactumError, match="unknown --combine 'median'"):
        combine(scores, "median")


@given(arrays(np.float64, st.tuples(st.integers(1, 30), st.integers(1, 4)), elements=st.floats(0, 1)))
def test_combined_scores_follow_their_definitions(scores):
    np.testing.assert_allclose(combine(scores, "mean"), scores.mean(axis=1))
    np.testing.assert_array_equal(combine(scores, "min"), scores.min(axis=1))
    ranks = np.column_stack([rankdata(scores[:, k]) for k in range(scores.shape[1])]) / len(scores)
    np.testing.assert_allclose(combine(scores, "rank"), ranks.mean(axis=1))
    # a committee of one is its member, whichever way (rank keeps the order)
    one = scores[:, :1]
    np.testing.assert_array_equal(combine(one, "mean"), one[:, 0])
    assert (np.argsort(combine(one, "rank"), kind="stable") == np.argsort(rankdata(one[:, 0]), kind="stable")).all()


def test_members_from_files_and_globs_get_unique_names(toy_model_file, tmp_path):
    a = toy_model_file(tmp_path / "a" / "net.safetensors", 1, seed=1)
    b = toy_model_file(tmp_path / "b" / "net.safetensors", 1, seed=2)
    toy_model_file(tmp_path / "b" / "other.safetensors", 1, seed=3)
    members = load_committee([str(a), str(tmp_path / "b" / "*.safetensors")])
    assert [m.path for m in members] == [a, b, tmp_path / "b" / "other.safetensors"]
    assert [m.name for m in members] == ["net", "net-2", "other"]
    assert all(m.survey == "space" and m.normalisation == "zscale" for m in members)


def test_bad_committees_are_refused_by_name(toy_model_file, tmp_path):
    space = toy_model_file(tmp_path / "space.safetensors", 1, seed=1)
    ground = toy_model_file(tmp_path / "ground.safetensors", 4, seed=1)
    with pytest.raises(ModelFileError, match=f"{ground} was trained on ground images, but the committee's first "
                                             f"member {space} is for space"):
        load_committee([str(space), str(ground)])
    with pytest.raises(ModelFileError, match="trained on space images, but the data are ground"):
        load_committee([str(space)], survey="ground")
    with pytest.raises(ModelFileError, match=r"--model '.*nothing\*.safetensors' matches no file"):
        expand_model_arguments([str(tmp_path / "nothing*.safetensors")])
    with pytest.raises(LexactumError, match="is given twice"):
        expand_model_arguments([str(space), str(tmp_path / "." / "space.safetensors")])


def test_evaluate_compares_a_committee_with_its_members_in_one_table(toy_model_file, make_dataset, tmp_path,
                                                                     capsys):
    import csv
    import json

    from lexactum.cli import main
    from lexactum.evaluation.metrics import auc

    root = make_dataset("space", n=30, layout="test", seed=4)
    a = toy_model_file(tmp_path / "a.safetensors", 1, seed=1)
    b = toy_model_file(tmp_path / "b.safetensors", 1, seed=2)
    assert main(["evaluate", "--model", str(a), "--dataset", str(root), "--out", str(tmp_path / "a"),
                 "--bootstrap", "0"]) == 0
    assert main(["evaluate", "--model", str(a), "--model", str(b), "--dataset", str(root), "--combine", "min",
                 "--out", str(tmp_path / "ab"), "--bootstrap", "20"]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in ("a ", "b ", "committee")) and "AUC" in table
    metrics = json.loads((tmp_path / "ab" / "metrics.json").read_text())
    alone = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert set(metrics["members"]) == {"a", "b"} and metrics["combine"] == "min"
    assert metrics["members"]["a"]["auc"] == pytest.approx(alone["auc"], rel=1e-12)
    with open(tmp_path / "ab" / "scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    labels = np.array([int(r["label"]) for r in rows])
    committee = np.array([float(r["score"]) for r in rows])
    np.testing.assert_allclose(committee, [min(float(r["a"]), float(r["b"])) for r in rows])
    assert metrics["auc"] == pytest.approx(auc(labels, committee), rel=1e-12)
    assert "intervals" in metrics and (tmp_path / "ab" / "roc.png").stat().st_size > 10_000
    assert main(["evaluate", "--model", str(a), "--tta", "4", "--dataset", str(root), "--out",
                 str(tmp_path / "a4"), "--bootstrap", "0"]) == 0
    assert json.loads((tmp_path / "a4" / "metrics.json").read_text())["tta"] == 4

    def scores_of(folder):
        with open(tmp_path / folder / "scores.csv", newline="") as fh:
            return {r["ID"]: float(r["score"]) for r in csv.DictReader(fh)}

    plain, averaged = scores_of("a"), scores_of("a4")
    assert plain.keys() == averaged.keys()
    assert not np.allclose([plain[k] for k in plain], [averaged[k] for k in plain], rtol=1e-9)
