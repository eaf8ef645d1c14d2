"""The transfer table (challenge metrics with bootstrap intervals per scored set) and the score histograms."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: Columns of transfer.csv: per metric its value and the low / high ends of its bootstrap interval.
METRICS = ("auc", "tpr0", "tpr10")
COLUMNS = ("set", "n", "lenses", *(f"{m}{end}" for m in METRICS for end in ("", "_low", "_high")))


def table_row(name: str, labels: np.ndarray, scores: np.ndarray, bootstrap: int, seed: int = 0) -> dict:
    """One row of the table: ``challenge_metrics`` of the set's scores (intervals empty without bootstrap)."""
    from lexactum.evaluation.metrics import challenge_metrics

    metrics = challenge_metrics(labels, scores, bootstrap=bootstrap, seed=seed)
    row = {"set": name, "n": metrics["n"], "lenses": metrics["n_lenses"]}
    intervals = metrics.get("intervals", {})
    for m in METRICS:
        low, high = intervals.get(m, (None, None))
        row.update({m: metrics[m], f"{m}_low": low, f"{m}_high": high})
    return row


def markdown_table(rows: list[dict], bootstrap: int) -> str:
    """The table as Markdown: each metric with its 95% interval in brackets."""
    lines = ["| set | n | lenses | AUC | TPR0 | TPR10 |", "|---|---:|---:|---|---|---|"]
    for row in rows:
        cells = [_with_interval(row, m) for m in METRICS]
        lines.append(f"| {row['set']} | {row['n']} | {row['lenses']} | " + " | ".join(cells) + " |")
    note = (f"Brackets: 95% stratified bootstrap intervals ({bootstrap} resamples)." if bootstrap
            else "No bootstrap intervals (--bootstrap 0).")
    return "\n".join(lines) + "\n\n" + note + (" TPR10 is 1 by definition for a set with 10 non-lenses "
                                               "or fewer.\n")


def _with_interval(row: dict, metric: str) -> str:
    low, high = row[f"{metric}_low"], row[f"{metric}_high"]
    value = f"{row[metric]:.3f}"
    return value if low is None else f"{value} [{low:.3f}, {high:.3f}]"


def plot_histograms(sets: list[tuple[str, np.ndarray, np.ndarray]], path: str | os.PathLike) -> Path:
    """Score histograms of each set's non-lenses (left) and lenses (right), as densities on common bins, so
    that a real set of a few images and a simulated one of thousands read on one scale. The bins span the
    scores seen (a barely trained network's all lie in a narrow band, which [0, 1] bins would hide)."""
    from lexactum.evaluation.plots import _pyplot, save_figure

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    every = np.concatenate([scores for _, _, scores in sets])
    low, high = float(every.min()), float(every.max())
    bins = np.linspace(low, high if high > low else low + 1e-6, 31)
    styles = ("-", "--", ":", "-.")
    for ax, label, title in ((axes[0], 0, "non-lenses"), (axes[1], 1, "lenses")):
        for k, (name, labels, scores) in enumerate(sets):
            chosen = scores[labels == label]
            ax.hist(chosen, bins=bins, density=True, histtype="step", linewidth=2,
                    linestyle=styles[k % len(styles)], label=f"{name} ({len(chosen)})")
        ax.set_title(f"scores of {title}")
        ax.set_xlabel("lens probability")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("density")
    fig.tight_layout()
    return save_figure(fig, path)


#: Columns of impostors-by-kind.csv.
IMPOSTOR_COLUMNS = ("set", "kind", "n", "auc", "median_score")
#: The row of the plain non-lenses (no impostor) in that table.
PLAIN = "(none)"


def impostor_rows(name: str, ids: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                  truth: dict[int, tuple[str, ...]]) -> list[dict]:
    """Per impostor kind among a simulated set's non-lenses: how many, their median score and the AUC of the
    set's lenses against them alone (a non-lens with two kinds counts for both); the plain non-lenses first.
    Why: a network that takes rings or blue companions for lenses shows here, not in the set's single AUC."""
    from lexactum.evaluation.metrics import auc

    lenses = scores[labels == 1]
    groups: dict[str, list[float]] = {}
    for object_id, label, score in zip(ids, labels, scores, strict=True):
        if label == 0:
            for kind in truth.get(int(object_id), ()) or (PLAIN,):
                groups.setdefault(kind, []).append(float(score))
    order = [PLAIN] * (PLAIN in groups) + sorted((k for k in groups if k != PLAIN), key=lambda k: -len(groups[k]))
    rows = []
    for kind in order:
        chosen = np.asarray(groups[kind])
        value = auc(np.r_[np.ones(len(lenses)), np.zeros(len(chosen))], np.r_[lenses, chosen]) if len(lenses) else None
        rows.append({"set": name, "kind": kind, "n": len(chosen), "auc": value,
                     "median_score": float(np.median(chosen))})
    return rows


#: Fewer non-lenses of a kind than this make its AUC too uncertain to compare networks by (marked in transfer.md).
FEW = 20


def markdown_impostors(rows: list[dict]) -> str:
    """impostors-by-kind as Markdown, for transfer.md. Why the note: at the default rates a 2,000-object set
    holds only a handful of each kind; a set B with more of them says more."""
    lines = ["| set | non-lenses with | n | AUC of the lenses against them | median score |",
             "|---|---|---:|---|---|"]
    few = False
    for row in rows:
        value = "-" if row["auc"] is None else f"{row['auc']:.3f}"
        mark = "*" if row["kind"] != PLAIN and row["n"] < FEW else ""
        few = few or bool(mark)
        lines.append(f"| {row['set']} | {row['kind']} | {row['n']}{mark} | {value} | {row['median_score']:.3f} |")
    if few:
        lines += ["", f"\\* fewer than {FEW} non-lenses of that kind: the AUC is uncertain. For a comparison by kind, "
                      "score a set B with more impostors (`--overwrite --setting-b impostors=4`: the trained "
                      "network is kept)."]
    return "\n".join(lines) + "\n"
