"""``lexactum augment-preview``: see what training augmentation does to a few objects of a dataset."""

from __future__ import annotations

EPILOG = """examples:
  lexactum augment-preview ~/data/SpaceBasedTraining --out augment.png
  lexactum augment-preview ~/data/GroundBasedTraining --out previews/ground.png --n 16 --seed 3
  lexactum augment-preview ~/data/mixed --survey ground --out grid.png

Takes the first --n objects of the dataset, normalises them with ZScale, and draws each original above
its augmented version (a random subset, in random order, of: horizontal flip, vertical flip, rotation by
90/180/270 degrees, translation by up to 10 %, scaling by 0.75-1.1, shear in x and in y by up to 20
degrees). Ground images are shown as an RGB composite of bands I, R, G. The same --seed gives the same
picture.
"""

#: Objects per row pair at most, so the picture stays readable.
MAX_COLUMNS = 8


def add_parser(subparsers, formatter_class) -> None:
    parser = subparsers.add_parser(
        "augment-preview",
        help="picture of a few objects before and after training augmentation",
        description="Draw the first objects of a dataset (top rows) and the same objects after random "
                    "training augmentation (rows below), to check what the network will see.",
        epilog=EPILOG,
        formatter_class=formatter_class,
    )
    parser.add_argument("path", metavar="PATH", help="dataset folder (either challenge layout)")
    parser.add_argument("--out", default="augment-preview.png", metavar="PNG", help="picture to write")
    parser.add_argument("--n", type=int, default=8, help="number of objects to show")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the augmentation")
    parser.add_argument("--survey", choices=("space", "ground"), default=None,
                        help="survey of the images; found from the files when not given")
    parser.set_defaults(func=run)


def preview_layout(n: int) -> tuple[int, int]:
    """(columns, sets): ``n`` objects in sets of at most MAX_COLUMNS, each set an original + augmented row."""
    sets = -(-n // MAX_COLUMNS)
    return -(-n // sets), sets


def run(args) -> int:
    import numpy as np
    import torch

    from lexactum.data import ChallengeDataset
    from lexactum.data.augment import Augmenter
    from lexactum.data.normalise import normalise
    from lexactum.errors import LexactumError
    from lexactum.evaluation.plots import image_grid

    if args.n < 1:
        raise LexactumError(f"--n {args.n}: need at least one object to show")
    _check_out(args.out)
    dataset = ChallengeDataset(args.path, args.survey)
    n = min(args.n, len(dataset))
    if n == 0:
        raise LexactumError(f"{args.path}: dataset holds no complete objects to show")
    raw = np.stack([dataset.read(i) for i in range(n)])
    originals = normalise(raw, "zscale", mask_value=dataset.survey.mask_value)
    try:
        generator = torch.Generator().manual_seed(args.seed)
    except (ValueError, RuntimeError, OverflowError):  # torch's own bounds of a seed
        raise LexactumError(f"--seed {args.seed}: out of range for torch's random generator") from None
    augmented = Augmenter()(torch.from_numpy(originals), generator=generator).numpy()

    columns, sets = preview_layout(n)
    blank = np.ones_like(originals[:1])  # white, like the background of the grid
    cells, titles = [], []
    for start in range(0, columns * sets, columns):
        stop = min(start + columns, n)
        padding = [blank] * (columns - (stop - start))
        ids = [str(object_id) for object_id in dataset.ids[start:stop]]
        cells += [originals[start:stop], *padding, augmented[start:stop], *padding]
        titles += ids + [""] * len(padding) + [f"{i} augmented" for i in ids] + [""] * len(padding)
    out = image_grid(np.concatenate(cells), args.out, titles=titles, ncols=columns)
    print(f"wrote {out} ({n} objects, seed {args.seed})")
    return 0


def _check_out(out: str) -> None:
    """Fail before any work when the picture cannot be written where ``--out`` says."""
    from pathlib import Path

    from lexactum.errors import LexactumError

    path = Path(out).expanduser()
    if path.is_dir():
        raise LexactumError(f"--out {out}: is a folder; give the name of the PNG file to write")
    blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise LexactumError(f"--out {out}: {blocking} is a file, not a folder")
