"""Many processes, GPUs and nodes through Lightning: the options ``train`` and ``predict`` share, checked once.

``--devices N --num-nodes M`` run N processes per node on M nodes with Lightning's DDP (torch.distributed;
gloo on CPU, NCCL on GPU). The same command works on one machine (Lightning starts the other processes
itself by running the command again), under ``torchrun`` and under Slurm's ``srun`` (Lightning reads the
ranks from their environment). Work that must happen once (claiming an output folder, writing a record,
merging results) is done by global rank 0; :func:`is_global_zero` tells it apart even before the process
group exists, from the variables the launchers set. torch and lightning are imported inside the functions:
the CLI imports this module to parse arguments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from lexactum.errors import LexactumError

ACCELERATORS = ("auto", "cpu", "gpu")
#: Lightning's strategy names accepted by --strategy (``auto``: DDP when more than one process, else none).
#: Not FSDP: it shards the weights among the GPUs, for networks too large for one (ours are small), and
#: rank 0 would then hold only its shard of the weights it writes to the model file.
STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true")


@dataclass(frozen=True)
class Distribution:
    """Where and on how many processes a command runs, as Lightning's Trainer takes it."""

    accelerator: str
    """``cpu`` or ``cuda``."""
    devices: int | list[int]
    """Processes per node: a count, or the GPU indices of a single ``--device cuda:N``."""
    num_nodes: int
    strategy: str

    @property
    def world_size(self) -> int:
        per_node = len(self.devices) if isinstance(self.devices, list) else self.devices
        return per_node * self.num_nodes

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def trainer_kwargs(self) -> dict:
        return {"accelerator": self.accelerator, "devices": self.devices, "num_nodes": self.num_nodes,
                "strategy": self.strategy}

    def describe(self) -> str:
        if not self.is_distributed:
            return self.accelerator
        return f"{self.world_size} {self.accelerator} processes ({self.strategy}, {self.num_nodes} node(s))"


def add_distribution_arguments(parser) -> None:
    """--accelerator, --devices, --num-nodes, --strategy: one definition for every command that takes them."""
    group = parser.add_argument_group("many devices and nodes (Lightning DDP)")
    group.add_argument("--accelerator", choices=ACCELERATORS, default=None,
                       help="cpu, gpu or auto (default: from --device, which is auto: the GPU when there is one)")
    group.add_argument("--devices", type=int, default=None, metavar="N",
                       help="processes per node, one per GPU (or N CPU processes with --accelerator cpu); "
                            "default 1")
    group.add_argument("--num-nodes", type=int, default=1, metavar="M",
                       help="nodes (machines) taking part; under Slurm, srun starts the tasks")
    group.add_argument("--strategy", choices=STRATEGIES, default="auto",
                       help="Lightning strategy; auto: ddp when devices x nodes > 1")


def resolve_distribution(device="auto", accelerator: str | None = None, devices: int | None = None,
                         num_nodes: int = 1, strategy: str = "auto") -> Distribution:
    """The checked Distribution of the command-line options; one LexactumError line for a value that cannot run.

    ``--device`` names one device (``cuda:1``); ``--accelerator``/``--devices`` count them. Asking for a
    particular device and for several at once is refused, and so is asking for more GPUs than this machine
    has (or more CPU processes than it has cores).
    """
    from lexactum.checks import positive_whole
    from lexactum.devices import lightning_device

    num_nodes = positive_whole(num_nodes, "--num-nodes")
    if devices is not None:
        devices = positive_whole(devices, "--devices")
    named = str(device or "auto").strip().lower()
    if named != "auto" and (accelerator is not None or devices is not None):
        raise LexactumError(f"--device {device} names one device; --accelerator/--devices count them: "
                            "give one or the other")
    if accelerator is None or (named != "auto"):
        kind, indices, _ = lightning_device(device)
        if devices is None or devices == 1:
            return _checked(Distribution(kind, indices, num_nodes, strategy))
        accelerator = "gpu" if kind == "cuda" else "cpu"
    kind = _accelerator_kind(accelerator)
    count = 1 if devices is None else devices
    _check_count(kind, count)
    return _checked(Distribution(kind, count, num_nodes, strategy))


