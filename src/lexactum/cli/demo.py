"""``lexactum demo``: the main job on the built-in simulated data, from nothing to a ROC curve.

Simulates a small space dataset when it is absent, trains lens_flow with augmentation, evaluates it on its
own held-out part, saves the model, and writes the ROC plot, the metrics and a grid of the highest-scored
test images. ``make demo`` runs it on a fresh clone.
"""

from __future__ import annotations

from lexactum.builtin_data import DEMO_DATA, DEMO_IMAGES

#: Defaults chosen so that the whole demo, installation included, takes a few minutes on 2 CPU cores and
#: reaches a test AUC above 0.8 (see the README for the measured numbers).
DEMO_EPOCHS = 10
DEMO_BATCH = 32
DEMO_SPLIT = "0.7,0.1,0.2"


def add_parser(subparsers, formatter_class) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="simulate a small space set, train lens_flow, evaluate it, show where the results are",
        description=__doc__,
        formatter_class=formatter_class,
        epilog="examples:\n"
        "  lexactum demo                       # what 'make demo' runs\n"
        "  lexactum demo --n 1000 --epochs 3   # a quicker look\n",
    )
    parser.add_argument("--data", default=DEMO_DATA.format(survey="space"),
                        help="dataset folder (simulated there when absent)")
    parser.add_argument("--n", type=int, default=DEMO_IMAGES, help="images to simulate when the data is absent")
    parser.add_argument("--network", default="lens_flow", help="network to train")
    parser.add_argument("--epochs", type=int, default=DEMO_EPOCHS, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=DEMO_BATCH, help="training batch size")
    parser.add_argument("--split", default=DEMO_SPLIT, help="train,validation,test fractions")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulation, split and training")
    parser.add_argument("--run-dir", default=None, help="run folder (default: a new one under runs/)")
    parser.add_argument("--models-dir", default="models", help="where the trained model file goes")
    parser.add_argument("--top", type=int, default=16, help="highest-scored test images to draw")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from lexactum.builtin_data import ensure_simulated
    from lexactum.errors import LexactumError
    from lexactum.evaluation.plots import draw_top_scored

    if args.n < 1:
        raise LexactumError(f"--n must be a positive number of images, got {args.n}")
    data = Path(args.data)
    ensure_simulated(data, "space", args.n, args.seed)

    from lexactum.training import TrainConfig, parse_split, train

    split = parse_split(args.split)
    print(f"Training {args.network} for {args.epochs} epochs on {data} (augmentation on) ...", flush=True)
    # The default model name: a second demo saves <name>-2.safetensors and says so, never replacing the first.
    result = train(TrainConfig(
        dataset=data, network=args.network, epochs=args.epochs, batch_size=args.batch_size, augment=True,
        split=split, seed=args.seed, run_dir=args.run_dir, models_dir=args.models_dir))
    grid = draw_top_scored(result.run_dir, data, args.top)
    m = result.metrics
    print()
    print(f"Test AUC {m['auc']:.4f}   TPR0 {m['tpr0']:.4f}   TPR10 {m['tpr10']:.4f}   "
          f"(n = {m.get('n', m.get('n_images', '?'))} test images)")
    print("Results:")
    for label, path in (("run folder", result.run_dir), ("model", result.model_path),
                        ("ROC curve", result.run_dir / "roc.png"), ("metrics", result.run_dir / "metrics.json"),
                        ("training curves", result.run_dir / "training_curves.png"),
                        ("top-scored test images", grid), ("configuration", result.run_dir / "config.json")):
        print(f"  {label:<24} {path}")
    return 0
