"""ChallengeDataset: both layouts and surveys, real keys, catalog quirks, folder trees, reports, bad input."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from lexactum.data import ChallengeDataset
from lexactum.data.layouts import read_catalog
from lexactum.data.surveys import SURVEYS, TRAINING_CATALOG
from lexactum.errors import DataError

SPACE_KEY = "ClarkGuilty_LensFindingChallenge1Julia/classifications.csv"
GROUND_KEY = "agoila_strong-lenses/classifications.csv"


def _catalog_labels(root: Path, layout: str, survey: str) -> dict[int, int]:
    """Labels read straight from the written catalog with the csv module (independent of the reader)."""
    if layout == "train":
        with open(root / TRAINING_CATALOG, newline="") as fh:
            return {int(r["ID"]): int(r["is_lens"]) for r in csv.DictReader(fh)}
    with open(root / SURVEYS[survey].test_catalog, newline="") as fh:
        rows = csv.DictReader(line for line in fh if not line.startswith("#"))
        return {int(r["ID"]): 1 - int(r["no_source"]) for r in rows}


@pytest.mark.parametrize("layout", ["train", "test"])
@pytest.mark.parametrize("survey", ["space", "ground"])
def test_both_layouts_and_surveys(make_dataset, survey, layout):
    root = make_dataset(survey=survey, n=6, layout=layout)
    dataset = ChallengeDataset(root)
    fmt = SURVEYS[survey]
    assert dataset.survey is fmt and dataset.layout == layout and len(dataset) == 6
    assert dataset.ids.dtype == np.int64 and dataset.labels.dtype == np.int64
    truth = _catalog_labels(root, layout, survey)
    assert dataset.ids.tolist() == sorted(truth)
    assert dataset.labels.tolist() == [truth[i] for i in dataset.ids]
    assert 0 < dataset.labels.sum() < 6  # both classes present, so a swapped label would show
    for object_id, paths in zip(dataset.ids, dataset.band_paths, strict=True):
        assert [p.name for p in paths] == list(fmt.file_names(int(object_id)))
        assert [p.parent.name for p in paths] == list(fmt.band_folders)
    image = dataset.read(2)
    expected = np.stack([fits.getdata(p) for p in dataset.band_paths[2]]).astype(np.float32)
    assert image.dtype == np.float32 and image.shape == (fmt.n_bands, 101, 101)
    np.testing.assert_array_equal(image, expected)
    assert dataset.catalog["ID"].astype(int).tolist() == dataset.ids.tolist()
    assert ChallengeDataset(root, survey=survey).ids.tolist() == dataset.ids.tolist()
    assert dataset.incomplete == [] and len(dataset.unlabelled) == 0 and len(dataset.missing_images) == 0


@pytest.mark.parametrize("survey, key", [("space", SPACE_KEY), ("ground", GROUND_KEY)])
def test_real_samples_with_real_keys(samples, tmp_path, survey, key):
    """A training tree made of the real sample images and the real key: labels agree with the sample folders."""
    fmt = SURVEYS[survey]
    source = samples / "mariogeiger_lensfinder-euclid" / "samples" / f"{survey}_based"
    sample_label = {}
    for path in source.rglob("*.fits"):
        prefixes = [pattern.split("{id}")[0] for pattern in fmt.file_patterns]
        band = next(b for b, prefix in enumerate(prefixes) if path.name.startswith(prefix))
        target = tmp_path / "Data.0" / "Public" / fmt.band_folders[band] / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        sample_label[int(path.stem.split("-")[1])] = int(path.relative_to(source).parts[0] == "lens")
    shutil.copyfile(samples / key, tmp_path / TRAINING_CATALOG)
    with open(samples / key, newline="") as fh:
        key_rows = {int(r["ID"]): int(r["is_lens"]) for r in csv.DictReader(fh)}

    dataset = ChallengeDataset(tmp_path)
    assert dataset.survey is fmt and dataset.layout == "train"
    assert dataset.ids.tolist() == sorted(sample_label)
    assert dataset.labels.tolist() == [key_rows[i] for i in dataset.ids]
    assert dataset.labels.tolist() == [sample_label[i] for i in dataset.ids]
    assert len(dataset.missing_images) == len(key_rows) - len(sample_label)
    assert dataset.read(0).shape == (fmt.n_bands, 101, 101)


def test_real_key_counts(samples):
    """The reader gives the real keys' documented lens counts (13,968 space, 8,021 ground of 20,000)."""
    for key in (SPACE_KEY, GROUND_KEY):
        _, ids, labels = read_catalog(samples / key)
        reference = pd.read_csv(samples / key)
        assert ids.tolist() == reference["ID"].tolist()
        assert labels.tolist() == reference["is_lens"].tolist()
    assert read_catalog(samples / SPACE_KEY)[2].sum() == 13_968
    assert read_catalog(samples / GROUND_KEY)[2].sum() == 8_021


