"""How the processes of a DDP run share the training data: each takes its own slice of every global batch.

The loader's sampler draws the epoch's order from ``(seed, epoch)`` alone and cuts it into global batches of
``--batch-size``; every process draws the same order and keeps its ``1/W`` of each batch. So the images of
one optimiser step over all processes are exactly the batch a single process would have trained on, the
epochs, the shuffle and a resume stay as they are, and DDP's mean of the W per-process mean losses is the
mean loss of the global batch (the slices are equal, as ``--batch-size`` must be a multiple of W). Lightning's
own ``DistributedSampler`` is not used: it would deal out whole batches of the sampler (W times the global
batch per step) in a second shuffle of its own, and pad the epoch with repeated batches.

Validation is not split: every process scores the whole validation part, so that the validation AUC (which
needs all scores at once) is the same number on every process without gathering them.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import DataLoader, Sampler

from lexactum.data.loader import ChallengeDataModule


class RankSlices(Sampler):
    """Process ``rank``'s slice of each batch of ``sampler`` (index arrays), in ``world_size`` near-equal parts.

    A last batch smaller than ``world_size`` is topped up from its own first images, so that no process
    gets an empty batch (DDP needs every process to take every step)."""

    def __init__(self, sampler: Sampler, rank: int, world_size: int):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not among {world_size} processes")
        self.sampler, self.rank, self.world_size = sampler, int(rank), int(world_size)

    def set_epoch(self, epoch: int) -> None:
        """Lightning sets the epoch of the loader's sampler: passed on to the one that draws the order."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        for batch in self.sampler:
            batch = np.asarray(batch)
            if len(batch) < self.world_size:
                batch = np.resize(batch, self.world_size)  # repeats the batch's own images
            yield np.array_split(batch, self.world_size)[self.rank]


def rank_loader(loader: DataLoader, rank: int, world_size: int) -> DataLoader:
    """``loader`` (of whole batches, ``batch_size=None``) serving only process ``rank``'s slice of each."""
    if world_size == 1:
        return loader
    extra = ({"persistent_workers": loader.persistent_workers, "prefetch_factor": loader.prefetch_factor}
             if loader.num_workers > 0 else {})
    return DataLoader(loader.dataset, sampler=RankSlices(loader.sampler, rank, world_size), batch_size=None,
                      num_workers=loader.num_workers, pin_memory=loader.pin_memory, **extra)


class TrainingDataModule(ChallengeDataModule):
    """The challenge data of a training run: under DDP each process trains on its slice of every global batch
    (``batch_size`` is the global batch); validation and test loaders are whole on every process."""

    def train_dataloader(self) -> DataLoader:
        loader = super().train_dataloader()
        trainer = self.trainer
        if trainer is None:
            return loader
        return rank_loader(loader, trainer.global_rank, trainer.world_size)
