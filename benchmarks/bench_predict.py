"""Benchmark of ``lexactum predict``: images/s, the share of time the network waits for data, and peak memory.

Not a test: run ``python benchmarks/bench_predict.py`` (``--help`` for options). On one toy dataset of
``--n`` space objects in the challenge's layout it builds the three inputs a survey run reads: (a) the FITS
folder itself, (b) its prepared cache (``lexactum dataset prepare``), (c) an HDF5 cube of the same raw
images; and one untrained network file per ``--models`` entry (speed does not depend on the weights).

``speed``: for every input, network and ``--workers`` value it runs ``python -m lexactum predict`` as a
child process and reads ``data_wait_share_rank0`` and ``seconds_rank0`` from its config.json (images/s of
the scoring loop, and of the whole command with its start-up); beside each, the straightforward way in one
process: read a batch, normalise it, ``model(batch)``, no workers. With ``--devices 2`` it adds the runs of
2 CPU processes (``--devices 2 --accelerator cpu``) from the cache and the HDF5 cube.

``rss``: peak resident memory of ``lexactum predict --model M cube.h5`` for cubes of ``--rss-sizes``
cutouts, written in chunks with h5py (never held in memory) and deleted after their run. The main process
and the whole process tree (the sum over the process and its descendants) are polled in /proc every
``--poll`` seconds.

Every row records the 1-minute load average before and after it: the numbers mean little on busy cores.

    python benchmarks/bench_predict.py speed --n 2000 --json predict_speed.json
    python benchmarks/bench_predict.py rss --rss-sizes 10000 100000 300000 --json predict_rss.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

#: Raw toy pixels are ~1e-12..1e-10 (the challenge's units); an int16 cube stores them times this.
INT16_SCALE = 1e14
#: Rows written to an HDF5 cube per h5py call (bounds the memory of writing it).
WRITE_ROWS = 4096


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


# ------------------------------------------------------------------------------------------- the inputs
def make_inputs(work: Path, n: int, models: list[str], scale: int = 0) -> dict:
    """The FITS folder, its cache, its HDF5 cube and the network files under ``work`` (reused when there);
    with ``scale`` above ``n``, the cache and the cube hold ``scale`` objects (the folder's, repeated)."""
    from lexactum.data.cache import prepare
    from lexactum.models import create_model, save_model
    from lexactum.simulate.toy import write_toy_dataset

    folder = work / f"fits{n}"
    done = work / f"fits{n}.done"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        write_toy_dataset(folder, "space", n=n, layout="test")
        done.touch()
    cache = Path(prepare(folder, normalisation="zscale", cache_dir=work / "cache", progress=False).path)
    total = max(n, scale)
    if total > n:
        cache = enlarge_cache(cache, work / f"cache{total}", total)
    cube = work / f"cube{total}.h5"
    if not cube.exists():
        write_cube_from(folder, cube, np.float32, total)
    files = {}
    for name in models:
        files[name] = work / f"{name}.safetensors"
        if not files[name].exists():
            save_model(create_model(name, in_channels=1), files[name], {"survey": "space",
                                                                       "normalisation": "zscale"})
    return {"inputs": {"fits": folder, "cache": cache, "hdf5": cube}, "models": files}


def enlarge_cache(cache: Path, bigger: Path, total: int) -> Path:
    """A copy of the prepared dataset ``cache`` holding ``total`` objects (its own, repeated, with new IDs):
    a survey-sized cache without writing and reading a survey's worth of FITS files. It follows the cache's
    format (index.json naming the shape, IDs and labels; images.f32) as :mod:`lexactum.data.cache` writes it."""
    from lexactum.data.cache import IMAGES_FILE, INDEX_FILE, open_prepared

    if (bigger / INDEX_FILE).is_file():
        return bigger
    prepared = open_prepared(cache)
    n = len(prepared.ids)
    bigger.mkdir(parents=True, exist_ok=True)
    with open(bigger / IMAGES_FILE, "wb") as fh:
        for start in range(0, total, WRITE_ROWS):
            rows = np.arange(start, min(total, start + WRITE_ROWS)) % n
            fh.write(np.ascontiguousarray(prepared.images[rows]).tobytes())
    index = dict(prepared.index)
    rows = np.arange(total) % n
    blank = set(np.asarray(index.get("blank", []), dtype=np.int64).tolist())
    index.update(shape=[total, *prepared.images.shape[1:]], ids=(100_000 + np.arange(total)).tolist(),
                 labels=prepared.labels[rows].tolist(), blank=[int(k) for k in np.flatnonzero(
                     np.isin(rows, list(blank)))] if blank else [])
    (bigger / INDEX_FILE).write_text(json.dumps(index))
    return bigger


def write_cube_from(folder: Path, cube: Path, dtype, total: int | None = None) -> None:
    """An HDF5 cube (``images`` (N, 1, 101, 101), ``ids``) of the folder's raw images, repeated up to ``total``
    rows, written ``WRITE_ROWS`` at a time under a temporary name (renamed when whole)."""
    import h5py

    from lexactum.data.sources import open_source

    source = open_source(folder)
    base = source.read_batch(np.arange(len(source)))
    if np.dtype(dtype) == np.int16:
        base = np.clip(np.nan_to_num(base) * INT16_SCALE, -32768, 32767).astype(np.int16)
    total = total or len(base)
    partial = cube.with_name(cube.name + ".part")
    with h5py.File(partial, "w") as fh:
        images = fh.create_dataset("images", shape=(total, *base.shape[1:]), dtype=base.dtype,
                                   chunks=(64, *base.shape[1:]))
        fh.create_dataset("ids", data=np.arange(total, dtype=np.int64) + 100_000)
        for start in range(0, total, WRITE_ROWS):
            stop = min(total, start + WRITE_ROWS)
            rows = np.arange(start, stop) % len(base)
            images[start:stop] = base[rows]
    os.replace(partial, cube)


# ----------------------------------------------------------------------------------------- memory polling
def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    """``pid``'s descendants, from the parent IDs in /proc/*/stat."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


class RSSPoller(threading.Thread):
    """Peak RSS (MiB) of a process and of its process tree, polled every ``period`` seconds."""

    def __init__(self, pid: int, period: float):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.main_peak = self.tree_peak = 0
        self.most_processes = 0
        self.samples: list[tuple[float, int, int]] = []  # (seconds, main MiB, tree MiB) every second or so
        self.done = threading.Event()

    def run(self) -> None:
        start = time.perf_counter()
        while not self.done.is_set():
            main = _rss_kb(self.pid)
            tree = [self.pid, *_descendants(self.pid)]
            self.main_peak = max(self.main_peak, main)
            self.tree_peak = max(self.tree_peak, sum(_rss_kb(p) for p in tree))
            self.most_processes = max(self.most_processes, len(tree))
            if len(self.samples) * 1.0 <= time.perf_counter() - start:
                self.samples.append((round(time.perf_counter() - start, 1), main // 1024,
                                     sum(_rss_kb(p) for p in tree) // 1024))
            self.done.wait(self.period)

    def stop(self) -> dict:
        self.done.set()
        self.join()
        return {"peak_rss_main_mib": round(self.main_peak / 1024, 1),
                "peak_rss_tree_mib": round(self.tree_peak / 1024, 1), "most_processes": self.most_processes,
                "rss_samples": self.samples}


# ------------------------------------------------------------------------------------------ the two ways
def engine_run(model: Path, input_path: Path, out: Path, workers: int | None, batch_size: int,
               devices: int = 1, poll: float = 0.2, shard_size: int | None = None, device: str = "cpu",
               timeout: float = 3600) -> dict:
    """One ``lexactum predict`` child process: its images/s, data wait share and peak memory."""
    command = [sys.executable, "-m", "lexactum", "predict", "--model", str(model), str(input_path),
               "--out", str(out), "--batch-size", str(batch_size), "--overwrite"]
    accelerator = "cpu" if device == "cpu" else "gpu"
    command += ["--accelerator", accelerator, "--devices", str(devices)] if devices > 1 else ["--device", device]
    if workers is not None:
        command += ["--workers", str(workers)]
    if shard_size is not None:  # several processes need several shards: each process scores whole shards
        command += ["--shard-size", str(shard_size)]
    env = {**os.environ, "LEXACTUM_NO_PROGRESS": "1"}
    load_before = load_average()
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    poller = RSSPoller(child.pid, poll)
    poller.start()
    try:
        output, _ = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        output, _ = child.communicate()
    wall = time.perf_counter() - start
    memory = poller.stop()
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {child.returncode}:\n{output[-2000:]}")
    config = json.loads((out / "config.json").read_text())
    seconds, n = config["seconds_rank0"], config["n_objects"]
    per_rank = n / devices  # rank 0 scored about its share of the shards
    return {"way": "engine", "workers": "default" if workers is None else workers, "devices": devices,
            "n": n, "images_per_s_loop": round(per_rank / seconds * devices, 1),
            "images_per_s_command": round(n / wall, 1), "wait_share": round(config["data_wait_share_rank0"], 3),
            "seconds_rank0": round(seconds, 2), "wall_s": round(wall, 2), **memory,
            "load_before": load_before, "load_after": load_average()}


def plain_loop(model_path: Path, input_path: Path, batch_size: int, device: str = "cpu") -> dict:
    """The straightforward way, in this process: read a batch, normalise it, ``model(batch)``; no workers."""
    import torch

    from lexactum.data.normalise import normalise
    from lexactum.data.sources import open_source
    from lexactum.devices import synchronise
    from lexactum.evaluation.evaluate import model_normalisation
    from lexactum.models import load_model

    model = load_model(model_path).eval().to(device)
    method = model_normalisation(model)
    source = open_source(input_path)
    load_before = load_average()
    reading = computing = 0.0
    with torch.inference_mode():
        for start in range(0, len(source), batch_size):
            t0 = time.perf_counter()
            raw = source.read_batch(np.arange(start, min(len(source), start + batch_size)))
            images = raw if source.normalised else normalise(raw, method=method,
                                                             mask_value=source.survey.mask_value)
            batch = torch.from_numpy(images).to(device)
            t1 = time.perf_counter()
            model(batch)
            synchronise(torch.device(device))
            computing += time.perf_counter() - t1
            reading += t1 - t0
    total = reading + computing
    return {"way": "plain loop", "workers": 0, "devices": 1, "n": len(source),
            "images_per_s_loop": round(len(source) / total, 1), "images_per_s_command": None,
            "wait_share": round(reading / total, 3), "seconds_rank0": round(total, 2), "wall_s": None,
            "load_before": load_before, "load_after": load_average()}


# -------------------------------------------------------------------------------------------- the benches
def bench_speed(args, work: Path) -> list[dict]:
    """Images/s and wait share of the engine (each ``--workers``) and of the plain loop, per input and network;
    then ``--devices`` CPU processes from the cache and the cube (first network, no workers)."""
    made = make_inputs(work, args.n, args.models, args.scale)
    rows = []
    for model_name, model in made["models"].items():
        for kind in args.inputs:
            source = made["inputs"][kind]
            rows.append({"model": model_name, "input": kind, **plain_loop(model, source, args.batch_size,
                                                                          args.device)})
            print(_line(rows[-1]), flush=True)
            for workers in args.workers:
                run = engine_run(model, source, work / "out", None if workers < 0 else workers, args.batch_size,
                                 poll=args.poll, device=args.device)
                rows.append({"model": model_name, "input": kind, **run})
                print(_line(rows[-1]), flush=True)
    for devices in (d for d in args.devices if d > 1):
        for kind in (k for k in ("cache", "hdf5") if k in args.inputs):
            model_name, model = next(iter(made["models"].items()))
            run = engine_run(model, made["inputs"][kind], work / "out", 0, args.batch_size, devices=devices,
                             poll=args.poll, shard_size=args.batch_size, device=args.device)
            rows.append({"model": model_name, "input": kind, **run})
            print(_line(rows[-1]), flush=True)
    return rows


def bench_rss(args, work: Path) -> list[dict]:
    """Peak memory of ``lexactum predict`` on HDF5 cubes of ``--rss-sizes`` cutouts (first network)."""
    made = make_inputs(work, args.n, args.models[:1])
    model_name, model = next(iter(made["models"].items()))
    rows = []
    for size in args.rss_sizes:
        cube = work / f"rss{size}.h5"
        started = time.perf_counter()
        write_cube_from(made["inputs"]["fits"], cube, np.dtype(args.rss_dtype), total=size)
        written = round(time.perf_counter() - started, 1)
        try:
            run = engine_run(model, cube, work / "out", None if args.rss_workers < 0 else args.rss_workers,
                             args.batch_size, poll=args.poll)
        finally:
            cube_bytes = cube.stat().st_size
            cube.unlink()
        rows.append({"model": model_name, "input": f"hdf5 {args.rss_dtype}", "cube_gb": round(cube_bytes / 1e9, 2),
                     "cube_write_s": written, **run})
        print(_line(rows[-1]), flush=True)
    return rows


def _line(row: dict) -> str:
    keys = ("model", "input", "way", "workers", "devices", "n", "images_per_s_loop", "images_per_s_command",
            "wait_share", "peak_rss_main_mib", "peak_rss_tree_mib", "load_before", "load_after")
    return "  ".join(f"{key}={row[key]}" for key in keys if key in row)


#: Columns of the Markdown tables: (heading, key).
COLUMNS = (("network", "model"), ("input", "input"), ("way", "way"), ("workers", "workers"),
           ("processes", "devices"), ("images", "n"), ("images/s (loop)", "images_per_s_loop"),
           ("images/s (command)", "images_per_s_command"), ("data wait", "wait_share"),
           ("peak RSS main (MiB)", "peak_rss_main_mib"), ("peak RSS tree (MiB)", "peak_rss_tree_mib"),
           ("load before/after", "load"))


def markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table (the columns any row has)."""
    rows = [{**row, "load": f"{row['load_before']}/{row['load_after']}"} for row in rows]
    columns = [(head, key) for head, key in COLUMNS if any(row.get(key) is not None for row in rows)]
    lines = ["| " + " | ".join(head for head, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [row.get(key) for _, key in columns]
        lines.append("| " + " | ".join("" if c is None else f"{c:.0%}" if k == "wait_share" else str(c)
                                       for c, (_, k) in zip(cells, columns, strict=True)) + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="\n\n".join(__doc__.split(
        "\n\n")[1:]), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("speed", "rss", "all"), help="speed: images/s and data wait (engine "
                        "and plain loop); rss: peak memory against the cube's size; all: both")
    parser.add_argument("--n", type=int, default=2000, help="objects of the toy dataset (default: 2000)")
    parser.add_argument("--models", nargs="+", default=["lens_flow", "lastro_epfl"],
                        help="networks (untrained) to score with (default: lens_flow lastro_epfl)")
    parser.add_argument("--inputs", nargs="+", choices=("fits", "cache", "hdf5"), default=["fits", "cache", "hdf5"],
                        help="inputs to read (default: all three)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2],
                        help="--workers values of the engine runs; -1: predict's own default (default: 0 1 2)")
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2],
                        help="CPU process counts; those above 1 run from the cache and the cube (default: 1 2)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per batch (default: 256)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu); --devices above 1 then "
                        "means GPUs")
    parser.add_argument("--scale", type=int, default=0, help="speed: objects of the cache and the cube when "
                        "above --n (the toy objects repeated; e.g. 200000 on a GPU) (default: --n)")
    parser.add_argument("--rss-sizes", type=int, nargs="+", default=[10_000, 100_000, 300_000],
                        help="cutouts of the cubes of the memory runs (default: 10000 100000 300000)")
    parser.add_argument("--rss-dtype", choices=("int16", "float32"), default="int16",
                        help="pixel type of those cubes (default: int16; 300k float32 cutouts are 12 GB)")
    parser.add_argument("--rss-workers", type=int, default=1,
                        help="--workers of the memory runs; -1: predict's own default, which follows the load "
                             "(default: 1)")
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between memory samples (default: 0.2)")
    parser.add_argument("--work", default=None, help="folder of the inputs, kept (default: a temporary one, "
                        "deleted)")
    parser.add_argument("--json", metavar="FILE", default=None, help="write the rows and the machine state here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    with tempfile.TemporaryDirectory(prefix="bench_predict_") as scratch:
        work = Path(args.work or scratch)
        work.mkdir(parents=True, exist_ok=True)
        result = {"machine": {"cpus": len(os.sched_getaffinity(0)), "torch_threads": torch.get_num_threads(),
                              "torch": torch.__version__, "load_start": load_average()},
                  "options": {k: v for k, v in vars(args).items() if k != "json"}}
        if args.what in ("speed", "all"):
            result["speed"] = bench_speed(args, work)
        if args.what in ("rss", "all"):
            result["rss"] = bench_rss(args, work)
        result["machine"]["load_end"] = load_average()
    for part in ("speed", "rss"):
        if part in result:
            print(f"\n{part}:\n{markdown(result[part])}")
    if args.json:
        from lexactum.runs import write_bytes_atomic

        write_bytes_atomic(Path(args.json), json.dumps(result, indent=2).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
