"""Graders' grades of lens candidates: reading the CSV files the report page exports, merging several graders
into one table per object, and the rule that turns grades into training labels.

Grades use the SuGOHI scale (Sonnenfeld et al. 2018, PASJ 70, S29): 3 certain lens, 2 probable, 1 possible,
0 not a lens. A grader's file holds ``ID,grade,grader,timestamp`` rows (timestamp ISO 8601, UTC when no offset
is given); a grader may grade an object again, and their last grade counts (latest timestamp). The merged
table gives each object its mean grade over the graders, how many graded it, the spread (max - min) between
them, each grader's grade, and a class from the mean grade (:data:`CLASS_THRESHOLDS`).

Nothing here imports numpy: ``lexactum --help`` reads the defaults below.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from lexactum.errors import LexactumError, describe_os_error

#: The columns of a grader's file (the page's export), in its order.
GRADE_COLUMNS = ("ID", "grade", "grader", "timestamp")
#: The merged table's fixed columns; each grader's grade follows in a column ``GRADER_PREFIX + name``.
MERGED_COLUMNS = ("ID", "mean_grade", "n_graders", "class", "spread")
GRADER_PREFIX = "grade_"
#: Grades are whole numbers from 0 to this.
TOP_GRADE = 3
#: Class of an object by its mean grade, highest first: the SuGOHI classes (A: mean >= 2.5, B: >= 1.5,
#: C: >= 0.5; below 0.5 no class). The bounds count as the higher class.
CLASS_THRESHOLDS = (("A", 2.5), ("B", 1.5), ("C", 0.5))
#: Training labels from grades: mean grade >= this is a lens (``train --extra-min-grade``; 2: probable)...
LENS_MIN_GRADE = 2.0
#: ...and a mean grade below the lowest class bound (no class: every grader, or nearly, said 0) a non-lens;
#: objects in between are left out.
NON_LENS_BELOW = CLASS_THRESHOLDS[-1][1]
#: A grade written to the merged table: 3 decimals.
MEAN_DECIMALS = 3


@dataclass(frozen=True)
class Grade:
    """One row of a grader's file: where it was (``file``, ``line``) for the messages."""

    id: str
    grade: int
    grader: str
    time: datetime
    file: Path
    line: int

    @property
    def where(self) -> str:
        return f"{self.file} line {self.line}"


@dataclass
class MergedObject:
    """One object of the merged table: each grader's last grade, and where its first grade was read."""

    id: str
    grades: dict[str, int]
    where: str

    @property
    def mean(self) -> float:
        return sum(self.grades.values()) / len(self.grades)

    @property
    def spread(self) -> int:
        return max(self.grades.values()) - min(self.grades.values())

    @property
    def grade_class(self) -> str:
        return grade_class(self.mean)


@dataclass
class Merged:
    """The merged grades: objects (highest mean grade first), graders in the order first met, and how many
    grades were read and how many a later grade of the same grader replaced."""

    objects: list[MergedObject]
    graders: list[str]
    n_grades: int
    n_replaced: int
    per_grader: dict[str, int] = field(default_factory=dict)


def grade_class(mean: float) -> str:
    """'A', 'B', 'C' or '' for a mean grade (:data:`CLASS_THRESHOLDS`)."""
    return next((name for name, bound in CLASS_THRESHOLDS if mean >= bound), "")


