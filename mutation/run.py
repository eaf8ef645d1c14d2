"""Mutation check of LEXACTUM's core modules with cosmic-ray (run by ``make mutate``; see docs/testing.md).

Why a script: cosmic-ray mutates one module per session and has no sampling option, and a full run of every
mutant of every core module would take hours on a 2-core machine. This script, per module, writes the session's
config (the module against its own test files only), draws a fixed, seeded sample of the mutants (so that two runs
on the same code test the same mutants and scores can be compared), runs them one at a time and prints a
killed/survived summary. The mutated file is the real one under ``src/`` (cosmic-ray restores it after each
mutant), so the tests import it through PYTHONPATH=src, numba kernels included.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "mutation" / ".work"
SRC = ROOT / "src" / "lexactum"

# module (relative to src/lexactum) -> its own test files (globs relative to tests/)
CORE = {
    "evaluation/metrics.py": ["evaluation/test_metrics*.py"],
    "data/fits.py": ["data/test_fits*.py"],
    "data/layouts.py": ["data/test_layouts*.py"],
    "data/normalise.py": ["data/test_normalise*.py"],
    "data/cache.py": ["data/test_cache*.py"],
    "models/files.py": ["models/test_files*.py"],
    "models/keras_h5.py": ["models/test_keras_h5*.py"],
}
SAMPLE = 20  # mutants per module: 1-6 minutes a module on 2 cores (the test files take 3-20 s a run)
SEED = 13
TIMEOUT_S = 120.0  # per mutant; a mutant that hangs (a loop bound made infinite) counts as killed


def test_files(module: str) -> list[str]:
    """The module's own test files, as paths relative to the repository root."""
    files = sorted(str(p.relative_to(ROOT)) for pattern in CORE[module] for p in (ROOT / "tests").glob(pattern))
    if not files:
        fail(f"no test files for {module} ({' '.join(CORE[module])})")
    return files


def write_config(module: str, config: Path) -> None:
    """One cosmic-ray session config: the real source file, its tests, run locally one mutant at a time."""
    # numba checks no index unless asked: with bounds checks (in a cache of their own) a kernel mutant that
    # writes past an array fails its test instead of corrupting memory silently
    command = (f"env NUMBA_BOUNDSCHECK=1 NUMBA_CACHE_DIR={WORK / 'numba-boundscheck'} "
               f"{sys.executable} -m pytest -x -q -p no:cacheprovider -p no:randomly " + " ".join(test_files(module)))
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{SRC / module}"\n'
        f"timeout = {TIMEOUT_S}\n"
        "excluded-modules = []\n"
        f'test-command = "{command}"\n\n'
        "[cosmic-ray.distributor]\n"
        'name = "local"\n'
    )


