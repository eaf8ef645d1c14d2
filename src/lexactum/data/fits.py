"""Reading challenge FITS cutouts fast.

The challenge files are all the same simple kind: one primary HDU, ``BITPIX = -32``, ``NAXIS = 2``, no
scaling, nothing after the data. For those we parse the 80-character header cards ourselves and copy the
big-endian data block straight into a float32 array, 15-30x faster than ``astropy.io.fits.getdata``
(which builds a whole HDU list per file; see benchmarks/bench_data.py). Anything else (scaling, other
BITPIX, more axes, extensions, compression, random groups) goes to astropy, so values are always what
astropy reads.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lexactum.errors import DataError

BLOCK = 2880
CARD = 80
#: The keyword fields of the five cards a fast-path header starts with (FITS standard 4.4.1.1).
_MANDATORY = b"SIMPLE  BITPIX  NAXIS   NAXIS1  NAXIS2  "
#: Words that must not appear in any keyword field of a fast-path header (upper-cased): keywords that change
#: how astropy reads the primary image (scaling, random groups, compression, extensions). astropy reads any
#: case and takes the last of repeated keywords, so SIMPLE, BITPIX and NAXIS must also appear only in their
#: own cards. astropy refuses a whole header for a CONTINUE card without a string value: left to astropy too.
_UNUSUAL = (b"BSCALE", b"BZERO", b"GROUPS", b"ZIMAGE", b"XTENSION", b"PCOUNT", b"GCOUNT", b"CONTINUE")
_WORDS = re.compile(b"|".join((b"SIMPLE", b"BITPIX", b"NAXIS", b"HIERARCH") + _UNUSUAL))
_MANDATORY_WORDS = [b"SIMPLE", b"BITPIX", b"NAXIS", b"NAXIS", b"NAXIS"]
_END_CARD = b"END" + b" " * (CARD - 3)
#: Files larger than this are left to astropy (which memory-maps) instead of being read whole.
_MAX_FAST_BYTES = 64 * 2**20


class _Layout:
    """Header size of a file and, when ``simple`` (fast path), the shape of its float32 image."""

    __slots__ = ("header_bytes", "shape", "simple")

    def __init__(self, header_bytes: int, shape: tuple[int, int] | None, simple: bool):
        self.header_bytes = header_bytes
        self.shape = shape
        self.simple = simple

    @property
    def data_bytes(self) -> int:
        return self.shape[0] * self.shape[1] * 4

    @property
    def file_bytes(self) -> int:
        """Size of a file holding exactly this header and the padded data block."""
        return self.header_bytes + -(-self.data_bytes // BLOCK) * BLOCK


def _card_value(card: bytes) -> bytes:
    """The value of a fixed-format card (value indicator in columns 9-10, value up to a comment)."""
    return card[10:].split(b"/", 1)[0].strip() if card[8:10] == b"= " else b""


def _is_plain(head: bytes, end: int) -> bool:
    """Whether astropy reads this header (``end``: offset of its END card) as a plain float32 2-D image.

    True only for the challenge files' kind of header: SIMPLE, BITPIX = -32, NAXIS = 2, NAXIS1, NAXIS2 as the
    first five fixed-format cards, and no other card whose keyword field (or HIERARCH card) holds one of
    them or an :data:`_UNUSUAL` word, or whose keyword field starts with END (astropy ends a header at a
    malformed END card). Anything unsure is left to astropy, so the fast path never reads a file differently.
    """
    fields = b"".join([head[k:k + 8] for k in range(0, end, CARD)])
    if not fields.startswith(_MANDATORY):
        return False
    upper = fields.upper()
    found = _WORDS.findall(upper)
    if found[:5] != _MANDATORY_WORDS or found[5:] != [b"HIERARCH"] * (len(found) - 5):
        return False
    k = upper.find(b"END")
    while k >= 0:
        if k % 8 == 0:
            return False
        k = upper.find(b"END", k + 1)
    k = upper.find(b"HIERARCH")
    while k >= 0:  # the keyword of a HIERARCH card lies beyond its keyword field
        if k % 8 == 0 and _WORDS.search(head[k * 10 + 8:k * 10 + CARD].upper()):
            return False
        k = upper.find(b"HIERARCH", k + 1)
    simple, bitpix, naxis, naxis1, naxis2 = [_card_value(head[k:k + CARD]) for k in range(0, 5 * CARD, CARD)]
    return (simple == b"T" and bitpix == b"-32" and naxis == b"2" and naxis1.isdigit() and naxis2.isdigit()
            and int(naxis1) > 0 and int(naxis2) > 0)


def _parse_header(path, head: bytes) -> _Layout | None:
    """Parse the primary header at the start of ``head``; ``None`` if ``head`` holds no END card."""
    if not head.startswith(b"SIMPLE  ="):
        raise DataError(f"{path}: not a FITS file (it does not start with a SIMPLE card)")
    end = head.find(_END_CARD)
    while end >= 0 and end % CARD:
        end = head.find(_END_CARD, end + 1)
    if end < 0:
        return None
    header_bytes = -(-(end + CARD) // BLOCK) * BLOCK
    if not _is_plain(head, end):
        return _Layout(header_bytes, None, False)
    return _Layout(header_bytes, (int(_card_value(head[4 * CARD:5 * CARD])),
                                  int(_card_value(head[3 * CARD:4 * CARD]))), True)


def _layout_of(path, raw, n_read: int) -> _Layout:
    """The layout of the file whose first ``n_read`` bytes are in ``raw``."""
    if n_read == 0:
        raise DataError(f"{path}: empty file, not a FITS image")
    layout = _parse_header(path, bytes(raw[:min(n_read, BLOCK)]))
    if layout is None and n_read > BLOCK:  # long header: look at the whole file
        layout = _parse_header(path, bytes(raw[:n_read]))
    if layout is None:
        raise DataError(f"{path}: truncated or corrupt FITS file (header has no END card)")
    return layout


def _pixels(path, raw, n_read: int, layout: _Layout) -> np.ndarray | None:
    """The big-endian image inside ``raw`` (a view, no copy), or ``None`` when astropy must read the file."""
    if not layout.simple:
        return None
    if n_read < layout.header_bytes + layout.data_bytes:
        raise DataError(f"{path}: truncated FITS file ({n_read} bytes; header and {layout.shape[0]}x"
                        f"{layout.shape[1]} float32 image need {layout.header_bytes + layout.data_bytes})")
    if n_read != layout.file_bytes:  # more HDUs or bad padding: unusual, astropy decides
        return None
    return np.frombuffer(raw, dtype=">f4", count=layout.data_bytes // 4,
                         offset=layout.header_bytes).reshape(layout.shape)


def _read_into(path, buffer: bytearray) -> tuple[bytearray, int]:
    """Read the whole file into ``buffer`` (grown if needed) with one system call; returns both and the size.

    One byte more than the file size is asked for so that a file growing meanwhile is noticed as 'not simple'.
    The file is opened without blocking and must be a regular file: a FIFO would otherwise wait for a writer.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise DataError(f"{path}: cannot open ({exc.strerror or exc})") from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise DataError(f"{path}: not a regular file (a folder, pipe or device), not a FITS image")
        if status.st_size > _MAX_FAST_BYTES:
            return buffer, -1
        if len(buffer) < status.st_size + 1:
            buffer = bytearray(status.st_size + 1)
        n_read = os.readv(fd, [memoryview(buffer)[:status.st_size + 1]])
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    return buffer, n_read


