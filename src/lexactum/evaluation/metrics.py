"""The Lens Finding Challenge scores, computed exactly from the scores (docs: ../shared/spec/metrics.md).

A threshold ``t`` calls an image a lens when ``score > t`` (strictly). Everything here is plain numpy so that
it runs anywhere and can be checked line by line against the definitions; no threshold grid is ever used
(the seed's 1001-step grid gave TPR0 = 0 to models whose scores saturate near 1).
"""

from __future__ import annotations

import numpy as np

from lexactum.errors import LexactumError, plain_number

#: Elements per (resamples x images) block in the bootstrap: bounds its memory to a few tens of MB.
_BOOTSTRAP_BLOCK_ELEMENTS = 1 << 21
#: Bootstrap resamples at most. 95 % percentile intervals settle within a few thousand resamples, and each
#: resample of a 100,000-image test set (the challenge's) costs about 0.03 s on one CPU core: 10,000 take
#: about 5 minutes, while an unbounded count could run for days with nothing said.
MAX_BOOTSTRAP = 10_000


def check_bootstrap(n_resamples, what: str = "bootstrap") -> int:
    """``n_resamples`` as an int in [0, MAX_BOOTSTRAP] (0: no intervals), or a LexactumError naming ``what``.

    The one check of a bootstrap count: the commands call it before any work, with their option's name.
    """
    try:
        whole = not isinstance(n_resamples, bool) and int(n_resamples) == n_resamples
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole or not 0 <= n_resamples <= MAX_BOOTSTRAP:
        raise LexactumError(f"{what} {plain_number(n_resamples)!r}: must be a whole number of resamples from 0 "
                            f"(no intervals) to {MAX_BOOTSTRAP:,}")
    return int(n_resamples)


