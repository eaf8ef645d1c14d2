"""Writing datasets in the exact Lens Finding Challenge 1.0 format: folders, FITS files, catalogs.

Both layouts (see docs/challenge-data.md): the training layout (``Data.k/Public/BandN`` and
``classifications.csv``) and the released test layout (``Data_EuclidBig.k`` / ``Data_KiDS_Big.k`` with
``euclidB_image_catalog.csv`` / ``kidsB_image_catalog.csv``, ``#`` comment lines, ``no_source``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np

from lexactum.data.surveys import TRAINING_CATALOG, SurveyFormat
from lexactum.runs import TEMPORARY_NAME, atomic_path, check_output_folder, write_text_atomic

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
    names = survey.file_names(object_id)
    return [base / folder / name for folder, name in zip(survey.band_folders, names, strict=True)]


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
    header["CDELT2"] = (deg, "partial of second axis coordinate w.r.t. y")
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
    """Write one big-endian float32 image after ``header``, atomically (:func:`lexactum.runs.atomic_path`).

    A run killed mid-write leaves at most a hidden temporary file, which no reader takes for an image and
    :func:`simulate_dataset` removes when it resumes.
    """
    data = np.ascontiguousarray(image, dtype=">f4").tobytes()
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(header)
        fh.write(data)
        fh.write(b"\0" * ((-len(data)) % 2880))


def write_training_catalog(root: Path, rows: Sequence[dict]) -> Path:
    """``classifications.csv`` with the training key's header."""
    path = Path(root) / TRAINING_CATALOG
    lines = [",".join(TRAINING_COLUMNS)]
    for row in rows:
        lines.append(
            f"{int(row['ID'])},{int(row['is_lens'])},{float(row.get('Einstein_area', 0.0)):.6g},"
            f"{int(row.get('numb_pix_lensed_image', 0))},{float(row.get('flux_lensed_image_in_sigma', 0.0)):.6g}"
        )
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def write_impostor_truth(root: Path, rows: Sequence[dict]) -> Path | None:
    """``impostors.csv`` beside the catalog of a randomised dataset: ``ID,is_lens,impostors`` per object, the
    kinds joined by ``+`` (empty for lenses and plain non-lenses). Why: the false positives that matter are
    the impostors, and a score per kind says which of them a network takes for lenses. Rows journalled before
    the column existed give no file (a partial truth would mislead): None."""
    if not all("impostors" in row for row in rows):
        return None
    lines = ["ID,is_lens,impostors"] + [f"{int(r['ID'])},{int(r['is_lens'])},{r['impostors']}" for r in rows]
    path = Path(root) / IMPOSTOR_TRUTH
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def read_impostor_truth(root: str | Path) -> dict[int, tuple[str, ...]] | None:
    """ID -> impostor kinds of a dataset's ``impostors.csv``, or None where it has none (not randomised)."""
    import csv

    from lexactum.errors import DataError

    path = Path(root) / IMPOSTOR_TRUTH
    if not path.is_file():
        return None
    try:
        with open(path, newline="") as fh:
            return {int(r["ID"]): tuple(k for k in r["impostors"].split("+") if k) for r in csv.DictReader(fh)}
    except (OSError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: not an impostor truth file ({exc})") from None


def write_test_catalog(root: Path, survey: SurveyFormat, rows: Sequence[dict], columns: Sequence[str],
                       comments: Sequence[str] = ()) -> Path:
    """The test-layout truth catalog: ``#`` comment lines, then a header row naming ``columns``."""
    path = Path(root) / survey.test_catalog
    lines = [f"# {c}" for c in comments]
    lines.append(",".join(columns))
    for row in rows:
        lines.append(",".join(_format_value(row.get(c, 0)) for c in columns))
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def _format_value(value) -> str:
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.6g}"


# ------------------------------------------------------------------------------------ simulated datasets