def read_rows(path: str | os.PathLike) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(line, cells), ...]) of a CSV file, blank lines skipped; one line naming the file for a file
    that is missing, not a file, not UTF-8 text, not CSV, or empty."""
    from lexactum.data.layouts import file_problem

    path = Path(path)
    problem = file_problem(path)  # never opens a named pipe
    if problem is not None:
        raise LexactumError(f"{path}: cannot be read ({problem})")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise LexactumError(describe_os_error(exc, path, "read")) from None
    except UnicodeDecodeError as exc:
        raise LexactumError(f"{path}: not UTF-8 text (byte {exc.start}); is it a CSV file?") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    try:
        for cells in reader:
            if any(cell.strip() for cell in cells):
                rows.append((reader.line_num, cells))
    except csv.Error as exc:
        raise LexactumError(f"{path} line {reader.line_num}: not readable as CSV ({exc})") from None
    if not rows:
        raise LexactumError(f"{path}: empty file (expected the header {','.join(GRADE_COLUMNS)} and one row per "
                            "grade)")
    header = [cell.strip() for cell in rows[0][1]]
    return header, rows[1:]


def column_positions(path: Path, header: list[str], wanted: Sequence[str], kind: str) -> list[int]:
    """Where each of ``wanted`` is in ``header`` (names compared without case); one line for a missing one."""
    lower = [name.lower() for name in header]
    missing = [name for name in wanted if name.lower() not in lower]
    if missing:
        raise LexactumError(f"{path}: no column {', '.join(map(repr, missing))} in its header "
                            f"({','.join(header)}); {kind}")
    return [lower.index(name.lower()) for name in wanted]


def read_grade_file(path: str | os.PathLike) -> list[Grade]:
    """The grades of one file exported by the report page; every row checked, the first bad one refused in one
    line naming the file and the line."""
    path = Path(path)
    header, rows = read_rows(path)
    columns = column_positions(path, header, GRADE_COLUMNS,
                               f"a grade file has the columns {','.join(GRADE_COLUMNS)}")
    if not rows:
        raise LexactumError(f"{path}: holds no grades (only the header)")
    return [_grade(path, line, cells, columns, len(header)) for line, cells in rows]


def _grade(path: Path, line: int, cells: list[str], columns: list[int], width: int) -> Grade:
    where = f"{path} line {line}"
    if len(cells) != width:
        raise LexactumError(f"{where}: {len(cells)} values, but the header names {width} columns")
    object_id, grade, grader, stamp = (cells[k].strip() for k in columns)
    if not object_id:
        raise LexactumError(f"{where}: the ID is empty")
    if grade not in {str(g) for g in range(TOP_GRADE + 1)}:
        raise LexactumError(f"{where}: grade {grade!r} is not a whole number from 0 to {TOP_GRADE} (3 certain lens, "
                            "2 probable, 1 possible, 0 not a lens)")
    if not grader:
        raise LexactumError(f"{where}: the grader's name is empty; every grade must say who gave it")
    return Grade(object_id, int(grade), grader, parse_time(stamp, where), path, line)


def parse_time(text: str, where: str) -> datetime:
    """An ISO 8601 time as an aware UTC datetime (no offset given: UTC, as the page writes)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise LexactumError(f"{where}: timestamp {text!r} is not an ISO 8601 time (like "
                            "2026-11-29T15:00:00.000Z)") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def read_grade_files(paths: Iterable[str | os.PathLike]) -> list[Grade]:
    """The grades of every file, in order; a grade given twice (same ID, grader and time, in one file or two)
    is refused: it is an export or a file given twice, and which copy counts would be a guess."""
    grades: list[Grade] = []
    seen: dict[tuple, Grade] = {}
    files: set[Path] = set()
    for path in paths:
        if Path(path).resolve() in files:
            raise LexactumError(f"{path}: given twice; give each grade file once")
        files.add(Path(path).resolve())
        for grade in read_grade_file(path):
            key = (grade.id, grade.grader, grade.time)
            if key in seen:
                raise LexactumError(f"{grade.where}: duplicate row: ID {grade.id} graded by {grade.grader} at "
                                    f"{_iso(grade.time)} already at {seen[key].where} (a file or an export given "
                                    "twice? give each grade once: a later export of the page holds the earlier "
                                    "grades)")
            seen[key] = grade
            grades.append(grade)
    return grades


def merge_grades(grades: Sequence[Grade]) -> Merged:
    """One object per ID: each grader's last grade (latest time; equal times cannot occur, see
    :func:`read_grade_files`), objects ordered by mean grade (highest first), then by ID."""
    last: dict[tuple[str, str], Grade] = {}
    first_seen: dict[str, str] = {}
    for grade in grades:
        key = (grade.id, grade.grader)
        first_seen.setdefault(grade.id, grade.where)
        if key not in last or grade.time > last[key].time:
            last[key] = grade
    graders = list(dict.fromkeys(grade.grader for grade in grades))
    by_id: dict[str, dict[str, int]] = {}
    for (object_id, grader), grade in last.items():
        by_id.setdefault(object_id, {})[grader] = grade.grade
    objects = [MergedObject(object_id, dict(sorted(given.items(), key=lambda kv: graders.index(kv[0]))),
                            first_seen[object_id]) for object_id, given in by_id.items()]
    objects.sort(key=lambda obj: (-obj.mean, _id_order(obj.id)))
    per_grader = {name: sum(name in obj.grades for obj in objects) for name in graders}
    return Merged(objects, graders, len(grades), len(grades) - len(last), per_grader)


def _id_order(object_id: str) -> tuple:
    """Numbers in numeric order, before names."""
    return (0, int(object_id), "") if object_id.lstrip("-").isdigit() else (1, 0, object_id)


def check_ids_in(objects: Iterable[MergedObject], ids: Iterable, dataset: str) -> None:
    """Every object's ID is one of ``ids`` (the dataset's: whole numbers or names); else one line naming the
    first missing one and the file and line it came from."""
    known = {id_key(object_id) for object_id in ids}
    missing = [obj for obj in objects if id_key(obj.id) not in known]
    if missing:
        more = f" ({len(missing) - 1} more graded IDs are not there either)" if len(missing) > 1 else ""
        raise LexactumError(f"{missing[0].where}: ID {missing[0].id} is not in {dataset}{more}")


