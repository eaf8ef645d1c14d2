"""Grade files of the report page: reading, the last grade of a grader, merging graders, classes, the training
label rule, and every bad input refused in one line naming the file and line."""

from __future__ import annotations

import pytest

from lexactum import grades
from lexactum.errors import LexactumError

HEADER = "ID,grade,grader,timestamp\n"


def write(path, *rows, header=HEADER):
    path.write_text(header + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


def test_a_graders_last_grade_counts_by_time_not_by_row_order(tmp_path):
    path = write(tmp_path / "a.csv",
                 "7,1,alice,2026-11-29T15:05:00.000Z",
                 "7,3,alice,2026-11-29T15:10:00.000Z",
                 "7,0,alice,2026-11-29T16:00:00+01:00")  # 15:00 UTC: earlier than both, although last
    merged = grades.merge_grades(grades.read_grade_files([path]))
    assert [(o.id, o.grades) for o in merged.objects] == [("7", {"alice": 3})]
    assert merged.n_grades == 3 and merged.n_replaced == 2


def test_graders_are_merged_per_object_with_mean_spread_and_class(tmp_path):
    a = write(tmp_path / "a.csv", "1,3,alice,2026-11-29T15:00:00Z", "2,0,alice,2026-11-29T15:00:01Z",
              "3,1,alice,2026-11-29T15:00:02Z")
    b = write(tmp_path / "b.csv", "1,2,bob,2026-11-29T15:00:00Z", "2,3,bob,2026-11-29T15:00:01Z",
              "4,0,bob,2026-11-29T15:00:03")  # no offset: UTC
    merged = grades.merge_grades(grades.read_grade_files([a, b]))
    columns, rows = grades.merged_rows(merged)
    assert columns == ["ID", "mean_grade", "n_graders", "class", "spread", "grade_alice", "grade_bob"]
    assert rows == [
        {"ID": "1", "mean_grade": "2.500", "n_graders": 2, "class": "A", "spread": 1, "grade_alice": 3,
         "grade_bob": 2},
        {"ID": "2", "mean_grade": "1.500", "n_graders": 2, "class": "B", "spread": 3, "grade_alice": 0,
         "grade_bob": 3},
        {"ID": "3", "mean_grade": "1.000", "n_graders": 1, "class": "C", "spread": 0, "grade_alice": 1},
        {"ID": "4", "mean_grade": "0.000", "n_graders": 1, "class": "", "spread": 0, "grade_bob": 0},
    ]
    summary = "\n".join(grades.summary_lines(merged))
    assert "2 grader(s) (alice 3, bob 3 objects graded), 4 objects, 6 grades read" in summary
    assert "A 1, B 1, C 1, none 1" in summary
    assert "2 objects graded by 2 or more: all within 1 grade on 1 (50%), the same grade on 0 (0%)" in summary


@pytest.mark.parametrize(("mean", "expected"), [(3, "A"), (2.5, "A"), (2.49, "B"), (1.5, "B"), (1.2, "C"),
                                                 (0.5, "C"), (0.49, ""), (0, "")])
def test_classes_follow_the_documented_bounds(mean, expected):
    assert grades.grade_class(mean) == expected


@pytest.mark.parametrize(("mean", "min_grade", "label"), [(3, 2, 1), (2, 2, 1), (1.9, 2, None), (1, 2, None),
                                                           (0.5, 2, None), (0.33, 2, 0), (0, 2, 0), (1, 1, 1)])
def test_training_labels_from_mean_grades(mean, min_grade, label):
    assert grades.training_label(mean, min_grade) == label


def test_a_merged_table_and_a_raw_export_both_give_mean_grades(tmp_path):
    raw = write(tmp_path / "raw.csv", "5,2,alice,2026-11-29T15:00:00Z", "5,0,bob,2026-11-29T15:00:00Z",
                "6,3,alice,2026-11-29T15:00:00Z")
    table = write(tmp_path / "merged.csv", "5,1.0,2,C,2,2,0", "6,3.000,1,A,0,3,",
                  header="ID,mean_grade,n_graders,class,spread,grade_alice,grade_bob\n")
    expected = [("6", 3.0), ("5", 1.0)]
    assert [(g.id, g.mean) for g in grades.read_graded(raw)] == expected
    assert sorted((g.id, g.mean) for g in grades.read_graded(table)) == sorted(expected)


def test_ids_are_compared_as_numbers_or_names(tmp_path):
    path = write(tmp_path / "a.csv", "00012,1,alice,2026-11-29T15:00:00Z", "lens_a,1,alice,2026-11-29T15:00:00Z")
    merged = grades.merge_grades(grades.read_grade_files([path]))
    grades.check_ids_in(merged.objects, [12, "lens_a"], "the dataset")
    with pytest.raises(LexactumError, match=r"a.csv line 3: ID lens_a is not in the dataset$"):
        grades.check_ids_in(merged.objects, [12, 13], "the dataset")


@pytest.mark.parametrize(("content", "message"), [
    ("", r"a.csv: empty file"),
    ("\n\n", r"a.csv: empty file"),
    (HEADER, r"a.csv: holds no grades \(only the header\)"),
    ("ID,grade,timestamp\n1,2,2026-11-29T15:00:00Z\n", r"a.csv: no column 'grader' in its header"),
    (HEADER + "1,4,alice,2026-11-29T15:00:00Z\n", r"a.csv line 2: grade '4' is not a whole number from 0 to 3"),
    (HEADER + "1,-1,alice,2026-11-29T15:00:00Z\n", r"a.csv line 2: grade '-1' is not a whole number"),
    (HEADER + "1,2.5,alice,2026-11-29T15:00:00Z\n", r"a.csv line 2: grade '2.5' is not a whole number"),
    (HEADER + "1,two,alice,2026-11-29T15:00:00Z\n", r"a.csv line 2: grade 'two' is not a whole number"),
    (HEADER + "1,2,alice,2026-11-29T15:00:00Z\n2,2,,2026-11-29T15:00:00Z\n",
     r"a.csv line 3: the grader's name is empty"),
    (HEADER + " ,2,alice,2026-11-29T15:00:00Z\n", r"a.csv line 2: the ID is empty"),
    (HEADER + "1,2,alice,yesterday\n", r"a.csv line 2: timestamp 'yesterday' is not an ISO 8601 time"),
    (HEADER + "1,2,alice,2026-13-01T00:00:00Z\n", r"a.csv line 2: timestamp '2026-13-01T00:00:00Z' is not"),
    (HEADER + "1,2,alice\n", r"a.csv line 2: 3 values, but the header names 4 columns"),
    (HEADER + "1,2,alice,2026-11-29T15:00:00Z\n1,3,alice,2026-11-29T15:00:00.000+00:00\n",
     r"a.csv line 3: duplicate row: ID 1 graded by alice at 2026-11-29T15:00:00.000Z already at .*a.csv line 2"),
])
def test_bad_grade_files_are_refused_in_one_line_naming_file_and_line(tmp_path, content, message):
    path = tmp_path / "a.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(LexactumError, match=message) as caught:
        grades.read_grade_files([path])
    assert "\n" not in str(caught.value)


def test_the_same_grade_in_two_files_and_a_file_given_twice_are_refused(tmp_path):
    a = write(tmp_path / "a.csv", "1,2,alice,2026-11-29T15:00:00Z")
    copy = write(tmp_path / "copy.csv", "1,2,alice,2026-11-29T15:00:00Z")
    with pytest.raises(LexactumError, match=r"copy.csv line 2: duplicate row: .* already at .*a.csv line 2"):
        grades.read_grade_files([a, copy])
    with pytest.raises(LexactumError, match=r"a.csv: given twice"):
        grades.read_grade_files([a, tmp_path / "." / "a.csv"])


@pytest.mark.parametrize(("content", "message"), [
    ("ID,mean_grade\n1,3.5\n", r"m.csv line 2: mean_grade '3.5' is not a number from 0 to 3"),
    ("ID,mean_grade\n1,nan\n", r"m.csv line 2: mean_grade 'nan' is not a number"),
    ("ID,mean_grade\n1,2\n1,3\n", r"m.csv line 3: duplicate row: ID 1 already at .*m.csv line 2"),
    ("ID,mean_grade\n", r"m.csv: holds no grades"),
    ("ID,class\n1,A\n", r"m.csv: no column 'grade', 'grader', 'timestamp'"),
])
def test_bad_merged_tables_are_refused(tmp_path, content, message):
    path = tmp_path / "m.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(LexactumError, match=message):
        grades.read_graded(path)


def test_unreadable_files_are_one_line(tmp_path):
    with pytest.raises(LexactumError, match="missing.csv: cannot be read"):
        grades.read_grade_files([tmp_path / "missing.csv"])
    (tmp_path / "bin.csv").write_bytes(b"ID,grade\xff\xfe\n")
    with pytest.raises(LexactumError, match=r"bin.csv: not UTF-8 text"):
        grades.read_grade_files([tmp_path / "bin.csv"])
