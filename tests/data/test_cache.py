"""Prepared caches: contents, reuse, invalidation, interrupted builds, parallel workers, bad images."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from astropy.io import fits

from lexactum.data import cache
from lexactum.data.cache import cache_root, cache_status, open_prepared, prepare
from lexactum.data.layouts import ChallengeDataset
from lexactum.data.normalise import normalise
from lexactum.errors import DataError, LexactumError


@pytest.fixture
def ground(make_dataset):
    """A ground training set whose images include masked pixels (exactly 100.0)."""
    return ChallengeDataset(make_dataset(survey="ground", n=10, layout="train", mask_fraction=0.5, seed=3))


def _reference(dataset, mask=True):
    """What the cache must hold: each object read and normalised on its own."""
    mask_value = dataset.survey.mask_value if mask else None
    return np.stack([normalise(dataset.read(i)[None], mask_value=mask_value)[0] for i in range(len(dataset))])


def test_prepare_holds_normalised_images(ground, tmp_path):
    prepared = prepare(ground, cache_dir=tmp_path, workers=1, progress=False)
    assert not prepared.reused and prepared.seconds > 0
    assert isinstance(prepared.images, np.memmap) and prepared.images.dtype == np.float32
    assert prepared.images.shape == (10, 4, 101, 101) and len(prepared) == 10
    np.testing.assert_array_equal(prepared.ids, ground.ids)
    np.testing.assert_array_equal(prepared.labels, ground.labels)
    assert prepared.survey is ground.survey and prepared.dataset_path == ground.path
    np.testing.assert_allclose(prepared.images, _reference(ground), atol=1e-6)
    with pytest.raises(ValueError):
        prepared.images[0, 0, 0, 0] = 1.0  # read-only
    index = json.loads((prepared.path / cache.INDEX_FILE).read_text())
    assert index["normalisation"] == "zscale" and index["mask"] is True and index["shape"] == [10, 4, 101, 101]


def test_mask_option_changes_cache(ground, tmp_path):
    raw = np.stack([ground.read(i) for i in range(len(ground))])
    assert (raw == 100.0).any()
    masked = prepare(ground, cache_dir=tmp_path, workers=1, progress=False)
    unmasked = prepare(ground, mask=False, cache_dir=tmp_path, workers=1, progress=False)
    assert masked.path != unmasked.path
    np.testing.assert_allclose(unmasked.images, _reference(ground, mask=False), atol=1e-6)
    assert not np.allclose(masked.images, unmasked.images)


def test_reuse_and_invalidation(make_dataset, tmp_path):
    root = make_dataset(survey="space", n=6, layout="test")
    dataset = ChallengeDataset(root)
    assert cache_status(dataset, cache_dir=tmp_path)["state"] == "missing"
    first = prepare(dataset, cache_dir=tmp_path, workers=1, progress=False)
    before, before_other = np.array(first.images[3]), np.array(first.images[2])
    status = cache_status(dataset, cache_dir=tmp_path)
    assert status["state"] == "valid" and status["path"] == str(first.path)
    assert status["size"] >= 6 * 101 * 101 * 4
    again = prepare(ChallengeDataset(root), cache_dir=tmp_path, progress=False)
    assert again.reused and again.path == first.path

    # touching one file (same bytes, new time) makes the cache stale
    path = dataset.band_paths[3][0]
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert cache_status(ChallengeDataset(root), cache_dir=tmp_path)["state"] == "stale"
    assert not prepare(ChallengeDataset(root), cache_dir=tmp_path, workers=1, progress=False).reused

    # rewriting one image changes the cached values
    image = fits.getdata(path)
    fits.writeto(path, np.ascontiguousarray(image[::-1]), overwrite=True)
    rebuilt = prepare(ChallengeDataset(root), cache_dir=tmp_path, workers=1, progress=False)
    assert not rebuilt.reused
    fresh = ChallengeDataset(root)
    np.testing.assert_allclose(rebuilt.images, _reference(fresh), atol=1e-6)
    assert not np.allclose(rebuilt.images[3], before)
    np.testing.assert_array_equal(rebuilt.images[2], before_other)

    # an index written with another normalisation is not reused
    index_file = rebuilt.path / cache.INDEX_FILE
    index = json.loads(index_file.read_text())
    index["normalisation"] = "other"
    index_file.write_text(json.dumps(index))
    assert cache_status(ChallengeDataset(root), cache_dir=tmp_path)["state"] == "stale"
    assert not prepare(ChallengeDataset(root), cache_dir=tmp_path, workers=1, progress=False).reused
    assert sorted(p.name for p in tmp_path.iterdir()) == [rebuilt.path.name]  # no leftovers


def test_interrupted_preparation_leaves_no_cache(make_dataset, tmp_path, monkeypatch):
    dataset = ChallengeDataset(make_dataset(survey="space", n=12, layout="train"))
    real_chunk = cache._prepare_chunk
    calls = []

    def failing_chunk(task):
        calls.append(task)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_chunk(task)

    monkeypatch.setattr(cache, "CHUNK_OBJECTS", 4)
    monkeypatch.setattr(cache, "_prepare_chunk", failing_chunk)
    with pytest.raises(KeyboardInterrupt):
        prepare(dataset, cache_dir=tmp_path, workers=1, progress=False)
    assert len(calls) == 2
    assert cache_status(dataset, cache_dir=tmp_path)["state"] == "missing"
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(cache, "_prepare_chunk", real_chunk)
    assert len(prepare(dataset, cache_dir=tmp_path, workers=1, progress=False)) == 12


def test_abandoned_temporary_folder_is_removed(make_dataset, tmp_path):
    """Ours of a dead process (both name forms) and another machine's untouched for a day go; another
    machine's recent one stays (a node of a cluster sharing the cache folder may be writing it)."""
    from lexactum.runs import machine_tag

    dataset = ChallengeDataset(make_dataset(survey="space", n=3, layout="train"))
    folder = cache.cache_path(dataset, cache_dir=tmp_path)
    names = {"old form": "tmp-999999999-deadbeef", "ours": f"tmp-{machine_tag()}-999999999-deadbeef",
             "theirs, stale": "tmp-0badc0de-1-deadbeef", "theirs, recent": "tmp-0badc0de-2-deadbeef"}
    leftovers = {kind: tmp_path / f".{folder.name}.{name}" for kind, name in names.items()}
    for leftover in leftovers.values():
        leftover.mkdir(parents=True)
        (leftover / cache.INDEX_FILE).write_text("{}")
    day_ago = time.time() - cache.ABANDONED_AFTER_S - 60
    for path in (leftovers["theirs, stale"], leftovers["theirs, stale"] / cache.INDEX_FILE):
        os.utime(path, (day_ago, day_ago))
    prepare(dataset, cache_dir=tmp_path, workers=1, progress=False)
    assert {kind for kind, path in leftovers.items() if path.exists()} == {"theirs, recent"}


