"""read_fits / read_fits_stack at the edges a mutation check found unpinned: header sizes on a block boundary,
files without an image, degenerate shapes, and the arguments of read_fits_stack."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits

from lexactum.data import fits as fits_module
from lexactum.data.fits import BLOCK, read_fits, read_fits_stack
from lexactum.errors import DataError


@pytest.fixture
def no_astropy_fallback(monkeypatch):
    def fail(path):
        raise AssertionError(f"{path} was read by the astropy fallback")

    monkeypatch.setattr(fits_module, "_read_with_astropy", fail)


def _header_with_cards(n_cards: int) -> fits.Header:
    """A header that astropy writes with exactly ``n_cards`` cards before END (SIMPLE to NAXIS2 and fillers)."""
    header = fits.Header()
    for k in range(n_cards - 5):
        header[f"KEY{k}"] = (k, "filler")
    return header


@pytest.mark.parametrize("n_cards, header_bytes", [(35, BLOCK), (36, 2 * BLOCK), (71, 2 * BLOCK), (72, 3 * BLOCK)])
def test_end_card_at_the_end_or_start_of_a_block(tmp_path, no_astropy_fallback, n_cards, header_bytes):
    """An END card that opens a new 2880-byte block (36 cards before it) is found, on the fast path."""
    data = np.arange(12, dtype=">f4").reshape(3, 4) * 0.5
    path = tmp_path / "edge.fits"
    fits.PrimaryHDU(data, header=_header_with_cards(n_cards)).writeto(path)
    raw = path.read_bytes()
    assert raw.find(b"END" + b" " * 77) == n_cards * 80 and len(raw) == header_bytes + BLOCK
    np.testing.assert_array_equal(read_fits(path), data)
    stack = read_fits_stack([path, path])
    np.testing.assert_array_equal(stack, np.stack([data, data]))


def test_a_table_only_file_holds_no_image(tmp_path):
    path = tmp_path / "table.fits"
    table = fits.BinTableHDU.from_columns([fits.Column(name="flux", format="E", array=np.ones(3))])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    with pytest.raises(DataError, match=f"^{path}: FITS file holds no image data$"):
        read_fits(path)
    with pytest.raises(DataError, match=f"^{path}: FITS file holds no image data$"):
        read_fits_stack([path])


def test_a_header_without_data_cannot_be_read_as_an_image(tmp_path):
    path = tmp_path / "header_only.fits"
    fits.PrimaryHDU().writeto(path)
    with pytest.raises(DataError, match=f"^{path}: cannot read as a FITS image"):
        read_fits(path)


@pytest.mark.parametrize("shape", [(1, 7), (7, 1), (1, 1)])
def test_one_row_or_column_images_on_the_astropy_path(tmp_path, shape):
    """A scaled (BITPIX 16) image goes to astropy; a 1-pixel-high image stays 2-D, never squeezed."""
    data = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    path = tmp_path / "thin.fits"
    hdu = fits.PrimaryHDU(data)
    hdu.header["BZERO"] = 10
    hdu.writeto(path)
    image = read_fits(path)
    assert image.shape == shape and image.dtype == np.float32
    np.testing.assert_array_equal(image, data + 10)
    assert read_fits_stack([path, path]).shape == (2, *shape)


def test_a_cube_of_one_plane_reads_as_its_image(tmp_path):
    data = np.arange(6, dtype=np.int32).reshape(1, 1, 2, 3)
    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(data).writeto(path)
    np.testing.assert_array_equal(read_fits(path), data[0, 0])


def test_stack_of_no_files():
    empty = read_fits_stack([])
    assert empty.shape == (0, 0, 0) and empty.dtype == np.float32
    out = np.empty((0, 5, 5), np.float32)
    assert read_fits_stack([], out=out) is out


@pytest.mark.parametrize("out", [np.empty((2, 3, 4), np.float64), np.empty((3, 3, 4), np.float32),
                                 np.empty((2, 12), np.float32), np.empty((1, 3, 4), np.float32)])
def test_stack_refuses_an_out_of_the_wrong_shape_or_type(tmp_path, out):
    path = tmp_path / "a.fits"
    fits.PrimaryHDU(np.zeros((3, 4), np.float32)).writeto(path)
    with pytest.raises(DataError, match=r"^output array has shape .* expected \(2, H, W\) float32$"):
        read_fits_stack([path, path], out=out)


def test_stack_out_of_another_image_size_names_the_file(tmp_path):
    path = tmp_path / "a.fits"
    fits.PrimaryHDU(np.zeros((3, 4), np.float32)).writeto(path)
    with pytest.raises(DataError, match=f"^{path}: image is 3x4, expected 4x3 like the other files$"):
        read_fits_stack([path], out=np.empty((1, 4, 3), np.float32))


def test_data_that_fills_whole_blocks_is_not_truncated(tmp_path, no_astropy_fallback):
    """24x30 float32 is exactly one 2880-byte block: header + data is the whole file, with no padding."""
    data = np.linspace(-1, 1, 720, dtype=">f4").reshape(24, 30)
    path = tmp_path / "full_block.fits"
    fits.PrimaryHDU(data).writeto(path)
    assert path.stat().st_size == 2 * BLOCK
    np.testing.assert_array_equal(read_fits(path), data)
    np.testing.assert_array_equal(read_fits_stack([path, path])[1], data)


def test_truncated_data_says_how_many_bytes_it_needs(tmp_path):
    path = tmp_path / "cut.fits"
    fits.PrimaryHDU(np.zeros((101, 101), np.float32)).writeto(path)
    path.write_bytes(path.read_bytes()[:BLOCK + 1000])
    message = f"^{path}: truncated FITS file \\(3880 bytes; header and 101x101 float32 image need 43684\\)$"
    with pytest.raises(DataError, match=message):
        read_fits(path)


def _card_by_card(path, cards: list[str], data: np.ndarray) -> None:
    """Write a FITS file card by card (astropy's writer refuses the odd cards below), latin-1 allowed."""
    header = b"".join(card.ljust(80).encode("latin-1") for card in [*cards, "END"])
    pixels = data.astype(">f4").tobytes()
    path.write_bytes(header + b" " * (-len(header) % BLOCK) + pixels + b"\0" * (-len(pixels) % BLOCK))


_PLAIN_3x4 = ["SIMPLE  =                    T", "BITPIX  =                  -32", "NAXIS   =                    2",
              "NAXIS1  =                    4", "NAXIS2  =                    3"]
#: A non-ASCII byte in a header makes astropy parse it with its full parser, which honours HIERARCH cards
#: naming BZERO or BSCALE and ends a header at a malformed END card (its quick parser does neither).
_NOT_ASCII = "COMMENT caf\xe9"


@pytest.mark.parametrize("card", ["HIERARCH BZERO = 5", "HIERARCH BSCALE = 2.5", "HIERARCH bzero = -1"])
def test_a_hierarch_scaling_card_is_applied_as_astropy_does(tmp_path, card):
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = tmp_path / "hierarch.fits"
    _card_by_card(path, [*_PLAIN_3x4, _NOT_ASCII, card], data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = fits.getdata(path)
    assert not np.array_equal(expected, data)  # astropy does scale this file
    np.testing.assert_array_equal(read_fits(path), expected)
    np.testing.assert_array_equal(read_fits_stack([path, path])[1], expected)


def test_a_malformed_end_card_is_never_read_past(tmp_path):
    """astropy's header ends at ``END     = 5`` in the first block; the real END card in the second block
    would put the image one block later: astropy refuses the file, and so does read_fits."""
    fillers = [f"FILL{k:<4d}= {k:20d}" for k in range(40)]
    path = tmp_path / "early_end.fits"
    _card_by_card(path, [*_PLAIN_3x4, _NOT_ASCII, "END     = 5", *fillers], np.ones((3, 4), np.float32))
    assert path.stat().st_size == 3 * BLOCK
    with pytest.raises(DataError, match=f"^{path}: cannot read as a FITS image"):
        read_fits(path)
    with pytest.raises(DataError, match=f"^{path}: cannot read as a FITS image"):
        read_fits_stack([path])
