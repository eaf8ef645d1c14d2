"""Shards: each object in exactly one shard and one batch, ranks sharing shards without overlap, whole files."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lexactum.errors import DataError, LexactumError
from lexactum.inference.shards import (
    ShardPlan,
    check_manifest,
    done_shards,
    read_shards,
    shard_path,
    start_shards,
    write_shard,
)


@given(st.integers(0, 500), st.integers(1, 64), st.integers(1, 40), st.integers(1, 5))
def test_every_position_is_in_one_batch_of_one_rank(n, shard_size, batch_size, world):
    plan = ShardPlan(n, shard_size, batch_size)
    seen = []
    for rank in range(world):
        for batch in plan.batches(plan.shards_of_rank(rank, world)):
            assert 0 < len(batch) <= batch_size
            assert len({plan.shard_of(int(p)) for p in batch}) == 1  # a batch never straddles two shards
            seen.extend(batch.tolist())
    assert sorted(seen) == list(range(n))


def test_shards_round_trip_and_refuse_foreign_files(tmp_path):
    plan = ShardPlan(5, 3, 2)
    write_shard(tmp_path, 0, np.array([2, 0, 1]), np.array([[0.2, 0.3], [0.0, 0.1], [0.1, 0.2]]),
                np.array([False, True, False]))
    with pytest.raises(LexactumError, match="shard-000001.npz is missing: .*run the same command again"):
        read_shards(tmp_path, plan, 2)
    write_shard(tmp_path, 1, np.array([3, 4]), np.array([[0.3, 0.4], [0.4, 0.5]]), np.zeros(2, bool))
    assert done_shards(tmp_path) == {0, 1}
    scores, blank = read_shards(tmp_path, plan, 2)
    np.testing.assert_array_equal(scores[:, 0], [0.0, 0.1, 0.2, 0.3, 0.4])
    np.testing.assert_array_equal(blank, [True, False, False, False, False])
    write_shard(tmp_path, 1, np.array([0, 1]), np.zeros((2, 2)), np.zeros(2, bool))
    with pytest.raises(DataError, match="holds other objects than shard 1"):
        read_shards(tmp_path, plan, 2)
    shard_path(tmp_path, 1).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match="shard-000001.npz: not a readable shard"):
        read_shards(tmp_path, plan, 2)


def test_manifest_decides_fresh_resume_or_refuse(tmp_path):
    manifest = {"input": "/data/cube.h5", "models": [{"sha256": "ab"}], "tta": 1}
    assert check_manifest(tmp_path, manifest, overwrite=False) == "fresh"
    start_shards(tmp_path, manifest, "fresh")
    assert check_manifest(tmp_path, manifest, overwrite=False) == "resume"
    with pytest.raises(LexactumError, match=r"holds part of another prediction \(it differs in: tta\)"):
        check_manifest(tmp_path, {**manifest, "tta": 8}, overwrite=False)
    write_shard(tmp_path, 0, np.array([0]), np.zeros((1, 1)), np.zeros(1, bool))
    assert check_manifest(tmp_path, {**manifest, "tta": 8}, overwrite=True) == "overwrite"
    start_shards(tmp_path, {**manifest, "tta": 8}, "overwrite")
    assert done_shards(tmp_path) == set()  # the replaced prediction's shards are gone
    assert check_manifest(tmp_path, {**manifest, "tta": 8}, overwrite=False) == "resume"
