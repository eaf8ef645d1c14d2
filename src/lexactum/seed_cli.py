"""The seed's command line, flag for flag: ``python Space.py ...`` (1 band) and ``python Ground.py ...`` (4 bands).

Same flags, defaults and choices as the seed program (``--dataset``, ``--train_or_load``, ``--model_name``,
``--no_of_epochs``, ``--batch_size``, ``--augment_images``), same flow (split 19/1/80, train or load,
score the test part, print the results, plot the ROC, save the model as
``models/<survey>_<name>_<N>epochs.safetensors``), on top of the library: training is
:func:`lexactum.training.train`, scoring :func:`lexactum.evaluation.evaluate.evaluate_model`.
Unlike the seed, the default dataset is a built-in simulated set (simulated on first use), not a Windows
drive, and errors are one line with a non-zero exit status.
"""

from __future__ import annotations

import argparse
import os

from lexactum.builtin_data import DEMO_DATA  # plain data: --help stays fast
from lexactum.models.registry import BUILTIN_MODULES as SEED_NETWORKS  # names only: --help stays fast

ENTRY_POINTS = {"space": "Space.py", "ground": "Ground.py"}


class _OneLineParser(argparse.ArgumentParser):
    """Reports a bad command line on one line (the seed's users saw a traceback), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _true_or_false(text: str) -> bool:
    """The seed's --augment_images value: the strings True or False (any case)."""
    lowered = str(text).strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def build_parser(survey: str) -> argparse.ArgumentParser:
    bands = "1 band: VIS" if survey == "space" else "4 bands: R, I, G, U"
    parser = _OneLineParser(
        prog=ENTRY_POINTS[survey],
        description=f"Train or load a CNN lens finder on {survey}-based Lens Finding Challenge images "
                    f"({bands}), score the test part of a 19/1/80 split and report AUC, TPR0, TPR10, "
                    "TPR/FPR at 0.5 and the time per image, with a ROC plot.",
        epilog=f"examples:\n"
               f"  python {ENTRY_POINTS[survey]}                                # lens_flow, 10 epochs, "
               f"built-in simulated data\n"
               f"  python {ENTRY_POINTS[survey]} --dataset ~/data/{survey.capitalize()}BasedTest "
               f"--model_name cmu_deeplens --no_of_epochs 50\n"
               f"  python {ENTRY_POINTS[survey]} --train_or_load load "
               f"--model_name {survey}_lens_flow_10epochs.safetensors\n"
               f"  python {ENTRY_POINTS[survey]} --dataset ~/data/{survey.capitalize()}BasedTest --train_or_load load "
               f"--model_name {survey}_cmu_deeplens_500epochs.h5\n"
               f"        (the seed's Keras .h5 files load too, without TensorFlow)\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", metavar="PATH", default=None,
                        help=f"root folder of the challenge dataset (default: the built-in simulated set "
                             f"{DEMO_DATA.format(survey=survey)}, simulated on first use)")
    parser.add_argument("--train_or_load", choices=("train", "load"), default="train",
                        help="train a new model, or load a saved one (default: train)")
    parser.add_argument("--model_name", metavar="NAME", default="lens_flow",
                        help=f"with train: one of {', '.join(SEED_NETWORKS)} (default: lens_flow); with load: "
                             "a model file name in models/ with its extension (.safetensors or the seed's .h5), "
                             "or a path")
    parser.add_argument("--no_of_epochs", type=int, metavar="N", default=10,
                        help="training epochs (default: 10)")
    parser.add_argument("--batch_size", type=int, metavar="N", default=8, help="images per batch (default: 8)")
    parser.add_argument("--augment_images", type=_true_or_false, choices=(True, False), default=True,
                        help="augment training images: True or False (default: True)")
    return parser


def main(survey: str, argv: list[str] | None = None) -> int:
    """Run the seed's program for ``survey`` ('space' or 'ground'); returns the exit status."""
    from lexactum.errors import run_reporting_errors

    parser = build_parser(survey)
    args = parser.parse_args(argv)
    return run_reporting_errors(parser.prog, lambda: run(survey, args))


def run(survey: str, args) -> int:
    from lexactum.checks import positive_whole
    from lexactum.evaluation.evaluate import format_metrics_table

    # Checked for load too (the seed's flags apply to both): a bad value never passes silently.
    positive_whole(args.no_of_epochs, "--no_of_epochs: epochs")
    positive_whole(args.batch_size, "--batch_size: batch_size")
    dataset = args.dataset or _demo_dataset(survey)
    if args.train_or_load == "train":
        metrics, out_dir, model_path = _train(survey, dataset, args)
    else:
        metrics, out_dir, model_path = _load_and_score(survey, dataset, args)
    print(format_metrics_table(metrics))
    roc = out_dir / "roc.png"
    print(f"ROC curve: {roc}")
    print(f"results: {out_dir}")
    if args.train_or_load == "train":
        print(f"model saved as {model_path}")
    _show(roc)
    return 0


