"""A folder of challenge data as a list of objects: IDs, labels and the band files of each.

Both layouts of the Lens Finding Challenge 1.0 are read: the training layout (``classifications.csv`` with
``is_lens``) and the released test layout (``euclidB_image_catalog.csv`` / ``kidsB_image_catalog.csv`` with
``#`` comment lines and ``no_source``). Images are found by file name anywhere under the root, whatever the
folders are called, so no sub-folder (``Data_KiDS_Big.10`` included) is ever skipped by name. An object is
left out only when a band file is missing or it has no catalog row, and every such object is reported. An
entry named like a band file that cannot be read as a file (a broken link, a link loop, a named pipe, a
folder) counts as missing, and one warning line names the entries skipped.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from lexactum.data.surveys import SURVEYS, TRAINING_CATALOG, SurveyFormat, get_survey
from lexactum.errors import DataError

LAYOUTS = ("train", "test", "unlabelled")
#: How many example IDs reports show.
N_EXAMPLES = 5


class ChallengeDataset:
    """The objects of one challenge dataset folder that have every band file and (by default) a label.

    ``survey`` ('space'/'ground' or a :class:`SurveyFormat`) is detected from the catalog's name or the
    files when not given. ``require_labels=False`` accepts a folder of cutouts without a catalog (labels -1),
    for scoring new data; a catalog that is present still gives its labels.
    """

    def __init__(self, path: str | os.PathLike, survey: str | SurveyFormat | None = None,
                 require_labels: bool = True):
        self.path = Path(path).expanduser().resolve()
        if not self.path.is_dir():
            raise DataError(f"{self.path}: dataset folder does not exist" if not self.path.exists()
                            else f"{self.path}: not a folder (give the dataset's root folder)")
        try:
            with os.scandir(self.path) as entries:
                if not any(entries):
                    raise DataError(f"{self.path}: dataset folder is empty")
        except OSError as exc:
            raise DataError(f"{self.path}: cannot list folder ({exc.strerror or exc})") from None
        wanted = survey if isinstance(survey, SurveyFormat) or survey is None else get_survey(survey)
        catalog_path, layout = _find_catalog(self.path, wanted)
        if catalog_path is None and require_labels:
            names = ", ".join([TRAINING_CATALOG] + [s.test_catalog for s in SURVEYS.values()])
            raise DataError(f"{self.path}: no catalog found (expected one of {names} in this folder)")
        if wanted is None and layout == "test":
            wanted = next(s for s in SURVEYS.values() if s.test_catalog == catalog_path.name)
        found, self.skipped = _scan_images(self.path, [wanted] if wanted else list(SURVEYS.values()))
        try:
            self._select(found, wanted, catalog_path, layout, require_labels)
        except DataError as exc:  # skipped entries may be why: say so in the same line
            if self.skipped:
                raise DataError(f"{exc}; {skipped_text(self.path, self.skipped)}") from None
            raise
        warn_skipped(self.path, self.skipped)

    def _select(self, found: dict[str, list[dict[int, str]]], wanted: SurveyFormat | None,
                catalog_path: Path | None, layout: str | None, require_labels: bool) -> None:
        """Keep the objects that have every band file and (if ``require_labels``) a catalog row."""
        self.survey = _pick_survey(self.path, wanted, found)
        self.catalog_path = catalog_path
        self.layout = layout if catalog_path is not None else "unlabelled"
        files = found[self.survey.name]
        self._all_files = sorted(p for band in files for p in band.values())

        complete, self.incomplete = _complete_objects(self.survey, files)
        if catalog_path is not None:
            table, cat_ids, cat_labels = read_catalog(catalog_path)
        else:
            table, cat_ids, cat_labels = None, np.empty(0, np.int64), np.empty(0, np.int64)
        row_of = {int(i): r for r, i in enumerate(cat_ids)}
        with_images = {object_id for band in files for object_id in band}
        self.missing_images = np.array(sorted(set(row_of) - with_images), dtype=np.int64)
        self.unlabelled = np.array([i for i in complete if i not in row_of], dtype=np.int64)
        kept = complete if not require_labels else [i for i in complete if i in row_of]
        if not kept:
            raise DataError(
                f"{self.path}: no complete {self.survey.name} object"
                + (" with a catalog row" if require_labels else "")
                + f" ({len(complete)} objects have every band file, {len(row_of)} catalog rows"
                + (f", {len(self.incomplete)} band files missing" if self.incomplete else "") + ")"
            )
        self.ids = np.array(kept, dtype=np.int64)
        rows = np.array([row_of.get(i, -1) for i in kept], dtype=np.int64)
        self.labels = np.full(len(kept), -1, dtype=np.int64)
        self.labels[rows >= 0] = cat_labels[rows[rows >= 0]]
        if table is not None:
            self.catalog = table.reindex(rows).reset_index(drop=True)  # row -1 (no catalog row): NaN
        else:
            import pandas as pd

            self.catalog = pd.DataFrame({"ID": self.ids})
        self._band_files = list(zip(*[[band[i] for i in kept] for band in files], strict=True))

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return (f"ChallengeDataset({str(self.path)!r}, survey={self.survey.name!r}, layout={self.layout!r}, "
                f"objects={len(self)})")

    @cached_property
    def band_paths(self) -> list[tuple[Path, ...]]:
        """Per object, its band files in channel order."""
        return [tuple(Path(p) for p in paths) for paths in self._band_files]

    def read(self, i: int) -> np.ndarray:
        """The raw (C, H, W) float32 images of the ``i``-th object.

        Every band must be a ``survey.image_size`` square (101x101); otherwise a DataError names the file.
        """
        size = self.survey.image_size
        out = np.empty((1, self.survey.n_bands, size, size), dtype=np.float32)
        return read_objects([self._band_files[i]], out=out)[0]

    def fingerprint(self) -> str:
        """A hash of every image file's relative path, size and time, and of the catalog's.

        Changes whenever a file is added, removed, rewritten or touched; reads no file contents.
        """
        paths = list(self._all_files)
        if self.catalog_path is not None:
            paths.append(str(self.catalog_path))
        skip = len(str(self.path)) + 1  # every path lies under the root: keep the relative part
        lines = [f"{self.survey.name}|{self.layout}"]
        for p in paths:
            try:
                st = os.stat(p)
            except OSError as exc:  # removed or replaced since the folder was scanned
                raise DataError(f"{p}: cannot read ({describe_problem(p, exc)}); the dataset changed while "
                                "in use?") from None
            lines.append(f"{p[skip:]}|{st.st_size}|{st.st_mtime_ns}")
        return hashlib.blake2b("\n".join(lines).encode(), digest_size=16).hexdigest()


def read_objects(band_files: Sequence[Sequence[str | os.PathLike]],
                 out: np.ndarray | None = None) -> np.ndarray:
    """Read objects' band files into a (B, C, H, W) float32 array (``out``, C-contiguous, if given).

    Every image must have the shape of the first one (or of ``out``); otherwise a DataError names the file.
    """
    from lexactum.data.fits import read_fits, read_fits_stack

    flat = [p for paths in band_files for p in paths]
    if out is None:
        first = read_fits(flat[0])
        out = np.empty((len(band_files), len(band_files[0]), *first.shape), dtype=np.float32)
    elif not out.flags.c_contiguous:  # reshape would copy, and the images would land in the copy
        raise ValueError("read_objects needs a C-contiguous out array")
    read_fits_stack(flat, out=out.reshape(-1, *out.shape[2:]))
    return out


def read_catalog(path: Path) -> tuple[object, np.ndarray, np.ndarray]:
    """(table, ids, labels) of a challenge catalog; columns found by name, labels 1 = lens.

    Accepts ``#`` comment lines, blank lines, a UTF-8 byte-order mark, CRLF endings, quoted header names,
    extra columns and a trailing comma on every line. The label comes from ``is_lens`` or, failing that,
    ``1 - no_source``. IDs and labels are integers (whole decimals such as ``1.0`` are accepted below 2**53,
    where decimals stop being exact), IDs fit in int64 and are unique, labels are 0 or 1. Anything else is a
    DataError naming the file, the column and the first bad cell.
    """
    path = Path(path)
    table = _read_table(path)
    id_column = _catalog_column(path, table, "id")
    if id_column is None:
        separated = len(table.columns) == 1 and any(c in str(table.columns[0]) for c in ";\t|")
        raise DataError(f"{path}: catalog has no ID column (columns: {_column_list(table)})"
                        + ("; the columns must be separated by commas" if separated else ""))
    label_column = _catalog_column(path, table, "is_lens")
    invert = label_column is None
    if invert:
        label_column = _catalog_column(path, table, "no_source")
    if label_column is None:
        raise DataError(f"{path}: catalog has no label column is_lens or no_source "
                        f"(columns: {_column_list(table)})")
    ids = _integer_column(path, table, id_column)
    labels = _integer_column(path, table, label_column)
    bad = ~np.isin(labels, (0, 1))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: column {_shown(label_column)} must hold 0 or 1, "
                        f"found {int(labels[row])} for ID {int(ids[row])}")
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        first = int(np.flatnonzero(counts > 1)[0])
        raise DataError(f"{path}: ID {int(unique[first])} appears {int(counts[first])} times in the catalog")
    return table, ids, (1 - labels) if invert else labels


def _column_list(table) -> str:
    names = [_shown(c) for c in table.columns[:8]]
    return ", ".join(names) + (", ..." if len(table.columns) > 8 else "") if names else "none"


def _integer_column(path: Path, table, column) -> np.ndarray:
    """The column as int64, or a DataError naming its first cell that is not an exact integer in int64."""
    import pandas as pd

    series = table[column]
    if pd.api.types.is_signed_integer_dtype(series):
        return series.to_numpy(dtype=np.int64)
    if pd.api.types.is_unsigned_integer_dtype(series):  # pandas reads 2**63 .. 2**64 - 1 as uint64
        numbers, bad = series, (series > np.iinfo(np.int64).max).to_numpy()
    else:
        text = series if pd.api.types.is_float_dtype(series) else series.astype(str).str.strip()
        numbers = pd.to_numeric(text, errors="coerce")
        as_float = numbers.to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(invalid="ignore"):  # NaN and inf are bad cells, not warnings
            bad = ~(np.abs(as_float) < 2.0**53) | (as_float % 1 != 0)
        if pd.api.types.is_signed_integer_dtype(numbers):  # text such as '+7': integers, exact at any size
            bad = np.zeros(len(numbers), dtype=bool)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        cell = series.iloc[row]
        shown = "an empty or NaN cell" if pd.isna(cell) or not str(cell).strip() else repr(_shown(cell))
        raise DataError(f"{path}: column {_shown(column)} holds {shown}, not an integer "
                        f"(data row {row + 1})")
    return numbers.to_numpy(dtype=np.int64)


def _read_table(path: Path):
    """The catalog file as a DataFrame, or a DataError saying why it is not a comma-separated text table.

    The file is opened without blocking and must be a regular file (a FIFO would wait for a writer).
    ``index_col=False``: with a row longer than the header pandas would otherwise take the first column as
    the index and shift every column name by one.
    """
    import warnings

    import pandas as pd

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
            head = os.read(fd, 4096) if regular else b""
        finally:
            os.close(fd)
    except OSError as exc:
        raise DataError(f"{path}: cannot read catalog ({exc.strerror or exc})") from None
    if not regular:
        raise DataError(f"{path}: catalog is not a regular file (a folder, pipe or device)")
    if b"\0" in head:
        raise DataError(f"{path}: catalog is not a CSV text file")
    if not head.strip():
        raise DataError(f"{path}: catalog is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, comment="#", skipinitialspace=True, index_col=False)
    except pd.errors.ParserWarning:
        raise DataError(f"{path}: catalog has rows with more fields than its header line") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: catalog is not a readable CSV file ({_shown(first, 120)})") from None


def _catalog_column(path: Path, table, name: str):
    """The column called ``name`` (case, spaces and quotes ignored), None if none; two of them are an error.

    pandas renames a repeated header name ``ID`` to ``ID.1`` (``ID `` to ``ID .1``): those count as repeats.
    """
    keys = [_column_key(c) for c in table.columns]
    found = [c for c, key in zip(table.columns, keys, strict=True) if key == name]
    if found:
        for column, key in zip(table.columns, keys, strict=True):
            base, _, number = key.rpartition(".")
            if number.isdigit() and _column_key(base) == name:
                found.append(column)
    if len(found) > 1:
        raise DataError(f"{path}: catalog has {len(found)} {name} columns "
                        f"({', '.join(_shown(c) for c in found)}); keep one")
    return found[0] if found else None


def _column_key(column) -> str:
    return str(column).strip().strip('"').strip().lower()


def _shown(value, limit: int = 40) -> str:
    """``value`` as text for a one-line message: control characters escaped, long text cut."""
    text = str(value)
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= limit else text[:limit] + "..."


def _find_catalog(root: Path, survey: SurveyFormat | None) -> tuple[Path | None, str | None]:
    """The catalog file at ``root`` and the layout it implies: the training key first, then a test key."""
    if (root / TRAINING_CATALOG).is_file():
        return root / TRAINING_CATALOG, "train"
    present = [s for s in SURVEYS.values() if (root / s.test_catalog).is_file()]
    if survey is not None:
        if survey in present:
            return root / survey.test_catalog, "test"
        if present:
            raise DataError(f"{root / present[0].test_catalog}: is the {present[0].name} catalog, "
                            f"but the survey asked for is {survey.name}")
        return None, None
    if len(present) > 1:
        raise DataError(f"{root}: holds both {present[0].test_catalog} and {present[1].test_catalog}; "
                        "pass the survey to choose one")
    return (root / present[0].test_catalog, "test") if present else (None, None)


def _scan_images(root: Path, surveys: list[SurveyFormat]
                 ) -> tuple[dict[str, list[dict[int, str]]], list[tuple[str, str]]]:
    """Per survey and band, {ID: file path} of every matching file anywhere under ``root``; and the
    (path, reason) of each entry skipped because it cannot be read as a file or folder.

    One os.scandir walk over the tree. A name ``<prefix><digits><suffix>`` is split by string operations
    and looked up in a dict of the surveys' (prefix, suffix) pairs: no glob, no regex, and no stat but for
    symbolic links. An entry named like an image that is not a regular file (a broken link, a link loop, a
    named pipe that would block a reader forever, a folder) is skipped, so its object counts as incomplete,
    as with a missing file; so is a broken link or link loop of any other (not hidden) name, which may have
    been a folder of images.
    """
    found = {s.name: [{} for _ in s.bands] for s in surveys}
    band_of: dict[tuple[str, str], tuple[str, int]] = {}
    for s in surveys:
        for band, pattern in enumerate(s.file_patterns):
            prefix, suffix = pattern.split("{id}")
            band_of[(prefix, suffix)] = (s.name, band)
    suffixes = sorted({suffix for _, suffix in band_of})
    pending, seen, skipped = [str(root)], set(), []
    while pending:
        folder = pending.pop()
        real = os.path.realpath(folder)
        if real in seen:  # a symbolic link back up the tree
            continue
        seen.add(real)
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            raise DataError(f"{folder}: cannot list folder ({exc.strerror})") from None
        for entry in entries:
            name = entry.name
            for suffix in suffixes:
                if name.endswith(suffix):
                    stem = name[:len(name) - len(suffix)]
                    prefix = stem.rstrip("0123456789")
                    match = band_of.get((prefix, suffix)) if len(prefix) < len(stem) else None
                    if match is not None:
                        break
            else:
                match = None
            if match is None:
                _visit_other(entry, pending, skipped)
                continue
            problem = file_problem(entry.path, entry)
            if problem is not None:
                skipped.append((entry.path, problem))
                continue
            files = found[match[0]][match[1]]
            object_id = int(stem[len(prefix):])
            if object_id >= 2**63:
                raise DataError(f"{entry.path}: object ID {object_id} is too large (at most 19 digits)")
            if object_id in files:
                band_name = SURVEYS[match[0]].bands[match[1]]
                raise DataError(f"{entry.path}: second {band_name} file of object {object_id} "
                                f"(the first is {files[object_id]})")
            files[object_id] = entry.path
    return found, sorted(skipped)


def _visit_other(entry: os.DirEntry, pending: list[str], skipped: list[tuple[str, str]]) -> None:
    """An entry not named like an image: a folder to walk, a broken link to report, or nothing."""
    try:
        if entry.is_dir():  # follows links (without a stat for a plain entry)
            pending.append(entry.path)
            return
        if not entry.is_symlink() or entry.name.startswith(".") or os.path.exists(entry.path):
            return
        os.stat(entry.path)
    except OSError as exc:  # a link loop (is_dir raises), or a broken link (os.stat raises)
        if not entry.name.startswith("."):
            skipped.append((entry.path, describe_problem(entry.path, exc)))


def file_problem(path: str | os.PathLike, entry: os.DirEntry | None = None) -> str | None:
    """Why ``path`` cannot be read as a file (links followed), or None when it is a regular file.

    Never opens it: opening a named pipe would wait for a writer forever. ``entry``, when ``path`` comes
    from os.scandir, answers for a plain file without a system call."""
    try:
        if entry is not None and entry.is_file():
            return None
        mode = os.stat(path).st_mode
    except OSError as exc:
        return describe_problem(path, exc)
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder, not a file"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO), not a file"
    return "not a regular file (a device or a socket)"


def describe_problem(path: str | os.PathLike, exc: OSError) -> str:
    """What an OSError met on ``path`` means for a reader: a broken link (and its target), a loop..."""
    if exc.errno == errno.ELOOP:
        return "a symbolic link loop"
    if exc.errno == errno.ENOENT and os.path.islink(path):
        try:
            return f"a broken symbolic link to {os.readlink(path)}"
        except OSError:
            return "a broken symbolic link"
    return exc.strerror or str(exc)


def skipped_text(root: Path, skipped: list[tuple[str, str]]) -> str:
    """'skipped N entries ... : PATH (reason), ...' for a warning or an error, on one line."""
    shown = ", ".join(f"{path} ({reason})" for path, reason in skipped[:N_EXAMPLES])
    more = f", and {len(skipped) - N_EXAMPLES} more" if len(skipped) > N_EXAMPLES else ""
    noun = "entry" if len(skipped) == 1 else "entries"
    return f"skipped {len(skipped)} {noun} under {root} that cannot be read as files: {shown}{more}"


def warn_skipped(root: Path, skipped: list[tuple[str, str]]) -> None:
    """One warning line (Python's logging; shown on stderr when nothing else is set up) for skipped entries,
    once per process for the same folder and entries (a command may open its dataset more than once)."""
    key = (str(root), tuple(skipped))
    if skipped and key not in _WARNED:
        _WARNED.add(key)
        logging.getLogger(__name__).warning("lexactum: warning: %s", skipped_text(root, skipped))


#: The (folder, skipped entries) already warned about in this process.
_WARNED: set[tuple[str, tuple]] = set()


def _pick_survey(root: Path, wanted: SurveyFormat | None,
                 found: dict[str, list[dict[int, str]]]) -> SurveyFormat:
    counts = {name: sum(len(band) for band in bands) for name, bands in found.items()}
    if wanted is not None:
        if counts[wanted.name] == 0:
            names = " or ".join(p.format(id="<ID>") for p in wanted.file_patterns[:4])
            raise DataError(f"{root}: no {wanted.name} images ({names}) anywhere under this folder")
        return wanted
    present = [name for name, count in counts.items() if count]
    if not present:
        patterns = ", ".join(p.format(id="<ID>") for s in SURVEYS.values() for p in s.file_patterns)
        raise DataError(f"{root}: cannot tell the survey: no challenge images ({patterns}) under this folder")
    if len(present) > 1:
        raise DataError(f"{root}: holds both space and ground images; pass the survey ('space' or 'ground')")
    return SURVEYS[present[0]]


def _complete_objects(survey: SurveyFormat,
                      files: list[dict[int, str]]) -> tuple[list[int], list[tuple[int, Path]]]:
    """Sorted IDs that have every band file, and (ID, expected path) of each missing band file."""
    complete = set(files[0]).intersection(*files[1:])
    missing = []
    for object_id in sorted(set().union(*files) - complete):
        absent = [b for b in range(survey.n_bands) if object_id not in files[b]]
        band_present = next(b for b in range(survey.n_bands) if b not in absent)
        present = Path(files[band_present][object_id])
        for b in absent:
            name = survey.file_patterns[b].format(id=object_id)
            if present.parent.name == survey.band_folders[band_present]:
                expected = present.parent.parent / survey.band_folders[b] / name
            else:
                expected = present.parent / name
            missing.append((object_id, expected))
    return sorted(complete), missing
