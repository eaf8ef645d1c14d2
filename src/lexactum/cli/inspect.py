"""``lexactum inspect``: a report folder to look at, explain and grade the candidates of a scoring."""

from __future__ import annotations

EPILOG = """examples:
  lexactum inspect runs/20261129-150000_space_lens_flow --out report
  lexactum inspect predictions/q1 --out q1_report --top 2000 --random 500
  lexactum inspect evaluations/m.safetensors --out rep --dataset ~/data/moved/SpaceBasedTest --overwrite

PATH is a training run folder (its test evaluation), the --out folder of 'lexactum predict' or of 'lexactum
evaluate'. The dataset is the one its config.json names (or --dataset: a challenge folder, loose cutouts, a
prepared cache, an HDF5 or .npy cube); every scored ID must be in it. REPORT gets index.html (open it from
disk: no server, nothing fetched), data.js, roc.png for labelled scores, thumbs/ and saliency/ (one small PNG
per card). Galleries: the --top best-ranked objects, for labelled scores also the --top highest-scored
non-lenses (false positives) and lowest-scored lenses (missed), and --random objects drawn with --seed.
Thumbnails: space grey ZScale; ground a Lupton asinh colour composite of I, R, G. Saliency: Grad-CAM of the
model that made the scores (a committee's first member) on its last convolution, computed by captum.
REPORT appears whole or not at all; an existing one is replaced only with --overwrite.
"""


def add_parser(subparsers, formatter_class) -> None:
    import argparse

    from lexactum.inspection.report import InspectRequest as Defaults

    parser = subparsers.add_parser(
        "inspect",
        help="a report folder (HTML, opened from disk) to look at, explain and grade the candidates",
        description="Write a self-contained HTML report of scored objects: the metrics and ROC, galleries of "
                    "the top candidates (and, when labelled, false positives and missed lenses) and a random "
                    "sample, each card with its cutout, score, rank, truth and a saliency overlay.",
        epilog=EPILOG,
        formatter_class=formatter_class,
    )
    parser.add_argument("path", metavar="PATH", help="a training run folder, or a predict or evaluate output")
    parser.add_argument("--out", required=True, metavar="REPORT", help="the report folder to write")
    parser.add_argument("--top", type=int, default=Defaults.top, metavar="N",
                        help="cards of the top, false-positive and missed galleries")
    parser.add_argument("--random", type=int, default=Defaults.random, metavar="N",
                        help="cards of the random sample (0: none)")
    parser.add_argument("--seed", type=int, default=Defaults.seed, help="seed of the random sample")
    parser.add_argument("--saliency", action=argparse.BooleanOptionalAction, default=Defaults.saliency,
                        help="draw a Grad-CAM overlay per card (needs the model file; default: on)")
    parser.add_argument("--dataset", metavar="D", default=None,
                        help="the dataset that was scored (default: the one PATH/config.json names)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier report at REPORT")
    parser.set_defaults(func=run)


def run(args) -> int:
    from lexactum.errors import human_size
    from lexactum.inspection.report import InspectRequest, inspect

    summary = inspect(InspectRequest(path=args.path, out=args.out, top=args.top, random=args.random,
                                     seed=args.seed, saliency=args.saliency, dataset=args.dataset,
                                     overwrite=args.overwrite))
    shown = ", ".join(f"{key.replace('_', ' ')} {n}" for key, n in summary["galleries"].items())
    print(f"report in {summary['out']}: {summary['cards']} cards ({shown}), {human_size(summary['bytes'])} on "
          f"disk; open {summary['out'] / 'index.html'} in a browser")
    return 0
