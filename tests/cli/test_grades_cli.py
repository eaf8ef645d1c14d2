"""``lexactum grades``: the merged table written whole, the summary, --overwrite, --dataset, and one line for
each bad input with nothing written."""

from __future__ import annotations

import csv

import pytest

from lexactum import runs
from lexactum.cli import main

HEADER = "ID,grade,grader,timestamp\n"


def write(path, *rows):
    path.write_text(HEADER + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def two_graders(tmp_path):
    a = write(tmp_path / "alice.csv", "100001,3,alice,2026-11-29T15:00:00.000Z", "100002,0,alice,2026-11-29T15:00:01Z",
              "100001,2,alice,2026-11-29T15:02:00Z")
    b = write(tmp_path / "bob.csv", "100001,3,bob,2026-11-29T15:00:00Z", "100003,1,bob,2026-11-29T15:00:01Z")
    return a, b


def test_two_graders_merge_into_one_table_and_a_summary(two_graders, tmp_path, capsys):
    out = tmp_path / "merged.csv"
    assert main(["grades", *map(str, two_graders), "--out", str(out)]) == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["ID"], r["mean_grade"], r["n_graders"], r["class"], r["spread"], r["grade_alice"], r["grade_bob"])
            for r in rows] == [("100001", "2.500", "2", "A", "1", "2", "3"),
                               ("100003", "1.000", "1", "C", "0", "", "1"),
                               ("100002", "0.000", "1", "", "0", "0", "")]
    said = capsys.readouterr().out
    assert "2 grader(s) (alice 2, bob 2 objects graded), 3 objects, 5 grades read" in said
    assert "A 1, B 0, C 1, none 1" in said and "all within 1 grade on 1 (100%)" in said
    assert "1 grade(s) replaced by a later grade" in said and f"merged table: {out}" in said


def test_an_existing_out_is_kept_without_overwrite(two_graders, tmp_path, capsys):
    out = tmp_path / "merged.csv"
    out.write_text("mine\n")
    assert main(["grades", *map(str, two_graders), "--out", str(out)]) == 2
    assert "exists; give --overwrite" in capsys.readouterr().err and out.read_text() == "mine\n"
    assert main(["grades", *map(str, two_graders), "--out", str(out), "--overwrite"]) == 0
    assert out.read_text().startswith("ID,mean_grade,n_graders,class,spread,grade_alice,grade_bob\n")
    assert main(["grades", str(two_graders[0]), "--out", str(two_graders[0]), "--overwrite"]) == 2
    assert "is one of the grade files read" in capsys.readouterr().err


def test_a_failed_write_leaves_no_file(two_graders, tmp_path, monkeypatch, capsys):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs.os, "fsync", full)
    out = tmp_path / "merged.csv"
    assert main(["grades", *map(str, two_graders), "--out", str(out)]) == 2
    assert "no space left on device" in capsys.readouterr().err.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice.csv", "bob.csv"]


def test_dataset_checks_every_graded_id(two_graders, make_dataset, tmp_path, capsys):
    dataset = make_dataset(n=3)  # IDs 100000..100002
    out = tmp_path / "merged.csv"
    assert main(["grades", *map(str, two_graders), "--out", str(out), "--dataset", str(dataset)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"lexactum grades: error: {two_graders[1]} line 3: ID 100003 is not in --dataset {dataset}"
    assert not out.exists()
    assert main(["grades", str(two_graders[0]), "--out", str(out), "--dataset", str(dataset)]) == 0


def test_a_bad_row_is_one_line_and_nothing_is_written(tmp_path, capsys):
    bad = write(tmp_path / "bad.csv", "100001,5,alice,2026-11-29T15:00:00Z")
    out = tmp_path / "merged.csv"
    assert main(["grades", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad} line 2: grade '5' is not a whole number from 0 to 3" in err
    assert not out.exists()


def test_help_names_the_thresholds_and_the_spread(capsys):
    with pytest.raises(SystemExit):
        main(["grades", "--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert "A >= 2.5, B >= 1.5, C >= 0.5" in said and "spread is the highest minus the lowest grade" in said
