"""Everything ``lexactum predict`` can score, behind one interface: :func:`open_source`.

A survey does not hand its cutouts over as a challenge folder: it gives an HDF5 cube or a NumPy array of
millions of them. Each kind of input is a :class:`Source` with the same attributes (``path kind survey ids
labels normalised``) and ``read_batch(positions) -> (B, C, H, W) float32`` of raw pixels (NaN kept), so the
prediction engine needs no case for any of them. Sources are read in DataLoader workers and DDP processes:
they pickle without their open files (an HDF5 handle or a memory map is reopened by each process on its
first read) and keep nothing in memory proportional to the number of objects but ``ids`` and ``labels``.
docs/inputs.md is the user's side of this.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from lexactum.data.surveys import SURVEYS, SurveyFormat, get_survey
from lexactum.errors import DataError, LexactumError, describe_os_error

#: File name endings read as HDF5 cubes and as NumPy arrays.
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
NPY_SUFFIXES = (".npy",)
#: Unwanted rows an HDF5 read goes through rather than starting another read (one read of a few rows more is
#: cheaper than two), and the most rows one read takes (bounds the memory of a strided batch).
READ_GAP = 4
MAX_SPAN = 256
#: HDF5 chunk cache of each open file: a compressed chunk of many cutouts is decompressed once, not per row.
CHUNK_CACHE_BYTES = 64 << 20
#: The options of ``lexactum predict`` that the messages name.
IMAGES_OPTION, IDS_OPTION, IDS_FILE_OPTION = "--images-key", "--ids-key", "--ids"
DEFAULT_IMAGES_KEY, DEFAULT_IDS_KEY = "images", "ids"


def open_source(path: str | os.PathLike, survey: str | SurveyFormat | None = None,
                ids_file: str | os.PathLike | None = None, images_key: str = DEFAULT_IMAGES_KEY,
                ids_key: str = DEFAULT_IDS_KEY) -> Source:
    """The objects to score at ``path``: a folder (challenge dataset, loose FITS cutouts or prepared dataset),
    an HDF5 cube (``images_key``, ``ids_key`` or ``ids_file``) or a ``.npy`` array (IDs from ``ids_file``,
    else the row numbers). ``survey`` is checked against the input, else found from it."""
    from lexactum.data.layouts import file_problem

    path = Path(path).expanduser()
    fmt = survey if isinstance(survey, SurveyFormat) or survey is None else get_survey(survey)
    is_hdf5 = path.name.lower().endswith(HDF5_SUFFIXES) and not path.is_dir()
    for option, value, default in ((IMAGES_OPTION, images_key, DEFAULT_IMAGES_KEY),
                                   (IDS_OPTION, ids_key, DEFAULT_IDS_KEY)):
        if value != default and not is_hdf5:
            raise LexactumError(f"{option} names a dataset of an HDF5 file, and {path} is no HDF5 file")
    if path.is_dir():
        if ids_file is not None:
            raise LexactumError(f"{IDS_FILE_OPTION} gives the IDs of an HDF5 or .npy cube; the objects of the "
                                f"folder {path} have their own IDs")
        return _folder_source(path, fmt)
    if not os.path.lexists(path):
        raise DataError(f"{path}: input does not exist")
    problem = file_problem(path)  # a named pipe is never opened: it would wait forever
    if problem is not None:
        raise DataError(f"{path}: cannot be read ({problem})")
    if is_hdf5:
        return HDF5Source(path, fmt, ids_file, images_key, ids_key)
    if path.name.lower().endswith(NPY_SUFFIXES):
        return NpySource(path, fmt, ids_file)
    raise DataError(f"{path}: unknown kind of input; predict reads folders (a challenge dataset, FITS cutouts or "
                    f"a prepared dataset), HDF5 files ({', '.join(HDF5_SUFFIXES)}) and NumPy arrays (.npy)")


def _folder_source(path: Path, survey: SurveyFormat | None) -> Source:
    from lexactum.data.cache import IMAGES_FILE, INDEX_FILE
    from lexactum.data.cutouts import open_cutouts
    from lexactum.data.layouts import ChallengeDataset

    if (path / INDEX_FILE).is_file() and (path / IMAGES_FILE).exists():
        return CacheSource(path, survey)
    data = open_cutouts(path, survey=survey)
    return ChallengeSource(data) if isinstance(data, ChallengeDataset) else CutoutSource(data)


# ------------------------------------------------------------------------------------------- the interface
class Source:
    """Objects to score: ``ids`` (int64, or str for loose cutouts named so), ``labels`` (int64, -1 unknown),
    raw pixels by position (:meth:`read_batch`). Subclasses set the attributes and ``_read_rows``; one that
    reads from an open file (an h5py dataset, a memory map) gives ``_open`` and reads through ``_opened``."""

    kind = ""
    path: Path
    survey: SurveyFormat
    ids: np.ndarray
    labels: np.ndarray
    normalised: str | None = None
    """None: ``read_batch`` gives raw pixels; else the normalisation they already had (a prepared dataset)."""

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.describe()}>"

    def describe(self) -> str:
        raise NotImplementedError

    def left_out_rows(self) -> list[dict]:
        """Rows ``{"ID", "reason", "file"}`` of the objects under the input that are not among its objects."""
        return []

    def read_batch(self, positions) -> np.ndarray:
        """float32 ``(B, C, H, W)`` images of the objects at ``positions`` (any order, repeats allowed), in
        that order. Each object is read once, and rows in increasing order (what HDF5 and disks want)."""
        rows = _checked_positions(positions, len(self))
        if len(rows) == 0:
            size = self.survey.image_size
            return np.empty((0, self.survey.n_bands, size, size), dtype=np.float32)
        if len(rows) == 1 or (np.diff(rows) > 0).all():  # already increasing and distinct (predict's batches)
            return np.ascontiguousarray(self._read_rows(rows), dtype=np.float32)
        unique, inverse = np.unique(rows, return_inverse=True)
        images = self._read_rows(unique)[inverse.reshape(-1)]
        return np.ascontiguousarray(images, dtype=np.float32)

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        """Images ``(len(rows), C, H, W)`` (any number type) of the sorted, distinct ``rows``."""
        raise NotImplementedError

    _handle = None
    _pid = None

    def __getstate__(self) -> dict:
        """No open file travels: an h5py object cannot be pickled, a memmap would pickle as all its data."""
        return {**self.__dict__, "_handle": None, "_pid": None}

    def _opened(self):
        """This process's open file, opened on first use: one another process opened is inherited through
        fork and shares its file offset and library state, so it is never used."""
        if self._handle is None or self._pid != os.getpid():
            self._handle = None
            self._handle = self._open()
            self._pid = os.getpid()
        return self._handle

    def _open(self):
        raise NotImplementedError

    def close(self) -> None:
        """Let go of the open file, if any (the next read opens it again)."""
        self._handle = self._pid = None


def _checked_positions(positions, n: int) -> np.ndarray:
    """``positions`` as int64, each an object of ``n``: a caller's mistake (not the user's) otherwise."""
    rows = np.asarray(positions)
    if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
        raise TypeError(f"positions must be a 1-D array of integers, not {rows.dtype} of shape {rows.shape}")
    rows = rows.astype(np.int64, copy=False)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise IndexError(f"positions must lie in 0..{n - 1}, not {rows.min()}..{rows.max()}")
    return rows


# ------------------------------------------------------------------------------------------------ folders
class _FolderSource(Source):
    """A challenge dataset or loose FITS cutouts (:func:`lexactum.data.cutouts.open_cutouts`), read per file."""

    def __init__(self, data):
        self.data = data
        self.path = data.path
        self.survey = data.survey
        self.ids = data.ids
        self.labels = np.asarray(data.labels, dtype=np.int64)

    def left_out_rows(self) -> list[dict]:
        from lexactum.evaluation.evaluate import left_out_rows

        return left_out_rows(self.data)


class ChallengeSource(_FolderSource):
    kind = "challenge"

    def describe(self) -> str:
        return (f"challenge dataset {self.path.name} ({len(self)} {self.survey.name} objects, "
                f"{self.data.layout} layout)")

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        from lexactum.data.layouts import read_objects

        size = self.survey.image_size
        out = np.empty((len(rows), self.survey.n_bands, size, size), dtype=np.float32)  # every file checked
        return read_objects([self.data.band_paths[int(k)] for k in rows], out=out)


class CutoutSource(_FolderSource):
    kind = "cutouts"

    def describe(self) -> str:
        return f"folder of FITS cutouts {self.path.name} ({len(self)} cutouts, {_bands(self.survey.n_bands)})"

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        return np.stack([self.data.read(int(k)) for k in rows])  # each file holds every band of its object


class CacheSource(Source):
    """A prepared dataset (:mod:`lexactum.data.cache`): images already normalised, read from its memory map."""

    kind = "cache"

    def __init__(self, path: Path, survey: SurveyFormat | None):
        from lexactum.data.cache import IMAGES_FILE, open_prepared

        prepared = open_prepared(path)
        if survey is not None and prepared.survey.name != survey.name:
            raise DataError(f"{path}: a prepared dataset of {prepared.survey.name} images, not {survey.name}")
        self.path = prepared.path.resolve()
        self.survey = prepared.survey
        self.ids, self.labels = prepared.ids, prepared.labels
        self.normalised = str(prepared.index["normalisation"])
        self.masked = bool(prepared.index.get("mask"))
        self.dataset_path = prepared.dataset_path
        """The dataset folder the cache was made from (its objects are that dataset's)."""
        self._images_path, self._shape = self.path / IMAGES_FILE, prepared.images.shape

    def describe(self) -> str:
        return (f"prepared dataset {self.path.name} ({len(self)} cutouts, {_bands(self._shape[1])}, "
                f"{self.normalised}-normalised)")

    def _open(self):
        try:
            return np.memmap(self._images_path, dtype=np.float32, mode="r", shape=self._shape)
        except (OSError, ValueError) as exc:  # numpy: 'mmap length is greater than file size'
            raise DataError(f"{self._images_path}: cannot be read any more ({exc}); prepare the dataset "
                            "again") from None

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        images = self._opened()
        _still_whole(self._images_path, images.nbytes)
        return images[rows]


def _still_whole(path: Path, n_bytes: int) -> None:
    """Refuse to read a memory-mapped file that has shrunk since it was mapped (rewritten, truncated): a read
    of a page past its end would kill the process with SIGBUS, no message."""
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise DataError(describe_os_error(exc, path, "read")) from None
    if size < n_bytes:
        raise DataError(f"{path}: shrank to {size} bytes while being read ({n_bytes} needed); was it rewritten?")


def _bands(n: int) -> str:
    return f"{n} band" + ("s" if n != 1 else "")


# -------------------------------------------------------------------------------------------------- cubes
class _CubeSource(Source):
    """An array ``(N, C, H, W)`` or, one band, ``(N, H, W)`` of raw pixels in one file: the survey's bands
    are channels ``_channels`` of it (None: all, in order); the file is opened by each process on its first
    read."""

    _channels: list[int] | None = None
    _flat = False  # (N, H, W)

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        images = self._read_raw(rows)
        if self._flat:
            return images[:, None]
        return images if self._channels is None else images[:, self._channels]

    def _read_raw(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _set_ids(self, ids_file, ids: np.ndarray | None, what: str) -> None:
        """IDs from ``ids_file`` when given (any format :func:`lexactum.data.ids.read_ids_file` reads, e.g. one
        integer per line), else ``ids`` (read from ``what`` of the file), else the row numbers 0..N-1; every
        one a distinct int64, one per image."""
        from lexactum.data.ids import read_ids_file

        n, where = self._n, f"{self.path}: {what}"
        if ids_file is not None:
            where = f"{ids_file}:"
            try:
                ids = np.asarray(read_ids_file(ids_file), dtype=np.int64)
            except OverflowError:
                raise DataError(f"{where} holds IDs beyond the 64-bit integer range") from None
        elif ids is None:
            ids = np.arange(n, dtype=np.int64)
        if len(ids) != n:
            raise DataError(f"{where} holds {len(ids)} IDs but {self.path.name} holds {n} images")
        ordered = np.sort(ids)
        repeated = ordered[1:][ordered[1:] == ordered[:-1]]
        if len(repeated):
            count = int(np.count_nonzero(ids == repeated[0]))
            raise DataError(f"{where} holds ID {repeated[0]} {count} times; each object needs its own ID")
        self.ids = ids
        self.labels = np.full(n, -1, dtype=np.int64)


def _cube_layout(path: Path, what: str, shape: tuple, dtype: np.dtype, survey: SurveyFormat | None,
                 names: list[str] | None) -> tuple[SurveyFormat, list[int] | None]:
    """(survey, channels) of a cube of ``shape`` and ``dtype``: the survey's bands by ``names`` (the file's own
    band names) when it has them, else in order; every way the cube does not fit, one line naming it."""
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise DataError(f"{path}: {what} holds {dtype} values, not pixel values (integers or floats)")
    size = next(iter(SURVEYS.values())).image_size if survey is None else survey.image_size
    if len(shape) not in (3, 4):
        raise DataError(f"{path}: {what} has shape {shape}; expected (N, bands, {size}, {size}) or, for one "
                        f"band, (N, {size}, {size})")
    if shape[0] == 0:
        raise DataError(f"{path}: {what} holds no images (shape {shape})")
    if tuple(shape[-2:]) != (size, size):
        last = " (bands last? store them as (N, bands, H, W))" if tuple(shape[1:3]) == (size, size) else ""
        raise DataError(f"{path}: {what} has images of {shape[-2]}x{shape[-1]} pixels (shape {shape}); the "
                        f"networks take {size}x{size} cutouts{last}")
    n_bands = 1 if len(shape) == 3 else shape[1]
    if names is not None:
        if len(names) != n_bands:
            raise DataError(f"{path}: the 'bands' attribute names {len(names)} bands ({', '.join(names)}) but "
                            f"{what} has {n_bands}")
        return _bands_by_name(path, names, survey)
    if survey is None:
        survey = next((s for s in SURVEYS.values() if s.n_bands == n_bands), None)
        if survey is None:
            known = ", ".join(f"{s.name} has {s.n_bands}" for s in SURVEYS.values())
            raise DataError(f"{path}: {what} has {_bands(n_bands)}, and no survey has {n_bands} ({known})")
    if n_bands != survey.n_bands:
        raise DataError(f"{path}: {what} has {_bands(n_bands)} but {survey.name} images have {survey.n_bands} "
                        f"({', '.join(survey.bands)})")
    return survey, None


def _bands_by_name(path: Path, names: list[str], survey: SurveyFormat | None
                   ) -> tuple[SurveyFormat, list[int] | None]:
    """The survey and the channels holding its bands, matched to the file's band ``names`` ignoring case."""
    lower = [name.strip().lower() for name in names]
    twice = next((name for k, name in enumerate(lower) if name in lower[:k]), None)
    if twice is not None:
        raise DataError(f"{path}: the 'bands' attribute names band {twice!r} twice ({', '.join(names)})")
    if survey is None:
        fits = [s for s in SURVEYS.values() if all(b.lower() in lower for b in s.bands)]
        if len(fits) != 1:
            known = "; ".join(f"{s.name}: {', '.join(s.bands)}" for s in SURVEYS.values())
            why = "match no survey's" if not fits else "hold the bands of several surveys; choose one with --survey"
            raise DataError(f"{path}: the file's bands ({', '.join(names)}) {why} ({known})")
        survey = fits[0]
    missing = [b for b in survey.bands if b.lower() not in lower]
    if missing:
        raise DataError(f"{path}: band {missing[0]} of {survey.name} images is not among the file's bands "
                        f"({', '.join(names)})")
    channels = [lower.index(b.lower()) for b in survey.bands]
    return survey, None if channels == list(range(len(names))) else channels


# --------------------------------------------------------------------------------------------------- HDF5
class HDF5Source(_CubeSource):
    """Dataset ``images_key`` of an HDF5 file, its IDs in dataset ``ids_key`` (or ``ids_file``); its bands
    matched by name when the dataset or the file has a ``bands`` attribute."""

    kind = "hdf5"

    def __init__(self, path: Path, survey: SurveyFormat | None, ids_file, images_key: str, ids_key: str):
        self.path, self.images_key = path.resolve(), images_key
        self._size = self.path.stat().st_size  # HDF5 reads zeros past the end of a file truncated meanwhile
        with _open_hdf5(self.path) as fh:
            images = _dataset(fh, self.path, images_key, IMAGES_OPTION)
            names = _band_names(images, fh)
            self.survey, self._channels = _cube_layout(self.path, f"dataset {images_key!r}", images.shape,
                                                       images.dtype, survey, names)
            self._n, self._flat, self._named = images.shape[0], images.ndim == 3, names is not None
            ids = None if ids_file is not None else _hdf5_ids(fh, self.path, ids_key, self._n)
        self._set_ids(ids_file, ids, f"dataset {ids_key!r}")
        self._ids_from = Path(ids_file).name if ids_file is not None else f"dataset {ids_key!r}"
        self.read_batch(np.zeros(1, dtype=np.int64))  # an unreadable image (a missing filter...) fails here
        self.close()  # fork-safe: no open handle to inherit

    def describe(self) -> str:
        how = "by name" if self._named else "in order"
        return (f"HDF5 cube {self.path.name}:{self.images_key} ({len(self)} cutouts, "
                f"{_bands(self.survey.n_bands)} {how}, IDs from {self._ids_from})")

    def _open(self):
        return _open_hdf5(self.path)[self.images_key]

    def _read_raw(self, rows: np.ndarray) -> np.ndarray:
        """Rows read span by span (h5py wants increasing indices; a span is one hyperslab)."""
        images = self._opened()
        _still_whole(self.path, self._size)
        out = np.empty((len(rows), *images.shape[1:]), dtype=images.dtype)
        try:
            for start, stop in _spans(rows):
                lo, hi = np.searchsorted(rows, [start, stop])
                if hi - lo == stop - start:  # every row of the span wanted: straight into place
                    images.read_direct(out, np.s_[start:stop], np.s_[lo:hi])
                else:
                    out[lo:hi] = images[start:stop][rows[lo:hi] - start]
        except OSError as exc:
            raise DataError(f"{self.path}: cannot read images {rows[0]}..{rows[-1]} of dataset "
                            f"{self.images_key!r} ({exc})") from None
        return out


def _spans(rows: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` spans covering the sorted ``rows``: runs joined across gaps of up to
    :data:`READ_GAP` rows, none longer than :data:`MAX_SPAN`."""
    spans, start, previous = [], int(rows[0]), int(rows[0])
    for row in rows[1:].tolist():
        if row - previous > READ_GAP + 1 or row - start >= MAX_SPAN:
            spans.append((start, previous + 1))
            start = row
        previous = row
    spans.append((start, previous + 1))
    return spans


def _open_hdf5(path: Path):
    """The HDF5 file at ``path``, opened to read; one line for a file that is not one, damaged or unreadable."""
    import h5py

    try:
        with open(path, "rb") as fh:  # the system's reason for a file that cannot be read, which HDF5 hides
            fh.read(8)
    except OSError as exc:
        raise DataError(describe_os_error(exc, path, "read")) from None
    try:
        # file systems without locks (many cluster ones) must not make every survey file unreadable
        locking = "best-effort" if h5py.version.hdf5_version_tuple >= (1, 12, 1) else None
        return h5py.File(path, "r", rdcc_nbytes=CHUNK_CACHE_BYTES, locking=locking)
    except OSError as exc:
        detail = re.search(r"\((.*)\)\s*$", str(exc))
        reason = detail.group(1) if detail else str(exc)
        if "signature not found" in reason:
            raise DataError(f"{path}: not an HDF5 file (no HDF5 signature in it)") from None
        if "truncated" in reason:
            raise DataError(f"{path}: truncated HDF5 file, shorter than it says it is (copied or downloaded only "
                            f"in part?): {reason}") from None
        raise DataError(f"{path}: cannot be read as an HDF5 file ({reason})") from None


def _dataset(fh, path: Path, key: str, option: str):
    """Dataset ``key`` of the open file; else one line listing the datasets there are (never a guess)."""
    import h5py

    found = fh.get(key)
    if isinstance(found, h5py.Dataset):
        return found
    held: list[str] = []
    fh.visititems(lambda name, item: held.append(f"{name} {item.shape} {item.dtype}")
                  if isinstance(item, h5py.Dataset) else None)
    listed = ", ".join(held[:10]) + (f" and {len(held) - 10} more" if len(held) > 10 else "") or "none"
    options = f"{IMAGES_OPTION} and {IDS_OPTION}" if option == IMAGES_OPTION else f"{IDS_OPTION} or {IDS_FILE_OPTION}"
    raise DataError(f"{path}: no dataset {key!r} (datasets held: {listed}); name the ones to read with {options}")


def _band_names(images, fh) -> list[str] | None:
    """The ``bands`` attribute of the images dataset, else of the file: band names, or None."""
    for holder in (images, fh):
        if "bands" in holder.attrs:
            value = holder.attrs["bands"]
            values = [value] if isinstance(value, (str, bytes)) else np.ravel(value).tolist()
            return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]
    return None


def _hdf5_ids(fh, path: Path, key: str, n: int) -> np.ndarray:
    """The integer IDs in dataset ``key``, one per image."""
    ids = _dataset(fh, path, key, IDS_OPTION)
    if ids.ndim != 1:
        raise DataError(f"{path}: dataset {key!r} has shape {ids.shape}; expected one ID per image, ({n},)")
    if not np.issubdtype(ids.dtype, np.integer):
        raise DataError(f"{path}: dataset {key!r} holds {ids.dtype} values; IDs must be whole numbers stored as "
                        "integers")
    values = ids[()]
    if values.dtype == np.uint64 and len(values) and values.max() > np.iinfo(np.int64).max:
        raise DataError(f"{path}: dataset {key!r} holds IDs beyond the 64-bit integer range")
    return values.astype(np.int64)


# -------------------------------------------------------------------------------------------------- NumPy
class NpySource(_CubeSource):
    """A ``.npy`` array, memory-mapped (never unpickled); bands in order; IDs from ``ids_file``, else the row
    numbers 0..N-1."""

    kind = "npy"

    def __init__(self, path: Path, survey: SurveyFormat | None, ids_file):
        self.path = path.resolve()
        shape, dtype = _npy_header(self.path)
        self.survey, self._channels = _cube_layout(self.path, "array", shape, dtype, survey, None)
        self._n, self._flat = shape[0], len(shape) == 3
        self._set_ids(ids_file, None, "")
        self._ids_from = Path(ids_file).name if ids_file is not None else "row numbers 0..N-1"
        self.read_batch(np.zeros(1, dtype=np.int64))  # a truncated file fails here
        self.close()

    def describe(self) -> str:
        return (f"NumPy array {self.path.name} ({len(self)} cutouts, {_bands(self.survey.n_bands)}, IDs from "
                f"{self._ids_from})")

    def _open(self):
        try:
            return np.load(self.path, mmap_mode="r", allow_pickle=False)
        except OSError as exc:
            raise DataError(describe_os_error(exc, self.path, "read")) from None
        except ValueError as exc:  # numpy: 'mmap length is greater than file size'
            raise DataError(f"{self.path}: damaged or truncated .npy file ({exc})") from None

    def _read_raw(self, rows: np.ndarray) -> np.ndarray:
        images = self._opened()
        _still_whole(self.path, images.offset + images.nbytes)
        return images[rows]


def _npy_header(path: Path) -> tuple[tuple, np.dtype]:
    """(shape, dtype) from the header of the ``.npy`` file, read without loading it: an array of Python
    objects is refused here, before numpy could be asked to unpickle anything."""
    from numpy.lib import format as npy

    try:
        with open(path, "rb") as fh:
            try:
                version = npy.read_magic(fh)
            except ValueError:
                raise DataError(f"{path}: not a NumPy .npy file (it does not begin with the .npy signature)") from None
            try:
                reader = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
                shape, _, dtype = reader(fh)
            except ValueError as exc:
                raise DataError(f"{path}: damaged .npy header ({exc})") from None
    except OSError as exc:
        raise DataError(describe_os_error(exc, path, "read")) from None
    if dtype.hasobject:
        raise DataError(f"{path}: holds Python objects (dtype {dtype}), which are never unpickled; save the "
                        "images as a number array")
    return tuple(shape), dtype
