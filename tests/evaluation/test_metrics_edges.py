"""The metrics' argument checks and their agreement with each other, at the edges a mutation check found unpinned."""

from __future__ import annotations

import numpy as np
import pytest

from lexactum.errors import LexactumError
from lexactum.evaluation import metrics


def scored_set(n=120, seed=2):
    rng = np.random.default_rng(seed)
    labels = np.array([0, 1] * (n // 2))
    return labels, np.round(rng.random(n) * 0.7 + 0.3 * labels, 2)


def test_challenge_metrics_agree_with_the_standalone_functions():
    labels, scores = scored_set()
    result = metrics.challenge_metrics(labels, scores, bootstrap=0)
    tpr_half, fpr_half = metrics.rates_at_threshold(labels, scores, 0.5)
    assert result == {
        "n": 120,
        "n_lenses": 60,
        "n_non_lenses": 60,
        "auc": metrics.auc(labels, scores),
        "tpr0": metrics.tpr_at_fp(labels, scores, 0),
        "tpr10": metrics.tpr_at_fp(labels, scores, 10),
        "tpr_at_0.5": tpr_half,
        "fpr_at_0.5": fpr_half,
    }
    assert 0 < tpr_half < 1 and 0 < fpr_half < 1 and tpr_half != fpr_half  # distinct, so a swap shows
    assert result["tpr0"] < result["tpr10"]
    with_intervals = metrics.challenge_metrics(labels, scores, bootstrap=20, seed=4)
    assert with_intervals["intervals"] == metrics.bootstrap(labels, scores, n_resamples=20, seed=4)


@pytest.mark.parametrize("shape", [(2, 3), (6, 1)])
def test_labels_and_scores_must_be_one_dimensional(shape):
    labels = np.array([0, 1, 0, 1, 0, 1]).reshape(shape)
    scores = np.linspace(0.1, 0.9, 6).reshape(shape)
    with pytest.raises(LexactumError, match="must be 1-D"):
        metrics.auc(labels, scores)
    with pytest.raises(LexactumError, match="must be 1-D"):
        metrics.auc(labels.ravel(), scores)


def test_a_single_score_is_not_a_list_of_scores():
    with pytest.raises(LexactumError, match=r"must be 1-D, got shapes \(2,\) and \(\)"):
        metrics.auc([0, 1], 0.5)
    with pytest.raises(LexactumError, match=r"must be 1-D, got shapes \(\) and \(2,\)"):
        metrics.auc(1, [0.2, 0.5])


def test_every_image_can_be_drawn_by_the_bootstrap():
    """Each resample draws from all lenses and all non-lenses, first and last included, in their own stratum."""
    labels = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    indices = metrics.bootstrap_indices(labels, 300, seed=0)
    assert set(np.unique(indices)) == set(range(8))
    lens_part, non_part = indices[:, :4], indices[:, 4:]
    assert (labels[lens_part] == 1).all() and (labels[non_part] == 0).all()


@pytest.mark.parametrize("n_resamples", [0, -1, 1.5, True, "many", None, metrics.MAX_BOOTSTRAP + 1])
def test_bootstrap_needs_a_whole_positive_count(n_resamples):
    labels, scores = scored_set(20)
    with pytest.raises(LexactumError, match="bootstrap resamples"):
        metrics.bootstrap(labels, scores, n_resamples=n_resamples)


def test_bootstrap_count_limits_are_inclusive():
    assert metrics.check_bootstrap(0, "--bootstrap") == 0
    assert metrics.check_bootstrap(np.int64(metrics.MAX_BOOTSTRAP)) == metrics.MAX_BOOTSTRAP
    assert metrics.check_bootstrap(3.0) == 3 and isinstance(metrics.check_bootstrap(3.0), int)
    with pytest.raises(LexactumError, match=r"^--bootstrap -1: must be a whole number .* to 10,000$"):
        metrics.check_bootstrap(-1, "--bootstrap")
    labels, scores = scored_set(20)
    one = metrics.bootstrap(labels, scores, n_resamples=1, seed=3)
    assert one["n_resamples"] == 1 and one["auc"][0] == one["auc"][1]  # one resample: a zero-width interval


@pytest.mark.parametrize("confidence", [0, 1, 0.0, 1.0, -0.5, 1.5])
def test_bootstrap_confidence_must_be_strictly_between_0_and_1(confidence):
    labels, scores = scored_set(20)
    with pytest.raises(LexactumError, match="confidence must be between 0 and 1"):
        metrics.bootstrap(labels, scores, n_resamples=5, confidence=confidence)


def test_bootstrap_confidence_sets_the_percentiles():
    labels, scores = scored_set(60)
    narrow = metrics.bootstrap(labels, scores, n_resamples=200, seed=1, confidence=0.5)
    wide = metrics.bootstrap(labels, scores, n_resamples=200, seed=1, confidence=0.99)
    assert wide["auc"][0] < narrow["auc"][0] < narrow["auc"][1] < wide["auc"][1]
    assert (narrow["confidence"], narrow["seed"]) == (0.5, 1)


@pytest.mark.parametrize("max_fp", [1.5, -1, -0.5])
def test_max_fp_must_be_a_whole_number_from_zero(max_fp):
    labels, scores = scored_set(20)
    with pytest.raises(LexactumError, match="max_fp must be a whole number >= 0"):
        metrics.tpr_at_fp(labels, scores, max_fp)
    assert metrics.tpr_at_fp(labels, scores, 2.0) == metrics.tpr_at_fp(labels, scores, 2)


def test_default_resamples_are_the_ones_bootstrap_and_challenge_metrics_use():
    """bootstrap_indices() with no options gives the very resamples behind the default intervals."""
    labels, scores = scored_set(40)
    indices = metrics.bootstrap_indices(labels)
    default = metrics.bootstrap(labels, scores)
    assert indices.shape == (default["n_resamples"], 40) and default["seed"] == 0
    aucs = [metrics.auc(labels[i], scores[i]) for i in indices]
    np.testing.assert_allclose(default["auc"], np.percentile(aucs, [2.5, 97.5]), atol=1e-12)
    assert metrics.challenge_metrics(labels, scores)["intervals"] == default
