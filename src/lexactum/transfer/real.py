"""Real labelled challenge images for scoring: a challenge folder with its training key, or folders of cutouts
named ``lens`` / ``nolens`` (the layout of the public samples in ../shared/challenge_samples)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lexactum.errors import DataError

#: Folder names that give the label of the images below them (the public samples' layout).
FOLDER_LABELS = {"lens": 1, "lenses": 1, "nolens": 0, "non_lens": 0, "nonlens": 0, "non-lens": 0}


@dataclass
class RealImages:
    """Raw images ``(N, C, H, W)`` with their IDs and 0/1 labels, and where they came from."""

    path: Path
    ids: np.ndarray
    labels: np.ndarray
    images: np.ndarray


def read_real(path: str | os.PathLike, survey: str) -> RealImages:
    """The labelled ``survey`` images under ``path``, or one DataError naming the folder and what is missing.

    Labels come from the folder's catalog (the real training archive) or else from a ``lens`` / ``nolens``
    folder above each image: the samples kept in public repositories are sorted that way, without a key.
    """
    from lexactum.data import ChallengeDataset
    from lexactum.data.layouts import read_objects
    from lexactum.data.surveys import get_survey

    root, fmt = Path(path).expanduser().resolve(), get_survey(survey)
    if not root.is_dir():
        raise DataError(f"--real {root}: not a folder")
    try:
        data = ChallengeDataset(root, survey=fmt, require_labels=False)
    except DataError as exc:
        names = " + ".join(p.format(id="<ID>") for p in fmt.file_patterns)
        raise DataError(f"--real {root}: no complete {fmt.name} images ({names}) under this folder "
                        f"({exc})") from None
    labels = np.asarray(data.labels, dtype=np.int64)
    if (labels < 0).any():
        labels = np.array([_folder_label(root, paths[0]) for paths in data.band_paths], dtype=np.int64)
    n_lenses = int(labels.sum())
    if n_lenses == 0 or n_lenses == len(labels):
        raise DataError(f"--real {root}: its {len(labels)} {fmt.name} images are all "
                        f"{'lenses' if n_lenses else 'non-lenses'}; scoring needs both")
    images = read_objects(data.band_paths)
    return RealImages(path=root, ids=np.asarray(data.ids), labels=labels, images=images)


def _folder_label(root: Path, image: Path) -> int:
    """1 or 0 from the nearest folder named like ``lens`` / ``nolens`` between ``root`` and ``image``."""
    for folder in Path(image).relative_to(root).parents:
        label = FOLDER_LABELS.get(folder.name.lower())
        if label is not None:
            return label
    raise DataError(f"--real {root}: {image} has no label (no catalog with is_lens in the folder, and no "
                    f"'lens' or 'nolens' folder above the image)")
