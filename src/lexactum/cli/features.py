"""``lexactum features``: what every convolutional layer of a model makes of one image."""

from __future__ import annotations

EPILOG = """examples:
  lexactum features --model space_lens_flow_10epochs.safetensors \\
      --image ~/data/SpaceBasedTest/Data_EuclidBig.0/Public/Band1/imageEUC_VIS-100002.fits --out maps
  lexactum features --model ground_cmu_deeplens_150epochs.safetensors \\
      --image ~/data/GroundBasedTest/Data_KiDS_Big.0/Public/Band1/imageSDSS_R-100002.fits --out maps
  lexactum features --model ground_lens_flow_10epochs.safetensors --image 100002 \\
      --dataset ~/data/GroundBasedTest --out maps

--image is a FITS file or, with --dataset, an object ID. For ground models give any one band file with the
challenge name (e.g. imageSDSS_R-<ID>.fits): the other bands are found by name beside it or in the sibling
Band1..Band4 folders. A file holding all bands (bands, 101, 101) works too.

Writes to --out one PNG per convolutional layer (the input image first, then that layer's channels, titled
with the layer's name in the network) and config.json.
"""


def add_parser(subparsers, formatter_class) -> None:
    parser = subparsers.add_parser(
        "features",
        help="feature maps: every convolutional layer's output for one image",
        description="Run one image through a trained model and draw the output of every convolutional "
                    "layer, one PNG per layer, the input image first.",
        epilog=EPILOG,
        formatter_class=formatter_class,
    )
    parser.add_argument("--model", required=True, metavar="FILE",
                        help="model file (.safetensors or the seed's .h5), or its name in models/")
    parser.add_argument("--image", required=True, metavar="FITS_OR_ID",
                        help="a FITS file, or an object ID of --dataset")
    parser.add_argument("--dataset", metavar="PATH", default=None, help="dataset to take an --image ID from")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder for the PNG files")
    parser.add_argument("--max-channels", type=int, default=64, help="channels drawn per layer at most")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from lexactum.data.cutouts import read_single_object
    from lexactum.data.normalise import normalise
    from lexactum.errors import LexactumError
    from lexactum.evaluation.evaluate import conv_activations, model_normalisation
    from lexactum.evaluation.plots import plot_feature_maps
    from lexactum.models.files import load_model, resolve_model_path
    from lexactum.runs import all_or_nothing, check_output_folder, write_config

    if args.max_channels < 1:
        raise LexactumError(f"--max-channels {args.max_channels}: draw at least 1 channel per layer")
    model_path = resolve_model_path(args.model)
    model = load_model(model_path)
    raw, survey, where = read_single_object(args.image, int(model.metadata.get("in_channels") or 1),
                                            dataset=args.dataset, survey=model.metadata.get("survey"))
    image = normalise(raw[None], method=model_normalisation(model), mask_value=survey.mask_value)[0]
    out_dir = Path(args.out)
    check_output_folder(out_dir)
    activations = conv_activations(model, image, device=args.device)
    # Pictures of an earlier run here (another model may have had more layers) would read as this one's.
    earlier = _earlier_pictures(out_dir)
    with all_or_nothing():  # the pictures and the record describing them appear together or not at all
        paths = plot_feature_maps(activations, image, out_dir, max_channels=args.max_channels)
        write_config(out_dir, {
            "command": "features", "model": str(model_path.resolve()), "image": args.image,
            "dataset": str(Path(args.dataset).resolve()) if args.dataset else None,
            "files": [str(p) for p in where], "survey": survey.name,
            "normalisation": model_normalisation(model), "max_channels": args.max_channels,
            "device": args.device, "out": str(out_dir.resolve()), "pictures": [p.name for p in paths],
        })
    for name in sorted(earlier - {p.name for p in paths}):
        (out_dir / name).unlink(missing_ok=True)
    print(f"{len(paths)} feature map(s) of {model_path.name} in {out_dir}:")
    for path in paths:
        print(f"  {path.name}")
    return 0


def _earlier_pictures(out_dir) -> set[str]:
    """Names of the pictures an earlier ``lexactum features`` run drew in ``out_dir`` (its config.json lists
    them): the only files this command removes. A folder without such a record keeps every file."""
    import re

    from lexactum.errors import LexactumError
    from lexactum.runs import CONFIG, read_json

    if not (out_dir / CONFIG).is_file():
        return set()
    try:
        record = read_json(out_dir / CONFIG)
    except LexactumError:
        return set()
    if record.get("command") != "features":
        return set()
    ours = re.compile(r"[0-9]{2}_[^/\\]*\.png")
    if "pictures" not in record:  # written before the list was kept: the pictures by their names
        return {p.name for p in out_dir.glob("[0-9][0-9]_*.png")}
    return {name for name in record["pictures"] if isinstance(name, str) and ours.fullmatch(name)}
