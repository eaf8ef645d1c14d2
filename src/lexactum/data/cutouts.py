"""Objects to score that may not be a challenge dataset: loose FITS cutouts, single objects by file or ID.

``lexactum predict`` scores any folder of cutouts (:func:`open_cutouts`), and ``lexactum features`` reads one
object (:func:`read_single_object`); both fall back to :class:`~lexactum.data.layouts.ChallengeDataset`
when the files are in the challenge layout.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from lexactum.errors import DataError

#: File name endings taken as FITS cutouts in a folder that is not in the challenge layout.
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")


class CutoutFolder:
    """FITS cutouts not in the challenge layout: one file per object holding all its bands.

    Each file under ``path`` (any depth, any name ending in .fits/.fit/.fts, optionally gzipped) is one
    object, (C, H, W) or (H, W) for one band. The ID is the number at the end of the file name when every
    file has a distinct one, else the file name without its ending. Such names that are not regular files
    (broken links, named pipes...) are skipped with one warning line.
    """

    def __init__(self, path: str | os.PathLike, survey=None):
        from lexactum.data.layouts import file_problem, skipped_text, warn_skipped
        from lexactum.data.surveys import get_survey, survey_for_bands

        self.path = Path(path).expanduser().resolve()
        files, skipped = [], []
        for p in sorted(p for p in self.path.rglob("*") if p.name.lower().endswith(FITS_SUFFIXES)):
            problem = file_problem(p)  # never open a named pipe: it would wait forever
            if problem is None:
                files.append(p)
            else:
                skipped.append((str(p), problem))
        if not files:
            raise DataError(f"{self.path}: no FITS files (*.fits, *.fit, *.fts) under this folder"
                            + (f"; {skipped_text(self.path, skipped)}" if skipped else ""))
        warn_skipped(self.path, skipped)
        self.files = files
        self.ids = _cutout_ids(self.path, files)
        self.labels = np.full(len(files), -1, dtype=np.int64)
        first = self.read(0)
        self.shape = first.shape
        self.survey = get_survey(getattr(survey, "name", survey)) if survey is not None \
            else survey_for_bands(first.shape[0])
        if self.survey.n_bands != first.shape[0]:
            raise DataError(f"{files[0]}: holds {first.shape[0]} band(s) but {self.survey.name} images have "
                            f"{self.survey.n_bands}")
        size = self.survey.image_size
        if first.shape[1:] != (size, size):
            raise DataError(f"{files[0]}: image is {first.shape[1]}x{first.shape[2]} pixels, but the networks "
                            f"take {self.survey.name} cutouts of {size}x{size}")

    def __len__(self) -> int:
        return len(self.files)

    def read(self, i: int) -> np.ndarray:
        """The (C, H, W) float32 image of the ``i``-th file, every file checked against the first's shape."""
        image = read_cutout(self.files[i])
        if hasattr(self, "shape") and image.shape != self.shape:
            raise DataError(f"{self.files[i]}: image is {image.shape} but the first cutout ({self.files[0]}) "
                            f"is {self.shape}")
        return image


def _cutout_ids(root: Path, files: list[Path]) -> np.ndarray:
    """The number at the end of each file name when every file has a distinct one (and it fits int64);
    else the file name without its ending, or the path below ``root`` where names repeat. IDs go into
    the two-column ``ID score`` submission format, so a name with white space is refused."""
    stems = [_strip_suffix(p.name) for p in files]
    numbers = [re.search(r"(?<!\d)(\d{1,18})$", stem) for stem in stems]  # longer runs: not int64
    if all(numbers) and len({int(m.group(1)) for m in numbers}) == len(files):
        return np.array([int(m.group(1)) for m in numbers], dtype=np.int64)
    if len(set(stems)) != len(stems):
        stems = [_strip_suffix(str(p.relative_to(root).as_posix())) for p in files]
    for path, stem in zip(files, stems, strict=True):
        if re.search(r"\s", stem):
            raise DataError(f"{path}: the file name holds white space, which the 'ID score' submission format "
                            "cannot carry; rename the file")
    return np.array(stems, dtype=object)


def read_cutout(path: str | os.PathLike) -> np.ndarray:
    """One FITS cutout as (C, H, W) float32: a single band (H, W) gets C = 1."""
    from astropy.io import fits

    try:
        data = fits.getdata(path)
    except Exception as exc:  # noqa: BLE001 - astropy raises many kinds for a damaged file
        raise DataError(f"{path}: cannot read as a FITS image ({exc})") from None
    if data is None or data.ndim not in (2, 3):
        raise DataError(f"{path}: expected an image of (H, W) or (bands, H, W), found "
                        f"{'no data' if data is None else f'{data.ndim} axes'}")
    image = np.ascontiguousarray(data, dtype=np.float32)
    return image[None] if image.ndim == 2 else image