def _demo_dataset(survey: str):
    """The built-in simulated set of ``survey``, simulated (with a message) the first time."""
    from pathlib import Path

    from lexactum.builtin_data import DEMO_IMAGES, ensure_simulated

    path = Path(DEMO_DATA.format(survey=survey))
    ensure_simulated(path, survey, DEMO_IMAGES, seed=0)
    return path


def _train(survey: str, dataset, args):
    """Train and save under the seed's own name, ``models/<survey>_<network>_<N>epochs.safetensors`` (its load
    mode and its users expect it): a different model already there is not lost but kept under a dated
    backup name beside it (said on one line), where a new name would break the seed's train-then-load flow."""
    from lexactum.data.loader import SEED_SPLIT
    from lexactum.errors import LexactumError
    from lexactum.models.files import default_model_path
    from lexactum.training import TrainConfig, train

    if args.model_name not in SEED_NETWORKS:
        raise LexactumError(f"--model_name {args.model_name!r}: with train, choose one of "
                            f"{', '.join(SEED_NETWORKS)}")
    model_out = default_model_path(survey, args.model_name, args.no_of_epochs)
    result = train(TrainConfig(
        dataset=dataset, network=args.model_name, survey=survey, epochs=args.no_of_epochs,
        batch_size=args.batch_size, augment=args.augment_images, split=SEED_SPLIT, seed=0, model_out=model_out,
        backup_existing=True))
    return result.metrics, result.run_dir, result.model_path


def _load_and_score(survey: str, dataset, args):
    """Score the test part of the split the model was trained with (the seed's 19/1/80, seed 0, by default)."""
    from pathlib import Path

    from lexactum import runs
    from lexactum.data import ChallengeDataset
    from lexactum.data.cache import prepare
    from lexactum.data.loader import SEED_SPLIT, split_indices
    from lexactum.errors import DataError
    from lexactum.evaluation.evaluate import evaluate_model
    from lexactum.models import load_model
    from lexactum.models.files import resolve_model_path

    model_path = resolve_model_path(args.model_name)
    model = load_model(model_path, survey=survey)
    split = model.metadata.get("split") or {}
    fractions = tuple(split.get("fractions") or SEED_SPLIT)
    normalisation = model.metadata.get("normalisation") or "zscale"
    prepared = prepare(ChallengeDataset(dataset, survey=survey), normalisation=normalisation)
    if model.metadata.get("test_dataset") or len(fractions) < 3 or fractions[2] <= 0:
        test_indices = None  # trained on another set (the challenge's protocol): score all of this one
    else:
        # Only the test part is scored: a set too small for a validation part is fine here.
        test_indices = split_indices(len(prepared), fractions, int(split.get("seed", 0)), allow_empty=True)[2]
        if len(test_indices) == 0:
            raise DataError(f"{dataset}: {len(prepared)} objects leave the test part of the split "
                            f"{tuple(fractions)} empty: nothing to score")
    out_dir = runs.new_run_dir(survey, f"{model_path.stem.removeprefix(survey + '_')}_load")
    runs.write_config(out_dir, {
        "command": f"{ENTRY_POINTS[survey]} --train_or_load load", "model": str(model_path.resolve()),
        "network": model.metadata.get("network"), "survey": survey, "dataset": str(Path(dataset).resolve()),
        "split": list(fractions), "split_seed": int(split.get("seed", 0)),
        "n_test": len(prepared) if test_indices is None else len(test_indices),
        "batch_size": max(args.batch_size, 64), "normalisation": normalisation,
    })
    test_ids = prepared.ids if test_indices is None else [prepared.ids[k] for k in test_indices]
    runs.write_split(out_dir, {"test": test_ids}, fractions=list(fractions), seed=int(split.get("seed", 0)),
                     dataset=str(Path(dataset).resolve()))
    metrics = evaluate_model(model, prepared, test_indices, out_dir, batch_size=max(args.batch_size, 64),
                             verbose=False, title=f"{survey} {model_path.name}", model_name=str(model_path))
    return metrics, out_dir, None


def _show(png) -> None:
    """Show the ROC plot in a window, as the seed did, only when a display exists."""
    if not os.environ.get("DISPLAY"):
        return
    try:
        import matplotlib.pyplot as plt

        plt.switch_backend("TkAgg")
        plt.imshow(plt.imread(png))
        plt.axis("off")
        plt.show()
    except Exception:  # noqa: BLE001 - no usable GUI backend: the PNG file is the result anyway
        pass
