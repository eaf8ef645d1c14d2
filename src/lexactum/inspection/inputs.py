"""What ``lexactum inspect`` looks at: the scores of a run folder, a ``predict`` or an ``evaluate`` output, the
dataset they came from and the model file(s) that made them.

Each of the three outputs says in its config.json what it scored and with what; this module reads that once,
checks every row of scores.csv (one line naming the file and line for anything wrong) and finds each scored
object in the dataset, so that the report never shows a picture of another object than the one scored.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lexactum.errors import DataError, LexactumError, describe_os_error

SCORES_FILE = "scores.csv"
METRICS_FILE = "metrics.json"
ROC_FILE = "roc.png"
CONFIG_FILE = "config.json"
#: The kinds of PATH ``lexactum inspect`` reads, as the report's ``source`` names them.
KINDS = ("run", "predict", "evaluate")


@dataclass
class Scored:
    """The scores at ``path`` and what config.json says about them. ``labels``: 1 lens, 0 not, -1 unknown;
    None when scores.csv has no label column. ``lines``: each row's line number in scores.csv."""

    kind: str
    path: Path
    scores_file: Path
    ids: np.ndarray
    scores: np.ndarray
    labels: np.ndarray | None
    lines: np.ndarray
    survey: str | None
    dataset: str | None
    models: list[str]
    source_options: dict = field(default_factory=dict)
    metrics: dict | None = None
    roc: Path | None = None

    @property
    def labelled(self) -> bool:
        return self.labels is not None and bool((self.labels >= 0).any())


def read_scored(path: str | os.PathLike) -> Scored:
    """The scores at ``path`` (a run folder, a predict or an evaluate output), every row checked."""
    from lexactum.runs import read_json

    path = Path(path).expanduser()
    if not path.exists():
        raise LexactumError(f"{path}: does not exist")
    if not path.is_dir():
        raise LexactumError(f"{path}: is a file; give a training run folder, or the --out folder of "
                            "'lexactum predict' or 'lexactum evaluate'")
    if not (path / CONFIG_FILE).is_file():
        raise LexactumError(f"{path}: no {CONFIG_FILE}, so not a training run folder, nor a predict or "
                            "evaluate output")
    config = read_json(path / CONFIG_FILE)
    kind = _kind(path, config)
    ids, scores, labels, lines = read_scores(path / SCORES_FILE, kind)
    metrics = read_json(path / METRICS_FILE) if (path / METRICS_FILE).is_file() else None
    roc = path / ROC_FILE if (path / ROC_FILE).is_file() else None
    return Scored(kind=kind, path=path, scores_file=path / SCORES_FILE, ids=ids, scores=scores, labels=labels,
                  lines=lines, metrics=metrics, roc=roc, **_described(kind, config))


def _kind(path: Path, config: dict) -> str:
    """Which command wrote ``path``, from its config.json."""
    if config.get("command") == "predict" and "input" in config:
        return "predict"
    if config.get("command") == "evaluate":
        return "evaluate"
    if isinstance(config.get("config"), dict) and "model_file" in config:
        return "run"
    raise LexactumError(f"{path / CONFIG_FILE}: not the record of a training run, nor of 'lexactum predict' or "
                        "'lexactum evaluate' (unknown kind of folder)")


def _described(kind: str, config: dict) -> dict:
    """The dataset, survey, model files and source options config.json names, for each kind of output."""
    if kind == "run":
        record = config["config"]
        return {"dataset": record.get("test_dataset") or record.get("dataset"), "survey": record.get("survey"),
                "models": [config["model_file"]] if config.get("model_file") else []}
    if kind == "evaluate":
        return {"dataset": config.get("dataset"), "survey": config.get("survey"),
                "models": [str(m) for m in config.get("models") or []]}
    members = config.get("members") or []
    models = [str(m["path"]) for m in members if isinstance(m, dict) and m.get("path")]
    options = {key: config[key] for key in ("ids_file", "images_key", "ids_key") if config.get(key) is not None}
    return {"dataset": config.get("input"), "survey": config.get("survey"),
            "models": models or [str(m) for m in config.get("models") or []], "source_options": options}


def read_scores(path: Path, kind: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """(ids as str, scores, labels or None, line numbers) of a scores.csv; anything wrong is one line naming
    the file and the line: no rows, a missing column, a score that is not a finite number, a label other than
    0, 1 or empty, an ID given twice."""
    try:
        handle = open(path, newline="", encoding="utf-8")
    except FileNotFoundError:
        unfinished = " (its test evaluation did not finish?)" if kind == "run" else ""
        raise DataError(f"{path}: score file not found{unfinished}") from None
    except OSError as exc:
        raise DataError(describe_os_error(exc, path, "read")) from None
    ids, scores, labels, lines = [], [], [], []
    try:
        with handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            if not header:
                raise DataError(f"{path}: empty score file (no header line, no rows)")
            if "ID" not in header or "score" not in header:
                raise DataError(f"{path}, line 1: expected the columns ID and score, found {', '.join(header)}")
            at_id, at_score = header.index("ID"), header.index("score")
            at_label = header.index("label") if "label" in header else None
            for line, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) != len(header):
                    raise DataError(f"{path}, line {line}: {len(row)} fields, but the header has {len(header)}")
                ids.append(_row_id(path, line, row[at_id]))
                scores.append(_row_score(path, line, row[at_score]))
                labels.append(_row_label(path, line, row[at_label]) if at_label is not None else -1)
                lines.append(line)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a CSV text file ({exc})") from None
    if not ids:
        raise DataError(f"{path}: empty score file (a header and no rows)")
    ids_array = np.asarray(ids, dtype=str)
    _check_distinct(path, ids_array, np.asarray(lines))
    label_array = np.asarray(labels, dtype=np.int8) if at_label is not None else None
    return ids_array, np.asarray(scores, dtype=np.float64), label_array, np.asarray(lines, dtype=np.int64)


