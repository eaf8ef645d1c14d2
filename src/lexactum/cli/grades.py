"""``lexactum grades``: merge the grade files of several graders into one table, and say how they agree."""

from __future__ import annotations

from lexactum.grades import CLASS_THRESHOLDS, GRADE_COLUMNS, GRADER_PREFIX, LENS_MIN_GRADE, MERGED_COLUMNS

_BOUNDS = ", ".join(f"{name} >= {bound:g}" for name, bound in CLASS_THRESHOLDS)

EPILOG = f"""examples:
  lexactum grades alice.csv bob.csv carol.csv --out merged.csv
  lexactum grades grades/*.csv --out merged.csv --dataset ~/data/SpaceBasedTest --overwrite
        every graded ID must be an object of that dataset (any input 'lexactum predict' reads)

Each file is the report page's export ({','.join(GRADE_COLUMNS)}; grade 0-3: 3 certain lens, 2 probable,
1 possible, 0 not a lens; timestamp ISO 8601, UTC when it has no offset). A grader who graded an object
more than once: their latest grade counts. The merged table ({','.join(MERGED_COLUMNS)},
then {GRADER_PREFIX}<grader> for each grader, empty where that grader did not grade the object) lists the
objects by mean grade, highest first. spread is the highest minus the lowest grade given to the object.
class comes from the mean grade as in SuGOHI (Sonnenfeld et al. 2018): {_BOUNDS}, else empty.
'lexactum train --extra-labels merged.csv' learns from it (mean grade >= {LENS_MIN_GRADE:g}: lens, below
{CLASS_THRESHOLDS[-1][1]:g}: non-lens).

Refused, in one line naming the file and line, before anything is written: a missing column, an empty
file, a grade that is not 0, 1, 2 or 3, an empty ID or grader name, a timestamp that is not ISO 8601, the
same grade (ID, grader, timestamp) given twice (a file or an export given twice), an ID not in --dataset.
"""


def add_parser(subparsers, formatter_class) -> None:
    parser = subparsers.add_parser(
        "grades",
        help="merge graders' grade files (from the report page) into one table with classes and agreement",
        description="Merge the grades that several graders gave in the report page (lexactum inspect) into one "
                    "table: mean grade, number of graders, spread, class and each grader's grade per object; "
                    "print who graded what, the classes and how well the graders agree.",
        epilog=EPILOG,
        formatter_class=formatter_class,
    )
    parser.add_argument("files", nargs="+", metavar="GRADES.csv", help="grade files exported by the page")
    parser.add_argument("--out", required=True, metavar="FILE", help="the merged table (CSV)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--dataset", metavar="PATH",
                        help="check that every graded ID is an object of this dataset (a challenge folder, "
                             "cutouts, a prepared dataset, an HDF5 or .npy cube)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from lexactum import grades, runs
    from lexactum.errors import LexactumError

    out = Path(args.out)
    if out.is_dir():
        raise LexactumError(f"--out {out}: is a folder; give a file name")
    given = {Path(f).resolve() for f in args.files}
    if out.resolve() in given:
        raise LexactumError(f"--out {out}: is one of the grade files read; choose another name")
    if (out.exists() or out.is_symlink()) and not args.overwrite:
        raise LexactumError(f"--out {out}: exists; give --overwrite to replace it, or choose another name")
    runs.check_output_folder(out.parent, "--out")
    merged = grades.merge_grades(grades.read_grade_files(args.files))
    if args.dataset is not None:
        from lexactum.data.sources import open_source

        source = open_source(args.dataset)
        grades.check_ids_in(merged.objects, source.ids, f"--dataset {args.dataset}")
    columns, rows = grades.merged_rows(merged)
    runs.write_csv(out, rows, fieldnames=columns)
    for line in grades.summary_lines(merged):
        print(line)
    print(f"merged table: {out}")
    return 0