def test_a_cache_another_process_finished_first_is_kept(make_dataset, tmp_path, monkeypatch):
    import shutil
    from pathlib import Path

    dataset = ChallengeDataset(make_dataset(survey="space", n=3, layout="train"))
    theirs = prepare(dataset, cache_dir=tmp_path / "theirs", workers=1, progress=False)
    real_replace = os.replace

    def racing(source, target):  # the other process's finished cache lands just before our rename
        if ".tmp-" in Path(source).name and not Path(target).exists():
            shutil.copytree(theirs.path, target)
        return real_replace(source, target)

    monkeypatch.setattr(cache.os, "replace", racing)
    ours = prepare(dataset, cache_dir=tmp_path / "ours", workers=1, progress=False)
    np.testing.assert_array_equal(np.asarray(ours.images), np.asarray(theirs.images))
    assert [p.name for p in (tmp_path / "ours").iterdir()] == [ours.path.name]  # our copy removed


def test_parallel_workers_match_serial(ground, tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "CHUNK_OBJECTS", 3)
    serial = prepare(ground, cache_dir=tmp_path / "a", workers=1, progress=False)
    parallel = prepare(ground, cache_dir=tmp_path / "b", workers=2, progress=False)
    np.testing.assert_array_equal(parallel.images, serial.images)