def annotation_spans(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(start, end) positions of every annotation in the module: with ``from __future__ import annotations``
    (all core modules) they are never evaluated, so a mutant there (``str | None`` to ``str - None``) is
    equivalent by construction and only dilutes the sample."""
    import ast

    tree = ast.parse(path.read_text())
    nodes = [n.annotation for n in ast.walk(tree) if isinstance(n, (ast.arg, ast.AnnAssign)) and n.annotation]
    nodes += [n.returns for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.returns]
    return [((n.lineno, n.col_offset), (n.end_lineno, n.end_col_offset)) for n in nodes]


def keep_sample(session: Path, module: str, size: int, seed: int) -> tuple[int, int, int]:
    """Skip the mutants in annotations, then all but a seeded random ``size`` of the others.

    Returns (sampled, in annotations, total).
    """
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    spans = annotation_spans(SRC / module)
    with use_db(str(session), WorkDB.Mode.open) as db:
        # job IDs are random per session: order by what the mutation is, so the same code gives the same sample
        items = sorted(db.pending_work_items, key=lambda item: [(m.operator_name, m.occurrence, m.start_pos)
                                                                 for m in item.mutations])
        typing = [item for item in items if any(a <= tuple(item.mutations[0].start_pos) < b for a, b in spans)]
        if typing:
            db.set_multiple_results([item.job_id for item in typing],
                                    WorkResult(output="in an annotation", worker_outcome=WorkerOutcome.SKIPPED))
        typing_ids = {item.job_id for item in typing}
        items = [item for item in items if item.job_id not in typing_ids]
        keep = {item.job_id for item in random.Random(seed).sample(items, min(size, len(items)))}
        skip = [item.job_id for item in items if item.job_id not in keep]
        if skip:
            db.set_multiple_results(skip, WorkResult(output="not in sample", worker_outcome=WorkerOutcome.SKIPPED))
        return len(keep), len(typing), db.num_work_items


def summarise(module: str, session: Path, total: int) -> dict[str, int]:
    """Count the outcomes of the sampled mutants and write the survivors (with their diffs) to a text file."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    counts = {"killed": 0, "survived": 0, "incompetent": 0, "timeout": 0}
    survivors = []
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            if result.test_outcome == TestOutcome.KILLED and result.output == "timeout":
                counts["timeout"] += 1
            elif result.test_outcome == TestOutcome.SURVIVED:
                counts["survived"] += 1
                mutation = item.mutations[0]
                survivors.append(f"{item.job_id} line {mutation.start_pos[0]} {mutation.operator_name}"
                                 f" #{mutation.occurrence}\n{result.diff}\n")
            elif result.test_outcome == TestOutcome.INCOMPETENT:
                counts["incompetent"] += 1
            else:
                counts["killed"] += 1
    report = WORK / (module.replace("/", "_").removesuffix(".py") + ".survivors.txt")
    report.write_text("".join(survivors))
    sampled = sum(counts.values())
    print(f"{module}: {counts['killed'] + counts['timeout'] + counts['incompetent']} of {sampled} sampled mutants "
          f"killed ({counts['survived']} survived, {counts['timeout']} timed out, {counts['incompetent']} "
          f"incompetent; {total} mutants in all, annotations included); survivors: {report.relative_to(ROOT)}",
          flush=True)
    return counts


def run_module(module: str, size: int, seed: int) -> dict[str, int]:
    """Init, sample and execute one module's session (a fresh session each time: the code may have changed)."""
    stem = module.replace("/", "_").removesuffix(".py")
    config, session = WORK / f"{stem}.toml", WORK / f"{stem}.sqlite"
    write_config(module, config)
    session.unlink(missing_ok=True)
    cosmic = [sys.executable, "-m", "cosmic_ray.cli"]
    step(module, "init", [*cosmic, "init", str(config), str(session)])
    step(module, "baseline (its tests must pass unmutated)", [*cosmic, "baseline", str(config)])
    sampled, typing, total = keep_sample(session, module, size, seed)
    print(f"{module}: running {sampled} of {total - typing} mutants ({typing} more in annotations, never run)",
          flush=True)
    step(module, "exec", [*cosmic, "exec", str(config), str(session)])
    return summarise(module, session, total)


def step(module: str, what: str, command: list[str]) -> None:
    """Run one cosmic-ray command; a failure ends the check with one line (cosmic-ray printed the details)."""
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        fail(f"{module}: cosmic-ray {what} failed")


def fail(message: str) -> None:
    """One error line and exit status 2, as the lexactum commands do."""
    print(f"mutate: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    """Run the mutation check over the named core modules (all by default) and print one summary line each."""
    parser = argparse.ArgumentParser(prog="mutate", description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"modules under src/lexactum (default: {' '.join(CORE)})")
    parser.add_argument("--sample", type=int, default=SAMPLE, help="mutants per module (0: all)")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in CORE]
    if unknown:
        parser.error(f"not a core module: {' '.join(unknown)} (choose from {' '.join(CORE)})")
    WORK.mkdir(parents=True, exist_ok=True)
    for module in args.modules or list(CORE):
        run_module(module, args.sample if args.sample > 0 else 10**9, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