MANIFEST = ".lexactum-simulate.json"
#: The impostor kinds of each object of a randomised dataset (see write_impostor_truth).
IMPOSTOR_TRUTH = "impostors.csv"
ROWS_JOURNAL = ".lexactum-simulate-rows.jsonl"
#: Meaning of a parameter missing from a manifest written before the parameter existed.
MANIFEST_DEFAULTS = {"randomise": False, "impostor_scale": 1.0, "impostor_rates": None}
REPORT_PNG = "simulation-report.png"
#: Draws of a lens at most when ``min_lensed_flux`` asks for a brighter one (then the last is kept).
MAX_REDRAWS = 100
#: Bumped when the simulator's output for a given seed changes, so that a resume never mixes versions.
SIMULATOR_VERSION = 2  # 2: the CDELT2 comment of the real files
TEST_COLUMNS = ("ID", "no_source", "Einstein_radius", "Einstein_area", "z_lens", "z_source", "mag_lens",
                "mag_source", "numb_pix_lensed_image", "flux_lensed_image_in_sigma", "noise_factor", "n_masked")
TEST_COMMENTS = (
    "simulated by lexactum.simulate (lenstronomy SIE+shear, Sersic lens and source light, clumps, neighbours)",
    "ID: object ID (files imageEUC_VIS-ID.fits / imageSDSS_<band>-ID.fits)",
    "no_source: 1 when no lensed source is in the image (not a lens), 0 for a lens",
    "Einstein_radius: arcsec; Einstein_area: pi Einstein_radius^2 in steradians",
    "z_lens, z_source: redshifts (-1 without a source); mag_lens, mag_source: AB magnitudes in the first band",
    "numb_pix_lensed_image: pixels of the noise-free lensed source above 1 sigma of the noise (first band)",
    "flux_lensed_image_in_sigma: flux of those pixels in units of sigma",
    "noise_factor: noise sigma over the survey's median; n_masked: masked pixels (value 100) over all bands",
)


def simulate_dataset(out: str | Path, survey: str, n: int, layout: str = "test", seed: int = 0,
                     lens_fraction: float | None = None, workers: int | None = None, overwrite: bool = False,
                     progress: bool = True, per_folder: int = OBJECTS_PER_FOLDER,
                     min_lensed_flux: float = 0.0, randomise: bool | None = None,
                     impostors: float | None = None) -> Path:
    """Simulate ``n`` objects of ``survey`` in the challenge's ``layout`` under ``out``; returns ``out``.

    Objects are drawn from per-object seeds, so the bytes do not depend on ``workers``. A killed run
    continues where it stopped when called again with the same parameters (a manifest records them);
    different parameters are refused unless ``overwrite``. The catalog is written last.
    ``min_lensed_flux`` (in sigma; 0 keeps the population calibrated on the real keys) redraws lenses whose
    lensed source is fainter, for small demonstrations where barely visible lenses only add noise.
    ``randomise`` draws the instrument and population choices per object from the preset's ranges
    (:mod:`lexactum.simulate.randomise`); None: on for the train layout, off for the test layout.
    ``impostors`` multiplies the survey's impostor rates of a randomised dataset (None: 1, the survey's rates;
    0: no impostors).
    """
    from lexactum.data.surveys import get_survey
    from lexactum.errors import LexactumError

    fmt = get_survey(survey)
    params = checked_params(fmt.name, n, layout, seed, lens_fraction, per_folder, min_lensed_flux, randomise,
                             impostors)
    randomise, scale = params["randomise"], params["impostor_scale"]
    lens_fraction = params["lens_fraction"]
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise LexactumError(f"--workers must be at least 1, got {workers}")
    out = Path(out)
    _check_space(out, fmt, int(n) - (len(_read_journal(out / ROWS_JOURNAL)) if out.is_dir() else 0))
    _prepare_output(out, params, overwrite)
    write_text_atomic(out / MANIFEST, json.dumps(dict(params, complete=False), indent=1) + "\n")

    _remove_temporaries(out, fmt, layout, n, per_folder)
    rows = _read_journal(out / ROWS_JOURNAL)
    todo = [i for i in range(n) if 100_000 + i not in rows
            or not all(p.is_file() for p in band_paths(out, fmt, layout, i, 100_000 + i, per_folder))]
    tasks = [(str(out), fmt.name, layout, int(seed), float(lens_fraction), int(per_folder), i,
              float(min_lensed_flux), randomise, scale) for i in todo]
    from lexactum.progress import progress as progress_bar

    with _journal(out / ROWS_JOURNAL) as append:
        for row in _run(tasks, workers, progress_bar, progress, fmt.name):
            rows[row["ID"]] = row
            append(row)
    ordered = [rows[100_000 + i] for i in range(n)]
    write_text_atomic(out / ROWS_JOURNAL, "".join(json.dumps(row) + "\n" for row in ordered))
    if layout == "train":
        write_training_catalog(out, ordered)
    else:
        write_test_catalog(out, fmt, ordered, TEST_COLUMNS, TEST_COMMENTS)
    if randomise:
        write_impostor_truth(out, ordered)
    write_text_atomic(out / MANIFEST, json.dumps(dict(params, complete=True), indent=1) + "\n")
    return out


