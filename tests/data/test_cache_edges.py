"""The prepared-dataset cache at edges a mutation check found unpinned: a damaged images file, and the note on
blank objects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lexactum.data.cache import IMAGES_FILE, PreparedData, open_prepared, prepare
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