def test_catalog_quirks(make_dataset):
    """CRLF, blank leading lines, quoted and upper-case header names, extra and reordered columns."""
    root = make_dataset(survey="ground", n=6, layout="train")
    truth = _catalog_labels(root, "train", "ground")
    lines = ["", "", '"Extra","IS_LENS","Einstein_area","id","note"']
    lines += [f'7,{truth[i]},1.5E-10,{i},"a, b"' for i in sorted(truth)]
    (root / TRAINING_CATALOG).write_bytes(("\r\n".join(lines) + "\r\n").encode())
    dataset = ChallengeDataset(root)
    assert dataset.labels.tolist() == [truth[i] for i in dataset.ids] and len(dataset) == 6
    assert list(dataset.catalog.columns) == ["Extra", "IS_LENS", "Einstein_area", "id", "note"]


def test_test_catalog_comments_and_column_order(make_dataset):
    root = make_dataset(survey="space", n=6, layout="test")
    truth = _catalog_labels(root, "test", "space")
    lines = ["# a comment", "#another", "mag,no_source,ID"] + [f"21.5,{1 - truth[i]},{i}" for i in truth]
    (root / "euclidB_image_catalog.csv").write_text("\n".join(lines) + "\n")
    dataset = ChallengeDataset(root)
    assert dataset.layout == "test" and dataset.labels.tolist() == [truth[i] for i in dataset.ids]


def test_nested_folders_none_skipped(make_dataset, tmp_path):
    """Objects under Data_KiDS_Big.10, deeper Data* trees and Public/ at the root are all found."""
    root = make_dataset(survey="ground", n=9, layout="test", per_folder=3)
    fmt = SURVEYS["ground"]
    moves = {100004: Path("Data_KiDS_Big.10"), 100005: Path("Archive/DataX/Data_KiDS_Big.7"), 100006: Path(".")}
    for object_id, folder in moves.items():
        for band_folder, name in zip(fmt.band_folders, fmt.file_names(object_id), strict=True):
            source = next(root.rglob(name))
            target = root / folder / "Public" / band_folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
    dataset = ChallengeDataset(root)
    assert dataset.ids.tolist() == list(range(100_000, 100_009))
    assert dataset.band_paths[4][0].relative_to(root).parts[0] == "Data_KiDS_Big.10"
    assert dataset.band_paths[6][3] == root / "Public" / "Band4" / "imageSDSS_U-100006.fits"


def test_space_files_directly_in_a_folder(make_dataset):
    root = make_dataset(survey="space", n=5, layout="train")
    for path in list(root.rglob("*.fits")):
        os.replace(path, root / path.name)
    shutil.rmtree(root / "Data.0")
    dataset = ChallengeDataset(root)
    assert len(dataset) == 5 and dataset.band_paths[0][0].parent == root


def test_problems_reported_by_id(make_dataset):
    root = make_dataset(survey="ground", n=8, layout="train")
    dataset = ChallengeDataset(root)
    gone = dataset.band_paths[1][2]  # G band of the second object
    gone.unlink()
    for path in dataset.band_paths[3]:  # every file of the fourth object
        path.unlink()
    table = pd.read_csv(root / TRAINING_CATALOG)
    table[table["ID"] != dataset.ids[5]].to_csv(root / TRAINING_CATALOG, index=False)

    again = ChallengeDataset(root)
    assert again.incomplete == [(int(dataset.ids[1]), gone)]
    assert again.unlabelled.tolist() == [dataset.ids[5]]
    assert again.missing_images.tolist() == [dataset.ids[3]]
    assert again.ids.tolist() == [i for k, i in enumerate(dataset.ids) if k not in (1, 3, 5)]
    assert again.catalog["ID"].tolist() == again.ids.tolist()


