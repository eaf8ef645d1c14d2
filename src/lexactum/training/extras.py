"""Graded objects as extra training examples (``lexactum train --extra-labels FILE --extra-dataset PATH``).

The grades people gave to a network's candidates (``lexactum grades`` or one grader's export) become labels:
mean grade >= ``extra_min_grade`` a lens, below the lowest SuGOHI class bound a non-lens, the rest left out
(:func:`lexactum.grades.training_label`). Their images are read from ``PATH`` (anything
:func:`lexactum.data.sources.open_source` reads), normalised with the run's normalisation, and added to the
training part only: validation and test stay the main dataset's, so a run's metrics compare with one trained
without extras. A graded object that is also in the validation or test part is refused (the network would be
scored on what it was taught).

The extras are planned (grades read, IDs found, labels chosen: every refusal) before any long work, and their
images read once the main data is prepared. They are few (what people graded) and held in memory.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lexactum import runs
from lexactum.errors import LexactumError

#: Extra images read and normalised at a time.
READ_BATCH = 256


@dataclass
class ExtraExamples:
    """The graded objects chosen as training examples: their rows in ``source``, IDs, labels (1 lens, 0 not)."""

    labels_file: Path
    source: object
    rows: np.ndarray
    ids: list
    labels: np.ndarray
    where: list[str]
    n_graded: int
    min_grade: float

    def record(self) -> dict:
        """What split.json and config.json keep of them (a resume must find the same)."""
        n_lenses = int(self.labels.sum())
        return {"labels_file": str(self.labels_file.resolve()), "dataset": str(self.source.path),
                "min_grade": self.min_grade, "n": len(self.ids), "n_lenses": n_lenses,
                "n_non_lenses": len(self.ids) - n_lenses, "n_left_out": self.n_graded - len(self.ids),
                "ids": list(self.ids), "labels": [int(v) for v in self.labels]}


def plan_extras(config, survey) -> ExtraExamples | None:
    """The extra examples ``config`` asks for (None when none), every refusal made here, before long work:
    grades unreadable or bad, a dataset of another survey, graded IDs not in it, no usable grade."""
    if config.extra_labels is None:
        return None
    from lexactum.data.sources import open_source
    from lexactum.grades import NON_LENS_BELOW, id_key, read_graded, training_label

    labels_file, min_grade = Path(config.extra_labels), float(config.extra_min_grade)
    graded = read_graded(labels_file)
    source = open_source(config.extra_dataset, ids_file=config.extra_ids)
    what = f"--extra-dataset {config.extra_dataset}"
    if source.survey.name != survey.name:
        raise LexactumError(f"{what}: holds {source.survey.name} images, but the run trains on {survey.name} "
                            "images; give the graded objects' own images")
    if source.normalised is not None and source.normalised != config.normalisation:
        raise LexactumError(f"{what}: a dataset prepared with {source.normalised} normalisation, but the run uses "
                            f"{config.normalisation}")
    row_of = {id_key(object_id): k for k, object_id in enumerate(source.ids)}
    missing = [g for g in graded if id_key(g.id) not in row_of]
    if missing:
        more = f" ({len(missing) - 1} more graded IDs are not there either)" if len(missing) > 1 else ""
        raise LexactumError(f"{missing[0].where}: ID {missing[0].id} is not in {what}{more}")
    chosen = [(g, label) for g in graded if (label := training_label(g.mean, min_grade)) is not None]
    if not chosen:
        raise LexactumError(f"{labels_file}: none of its {len(graded)} graded objects is a lens (mean grade >= "
                            f"{min_grade:g}) or a non-lens (below {NON_LENS_BELOW:g}): nothing to learn from "
                            "(grade 1 is left out; --extra-min-grade 1 takes it as a lens)")
    rows = np.array([row_of[id_key(g.id)] for g, _ in chosen], dtype=np.int64)
    ids = [_plain_id(source.ids[k]) for k in rows]
    return ExtraExamples(labels_file, source, rows, ids, np.array([label for _, label in chosen], dtype=np.int64),
                         [g.where for g, _ in chosen], len(graded), min_grade)


def _plain_id(object_id):
    return int(object_id) if isinstance(object_id, (int, np.integer)) else str(object_id)


def check_no_leakage(extras: ExtraExamples, datamodule, say: bool = True) -> None:
    """Refuse extras that are objects of the validation or test part (by ID): the run would be scored on
    objects it was taught. Say so (``say``) when some are objects of the training part (taught twice, if the
    same)."""
    from lexactum.grades import id_key

    main = str(datamodule.prepared.dataset_path)
    test = str(datamodule.prepared_test.dataset_path)
    parts = (("validation", datamodule.val_ids, main), ("test", datamodule.test_ids, test))
    for name, part_ids, where in parts:
        if not _same_dataset(extras.source, where):  # an ID of another dataset is another object
            continue
        keys = {id_key(object_id) for object_id in part_ids}
        leaked = [k for k, object_id in enumerate(extras.ids) if id_key(object_id) in keys]
        if leaked:
            more = f" ({len(leaked) - 1} more such IDs)" if len(leaked) > 1 else ""
            raise LexactumError(f"{extras.where[leaked[0]]}: ID {extras.ids[leaked[0]]} is in the {name} part of "
                                f"{where}{more}: an object graded for training must not be scored in validation "
                                "or test (leakage); leave it out of --extra-labels or train on another split")
    keys = {id_key(object_id) for object_id in datamodule.train_ids} if _same_dataset(extras.source, main) else set()
    shared = sum(id_key(object_id) in keys for object_id in extras.ids)
    if shared and say:
        print(f"warning: {shared} graded ID(s) of {extras.labels_file} are also objects of the training part of "
              f"{main}; if they are the same objects, they are learnt twice", file=sys.stderr, flush=True)


def _same_dataset(source, dataset_path) -> bool:
    """Whether ``source`` holds the objects of the dataset at ``dataset_path`` (its folder, or a cache made
    from it): only there does a shared ID mean a shared object."""
    from pathlib import Path

    target = Path(dataset_path).resolve()
    made_from = getattr(source, "dataset_path", None)
    return Path(source.path).resolve() == target or (made_from is not None and Path(made_from).resolve() == target)


def extra_images(extras: ExtraExamples, normalisation: str, say: bool = True) -> np.ndarray:
    """The extras' images ``(M, C, H, W)`` float32, normalised as the run's (masked pixels 0 first, as in the
    run's prepared data); a line on stderr (``say``) when some are blank."""
    from lexactum.data.normalise import blank_rows, normalise

    source = extras.source
    size = source.survey.image_size
    images = np.empty((len(extras.rows), source.survey.n_bands, size, size), dtype=np.float32)
    for start in range(0, len(extras.rows), READ_BATCH):
        raw = source.read_batch(extras.rows[start:start + READ_BATCH])
        out = images[start:start + len(raw)]
        if source.normalised is None:
            normalise(raw, method=normalisation, mask_value=source.survey.mask_value, out=out)
        else:
            out[...] = raw
    if hasattr(source, "close"):
        source.close()
    blank = np.flatnonzero(blank_rows(images.reshape(len(images), -1)))
    if len(blank) and say:
        print(f"warning: {len(blank)} of the {len(images)} extra images from {source.path} are blank (no pixel "
              f"varies), e.g. ID {extras.ids[blank[0]]}", file=sys.stderr, flush=True)
    return images


def check_same_extras(run_dir: Path, extras: ExtraExamples | None) -> None:
    """A resumed run must learn from the same extra examples (IDs and labels) as it began with."""
    saved = runs.read_split(run_dir).get("extra") if (run_dir / runs.SPLIT).is_file() else None
    now = extras.record() if extras is not None else None
    if saved is None and now is None:
        return
    if saved is None or now is None:
        raise LexactumError(f"{run_dir}: the run was {'not ' if saved is None else ''}trained with extra labels; "
                            "cannot resume")
    if saved.get("ids") != now["ids"] or saved.get("labels") != now["labels"]:
        raise LexactumError(f"{run_dir}: the extra examples from {extras.labels_file} differ from the run's "
                            f"{runs.SPLIT} ({saved.get('n')} then, {now['n']} now, or other IDs or labels: were the "
                            "grades changed?); cannot resume")
