"""ChallengeDataset and read_catalog at the edges a mutation check found unpinned: each is a refusal (or an
acceptance) a user relies on, named in one line."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from astropy.io import fits

from lexactum.data import ChallengeDataset
from lexactum.data.layouts import read_catalog, read_objects
from lexactum.data.surveys import SURVEYS, TRAINING_CATALOG
from lexactum.errors import DataError


def one_line_error(call, *fragments):
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert str(fragment) in message, message
    return message


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("ID,is_lens\n100000,1\n100001,2\n100002,3\n", ["column is_lens must hold 0 or 1, found 2 for ID 100001"]),
        ("ID,no_source\n100000,0\n100001,-1\n", ["column no_source must hold 0 or 1, found -1 for ID 100001"]),
        ("ID,is_lens\n100002,1\n100001,0\n100002,0\n100003,1\n100003,1\n100003,0\n",
         ["ID 100002 appears 2 times in the catalog"]),
        ("ID,is_lens\n100003,1\n100003,0\n100003,1\n", ["ID 100003 appears 3 times in the catalog"]),
        ("ID,is_lens\n100000,1\n100001,0\n100000,0\n", ["ID 100000 appears 2 times in the catalog"]),
        ("ID,is_lens\n100000,1\n1.5,0\n2.5,1\n", ["column ID holds '1.5', not an integer (data row 2)"]),
        ("ID,is_lens\n100000,1\n,0\n", ["column ID holds an empty or NaN cell, not an integer (data row 2)"]),
        ("ID,is_lens\n100000,0.5\n", ["column is_lens holds '0.5', not an integer (data row 1)"]),
        ("", ["catalog is empty"]),
        ("\n  \n", ["catalog is empty"]),
        ("ID,is_lens\n100000,1,7\n", ["catalog has rows with more fields than its header line"]),
        ('ID,is_lens\n"100000,1\n', ["catalog is not a readable CSV file"]),
        ("ID;is_lens\n100000;1\n", ["catalog has no ID column (columns: ID;is_lens)",
                                    "the columns must be separated by commas"]),
        ("ID,is_lens,ID\n100000,1,100000\n", ["catalog has 2 id columns (ID, ID.1); keep one"]),
    ],
)
def test_bad_catalogs_are_refused_naming_the_file(tmp_path, text, fragments):
    catalog = tmp_path / TRAINING_CATALOG
    catalog.write_text(text)
    one_line_error(lambda: read_catalog(catalog), catalog, *fragments)


def test_whole_decimal_ids_and_labels_are_accepted(tmp_path):
    catalog = tmp_path / TRAINING_CATALOG
    catalog.write_text("ID,is_lens\n100000.0,1.0\n100001,0\n")
    _, ids, labels = read_catalog(catalog)
    assert ids.tolist() == [100000, 100001] and labels.tolist() == [1, 0] and ids.dtype == np.int64
    catalog.write_text("ID,no_source\n+7,0\n8,1\n")  # test layout: label = 1 - no_source
    _, ids, labels = read_catalog(catalog)
    assert ids.tolist() == [7, 8] and labels.tolist() == [1, 0]


def test_read_objects_of_one_object_without_out(make_dataset):
    dataset = ChallengeDataset(make_dataset(survey="ground", n=2, layout="train"))
    images = read_objects([dataset.band_paths[1]])
    assert images.shape == (1, 4, 101, 101) and images.dtype == np.float32
    np.testing.assert_array_equal(images[0], np.stack([fits.getdata(p) for p in dataset.band_paths[1]]))


def test_read_objects_refuses_a_non_contiguous_out(make_dataset):
    dataset = ChallengeDataset(make_dataset(survey="space", n=2, layout="train"))
    out = np.zeros((2, 1, 101, 202), np.float32)[..., ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        read_objects(dataset.band_paths, out=out)
    assert not out.any()


def test_two_test_catalogs_need_the_survey(make_dataset):
    root = make_dataset(survey="space", n=3, layout="test")
    shutil.copy(root / "euclidB_image_catalog.csv", root / "kidsB_image_catalog.csv")
    one_line_error(lambda: ChallengeDataset(root), root, "holds both euclidB_image_catalog.csv and "
                   "kidsB_image_catalog.csv; pass the survey")
    assert len(ChallengeDataset(root, survey="space")) == 3


def test_space_and_ground_images_in_one_folder_need_the_survey(make_dataset):
    root = make_dataset(survey="space", n=3, layout="train")
    ground = make_dataset(survey="ground", n=2, layout="train")
    shutil.copytree(ground / "Data.0", root / "ground_part")
    one_line_error(lambda: ChallengeDataset(root), root, "holds both space and ground images; pass the survey")
    assert len(ChallengeDataset(root, survey="space")) == 3


@pytest.mark.parametrize("name", ["imageEUC_VIS-.fits", "imageEUC_VIS-abc.fits", "imageEUC_VIS-12x.fits"])
def test_band_like_names_without_id_digits_are_not_images(make_dataset, name):
    root = make_dataset(survey="space", n=3, layout="train")
    (root / name).write_bytes(b"not an image")
    dataset = ChallengeDataset(root)
    assert len(dataset) == 3 and dataset.skipped == [] and dataset.incomplete == []


def test_an_id_of_twenty_digits_is_refused(make_dataset):
    root = make_dataset(survey="space", n=3, layout="train")
    big = root / f"imageEUC_VIS-{2**63}.fits"
    shutil.copy(ChallengeDataset(root).band_paths[0][0], big)
    one_line_error(lambda: ChallengeDataset(root), big, f"object ID {2**63} is too large (at most 19 digits)")
    big.rename(root / f"imageEUC_VIS-{2**63 - 1}.fits")  # the largest int64 is still an ID
    assert ChallengeDataset(root, require_labels=False).ids[-1] == 2**63 - 1


def test_two_files_of_one_object_and_band_are_refused(make_dataset):
    root = make_dataset(survey="ground", n=3, layout="train")
    first = ChallengeDataset(root).band_paths[1][2]
    (root / "copy").mkdir()
    second = shutil.copy(first, root / "copy" / first.name)
    message = one_line_error(lambda: ChallengeDataset(root), "second G file of object 100001 (the first is ")
    assert str(first) in message and str(second) in message


def test_missing_band_outside_band_folders_is_expected_beside_the_others(make_dataset):
    root = make_dataset(survey="ground", n=2, layout="train")
    fmt = SURVEYS["ground"]
    for path in [p for paths in ChallengeDataset(root).band_paths for p in paths]:
        os.replace(path, root / path.name)
    (root / fmt.file_names(100001)[3]).unlink()
    dataset = ChallengeDataset(root)
    assert dataset.incomplete == [(100001, root / fmt.file_names(100001)[3])]
    assert dataset.ids.tolist() == [100000]


def test_repr_names_the_folder_survey_layout_and_size(make_dataset):
    root = make_dataset(survey="ground", n=3, layout="test")
    assert repr(ChallengeDataset(root)) == (f"ChallengeDataset({str(root.resolve())!r}, survey='ground', "
                                            "layout='test', objects=3)")


def test_long_column_names_are_cut_at_40_characters(tmp_path):
    catalog = tmp_path / TRAINING_CATALOG
    forty, forty_one = "a" * 40, "b" * 41
    catalog.write_text(f"{forty},{forty_one}\n1,2\n")
    message = one_line_error(lambda: read_catalog(catalog), "no ID column")
    assert f"(columns: {forty}, {'b' * 40}...)" in message


def test_fingerprint_stays_when_the_folder_moves(make_dataset):
    """Relative paths: a dataset folder renamed or moved (times kept) keeps its fingerprint, and its cache."""
    root = make_dataset(survey="space", n=3, layout="train")
    first = ChallengeDataset(root).fingerprint()
    for suffix in ("m", "v"):  # one character more each time: both parities of the root path's length
        moved = root.with_name(root.name + suffix)
        root.rename(moved)
        assert ChallengeDataset(moved).fingerprint() == first
        root = moved


def test_file_problem_without_a_scandir_entry(tmp_path):
    """Other modules ask about a bare path (no os.scandir entry): a regular file, a folder, a pipe, nothing."""
    from lexactum.data.layouts import file_problem

    (tmp_path / "a.fits").write_bytes(b"x")
    os.mkfifo(tmp_path / "pipe")
    assert file_problem(tmp_path / "a.fits") is None
    assert file_problem(str(tmp_path)) == "a folder, not a file"
    assert file_problem(tmp_path / "pipe") == "a named pipe (FIFO), not a file"
    assert file_problem(tmp_path / "gone") == "No such file or directory"
    entry = next(e for e in os.scandir(tmp_path) if e.name == "a.fits")
    assert file_problem(entry.path, entry) is None


def test_a_survey_asked_for_without_its_images_is_named(make_dataset):
    """A space folder opened as ground names the survey's missing images, not 'no complete object'."""
    root = make_dataset(survey="space", n=3, layout="train")
    message = one_line_error(lambda: ChallengeDataset(root, survey="ground"), root,
                             "no ground images (", "anywhere under this folder")
    assert "no complete" not in message


@pytest.mark.parametrize("cell", ["9007199254740992.0", "-9007199254740992.0", "1e16"])
def test_decimal_ids_from_two_to_the_53_are_refused(tmp_path, cell):
    """From 2**53 on, decimals are not exact (2**53 + 1 reads as 2**53): such an ID would be silently wrong."""
    catalog = tmp_path / TRAINING_CATALOG
    catalog.write_text(f"ID,is_lens\n100000,1\n{cell},0\n")
    one_line_error(lambda: read_catalog(catalog), catalog, "column ID holds ", "not an integer (data row 2)")
    catalog.write_text("ID,is_lens\n100000,1\n9007199254740991.0,0\n-9007199254740991.0,1\n")  # 2**53 - 1: exact
    assert read_catalog(catalog)[1].tolist() == [100000, 2**53 - 1, -(2**53 - 1)]
