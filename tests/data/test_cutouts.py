"""Loose FITS cutouts (not in the challenge layout): IDs, shapes and refusals."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from lexactum.data.cutouts import CutoutFolder
from lexactum.errors import DataError


def _write(path, shape=(101, 101), value=1.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(np.full(shape, value, np.float32)).writeto(path)


def test_ids_are_the_trailing_numbers_when_distinct(tmp_path):
    for name in ("night1/cand_17.fits", "night2/cand_4.fits.gz", "x9.fit"):
        _write(tmp_path / name)
    assert sorted(CutoutFolder(tmp_path).ids.tolist()) == [4, 9, 17]


def test_repeated_names_keep_their_folders_as_ids(tmp_path):
    _write(tmp_path / "a" / "obj.fits")
    _write(tmp_path / "b" / "obj.fits")
    assert CutoutFolder(tmp_path).ids.tolist() == ["a/obj", "b/obj"]  # distinct, one submission line each


def test_numbers_beyond_int64_are_kept_as_names(tmp_path):
    _write(tmp_path / "x_99999999999999999999.fits")  # 20 digits: not a number an int64 holds
    _write(tmp_path / "x_1.fits")
    assert sorted(CutoutFolder(tmp_path).ids.tolist()) == ["x_1", "x_99999999999999999999"]


def test_white_space_in_an_id_is_refused(tmp_path):
    _write(tmp_path / "my cutout.fits")
    _write(tmp_path / "other.fits")
    with pytest.raises(DataError, match="my cutout.fits: the file name holds white space"):
        CutoutFolder(tmp_path)


def test_cutouts_of_another_size_are_refused_naming_the_file(tmp_path):
    _write(tmp_path / "small_1.fits", shape=(64, 64))
    with pytest.raises(DataError, match=r"small_1.fits: image is 64x64 pixels.*101x101"):
        CutoutFolder(tmp_path)


def test_entries_that_are_no_files_are_skipped_with_one_warning(tmp_path, caplog):
    """A named pipe would block a reader forever; a broken link cannot be read: both skipped, one warning."""
    import os

    from lexactum.data.cutouts import read_single_object

    _write(tmp_path / "cand_1.fits")
    _write(tmp_path / "cand_2.fits", value=2.0)
    os.mkfifo(tmp_path / "cand_3.fits")
    (tmp_path / "cand_4.fits").symlink_to(tmp_path / "moved" / "cand_4.fits")
    with caplog.at_level("WARNING", logger="lexactum.data.layouts"):
        cutouts = CutoutFolder(tmp_path)
    assert cutouts.ids.tolist() == [1, 2] and cutouts.read(1).max() == 2.0
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "skipped 2 entries" in message and f"{tmp_path / 'cand_3.fits'} (a named pipe (FIFO), not a file)" in message
    assert f"{tmp_path / 'cand_4.fits'} (a broken symbolic link to {tmp_path / 'moved' / 'cand_4.fits'})" in message
    with pytest.raises(DataError, match="cand_3.fits: cannot be read as a FITS file \\(a named pipe"):
        read_single_object(str(tmp_path / "cand_3.fits"), n_bands=1)


def test_predict_input_in_the_challenge_layout_skips_the_same_entries(make_dataset, caplog):
    """``predict`` opens its input with open_cutouts: a broken band link is skipped as in ``dataset info``."""
    from lexactum.data.cutouts import open_cutouts
    from lexactum.data.layouts import ChallengeDataset

    root = make_dataset(survey="space", n=4, layout="test")
    broken = ChallengeDataset(root).band_paths[1][0]
    broken.unlink()
    broken.symlink_to(broken.with_name("moved.fits"))
    with caplog.at_level("WARNING", logger="lexactum.data.layouts"):
        source = open_cutouts(root)
    assert isinstance(source, ChallengeDataset) and 100001 not in source.ids.tolist() and len(source) == 3
    assert len(caplog.records) == 1 and f"{broken} (a broken symbolic link to" in caplog.records[0].getMessage()
