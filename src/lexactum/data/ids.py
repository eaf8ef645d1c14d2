"""Lists of object IDs given by the user: which objects to score (``evaluate --ids-file``), read from a run
folder's split.json, a JSON list or a text/CSV file, and their positions in a dataset.

A library function rather than a command's: every front end that scores a chosen part of a dataset (the
CLI, ``Space.py``/``Ground.py``, notebooks) reads such files the same way.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np

from lexactum.errors import LexactumError


def read_ids_file(path) -> list[int]:
    """Object IDs from a run folder, a split.json (its 'test' part), a JSON list, or a text/CSV file."""
    path = Path(path)
    if path.is_dir():
        path = path / "split.json"
    if not path.is_file():
        raise LexactumError(f"{path}: IDs file not found")
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    if path.suffix.lower() == ".json":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LexactumError(f"{path}: not valid JSON ({exc})") from None
        if isinstance(value, dict):
            value = value.get("test", value)
            value = value.get("ids") if isinstance(value, dict) else value
        if not isinstance(value, list):
            raise LexactumError(f"{path}: expected a list of IDs or a split with a 'test' part")
        tokens = value
    else:
        rows = [row for row in csv.reader(text.splitlines()) if row and not row[0].lstrip().startswith("#")]
        header = [cell.strip().strip('"').lower() for cell in rows[0]] if rows else []
        column = header.index("id") if "id" in header else None
        body = rows[1:] if column is not None else rows
        if column is not None:
            short = next((n for n, row in enumerate(body, 2) if len(row) <= column), None)
            if short is not None:
                raise LexactumError(f"{path}: row {short} has no {rows[0][column].strip()!r} value")
            tokens = [row[column] for row in body]
        else:
            tokens = [token for row in body for cell in row for token in cell.split()]
    whole = re.compile(r"-?[0-9]+")  # plain ASCII digits: not '1_0', not '²'
    bad = next((t for t in tokens if isinstance(t, bool) or not whole.fullmatch(str(t).strip())), None)
    if bad is not None:
        raise LexactumError(f"{path}: {bad!r} is not an object ID (whole number)")
    ids = [int(str(token).strip()) for token in tokens]
    if not ids:
        raise LexactumError(f"{path}: holds no IDs")
    return ids


def positions_of(dataset_ids, wanted_ids, source: str):
    """Positions in ``dataset_ids`` of ``wanted_ids``; a clear error for IDs the dataset does not have."""
    where = {int(object_id): k for k, object_id in enumerate(dataset_ids)}
    missing = [i for i in wanted_ids if i not in where]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise LexactumError(f"{source}: {len(missing)} IDs are not in the dataset ({shown})")
    return np.array([where[i] for i in dict.fromkeys(wanted_ids)], dtype=np.int64)
