"""Batches from the cache: every index once per epoch, partial last batch, seeded shuffling, splits."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from lexactum.data.cache import PreparedData
from lexactum.data.layouts import ChallengeDataset
from lexactum.data.loader import (
    BatchDataset,
    BatchSampler,
    ChallengeDataModule,
    make_loader,
    split_by_ids,
    split_indices,
)
from lexactum.data.surveys import SPACE
from lexactum.errors import DataError, LexactumError


@pytest.fixture
def prepared(tmp_path) -> PreparedData:
    """23 one-band images on disk whose pixels all equal their index, labels alternating 0/1."""
    n = 23
    images = np.memmap(tmp_path / "images.f32", dtype=np.float32, mode="w+", shape=(n, 1, 101, 101))
    images[:] = np.arange(n, dtype=np.float32)[:, None, None, None]
    images.flush()
    readonly = np.memmap(tmp_path / "images.f32", dtype=np.float32, mode="r", shape=(n, 1, 101, 101))
    return PreparedData(path=tmp_path, images=readonly, ids=100_000 + np.arange(n), labels=np.arange(n) % 2,
                        survey=SPACE, index={})


def _epoch(loader):
    batches = list(loader)
    for images, labels, indices in batches:
        assert images.dtype == torch.float32 and labels.dtype == torch.float32 and indices.dtype == torch.int64
        assert torch.equal(images[:, 0, 50, 50], indices.float())  # each image is the one its index names
        assert torch.equal(labels, (indices % 2).float())
    return [b[2].tolist() for b in batches]


def test_every_index_once_with_partial_last_batch(prepared):
    subset = np.arange(2, 23)  # 21 objects, batches of 5 -> 5, 5, 5, 5, 1
    loader = make_loader(prepared, subset, batch_size=5, shuffle=True, seed=0)
    assert len(loader) == 5
    batches = _epoch(loader)
    assert [len(b) for b in batches] == [5, 5, 5, 5, 1]
    assert sorted(i for b in batches for i in b) == subset.tolist()
    assert all(b == sorted(b) for b in batches)  # sorted inside a batch for memmap locality


def test_shuffle_per_epoch_and_seeded(prepared):
    loader = make_loader(prepared, None, batch_size=4, shuffle=True, seed=7)
    first, second = _epoch(loader), _epoch(loader)
    assert first != second
    assert sorted(sum(first, [])) == sorted(sum(second, [])) == list(range(23))
    same_seed = make_loader(prepared, None, batch_size=4, shuffle=True, seed=7)
    assert _epoch(same_seed) == first and _epoch(same_seed) == second
    assert _epoch(make_loader(prepared, None, batch_size=4, shuffle=True, seed=8)) != first
    jump = make_loader(prepared, None, batch_size=4, shuffle=True, seed=7)
    jump.sampler.set_epoch(1)  # what Lightning calls before each epoch
    assert _epoch(jump) == second
    unshuffled = _epoch(make_loader(prepared, None, batch_size=4))
    assert sum(unshuffled, []) == list(range(23))


def test_worker_processes_reopen_the_memmap(prepared):
    dataset = BatchDataset(prepared)
    state = pickle.dumps(dataset)
    assert len(state) < 10_000  # the images are not copied into the pickle
    assert torch.equal(pickle.loads(state)[np.array([4, 1])][0], dataset[np.array([1, 4])][0])
    loader = make_loader(prepared, None, batch_size=6, shuffle=True, seed=1, num_workers=1)
    reference = make_loader(prepared, None, batch_size=6, shuffle=True, seed=1, num_workers=0)
    assert _epoch(loader) == _epoch(reference)


def test_batch_size_must_be_positive(prepared):
    with pytest.raises(LexactumError, match="batch size"):
        BatchSampler(np.arange(3), 0)


def test_split_indices():
    parts = split_indices(1000, seed=3)
    assert [len(p) for p in parts] == [190, 10, 800]
    assert sorted(np.concatenate(parts).tolist()) == list(range(1000))
    again = split_indices(1000, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    assert not np.array_equal(split_indices(1000, seed=4)[0], parts[0])
    two = split_indices(7, (0.5, 0.5))
    assert sorted(np.concatenate(two).tolist()) == list(range(7)) and {len(p) for p in two} <= {3, 4}


@pytest.mark.parametrize("fractions, message", [
    ((0.5, 0.6), "sum to 1"),
    ((1.2, -0.2), "positive"),
    ((0.0, 1.0), "positive"),
    ((1.0,), "two or more"),
])
def test_split_fractions_checked(fractions, message):
    with pytest.raises(LexactumError, match=message):
        split_indices(100, fractions)


def test_split_too_small():
    with pytest.raises(DataError, match="dataset too small for split.*validation"):
        split_indices(20)
    train, validation, test = split_indices(20, allow_empty=True)  # for scoring the test part only
    assert (len(train), len(validation), len(test)) == (4, 0, 16)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(20))
    # Allowing empty parts never changes a split that has none.
    assert all(np.array_equal(a, b) for a, b in zip(split_indices(60, seed=2), split_indices(60, seed=2,
                                                                                        allow_empty=True),
                                                    strict=True))


def test_datamodule_without_a_test_set_needs_three_fractions(make_dataset):
    dataset = ChallengeDataset(make_dataset(n=8))
    with pytest.raises(LexactumError, match=r"needs 3 fractions"):
        ChallengeDataModule(dataset, split=(0.5, 0.5))


def test_split_by_ids():
    ids = np.array([100_005, 100_001, 100_009, 100_003])
    train, test = split_by_ids(ids, [100_009, 100_005], [100_003])
    assert train.tolist() == [2, 0] and test.tolist() == [3]
    with pytest.raises(DataError, match="100042"):
        split_by_ids(ids, [100_042])


def test_datamodule_seed_protocol(make_dataset, tmp_path):
    dataset = ChallengeDataset(make_dataset(survey="space", n=40, layout="test"))
    module = ChallengeDataModule(dataset, batch_size=4, split=(0.5, 0.25, 0.25), seed=1, cache_dir=tmp_path,
                                 progress=False)
    module.setup("fit")
    parts = [module.train_ids, module.val_ids, module.test_ids]
    assert [len(p) for p in parts] == [20, 10, 10]
    assert sorted(np.concatenate(parts).tolist()) == dataset.ids.tolist()
    images, labels, indices = next(iter(module.train_dataloader()))
    assert images.shape == (4, 1, 101, 101) and 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert labels.tolist() == dataset.labels[indices.numpy()].tolist()
    served = sum((b[2].tolist() for b in module.test_dataloader()), [])
    assert dataset.ids[served].tolist() == module.test_ids.tolist()


def test_datamodule_challenge_protocol(make_dataset, tmp_path):
    train_set = ChallengeDataset(make_dataset(survey="ground", n=20, layout="train"))
    test_set = ChallengeDataset(make_dataset(survey="ground", n=6, layout="test", seed=5))
    module = ChallengeDataModule(train_set, batch_size=8, split=(0.19, 0.01, 0.80), test_dataset=test_set,
                                 cache_dir=tmp_path, progress=False)
    module.setup()
    assert len(module.train_ids) == 19 and len(module.val_ids) == 1  # 0.19 : 0.01 renormalised
    assert sorted(np.concatenate([module.train_ids, module.val_ids]).tolist()) == train_set.ids.tolist()
    assert module.test_ids.tolist() == test_set.ids.tolist()
    labels = torch.cat([b[1] for b in module.test_dataloader()])
    assert labels.tolist() == test_set.labels.astype(float).tolist()
    halves = ChallengeDataModule(train_set, split=(0.5, 0.5), test_dataset=test_set, cache_dir=tmp_path,
                                 progress=False)
    assert len(halves.train_ids) == len(halves.val_ids) == 10
    with pytest.raises(LexactumError, match="positive training and validation"):
        ChallengeDataModule(train_set, split=(0.0, 1.0), test_dataset=test_set)
