"""A committee of networks: the members' files, one survey for all, each member's normalisation, one score.

The best lens searches average several networks (and several views of each image). Members are loaded
once, each keeps the normalisation it was trained with (the engine normalises each batch once per distinct
normalisation), and a member made for another survey is refused by name before any work.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lexactum.errors import LexactumError, ModelFileError


@dataclass
class Member:
    """One network of a committee."""

    name: str
    """Its column in scores.csv: the file name without its ending, made unique."""
    path: Path
    network: object
    normalisation: str
    survey: str | None


def expand_model_arguments(values: list[str]) -> list[str]:
    """``--model`` values with quoted globs expanded (sorted); a glob that matches nothing is an error, and so
    is a file given twice (it would count twice in the committee's mean)."""
    expanded: list[str] = []
    for value in values:
        if glob.has_magic(value):
            matches = sorted(glob.glob(os.path.expanduser(value)))
            if not matches:
                raise ModelFileError(f"--model {value!r} matches no file")
            expanded.extend(matches)
        else:
            expanded.append(value)
    seen: dict[Path, str] = {}
    for value in expanded:
        key = Path(value).expanduser().resolve()
        if key in seen:
            raise LexactumError(f"--model {value} is given twice (also as {seen[key]}): each member counts once")
        seen[key] = value
    return expanded


def load_committee(values: list[str], survey=None) -> list[Member]:
    """The members named by ``--model`` values, all made for one survey (``survey`` when given).

    The first member fixes the survey when none is given; a member of another survey is one line naming
    both files.
    """
    from lexactum.evaluation.evaluate import model_normalisation
    from lexactum.models.files import load_model, resolve_model_path

    members: list[Member] = []
    for value in expand_model_arguments(list(values)):
        path = resolve_model_path(value)
        network = load_model(path)
        made_for = network.metadata.get("survey")
        wanted = getattr(survey, "name", survey) or next((m.survey for m in members if m.survey), None)
        if made_for is not None and wanted is not None and str(made_for).lower() != str(wanted).lower():
            first = next((m.path for m in members if m.survey), None)
            against = (f"the committee's first member {first} is for {wanted}: a committee scores one survey"
                       if first else f"the data are {wanted} images")
            raise ModelFileError(f"{path} was trained on {made_for} images, but {against}")
        members.append(Member(_unique_name(path, members), path, network, model_normalisation(network),
                              None if made_for is None else str(made_for).lower()))
    return members


def _unique_name(path: Path, members: list[Member]) -> str:
    name = path.name.split(".")[0] or path.name
    taken = {m.name for m in members} | {"ID", "score", "label"}
    candidate, k = name, 2
    while candidate in taken:
        candidate, k = f"{name}-{k}", k + 1
    return candidate


def check_bands(members: list[Member], n_bands: int, where: str) -> None:
    """Every member must take the input's band count (a model without a survey in its file may not)."""
    for member in members:
        channels = member.network.metadata.get("in_channels")
        if channels is not None and int(channels) != n_bands:
            raise ModelFileError(f"{member.path} takes {channels} band(s), but {where} has {n_bands}")


def combine(scores: np.ndarray, method: str = "mean") -> np.ndarray:
    """One committee score per row of ``scores`` (objects x members, probabilities).

    ``mean``: the mean probability. ``rank``: the mean over members of each object's rank fraction (ties
    share their mean rank; 1 is the most lens-like), robust to members whose probabilities are scaled
    differently. ``min``: the lowest probability, a candidate that every member must like.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (objects, members), got shape {scores.shape}")
    if scores.shape[1] == 1 and method != "rank":
        return scores[:, 0].copy()
    if method == "mean":
        return scores.mean(axis=1)
    if method == "min":
        return scores.min(axis=1)
    if method == "rank":
        from scipy.stats import rankdata

        return (rankdata(scores, axis=0) / max(len(scores), 1)).mean(axis=1)
    raise LexactumError(f"unknown --combine {method!r}: choose mean, rank or min")
