"""Property-based tests of the catalog reader: random training and test catalogs, valid, odd and hostile.

A catalog is built from a model (IDs, labels, columns) and written with every accepted variation (BOM, CRLF,
quoted names, any case, extra columns in any order, comment and blank lines, whole decimals, a trailing comma)
and, sometimes, one defect (a missing or repeated column, a bad or repeated ID, a bad label, another delimiter,
non-UTF-8 bytes, an open quote, a row longer than the header). ``read_catalog`` and ``ChallengeDataset`` must
give the model's IDs and labels, or a one-line DataError naming the catalog when there is a defect; random
byte mutations must give a consistent result or that error. Never another exception, never a hang.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from guards import time_limit
from lexactum.data.layouts import ChallengeDataset, read_catalog
from lexactum.data.surveys import SPACE, TRAINING_CATALOG
from lexactum.errors import DataError

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
TIME_LIMIT = 5.0
#: Whole decimals are exact below this; a decimal ID from here on is refused (pandas has already rounded it).
EXACT = 2**53
DEFECTS = ("no ID column", "no label column", "repeated ID", "bad label", "bad ID", "semicolons", "non-UTF-8",
           "open quote", "long row", "repeated column")
EXTRA_COLUMNS = ("Einstein_area", "numb_pix_lensed_image", "n_source_im", "mag_eff", "note")


def check_error(exc: DataError, *names) -> None:
    message = str(exc)
    assert "\n" not in message and "\r" not in message, message
    assert any(str(name) in message for name in names), message
    assert "np." not in message, f"a numpy repr in {message}"


# ---------------------------------------------------------------------------------------------------
# The model and how it is written.

ids_strategy = st.one_of(st.integers(100_000, 100_010), st.integers(0, 10**7),
                         st.integers(-(2**63), 2**63 - 1), st.sampled_from([2**53, 2**53 + 1, 2**63 - 1, -(2**63)]))


@st.composite
def catalog_models(draw, ids=ids_strategy):
    """(layout, columns, rows, ids, labels): the table a catalog file should hold."""
    layout = draw(st.sampled_from(["train", "test"]))
    object_ids = draw(st.lists(ids, max_size=6, unique=True))
    labels = draw(st.lists(st.integers(0, 1), min_size=len(object_ids), max_size=len(object_ids)))
    label_name = "is_lens" if layout == "train" else "no_source"
    extras = draw(st.lists(st.sampled_from(EXTRA_COLUMNS), unique=True, max_size=3))
    if layout == "train" and draw(st.integers(0, 4)) == 0:
        extras.append("no_source")  # both label columns: is_lens wins
    columns = draw(st.permutations(["ID", label_name, *extras]))
    rows = []
    for object_id, label in zip(object_ids, labels, strict=True):
        cells = {"ID": str(object_id), "is_lens": str(label), "no_source": str(1 - label)}
        for name in extras:
            if name != "no_source":
                cells[name] = draw(st.sampled_from(["1.5e-10", "0", "", "text", '"a, b"', "nan", "-3"]))
        rows.append(cells)
    return layout, columns, rows, np.array(object_ids, dtype=np.int64), np.array(labels, dtype=np.int64)


@st.composite
def catalog_files(draw, ids=ids_strategy, defects=True):
    """(file bytes, layout, expected): expected is (ids, labels), or None when the catalog has a defect."""
    layout, columns, rows, ids, labels = draw(catalog_models(ids))
    defect = draw(st.sampled_from(DEFECTS)) if defects and draw(st.integers(0, 2)) == 0 else None
    decimal_ids = False
    for cells in rows:  # accepted ways of writing a number
        for name in ("ID", "is_lens", "no_source"):
            style = draw(st.sampled_from(["plain", "plain", "plain", "decimal", "plus", "space", "quoted"]))
            if style == "decimal":
                decimal_ids |= name == "ID"
                cells[name] += ".0"
            elif style == "plus" and not cells[name].startswith("-"):
                cells[name] = "+" + cells[name]
            elif style == "space":
                cells[name] = " " + cells[name]
            elif style == "quoted":
                cells[name] = f'"{cells[name]}"'
    if decimal_ids and any(abs(int(i)) >= EXACT for i in ids):
        defect = defect or "inexact decimal ID"
    names = {c: draw(st.sampled_from([c, c.upper(), c.lower(), f'"{c}"', f" {c}", f"{c} "])) for c in columns}
    delimiter = ","
    if defect == "no ID column":
        columns = [c for c in columns if c != "ID"]
    elif defect == "no label column":
        columns = [c for c in columns if c not in ("is_lens", "no_source")]
    elif defect == "repeated column":
        columns = columns + ["ID"]
    elif defect == "semicolons":
        delimiter = ";"
    elif defect in ("repeated ID", "bad label", "bad ID", "long row") and not rows:
        defect = None
    if defect == "repeated ID":
        rows.insert(draw(st.integers(0, len(rows))), dict(rows[draw(st.integers(0, len(rows) - 1))]))
    elif defect in ("bad label", "bad ID"):
        name = "ID" if defect == "bad ID" else ("is_lens" if layout == "train" else "no_source")
        bad = ["abc", "", "1.5", "nan", "inf", "0x10", "1_0", "True", "18446744073709551615", "1e30"]
        rows[draw(st.integers(0, len(rows) - 1))][name] = draw(st.sampled_from(bad + (["2", "-1"] if name != "ID"
                                                                                    else [])))
    lines = [delimiter.join(names[c] for c in columns)]
    lines += [delimiter.join(cells.get(c, "") for c in columns) for cells in rows]
    if defect == "non-UTF-8":  # in the header line (a comment line may hold any bytes)
        lines[0] += "@@"
    if draw(st.booleans()):  # a trailing comma on every line is accepted
        lines = [line + delimiter for line in lines]
    if defect == "long row":
        k = draw(st.integers(1, len(lines) - 1))
        lines[k] += delimiter + "7"
    comments = ["# a comment line", "#", "# ID,is_lens", ""]
    top = draw(st.lists(st.sampled_from(comments), max_size=3)) if layout == "test" or draw(st.booleans()) else []
    if top and not top[-1]:
        top.append("# header next")
    for _ in range(draw(st.integers(0, 2))):  # blank lines and comment lines among the rows
        lines.insert(draw(st.integers(1, len(lines))), draw(st.sampled_from(["", "# comment"])))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    raw = (newline.join(top + lines) + draw(st.sampled_from([newline, ""]))).encode()
    if draw(st.booleans()):
        raw = b"\xef\xbb\xbf" + raw
    if defect == "non-UTF-8":
        raw = raw.replace(b"@@", b"\xe9")
    elif defect == "open quote":
        raw = raw + (newline + '"100,1' + newline).encode()
    expected = None if defect else (ids, labels)
    event(f"defect: {defect}")
    return raw, layout, expected


@contextlib.contextmanager
def written(content: bytes, name: str = TRAINING_CATALOG):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(content)
        yield path


def read_checked(path: Path):
    """read_catalog under the alarm: (ids, labels), or None after checking the one-line error."""
    try:
        with time_limit(TIME_LIMIT, "reading a catalog"):
            table, ids, labels = read_catalog(path)
    except DataError as exc:
        check_error(exc, path)
        return None
    assert ids.dtype == np.int64 and labels.dtype == np.int64 and ids.ndim == labels.ndim == 1
    assert len(ids) == len(labels) == len(table)
    assert np.isin(labels, (0, 1)).all() and len(np.unique(ids)) == len(ids)
    return ids, labels


# ---------------------------------------------------------------------------------------------------
# Properties.

@PROPERTY
@given(catalog_files())
@example((b"ID,is_lens\n18446744073709551615,0\n", "train", None))  # was wrapped round to ID -1
@example((b"ID,is_lens,id\n1,0,2\n", "train", None))  # two ID columns: the last one was taken
@example((b"is_lens,ID ,ID \n", "train", None))  # the same, renamed 'ID .1' by pandas
@example((b"ID,is_lens\n100,5,0\n101,6,1\n", "train", None))  # rows longer than the header: shifted columns
@example((b"ID,is_lens\n9007199254740993,0\n1.0,1\n", "train", None))  # decimals: 2**53 + 1 became 2**53
@example((b"ID,is_lens\n1,2\n", "train", None))  # the message showed np.int64(2)
@example((b'"I\nD",is_lens\n1,0\n', "train", None))  # a column name holding a line break: a two-line message
def test_read_catalog_gives_the_model_or_one_line_error(catalog):
    raw, layout, expected = catalog
    with written(raw) as path:
        result = read_checked(path)
    if expected is None:
        assert result is None, f"a defective catalog was read: {result}"
    else:
        assert result is not None, "a valid catalog was refused"
        assert result[0].tolist() == expected[0].tolist() and result[1].tolist() == expected[1].tolist()


MUTATIONS = st.sampled_from([b",", b'"', b"#", b"\n", b"\r", b"\xff", b"\xe9", b"\0", b";", b" ", b"\t", b"9",
                             b"-", b".", b"e", b"nan", b"\xef\xbb\xbf", b"9" * 30, b"x" * 5000])


@PROPERTY
@given(catalog_files(defects=False), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 3), MUTATIONS),
                                              min_size=1, max_size=4), st.binary(max_size=200))
def test_mutated_catalogs_read_consistently_or_fail_in_one_line(catalog, mutations, random_bytes):
    """Bytes inserted, replaced or cut anywhere (or a random file): a consistent table or our one error."""
    raw = bytearray(catalog[0])
    for offset, cut, insert in mutations:
        offset = offset % (len(raw) + 1)
        raw[offset:offset + cut] = insert
    for content in (bytes(raw), random_bytes):
        with written(content) as path:
            read_checked(path)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """A training-layout and a test-layout space dataset of four objects (IDs 100000-100003)."""
    from lexactum.simulate.toy import write_toy_dataset

    return {layout: write_toy_dataset(tmp_path_factory.mktemp(layout), survey="space", n=4, layout=layout)
            for layout in ("train", "test")}


@PROPERTY
@given(catalog_files(ids=st.one_of(st.integers(100_000, 100_005), ids_strategy)))
def test_dataset_gives_the_model_or_one_line_error(datasets, catalog):
    raw, layout, expected = catalog
    root = datasets[layout]
    path = root / (TRAINING_CATALOG if layout == "train" else SPACE.test_catalog)
    path.write_bytes(raw)
    try:
        with time_limit(TIME_LIMIT, "reading a catalog"):
            dataset = ChallengeDataset(root)
    except DataError as exc:
        check_error(exc, path, root)
        with_images = expected is not None and set(expected[0].tolist()) & {100_000, 100_001, 100_002, 100_003}
        assert not with_images, f"a valid catalog was refused: {exc}"
        return
    assert expected is not None, "a defective catalog was read"
    label_of = dict(zip(expected[0].tolist(), expected[1].tolist(), strict=True))
    wanted = sorted(set(label_of) & {100_000, 100_001, 100_002, 100_003})
    assert dataset.ids.tolist() == wanted
    assert dataset.labels.tolist() == [label_of[i] for i in wanted]
    assert dataset.layout == layout


def test_fifo_catalog_is_refused_at_once(tmp_path):
    """A FIFO named like a catalog: refused at once (opening it used to wait for a writer for ever)."""
    import os

    path = tmp_path / TRAINING_CATALOG
    os.mkfifo(path)
    with pytest.raises(DataError) as info, time_limit(TIME_LIMIT, "reading a catalog"):
        read_catalog(path)
    check_error(info.value, path)
    assert "not a regular file" in str(info.value)


def test_missing_catalog_or_folder_is_one_line(tmp_path):
    """read_catalog on a missing path or a folder: our error (a missing path used to raise FileNotFoundError)."""
    for path, words in ((tmp_path / "absent.csv", "cannot read catalog"), (tmp_path, "not a regular file")):
        with pytest.raises(DataError, match=words) as info:
            read_catalog(path)
        check_error(info.value, path)