def _row_id(path: Path, line: int, text: str) -> str:
    text = text.strip()
    if not text:
        raise DataError(f"{path}, line {line}: the ID is empty")
    return text


def _row_score(path: Path, line: int, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path}, line {line}: score {text!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{path}, line {line}: score {text!r} is not a finite number")
    return value


def _row_label(path: Path, line: int, text: str) -> int:
    text = text.strip()
    if text in ("", "0", "1"):
        return int(text) if text else -1
    raise DataError(f"{path}, line {line}: label {text!r} is not 0 (non-lens), 1 (lens) or empty (unknown)")


def _check_distinct(path: Path, ids: np.ndarray, lines: np.ndarray) -> None:
    """Each object scored once: a repeated ID is named with both of its lines."""
    order = np.argsort(ids, kind="stable")
    same = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if len(same):
        first, second = order[same[0]], order[same[0] + 1]
        raise DataError(f"{path}, line {lines[second]}: ID {ids[second]} is scored twice (also on line "
                        f"{lines[first]})")


# ------------------------------------------------------------------------------------------- the dataset
def open_dataset(scored: Scored, dataset: str | os.PathLike | None = None):
    """(source, positions): the dataset the scores came from (``dataset``, else the one config.json names),
    opened with :func:`lexactum.data.sources.open_source`, and the position there of each scored object."""
    from lexactum.data.sources import open_source

    if dataset is None:
        if not scored.dataset:
            raise LexactumError(f"{scored.path / CONFIG_FILE} names no dataset; give it with --dataset")
        if not os.path.lexists(scored.dataset):
            raise LexactumError(f"{scored.path / CONFIG_FILE} names the dataset {scored.dataset}, which is not "
                                "there any more; give its new place with --dataset")
        dataset = scored.dataset
    source = open_source(dataset, **scored.source_options)
    if scored.survey and source.survey.name != str(scored.survey).lower():
        raise DataError(f"{dataset}: holds {source.survey.name} images, but the scores in {scored.scores_file} "
                        f"are of {scored.survey} images")
    positions = locate(scored, source)
    _check_labels(scored, source, positions)
    return source, positions


def locate(scored: Scored, source) -> np.ndarray:
    """The position in ``source`` of every scored ID; the first one it does not hold is named by line."""
    positions, found = find_ids(source, scored.ids)
    if not found.all():
        k = int(np.argmin(found))
        missing = int((~found).sum())
        raise DataError(f"{scored.scores_file}, line {scored.lines[k]}: ID {scored.ids[k]} is not in the dataset "
                        f"{source.path} ({missing} of the {len(found)} scored IDs are not: is it the dataset "
                        "that was scored? give it with --dataset)")
    return positions


def find_ids(source, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions, found): where each of ``ids`` (text) is among ``source.ids`` (integers or text), and
    whether it is there at all (its position is then meaningless)."""
    known = np.asarray(source.ids)
    wanted = np.asarray(ids, dtype=str)
    if known.dtype.kind in "iu":
        try:
            wanted = wanted.astype(np.int64)
        except (ValueError, OverflowError):  # an ID that is no integer cannot be one of these
            wanted = np.array([_as_int(i) for i in wanted], dtype=np.int64)
        known = known.astype(np.int64)
    else:
        known = known.astype(str)
    order = np.argsort(known, kind="stable")
    at = np.minimum(np.searchsorted(known[order], wanted), len(known) - 1)
    return order[at], known[order][at] == wanted


def _as_int(text: str) -> int:
    """``text`` as an integer ID, or -1 (no ID of the dataset) when it is no 64-bit integer."""
    try:
        value = int(text)
    except ValueError:
        return -1
    return value if -(2**63) <= value < 2**63 else -1


def _check_labels(scored: Scored, source, positions: np.ndarray) -> None:
    """Where both scores.csv and the dataset's catalog know an object's label they must agree: the same IDs
    with other labels are another dataset (toy and simulated sets all start at ID 100000)."""
    if scored.labels is None:
        return
    truth = np.asarray(source.labels)[positions]
    differ = (scored.labels >= 0) & (truth >= 0) & (scored.labels != truth)
    if differ.any():
        k = int(np.argmax(differ))
        raise DataError(f"{scored.scores_file}, line {scored.lines[k]}: ID {scored.ids[k]} has label "
                        f"{scored.labels[k]} there but {truth[k]} in the dataset {source.path} "
                        f"({int(differ.sum())} labels differ: is it the dataset that was scored?)")


def catalog_quantities(source, positions: np.ndarray) -> list[dict | None] | None:
    """Per position, the catalog's Einstein area, lensed pixels and lensed flux (None where unknown); None
    when the dataset has no catalog with these columns (cubes, loose cutouts, the test layout's key)."""
    table = getattr(getattr(source, "data", None), "catalog", None)
    columns = {"einstein_area": "Einstein_area", "lensed_pixels": "numb_pix_lensed_image",
               "lensed_flux": "flux_lensed_image_in_sigma"}
    if table is None or not any(name in table.columns for name in columns.values()):
        return None
    import pandas as pd

    values = {key: (pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                    if name in table.columns else None) for key, name in columns.items()}
    rows: list[dict | None] = []
    for position in positions.tolist():
        row = {key: (None if column is None or not np.isfinite(column[position]) else float(column[position]))
               for key, column in values.items()}
        rows.append(row if any(v is not None for v in row.values()) else None)
    return rows
