"""``lexactum simulate``: write a simulated dataset in the challenge format (lenstronomy lenses)."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  lexactum simulate --survey space --n 4000 --out data/sim/space
  lexactum simulate --survey ground --n 20000 --out data/sim/ground_train --layout train --seed 1
  lexactum simulate --survey ground --n 2000 --out data/sim/g --lens-fraction 0.5 --workers 8 --report
  lexactum simulate --survey space --n 500 --out data/sim/s --report --real-key SpaceBasedTraining/classifications.csv
  lexactum simulate --survey space --n 3000 --out data/demo/space --min-lensed-flux 300   # easier demo set
  lexactum simulate --survey space --n 6000 --out data/sim/s_train --layout train --no-randomise
  lexactum simulate --survey space --n 100000 --out data/sim/big --layout train --impostors 3

--randomise (the default for --layout train) draws each object's PSF (width, Moffat shape, ellipticity),
noise level and correlation, sky residuals, lens light profile, source size, shape and clumps, shear,
colours per band and the shares of neighbours, stars and masks from the ranges in the survey preset
(docs/simulation.md lists them with their sources), so that a network cannot learn one fixed simulator.
Randomised non-lenses also hold impostors (spirals, rings, mergers, edge-on disks, blue companions,
groups, artefacts), about one in seven; --impostors X multiplies their rates (0: none; 2-4 teach more of
them to networks trained long on large sets: docs/impostors.md measures the trade-off).
--no-randomise (the default for --layout test) keeps the fixed choices: the same seed writes the same
bytes as before randomisation existed.

The output is read like the real data ('lexactum dataset info OUT'). A killed run continues when started
again with the same options (--workers may differ: the bytes do not depend on it); other options are
refused unless --overwrite (which replaces only a simulation by lexactum: the object folders, catalog and
records its manifest names, whole, with anything put inside those folders; other files in OUT stay). A
disk that fills up stops the run with one line naming the file; free some space and run the same command
again to continue.

--report compares the Einstein radii, lensed pixels above 1 sigma and lensed flux of --report-lenses
simulated lenses (default 2,000) with the real training keys: quantiles and KS
statistics against the keys' quantiles stored in the presets, or the two-sample KS test against the key
given with --real-key. It also writes OUT/simulation-report.png (lenses on top, non-lenses below).
"""


def add_parser(subparsers, formatter_class) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="simulate a lens dataset in the challenge format",
        description="Simulate strong lenses and non-lenses (SIE + shear, Sersic light, clumpy sources, "
                    "neighbours, PSF, noise, masks) in the exact Lens Finding Challenge 1.0 format.",
        epilog=EPILOG,
        formatter_class=formatter_class,
    )
    parser.add_argument("--survey", required=True, metavar="space|ground",
                        help="space (1 band, Euclid-like) or ground (4 bands, KiDS-like)")
    parser.add_argument("--n", type=int, required=True, metavar="N", help="number of objects")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (created; must be empty or a resumable run)")
    parser.add_argument("--layout", choices=("train", "test"), default="test",
                        help="train: Data.k + classifications.csv; test: the released test set's layout")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed; same seed, same bytes")
    parser.add_argument("--lens-fraction", type=float, default=None, metavar="F",
                        help="share of lenses (default: the challenge's share for the survey and layout)")
    parser.add_argument("--workers", type=int, default=None, metavar="K", help="processes (default: all cores)")
    parser.add_argument("--min-lensed-flux", type=float, default=0.0, metavar="SIGMA",
                        help="redraw lenses whose lensed flux is below SIGMA (0: the population calibrated on "
                             "the real keys; e.g. 300 for small, easier demonstration sets)")
    parser.add_argument("--randomise", action=argparse.BooleanOptionalAction, default=None,
                        help="draw instrument and population choices per object from the preset's ranges "
                             "(default: on for --layout train, off for --layout test)")
    parser.add_argument("--impostors", type=float, default=None, metavar="X",
                        help="multiply the survey's impostor rates of randomised sets by X (0: no impostors; "
                             "default 1, the rates docs/impostors.md lists)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a simulation with other options already in --out (the same options resume "
                             "it); a folder that is not a lexactum simulation is never replaced")
    parser.add_argument("--report", action="store_true",
                        help="compare --report-lenses simulated lenses with the real keys and write a picture grid")
    parser.add_argument("--report-lenses", type=int, default=2000, metavar="N", help="lenses simulated for --report")
    parser.add_argument("--real-key", default=None, metavar="CSV",
                        help="a real classifications.csv for --report's KS test (default: stored quantiles)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from lexactum.errors import LexactumError
    from lexactum.simulate import simulate_dataset

    if args.report and args.report_lenses < 10:
        raise LexactumError(f"--report-lenses must be at least 10, got {args.report_lenses}")
    real = None
    if args.real_key is not None:  # read before simulating: a bad key must leave nothing written
        from lexactum.simulate import catalog

        if not Path(args.real_key).is_file():
            raise LexactumError(f"--real-key {args.real_key}: file not found")
        real = catalog.read_training_key(args.real_key)
    out = simulate_dataset(args.out, args.survey, args.n, layout=args.layout, seed=args.seed,
                           lens_fraction=args.lens_fraction, workers=args.workers, overwrite=args.overwrite,
                           min_lensed_flux=args.min_lensed_flux, randomise=args.randomise,
                           impostors=args.impostors)
    from lexactum.simulate.randomise import enabled

    randomised = enabled(args.layout, args.randomise)
    print(f"wrote {args.n} {args.survey} objects ({args.layout} layout, "
          f"{'randomised' if randomised else 'fixed instrument and population'}) to {out}")
    if args.report:
        import dataclasses

        from lexactum.simulate import catalog
        from lexactum.simulate.presets import get_preset
        from lexactum.simulate.writer import REPORT_PNG

        physics = dataclasses.replace(get_preset(args.survey), randomise=randomised)
        simulated = catalog.simulated_lens_quantities(physics, args.report_lenses, seed=args.seed,
                                                      workers=args.workers or _cores(), progress=True)
        comparison = catalog.compare(simulated, physics, real)
        print(catalog.format_comparison(physics.name, comparison, args.report_lenses))
        print("KS against " + ("the given key (two-sample)" if real is not None else "the real keys' stored quantiles"))
        png = catalog.preview_png(out, Path(out) / REPORT_PNG)
        print(f"picture: {png}")
    return 0


def _cores() -> int:
    import os

    return os.cpu_count() or 1
