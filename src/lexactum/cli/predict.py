"""``lexactum predict``: score cutouts at survey scale with one network or a committee; ranked scores and the
challenge submission file."""

from __future__ import annotations

EPILOG = """examples:
  lexactum predict --model space_lens_flow_10epochs.safetensors ~/data/SpaceBasedTest
  lexactum predict --model models/lens_flow.safetensors cutouts.h5 --out ranked --tta 8
  lexactum predict --model 'models/space_*.safetensors' --combine rank ~/q1_cutouts --out q1 --parquet
  lexactum predict --model m.safetensors cube.npy --ids cube_ids.txt --devices 4 --accelerator gpu
  srun lexactum predict --model m.safetensors survey.h5 --out s --devices 4 --num-nodes 8   (see examples/)

INPUT is a challenge dataset (either layout; labels are kept when it has a catalog), any folder of FITS
cutouts (challenge-style names, or one file per object holding all its bands), a prepared cache folder, an
HDF5 cube (datasets 'images' (N, C, H, W) or (N, H, W) of raw pixels and 'ids'; other names with
--images-key/--ids-key) or a NumPy .npy cube (IDs from --ids, else the row numbers). Bands are matched by
name where the file names them (an HDF5 'bands' attribute), by order otherwise. Images are read and
normalised batch by batch, each network in its own normalisation, so memory does not grow with the input.

Scores are written in shards (--out/shards/) as they come: a killed run restarted with the same command scores
only what is missing; a restart with other models or options is refused. At the end --out holds
scores.csv (ID,score[,label][,one column per committee member], most lens-like first), submission.txt (the
challenge format, 'ID score' per line), scores.parquet with --parquet, and config.json; objects not scored (a
band file missing, an image without a finite pixel, a non-finite score with --allow-nonfinite) are listed in
left_out.csv (ID,reason,file). --batch-size is per process. With --devices/--num-nodes every process scores its
own shards: each object is scored exactly once.
"""


def add_parser(subparsers, formatter_class) -> None:
    from lexactum.distributed import add_distribution_arguments
    from lexactum.inference.options import DEFAULT_BATCH_SIZE, DEFAULT_SHARD_SIZE, add_committee_arguments

    parser = subparsers.add_parser(
        "predict",
        help="score cutouts (folders, caches, HDF5/.npy cubes) with a network or a committee",
        description="Score every object of a challenge dataset, a folder of FITS cutouts, a cache or a cutout "
                    "cube with one network or a committee (optionally averaged over flips and turns), on one "
                    "or many processes; write a ranked list and the challenge submission file.",
        epilog=EPILOG,
        formatter_class=formatter_class,
    )
    parser.add_argument("input", metavar="INPUT", help="folder of FITS cutouts, challenge dataset, cache folder, "
                                                      ".h5/.hdf5 or .npy cube")
    add_committee_arguments(parser)
    parser.add_argument("--out", metavar="DIR", default=None, help="output folder (default: predictions/<INPUT name>)")
    parser.add_argument("--survey", choices=("space", "ground"), default=None,
                        help="survey of the cutouts (default: the models')")
    parser.add_argument("--ids", dest="ids_file", metavar="FILE", default=None,
                        help="IDs of a cube's rows, one integer per line (.npy; replaces an HDF5 cube's IDs)")
    parser.add_argument("--images-key", default="images", help="HDF5 dataset of the images (default: images)")
    parser.add_argument("--ids-key", default="ids", help="HDF5 dataset of the IDs (default: ids)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="images per batch and process")
    parser.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda or cuda:N")
    parser.add_argument("--precision", default=None, help="Lightning precision (default 32-true; e.g. bf16-mixed "
                                                          "on a GPU)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="processes reading and normalising batches, per process (default: from the cores)")
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, metavar="N",
                        help="objects per shard of the resumable output")
    parser.add_argument("--parquet", action="store_true", help="also write scores.parquet (needs pyarrow)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of another prediction in --out")
    parser.add_argument("--allow-nonfinite", action="store_true",
                        help="when some scores are NaN or infinite, write the others and list those objects in "
                             "left_out.csv (default: an error, nothing written)")
    add_distribution_arguments(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from lexactum.evaluation.evaluate import left_out_summary
    from lexactum.inference.run import PredictRequest, predict

    request = PredictRequest(
        input=args.input, models=args.model, out=args.out, survey=args.survey, tta=args.tta, combine=args.combine,
        batch_size=args.batch_size, device=args.device, accelerator=args.accelerator, devices=args.devices,
        num_nodes=args.num_nodes, strategy=args.strategy, precision=args.precision, workers=args.workers,
        shard_size=args.shard_size, parquet=args.parquet, overwrite=args.overwrite,
        allow_nonfinite=args.allow_nonfinite, ids_file=args.ids_file, images_key=args.images_key,
        ids_key=args.ids_key)
    result = predict(request)
    if result is None:  # another process of a distributed run: rank 0 reports
        return 0
    if result.get("already_done"):
        print(f"{result['out']} already holds this prediction (same input, models and options): nothing to do")
        return 0
    if result["left_out"]:
        print(left_out_summary(result["left_out"], result["left_out_file"]))
    wait = result["data_wait_share"]
    waited = f" (waiting for data {100 * wait:.0f}% of the time)" if wait == wait else ""
    print(f"scored {result['n']} objects{waited}: {result['scores']}, {result['submission']}")
    return 0
