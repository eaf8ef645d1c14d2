"""The merged results of a prediction: a ranked scores.csv (and Parquet), the challenge submission and the list
of objects left out, written together from the shards, in bounded memory (a few numbers per object).

Columns: ``ID,score[,label]`` for one network; a committee adds one column of probabilities per member after
``score`` (the committee's score, see :func:`lexactum.inference.committee.combine`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lexactum.errors import LexactumError

SCORES_FILE = "scores.csv"
PARQUET_FILE = "scores.parquet"
SUBMISSION_FILE = "submission.txt"
#: Rows formatted and written at a time: the text of a billion-row file is never held whole.
ROWS_PER_WRITE = 65536


def plain_ids(ids: np.ndarray) -> list:
    return ids.tolist() if np.asarray(ids).dtype.kind in "iu" else [str(i) for i in ids]


def _write_rows(path: Path, header: str, columns: list[np.ndarray], formats: list) -> None:
    """A text file of one line per row, written in slices through an atomic temporary file."""
    from lexactum.runs import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        if header:
            fh.write(header + "\n")
        n = len(columns[0]) if columns else 0
        for start in range(0, n, ROWS_PER_WRITE):
            pieces = [[fmt(v) for v in column[start:start + ROWS_PER_WRITE].tolist()]
                      for column, fmt in zip(columns, formats, strict=True)]
            fh.writelines(",".join(row) + "\n" for row in zip(*pieces, strict=True))


def _label_text(value: int) -> str:
    return str(value) if value >= 0 else ""


def write_scores_csv(path: Path, ids, scores: np.ndarray, member_scores: np.ndarray | None,
                     member_names: list[str], labels: np.ndarray | None) -> None:
    """scores.csv, rows already in the order wanted (most lens-like first)."""
    columns, formats, header = [np.asarray(ids), scores], [str, repr], ["ID", "score"]
    if labels is not None:
        columns.append(labels), formats.append(_label_text), header.append("label")
    if member_scores is not None:
        for k, name in enumerate(member_names):
            columns.append(member_scores[:, k]), formats.append(repr), header.append(name)
    _write_rows(path, ",".join(header), columns, formats)


def write_submission(path: Path, ids, scores: np.ndarray) -> None:
    """The challenge format: ``ID score`` per line, no header."""
    from lexactum.runs import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        for start in range(0, len(scores), ROWS_PER_WRITE):
            chunk = zip(np.asarray(ids)[start:start + ROWS_PER_WRITE].tolist(),
                        scores[start:start + ROWS_PER_WRITE].tolist(), strict=True)
            fh.writelines(f"{i} {s!r}\n" for i, s in chunk)


def check_parquet() -> None:
    """--parquet needs pyarrow: said before the scoring pass, not after it."""
    import importlib.util

    if importlib.util.find_spec("pyarrow") is None:
        raise LexactumError("--parquet needs pyarrow: pip install 'lexactum[parquet]'")


def write_parquet(path: Path, ids, scores, member_scores, member_names, labels) -> None:
    """The same table as scores.csv in Parquet (pyarrow), for tools that read columns fast."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lexactum.runs import atomic_path

    table = {"ID": np.asarray(ids), "score": scores}
    if labels is not None:
        table["label"] = labels
    if member_scores is not None:
        table.update({name: member_scores[:, k] for k, name in enumerate(member_names)})
    with atomic_path(path) as tmp:
        pq.write_table(pa.table(table), tmp)


def ranked(scores: np.ndarray) -> np.ndarray:
    """Row order from the most to the least lens-like; ties keep the input order."""
    return np.argsort(-scores, kind="stable")
