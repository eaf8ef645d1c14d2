"""Benchmark of the data path: the seed's per-image astropy path against LEXACTUM's batched one.

On the same generated challenge-format files (space: 1 band, ground: 4 bands), times

  (a) original: ``astropy.io.fits.getdata`` + ``ZScaleInterval()(image)``, one band-image at a time;
  (b) ours:     ``read_fits_stack`` into one array + batched ``zscale`` (numba);

each split into reading and normalising, as CPU time (``time.process_time``) and wall time, best of
``--repeats``, per band-image, with the ratio (a)/(b). Then the preparation of the cache and the loader
over it (images/s), and the augmentation (images/s on the CPU, and on the GPU when present) as a share of
one lens_flow training step on the same batch of 64.

    python benchmarks/bench_data.py --n 200 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def best_of(fn, repeats: int) -> dict:
    """Best CPU and wall seconds of ``repeats`` calls of ``fn()``."""
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {"cpu_s": min(cpu), "wall_s": min(wall)}


def object_files(root: Path, survey: str, n: int) -> list[list[Path]]:
    """Band files of each object of a toy test-layout dataset, in channel order."""
    from lexactum.data.surveys import get_survey
    from lexactum.simulate import writer

    fmt = get_survey(survey)
    return [writer.band_paths(root, fmt, "test", i, 100_000 + i) for i in range(n)]


def bench_original_vs_ours(files: list[list[Path]], repeats: int, parallel: bool) -> dict:
    """Per band-image timings of (a) astropy one image at a time and (b) our batched path."""
    from astropy.io import fits
    from astropy.visualization import ZScaleInterval

    from lexactum.data.fits import read_fits_stack
    from lexactum.data.normalise import zscale

    flat = [path for bands in files for path in bands]
    n_objects, n_bands = len(files), len(files[0])
    n_images = len(flat)
    interval = ZScaleInterval()
    raw = [fits.getdata(path) for path in flat]
    buffer = np.empty((n_images, 101, 101), dtype=np.float32)
    zscale(buffer[:1].reshape(1, 1, 101, 101), parallel=parallel)  # load the compiled code first

    def original_read():
        for path in flat:
            fits.getdata(path)

    def original_normalise():
        for image in raw:
            interval(image)

    def original_total():
        for path in flat:
            interval(fits.getdata(path))

    def ours_read():
        read_fits_stack(flat, out=buffer)

    batch = buffer.reshape(n_objects, n_bands, 101, 101)
    scaled = np.empty_like(batch)

    def ours_normalise():
        zscale(batch, out=scaled, parallel=parallel)

    def ours_total():
        read_fits_stack(flat, out=buffer)
        zscale(batch, out=scaled, parallel=parallel)

    rows = {}
    for step, original, ours in (("read", original_read, ours_read),
                                 ("zscale", original_normalise, ours_normalise),
                                 ("read+zscale", original_total, ours_total)):
        a, b = best_of(original, repeats), best_of(ours, repeats)
        rows[step] = {
            "original_cpu_us": 1e6 * a["cpu_s"] / n_images, "original_wall_us": 1e6 * a["wall_s"] / n_images,
            "ours_cpu_us": 1e6 * b["cpu_s"] / n_images, "ours_wall_us": 1e6 * b["wall_s"] / n_images,
            "ratio_cpu": a["cpu_s"] / max(b["cpu_s"], 1e-9), "ratio_wall": a["wall_s"] / max(b["wall_s"], 1e-9),
        }
    return {"band_images": n_images, "steps": rows}


def bench_loader(root: Path, repeats: int) -> dict:
    """Preparing the cache (all cores), then a shuffled pass of the loader over it (main process)."""
    from lexactum.data.cache import prepare
    from lexactum.data.loader import make_loader

    results = {}
    with tempfile.TemporaryDirectory() as warm_up, tempfile.TemporaryDirectory() as cache_dir:
        # The first preparation in a process also loads the compiled kernels (about 1.5 s, once): not timed.
        prepare(root, normalisation="zscale", cache_dir=warm_up, progress=False)
        c0, w0 = time.process_time(), time.perf_counter()
        prepared = prepare(root, normalisation="zscale", cache_dir=cache_dir, progress=False)
        n = len(prepared)
        results["prepare_images_per_s"] = n / (time.perf_counter() - w0)
        results["prepare_cpu_us_per_object_main_process"] = 1e6 * (time.process_time() - c0) / n
        loader = make_loader(prepared, batch_size=64, shuffle=True, num_workers=0)

        def one_epoch():
            for _ in loader:
                pass

        timing = best_of(one_epoch, repeats)
        results["loader_images_per_s"] = n / timing["wall_s"]
        results["loader_cpu_us_per_object"] = 1e6 * timing["cpu_s"] / n
    return results


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_augment(n_bands: int, repeats: int, batch_size: int = 64) -> dict:
    """The seed's augmentation of a batch on the CPU (and the GPU when present), against one lens_flow
    training step (forward, backward, Adam) on the same batch and device."""
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return {name: _augment_on(torch.device(name), n_bands, repeats, batch_size) for name in devices}


def _augment_on(device, n_bands: int, repeats: int, batch_size: int) -> dict:
    import torch

    from lexactum.data.augment import Augmenter
    from lexactum.models import create_model

    generator = torch.Generator(device=device).manual_seed(0)
    batch = torch.rand((batch_size, n_bands, 101, 101), generator=generator, device=device)
    labels = torch.randint(0, 2, (batch_size,), generator=generator, device=device).float()
    augmenter = Augmenter(inplace=True)  # as training uses it
    model = create_model("lens_flow", n_bands).to(device).train()
    optimiser = torch.optim.Adam(model.parameters())
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def augment():
        augmenter(batch, generator)
        _sync(device)

    def train_step(images=batch):
        optimiser.zero_grad(set_to_none=True)
        loss_fn(model(images), labels).backward()
        optimiser.step()
        _sync(device)

    # A stand-in for the cache: batches are gathered from it as the loader does (sorted random indices,
    # numpy fancy indexing), then moved to the device, augmented, and trained on.
    pool = np.random.default_rng(0).random((8 * batch_size, n_bands, 101, 101), dtype=np.float32)
    rng = np.random.default_rng(1)

    def training_step() -> tuple[float, float]:
        """What training runs for one batch; returns the seconds spent augmenting and in the step."""
        indices = np.sort(rng.choice(len(pool), batch_size, replace=False))
        images = torch.from_numpy(np.ascontiguousarray(pool[indices])).to(device)
        start = time.perf_counter()
        augmenter(images, generator)
        _sync(device)
        augmented = time.perf_counter()
        train_step(images)
        return augmented - start, time.perf_counter() - augmented

    augment(), train_step(), training_step()  # compile / warm up
    # Both take milliseconds: a best of 3 is mostly scheduler noise, so both get at least 30 timings,
    # taken in turns so that both see the same moments of a noisy machine.
    augment_s, step_s = [], []
    for _ in range(max(repeats, 30)):
        augment_s.append(best_of(augment, 1)["wall_s"])
        step_s.append(best_of(train_step, 1)["wall_s"])
    # Medians inside a loop of training steps count what the best-of hides: on a CPU the augmentation
    # shares the cores with torch's threads, which keep spinning a while after each operation.
    loop_augment_s, loop_step_s = (np.median(times) for times in
                                   zip(*(training_step() for _ in range(max(repeats, 60))), strict=True))
    return {"augment_images_per_s": batch_size / min(augment_s), "lens_flow_step_ms": 1e3 * min(step_s),
            "augment_share_of_step": min(augment_s) / min(step_s),
            "loop_augment_ms": 1e3 * float(loop_augment_s), "loop_step_ms": 1e3 * float(loop_step_s),
            "loop_augment_share": float(loop_augment_s / loop_step_s)}


def print_table(survey: str, result: dict) -> None:
    print(f"\n{survey}: {result['band_images']} band-images, microseconds per band-image (best of repeats)")
    print(f"  {'step':<12} {'astropy cpu':>12} {'ours cpu':>10} {'ratio':>7}   {'astropy wall':>12} "
          f"{'ours wall':>10} {'ratio':>7}")
    for step, row in result["steps"].items():
        print(f"  {step:<12} {row['original_cpu_us']:>12.1f} {row['ours_cpu_us']:>10.1f} {row['ratio_cpu']:>6.1f}x   "
              f"{row['original_wall_us']:>12.1f} {row['ours_wall_us']:>10.1f} {row['ratio_wall']:>6.1f}x")
    loader = result["loader"]
    print(f"  cache: prepare {loader['prepare_images_per_s']:.0f} images/s (all cores), "
          f"loader {loader['loader_images_per_s']:.0f} images/s")
    for device, row in result["augment"].items():
        print(f"  augmentation on {device}: {row['augment_images_per_s']:.0f} images/s, "
              f"{100 * row['augment_share_of_step']:.1f}% of a lens_flow training step "
              f"({row['lens_flow_step_ms']:.1f} ms at batch 64, best of each); in a loop of training steps "
              f"{100 * row['loop_augment_share']:.1f}% (medians {row['loop_augment_ms']:.1f} and "
              f"{row['loop_step_ms']:.1f} ms)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="objects per survey (default 200)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per measurement; the best is kept")
    parser.add_argument("--surveys", nargs="+", default=["space", "ground"], choices=["space", "ground"])
    parser.add_argument("--parallel", action="store_true", help="batched zscale on numba's threads")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeats < 1:
        parser.error("--n and --repeats must be at least 1")

    from lexactum.simulate.toy import write_toy_dataset

    results = {"n_objects": args.n, "repeats": args.repeats, "parallel": args.parallel,
               "cpu_count": os.cpu_count(), "surveys": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for survey in args.surveys:
            root = write_toy_dataset(Path(tmp) / survey, survey=survey, n=args.n, layout="test",
                                     mask_fraction=0.3)
            files = object_files(root, survey, args.n)
            result = bench_original_vs_ours(files, args.repeats, args.parallel)
            result["loader"] = bench_loader(root, args.repeats)
            result["augment"] = bench_augment(len(files[0]), args.repeats)
            results["surveys"][survey] = result
            print_table(survey, result)
    results["load_average"] = list(os.getloadavg())  # 1, 5, 15 minutes: the end of the run
    print(f"\nload average at the end of the run: {results['load_average']} on {results['cpu_count']} cores")
    if args.json:
        tmp_json = args.json.with_name(args.json.name + ".part")
        tmp_json.write_text(json.dumps(results, indent=2) + "\n")
        os.replace(tmp_json, args.json)
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