def test_bad_image_is_named(make_dataset, tmp_path):
    root = make_dataset(survey="ground", n=5, layout="train")
    dataset = ChallengeDataset(root)
    odd = dataset.band_paths[3][1]
    fits.writeto(odd, np.zeros((64, 64), np.float32), overwrite=True)
    with pytest.raises(DataError, match=str(odd)) as info:
        prepare(ChallengeDataset(root), cache_dir=tmp_path, workers=1, progress=False)
    assert "\n" not in str(info.value) and "64x64" in str(info.value)
    truncated = dataset.band_paths[1][0]
    fits.writeto(odd, fits.getdata(dataset.band_paths[3][0]), overwrite=True)
    truncated.write_bytes(truncated.read_bytes()[:5000])
    with pytest.raises(DataError, match=str(truncated)):
        prepare(ChallengeDataset(root), cache_dir=tmp_path, workers=1, progress=False)
    assert cache_status(ChallengeDataset(root), cache_dir=tmp_path)["state"] == "missing"


def test_cache_locations(make_dataset, tmp_path, monkeypatch):
    import platformdirs

    monkeypatch.delenv("LEXACTUM_CACHE_DIR", raising=False)
    assert cache_root() == platformdirs.user_cache_dir("lexactum") / cache_root().relative_to(
        platformdirs.user_cache_dir("lexactum"))
    assert cache_root().name == "prepared"
    monkeypatch.setenv("LEXACTUM_CACHE_DIR", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    dataset = ChallengeDataset(make_dataset(survey="space", n=3, layout="train"))
    prepared = prepare(dataset, workers=1, progress=False)
    assert prepared.path.parent == tmp_path / "env"
    assert open_prepared(prepared.path).ids.tolist() == dataset.ids.tolist()
    with pytest.raises(DataError, match="not a prepared dataset"):
        open_prepared(tmp_path)


def test_real_ground_samples_masked_pixels(samples, tmp_path):
    """The real ground samples hold masked pixels (exactly 100.0): the cache holds astropy's ZScale of each
    band image with those pixels set to 0 first (within 1e-6)."""
    import shutil

    from astropy.visualization import ZScaleInterval

    root = tmp_path / "ground"
    shutil.copytree(samples / "mariogeiger_lensfinder-euclid" / "samples" / "ground_based", root)
    shutil.copyfile(samples / "agoila_strong-lenses" / "classifications.csv", root / "classifications.csv")
    dataset = ChallengeDataset(root)
    prepared = prepare(dataset, cache_dir=tmp_path / "cache", workers=1, progress=False)
    n_masked = 0
    for k, paths in enumerate(dataset.band_paths):
        for band, path in enumerate(paths):
            raw = fits.getdata(path).astype(np.float32)
            masked = raw == 100.0
            n_masked += int(masked.sum())
            expected = ZScaleInterval()(np.where(masked, np.float32(0.0), raw))
            np.testing.assert_allclose(prepared.images[k, band], expected, rtol=0, atol=1e-6, err_msg=str(path))
    assert n_masked >= 49 + 212  # two U-band sample files carry masks


def test_too_little_space_is_refused_before_any_work(make_dataset, tmp_path, monkeypatch):
    """The size is known beforehand: one line with what is needed and what is free, nothing written."""
    import shutil

    dataset = ChallengeDataset(make_dataset(survey="space", n=40, layout="train"))
    real_usage = shutil.disk_usage
    monkeypatch.setattr(cache.shutil, "disk_usage", lambda path: real_usage(path)._replace(free=1000))
    monkeypatch.setattr(cache, "_prepare_chunk", lambda task: pytest.fail("work started"))
    with pytest.raises(LexactumError) as info:
        prepare(dataset, cache_dir=tmp_path / "cache", workers=1, progress=False)
    message = str(info.value)
    assert message.startswith(f"no space left on {tmp_path / 'cache'}") and "\n" not in message
    assert "need 1.6 MB, 1.0 kB free" in message  # 40 x 101 x 101 float32, plus the index
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.mark.parametrize("fault", ["allocation", "worker write", "index write"])
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="finds the file of a descriptor in /proc")
def test_an_os_error_while_building_is_one_line_and_nothing_is_left(make_dataset, tmp_path, monkeypatch, fault):
    import errno

    dataset = ChallengeDataset(make_dataset(survey="space", n=6, layout="train"))
    folder = tmp_path / "cache"
    no_space = OSError(errno.ENOSPC, "No space left on device")
    if fault == "allocation":
        monkeypatch.setattr(cache.os, "posix_fallocate", lambda *args: (_ for _ in ()).throw(no_space))
    elif fault == "worker write":
        monkeypatch.setattr(cache, "_prepare_chunk", lambda task: (_ for _ in ()).throw(no_space))
    else:
        real_fsync = os.fsync

        def failing_fsync(fd):
            if os.readlink(f"/proc/self/fd/{fd}").endswith(cache.INDEX_FILE):
                raise OSError(errno.EIO, "Input/output error")
            return real_fsync(fd)

        monkeypatch.setattr(cache.os, "fsync", failing_fsync)
    with pytest.raises(LexactumError) as info:
        prepare(dataset, cache_dir=folder, workers=1, progress=False)
    message = str(info.value)
    assert "\n" not in message and str(folder) in message
    if fault == "index write":
        assert message == f"{folder}: cannot write the prepared dataset: Input/output error"
    else:
        assert message.startswith(f"no space left on {folder} while preparing the dataset (244.8 kB needed")
    assert list(folder.iterdir()) == []  # the temporary folder is gone


