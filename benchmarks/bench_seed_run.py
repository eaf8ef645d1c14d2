"""Where the time of a whole seed run goes: ``python Space.py --train_or_load train`` broken down by phase.

Not a test: run ``python benchmarks/bench_seed_run.py`` (``--help`` for options). It writes a toy training
set of ``--n`` space objects (the challenge's training layout), then runs the seed's command on it twice in a
fresh folder with a fresh cache: once plain (the wall time a user sees) and once under ``cProfile``, whose
cumulative times give the phases: start-up (the interpreter and the imports before the run begins), the
cache (reading and normalising the FITS files once), training (Lightning's fit, validation included),
saving the model, the training-curve plot, scoring the test part (in memory, then the end-to-end timing pass
that reads files again), the metrics (with their bootstrap) and the ROC plot; and the functions that take
the most time of their own, to tell the network's arithmetic from everything else.

    python benchmarks/bench_seed_run.py --n 8000 --epochs 5 --json seed_run.json
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Phases: (name, the function whose cumulative time it is: file ending, function name).
PHASES = (
    ("cache (read + normalise FITS)", "training/run.py", "_prepare_data"),
    ("training (fit, with validation)", "training/run.py", "_fit"),
    ("saving the model", "training/run.py", "_save_new_model"),
    ("training-curve plot", "evaluation/plots.py", "plot_training_curves"),
    ("scoring the test part", "evaluation/evaluate.py", "_score_selection"),
    ("  of which in memory", "evaluation/evaluate.py", "score"),
    ("  of which end-to-end timing from files", "evaluation/evaluate.py", "score_files"),
    ("metrics (bootstrap)", "evaluation/metrics.py", "challenge_metrics"),
    ("ROC plot", "evaluation/plots.py", "plot_roc"),
    ("writing the model again with metrics", "training/run.py", "_write_model"),
    ("all imports (anywhere)", "<frozen importlib._bootstrap>", "_find_and_load"),
)
RUN_FUNCTION = ("seed_cli.py", "run")


def run_seed(dataset: Path, folder: Path, epochs: int, model: str, profile: Path | None) -> dict:
    """One ``Space.py`` run in ``folder`` with its own cache: wall time and each output line's time."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable]
    if profile is not None:
        command += ["-m", "cProfile", "-o", str(profile)]
    command += [str(ROOT / "Space.py"), "--dataset", str(dataset), "--train_or_load", "train", "--model_name",
                model, "--no_of_epochs", str(epochs)]
    env = {**os.environ, "LEXACTUM_CACHE_DIR": str(folder / "cache"), "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    env.pop("DISPLAY", None)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, bufsize=1)
    lines = [(round(time.perf_counter() - start, 2), line.rstrip()) for line in child.stdout]
    child.wait()
    wall = time.perf_counter() - start
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {child.returncode}:\n" + "\n".join(t for _, t in lines[-20:]))
    return {"wall_s": round(wall, 2), "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2),
            "first_line_s": lines[0][0] if lines else None, "output": lines}


def phases(profile: Path, top: int) -> dict:
    """Cumulative seconds of each phase, start-up, and the ``top`` functions by time of their own."""
    stats = pstats.Stats(str(profile))
    table = stats.stats  # {(file, line, name): (calls, primitive calls, own time, cumulative time, callers)}

    def cumulative(ending: str, name: str) -> float:
        return sum(value[3] for (file, _, function), value in table.items()
                   if function == name and file.endswith(ending))

    # The seed's command imports lazily, inside the run: its start-up is the imports row and the time of the
    # run's first output line, not anything before RUN_FUNCTION.
    found = {"profiled total": stats.total_tt, "inside the run": cumulative(*RUN_FUNCTION)}
    found.update({label: cumulative(ending, name) for label, ending, name in PHASES})
    own = sorted(table.items(), key=lambda item: item[1][2], reverse=True)[:top]
    return {"phases_s": {k: round(v, 2) for k, v in found.items()},
            "top_own_time": [{"function": f"{Path(file).name}:{line}:{name}", "own_s": round(value[2], 2),
                              "cumulative_s": round(value[3], 2), "calls": value[1]}
                             for (file, line, name), value in own]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="\n\n".join(
        __doc__.split("\n\n")[1:]), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=8000, help="objects of the toy training set (default: 8000)")
    parser.add_argument("--epochs", type=int, default=5, help="--no_of_epochs (default: 5)")
    parser.add_argument("--model", default="lens_flow", help="--model_name (default: lens_flow)")
    parser.add_argument("--dataset", default=None, help="an existing training set to use instead of a toy one")
    parser.add_argument("--work", default=None, help="folder of the data and runs, kept (default: a temporary "
                        "one, deleted)")
    parser.add_argument("--top", type=int, default=15, help="functions listed by their own time (default: 15)")
    parser.add_argument("--no-plain", action="store_true", help="only the profiled run")
    parser.add_argument("--json", metavar="FILE", default=None, help="write the numbers here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_seed_") as scratch:
        work = Path(args.work or scratch)
        dataset = Path(args.dataset) if args.dataset else work / f"space_train_{args.n}"
        if not args.dataset and not dataset.exists():
            from lexactum.simulate.toy import write_toy_dataset

            write_toy_dataset(dataset, "space", n=args.n, layout="train")
        result = {"n": args.n, "epochs": args.epochs, "model": args.model, "dataset": str(dataset),
                  "cpus": len(os.sched_getaffinity(0))}
        if not args.no_plain:
            result["plain"] = run_seed(dataset, work / "plain", args.epochs, args.model, None)
            print(f"plain run: {result['plain']['wall_s']} s, first output line after "
                  f"{result['plain']['first_line_s']} s (load {result['plain']['load_before']})", flush=True)
        profile = work / "seed_run.prof"
        result["profiled"] = run_seed(dataset, work / "profiled", args.epochs, args.model, profile)
        result.update(phases(profile, args.top))
    for label, seconds in result["phases_s"].items():
        print(f"{label:45s} {seconds:8.2f} s")
    print("functions by own time:")
    for row in result["top_own_time"]:
        print(f"  {row['own_s']:8.2f} s own {row['cumulative_s']:8.2f} s cumulative {row['calls']:8d} calls  "
              f"{row['function']}")
    if args.json:
        from lexactum.runs import write_bytes_atomic

        write_bytes_atomic(Path(args.json), json.dumps(result, indent=2).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
