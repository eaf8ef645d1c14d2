"""``lexactum transfer-check``: does a network trained on simulations score other simulations and real images?"""

from __future__ import annotations

EPILOG = """examples:
  lexactum transfer-check --survey space --out checks/space
        6,000 simulated objects (seed 0) to train lens_flow 15 epochs; scores 2,000 held-out ones and
        2,000 simulated with seed 1
  lexactum transfer-check --survey space --n-train 2000 --epochs 5 --real ../shared/challenge_samples --out c/s
        also the labelled real images under the folder (a training archive with its classifications.csv,
        or cutouts sorted into lens/ and nolens/ folders)
  lexactum transfer-check --survey space --out c/fixed --setting-a randomise=false
        trained on the simulator's fixed choices (no domain randomisation), scored on randomised sets
  lexactum transfer-check --survey ground --out c/g --setting-b min_lensed_flux=300
        set B simulated with another setting of the simulator (any keyword of simulate_dataset)

OUT receives sim-A/ and sim-B/ (the simulations), run/ (the training run), model.safetensors,
scores-<set>.csv (ID, label, score), transfer.csv and transfer.md (n, lenses, AUC, TPR0, TPR10 with
bootstrap intervals per set), histograms.png (scores of non-lenses and lenses per set),
impostors-by-kind.csv (randomised sets: the non-lenses' scores per impostor kind) and config.json.
The same command run again continues a killed check: the simulations resume, training resumes from
run/last.ckpt, a finished model is reused; only the scoring is redone. Other settings in a used OUT are
refused unless --overwrite, which redoes what the changed settings make: only set B when only --seed-b or
--setting-b changed (the trained network is kept, to compare one network on several B settings), only the
training for other --epochs, --network or --batch-size, else the simulations and the training.
"""


def add_parser(subparsers, formatter_class) -> None:
    from lexactum.transfer.run import TransferSettings as S  # dataclasses only: no numpy, no torch

    parser = subparsers.add_parser(
        "transfer-check",
        help="train on one simulated setting, score another and real images",
        description="Simulate a training set (setting A), train a network on it, and score A's held-out "
                    "part, an independent simulation (setting B) and, if given, labelled real images: one "
                    "table of challenge metrics and score histograms show whether the simulations transfer.",
        epilog=EPILOG,
        formatter_class=formatter_class,
    )
    defaults = {f: S.__dataclass_fields__[f].default for f in S.__dataclass_fields__}
    parser.add_argument("--survey", required=True, choices=("space", "ground"), help="survey to simulate")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created; reused to resume)")
    parser.add_argument("--n-train", type=int, default=defaults["n_train"], metavar="N",
                        help="simulated objects to train on (10%% of them validate)")
    parser.add_argument("--n-test", type=int, default=defaults["n_test"], metavar="N",
                        help="objects of A held out for testing, and of set B")
    parser.add_argument("--epochs", type=int, default=defaults["epochs"], metavar="N", help="training epochs")
    parser.add_argument("--network", default=defaults["network"], metavar="NAME", help="network to train")
    parser.add_argument("--batch-size", type=int, default=defaults["batch_size"], metavar="N",
                        help="images per optimiser step")
    parser.add_argument("--seed-a", type=int, default=defaults["seed_a"], metavar="S", help="seed of setting A")
    parser.add_argument("--seed-b", type=int, default=defaults["seed_b"], metavar="S", help="seed of setting B")
    parser.add_argument("--setting-a", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of the simulator for set A only, e.g. randomise=false to train on the "
                             "fixed simulator (repeatable; VALUE read as JSON)")
    parser.add_argument("--setting-b", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of the simulator for set B only (repeatable; VALUE read as JSON)")
    parser.add_argument("--real", metavar="DIR", help="folder of labelled real challenge images to score too")
    parser.add_argument("--bootstrap", type=int, default=defaults["bootstrap"], metavar="N",
                        help="bootstrap resamples for the 95%% intervals (0: none)")
    parser.add_argument("--device", default=defaults["device"], metavar="DEVICE", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--workers", type=int, default=None, metavar="K",
                        help="simulation processes (default: all cores)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo a check with other settings already in --out (only what they change)")
    parser.set_defaults(func=run)


def parse_settings(pairs: list[str], option: str) -> dict:
    """KEY=VALUE strings of ``option`` as a dict, VALUE read as JSON when it is (numbers, true, lists), else as
    text."""
    import json

    from lexactum.errors import LexactumError

    settings = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise LexactumError(f"{option} {pair!r}: expected KEY=VALUE")
        try:
            settings[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            settings[key.strip()] = text
    return settings


def run(args) -> int:
    from lexactum.transfer import TransferSettings, transfer_check
    from lexactum.transfer.report import markdown_table

    settings = TransferSettings(
        survey=args.survey, out=args.out, n_train=args.n_train, n_test=args.n_test, epochs=args.epochs,
        network=args.network, batch_size=args.batch_size, seed_a=args.seed_a, seed_b=args.seed_b,
        settings_a=parse_settings(args.setting_a, "--setting-a"),
        settings_b=parse_settings(args.setting_b, "--setting-b"), real=args.real, bootstrap=args.bootstrap,
        device=args.device, workers=args.workers, overwrite=args.overwrite)
    rows = transfer_check(settings)
    print(markdown_table(rows, args.bootstrap), end="")
    print(f"results: {args.out}")
    return 0