def read_single_object(image: str, n_bands: int, dataset: str | os.PathLike | None = None,
                       survey=None) -> tuple[np.ndarray, object, list[Path]]:
    """(raw (C, H, W) image, SurveyFormat, files read) of one object for a model taking ``n_bands``.

    ``image`` is a FITS file (all bands, or one band file with the challenge name whose other bands are
    found by name beside it or in the sibling band folders) or, with ``dataset``, an object ID.
    """
    from lexactum.data.layouts import file_problem
    from lexactum.data.surveys import get_survey, survey_for_bands

    fmt = get_survey(getattr(survey, "name", survey)) if survey else survey_for_bands(n_bands)
    path = Path(image).expanduser()
    problem = file_problem(path) if os.path.lexists(path) else None
    if problem is not None and not path.is_dir():  # a broken link, a named pipe...: never opened
        raise DataError(f"{image}: cannot be read as a FITS file ({problem})")
    if not path.is_file():
        if dataset is None:
            raise DataError(f"{image}: no such FITS file (to pick an object by ID, also give --dataset)")
        return _object_of_dataset(image, dataset, fmt)
    cutout = read_cutout(path)
    if cutout.shape[0] == n_bands:
        return cutout, fmt, [path]
    if cutout.shape[0] != 1:
        raise DataError(f"{path}: holds {cutout.shape[0]} bands but the model takes {n_bands}")
    files = _band_files_beside(path, fmt)
    bands = [cutout[0] if f == path else read_cutout(f)[0] for f in files]
    if any(b.shape != bands[0].shape for b in bands):
        raise DataError(f"{path}: its band files do not all have the same image size")
    return np.stack(bands), fmt, files


def _band_files_beside(path: Path, fmt) -> list[Path]:
    """Every band file of the object whose one band file is ``path`` (challenge names and folders)."""
    matches = [(band, path.name[len(prefix):len(path.name) - len(suffix)])
               for band, (prefix, suffix) in enumerate(p.split("{id}") for p in fmt.file_patterns)
               if path.name.startswith(prefix) and path.name.endswith(suffix)]
    matches = [(band, digits) for band, digits in matches if digits.isdigit()]
    if not matches:
        names = " or ".join(p.format(id="<ID>") for p in fmt.file_patterns)
        raise DataError(f"{path}: one band only, and not named like a {fmt.name} band file ({names}) so the "
                        "other bands cannot be found; give a file with all bands or an ID with --dataset")
    band, digits = matches[0]
    files = []
    for other, pattern in enumerate(fmt.file_patterns):
        name = pattern.format(id=int(digits))
        candidates = [path.parent / name]
        if path.parent.name == fmt.band_folders[band]:
            candidates.append(path.parent.parent / fmt.band_folders[other] / name)
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise DataError(f"{path}: band {fmt.bands[other]} of object {int(digits)} not found (looked at "
                            f"{', '.join(map(str, candidates))})")
        files.append(found)
    return files


def _object_of_dataset(image: str, dataset, fmt) -> tuple[np.ndarray, object, list[Path]]:
    from lexactum.data.layouts import ChallengeDataset

    try:
        object_id = int(image)
    except ValueError:
        raise DataError(f"{image}: neither a FITS file nor an object ID") from None
    data = ChallengeDataset(dataset, survey=fmt, require_labels=False)
    where = np.flatnonzero(data.ids == object_id)
    if len(where) == 0:
        raise DataError(f"{data.path}: has no complete object with ID {object_id}")
    k = int(where[0])
    return data.read(k), data.survey, list(data.band_paths[k])


def _strip_suffix(name: str) -> str:
    lower = name.lower()
    for suffix in sorted(FITS_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def open_cutouts(path: str | os.PathLike, survey=None):
    """Objects to score under ``path``: a challenge dataset (labels when it has a catalog) or loose cutouts.

    Files with the challenge's band names (``imageEUC_VIS-<ID>.fits``, ``imageSDSS_R-<ID>.fits``...) are
    grouped per object wherever they are; otherwise every FITS file is one multi-band object.
    """
    from lexactum.data.layouts import ChallengeDataset
    from lexactum.data.surveys import SURVEYS

    path = Path(path).expanduser()
    if not path.is_dir():
        raise DataError(f"{path}: input folder does not exist" if not path.exists() else
                        f"{path}: not a folder (give the folder holding the FITS cutouts)")
    try:
        return ChallengeDataset(path, survey=survey, require_labels=False)
    except DataError:
        names = tuple(p.split("{id}")[0] for s in SURVEYS.values() for p in s.file_patterns)
        if any(p.name.startswith(names) for p in path.rglob("*.fits")):
            raise  # challenge files that do not form a dataset: that error says why
    return CutoutFolder(path, survey=survey)