def test_unlabelled_folder_of_cutouts(make_dataset):
    root = make_dataset(survey="space", n=4, layout="test")
    (root / "euclidB_image_catalog.csv").unlink()
    with pytest.raises(DataError, match="no catalog"):
        ChallengeDataset(root)
    dataset = ChallengeDataset(root, "space", require_labels=False)
    assert dataset.layout == "unlabelled" and dataset.labels.tolist() == [-1] * 4 and len(dataset.unlabelled) == 4
    (root / TRAINING_CATALOG).write_text("ID,is_lens\n100001,1\n100002,0\n")
    partial = ChallengeDataset(root, require_labels=False)  # a partial catalog: the others stay, label -1
    assert partial.labels.tolist() == [-1, 1, 0, -1] and partial.unlabelled.tolist() == [100_000, 100_003]
    assert partial.catalog["is_lens"].iloc[1:3].tolist() == [1, 0] and partial.catalog["ID"].isna().sum() == 2


def test_fingerprint_follows_files(make_dataset):
    root = make_dataset(survey="space", n=4, layout="train")
    first = ChallengeDataset(root).fingerprint()
    assert ChallengeDataset(root).fingerprint() == first
    path = ChallengeDataset(root).band_paths[2][0]
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    touched = ChallengeDataset(root).fingerprint()
    assert touched != first
    with open(path, "ab") as fh:
        fh.write(b"\0" * 2880)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert ChallengeDataset(root).fingerprint() not in (first, touched)


def _one_line_error(call, *fragments):
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert str(fragment) in message
    return message


def test_bad_datasets(make_dataset, tmp_path):
    _one_line_error(lambda: ChallengeDataset(tmp_path / "nowhere"), tmp_path / "nowhere", "does not exist")
    (tmp_path / "empty").mkdir()
    _one_line_error(lambda: ChallengeDataset(tmp_path / "empty"), "empty")
    root = make_dataset(survey="space", n=3, layout="train")
    catalog = root / TRAINING_CATALOG
    catalog.write_text("object,is_lens\n100000,1\n")
    _one_line_error(lambda: ChallengeDataset(root), catalog, "no ID column")
    catalog.write_text("ID,lens\n100000,1\n")
    _one_line_error(lambda: ChallengeDataset(root), catalog, "no label column")
    catalog.write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    _one_line_error(lambda: ChallengeDataset(root), catalog, "not a CSV")
    catalog.write_text("ID,is_lens\n100000,yes\n")
    _one_line_error(lambda: ChallengeDataset(root), catalog, "is_lens")
    catalog.write_text("ID,is_lens\n1e20,1\n")  # no int64 holds it: refused, not wrapped round
    _one_line_error(lambda: ChallengeDataset(root), catalog, "column ID holds '1e+20', not an integer")
    catalog.write_text("ID,is_lens\n")
    _one_line_error(lambda: ChallengeDataset(root), root, "no complete space object")


def test_survey_cannot_be_told(tmp_path, make_dataset):
    (tmp_path / TRAINING_CATALOG).write_text("ID,is_lens\n100000,1\n")
    (tmp_path / "notes.txt").write_text("no images here")
    _one_line_error(lambda: ChallengeDataset(tmp_path), tmp_path, "cannot tell the survey")
    root = make_dataset(survey="space", n=3, layout="test")
    _one_line_error(lambda: ChallengeDataset(root, survey="ground"), "euclidB_image_catalog.csv", "space catalog")


def test_unreadable_or_odd_image_named(make_dataset):
    root = make_dataset(survey="ground", n=3, layout="train")
    dataset = ChallengeDataset(root)
    odd = dataset.band_paths[0][2]
    data = fits.getdata(odd)
    fits.writeto(odd, data[:50, :60], overwrite=True)
    _one_line_error(lambda: dataset.read(0), odd, "50")
    truncated = dataset.band_paths[1][1]
    truncated.write_bytes(truncated.read_bytes()[:4000])
    _one_line_error(lambda: dataset.read(1), truncated)
    not_fits = dataset.band_paths[2][3]
    not_fits.write_text("hello")
    _one_line_error(lambda: dataset.read(2), not_fits)


