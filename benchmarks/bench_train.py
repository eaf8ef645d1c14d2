"""Training and inference speed of the six networks for 1 and 4 bands, and one CPU epoch of lens_flow.

Not a test: run ``python benchmarks/bench_train.py`` (``--help`` for options). For each network and band
count it measures training images/s (forward, backward, Adam step, from a real loader over in-memory
images), the share of the step time spent waiting for the next batch, and inference images/s and ms per
image. On a GPU it tries the variants that can help (channels_last memory format, torch.compile) under bf16
autocast and reports each. Finally it times one Lightning epoch of lens_flow over 5,000 space images on the
CPU, through the same code path as ``lexactum train``. Prints a table; ``--json FILE`` writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from lexactum.data.loader import make_loader
from lexactum.devices import device_name, idle_cpu_count, resolve_device, synchronise
from lexactum.models import create_model, list_models

#: Training steps timed on a CPU: the big networks take seconds per step on 2 cores.
CPU_STEPS = {"lens_flow": 20}
CPU_DEFAULT_STEPS = 3
GPU_STEPS = 30


def fake_prepared(n: int, bands: int, seed: int = 0) -> SimpleNamespace:
    """What the loader needs from prepared data: (N, C, 101, 101) float32 images in [0, 1] and labels."""
    rng = np.random.default_rng(seed)
    images = rng.random((n, bands, 101, 101), dtype=np.float32)
    labels = (rng.random(n) < 0.5).astype(np.int64)
    return SimpleNamespace(images=images, labels=labels, ids=100_000 + np.arange(n))


def _prepare_model(name: str, bands: int, device: torch.device, variant: str):
    model = create_model(name, bands).to(device)
    if "channels_last" in variant:
        model = model.to(memory_format=torch.channels_last)
    runner = torch.compile(model) if "compile" in variant else model
    return model, runner


def bench_training(name: str, bands: int, device: torch.device, variant: str, steps: int, batch_size: int) -> dict:
    """Training images/s and the share of wall time spent waiting for batches (loader -> device)."""
    model, runner = _prepare_model(name, bands, device, variant)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    warmup = 3 if "compile" in variant else 1
    prepared = fake_prepared(batch_size * (steps + warmup), bands)
    loader = make_loader(prepared, np.arange(len(prepared.labels)), batch_size, shuffle=True, seed=0)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    memory_format = torch.channels_last if "channels_last" in variant else torch.contiguous_format
    model.train()
    waiting = computing = 0.0
    images_done = 0
    batches = iter(loader)
    for step in range(steps + warmup):
        started = time.perf_counter()
        images, labels, _ = next(batches)
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        labels = labels.to(device, non_blocking=True)
        synchronise(device)
        fetched = time.perf_counter()
        with autocast:
            loss = loss_fn(runner(images).float(), labels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        synchronise(device)
        done = time.perf_counter()
        if step >= warmup:
            waiting += fetched - started
            computing += done - fetched
            images_done += len(labels)
    total = waiting + computing
    return {"train_images_per_s": images_done / total, "data_wait_share": waiting / total}


def bench_inference(name: str, bands: int, device: torch.device, variant: str, batches: int,
                    batch_size: int) -> dict:
    model, runner = _prepare_model(name, bands, device, variant)
    model.eval()
    memory_format = torch.channels_last if "channels_last" in variant else torch.contiguous_format
    images = torch.rand(batch_size, bands, 101, 101, device=device).contiguous(memory_format=memory_format)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    with torch.inference_mode(), autocast:
        for _ in range(3 if "compile" in variant else 1):
            runner(images)
        synchronise(device)
        started = time.perf_counter()
        for _ in range(batches):
            runner(images)
        synchronise(device)
    seconds = time.perf_counter() - started
    rate = batches * batch_size / seconds
    return {"infer_images_per_s": rate, "ms_per_image": 1000.0 / rate}


def bench_lightning_epoch(n_images: int = 5000, batch_size: int = 32, augment: bool = True) -> dict:
    """Seconds for one Lightning training epoch of lens_flow over ``n_images`` space images on the CPU."""
    import lightning as L

    from lexactum import runs
    from lexactum.training import LensFinderModule, build_trainer, quiet_warnings

    L.seed_everything(0, verbose=False)
    prepared = fake_prepared(n_images + 100, 1)
    train_loader = make_loader(prepared, np.arange(n_images), batch_size, shuffle=True, seed=0, num_workers=0)
    val_loader = make_loader(prepared, np.arange(n_images, n_images + 100), 256, num_workers=0)
    module = LensFinderModule("lens_flow", 1, augment=augment, seed=0)
    with tempfile.TemporaryDirectory() as run_dir, quiet_warnings():
        trainer = build_trainer(run_dir, epochs=1, device="cpu", progress=False)
        started = time.perf_counter()
        trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader)
        wall = time.perf_counter() - started
        epoch = runs.read_csv(Path(run_dir) / runs.METRICS_CSV)[0]
    return {"images": n_images, "batch_size": batch_size, "augment": augment, "epoch_seconds": float(epoch["seconds"]),
            "fit_seconds": wall, "train_images_per_s": n_images / float(epoch["seconds"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (auto: GPU if any)")
    parser.add_argument("--networks", default=None, help="comma-separated names (default: all six)")
    parser.add_argument("--bands", default="1,4", help="band counts to try")
    parser.add_argument("--batch-size", type=int, default=None, help="training batch (default: 8 CPU, 64 GPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps per configuration")
    parser.add_argument("--variants", default=None,
                        help="GPU variants, comma-separated from eager, channels_last, compile, "
                             "channels_last+compile (default: eager,channels_last,compile)")
    parser.add_argument("--epoch-images", type=int, default=5000, help="images in the CPU lens_flow epoch (0: skip)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: the idle cores)")
    parser.add_argument("--json", metavar="FILE", default=None, help="also write the results as JSON")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    on_gpu = device.type == "cuda"
    networks = args.networks.split(",") if args.networks else list_models()
    bands_list = [int(b) for b in args.bands.split(",")]
    variants = (args.variants or ("eager,channels_last,compile" if on_gpu else "eager")).split(",")
    batch_size = args.batch_size or (64 if on_gpu else 8)
    if on_gpu:
        torch.backends.cudnn.benchmark = True
    else:  # as training does: only the idle cores (busy ones make OpenMP threads wait)
        torch.set_num_threads(args.threads or idle_cpu_count())
    hardware = device_name(device) + ("" if on_gpu else f", {torch.get_num_threads()} torch threads")
    print(f"device: {device} = {hardware}; training batch {batch_size}; bf16 autocast: {on_gpu}", flush=True)

    rows = []
    header = f"{'network':<14}{'bands':>5} {'variant':<22}{'train img/s':>12}{'data wait':>10}" \
             f"{'infer img/s':>12}{'ms/img':>9}"
    print(header)
    print("-" * len(header))
    for name in networks:
        for bands in bands_list:
            for variant in variants:
                steps = args.steps or (GPU_STEPS if on_gpu else CPU_STEPS.get(name, CPU_DEFAULT_STEPS))
                try:
                    row = {"network": name, "bands": bands, "variant": variant, "device": str(device),
                           "batch_size": batch_size, "steps": steps}
                    row.update(bench_training(name, bands, device, variant, steps, batch_size))
                    row.update(bench_inference(name, bands, device, variant, batches=max(2, steps // 2),
                                               batch_size=256 if on_gpu else 32))
                except Exception as exc:  # noqa: BLE001 - e.g. torch.compile unavailable: report, go on
                    row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                    print(f"{name:<14}{bands:>5} {variant:<22}failed: {row['error']}", flush=True)
                    rows.append(row)
                    continue
                rows.append(row)
                print(f"{name:<14}{bands:>5} {variant:<22}{row['train_images_per_s']:>12.1f}"
                      f"{100 * row['data_wait_share']:>9.1f}%{row['infer_images_per_s']:>12.1f}"
                      f"{row['ms_per_image']:>9.3f}", flush=True)

    result = {"device": str(device), "hardware": hardware, "torch": torch.__version__, "rows": rows}
    if args.epoch_images:
        epoch = bench_lightning_epoch(args.epoch_images)
        result["cpu_lens_flow_epoch"] = epoch
        print(f"\nlens_flow, one Lightning epoch on the CPU over {epoch['images']} space images (batch "
              f"{epoch['batch_size']}, augmentation on): {epoch['epoch_seconds']:.1f} s "
              f"({epoch['train_images_per_s']:.0f} images/s)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