def launcher_world_size() -> int:
    """How many processes torchrun (``WORLD_SIZE`` beside ``RANK``) or srun (``SLURM_NTASKS`` beside
    ``SLURM_PROCID``) started at once, this one among them; 1 where neither did (a plain command, whose
    other processes Lightning itself starts from inside its fit)."""
    if os.environ.get("RANK") is not None:
        return int(os.environ.get("WORLD_SIZE", "1") or 1)
    if os.environ.get("SLURM_PROCID") is not None:
        return int(os.environ.get("SLURM_NTASKS", "1") or 1)
    return 1


def _accelerator_kind(accelerator: str) -> str:
    import torch

    if accelerator not in ACCELERATORS:
        raise LexactumError(f"unknown accelerator {accelerator!r}: choose one of {', '.join(ACCELERATORS)}")
    if accelerator == "gpu" and not torch.cuda.is_available():
        raise LexactumError("--accelerator gpu asked for, but torch sees no CUDA GPU on this machine")
    if accelerator == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if accelerator == "gpu" else "cpu"


def _check_count(kind: str, count: int) -> None:
    """More GPUs than this machine has, or more CPU processes than the cores it lets us use, are refused;
    under srun or torchrun each process is given its own share of cores, so only the GPUs are counted."""
    import torch

    from lexactum.devices import usable_cores

    if kind == "cuda" and count > torch.cuda.device_count():
        raise LexactumError(f"--devices {count}: this machine has {torch.cuda.device_count()} GPU(s)")
    cores = usable_cores()
    if kind == "cpu" and count > cores and launcher_world_size() == 1:
        raise LexactumError(f"--devices {count} CPU processes: this machine lets us use {cores} core(s)")


def _checked(distribution: Distribution) -> Distribution:
    """DDP when more than one process and no strategy was chosen (a strategy of many processes on one is
    dropped); under srun or torchrun, as many processes as they started."""
    started = launcher_world_size()
    if started > 1 and started != distribution.world_size:
        raise LexactumError(f"srun/torchrun started {started} processes, but --devices x --num-nodes make "
                            f"{distribution.world_size}: give --devices (per node) and --num-nodes that multiply "
                            f"to {started}")
    strategy = distribution.strategy
    if strategy == "auto" and distribution.is_distributed:
        strategy = "ddp"
    elif strategy not in ("auto",) and not distribution.is_distributed:
        strategy = "auto"  # Lightning's DDP on one process only adds start-up time
    return Distribution(distribution.accelerator, distribution.devices, distribution.num_nodes, strategy)


def is_global_zero() -> bool:
    """Whether this process is (or will be) global rank 0, from the launchers' variables, before any process
    group exists: Lightning's own re-launched processes (LOCAL_RANK, NODE_RANK), torchrun (RANK) and srun
    (SLURM_PROCID when Slurm starts several tasks)."""
    if os.environ.get("RANK") is not None:
        return int(os.environ["RANK"]) == 0
    if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and os.environ.get("SLURM_PROCID") is not None:
        return int(os.environ["SLURM_PROCID"]) == 0
    return int(os.environ.get("LOCAL_RANK", "0") or 0) == 0 and int(os.environ.get("NODE_RANK", "0") or 0) == 0


def follow_launcher() -> None:
    """In a process a launcher started for rank > 0, end this process when its parent ends.

    Lightning starts the other processes of a one-machine DDP run as children of the command; a ``kill -9``
    of the command would leave them waiting for it forever (and holding their GPU). torchrun's and srun's
    tasks end with their parent too, which is what those launchers want anyway. Rank 0 is left alone."""
    if is_global_zero() or os.environ.get("LOCAL_RANK") is None and os.environ.get("RANK") is None:
        return
    from lexactum.processes import die_with

    die_with(os.getppid())
