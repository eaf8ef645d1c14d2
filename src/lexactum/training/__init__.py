"""Training a lens finder with Lightning: the module, the Trainer, and :func:`train` that does a whole run.

A run is reproducible and resumable: everything random in an epoch is seeded from the run's seed and the
epoch alone (the loader's shuffle and the augmentation from ``(seed, epoch)``, dropout from ``(seed, epoch,
batch)``), so a run resumed from ``last.ckpt`` ends with the same weights as one that was never interrupted
(exactly, on CPU; tested). Lightning checkpoints are pickles: they are only ever read
from this run's own folder, with ``weights_only=True``; the model file handed to users is safetensors.

Nothing is lost to a fault: checkpoints are written atomically after every epoch (:class:`AtomicCheckpointIO`),
a resume is checked whole (its checkpoint readable, no fewer epochs than trained) before the run folder is
touched, the model file is written right after training and only then is the test part scored, and no model
file is replaced unless asked (``overwrite``) or unless it is the resumed run's own, which its metadata shows.

Several processes (Lightning DDP: ``devices``, ``num_nodes``) train as one process would with the same
global ``batch_size``: each trains on its slice of every batch, and global rank 0 alone writes the run.

The package: :mod:`.module` (the LightningModule), :mod:`.trainer` (the Trainer, checkpoints), :mod:`.config`
(the settings), :mod:`.sharding` (each process's slice of the batches), :mod:`.run` (a whole run).
"""

from __future__ import annotations

from lexactum.training.config import CHALLENGE_SPLIT, MAX_SEED, RESUMABLE_OVERRIDES, TrainConfig, parse_split
from lexactum.training.module import LensFinderModule, derive_seed, quiet_warnings, validation_auc
from lexactum.training.run import TrainResult, train
from lexactum.training.trainer import (
    AtomicCheckpointIO,
    EpochMetricsCSV,
    GivenPatience,
    build_trainer,
    epochs_done,
    load_checkpoint,
)

__all__ = [
    "AtomicCheckpointIO", "CHALLENGE_SPLIT", "EpochMetricsCSV", "GivenPatience", "LensFinderModule", "MAX_SEED",
    "RESUMABLE_OVERRIDES", "TrainConfig", "TrainResult", "build_trainer", "derive_seed", "epochs_done",
    "load_checkpoint", "parse_split", "quiet_warnings", "train", "validation_auc",
]