def test_file_systems_without_fallocate_get_zeros_written(ground, tmp_path, monkeypatch):
    import errno

    def unsupported(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(cache.os, "posix_fallocate", unsupported)
    monkeypatch.setattr(cache, "ZERO_BLOCK", 100_000)  # several blocks and a partial one
    allocated = []
    real_allocate = cache._allocate

    def watched(path, n_bytes):
        real_allocate(path, n_bytes)
        allocated.append((path.stat().st_size, path.stat().st_blocks * 512))

    monkeypatch.setattr(cache, "_allocate", watched)
    prepared = prepare(ground, cache_dir=tmp_path, workers=1, progress=False)
    size = 10 * 4 * 101 * 101 * 4
    assert allocated[0][0] == size and allocated[0][1] >= size  # written out, not a sparse file
    np.testing.assert_allclose(prepared.images, _reference(ground), atol=1e-6)


def test_unreadable_image_is_named(make_dataset, tmp_path, monkeypatch):
    """A band file the user may not read (EACCES; simulated, as root reads anything): one line naming it."""
    import errno

    dataset = ChallengeDataset(make_dataset(survey="ground", n=4, layout="train"))
    locked = str(dataset.band_paths[2][1])
    real_open = os.open

    def guarded_open(path, *args, **kwargs):
        if os.fsdecode(path) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)
    with pytest.raises(DataError) as info:
        prepare(dataset, cache_dir=tmp_path, workers=1, progress=False)
    assert str(info.value) == f"{locked}: cannot open (Permission denied)"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="finds the file of a descriptor in /proc")
def test_cache_is_on_disk_before_it_is_renamed_into_place(make_dataset, tmp_path, monkeypatch):
    """A power cut after the rename must not leave an index vouching for images still only in memory."""
    dataset = ChallengeDataset(make_dataset(survey="space", n=3, layout="train"))
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(cache.os, "fsync",
                        lambda fd: events.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
                        or real_fsync(fd))
    monkeypatch.setattr(cache.os, "replace", lambda a, b: events.append(("rename", None)) or real_replace(a, b))
    prepare(dataset, cache_dir=tmp_path, workers=1, progress=False)
    assert events == [("fsync", cache.IMAGES_FILE), ("fsync", cache.INDEX_FILE), ("rename", None)]