def test_odd_first_band_is_the_file_named(make_dataset):
    """The first band file of an object is checked against the survey's 101x101 too, not taken as the norm."""
    root = make_dataset(survey="ground", n=3, layout="train")
    dataset = ChallengeDataset(root)
    odd = dataset.band_paths[0][0]
    fits.writeto(odd, np.zeros((64, 64), np.float32), overwrite=True)
    message = _one_line_error(lambda: dataset.read(0), odd, "64x64")
    assert str(dataset.band_paths[0][1]) not in message
    assert dataset.read(1).shape == (4, 101, 101)


def _make_odd(path: Path, odd: str) -> str:
    """Put an entry of kind ``odd`` at ``path`` (removed first); returns the reason the scan must give."""
    path.unlink()
    if odd == "broken link":
        path.symlink_to(path.parent / "gone.fits")
        return f"a broken symbolic link to {path.parent / 'gone.fits'}"
    if odd == "link loop":
        path.symlink_to(path.name)
        return "a symbolic link loop"
    if odd == "named pipe":
        os.mkfifo(path)
        return "a named pipe (FIFO), not a file"
    path.mkdir()
    return "a folder, not a file"


@pytest.mark.parametrize("odd", ["broken link", "link loop", "named pipe", "folder"])
def test_band_entry_that_is_no_file_is_skipped_with_one_warning(make_dataset, tmp_path, caplog, odd):
    """Like a missing band file: its object is incomplete, one warning names the entry, nothing opens it."""
    from lexactum.data.cache import prepare

    root = make_dataset(survey="ground", n=4, layout="train")
    before = ChallengeDataset(root)
    path = before.band_paths[2][1]
    reason = _make_odd(path, odd)
    with caplog.at_level("WARNING", logger="lexactum.data.layouts"):
        dataset = ChallengeDataset(root)
    assert dataset.ids.tolist() == before.ids[[0, 1, 3]].tolist()
    assert dataset.incomplete == [(int(before.ids[2]), path)]
    assert dataset.skipped == [(str(path), reason)]
    assert [r.getMessage() for r in caplog.records] == [
        f"lexactum: warning: skipped 1 entry under {root} that cannot be read as files: {path} ({reason})"]
    assert len(prepare(dataset, cache_dir=tmp_path, workers=1, progress=False)) == 3  # no hang on a pipe


def test_broken_links_of_other_names_are_reported_hidden_ones_ignored(make_dataset, caplog):
    root = make_dataset(survey="space", n=3, layout="train")
    (root / "Data.9").symlink_to(root / "unmounted")  # a folder of images that is not there
    (root / "loop").symlink_to("loop")
    (root / ".#classifications.csv").symlink_to("user@host.123")  # an editor's lock file
    with caplog.at_level("WARNING", logger="lexactum.data.layouts"):
        dataset = ChallengeDataset(root)
        ChallengeDataset(root)  # a command opening its dataset again (train does) warns once
    assert len(dataset) == 3
    assert dataset.skipped == [(str(root / "Data.9"), f"a broken symbolic link to {root / 'unmounted'}"),
                               (str(root / "loop"), "a symbolic link loop")]
    assert len(caplog.records) == 1 and "skipped 2 entries" in caplog.records[0].getMessage()


def test_when_skipped_entries_leave_nothing_the_error_says_so(make_dataset):
    root = make_dataset(survey="space", n=2, layout="train")
    for path in [p for paths in ChallengeDataset(root).band_paths for p in paths]:
        _make_odd(path, "broken link")
    message = _one_line_error(lambda: ChallengeDataset(root), root, "cannot tell the survey")
    assert "; skipped 2 entries under" in message and "broken symbolic link" in message


def test_unlistable_folder_and_vanished_file_are_one_line(make_dataset, monkeypatch):
    root = make_dataset(survey="space", n=3, layout="train")
    dataset = ChallengeDataset(root)
    gone = dataset.band_paths[1][0]
    gone.unlink()  # after the scan: the fingerprint (cache validity) meets it
    _one_line_error(dataset.fingerprint, gone, "No such file or directory")
    real_scandir = os.scandir

    def refusing(path="."):
        if Path(path) == root:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)  # root ignores permissions: simulated
    _one_line_error(lambda: ChallengeDataset(root), root, "cannot list folder (Permission denied)")
