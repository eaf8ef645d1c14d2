"""``lexactum train``: train a network on a challenge dataset; a run folder and a model file come out."""

from __future__ import annotations

import argparse

from lexactum.grades import LENS_MIN_GRADE  # no numpy: --help stays fast

EPILOG = """examples:
  lexactum train --dataset ~/data/SpaceBasedTest --network lens_flow --epochs 10
        the seed's protocol: 19% train, 1% validation, scored on the other 80%
  lexactum train --dataset ~/data/GroundBasedTraining --test-dataset ~/data/GroundBasedTest \\
      --network cmu_deeplens --epochs 150 --batch-size 64 --split 0.95,0.05 --patience 20
        the challenge's protocol: train on the training set, score the whole test set
  lexactum train --dataset data/demo/space --epochs 3 --device cpu --no-augment --run-dir runs/quick
  lexactum train --resume runs/20260101-120000_space_lens_flow --epochs 20
        continue an interrupted (or finished) run from its last.ckpt, here up to 20 epochs
  lexactum train --dataset ~/data/GroundBasedTraining --devices 4 --accelerator gpu --batch-size 256
        4 GPUs of this machine (Lightning DDP), 64 images each per step; examples/slurm_train.sh: many nodes
  lexactum train --dataset ~/data/SpaceBasedTraining --extra-labels merged.csv --extra-dataset survey.h5
        also learn from graded candidates (lexactum grades): grade >= 2 lens, 0 non-lens, 1 left out

A run folder (runs/<time>_<survey>_<network>/ unless --run-dir) receives config.json, split.json,
metrics.csv (one row per epoch), training_curves.png, last.ckpt and best.ckpt (by validation AUC), and the
test evaluation: scores.csv, metrics.json, roc.png. The model goes to
models/<survey>_<network>_<epochs>epochs.safetensors unless --model-out; it is written right after
training, before the evaluation, which then adds its metrics to it. No model file is ever replaced
without --overwrite: a taken default name becomes <name>-2.safetensors (said at the start), an existing
--model-out is refused before training. With --resume, the run's own settings are used; only --epochs,
--device, --precision, --patience, --model-out, --cache-dir, --bootstrap and --overwrite may change;
--epochs below the epochs already trained is refused, equal to them trains nothing but writes the model
file and the evaluation again (the run's own earlier model file may be replaced).

Many processes (--devices N, --num-nodes M; Lightning DDP, gloo on CPU, NCCL on GPU): --batch-size is the
global batch, split evenly among the N x M processes (it must be a multiple of N x M), so a run sees the
same batches on any number of processes. On one machine the command starts the other processes itself
(running the same command line again) and tells them the run folder it chose. On several nodes, start it
on each with srun (Slurm) or torchrun: there --run-dir DIR is required (e.g. runs/slurm-$SLURM_JOB_ID),
as processes started apart cannot agree on a folder named from the time. Only global rank 0 writes the
run folder, the model file and the evaluation, and prints; the other processes only train, and end with
status 0. A resume may change these options too (the global batch stays the run's).

Extra labels (--extra-labels FILE --extra-dataset PATH): FILE is a merged table of 'lexactum grades' (its
mean_grade) or one export of the report page (the mean of its graders' last grades). Objects with a mean
grade >= --extra-min-grade become lenses, below 0.5 (no SuGOHI class) non-lenses; the others are left out.
Their images are read from PATH (a challenge folder, FITS cutouts, a prepared dataset, an HDF5 or .npy cube),
normalised as the run's, and added to the training part only: validation and test stay the dataset's, so
the metrics compare with a run without extras. Refused before anything is written: graded IDs not in PATH,
PATH of the other survey, no lens or non-lens among the grades, a graded ID in the validation or test part
(leakage). config.json and split.json record them; a resume checks it learns from the same ones.
"""

#: Defaults shown in --help; the options themselves default to "not given" so --resume can tell.
DEFAULTS = {"network": "lens_flow", "epochs": 10, "batch_size": 8, "split": "0.19,0.01,0.80", "seed": 0,
            "device": "auto", "normalisation": "zscale", "extra_min_grade": LENS_MIN_GRADE}


