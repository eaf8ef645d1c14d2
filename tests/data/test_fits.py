"""read_fits / read_fits_stack: identical to astropy on real and generated files, clear errors otherwise."""

from __future__ import annotations

import os

import numpy as np
import pytest
from astropy.io import fits

from lexactum.data import fits as fits_module
from lexactum.data.fits import read_fits, read_fits_stack
from lexactum.errors import DataError


def _same_bits(ours: np.ndarray, reference: np.ndarray) -> bool:
    """Equal values bit for bit (NaN payloads included) after converting the reference to native float32."""
    reference = np.ascontiguousarray(reference, dtype=np.float32)
    return ours.shape == reference.shape and np.array_equal(ours.view(np.uint32), reference.view(np.uint32))


@pytest.fixture
def no_astropy_fallback(monkeypatch):
    """Make the astropy fallback fail, to prove that a file went through the fast path."""

    def fail(path):
        raise AssertionError(f"{path} was read by the astropy fallback")

    monkeypatch.setattr(fits_module, "_read_with_astropy", fail)


@pytest.fixture
def sample_files(samples):
    files = sorted(samples.rglob("*.fits"))
    assert len(files) >= 32
    return files


def test_real_samples_bit_for_bit(sample_files, no_astropy_fallback):
    for path in sample_files:
        ours = read_fits(path)
        assert ours.dtype == np.float32 and ours.dtype.isnative
        assert ours.shape == (101, 101)
        assert _same_bits(ours, fits.getdata(path)), path


def test_real_samples_stack(sample_files, no_astropy_fallback):
    stack = read_fits_stack(sample_files)
    assert stack.shape == (len(sample_files), 101, 101) and stack.dtype == np.float32
    for image, path in zip(stack, sample_files, strict=True):
        assert _same_bits(image, fits.getdata(path)), path


@pytest.mark.parametrize("survey", ["space", "ground"])
def test_generated_files_into_memmap(make_dataset, tmp_path, survey, no_astropy_fallback):
    root = make_dataset(survey=survey, n=6, mask_fraction=1.0)
    files = sorted(root.rglob("*.fits"))
    memmap = np.lib.format.open_memmap(tmp_path / "cache.npy", mode="w+", dtype=np.float32,
                                       shape=(len(files) + 2, 101, 101))
    result = read_fits_stack(files, out=memmap[1:-1])
    assert result.base is not None and np.shares_memory(result, memmap)
    for k, path in enumerate(files):
        assert _same_bits(memmap[k + 1], fits.getdata(path)), path
        assert _same_bits(read_fits(path), fits.getdata(path)), path


def test_long_header_fast_path(tmp_path, no_astropy_fallback):
    data = np.random.default_rng(1).normal(size=(7, 5)).astype(">f4")
    header = fits.Header()
    for k in range(60):  # more than one 2880-byte block of cards
        header[f"KEY{k}"] = (k * 1.5, "filler")
    path = tmp_path / "long.fits"
    fits.PrimaryHDU(data, header=header).writeto(path)
    assert _same_bits(read_fits(path), fits.getdata(path))
    assert _same_bits(read_fits_stack([path, path])[1], fits.getdata(path))


def _write(path, hdus) -> None:
    fits.HDUList(hdus).writeto(path, overwrite=True)


def test_scaled_integers_use_astropy(tmp_path):
    raw = np.arange(-30, 30, dtype=np.int16).reshape(6, 10)
    hdu = fits.PrimaryHDU(raw)
    hdu.header["BSCALE"] = 2.5
    hdu.header["BZERO"] = -7.0
    path = tmp_path / "scaled.fits"
    _write(path, [hdu])
    ours = read_fits(path)
    assert ours.dtype == np.float32 and ours.dtype.isnative
    assert _same_bits(ours, fits.getdata(path))
    assert np.allclose(ours, raw * 2.5 - 7.0)


def test_scaled_floats_use_astropy(tmp_path):
    hdu = fits.PrimaryHDU(np.ones((4, 4), dtype=">f4"))
    hdu.header["BZERO"] = 3.0  # stays a -32 file, so only BZERO tells it apart from a simple one
    path = tmp_path / "bzero.fits"
    _write(path, [hdu])
    assert _same_bits(read_fits(path), fits.getdata(path))
    assert np.all(read_fits(path) == 4.0)
    assert np.all(read_fits_stack([path])[0] == 4.0)


