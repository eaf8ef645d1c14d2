"""``lexactum dataset``: inspect a challenge dataset folder and prepare its cache."""

from __future__ import annotations

import argparse

INFO_EPILOG = """examples:
  lexactum dataset info ~/data/SpaceBasedTraining
  lexactum dataset info ~/data/GroundBasedTest --survey ground --json
"""

PREPARE_EPILOG = """examples:
  lexactum dataset prepare ~/data/SpaceBasedTraining
  lexactum dataset prepare ~/data/GroundBasedTest --workers 8 --cache-dir /scratch/lexactum
  lexactum dataset prepare ~/data/GroundBasedTest --no-mask

The cache is reused by 'lexactum train' and 'lexactum evaluate' while the files and options are unchanged.
Default cache folder: $LEXACTUM_CACHE_DIR, else the user cache folder (see 'lexactum dataset info').
"""

#: How many IDs a text report lists before "...".
SHOWN = 5


def add_parser(subparsers, formatter_class) -> None:
    parser = subparsers.add_parser(
        "dataset",
        help="inspect a challenge dataset and prepare its cache",
        description="Inspect a Lens Finding Challenge 1.0 dataset folder (either layout, either survey) and "
                    "prepare its normalised, memory-mapped cache.",
        epilog=INFO_EPILOG + "\n" + PREPARE_EPILOG,
        formatter_class=formatter_class,
    )
    parser.set_defaults(func=lambda args: parser.print_help() or 0)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    info = actions.add_parser(
        "info", help="survey, layout, counts of objects and lenses, problems, cache state",
        description="Describe a dataset folder: survey, layout, objects, lenses, objects left out (missing "
                    "band files, no catalog row), entries skipped (broken links, named pipes...), catalog IDs "
                    "without images, and the state of its cache.",
        epilog=INFO_EPILOG, formatter_class=formatter_class,
    )
    _common(info)
    info.add_argument("--json", action="store_true", help="print the report as JSON")
    info.set_defaults(func=run_info)

    prepare = actions.add_parser(
        "prepare", help="read and normalise every image once into a memory-mapped cache",
        description="Read and normalise every object of a dataset in parallel into a memory-mapped cache "
                    "(reused while the files and options are unchanged).",
        epilog=PREPARE_EPILOG, formatter_class=formatter_class,
    )
    _common(prepare)
    prepare.add_argument("--workers", type=int, default=None, help="processes; all cores when not given")
    prepare.set_defaults(func=run_prepare)


def _common(parser) -> None:
    parser.add_argument("path", metavar="PATH", help="the dataset's root folder")
    parser.add_argument("--survey", choices=("space", "ground"), default=None,
                        help="the survey; detected from the catalog and file names when not given")
    parser.add_argument("--normalisation", default="zscale", help="normalisation method of the cache")
    parser.add_argument("--mask", action=argparse.BooleanOptionalAction, default=True,
                        help="set masked pixels (ground: exactly 100.0) to 0 before normalising")
    parser.add_argument("--cache-dir", default=None,
                        help="folder of prepared datasets; else $LEXACTUM_CACHE_DIR, else the user cache")


def describe(dataset, normalisation: str = "zscale", mask: bool = True, cache_dir=None) -> dict:
    """The facts ``info`` prints, as plain JSON-able values."""
    from lexactum.data.cache import cache_status

    labels = dataset.labels
    return {
        "path": str(dataset.path),
        "survey": dataset.survey.name,
        "bands": list(dataset.survey.bands),
        "layout": dataset.layout,
        "catalog": str(dataset.catalog_path) if dataset.catalog_path else None,
        "objects": len(dataset),
        "lenses": int((labels == 1).sum()),
        "non_lenses": int((labels == 0).sum()),
        "incomplete": _missing_by_object(dataset.incomplete),
        "unlabelled": [int(i) for i in dataset.unlabelled],
        "skipped": [{"path": path, "reason": reason} for path, reason in dataset.skipped],
        "missing_images": {"count": len(dataset.missing_images),
                           "examples": [int(i) for i in dataset.missing_images[:SHOWN]]},
        "cache": cache_status(dataset, normalisation, mask, cache_dir),
    }


def _missing_by_object(incomplete) -> list[dict]:
    """``[(id, missing file), ...]`` (one entry per file) as one entry per object: ``{id, missing: [...]}``."""
    grouped: dict[int, list[str]] = {}
    for object_id, path in incomplete:
        grouped.setdefault(int(object_id), []).append(str(path))
    return [{"id": object_id, "missing": paths} for object_id, paths in sorted(grouped.items())]


def run_info(args) -> int:
    import json

    from lexactum.data.layouts import ChallengeDataset
    from lexactum.data.normalise import get_normalisation

    get_normalisation(args.normalisation)  # an unknown name is an error, not a 'missing' cache
    dataset = ChallengeDataset(args.path, survey=args.survey)
    report = describe(dataset, args.normalisation, args.mask, args.cache_dir)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    incomplete = report["incomplete"]
    unlabelled = report["unlabelled"]
    missing = report["missing_images"]
    cache = report["cache"]
    skipped = report["skipped"]
    lines = [
        f"dataset      {report['path']}",
        f"survey       {report['survey']} ({len(report['bands'])} band{'s' * (len(report['bands']) > 1)}: "
        f"{', '.join(report['bands'])})",
        f"layout       {report['layout']}" + (f" ({report['catalog']})" if report["catalog"] else ""),
        f"objects      {report['objects']}: {report['lenses']} lenses, {report['non_lenses']} non-lenses",
        f"incomplete   {len(incomplete)} left out for a missing band file"
        + "".join(f"\n               {e['id']}: missing {', '.join(e['missing'])}" for e in incomplete[:SHOWN])
        + ("\n               ..." if len(incomplete) > SHOWN else ""),
        f"skipped      {len(skipped)} entries that cannot be read as files (broken links, named pipes...)"
        + "".join(f"\n               {e['path']}: {e['reason']}" for e in skipped[:SHOWN])
        + ("\n               ..." if len(skipped) > SHOWN else ""),
        f"unlabelled   {len(unlabelled)} left out for having no catalog row" + _examples(unlabelled),
        f"no image     {missing['count']} catalog IDs without any image file" + _examples(missing["examples"],
                                                                                       missing["count"]),
        f"cache        {cache['state']}: {cache['path']}"
        + (f" ({cache['size'] / 1e6:.1f} MB)" if cache["size"] else ""),
    ]
    print("\n".join(lines))
    return 0


def run_prepare(args) -> int:
    from lexactum.data.cache import prepare
    from lexactum.data.layouts import ChallengeDataset

    dataset = ChallengeDataset(args.path, survey=args.survey)
    prepared = prepare(dataset, normalisation=args.normalisation, mask=args.mask, cache_dir=args.cache_dir,
                       workers=args.workers)
    size_mb = prepared.images_path.stat().st_size / 1e6
    if prepared.reused:
        print(f"cache already valid: {prepared.path} ({len(prepared)} objects, {size_mb:.1f} MB)")
    else:
        print(f"prepared {len(prepared)} objects in {prepared.seconds:.1f} s "
              f"({prepared.images_per_second:.0f} images/s) into {prepared.path} ({size_mb:.1f} MB)")
    if prepared.blank_note():
        print(f"warning: {prepared.blank_note()}")
    return 0


def _examples(ids, count: int | None = None) -> str:
    count = len(ids) if count is None else count
    if not count:
        return ""
    shown = ", ".join(str(i) for i in list(ids)[:SHOWN])
    return f": {shown}" + (", ..." if count > SHOWN else "")