def add_parser(subparsers, formatter_class) -> None:
    from lexactum.distributed import add_distribution_arguments  # no torch either
    from lexactum.models.registry import BUILTIN_MODULES  # names only: no torch

    parser = subparsers.add_parser(
        "train",
        help="train a network: run folder with metrics, checkpoints, evaluation; a model file",
        description="Train one of the registered networks on a challenge dataset with Lightning: the seed's "
                    "random split (or a separate test set), augmentation on the device, checkpoints every "
                    "epoch, early stopping on validation AUC if asked, then scoring of the test part.",
        epilog=EPILOG,
        formatter_class=formatter_class,
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--dataset", metavar="PATH", help="root folder of the labelled training dataset "
                        "(required unless --resume)")
    parser.add_argument("--network", metavar="NAME",
                        help=f"network to train: {', '.join(BUILTIN_MODULES)} or another registered one "
                             f"(default: {DEFAULTS['network']})")
    parser.add_argument("--survey", choices=("space", "ground"),
                        help="survey of the dataset (default: detected from its catalog and files)")
    parser.add_argument("--epochs", type=int, metavar="N", help=f"epochs (default: {DEFAULTS['epochs']})")
    parser.add_argument("--batch-size", type=int, metavar="N",
                        help=f"images per optimiser step, over all processes (the global batch; each of W "
                             f"processes takes N/W) (default: {DEFAULTS['batch_size']}, the seed's)")
    parser.add_argument("--no-augment", dest="augment", action="store_false",
                        help="train without the seed's random flips, rotations, shifts, scalings and shears")
    parser.add_argument("--split", metavar="TRAIN,VAL,TEST",
                        help="fractions of the dataset (default: the seed's 0.19,0.01,0.80; with "
                             "--test-dataset: 0.95,0.05)")
    parser.add_argument("--test-dataset", metavar="PATH",
                        help="score this whole dataset instead of a test part (the challenge's protocol)")
    parser.add_argument("--seed", type=int, help=f"seed of the split, weights, shuffling and augmentation "
                        f"(default: {DEFAULTS['seed']})")
    parser.add_argument("--device", metavar="DEVICE",
                        help="auto (GPU if any), cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--precision", metavar="P",
                        help="32-true, bf16-mixed, 16-mixed... (default: bf16-mixed on GPU, 32-true on CPU)")
    parser.add_argument("--patience", type=int, metavar="N",
                        help="stop after N epochs without a better validation AUC (default: never)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue this run folder from its last.ckpt")
    parser.add_argument("--run-dir", metavar="DIR", help="run folder (default: runs/<time>_<survey>_<network>)")
    parser.add_argument("--model-out", metavar="FILE",
                        help="model file (default: models/<survey>_<network>_<epochs>epochs.safetensors)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing model file (default: never; a taken default name moves to a "
                             "free -2, -3... name, an existing --model-out is refused)")
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="where prepared datasets are cached (default: $LEXACTUM_CACHE_DIR or the user "
                             "cache folder)")
    parser.add_argument("--normalisation", metavar="NAME",
                        help=f"image normalisation (default: {DEFAULTS['normalisation']})")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch CPU threads when training on the CPU (default: the idle cores; a resumed "
                             "run: the count its run used)")
    parser.add_argument("--bootstrap", type=int, metavar="N",
                        help="bootstrap resamples for the test metrics' 95%% intervals (default: 1000; 0: none)")
    parser.add_argument("--extra-labels", metavar="FILE",
                        help="graded objects to learn from as well: a merged table of 'lexactum grades' or one "
                             "export of the report page (needs --extra-dataset)")
    parser.add_argument("--extra-dataset", metavar="PATH",
                        help="where the graded objects' images are: any input 'lexactum predict' reads")
    parser.add_argument("--extra-ids", metavar="FILE",
                        help="IDs of an --extra-dataset .npy cube (as 'lexactum predict --ids'; default: the "
                             "row numbers)")
    parser.add_argument("--extra-min-grade", type=float, metavar="G",
                        help=f"mean grade from which a graded object is a lens (default: "
                             f"{DEFAULTS['extra_min_grade']:g}; below 0.5: non-lens; between: left out)")
    add_distribution_arguments(parser)
    parser.set_defaults(func=run)


def config_from_args(args):
    """The TrainConfig that ``args`` ask for (the saved run's, with the allowed changes, for --resume)."""
    from lexactum.errors import LexactumError
    from lexactum.training import TrainConfig, parse_split

    given = {key: value for key, value in vars(args).items() if key not in ("func", "command", "debug")}
    if "split" in given:
        given["split"] = parse_split(given["split"])
    resume = given.pop("resume", None)
    if resume is not None:
        if "run_dir" in given:
            raise LexactumError("give either --resume RUN_DIR or --run-dir, not both")
        return TrainConfig.from_run(resume, **given)
    if "dataset" not in given:
        raise LexactumError("--dataset PATH is required (or --resume RUN_DIR to continue a run)")
    return TrainConfig(**given)


def run(args) -> int:
    from lexactum.distributed import is_global_zero
    from lexactum.evaluation.evaluate import format_metrics_table
    from lexactum.training import train

    if not is_global_zero():  # global rank 0 says all there is to say; the others only train
        return _train_quietly(config_from_args(args))
    result = train(config_from_args(args))
    print(format_metrics_table(result.metrics))
    print(f"best validation AUC {result.best_val_auc:.4f} over {result.epochs_trained} epochs")
    print(f"run folder: {result.run_dir}")
    print(f"model file: {result.model_path}")
    return 0


def _train_quietly(config) -> int:
    """A process other than global rank 0: it trains, with no warnings (rank 0 gives the same) and no line of
    its own for an interruption (Lightning passes rank 0's SIGTERM on to it; rank 0 says it) or for the failed
    collective that follows a kill -9 of rank 0; its other errors are still said, being its own."""
    import warnings

    from lexactum import processes
    from lexactum.training import train

    warnings.filterwarnings("ignore")
    try:
        train(config)
    except KeyboardInterrupt as exc:
        return processes.interruption_line(exc)[1]
    except Exception:
        if processes.watched_process_ended(within=5.0):  # rank 0 was killed: its echo here, no traceback
            return processes.ORPHAN_EXIT
        raise
    return 0
