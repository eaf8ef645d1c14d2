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
