"""The prepared-dataset cache at edges a mutation check found unpinned: a damaged images file, the note on
blank objects, what prepare reports (time, rate, progress), catalog edits the fingerprint cannot see, and the
temporary folders of running preparations."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lexactum.data import cache
from lexactum.data.cache import IMAGES_FILE, PreparedData, cache_status, open_prepared, prepare
from lexactum.data.layouts import ChallengeDataset
from lexactum.data.surveys import SPACE
from lexactum.errors import DataError


@pytest.mark.parametrize("change", [b"\0" * 4, None])
def test_an_images_file_of_another_size_is_refused(make_dataset, tmp_path, change):
    """Longer (bytes appended) or shorter than its index says: never opened as if it were the cache."""
    prepared = prepare(ChallengeDataset(make_dataset(survey="space", n=3, layout="train")), cache_dir=tmp_path,
                       workers=1, progress=False)
    images = prepared.path / IMAGES_FILE
    expected = images.stat().st_size
    if change is None:
        images.write_bytes(images.read_bytes()[:-4])
    else:
        with open(images, "ab") as fh:
            fh.write(change)
    with pytest.raises(DataError, match=f"^{images}: missing or not {expected} bytes; prepare the dataset again$"):
        open_prepared(prepared.path)


def _with_blanks(n_blank: int) -> PreparedData:
    ids = np.arange(100_000, 100_010)
    return PreparedData(path=Path("cache"), images=None, ids=ids, labels=np.zeros(10, np.int64), survey=SPACE,
                        index={"dataset": "/data/space", "blank": list(range(n_blank))})


@pytest.mark.parametrize("n_blank, shown", [
    (0, None),
    (5, "e.g. ID 100000, 100001, 100002, 100003, 100004"),
    (6, "e.g. ID 100000, 100001, 100002, 100003, 100004 ..."),
])
def test_blank_note_names_five_ids_at_most(n_blank, shown):
    note = _with_blanks(n_blank).blank_note()
    if shown is None:
        assert note is None
    else:
        assert note.startswith(f"{n_blank} of 10 objects of /data/space are blank") and note.endswith(shown)


def test_images_path_seconds_and_rate(make_dataset, tmp_path, monkeypatch):
    """What ``lexactum dataset prepare`` reports: the images file, the build time and the images per second."""
    clock = iter([1000.0, 1002.5])  # perf_counter at the start and at the end of the build
    monkeypatch.setattr(cache, "time", SimpleNamespace(perf_counter=lambda: next(clock), time=time.time,
                                                       strftime=time.strftime))
    dataset = ChallengeDataset(make_dataset(survey="space", n=5, layout="train"))
    prepared = prepare(dataset, cache_dir=tmp_path, workers=1, progress=False)
    assert prepared.images_path == prepared.path / IMAGES_FILE
    assert prepared.images_path.stat().st_size == prepared.images.nbytes
    assert prepared.seconds == 2.5 and prepared.images_per_second == 2.0
    reused = prepare(dataset, cache_dir=tmp_path, workers=1, progress=False)
    assert reused.reused and reused.seconds == 0.0 and math.isnan(reused.images_per_second)


def test_progress_bar_counts_each_object_once_and_only_when_asked(make_dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("LEXACTUM_NO_PROGRESS", raising=False)
    monkeypatch.setattr(cache, "CHUNK_OBJECTS", 2)  # chunks of 2, 2 and 1 objects
    root = make_dataset(survey="space", n=5, layout="train")
    prepare(ChallengeDataset(root), cache_dir=tmp_path / "quiet", workers=1, progress=False)
    assert capsys.readouterr().err == ""
    prepare(ChallengeDataset(root), cache_dir=tmp_path / "shown", workers=1, progress=True)
    last = capsys.readouterr().err.strip().split("\r")[-1]  # the bar as left on the screen
    assert last.startswith(f"preparing {root.name}: 100%") and "| 5/5 [" in last


def test_an_images_file_grown_longer_is_prepared_again(make_dataset, tmp_path):
    dataset = ChallengeDataset(make_dataset(survey="space", n=3, layout="train"))
    prepared = prepare(dataset, cache_dir=tmp_path, workers=1, progress=False)
    with open(prepared.images_path, "ab") as fh:
        fh.write(b"\0" * 4)
    assert cache_status(dataset, cache_dir=tmp_path)["state"] == "stale"
    again = prepare(dataset, cache_dir=tmp_path, workers=1, progress=False)
    assert not again.reused
    np.testing.assert_array_equal(np.asarray(again.images), np.asarray(prepared.images))


def test_a_catalog_edited_in_place_with_its_time_kept_makes_the_cache_stale(make_dataset, tmp_path):
    """The fingerprint sees sizes and times only: a catalog copied over with its time kept (``cp -p``,
    ``rsync -t``) that names another object, or flips a label either way, must still be noticed."""
    root = make_dataset(survey="space", n=4, layout="train")
    catalog = root / "classifications.csv"
    lines = catalog.read_text().splitlines(keepends=True)
    assert lines[1].startswith("100000,0,") and lines[3].startswith("100002,1,")
    catalog.write_text("".join(lines[:4]))  # object 100003 has no catalog row: ids 100000-100002, labels 0 1 1
    stamp = catalog.stat()

    def edit(rows: list[str]) -> None:
        catalog.write_text("".join(rows))
        os.utime(catalog, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        assert catalog.stat().st_size == stamp.st_size

    prepare(ChallengeDataset(root), cache_dir=tmp_path, workers=1, progress=False)
    other_object = lines[3].replace("100002,", "100003,")
    lens = lines[1].replace("100000,0,", "100000,1,")
    for rows, ids in [([*lines[:3], other_object], [100000, 100001, 100003]),  # same labels, other ids
                      ([lines[0], lens, lines[2], other_object], [100000, 100001, 100003]),  # a label 0 -> 1
                      ([*lines[:3], other_object], [100000, 100001, 100003])]:  # and back 1 -> 0
        edit(rows)
        assert cache_status(ChallengeDataset(root), cache_dir=tmp_path)["state"] == "stale"
        prepared = prepare(ChallengeDataset(root), cache_dir=tmp_path, workers=1, progress=False)
        assert not prepared.reused and prepared.ids.tolist() == ids


def test_a_running_preparations_temporary_folder_is_kept(make_dataset, tmp_path):
    """Both name forms of a live process's temporary folder (this one's) survive another preparation."""
    from lexactum.runs import machine_tag

    dataset = ChallengeDataset(make_dataset(survey="space", n=3, layout="train"))
    folder = cache.cache_path(dataset, cache_dir=tmp_path)
    live = [tmp_path / f".{folder.name}.tmp-{os.getpid()}-c0ffee42",
            tmp_path / f".{folder.name}.tmp-{machine_tag()}-{os.getpid()}-c0ffee42"]
    for leftover in live:
        leftover.mkdir(parents=True)
    prepare(dataset, cache_dir=tmp_path, workers=1, progress=False)
    assert all(leftover.is_dir() for leftover in live)