def test_image_in_extension(tmp_path):
    data = np.random.default_rng(2).normal(size=(9, 11))
    path = tmp_path / "extension.fits"
    _write(path, [fits.PrimaryHDU(), fits.ImageHDU(data)])
    assert _same_bits(read_fits(path), data)


def test_primary_image_followed_by_extension(tmp_path):
    primary = np.random.default_rng(3).normal(size=(8, 8)).astype(np.float32)
    path = tmp_path / "two.fits"
    _write(path, [fits.PrimaryHDU(primary), fits.ImageHDU(np.zeros((3, 3)))])
    assert _same_bits(read_fits(path), primary)
    assert _same_bits(read_fits_stack([path])[0], primary)


def test_other_bitpix_and_degenerate_axis(tmp_path):
    data = np.random.default_rng(4).normal(size=(1, 6, 5))  # float64, NAXIS = 3 with NAXIS3 = 1
    path = tmp_path / "cube.fits"
    _write(path, [fits.PrimaryHDU(data)])
    ours = read_fits(path)
    assert ours.shape == (6, 5) and ours.dtype == np.float32
    assert np.array_equal(ours, data[0].astype(np.float32))


def test_real_cube_is_rejected(tmp_path):
    path = tmp_path / "cube.fits"
    _write(path, [fits.PrimaryHDU(np.zeros((2, 6, 5), dtype=np.float32))])
    with pytest.raises(DataError, match=r"cube\.fits.*2-D"):
        read_fits(path)


@pytest.fixture
def good_file(make_dataset):
    return sorted(make_dataset(survey="space", n=1).rglob("*.fits"))[0]


def test_truncated_data(good_file, tmp_path):
    path = tmp_path / "cut.fits"
    path.write_bytes(good_file.read_bytes()[:2880 + 1000])
    with pytest.raises(DataError, match=r"cut\.fits.*truncated"):
        read_fits(path)
    with pytest.raises(DataError, match=r"cut\.fits.*truncated"):
        read_fits_stack([good_file, path])


def test_truncated_header(good_file, tmp_path):
    path = tmp_path / "head.fits"
    path.write_bytes(good_file.read_bytes()[:1600])
    with pytest.raises(DataError, match=r"head\.fits.*END"):
        read_fits(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.fits"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.fits.*empty"):
        read_fits(path)
    with pytest.raises(DataError, match=r"empty\.fits.*empty"):
        read_fits_stack([path])


def test_not_fits(tmp_path):
    path = tmp_path / "notes.fits"
    path.write_text("ID,is_lens\n100000,1\n" * 200)
    with pytest.raises(DataError, match=r"notes\.fits.*not a FITS file"):
        read_fits(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"absent\.fits.*cannot open"):
        read_fits(tmp_path / "absent.fits")


def test_stack_shape_mismatch(good_file, tmp_path):
    small = tmp_path / "small.fits"
    _write(small, [fits.PrimaryHDU(np.zeros((50, 50), dtype=">f4"))])
    with pytest.raises(DataError, match=r"small\.fits.*50x50.*101x101"):
        read_fits_stack([good_file, small])
    with pytest.raises(DataError, match=r"expected \(2, H, W\) float32"):
        read_fits_stack([good_file, good_file], out=np.zeros((3, 101, 101), dtype=np.float32))


def test_stack_reports_each_bad_file(good_file, tmp_path):
    """A short file after a good one is judged on its own bytes, not on what the buffer held before."""
    empty = tmp_path / "later.fits"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"later\.fits.*empty"):
        read_fits_stack([good_file, empty])
    head_only = tmp_path / "header_only.fits"
    head_only.write_bytes(good_file.read_bytes()[:2880])
    with pytest.raises(DataError, match=r"header_only\.fits.*truncated"):
        read_fits_stack([good_file, head_only])


def test_corrupt_header_value(good_file, tmp_path):
    raw = good_file.read_bytes()
    card = raw.index(b"BITPIX  =")
    path = tmp_path / "corrupt.fits"
    path.write_bytes(raw[:card + 27] + b"abc" + raw[card + 30:])
    with pytest.raises(DataError, match=r"corrupt\.fits.*cannot read as a FITS image"):
        read_fits(path)


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_not_a_regular_file(tmp_path, kind):
    """A FIFO named like an image is refused at once (opening it used to wait for a writer for ever)."""
    from guards import time_limit

    path = tmp_path / "image.fits"
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    with time_limit(5, f"reading a {kind}"):
        for read in (read_fits, lambda p: read_fits_stack([p])):
            with pytest.raises(DataError, match=r"image\.fits: not a regular file"):
                read(path)