@pytest.mark.parametrize("damage", ["shape not numbers", "fewer ids than images", "index is a named pipe"])
def test_damaged_index_means_rebuild_never_a_crash(make_dataset, tmp_path, damage):
    dataset = ChallengeDataset(make_dataset(survey="space", n=3, layout="train"))
    first = prepare(dataset, cache_dir=tmp_path, workers=1, progress=False)
    index_file = first.path / cache.INDEX_FILE
    index = json.loads(index_file.read_text())
    if damage == "index is a named pipe":
        index_file.unlink()
        os.mkfifo(index_file)
    else:
        if damage == "shape not numbers":
            index["shape"] = ["3", 1, 101, 101]
        else:
            index["ids"] = index["ids"][:2]
        index_file.write_text(json.dumps(index))
    assert cache_status(dataset, cache_dir=tmp_path)["state"] == ("missing" if "pipe" in damage else "stale")
    with pytest.raises(DataError, match="not a prepared dataset"):
        open_prepared(first.path)
    again = prepare(dataset, cache_dir=tmp_path, workers=1, progress=False)
    assert not again.reused and again.ids.tolist() == dataset.ids.tolist()
    np.testing.assert_array_equal(np.asarray(again.images), np.asarray(first.images))


def test_abandoned_temporary_file_is_removed(make_dataset, tmp_path):
    dataset = ChallengeDataset(make_dataset(survey="space", n=3, layout="train"))
    folder = cache.cache_path(dataset, cache_dir=tmp_path)
    leftover = tmp_path / f".{folder.name}.old-deadbeef"
    leftover.write_bytes(b"half a cache")  # not a folder: a file of that name
    prepare(dataset, cache_dir=tmp_path, workers=1, progress=False)
    assert not leftover.exists()


def _blank_out(dataset: ChallengeDataset, positions, value=np.nan) -> None:
    """Overwrite every band of the objects at ``positions`` with one value (NaN: an empty cutout)."""
    for k in positions:
        for path in dataset.band_paths[k]:
            with fits.open(path, mode="update") as hdul:
                hdul[0].data[:] = value


@pytest.mark.parametrize("workers", [1, 2])
def test_blank_objects_are_counted_while_preparing(make_dataset, tmp_path, workers):
    """All-NaN and constant cutouts (nothing a network can score) are found as the cache is written, by the
    workers too, and named: the user hears of them rather than training on them."""
    root = make_dataset(survey="ground", n=300, layout="train")  # two chunks: both workers find some
    _blank_out(ChallengeDataset(root), [3, 290])
    _blank_out(ChallengeDataset(root), [7], value=5.0)
    prepared = prepare(ChallengeDataset(root), cache_dir=tmp_path, workers=workers, progress=False)
    assert prepared.blank.tolist() == [3, 7, 290]
    reference = [k for k in range(len(prepared)) if np.ptp(np.asarray(prepared.images[k])) == 0]
    assert reference == [3, 7, 290]
    assert prepared.blank_note().startswith(f"3 of 300 objects of {root} are blank")
    assert open_prepared(prepared.path).blank.tolist() == [3, 7, 290]  # kept in index.json


def test_blank_rows_matches_numpy():
    from lexactum.data.normalise import blank_rows

    rng = np.random.default_rng(0)
    flat = rng.normal(size=(50, 40)).astype(np.float32)
    flat[[2, 9]] = 0.0
    flat[11] = 7.5
    flat[20, :-1] = 1.0  # differs only at the last pixel: not blank
    flat[20, -1] = 2.0
    np.testing.assert_array_equal(blank_rows(flat), np.ptp(flat, axis=1) == 0)
    assert np.flatnonzero(blank_rows(flat)).tolist() == [2, 9, 11]
