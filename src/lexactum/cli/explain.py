"""``lexactum explain``: saliency pictures (Grad-CAM and occlusion) of chosen objects."""

from __future__ import annotations

EPILOG = """examples:
  lexactum explain --model space_lens_flow_10epochs.safetensors --dataset ~/data/SpaceBasedTest \\
      --id 100012 --id 100250 --out explained
  lexactum explain --model m.safetensors --dataset cutouts.h5 --id 42 --out why_42

Writes --out/<ID>.png per --id: the cutout (space grey ZScale, ground an I-R-G colour composite), its Grad-CAM
overlay (captum LayerGradCam on the network's last convolution, upsampled to the cutout) and its occlusion map
(captum Occlusion: how much the network's logit drops when an 11x11 patch is blanked; red: the patch argued
for a lens). The dataset is anything 'lexactum predict' reads; every ID must be in it.
"""


def add_parser(subparsers, formatter_class) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="saliency pictures (Grad-CAM, occlusion) of chosen objects",
        description="For each chosen object, draw the cutout, its Grad-CAM overlay and its occlusion map side "
                    "by side: what the network looked at when it scored it.",
        epilog=EPILOG,
        formatter_class=formatter_class,
    )
    parser.add_argument("--model", required=True, metavar="M",
                        help="model file (.safetensors or the seed's .h5), or its name in models/")
    parser.add_argument("--dataset", required=True, metavar="D",
                        help="the objects' dataset (challenge folder, cutouts, cache, HDF5 or .npy cube)")
    parser.add_argument("--id", dest="ids", action="append", required=True, metavar="ID",
                        help="an object to explain (repeat for several)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG files")
    parser.add_argument("--overwrite", action="store_true", help="replace pictures of the same IDs in --out")
    parser.set_defaults(func=run)


def run(args) -> int:
    from lexactum.inspection.explain import explain

    paths = explain(args.model, args.dataset, args.ids, args.out, overwrite=args.overwrite)
    print(f"wrote {len(paths)} picture(s) to {args.out}: {', '.join(p.name for p in paths[:5])}"
          + (" ..." if len(paths) > 5 else ""))
    return 0