def checked_params(survey: str, n, layout: str, seed, lens_fraction=None, per_folder=OBJECTS_PER_FOLDER,
                   min_lensed_flux=0.0, randomise=None, impostors=None) -> dict:
    """The manifest's parameters of a simulation, each checked once (one line for the first that is wrong).

    ``impostor_rates`` (the rates per kind, after ``impostors``) is recorded for randomised datasets, so that a
    resume never mixes objects drawn at other rates (older manifests, without it, count as other rates).
    """
    from lexactum.errors import LexactumError, plain_number
    from lexactum.simulate.impostors import rates_for
    from lexactum.simulate.presets import get_preset
    from lexactum.simulate.randomise import enabled

    physics = get_preset(survey)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise LexactumError(f"--n must be a positive number of objects, got {plain_number(n)!r}")
    if layout not in ("train", "test"):
        raise LexactumError(f"unknown layout {layout!r}: choose train or test")
    if lens_fraction is None:
        lens_fraction = physics.default_lens_fraction(layout)
    if not 0.0 <= _number(lens_fraction) <= 1.0:
        raise LexactumError(f"lens fraction must lie in [0, 1], got {plain_number(lens_fraction)!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise LexactumError(f"--seed must be a non-negative integer, got {plain_number(seed)!r}")
    if not 0.0 <= _number(min_lensed_flux) < float("inf"):
        raise LexactumError("minimum lensed flux must be a finite number of sigma >= 0, "
                            f"got {plain_number(min_lensed_flux)!r}")
    if isinstance(per_folder, bool) or not isinstance(per_folder, (int, np.integer)) or per_folder < 1:
        raise LexactumError(f"objects per folder must be a positive integer, got {plain_number(per_folder)!r}")
    randomise = enabled(layout, randomise)
    scale = _impostor_scale(physics, impostors, randomise)
    params = {"simulator_version": SIMULATOR_VERSION, "survey": survey, "layout": layout, "n": int(n),
              "seed": int(seed), "lens_fraction": float(lens_fraction), "per_folder": int(per_folder),
              "min_lensed_flux": float(min_lensed_flux), "randomise": randomise, "impostor_scale": scale}
    params["impostor_rates"] = None
    if randomise:
        rates = rates_for(dataclasses.replace(physics, impostor_scale=scale))
        params["impostor_rates"] = {k: getattr(rates, k) for k in rates.kinds()}
    return params


def _impostor_scale(physics, impostors, randomise: bool) -> float:
    """``impostors`` checked: a finite factor from 0 to the largest that keeps every rate a probability, and
    only for randomised datasets (fixed ones keep the bytes of the simulator before impostors existed)."""
    from lexactum.errors import LexactumError, plain_number
    from lexactum.simulate.impostors import rates_for

    if impostors is None:
        return 1.0
    if not randomise:
        raise LexactumError("--impostors applies to randomised datasets only (the fixed simulator draws none): "
                            "drop it or add --randomise")
    largest = rates_for(physics).largest_scale()  # the preset's own rates (its impostor_scale is 1)
    if not 0.0 <= _number(impostors) <= largest:
        raise LexactumError(f"--impostors must be a factor from 0 to {largest:.4g} (the largest that keeps every "
                            f"{physics.name} impostor rate at most 1), got {plain_number(impostors)!r}")
    return float(impostors)


def _number(value) -> float:
    """``value`` as a float; NaN (refused by every range check) for what is not a number, a bool included
    (transfer-check's settings are read as JSON, so a string or true may come this way)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return float("nan")
    return float(value)


@contextlib.contextmanager
def _journal(path: Path):
    """Yield ``append(row)``, which adds one catalog row to the journal of finished objects and flushes it.

    A line cut by a kill is closed first (the reader skips it). A failure to write (disk full) is a
    WriteError naming the journal: the rows already there and the objects' files stay, so a rerun resumes.
    """
    from lexactum.errors import WriteError

    def failed(exc: OSError) -> WriteError:
        return WriteError.of(exc, path)

    try:
        journal = open(path, "a+")  # noqa: SIM115 (closed below, where its own errors are described too)
        journal.seek(max(0, journal.tell() - 1))
        if journal.tell() and journal.read(1) != "\n":  # a line cut by a kill: start a fresh one
            journal.write("\n")
    except OSError as exc:
        raise failed(exc) from exc

    def append(row: dict) -> None:
        try:
            journal.write(json.dumps(row) + "\n")
            journal.flush()
        except OSError as exc:
            raise failed(exc) from exc

    try:
        yield append
    finally:
        try:
            journal.close()
        except OSError as exc:  # the last buffered line did not fit: said unless another error is on its way
            if sys.exc_info()[0] is None:
                raise failed(exc) from exc


def _run(tasks, workers, progress_bar, show, survey):
    """Yield the catalog row of each task, in parallel over ``workers`` processes when worth it."""
    bar = None
    if workers == 1 or len(tasks) < 2:
        results = map(simulate_object, tasks)
        pool = None
    else:
        from lexactum.simulate import scene
        from lexactum.simulate.presets import get_preset

        _header_cards(survey)  # built once before the workers fork
        pool = scene.worker_pool(get_preset(survey), min(workers, len(tasks)))
        chunk = max(1, min(4, len(tasks) // (8 * workers)))  # small: the last chunks finish together
        results = pool.imap_unordered(simulate_object, tasks, chunksize=chunk)
    try:
        bar = progress_bar(total=len(tasks), desc=f"simulate {survey}", unit="img", enabled=None if show else False)
        for row in results:
            bar.update(1)
            yield row
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()


def simulate_object(task: tuple) -> dict:
    """Draw, render and write object ``index`` of a dataset; returns its catalog row. Runs in workers."""
    from lexactum.data.surveys import get_survey
    from lexactum.simulate import catalog, scene
    from lexactum.simulate.presets import get_preset

    root, survey, layout, seed, lens_fraction, per_folder, index, min_lensed_flux = task[:8]
    fmt, physics = get_survey(survey), get_preset(survey)
    if task[8]:
        physics = dataclasses.replace(physics, randomise=True, impostor_scale=task[9])
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    is_lens = rng.random() < lens_fraction
    fld = scene.draw_field(physics, rng, is_lens)
    quantities = catalog.lens_quantities(physics, fld)
    for _ in range(MAX_REDRAWS):
        if not is_lens or quantities["flux_lensed_image_in_sigma"] >= min_lensed_flux:
            break
        fld = scene.draw_field(physics, rng, is_lens)
        quantities = catalog.lens_quantities(physics, fld)
    image = scene.render_field(physics, fld, rng)
    ra, dec = rng.uniform(-2e-3, 2e-3, 2)
    header = _header_with_position(fmt.name, float(ra), float(dec))
    object_id = 100_000 + index
    for band, path in enumerate(band_paths(Path(root), fmt, layout, index, object_id, per_folder)):
        write_fits_image(path, image[band], header)
    return catalog.catalog_row(physics, fld, object_id, quantities)


@cache
def _header_cards(survey: str) -> tuple[str, int, int]:
    """The survey's header text and the offsets of its RA and DEC cards (building it with astropy is slow)."""
    from lexactum.data.surveys import get_survey

    text = fits_header_bytes(get_survey(survey)).decode("ascii")
    return text, text.index("RA      ="), text.index("DEC     =")


def _header_with_position(survey: str, ra: float, dec: float) -> bytes:
    """:func:`fits_header_bytes` with RA and DEC (radians) filled in."""
    from astropy.io.fits import Card

    text, at_ra, at_dec = _header_cards(survey)
    for at, key, value in ((at_ra, "RA", ra), (at_dec, "DEC", dec)):
        text = text[:at] + Card(key, value, "radians").image + text[at + 80:]
    return text.encode("ascii")


def _check_space(out: Path, fmt: SurveyFormat, n_objects: int) -> None:
    """Refuse at once a simulation its disk cannot hold (``--n`` in the billions would otherwise run for
    hours, its list of tasks growing in memory, before a full disk stopped it): each object is one FITS file
    per band, a header block and the float32 image padded to whole 2880-byte blocks."""
    from lexactum.runs import check_free_space

    block = 2880
    need = n_objects * fmt.n_bands * (block + -(-fmt.image_size ** 2 * 4 // block) * block)
    check_free_space(out, need, f"{n_objects} objects", "free some space, or choose another --out or a smaller --n")


def recorded_params(out: Path) -> dict | None:
    """The parameters ``out``'s manifest records (with :data:`MANIFEST_DEFAULTS` for those an older version did
    not record), or None where there is no readable manifest: then ``out`` is no simulation of ours."""
    manifest = out / MANIFEST
    if not manifest.is_file():  # nothing, or something never to open (a named pipe would block)
        return None
    try:
        previous = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    return {**MANIFEST_DEFAULTS, **previous} if isinstance(previous, dict) else None


def differing_params(previous: dict, params: dict) -> list[str]:
    """The keys of ``params`` whose recorded value in ``previous`` differs, in order; the rates per impostor kind
    left out when the impostor factor differs, as they follow from it (a message then names the cause only)."""
    differing = [k for k, v in params.items() if previous.get(k) != v]
    if "impostor_scale" in differing:
        differing = [k for k in differing if k != "impostor_rates"]
    return differing


def _prepare_output(out: Path, params: dict, overwrite: bool) -> None:
    """Refuse an ``out`` holding another dataset (unless ``overwrite``: then remove that dataset)."""
    from lexactum.errors import LexactumError

    check_output_folder(out)
    if not out.exists() or not any(out.iterdir()):
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LexactumError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from None
        return
    previous = recorded_params(out)
    if previous is None:  # never delete data this program did not write (a real challenge set, say)
        raise LexactumError(f"--out {out} is not empty and is not a simulation by lexactum (no {MANIFEST}): "
                            "choose an empty folder")
    differing = differing_params(previous, params)
    if not differing:
        return  # same parameters: resume (or re-check a finished run)
    if not overwrite:
        diff = ", ".join(f"{k} {previous.get(k)!r} (now {params[k]!r})" for k in differing)
        raise LexactumError(f"--out {out} holds a simulation with other parameters: {diff}; "
                            "pass --overwrite to replace it")
    import shutil

    for path in _outputs_of(out, previous):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def _outputs_of(out: Path, params: dict) -> list[Path]:
    """The files and folders a simulation with ``params`` (its manifest) wrote under ``out``: its object
    folders, its catalog, manifest, journal and report. Nothing else in ``out`` is ever removed."""
    from lexactum.data.surveys import get_survey
    from lexactum.errors import LexactumError

    try:
        fmt, layout = get_survey(params["survey"]), params["layout"]
        n, per_folder = int(params["n"]), int(params["per_folder"])
    except (KeyError, TypeError, ValueError, LexactumError):
        raise LexactumError(f"--out {out}: its {MANIFEST} does not say which files the earlier simulation "
                            "wrote; choose an empty folder") from None
    folders = [out / object_folder(fmt, layout, k * per_folder, per_folder) for k in range(-(-n // per_folder))]
    catalog = TRAINING_CATALOG if layout == "train" else fmt.test_catalog
    return folders + [out / catalog, out / IMPOSTOR_TRUTH, out / ROWS_JOURNAL, out / REPORT_PNG, out / MANIFEST]


#: Temporary files of a killed run: ``lexactum.runs.atomic_path``'s hidden
#: ``.<stem>.<machine>-<pid>-<8 hex>.part<suffix>``, its ``.<stem>.<8 hex>.part<suffix>`` and the
#: ``<name>.fits.part`` of earlier versions. Readers ignore them; a resumed run removes them.
_TEMPORARY = re.compile(rf"{TEMPORARY_NAME.pattern}|\..*\.[0-9a-f]{{8}}\.part(\.\w+)?|.*\.fits\.part")


def _remove_temporaries(out: Path, fmt: SurveyFormat, layout: str, n: int, per_folder: int) -> None:
    """Delete the temporary files a killed run left in ``out`` and its band folders."""
    folders = [out] + [out / object_folder(fmt, layout, k * per_folder, per_folder) / "Public" / band
                       for k in range(-(-n // per_folder)) for band in fmt.band_folders]
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            if _TEMPORARY.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)


def _read_journal(path: Path) -> dict[int, dict]:
    """Rows of objects finished by an earlier run (a line cut by a kill is ignored)."""
    rows = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
                rows[int(row["ID"])] = row
            except (ValueError, KeyError, TypeError):
                continue
    return rows
