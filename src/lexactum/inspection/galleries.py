"""Which objects a report shows: the galleries (top candidates, false positives, missed lenses, a random
sample) and the cards they share. Pure numpy, so the choice can be tested on its own."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Galleries of a labelled report, in page order; an unlabelled one has "top" and "random" only.
LABELLED_KEYS = ("top", "false_positives", "missed", "random")
UNLABELLED_KEYS = ("top", "random")


@dataclass
class Gallery:
    key: str
    title: str
    rows: np.ndarray
    """Rows of the scores, in the order the gallery shows them."""


@dataclass
class Selection:
    """The galleries, the rows that get a card (each once, in order of first appearance) and every row's rank
    (1 = most lens-like)."""

    galleries: list[Gallery]
    cards: np.ndarray
    ranks: np.ndarray


def ranks_of(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, ranks): rows from the most to the least lens-like (ties keep the file's order, as predict's
    ranked scores.csv does) and each row's 1-based rank."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(1, len(order) + 1)
    return order, ranks


def choose(scores: np.ndarray, labels: np.ndarray | None, top: int, random: int, seed: int) -> Selection:
    """The galleries of a report. ``top``: the ``top`` best-ranked objects, and as many of the highest-scored
    non-lenses (false positives) and of the lowest-scored lenses (missed, worst first) when ``labels`` (1, 0,
    -1 unknown) know any; ``random``: a uniform sample of that many objects (``seed``), shown in rank order."""
    order, ranks = ranks_of(scores)
    galleries = [Gallery("top", f"Top {min(top, len(order))} candidates", order[:top])]
    labelled = labels is not None and bool((np.asarray(labels) >= 0).any())
    if labelled:
        labels = np.asarray(labels)
        non_lenses = order[labels[order] == 0][:top]
        lenses = order[labels[order] == 1][::-1][:top]
        galleries.append(Gallery("false_positives", f"False positives: the {len(non_lenses)} highest-scored "
                                                    "non-lenses", non_lenses))
        galleries.append(Gallery("missed", f"Missed lenses: the {len(lenses)} lowest-scored lenses", lenses))
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(order), size=min(random, len(order)), replace=False)
    sample = sample[np.argsort(ranks[sample], kind="stable")]
    galleries.append(Gallery("random", f"Random sample of {len(sample)} (seed {seed})", sample))
    shown = np.concatenate([g.rows for g in galleries]).astype(np.int64)
    _, first = np.unique(shown, return_index=True)
    return Selection(galleries=galleries, cards=shown[np.sort(first)], ranks=ranks)
