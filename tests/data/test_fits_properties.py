"""Property-based tests of the FITS reader: random, nearly valid and hostile files.

For any file, ``read_fits`` either returns exactly what astropy reads (the reference), or raises a one-line
DataError naming the file; never another exception, never a hang (each call runs under an alarm), and never
an absurd allocation (each call runs under an address-space limit, and a MemoryError behind a DataError fails
the test). ``read_fits_stack`` obeys the same rule on a batch holding one hostile file among good ones.
"""

from __future__ import annotations

import contextlib
import resource
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from guards import time_limit
from lexactum.data.fits import read_fits, read_fits_stack
from lexactum.data.layouts import read_objects
from lexactum.errors import DataError

#: Fixed examples (derandomize) and a small budget: the property suite must stay within seconds in CI.
PROPERTY = settings(max_examples=250, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
#: Seconds one read may take before it counts as a hang.
TIME_LIMIT = 5.0
#: Address space a read may add before it counts as an absurd allocation.
MEMORY_HEADROOM = 2 * 2**30


@contextlib.contextmanager
def guarded():
    """Run the body under a time limit and an address-space limit (restored afterwards; the latter only where
    /proc tells the address space in use, i.e. on Linux: macOS does not enforce RLIMIT_AS anyway)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    try:
        with open("/proc/self/statm") as fh:
            in_use = int(fh.read().split()[0]) * resource.getpagesize()
    except OSError:
        in_use = None
    if in_use is not None:
        limit = in_use + MEMORY_HEADROOM
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        with time_limit(TIME_LIMIT, "a read"):
            yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def check_data_error(exc: DataError, path: Path) -> None:
    """Our error: one line, naming the file, and not a memory error in disguise."""
    message = str(exc)
    assert "\n" not in message and "\r" not in message, message
    assert str(path) in message, message
    assert "np." not in message, f"a numpy repr in {message}"
    cause = exc.__context__
    while cause is not None:
        assert not isinstance(cause, MemoryError), f"{message} hides a MemoryError"
        cause = cause.__context__


def astropy_image(path: Path) -> np.ndarray | None:
    """The reference: astropy's image as native float32 (leading length-1 axes dropped), or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = fits.getdata(path)
    except Exception:  # noqa: BLE001 - astropy cannot read it: we must refuse it too
        return None
    if data is None or data.dtype.names is not None:
        return None
    data = np.asarray(data)
    while data.ndim > 2 and data.shape[0] == 1:
        data = data[0]
    return np.ascontiguousarray(data, dtype=np.float32) if data.ndim == 2 else None


def same_bits(ours: np.ndarray, reference: np.ndarray) -> bool:
    return (ours.shape == reference.shape and ours.dtype == np.float32 and ours.dtype.isnative
            and np.array_equal(ours.view(np.uint32), reference.view(np.uint32)))


# ---------------------------------------------------------------------------------------------------
# Strategies: 80-character cards, headers built from them, data blocks, and mutations of whole files.

KEYWORDS = ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "BSCALE", "BZERO", "BLANK", "EXTEND",
            "GROUPS", "PCOUNT", "GCOUNT", "XTENSION", "ZIMAGE", "END", "COMMENT", "HISTORY", "CRPIX1", "NX",
            "OBJECT", "CONTINUE", "")

