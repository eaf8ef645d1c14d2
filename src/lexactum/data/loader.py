"""Batches from a prepared dataset, the seed's random split, and a Lightning DataModule.

The loader serves whole batches: a sampler yields arrays of indices and the dataset gathers each batch with
one fancy-index read of the memory map (indices sorted for locality), so no per-image Python work is done.
Augmentation is not done here: the LightningModule augments batches on the device.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lexactum.data.cache import PreparedData, prepare
from lexactum.data.layouts import ChallengeDataset
from lexactum.errors import DataError, LexactumError

#: The seed's split: 19% training, 1% validation, 80% test.
SEED_SPLIT = (0.19, 0.01, 0.80)
PART_NAMES = ("training", "validation", "test")


class BatchDataset(Dataset):
    """Item ``batch`` (an index array) -> ``(images (B,C,H,W), labels (B,), indices (B,))``.

    Images and labels are float32, indices int64.

    Indices are positions in the prepared data; they come back sorted. Pickles without the image data
    (worker processes reopen the memory map). ``extra`` (images ``(M, C, H, W)`` in memory, labels ``(M,)``)
    adds M examples after the prepared data's: positions ``len(prepared) + k``.
    """

    def __init__(self, prepared: PreparedData, extra: tuple[np.ndarray, np.ndarray] | None = None):
        self.images = prepared.images
        self.n_prepared = len(prepared.labels)
        self.extra_images = None if extra is None else extra[0]
        labels = [prepared.labels] if extra is None else [prepared.labels, extra[1]]
        self.labels = np.concatenate(labels).astype(np.float32)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        indices = np.sort(np.asarray(batch, dtype=np.int64))
        if self.extra_images is None or not len(indices) or indices[-1] < self.n_prepared:
            images = np.ascontiguousarray(self.images[indices])
        else:
            cut = int(np.searchsorted(indices, self.n_prepared))
            images = np.concatenate([self.images[indices[:cut]],
                                     self.extra_images[indices[cut:] - self.n_prepared]])
        return torch.from_numpy(images), torch.from_numpy(self.labels[indices]), torch.from_numpy(indices)

    def __getstate__(self):
        state = dict(self.__dict__)
        images = self.images
        if isinstance(images, np.memmap) and images.filename is not None:
            state["images"] = ("memmap", images.filename, images.offset, images.shape)
        return state

    def __setstate__(self, state):
        images = state["images"]
        if isinstance(images, tuple) and images[0] == "memmap":
            _, filename, offset, shape = images
            state["images"] = np.memmap(filename, dtype=np.float32, mode="r", offset=offset, shape=shape)
        self.__dict__.update(state)


class BatchSampler(Sampler):
    """Yields index arrays of ``batch_size`` (the last one may be smaller) over ``indices``.

    With ``shuffle`` the order is a permutation drawn from ``(seed, epoch)``: reproducible, and different
    every epoch. The epoch advances after each pass; ``set_epoch`` (called by Lightning) sets it.
    """

    def __init__(self, indices: Sequence[int], batch_size: int, shuffle: bool = False, seed: int = 0):
        if int(batch_size) < 1:
            raise LexactumError(f"batch size must be 1 or more, not {batch_size}")
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        order = self.indices
        if self.shuffle:
            order = order[np.random.default_rng([self.seed, self.epoch]).permutation(len(order))]
        self.epoch += 1
        for start in range(0, len(order), self.batch_size):
            yield order[start:start + self.batch_size]


def make_loader(prepared: PreparedData, indices: Sequence[int] | None = None, batch_size: int = 8,
                shuffle: bool = False, seed: int = 0, num_workers: int | None = None,
                pin_memory: bool | None = None, extra: tuple[np.ndarray, np.ndarray] | None = None) -> DataLoader:
    """A DataLoader of whole batches over ``indices`` (default: all) of ``prepared`` (and ``extra``: see
    :class:`BatchDataset`).

    ``num_workers`` and ``pin_memory`` default to background workers and pinned memory when a GPU is
    present, and to the main process alone otherwise (reading the memory map is faster than handing
    batches between processes on a CPU).
    """
    if indices is None:
        indices = np.arange(len(prepared))
    on_gpu = torch.cuda.is_available()
    if num_workers is None:
        num_workers = min(4, os.cpu_count() or 1) if on_gpu else 0
    if pin_memory is None:
        pin_memory = on_gpu
    sampler = BatchSampler(indices, batch_size, shuffle=shuffle, seed=seed)
    workers = {"persistent_workers": True, "prefetch_factor": 4} if num_workers > 0 else {}
    return DataLoader(BatchDataset(prepared, extra), sampler=sampler, batch_size=None, num_workers=num_workers,
                      pin_memory=pin_memory, **workers)


def split_indices(n: int, fractions: Sequence[float] = SEED_SPLIT, seed: int = 0,
                  allow_empty: bool = False) -> tuple[np.ndarray, ...]:
    """Split ``range(n)`` at random into parts of the given fractions (each part sorted).

    Fractions must be positive and sum to 1; every part must get at least one object unless
    ``allow_empty`` (scoring only needs the test part). The parts do not depend on ``allow_empty``.
    """
    fractions = _check_fractions(fractions)
    n = int(n)
    bounds = np.rint(np.cumsum(fractions) * n).astype(np.int64)
    bounds[-1] = n
    sizes = np.diff(bounds, prepend=0)
    if not allow_empty and (sizes < 1).any():
        part = int(np.flatnonzero(sizes < 1)[0])
        name = PART_NAMES[part] if len(fractions) <= 3 else f"part {part + 1}"
        raise DataError(f"dataset too small for split: {n} objects leave the {name} part empty with "
                        f"fractions {tuple(float(f) for f in fractions)}")
    order = np.random.default_rng(seed).permutation(n)
    return tuple(np.sort(part) for part in np.split(order, bounds[:-1]))


def split_by_ids(ids: Sequence[int], *parts: Sequence[int]) -> tuple[np.ndarray, ...]:
    """Positions in ``ids`` of each part's IDs, e.g. to reuse a split saved as ID lists."""
    ids = np.asarray(ids, dtype=np.int64)
    position = {int(object_id): k for k, object_id in enumerate(ids)}
    result = []
    for part in parts:
        wanted = np.asarray(part, dtype=np.int64)
        absent = [int(i) for i in wanted if int(i) not in position]
        if absent:
            raise DataError(f"{len(absent)} ID(s) of the split are not in the dataset, e.g. {absent[:5]}")
        result.append(np.array([position[int(i)] for i in wanted], dtype=np.int64))
    return tuple(result)


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    try:
        values = np.asarray(fractions, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise LexactumError(f"split fractions must be numbers, not {fractions!r}") from None
    if len(values) < 2 or not np.all(np.isfinite(values)) or (values <= 0).any():
        raise LexactumError(f"split fractions must be two or more positive numbers, not {tuple(fractions)}")
    if abs(values.sum() - 1.0) > 1e-6:
        raise LexactumError(f"split fractions must sum to 1, not {values.sum():g} ({tuple(fractions)})")
    return values


class ChallengeDataModule(pl.LightningDataModule):
    """Training, validation and test loaders for one dataset split at random (the seed's protocol), or
    for a training set split train/val and a separate test set scored whole (the challenge's protocol).

    Datasets are prepared (cached) on ``setup``; ``train_ids``/``val_ids``/``test_ids`` say which objects
    went where. :meth:`add_extra` adds examples to the training part only.
    """

    def __init__(self, dataset: ChallengeDataset | PreparedData, batch_size: int = 8,
                 split: Sequence[float] = SEED_SPLIT, seed: int = 0,
                 test_dataset: ChallengeDataset | PreparedData | None = None, num_workers: int | None = None,
                 normalisation: str = "zscale", cache_dir: str | os.PathLike | None = None, mask: bool = True,
                 progress: bool = True):
        super().__init__()
        split = tuple(float(f) for f in split)
        if test_dataset is not None:  # only train/val come from ``dataset``: its first two fractions, rescaled
            if len(split) < 2 or not min(split[:2]) > 0:
                raise LexactumError(f"split needs positive training and validation fractions, not {split}")
            split = (split[0] / (split[0] + split[1]), split[1] / (split[0] + split[1]))
        _check_fractions(split)
        if test_dataset is None and len(split) != 3:
            raise LexactumError(f"split {tuple(split)} needs 3 fractions (train, validation, test) when there is "
                                "no separate test dataset")
        self.dataset, self.test_dataset = dataset, test_dataset
        self.batch_size, self.split, self.seed = int(batch_size), split, int(seed)
        self.num_workers, self.normalisation, self.cache_dir = num_workers, normalisation, cache_dir
        self.mask, self.progress = mask, progress
        self.prepared: PreparedData | None = None
        self.prepared_test: PreparedData | None = None
        self.train_indices = self.val_indices = self.test_indices = None
        self.extra_examples: tuple[np.ndarray, np.ndarray] | None = None
        self.extra_record: dict | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.prepared is not None:
            return
        self.prepared = self._prepare(self.dataset)
        parts = split_indices(len(self.prepared), self.split, self.seed)
        self.train_indices, self.val_indices = parts[0], parts[1]
        if self.test_dataset is None:
            self.prepared_test, self.test_indices = self.prepared, parts[2]
        else:
            self.prepared_test = self._prepare(self.test_dataset)
            self.test_indices = np.arange(len(self.prepared_test))

    def add_extra(self, images: np.ndarray, labels, record: dict | None = None) -> None:
        """Examples (normalised images ``(M, C, H, W)``, labels 1/0) the training loader serves besides the
        training part, never the validation or test loaders; ``record`` says what they are, for the run."""
        self.setup()
        labels = np.asarray(labels, dtype=np.int64)
        if images.shape[1:] != self.prepared.images.shape[1:] or len(images) != len(labels):
            raise ValueError(f"extra images {images.shape} with {len(labels)} labels do not fit the prepared "
                             f"data's {self.prepared.images.shape[1:]}")
        self.extra_examples, self.extra_record = (np.ascontiguousarray(images, dtype=np.float32), labels), record

    @property
    def n_extra(self) -> int:
        return 0 if self.extra_examples is None else len(self.extra_examples[1])

    def _prepare(self, dataset) -> PreparedData:
        if isinstance(dataset, PreparedData):
            return dataset
        return prepare(dataset, normalisation=self.normalisation, mask=self.mask, cache_dir=self.cache_dir,
                       progress=self.progress)

    @property
    def train_ids(self) -> np.ndarray:
        self.setup()
        return self.prepared.ids[self.train_indices]

    @property
    def val_ids(self) -> np.ndarray:
        self.setup()
        return self.prepared.ids[self.val_indices]

    @property
    def test_ids(self) -> np.ndarray:
        self.setup()
        return self.prepared_test.ids[self.test_indices]

    def train_dataloader(self) -> DataLoader:
        self.setup()
        indices = self.train_indices
        if self.extra_examples is not None:  # after the prepared data's positions
            indices = np.concatenate([indices, len(self.prepared) + np.arange(self.n_extra)])
        return make_loader(self.prepared, indices, self.batch_size, shuffle=True, seed=self.seed,
                           num_workers=self.num_workers, extra=self.extra_examples)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return make_loader(self.prepared, self.val_indices, self.batch_size, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        self.setup()
        return make_loader(self.prepared_test, self.test_indices, self.batch_size,
                           num_workers=self.num_workers)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
