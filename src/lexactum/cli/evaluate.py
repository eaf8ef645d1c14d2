"""``lexactum evaluate``: score a labelled challenge dataset with a trained model and report the metrics."""

from __future__ import annotations

EPILOG = """examples:
  lexactum evaluate --model space_lens_flow_10epochs.safetensors --dataset ~/data/SpaceBasedTest
  lexactum evaluate --model models/ground_cmu_deeplens_150epochs.safetensors \\
      --dataset ~/data/GroundBasedTest --ids-file runs/20260101-120000_ground_cmu_deeplens/split.json
  lexactum evaluate --model seed_model.h5 --dataset ~/data/SpaceBasedTest --device cuda --bootstrap 0
  lexactum evaluate --model a.safetensors --model b.safetensors --tta 8 --dataset ~/data/SpaceBasedTest

Writes to --out: scores.csv (ID,label,score), metrics.json (AUC, TPR0, TPR10, TPR/FPR at 0.5, 95%
bootstrap intervals, seconds per image for the model alone and end to end, device), roc.png and
config.json, all together or none of them. Objects of the dataset that are not scored (a band file missing,
a catalog row without images, images without a catalog row) are listed in left_out.csv (ID,reason,file).
A NaN or infinite score (broken weights) is an error unless --allow-nonfinite.
With several --model (or a glob) or --tta, scores.csv has the committee's score and one column per member,
metrics.json the committee's metrics and each member's under "members", and roc.png every curve.
A bare model name is looked up in models/. The dataset's cache ('lexactum dataset prepare') is used when
it is up to date; otherwise images are read and normalised batch by batch from the files.
"""


def add_parser(subparsers, formatter_class) -> None:
    from lexactum.inference.options import add_committee_arguments

    parser = subparsers.add_parser(
        "evaluate",
        help="score a labelled dataset: AUC, TPR0, TPR10, timings, ROC plot",
        description="Score every object (or those of --ids-file) of a labelled challenge dataset with a "
                    "trained model and compute the challenge metrics exactly, with bootstrap intervals, the "
                    "time per image and a ROC plot.",
        epilog=EPILOG,
        formatter_class=formatter_class,
    )
    add_committee_arguments(parser, what="evaluate a committee (each member's metrics and the committee's, "
                                         "in one table and one ROC picture)")
    parser.add_argument("--dataset", required=True, metavar="PATH", help="the labelled dataset's root folder")
    parser.add_argument("--survey", choices=("space", "ground"), default=None,
                        help="survey of the dataset (detected from its catalog and files when not given)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output folder; evaluations/<model file name> when not given")
    parser.add_argument("--ids-file", metavar="FILE", default=None,
                        help="evaluate only these IDs: a run's split.json (its test part) or run folder, "
                             "or a text/CSV file of IDs")
    parser.add_argument("--batch-size", type=int, default=256, help="images per batch")
    parser.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda or cuda:N")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                        help="bootstrap resamples for the 95%% intervals (0: none; at most 10,000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")
    parser.add_argument("--allow-nonfinite", action="store_true",
                        help="when some scores are NaN or infinite, leave those objects out of the metrics and "
                             "list them in left_out.csv (default: an error, nothing written)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from lexactum.checks import positive_whole
    from lexactum.data.ids import positions_of, read_ids_file
    from lexactum.data.layouts import ChallengeDataset
    from lexactum.devices import resolve_device
    from lexactum.evaluation.evaluate import LEFT_OUT_FILE, left_out_summary
    from lexactum.evaluation.metrics import check_bootstrap
    from lexactum.inference.committee import check_bands, load_committee
    from lexactum.runs import all_or_nothing, check_output_folder, read_csv, write_config

    # Checked before any work: a bad value must not cost a whole scoring pass or leave a config.json behind.
    positive_whole(args.batch_size, "--batch-size")
    check_bootstrap(args.bootstrap, "--bootstrap")
    dataset = ChallengeDataset(args.dataset, survey=args.survey)
    members = load_committee(args.model, survey=dataset.survey)
    check_bands(members, dataset.survey.n_bands, str(dataset.path))
    indices = None
    if args.ids_file:
        indices = positions_of(dataset.ids, read_ids_file(args.ids_file), args.ids_file)
    # The whole file name: m.v1.safetensors, m.v2.safetensors and m.h5 each get a folder of their own.
    out_dir = Path(args.out) if args.out else Path("evaluations") / _default_name(members, args.tta)
    check_output_folder(out_dir)
    device = resolve_device(args.device)
    with all_or_nothing():  # the outputs and the record describing them appear together or not at all
        metrics, scored_from = _evaluate(args, members, dataset, indices, out_dir, device)
        write_config(out_dir, {
            "command": "evaluate", "models": [str(m.path.resolve()) for m in members], "tta": args.tta,
            "combine": args.combine, "dataset": str(dataset.path),
            "survey": dataset.survey.name, "ids_file": args.ids_file,
            "n_objects": len(dataset) if indices is None else len(indices), "n_scored": metrics["n"],
            "left_out": metrics["left_out"], "batch_size": args.batch_size, "device": str(device),
            "bootstrap": args.bootstrap, "seed": args.seed, "allow_nonfinite": args.allow_nonfinite,
            "normalisation": {m.name: m.normalisation for m in members}, "out": str(out_dir.resolve()),
            "scored_from": scored_from,
        })
    if metrics["left_out"]:
        print(left_out_summary(read_csv(out_dir / LEFT_OUT_FILE), out_dir / LEFT_OUT_FILE))
    print(f"results in {out_dir}")
    return 0


def _default_name(members, tta: int) -> str:
    if len(members) == 1 and tta == 1:
        return members[0].path.name
    return "committee-" + "+".join(m.name for m in members) + (f"-tta{tta}" if tta > 1 else "")


def _evaluate(args, members, dataset, indices, out_dir, device) -> tuple[dict, object]:
    """(metrics, where the images came from): one model as always, or a committee and/or views."""
    from lexactum.evaluation.committee import evaluate_committee
    from lexactum.evaluation.evaluate import evaluate_model, prepared_if_current

    common = dict(indices=indices, out_dir=out_dir, device=device, batch_size=args.batch_size,
                  bootstrap=args.bootstrap, seed=args.seed, show_progress=None,
                  allow_nonfinite=args.allow_nonfinite)
    if len(members) > 1 or args.tta > 1:
        metrics = evaluate_committee(members, dataset, tta=args.tta, combine=args.combine, **common)
        return metrics, metrics["scored_from"]
    member = members[0]
    data = prepared_if_current(dataset, member.normalisation) or dataset
    metrics = evaluate_model(member.network, data, files=dataset, title=f"{member.path.name} on {dataset.path.name}",
                             model_name=str(member.path), **common)
    return metrics, "files" if data is dataset else f"cache {data.path}"