values = st.one_of(
    st.integers(-5, 8).map(str),
    st.sampled_from(["-32", "-64", "8", "16", "32", "64", "T", "F", "1000000000", "-1", "0", "101", "1_0",
                     "0x10", "1e3", "2.0", "1.0D0", "0.0", "1.0", "-0.0", "nan", "inf", "+2", "02", "'IMAGE   '",
                     "'T'", "", "(1, 2)", "99999999999999999999999"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12),
)
keywords = st.one_of(st.sampled_from(KEYWORDS), st.sampled_from(KEYWORDS).map(str.lower),
                     st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", max_size=8))
indicators = st.sampled_from(["= ", "= ", "= ", "=", " =", "  ", "=  "])
comments = st.one_of(st.just(""), st.sampled_from([" / a comment", " / ", "/x", " / naxis bzero"]),
                     st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20).map(" / ".__add__))


def fixed_card(keyword: str, value: str, comment: str = "", indicator: str = "= ") -> bytes:
    return f"{keyword:<8}{indicator}{value:>20}{comment}".ljust(80)[:80].encode("ascii")


@st.composite
def cards(draw) -> bytes:
    """One 80-byte card: valid, odd or hostile."""
    kind = draw(st.sampled_from(["plausible", "plausible", "value", "value", "hierarch", "commentary", "end",
                                 "bytes"]))
    if kind == "plausible":  # a keyword that matters, with a value astropy reads
        keyword = draw(st.sampled_from(KEYWORDS[:15]))
        keyword = draw(st.sampled_from([keyword, keyword.lower(), keyword.title()]))
        value = draw(st.sampled_from(["1", "2", "3", "-32", "16", "2.5", "3.0", "1.0E1", "-1.5D0", "T", "F"]))
        return fixed_card(keyword, value, draw(comments))
    if kind == "value":
        return (f"{draw(keywords):<8}{draw(indicators)}{draw(values):>20}{draw(comments)}"
                .ljust(80)[:80].encode("ascii"))
    if kind == "hierarch":
        return f"HIERARCH {draw(keywords)} = {draw(values)}".ljust(80)[:80].encode("ascii")
    if kind == "commentary":
        word = draw(st.sampled_from(["COMMENT", "HISTORY", "", "comment"]))
        text = draw(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=72))
        return f"{word:<8}  {text}".ljust(80)[:80].encode("ascii")
    if kind == "end":
        return draw(st.sampled_from(["END", "END/x", "ENDx", "ENDX", "end", "  END", "END     = 3"])).ljust(80).encode()
    return draw(st.binary(min_size=80, max_size=80))


@st.composite
def simple_images(draw) -> tuple[list[bytes], bytes]:
    """The cards (without END) and data of a small challenge-like file: BITPIX -32, two axes, no scaling."""
    height, width = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    pixels = draw(st.binary(min_size=4 * height * width, max_size=4 * height * width))
    head = [fixed_card("SIMPLE", "T"), fixed_card("BITPIX", "-32"), fixed_card("NAXIS", "2"),
            fixed_card("NAXIS1", str(width)), fixed_card("NAXIS2", str(height))]
    head += [fixed_card("EXTEND", "T"), fixed_card("CRPIX1", "51."), fixed_card("CTYPE1", "'RA---TAN'")][
        : draw(st.integers(0, 3))]
    return head, pixels


def padded(raw: bytes, fill: bytes = b" ") -> bytes:
    return raw + fill * (-len(raw) % 2880)


def render(head: list[bytes], pixels: bytes) -> bytes:
    return padded(b"".join(head) + b"END".ljust(80)) + padded(pixels, b"\0")


def astropy_file(draw) -> bytes:
    """A valid file written by astropy: any BITPIX, scaling, BLANK, extra axes, extensions."""
    import io

    dtype = draw(st.sampled_from(["uint8", "int16", "int32", "int64", "float32", "float64"]))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))
    if draw(st.booleans()):
        shape = (1,) + shape
    seed = draw(st.integers(0, 2**16))
    data = (np.random.default_rng(seed).normal(scale=50, size=shape)).astype(dtype)
    hdu = fits.PrimaryHDU(data)
    if draw(st.booleans()):
        hdu.header["BSCALE"] = draw(st.sampled_from([1.0, 2.5, -0.5]))
        hdu.header["BZERO"] = draw(st.sampled_from([0.0, 3.0, 32768.0]))
    if dtype.startswith("int") and draw(st.booleans()):
        hdu.header["BLANK"] = int(data.flat[0])
    hdus = [hdu]
    if draw(st.booleans()):
        hdus.append(fits.ImageHDU(np.ones((2, 3), dtype=np.float32)))
    if draw(st.booleans()):
        hdus = [fits.PrimaryHDU(), fits.ImageHDU(data)]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits.HDUList(hdus).writeto(buffer, output_verify="silentfix")
    return buffer.getvalue()


