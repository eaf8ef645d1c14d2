"""The challenge metrics against their definitions, evaluated by brute force, and against sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from lexactum.errors import LexactumError
from lexactum.evaluation import metrics


def brute_roc(labels, scores):
    """Every distinct score (and -inf) as threshold, 'lens' when score > t."""
    thresholds = np.concatenate((np.unique(scores)[::-1], [-np.inf]))
    tpr = np.array([np.mean(scores[labels == 1] > t) for t in thresholds])
    fpr = np.array([np.mean(scores[labels == 0] > t) for t in thresholds])
    return fpr, tpr, thresholds


def brute_tpr_at_fp(labels, scores, max_fp):
    """Scan every threshold; keep the best TPR whose false positives are at most max_fp."""
    best = 0.0
    for t in np.concatenate((np.unique(scores), [-np.inf])):
        if np.sum(scores[labels == 0] > t) <= max_fp:
            best = max(best, np.mean(scores[labels == 1] > t))
    return best


def brute_auc(labels, scores):
    lens, non = scores[labels == 1], scores[labels == 0]
    wins = (lens[:, None] > non[None, :]).sum() + 0.5 * (lens[:, None] == non[None, :]).sum()
    return wins / (len(lens) * len(non))


def cases():
    rng = np.random.default_rng(7)
    out = []
    for n, decimals in [(60, 1), (200, 2), (25, 0), (300, 6)]:
        labels = rng.integers(0, 2, n)
        labels[:2] = [0, 1]
        scores = np.round(rng.random(n) * 0.5 + 0.4 * labels, decimals)  # many ties at low precision
        out.append((labels, scores))
    labels = np.array([0, 1] * 10)
    out.append((labels, np.full(20, 0.7)))  # all scores equal
    out.append((labels, labels.astype(float)))  # perfect
    out.append((labels, 1.0 - labels))  # inverted
    few_non = np.array([1] * 30 + [0] * 8)
    out.append((few_non, rng.random(38)))  # 10 or fewer non-lenses
    eleven = np.array([1] * 20 + [0] * 11)
    out.append((eleven, rng.random(31)))  # exactly 11 non-lenses: the lowest one is the TPR10 cut
    return out


@pytest.mark.parametrize("labels,scores", cases())
def test_metrics_equal_brute_force_definitions(labels, scores):
    fpr, tpr, thresholds = metrics.roc_curve(labels, scores)
    bfpr, btpr, bthresholds = brute_roc(labels, scores)
    np.testing.assert_allclose(fpr, bfpr)
    np.testing.assert_allclose(tpr, btpr)
    np.testing.assert_array_equal(thresholds, bthresholds)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    for max_fp in (0, 1, 10):
        expected = brute_tpr_at_fp(labels, scores, max_fp)
        assert metrics.tpr_at_fp(labels, scores, max_fp) == pytest.approx(expected)
    assert metrics.auc(labels, scores) == pytest.approx(brute_auc(labels, scores), abs=1e-12)
    assert metrics.auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    tpr_half, fpr_half = metrics.rates_at_threshold(labels, scores, 0.5)
    assert tpr_half == np.mean(scores[labels == 1] > 0.5)
    assert fpr_half == np.mean(scores[labels == 0] > 0.5)


def test_special_classifiers():
    labels = np.array([0, 1] * 10)
    assert metrics.auc(labels, labels.astype(float)) == 1.0
    assert metrics.tpr_at_fp(labels, labels.astype(float), 0) == 1.0
    assert metrics.auc(labels, 1.0 - labels) == 0.0
    assert metrics.tpr_at_fp(labels, 1.0 - labels, 0) == 0.0
    assert metrics.auc(labels, np.full(20, 0.3)) == 0.5
    many = np.array([0, 1] * 15)
    assert metrics.tpr_at_fp(many, np.full(30, 0.3), 10) == 0.0  # ties with the cut never count
    few_non = np.array([1] * 5 + [0] * 10)
    assert metrics.tpr_at_fp(few_non, np.zeros(15), 10) == 1.0


def test_tpr0_uses_exact_scores_near_one():
    """Saturated scores: a fixed grid of thresholds would give TPR0 = 0 here."""
    labels = np.array([1, 1, 1, 0, 0])
    scores = np.array([1 - 1e-9, 1 - 2e-9, 1 - 5e-9, 1 - 3e-9, 0.2])
    assert metrics.tpr_at_fp(labels, scores, 0) == pytest.approx(2 / 3)


def test_bootstrap_equals_loop_over_the_same_resamples():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 80)
    scores = np.round(rng.random(80) * 0.6 + 0.3 * labels, 2)
    result = metrics.bootstrap(labels, scores, n_resamples=200, seed=5)
    indices = metrics.bootstrap_indices(labels, 200, seed=5)
    assert indices.shape == (200, 80)
    assert (labels[indices].sum(axis=1) == labels.sum()).all()  # stratified
    loop = {
        "auc": [roc_auc_score(labels[i], scores[i]) for i in indices],
        "tpr0": [brute_tpr_at_fp(labels[i], scores[i], 0) for i in indices],
        "tpr10": [brute_tpr_at_fp(labels[i], scores[i], 10) for i in indices],
    }
    for name, values in loop.items():
        np.testing.assert_allclose(result[name], np.percentile(values, [2.5, 97.5]), atol=1e-12)


def test_bootstrap_is_reproducible_and_contains_the_point_value():
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 2, 3000)
    scores = rng.random(3000) + 0.8 * labels
    first = metrics.challenge_metrics(labels, scores, bootstrap=300, seed=1)
    again = metrics.challenge_metrics(labels, scores, bootstrap=300, seed=1)
    other = metrics.challenge_metrics(labels, scores, bootstrap=300, seed=2)
    assert first == again
    assert first["intervals"]["auc"] != other["intervals"]["auc"]
    for name in ("auc", "tpr0", "tpr10"):
        low, high = first["intervals"][name]
        assert low <= first[name] <= high
        assert low < high
    assert first["n"] == 3000 and first["n_lenses"] == int(labels.sum())
    assert "intervals" not in metrics.challenge_metrics(labels, scores, bootstrap=0)


def test_bootstrap_in_small_blocks_uses_every_resample(monkeypatch):
    """Splitting resamples into memory-bounded blocks must keep every resample in the intervals."""
    rng = np.random.default_rng(4)
    labels = np.array([0, 1] * 50)
    scores = rng.random(100) + 0.5 * labels
    monkeypatch.setattr(metrics, "_BOOTSTRAP_BLOCK_ELEMENTS", 350)  # blocks of 3 resamples
    indices = metrics.bootstrap_indices(labels, 10, seed=0)
    assert len(np.unique(indices, axis=0)) == 10
    aucs = [roc_auc_score(labels[i], scores[i]) for i in indices]
    result = metrics.bootstrap(labels, scores, n_resamples=10, seed=0, confidence=0.8)
    np.testing.assert_allclose(result["auc"], np.percentile(aucs, [10, 90]), atol=1e-12)


@pytest.mark.parametrize(
    "labels,scores,message",
    [
        ([0, 1, 1], [0.1, 0.2], "differ in length"),
        ([0, 2, 1], [0.1, 0.2, 0.3], "found 2"),
        ([1, 1], [0.1, 0.2], "0 non-lenses"),
        ([0, 0], [0.1, 0.2], "0 lenses"),
        ([0, 1], [0.1, np.nan], "NaN"),
        ([0, 1, 1], [0.1, np.inf, np.inf], "infinite"),  # inf - inf would add a false ROC point
        ([0, 1], ["low", "high"], "scores must be numbers"),
    ],
)
def test_bad_input_is_a_clear_error(labels, scores, message):
    with pytest.raises(LexactumError, match=message):
        metrics.challenge_metrics(labels, scores)
    with pytest.raises(LexactumError, match=message):
        metrics.roc_curve(labels, scores)


def test_bad_max_fp():
    with pytest.raises(LexactumError, match="max_fp"):
        metrics.tpr_at_fp([0, 1], [0.1, 0.2], -1)


def test_numpy_numbers_read_as_plain_numbers_in_messages():
    labels, scores = np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.8])
    with pytest.raises(LexactumError, match=r"got -2$"):
        metrics.tpr_at_fp(labels, scores, np.int64(-2))
    with pytest.raises(LexactumError, match=r"got 1\.5$"):
        metrics.bootstrap(labels, scores, n_resamples=10, confidence=np.float64(1.5))
