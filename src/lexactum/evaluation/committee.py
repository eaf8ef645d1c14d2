"""Evaluation of a committee: each member's metrics and the committee's, in one table and one ROC picture.

A committee is only worth its cost when it beats its best member at the low false-positive rates that decide
a lens search (TPR0, TPR10), so the members are scored on the same objects, each in its own normalisation
(from the dataset's cache when one is up to date for it) and with the same test-time views, and compared
side by side.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

COMMITTEE = "committee"


def evaluate_committee(members, dataset, indices: Sequence[int] | None = None, out_dir: str | os.PathLike = ".",
                       device="auto", batch_size: int = 256, bootstrap: int = 1000, seed: int = 0, tta: int = 1,
                       combine: str = "mean", show_progress: bool | None = False, allow_nonfinite: bool = False,
                       verbose: bool = True) -> dict:
    """Score ``dataset``'s objects (``indices``, default all) with every member (averaged over ``tta`` views)
    and write scores.csv (ID,label,score,<one column per member>), metrics.json (the committee's metrics at
    the top, as for one model, plus ``members``) and roc.png (every curve); together or not at all."""
    from lexactum.evaluation.evaluate import (
        METRICS_FILE,
        ROC_FILE,
        SCORES_FILE,
        _score_selection,
        finite_scores,
        labelled_selection,
        left_out_rows,
        nonfinite_rows,
        prepared_if_current,
        write_left_out,
    )
    from lexactum.evaluation.metrics import challenge_metrics, check_bootstrap
    from lexactum.evaluation.plots import plot_roc
    from lexactum.inference.committee import combine as combine_scores
    from lexactum.inference.outputs import write_scores_csv
    from lexactum.inference.tta import with_views
    from lexactum.memory import steady_heap
    from lexactum.runs import all_or_nothing, write_json

    bootstrap = check_bootstrap(bootstrap)
    steady_heap()  # batch-sized blocks must not grow the heap (see lexactum.memory)
    whole_set = indices is None
    indices, labels = labelled_selection(dataset, indices)
    columns, sources = [], {}
    for member in members:
        data = prepared_if_current(dataset, member.normalisation) or dataset
        scores, _ = _score_selection(with_views(member.network, tta), data, indices, dataset, device, batch_size,
                                     0, show_progress)
        columns.append(scores)
        sources[member.name] = "files" if data is dataset else f"cache {data.path}"
    member_scores = np.column_stack(columns)
    ids = np.asarray(dataset.ids)[indices]
    row_ok = np.isfinite(member_scores).all(axis=1)
    committee = combine_scores(np.nan_to_num(member_scores), combine)
    committee[~row_ok] = np.nan
    keep = finite_scores(committee, ids, ", ".join(str(m.path) for m in members), allow_nonfinite)
    left_out = (left_out_rows(dataset, labelled=True) if whole_set else []) + nonfinite_rows(ids[~keep],
                                                                                             committee[~keep])
    ids, labels, committee, member_scores = ids[keep], labels[keep], committee[keep], member_scores[keep]
    curves = {m.name: member_scores[:, k] for k, m in enumerate(members)} | {COMMITTEE: committee}
    table = {name: challenge_metrics(labels, values, bootstrap=bootstrap, seed=seed) for name, values in
             curves.items()}
    metrics = {**table[COMMITTEE], "members": {m.name: table[m.name] for m in members}, "combine": combine,
               "tta": tta, "scored_from": sources, "left_out": len(left_out),
               "models": {m.name: str(m.path) for m in members}, "dataset": str(dataset.path)}
    out_dir = Path(out_dir)
    with all_or_nothing():
        write_scores_csv(out_dir / SCORES_FILE, ids, committee, member_scores, [m.name for m in members], labels)
        write_json(out_dir / METRICS_FILE, metrics)
        plot_roc(labels, curves, out_dir / ROC_FILE,
                 title=f"committee of {len(members)} ({combine}{f', {tta} views' if tta > 1 else ''}) "
                       f"on {len(labels)} images")
        write_left_out(out_dir, left_out)
    if verbose:
        print(format_committee_table(table))
    return metrics


def format_committee_table(table: dict) -> str:
    """One row per member and one for the committee: AUC, TPR0, TPR10 with their bootstrap intervals."""
    def cell(metrics, key):
        low_high = (metrics.get("intervals") or {}).get(key)
        shown = f"{metrics[key]:.4f}"
        return f"{shown} [{low_high[0]:.3f}, {low_high[1]:.3f}]" if low_high else shown

    width = max(len(name) for name in table) + 2
    lines = [f"{'':<{width}}{'AUC':<24}{'TPR0':<24}{'TPR10':<24}"]
    for name, metrics in table.items():
        lines.append(f"{name:<{width}}" + "".join(f"{cell(metrics, key):<24}" for key in ("auc", "tpr0", "tpr10")))
    return "\n".join(lines)