@st.composite
def fits_files(draw) -> bytes:
    """Bytes of a FITS file: valid (fast path or astropy), mutated card by card or byte by byte, or random."""
    kind = draw(st.sampled_from(["simple", "cards", "cards", "cards", "bytes", "astropy", "random"]))
    if kind == "random":
        prefix = draw(st.sampled_from([b"", b"SIMPLE  =                    T", b"SIMPLE  ="]))
        return prefix + draw(st.binary(max_size=3000))
    if kind == "astropy":
        return astropy_file(draw)
    head, pixels = draw(simple_images())
    if kind == "cards":
        for _ in range(draw(st.integers(1, 3))):
            action = draw(st.sampled_from(["insert", "replace", "delete", "duplicate", "swap"]))
            k = draw(st.integers(0, len(head) - 1)) if head else 0
            if action == "insert" or not head:
                head.insert(draw(st.integers(0, len(head))), draw(cards()))
            elif action == "replace":
                head[k] = draw(cards())
            elif action == "delete":
                del head[k]
            elif action == "duplicate":
                head.insert(draw(st.integers(0, len(head))), head[k])
            else:
                j = draw(st.integers(0, len(head) - 1))
                head[k], head[j] = head[j], head[k]
        if draw(st.integers(0, 9)) == 0:  # a header of more than one block
            head += [fixed_card(f"KEY{k}", str(k)) for k in range(36)]
    raw = bytearray(render(head, pixels))
    if kind == "bytes":
        for _ in range(draw(st.integers(1, 3))):
            action = draw(st.sampled_from(["truncate", "append", "flip", "unpad"]))
            if action == "truncate":
                del raw[draw(st.integers(0, len(raw))):]
            elif action == "append":
                raw += draw(st.sampled_from([b"\0" * 2880, b"x", bytes(render(*draw(simple_images())))]))
            elif action == "flip" and raw:
                raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
            elif action == "unpad":
                raw = bytearray(b"".join(head) + b"END".ljust(80) + pixels)
    return bytes(raw)


@contextlib.contextmanager
def written(*contents: bytes):
    """Paths of temporary files holding ``contents`` (hypothesis examples cannot use tmp_path)."""
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for k, content in enumerate(contents):
            paths.append(Path(folder) / f"image-{k}.fits")
            paths[-1].write_bytes(content)
        yield paths


def read_guarded(read, path: Path):
    """``read(path)`` under the guards: the image, or None after checking our one-line error."""
    try:
        with guarded():
            return read(path)
    except DataError as exc:
        check_data_error(exc, path)
        return None


# ---------------------------------------------------------------------------------------------------
# Properties.

def _header(*cards_text: str, end: str = "END") -> bytes:
    return padded(b"".join(c.ljust(80).encode() for c in (*cards_text, end)))


_SIMPLE_2x2 = ["SIMPLE  =                    T", "BITPIX  =                  -32", "NAXIS   =                    2",
               "NAXIS1  =                    2", "NAXIS2  =                    2"]
_ONES_2x2 = padded(np.ones(4, ">f4").tobytes(), b"\0")


@PROPERTY
@given(fits_files())
@example(_header(*_SIMPLE_2x2, "bzero   =                  3.0") + _ONES_2x2)  # lower-case keyword: scaled
@example(_header(*_SIMPLE_2x2, "BZERO   =                  0.0", "BZERO   =                  3.0") + _ONES_2x2)
@example(_header(*_SIMPLE_2x2, "NAXIS1  =                    4") + _ONES_2x2)  # the last NAXIS1 counts
@example(_header(*_SIMPLE_2x2, "BITPIX  =                    1") + _ONES_2x2)  # astropy refuses BITPIX 1
@example(_header(*_SIMPLE_2x2[:3], "NAXIS1  =                  1_0", "NAXIS2  =                    1")
         + padded(np.ones(10, ">f4").tobytes(), b"\0"))  # Python reads 1_0 as 10, FITS does not
