"""Writing datasets in the exact Lens Finding Challenge 1.0 format: folders, FITS files, catalogs.

Both layouts (see docs/challenge-data.md): the training layout (``Data.k/Public/BandN`` and
``classifications.csv``) and the released test layout (``Data_EuclidBig.k`` / ``Data_KiDS_Big.k`` with
``euclidB_image_catalog.csv`` / ``kidsB_image_catalog.csv``, ``#`` comment lines, ``no_source``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lexactum.data.surveys import TRAINING_CATALOG, SurveyFormat

#: Objects per sub-folder in the released test set.
OBJECTS_PER_FOLDER = 10_000
TRAINING_COLUMNS = ("ID", "is_lens", "Einstein_area", "numb_pix_lensed_image", "flux_lensed_image_in_sigma")


def object_folder(survey: SurveyFormat, layout: str, index: int, per_folder: int = OBJECTS_PER_FOLDER) -> str:
    """Sub-folder name of the ``index``-th object (0-based) in a dataset of ``layout``."""
    k = index // per_folder
    return f"Data.{k}" if layout == "train" else f"{survey.test_folder_prefix}.{k}"


def band_paths(root: Path, survey: SurveyFormat, layout: str, index: int, object_id: int,
               per_folder: int = OBJECTS_PER_FOLDER) -> list[Path]:
    """Where each band file of an object goes, in channel order."""
    base = Path(root) / object_folder(survey, layout, index, per_folder) / "Public"
    return [base / folder / name for folder, name in zip(survey.band_folders, survey.file_names(object_id), strict=True)]


def fits_header_bytes(survey: SurveyFormat, ra: float = 0.0, dec: float = 0.0) -> bytes:
    """A primary header like the real files' (TAN WCS, NX, NY, RA/DEC in radians), padded to 2880 bytes."""
    from astropy.io import fits

    n = survey.image_size
    deg = survey.pixel_scale / 3600.0
    header = fits.Header()
    header["SIMPLE"] = (True, "file does conform to FITS standard")
    header["BITPIX"] = (-32, "number of bits per data pixel")
    header["NAXIS"] = (2, "number of data axes")
    header["NAXIS1"] = (n, "length of data axis 1")
    header["NAXIS2"] = (n, "length of data axis 2")
    header["EXTEND"] = (True, "FITS dataset may contain extensions")
    header["WCSAXES"] = (2, "number of World Coordinate System axes")
    header["CRPIX1"] = ((n + 1) / 2.0, "x-coordinate of reference pixel")
    header["CRPIX2"] = ((n + 1) / 2.0, "y-coordinate of reference pixel")
    header["CRVAL1"] = (0.0, "first axis value at reference pixel")
    header["CRVAL2"] = (0.0, "second axis value at reference pixel")
    header["CTYPE1"] = ("RA---TAN", "the coordinate type for the first axis")
    header["CTYPE2"] = ("DEC--TAN", "the coordinate type for the second axis")
    header["CUNIT1"] = ("deg", "the coordinate unit for the first axis")
    header["CUNIT2"] = ("deg", "the coordinate unit for the second axis")
    header["CDELT1"] = (-deg, "partial of first axis coordinate w.r.t. x")
    header["CDELT2"] = (deg, "partial of first axis coordinate w.r.t. y")
    header["CROTA2"] = 0.0
    header["CD1_1"] = (-deg, "partial of first axis coordinate w.r.t. x")
    header["CD1_2"] = (0.0, "partial of first axis coordinate w.r.t. y")
    header["CD2_1"] = (0.0, "partial of second axis coordinate w.r.t. x")
    header["CD2_2"] = (deg, "partial of second axis coordinate w.r.t. y")
    header["NX"] = n
    header["NY"] = n
    header["HIERARCH range x"] = (n * deg * np.pi / 180.0, "radians")
    header["RA"] = (float(ra), "radians")
    header["DEC"] = (float(dec), "radians")
    return header.tostring().encode("ascii")


def write_fits_image(path: Path, image: np.ndarray, header: bytes) -> None:
    """Write one big-endian float32 image after ``header``, atomically (temporary name, then rename)."""
    data = np.ascontiguousarray(image, dtype=">f4").tobytes()
    pad = (-len(data)) % 2880
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        fh.write(header)
        fh.write(data)
        fh.write(b"\0" * pad)
    os.replace(tmp, path)


def write_training_catalog(root: Path, rows: Sequence[dict]) -> Path:
    """``classifications.csv`` with the training key's header."""
    path = Path(root) / TRAINING_CATALOG
    lines = [",".join(TRAINING_COLUMNS)]
    for row in rows:
        lines.append(
            f"{int(row['ID'])},{int(row['is_lens'])},{float(row.get('Einstein_area', 0.0)):.6g},"
            f"{int(row.get('numb_pix_lensed_image', 0))},{float(row.get('flux_lensed_image_in_sigma', 0.0)):.6g}"
        )
    _write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def write_test_catalog(root: Path, survey: SurveyFormat, rows: Sequence[dict], columns: Sequence[str],
                       comments: Sequence[str] = ()) -> Path:
    """The test-layout truth catalog: ``#`` comment lines, then a header row naming ``columns``."""
    path = Path(root) / survey.test_catalog
    lines = [f"# {c}" for c in comments]
    lines.append(",".join(columns))
    for row in rows:
        lines.append(",".join(_format_value(row.get(c, 0)) for c in columns))
    _write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def _format_value(value) -> str:
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.6g}"


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text)
    os.replace(tmp, path)
