"""Where the arithmetic runs: device names, Lightning's accelerator and precision, CPU threads.

Training, evaluation and prediction all take a ``--device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) and
must agree on what it means and on the one-line refusal of a device this machine lacks, so the resolution
lives here once. torch is imported inside the functions: the CLI imports this module to parse arguments.
"""

from __future__ import annotations

import contextlib
import os
import platform

from lexactum.errors import LexactumError

#: Precisions accepted by --precision (Lightning's names).
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true", "64")


def resolve_device(device=None):
    """A torch.device from ``auto`` (the GPU when there is one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``;
    a torch.device is checked like its name. A device this machine lacks is one LexactumError naming it."""
    import torch

    text = "auto" if device is None else str(device).strip().lower()  # a torch.device is checked as its name
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(text)
    except RuntimeError:
        raise LexactumError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if resolved.type not in ("cpu", "cuda"):
        raise LexactumError(f"device {device!r}: LEXACTUM runs on cpu, cuda or cuda:N")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise LexactumError(f"device {device!r} asked for, but torch sees no CUDA GPU on this machine")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise LexactumError(f"device {device!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    return resolved


def lightning_device(device="auto") -> tuple:
    """``auto``/``cpu``/``cuda``/``cuda:N`` -> (Lightning accelerator, its devices, the torch device)."""
    import torch

    resolved = resolve_device(device)
    if resolved.type == "cuda":
        index = 0 if resolved.index is None else resolved.index
        return "cuda", [index], torch.device("cuda", index)
    return "cpu", 1, resolved


def resolve_precision(precision: str | None, accelerator: str) -> str:
    """The Lightning precision: ``bf16-mixed`` on a GPU that has bf16 (else ``16-mixed``), ``32-true`` on CPU."""
    if precision is None:
        if accelerator == "cuda":
            import torch

            return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        return "32-true"
    text = str(precision).strip().lower()
    if text not in PRECISIONS:
        raise LexactumError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    return {"32": "32-true", "64": "64-true"}.get(text, text)


def device_name(device) -> str:
    """What the timings ran on: the GPU's name, or the CPU model."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return f"CPU: {line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"CPU: {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def synchronise(device) -> None:
    """Wait for the GPU's queued work (timings must include it); nothing on the CPU."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one), at least 1."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def idle_cpu_count() -> int:
    """Cores not busy with other processes (at least 1), from the 1-minute load average.

    OpenMP threads that must share busy cores spin and wait: on 2 cores shared with other work, one
    lens_flow training step took 0.58 s with 2 threads and 0.037 s with 1.
    """
    cores = usable_cores()
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(cores, int(cores - busy + 0.5)))


@contextlib.contextmanager
def cpu_threads(count: int | None = None):
    """Run the block with ``count`` torch CPU threads (default: the idle cores, no more than now)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(before, count or idle_cpu_count())))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