def id_key(object_id) -> str:
    """The form in which IDs are compared: whole numbers without leading zeros or sign noise, names as written."""
    text = str(object_id).strip()
    return str(int(text)) if text.lstrip("+-").isdigit() else text


def merged_rows(merged: Merged) -> tuple[list[str], list[dict]]:
    """(columns, rows) of the merged table: :data:`MERGED_COLUMNS`, then one column per grader."""
    columns = [*MERGED_COLUMNS, *(GRADER_PREFIX + name for name in merged.graders)]
    rows = []
    for obj in merged.objects:
        row = {"ID": obj.id, "mean_grade": f"{obj.mean:.{MEAN_DECIMALS}f}", "n_graders": len(obj.grades),
               "class": obj.grade_class, "spread": obj.spread}
        row.update({GRADER_PREFIX + name: grade for name, grade in obj.grades.items()})
        rows.append(row)
    return columns, rows


def summary_lines(merged: Merged) -> list[str]:
    """What the merge found, for the user: graders, objects, classes, agreement."""
    graders = ", ".join(f"{name} {merged.per_grader[name]}" for name in merged.graders)
    objects = merged.objects
    counts = {name: sum(obj.grade_class == name for obj in objects) for name, _ in CLASS_THRESHOLDS}
    bounds = ", ".join(f"{name} >= {bound:g}" for name, bound in CLASS_THRESHOLDS)
    classes = ", ".join(f"{name} {count}" for name, count in counts.items())
    lines = [f"{len(merged.graders)} grader(s) ({graders} objects graded), {len(objects)} objects, "
             f"{merged.n_grades} grades read",
             f"classes by mean grade ({bounds}): {classes}, none {len(objects) - sum(counts.values())}"]
    several = [obj for obj in objects if len(obj.grades) > 1]
    if several:
        within = sum(obj.spread <= 1 for obj in several)
        same = sum(obj.spread == 0 for obj in several)
        lines.append(f"agreement on the {len(several)} objects graded by 2 or more: all within 1 grade on {within} "
                     f"({within / len(several):.0%}), the same grade on {same} ({same / len(several):.0%})")
    else:
        lines.append("agreement: no object was graded by more than one grader")
    if merged.n_replaced:
        lines.append(f"{merged.n_replaced} grade(s) replaced by a later grade of the same grader")
    return lines


def _iso(time: datetime) -> str:
    return time.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Graded:
    """An object's mean grade, from a merged table or a grader's file, and where it was read."""

    id: str
    mean: float
    where: str


def read_graded(path: str | os.PathLike) -> list[Graded]:
    """Each object's mean grade from ``path``: a merged table (``lexactum grades --out``: its ``mean_grade``)
    or the page's export of one or more graders (merged here: each grader's last grade, then the mean)."""
    path = Path(path)
    header, rows = read_rows(path)
    if "mean_grade" not in {name.lower() for name in header}:
        merged = merge_grades(read_grade_files([path]))
        return [Graded(obj.id, obj.mean, obj.where) for obj in merged.objects]
    id_column, mean_column = column_positions(path, header, ("ID", "mean_grade"), "a merged table has them")
    graded: list[Graded] = []
    seen: dict[str, str] = {}
    for line, cells in rows:
        where = f"{path} line {line}"
        if len(cells) != len(header):
            raise LexactumError(f"{where}: {len(cells)} values, but the header names {len(header)} columns")
        object_id, text = cells[id_column].strip(), cells[mean_column].strip()
        if not object_id:
            raise LexactumError(f"{where}: the ID is empty")
        try:
            mean = float(text)
        except ValueError:
            mean = float("nan")
        if not 0 <= mean <= TOP_GRADE:  # NaN too
            raise LexactumError(f"{where}: mean_grade {text!r} is not a number from 0 to {TOP_GRADE}")
        if object_id in seen:
            raise LexactumError(f"{where}: duplicate row: ID {object_id} already at {seen[object_id]}")
        seen[object_id] = where
        graded.append(Graded(object_id, mean, where))
    if not graded:
        raise LexactumError(f"{path}: holds no grades (only the header)")
    return graded


def training_label(mean: float, min_grade: float = LENS_MIN_GRADE) -> int | None:
    """1 (lens) for a mean grade >= ``min_grade``, 0 (non-lens) below :data:`NON_LENS_BELOW`, None (left out)
    in between."""
    if mean >= min_grade:
        return 1
    return 0 if mean < NON_LENS_BELOW else None
