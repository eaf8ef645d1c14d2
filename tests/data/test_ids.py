"""IDs files: which objects to score, from a run folder, split.json, a JSON list or a text/CSV file."""

from __future__ import annotations

import numpy as np
import pytest

from lexactum.data.ids import positions_of, read_ids_file
from lexactum.errors import LexactumError


@pytest.mark.parametrize(
    "name,text,expected",
    [
        ("ids.txt", "100003\n100001 100007\n", [100003, 100001, 100007]),
        ("ids.csv", "# picked by hand\nID,score\n100002,0.5\n100009,0.1\n", [100002, 100009]),
        ("list.json", "[5, 6]", [5, 6]),
        ("split.json", '{"test": {"n": 2, "ids": [8, 9]}, "val": {"ids": [1]}}', [8, 9]),
    ],
)
def test_read_ids_file(tmp_path, name, text, expected):
    (tmp_path / name).write_text(text)
    assert read_ids_file(tmp_path / name) == expected


def test_ids_file_errors(tmp_path):
    (tmp_path / "bad.txt").write_text("100001\nabc\n")
    with pytest.raises(LexactumError, match="'abc' is not an object ID"):
        read_ids_file(tmp_path / "bad.txt")
    with pytest.raises(LexactumError, match="not found"):
        read_ids_file(tmp_path / "missing.txt")
    for name, text, message in (("short.csv", "label,ID\n1,100001\n100002\n", "row 3 has no 'ID' value"),
                                ("super.txt", "100001\n\u00b2\n", "'\u00b2' is not an object ID"),
                                ("under.txt", "1_0\n", "'1_0' is not an object ID")):
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(LexactumError, match=message):
            read_ids_file(tmp_path / name)
    with pytest.raises(LexactumError, match=r"2 IDs are not in the dataset \(5, 6\)"):
        positions_of(np.array([1, 2, 3]), [1, 5, 6], "ids.txt")
    np.testing.assert_array_equal(positions_of(np.array([4, 8, 6]), [6, 4], "x"), [2, 0])