def check_inputs(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` as int8 0/1 and ``scores`` as float64, or a LexactumError saying what is wrong."""
    labels = np.asarray(labels)
    try:
        scores = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise LexactumError(f"scores must be numbers: {exc}") from None
    if labels.ndim != 1 or scores.ndim != 1:
        raise LexactumError(f"labels and scores must be 1-D, got shapes {labels.shape} and {scores.shape}")
    if len(labels) != len(scores):
        raise LexactumError(f"labels and scores differ in length: {len(labels)} labels, {len(scores)} scores")
    if labels.size and not np.isin(labels, (0, 1)).all():
        bad = labels[~np.isin(labels, (0, 1))][0]
        raise LexactumError(f"labels must be 0 (non-lens) or 1 (lens), found {bad.item()!r}")
    if not np.isfinite(scores).all():
        raise LexactumError(f"scores contain {int((~np.isfinite(scores)).sum())} NaN or infinite value(s)")
    labels = labels.astype(np.int8)
    check_both_classes(labels)
    return labels, scores


def check_both_classes(labels: np.ndarray) -> None:
    """A LexactumError unless the 0/1 ``labels`` hold at least one lens and one non-lens."""
    n_lenses = int(np.sum(labels))
    if n_lenses == 0 or n_lenses == len(labels):
        raise LexactumError(
            f"need both lenses and non-lenses to score, got {n_lenses} lenses and "
            f"{len(labels) - n_lenses} non-lenses"
        )


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) for every distinct score as threshold, from (0, 0) to (1, 1).

    ``thresholds`` run from the highest score down and end with ``-inf`` (every image called a lens).
    """
    labels, scores = check_inputs(labels, scores)
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    sorted_labels = labels[order]
    # The last position of each run of equal scores: calling lenses "score > next distinct value".
    run_ends = np.flatnonzero(np.diff(sorted_scores) != 0)
    tp = np.cumsum(sorted_labels, dtype=np.int64)[run_ends]
    fp = (run_ends + 1) - tp
    n_lenses = int(labels.sum())
    n_non = len(labels) - n_lenses
    tpr = np.concatenate(([0.0], tp / n_lenses, [1.0]))
    fpr = np.concatenate(([0.0], fp / n_non, [1.0]))
    thresholds = np.concatenate((sorted_scores[np.r_[0, run_ends + 1]], [-np.inf]))
    return fpr, tpr, thresholds


def average_ranks(sorted_values: np.ndarray) -> np.ndarray:
    """1-based ranks of values sorted ascending along the last axis, ties sharing their average rank."""
    n = sorted_values.shape[-1]
    position = np.broadcast_to(np.arange(n), sorted_values.shape)
    new_run = np.ones(sorted_values.shape, dtype=bool)
    new_run[..., 1:] = sorted_values[..., 1:] != sorted_values[..., :-1]
    run_start = np.maximum.accumulate(np.where(new_run, position, 0), axis=-1)
    run_end_flag = np.ones(sorted_values.shape, dtype=bool)
    run_end_flag[..., :-1] = new_run[..., 1:]
    reversed_end = np.where(run_end_flag, position, n - 1)[..., ::-1]
    run_end = np.minimum.accumulate(reversed_end, axis=-1)[..., ::-1]
    return (run_start + run_end) / 2.0 + 1.0


def _auc_sorted(sorted_scores: np.ndarray, sorted_labels: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC of rows already sorted by score (ascending), ties counted one half."""
    n_lenses = sorted_labels.sum(axis=-1, dtype=np.int64)
    n_non = sorted_labels.shape[-1] - n_lenses
    rank_sum = (average_ranks(sorted_scores) * sorted_labels).sum(axis=-1)
    return (rank_sum - n_lenses * (n_lenses + 1) / 2.0) / (n_lenses * n_non)


def _tpr_at_fp_sorted(sorted_scores: np.ndarray, sorted_labels: np.ndarray, max_fp: int) -> np.ndarray:
    """TPR with at most ``max_fp`` false positives for rows sorted by score (ascending)."""
    is_non = sorted_labels == 0
    n_non = is_non.sum(axis=-1)
    n_lenses = sorted_labels.shape[-1] - n_non
    # The (max_fp + 1)-th highest non-lens is the one after which exactly max_fp non-lenses remain.
    non_seen = np.cumsum(is_non, axis=-1)
    target = (n_non - max_fp)[..., None]
    hit = is_non & (non_seen == target)
    has_cut = n_non > max_fp
    cut_index = np.argmax(hit, axis=-1)
    cut = np.take_along_axis(sorted_scores, cut_index[..., None], axis=-1)
    above = ((sorted_scores > cut) & (sorted_labels == 1)).sum(axis=-1)
    return np.where(has_cut, above / n_lenses, 1.0)


def auc(labels, scores) -> float:
    """Area under the ROC: the chance that a random lens outscores a random non-lens (ties count 1/2)."""
    labels, scores = check_inputs(labels, scores)
    order = np.argsort(scores, kind="stable")
    return float(_auc_sorted(scores[order], labels[order]))


def tpr_at_fp(labels, scores, max_fp: int) -> float:
    """The largest TPR with at most ``max_fp`` false positives (TPR0: ``max_fp=0``, TPR10: ``max_fp=10``).

    Exactly: lenses scoring strictly above the (max_fp + 1)-th highest non-lens score, over all lenses;
    1.0 when there are ``max_fp`` non-lenses or fewer.
    """
    if int(max_fp) != max_fp or max_fp < 0:
        raise LexactumError(f"max_fp must be a whole number >= 0, got {plain_number(max_fp)!r}")
    labels, scores = check_inputs(labels, scores)
    order = np.argsort(scores, kind="stable")
    return float(_tpr_at_fp_sorted(scores[order], labels[order], int(max_fp)))


def rates_at_threshold(labels, scores, threshold: float = 0.5) -> tuple[float, float]:
    """(TPR, FPR) when images scoring strictly above ``threshold`` are called lenses."""
    labels, scores = check_inputs(labels, scores)
    called = scores > threshold
    is_lens = labels == 1
    return float(called[is_lens].mean()), float(called[~is_lens].mean())


def _block_size(n_images: int) -> int:
    return max(1, _BOOTSTRAP_BLOCK_ELEMENTS // max(n_images, 1))


def _resample_blocks(labels: np.ndarray, n_resamples: int, seed: int):
    """Blocks of stratified resamples: (r, N) indices, each row keeping the numbers of lenses and non-lenses.

    Stratifying keeps every resample scoreable (a resample without lenses has no AUC) and matches how the
    test set was built (fixed class counts).
    """
    rng = np.random.default_rng(seed)
    lens_index = np.flatnonzero(labels == 1)
    non_index = np.flatnonzero(labels == 0)
    block = _block_size(len(labels))
    for start in range(0, n_resamples, block):
        r = min(block, n_resamples - start)
        lenses = lens_index[rng.integers(0, len(lens_index), (r, len(lens_index)))]
        non = non_index[rng.integers(0, len(non_index), (r, len(non_index)))]
        yield np.concatenate((lenses, non), axis=1)


def bootstrap_indices(labels, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """All resamples that :func:`bootstrap` uses, as one (n_resamples, N) index array (for checks)."""
    labels = np.asarray(labels)
    return np.concatenate(list(_resample_blocks(labels, n_resamples, seed)), axis=0)


def bootstrap(labels, scores, n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Percentile intervals of AUC, TPR0 and TPR10 over stratified bootstrap resamples.

    Vectorised: each block of resamples is an (r, N) index array; rows are put in score order by sorting
    the images' rank positions (integers), then AUC comes from average ranks and TPR0/TPR10 from cumulative
    non-lens counts, all without a Python loop over resamples.
    """
    labels, scores = check_inputs(labels, scores)
    if check_bootstrap(n_resamples, "bootstrap resamples") < 1:
        raise LexactumError("bootstrap resamples: need at least 1")
    if not 0 < confidence < 1:
        raise LexactumError(f"confidence must be between 0 and 1, got {plain_number(confidence)!r}")
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    sorted_labels = labels[order]
    position_of = np.empty(len(scores), dtype=np.int64)
    position_of[order] = np.arange(len(scores))
    values: dict[str, list[np.ndarray]] = {"auc": [], "tpr0": [], "tpr10": []}
    for indices in _resample_blocks(labels, int(n_resamples), seed):
        positions = np.sort(position_of[indices], axis=1)
        block_scores = sorted_scores[positions]
        block_labels = sorted_labels[positions]
        values["auc"].append(_auc_sorted(block_scores, block_labels))
        values["tpr0"].append(_tpr_at_fp_sorted(block_scores, block_labels, 0))
        values["tpr10"].append(_tpr_at_fp_sorted(block_scores, block_labels, 10))
    tail = 100.0 * (1.0 - confidence) / 2.0
    result: dict = {"n_resamples": int(n_resamples), "seed": int(seed), "confidence": float(confidence)}
    for name, parts in values.items():
        low, high = np.percentile(np.concatenate(parts), [tail, 100.0 - tail])
        result[name] = [float(low), float(high)]
    return result


_bootstrap_intervals = bootstrap  # challenge_metrics's argument ``bootstrap`` shadows the function


def challenge_metrics(labels, scores, bootstrap: int = 1000, seed: int = 0) -> dict:
    """Every challenge number for one scored set: counts, AUC, TPR0, TPR10, rates at 0.5, intervals.

    ``bootstrap=0`` skips the intervals.
    """
    labels, scores = check_inputs(labels, scores)
    tpr_half, fpr_half = rates_at_threshold(labels, scores, 0.5)
    n_lenses = int(labels.sum())
    metrics = {
        "n": int(len(labels)),
        "n_lenses": n_lenses,
        "n_non_lenses": int(len(labels) - n_lenses),
        "auc": auc(labels, scores),
        "tpr0": tpr_at_fp(labels, scores, 0),
        "tpr10": tpr_at_fp(labels, scores, 10),
        "tpr_at_0.5": tpr_half,
        "fpr_at_0.5": fpr_half,
    }
    if bootstrap:
        metrics["intervals"] = _bootstrap_intervals(labels, scores, n_resamples=bootstrap, seed=seed)
    return metrics