@example(_header(*_SIMPLE_2x2[:3], "NAXIS1  =2", "NAXIS2  =                    2") + _ONES_2x2)
@example(_header(*_SIMPLE_2x2, "HIERARCH BZERO = 3.0") + _ONES_2x2)
@example(_header(*_SIMPLE_2x2, "CONTINUE=                    0") + _ONES_2x2)  # astropy refuses the header
@example(_header(*_SIMPLE_2x2, "END/x", "BZERO   =                  3.0") + _ONES_2x2)  # astropy ends at END/x
def test_read_fits_is_astropy_or_one_line_error(content):
    with written(content) as (path,):
        ours = read_guarded(read_fits, path)
        reference = astropy_image(path)
        event(f"we {'refuse' if ours is None else 'read'}, astropy {'refuses' if reference is None else 'reads'}")
        if ours is not None:
            assert reference is not None, "we read a file that astropy refuses"
            assert same_bits(ours, reference)


@settings(PROPERTY, max_examples=100)
@given(simple_images(), st.data())
def test_valid_files_are_read(image, data):
    """Challenge-like files go the fast path (astropy is never called); any 2-D file astropy writes is read."""
    from unittest import mock

    from lexactum.data import fits as fits_module

    with written(render(*image), astropy_file(data.draw)) as (simple, other):
        with mock.patch.object(fits_module, "_read_with_astropy", side_effect=AssertionError("not fast")):
            ours = read_guarded(read_fits, simple)
        assert ours is not None and same_bits(ours, astropy_image(simple))
        reference = astropy_image(other)
        if reference is not None:
            ours = read_guarded(read_fits, other)
            assert ours is not None, "a valid file was refused"
            assert same_bits(ours, reference)


@PROPERTY
@given(st.lists(simple_images(), min_size=1, max_size=3), fits_files(), st.integers(0, 3))
def test_stack_with_one_hostile_file(good, hostile, position):
    """A batch with one hostile file: the batch is read as each file alone, or the error names a bad file."""
    shape = None
    contents = []
    for head, pixels in good:  # the good files share the first one's shape, as a real batch does
        shape = shape or (head[4], head[3])
        head[3], head[4] = shape[1], shape[0]
        size = 4 * int(shape[0][10:]) * int(shape[1][10:])
        contents.append(render(head, (pixels * size)[:size] or bytes(size)))
    position = min(position, len(contents))
    contents.insert(position, hostile)
    with written(*contents) as paths:
        alone = [read_guarded(read_fits, p) for p in paths]
        try:
            with guarded():
                stack = read_fits_stack(paths)
                objects = read_objects([[p] for p in paths])
        except DataError as exc:
            named = [p for p in paths if str(p) in str(exc)]
            assert len(named) == 1, str(exc)
            check_data_error(exc, named[0])
            # the file named is the hostile one, or one whose shape differs from the batch's first
            k = paths.index(named[0])
            event("batch refused")
            assert alone[k] is None or alone[k].shape != alone[0].shape or k == position
            return
        event("batch read")
        for k, image in enumerate(alone):
            assert image is not None, f"file {k} read in a batch but not alone"
            assert same_bits(stack[k], image) and same_bits(objects[k, 0], image)


@pytest.mark.parametrize("side", [10**9, 30_000])
def test_huge_announced_image_fails_fast(tmp_path, side):
    """NAXIS1 = NAXIS2 = 10**9 (or 30000) in a tiny file: an error at once, without allocating the image."""
    scaled = ("BZERO   =                  1.0",)
    for bitpix, extra in (("-32", ()), ("16", ()), ("8", ()), ("-64", ()), ("-32", scaled)):
        path = tmp_path / f"huge{bitpix}{len(extra)}.fits"
        path.write_bytes(_header(*_SIMPLE_2x2[:1], f"BITPIX  = {bitpix:>20}", *_SIMPLE_2x2[2:3],
                                 f"NAXIS1  = {side:>20}", f"NAXIS2  = {side:>20}", *extra) + _ONES_2x2)
        for read in (read_fits, lambda p: read_fits_stack([p])):
            with pytest.raises(DataError) as info, guarded():
                read(path)
            check_data_error(info.value, path)