def _read_with_astropy(path) -> np.ndarray:
    """Any valid FITS image, as astropy reads it (scaled), as a native float32 (H, W) array."""
    import warnings

    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = fits.getdata(path)
    except Exception as exc:  # noqa: BLE001 - astropy raises many kinds; all mean "cannot read"
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot read as a FITS image ({message})") from None
    if data is None or data.dtype.names is not None:
        raise DataError(f"{path}: FITS file holds no image data")
    data = np.asarray(data)
    while data.ndim > 2 and data.shape[0] == 1:  # a cube of one plane (NAXIS3 = 1): its image
        data = data.squeeze(axis=0)
    if data.ndim != 2:
        raise DataError(f"{path}: FITS image has shape {data.shape}, expected a 2-D image")
    return np.ascontiguousarray(data, dtype=np.float32)


def read_fits(path: str | Path) -> np.ndarray:
    """The primary image of a FITS file as float32 (NAXIS2, NAXIS1) in native byte order.

    Raises :class:`DataError` naming the file when it is missing, empty, truncated or not FITS.
    """
    buffer, n_read = _read_into(path, bytearray())
    if n_read >= 0:
        pixels = _pixels(path, buffer, n_read, _layout_of(path, buffer, n_read))
        if pixels is not None:
            return pixels.astype(np.float32)
    return _read_with_astropy(path)


def read_fits_stack(paths: Sequence[str | Path], out: np.ndarray | None = None) -> np.ndarray:
    """Read many same-shape images into ``out`` (N, H, W) float32, reusing one byte buffer.

    ``out`` may be any writable float32 array of the right shape (for example a slice of a memmap);
    by default a new array is made from the first file's shape. The header is parsed again only when
    its bytes differ from the previous file's.
    """
    paths = list(paths)
    if out is None:
        if not paths:
            return np.empty((0, 0, 0), dtype=np.float32)
        out = np.empty((len(paths),) + read_fits(paths[0]).shape, dtype=np.float32)
    elif out.ndim != 3 or out.shape[0] != len(paths) or out.dtype != np.float32:
        raise DataError(f"output array has shape {out.shape} and dtype {out.dtype}; expected "
                        f"({len(paths)}, H, W) float32")
    shape = out.shape[1:]
    buffer = bytearray()
    layout = None
    last_header = b""
    for index, path in enumerate(paths):
        buffer, n_read = _read_into(path, buffer)
        pixels = None
        if n_read >= 0:
            if (layout is None or n_read < layout.header_bytes
                    or buffer[:layout.header_bytes] != last_header):
                layout = _layout_of(path, buffer, n_read)
                last_header = bytes(buffer[:layout.header_bytes])
            pixels = _pixels(path, buffer, n_read, layout)
        if pixels is None:
            pixels = _read_with_astropy(path)
        if pixels.shape != shape:
            raise DataError(f"{path}: image is {pixels.shape[0]}x{pixels.shape[1]}, expected "
                            f"{shape[0]}x{shape[1]} like the other files")
        out[index] = pixels
    return out
