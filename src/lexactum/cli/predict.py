"""``lexactum predict``: score any folder of cutouts with a trained model and write the submission file."""

from __future__ import annotations

EPILOG = """examples:
  lexactum predict --model space_lens_flow_10epochs.safetensors ~/data/SpaceBasedTest --out predictions
  lexactum predict --model models/ground_cmu_deeplens_150epochs.safetensors ~/cutouts --out ranked \\
      --survey ground --batch-size 512 --device cuda

INPUT is a challenge dataset (either layout; labels are kept when it has a catalog) or any folder of FITS
cutouts: files named like the challenge's (imageEUC_VIS-<ID>.fits, imageSDSS_R-<ID>.fits ...) anywhere
under it, or one file per object holding all its bands (bands, 101, 101). Images are read and normalised
batch by batch, so memory stays small whatever the number of objects.

Writes to --out: scores.csv (ID,score[,label], most lens-like first), submission.txt (the challenge
format: 'ID score' per line, no header, every scored object) and config.json, all together or none of them (other
files in --out are left alone). Objects that are not scored (a band file missing, a catalog row without
images, a non-finite score with --allow-nonfinite) are listed in left_out.csv (ID,reason,file).
A NaN or infinite score (broken weights) is an error, and nothing is written.
"""


def add_parser(subparsers, formatter_class) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="score a folder of cutouts: ranked scores and a challenge submission file",
        description="Score every object of a challenge dataset or of any folder of FITS cutouts with a "
                    "trained model; write a ranked list and the challenge submission file.",
        epilog=EPILOG,
        formatter_class=formatter_class,
    )
    parser.add_argument("input", metavar="INPUT", help="folder of FITS cutouts or a challenge dataset")
    parser.add_argument("--model", required=True, metavar="FILE",
                        help="model file (.safetensors or the seed's .h5), or its name in models/")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--survey", choices=("space", "ground"), default=None,
                        help="survey of the cutouts (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per batch")
    parser.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda or cuda:N")
    parser.add_argument("--allow-nonfinite", action="store_true",
                        help="when some scores are NaN or infinite, write the others and list those objects in "
                             "left_out.csv (default: an error, nothing written)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from lexactum.checks import positive_whole
    from lexactum.data.cutouts import open_cutouts
    from lexactum.devices import resolve_device
    from lexactum.errors import ModelFileError
    from lexactum.evaluation.evaluate import left_out_summary, model_normalisation, predict_folder
    from lexactum.models.files import load_model, resolve_model_path
    from lexactum.runs import all_or_nothing, check_output_folder, write_config

    positive_whole(args.batch_size, "--batch-size")  # before any work: no output folder for a run that cannot start
    model_path = resolve_model_path(args.model)
    model = load_model(model_path, survey=args.survey)
    source = open_cutouts(args.input, survey=args.survey or model.metadata.get("survey"))
    channels = model.metadata.get("in_channels")
    if channels is not None and int(channels) != source.survey.n_bands:
        raise ModelFileError(f"{model_path} takes {channels} band(s), but the cutouts in {args.input} have "
                             f"{source.survey.n_bands} ({source.survey.name})")
    out_dir = Path(args.out)
    check_output_folder(out_dir)
    device = resolve_device(args.device)
    with all_or_nothing():  # the outputs and the record describing them appear together or not at all
        result = predict_folder(model, source, out_dir, device=device, batch_size=args.batch_size,
                                show_progress=None, model_name=str(model_path),
                                allow_nonfinite=args.allow_nonfinite)
        write_config(out_dir, {
            "command": "predict", "model": str(model_path.resolve()), "input": str(Path(args.input).resolve()),
            "survey": source.survey.name, "input_kind": type(source).__name__, "n_objects": len(source),
            "n_scored": result["n"], "left_out": len(result["left_out"]), "batch_size": args.batch_size,
            "device": str(device), "allow_nonfinite": args.allow_nonfinite,
            "normalisation": model_normalisation(model), "out": str(out_dir.resolve()),
        })
    if result["left_out"]:
        print(left_out_summary(result["left_out"], result["left_out_file"]))
    print(f"scored {result['n']} objects ({1000 * result['end_to_end_s_per_image']:.2f} ms per image end to "
          f"end): {result['scores']}, {result['submission']}")
    return 0
