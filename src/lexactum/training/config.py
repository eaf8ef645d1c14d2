"""What a training run is asked to do (:class:`TrainConfig`), checked in one place, recorded in config.json, and
read back for a resume that may change only what does not change the training."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lexactum import runs
from lexactum.checks import positive_whole
from lexactum.data.loader import SEED_SPLIT  # the seed's split of one dataset: 19% / 1% / 80%
from lexactum.errors import LexactumError
from lexactum.grades import LENS_MIN_GRADE, NON_LENS_BELOW, TOP_GRADE

#: With a separate test dataset (the challenge's protocol) the training set is split train / validation.
CHALLENGE_SPLIT = (0.95, 0.05, 0.0)


#: The largest seed: numpy's, which Lightning's ``seed_everything`` seeds (2**32 - 1).
MAX_SEED = 2**32 - 1


#: Where this launch runs (Lightning DDP): recorded, but never taken from a resumed run's config.json, whose
#: machines may not be this one's; a resume may give any (the global batch, hence the training, is the same).
LAUNCH_SETTINGS = ("accelerator", "devices", "num_nodes", "strategy")

#: Settings a resumed run may change; the others must match the run's config.json.
RESUMABLE_OVERRIDES = ("epochs", "device", "precision", "patience", "progress", "num_workers", "cache_dir",
                       "bootstrap", "model_out", "threads", "overwrite", *LAUNCH_SETTINGS)


def parse_split(text: str) -> tuple[float, ...]:
    """'0.19,0.01,0.80' -> (0.19, 0.01, 0.8); a clear error otherwise (the sum is checked by training)."""
    try:
        values = tuple(float(part) for part in str(text).split(","))
    except ValueError:
        values = ()
    if len(values) not in (2, 3):
        raise LexactumError(f"--split must be 3 comma-separated fractions like 0.19,0.01,0.80 (or 2 with "
                            f"--test-dataset), got {text!r}")
    return values


@dataclass
class TrainConfig:
    """Everything a training run needs; :func:`train` validates it and records it in ``config.json``."""

    dataset: str | os.PathLike
    network: str = "lens_flow"
    survey: str | None = None
    epochs: int = 10
    batch_size: int = 8
    """The global batch: images per optimiser step over all processes; each of W processes takes
    ``batch_size / W`` of every batch (so W must divide it)."""
    augment: bool = True
    split: tuple[float, float, float] | None = None
    """Train / validation / test fractions; default the seed's 19/1/80, or 95/5/0 with ``test_dataset``."""
    test_dataset: str | os.PathLike | None = None
    seed: int = 0
    device: str = "auto"
    precision: str | None = None
    patience: int | None = None
    resume: bool = False
    """Continue the run in ``run_dir`` from its ``last.ckpt``."""
    run_dir: str | os.PathLike | None = None
    runs_root: str | os.PathLike = runs.RUNS_ROOT
    model_out: str | os.PathLike | None = None
    """Model file; default ``models/<survey>_<network>_<epochs>epochs.safetensors``."""
    models_dir: str | os.PathLike = "models"
    overwrite: bool = False
    """Replace an existing model file. Without it an explicit ``model_out`` that exists is refused before
    training, and a default name that is taken gives way to a free ``-2``, ``-3``... name."""
    backup_existing: bool = False
    """Keep an existing file at ``model_out`` under a dated backup name beside it, then write the new model
    there (the seed's fixed file names, which its load mode expects)."""
    cache_dir: str | os.PathLike | None = None
    normalisation: str = "zscale"
    num_workers: int | None = None
    threads: int | None = None
    """Torch CPU threads when training on the CPU; default the idle cores (from the load average). A
    resumed run takes the count its run used: sums split over another number of threads round
    differently, and the resumed run would not end bit-identical to an uninterrupted one."""
    bootstrap: int = 1000
    """Bootstrap resamples for the test metrics' intervals (0: none)."""
    progress: bool | None = None
    accelerator: str | None = None
    """``cpu``, ``gpu`` or ``auto`` with ``devices``; default: from ``device``."""
    devices: int | None = None
    """Processes per node (one per GPU); default 1."""
    num_nodes: int = 1
    strategy: str = "auto"
    """Lightning's strategy; ``auto``: DDP when more than one process."""
    extra_labels: str | os.PathLike | None = None
    """Grades (a merged table of ``lexactum grades`` or a grader's export) of objects in ``extra_dataset``:
    added to the training part as lenses (mean grade >= ``extra_min_grade``) and non-lenses (below 0.5)."""
    extra_dataset: str | os.PathLike | None = None
    """Where the graded objects' images are: any input ``lexactum predict`` reads."""
    extra_ids: str | os.PathLike | None = None
    """The IDs of an ``extra_dataset`` that is a .npy cube (or an HDF5 one without them), as ``predict --ids``."""
    extra_min_grade: float = LENS_MIN_GRADE

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, **overrides) -> TrainConfig:
        """The configuration saved in ``run_dir``'s config.json, set to resume, with ``overrides`` applied.

        Only settings that do not change what is being trained may be overridden (see
        :data:`RESUMABLE_OVERRIDES`); asking for a different dataset, network, split... is an error.
        """
        saved = runs.read_config(run_dir)
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in saved.get("config", {}).items() if k in names and k not in LAUNCH_SETTINGS}
        if "dataset" not in values:
            raise LexactumError(f"{Path(run_dir) / runs.CONFIG}: has no training configuration")
        for key, value in overrides.items():
            if key not in names:
                raise LexactumError(f"unknown training setting {key!r}")
            if key in RESUMABLE_OVERRIDES or value is None:
                if value is not None:
                    values[key] = value
                continue
            if not _same_setting(key, value, values.get(key)):
                raise LexactumError(
                    f"--resume {run_dir}: {key} was {values.get(key)!r} in that run, not {value!r} "
                    f"(a resumed run may change only {', '.join(RESUMABLE_OVERRIDES)})")
        if overrides.get("threads") is None and saved.get("torch_threads") \
                and str(saved.get("device", "")).startswith("cpu"):  # a GPU run's count meant nothing
            values["threads"] = int(saved["torch_threads"])
        values.update(resume=True, run_dir=str(run_dir))
        if values.get("split") is not None:
            values["split"] = tuple(values["split"])
        return cls(**values)

    def resolved_split(self) -> tuple[float, ...]:
        """(train, validation, test) fractions; two numbers mean no test part."""
        if self.split is None:
            return CHALLENGE_SPLIT if self.test_dataset is not None else SEED_SPLIT
        try:
            values = tuple(float(f) for f in self.split)
        except (TypeError, ValueError):
            raise LexactumError(f"split must be numbers (train, validation, test), got {self.split!r}") from None
        return values + (0.0,) if len(values) == 2 else values

    def distribution(self):
        """Where the run trains: a :class:`lexactum.distributed.Distribution`, checked (one line for a device
        count this machine cannot give)."""
        from lexactum.distributed import resolve_distribution

        return resolve_distribution(self.device, self.accelerator, self.devices, self.num_nodes, self.strategy)

    def validate(self):
        """A LexactumError naming the first bad setting; returns the checked :meth:`distribution`."""
        positive_whole(self.epochs, "epochs")
        positive_whole(self.batch_size, "batch_size")
        for name in ("patience", "threads"):  # None: not asked for
            if getattr(self, name) is not None:
                positive_whole(getattr(self, name), name)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) \
                or not 0 <= self.seed <= MAX_SEED:
            raise LexactumError(f"seed must be a whole number from 0 to {MAX_SEED}, got {int(self.seed)}"
                                if isinstance(self.seed, (int, np.integer)) else
                                f"seed must be a whole number from 0 to {MAX_SEED}, got {self.seed!r}")
        from lexactum.evaluation.metrics import check_bootstrap  # the one bound, shared with 'evaluate'
        check_bootstrap(self.bootstrap)
        split = self.resolved_split()
        if len(split) != 3 or any(not math.isfinite(f) or f < 0 for f in split):
            raise LexactumError(f"split must be 3 fractions >= 0 (train, validation, test), got {self.split!r}")
        if abs(sum(split) - 1.0) > 1e-6:
            raise LexactumError(f"split fractions must sum to 1, got {split!r} (sum {sum(split):.6g})")
        if split[0] <= 0 or split[1] <= 0:
            raise LexactumError(f"split needs a training and a validation part, got {split!r}")
        if self.test_dataset is None and split[2] <= 0:
            raise LexactumError(f"split {split!r} leaves no test part; give a test fraction or a test dataset")
        if self.test_dataset is not None and split[2] > 0:
            raise LexactumError(f"split {split!r} has a test part, but the test dataset is scored instead: "
                                "give train,validation fractions only")
        from lexactum.distributed import launcher_world_size
        from lexactum.models import list_models

        if self.network not in list_models():
            raise LexactumError(f"unknown network {self.network!r}: choose one of {', '.join(list_models())}")
        self._validate_extras()
        distribution = self.distribution()
        if self.batch_size % distribution.world_size:
            raise LexactumError(f"--batch-size {self.batch_size} is the global batch and must divide evenly among "
                                f"the {distribution.world_size} processes (--devices x --num-nodes): give a "
                                f"multiple of {distribution.world_size}")
        if distribution.is_distributed and self.run_dir is None and (
                distribution.num_nodes > 1 or launcher_world_size() > 1):
            raise LexactumError("--run-dir DIR is needed on several nodes or under srun/torchrun: their processes "
                                "start apart and must agree on the run folder (e.g. --run-dir runs/$SLURM_JOB_ID)")
        return distribution

    def _validate_extras(self) -> None:
        if (self.extra_labels is None) != (self.extra_dataset is None):
            given, needed = (
                ("--extra-labels", "--extra-dataset PATH (where the graded objects' images are)")
                if self.extra_dataset is None else ("--extra-dataset", "--extra-labels FILE (their grades)"))
            raise LexactumError(f"{given} needs {needed}")
        if self.extra_ids is not None and self.extra_dataset is None:
            raise LexactumError("--extra-ids gives the IDs of an --extra-dataset cube: give --extra-dataset too")
        grade = self.extra_min_grade
        if isinstance(grade, bool) or not isinstance(grade, (int, float, np.number)) \
                or not NON_LENS_BELOW <= float(grade) <= TOP_GRADE:
            raise LexactumError(f"--extra-min-grade must be a number from {NON_LENS_BELOW:g} to {TOP_GRADE}, "
                                f"got {grade!r}")

    def record(self) -> dict:
        """The settings as JSON-friendly values (paths as strings, the split resolved)."""
        values = dataclasses.asdict(self)
        values["split"] = list(self.resolved_split())
        for key, value in values.items():
            if isinstance(value, os.PathLike):
                values[key] = os.fspath(value)
        values.pop("resume")
        return values


def _same_setting(key: str, given, saved) -> bool:
    """Whether a setting given for a resumed run equals the run's saved one (paths resolved, splits padded)."""
    if given is None or saved is None:
        return given is None and saved is None
    if key in ("dataset", "test_dataset", "runs_root", "models_dir", "extra_labels", "extra_dataset",
               "extra_ids"):
        return Path(given).expanduser().resolve() == Path(saved).expanduser().resolve()
    if key == "split":
        given, saved = (list(map(float, v)) + [0.0] * (3 - len(v)) for v in (given, saved))
        return len(given) == len(saved) and bool(np.allclose(given, saved))
    return given == saved
