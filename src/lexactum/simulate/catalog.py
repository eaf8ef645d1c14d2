"""Catalog quantities of simulated lenses, computed as the challenge did, and their comparison with the real keys.

``numb_pix_lensed_image`` counts the pixels of the noise-free lensed-source image (PSF-convolved) above one
sigma of the image noise, ``flux_lensed_image_in_sigma`` sums those pixels in units of sigma, and
``Einstein_area`` is pi theta_E^2 in steradians. Only the lensed source is rendered, which makes the
calibration check cheap. For the ground survey the first band (R, KiDS's detection band) defines sigma.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from lexactum.errors import DataError
from lexactum.simulate import scene
from lexactum.simulate.presets import SurveyPhysics

QUANTITIES = ("einstein_radius", "pixels", "flux")
LABELS = {"einstein_radius": "Einstein radius (\")", "pixels": "lensed pixels > 1 sigma",
          "flux": "lensed flux (sigma)"}
REPORT_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def quantities_from_image(source_image: np.ndarray, sigma: float) -> tuple[int, float]:
    """(pixels above 1 sigma, their flux in sigma) of a noise-free lensed-source image."""
    in_sigma = np.asarray(source_image, dtype=np.float64) / sigma
    bright = in_sigma > 1.0
    return int(bright.sum()), float(in_sigma[bright].sum())


def lens_quantities(physics: SurveyPhysics, fld: scene.Field) -> dict:
    """The training key's three quantities of one field (zero pixels and flux for a non-lens)."""
    band = physics.catalog_band
    if fld.is_lens:
        source = scene.noise_free_bands(physics, fld, lensed_only=True, bands=(band,))[0]
        pixels, flux = quantities_from_image(source, fld.noise_sigma[band])
    else:
        pixels, flux = 0, 0.0
    return {"Einstein_area": fld.einstein_area, "numb_pix_lensed_image": pixels,
            "flux_lensed_image_in_sigma": flux}


def catalog_row(physics: SurveyPhysics, fld: scene.Field, object_id: int, quantities: dict | None = None) -> dict:
    """Every column either layout's catalog may hold, for one object (``quantities``: lens_quantities)."""
    row = {"ID": int(object_id), "is_lens": int(fld.is_lens), "no_source": int(not fld.is_lens),
           "Einstein_radius": fld.theta_e, "z_lens": fld.z_lens, "z_source": fld.z_source if fld.is_lens else -1.0,
           "mag_lens": fld.mag_lens, "mag_source": fld.mag_source if fld.is_lens else -1.0,
           "noise_factor": fld.noise_sigma[0] / physics.noise_sigma[0],
           "n_masked": int(sum(len(p) for _, p in fld.masks))}
    row.update(quantities if quantities is not None else lens_quantities(physics, fld))
    if physics.randomise:  # only randomised fields have impostors (and the fixed rows stay as they were)
        row["impostors"] = "+".join(fld.impostor_kinds)
    return row


def read_training_key(path: str | Path) -> dict[str, np.ndarray]:
    """The lenses' quantities from a real ``classifications.csv`` (quoted header, CRLF and rounding accepted)."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        lenses = [r for r in rows if int(r["is_lens"]) == 1]
        if not lenses:
            raise ValueError("no row with is_lens = 1")
        area = np.array([float(r["Einstein_area"]) for r in lenses])
        return {"einstein_radius": np.sqrt(area / np.pi) * (180 / np.pi * 3600),
                "pixels": np.array([float(r["numb_pix_lensed_image"]) for r in lenses]),
                "flux": np.array([float(r["flux_lensed_image_in_sigma"]) for r in lenses])}
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path}: not a training key ({exc})") from None


def reference_quantiles(physics: SurveyPhysics) -> dict[str, np.ndarray]:
    """The real lenses' quantiles (0, 5, ..., 100 %) stored in the preset."""
    return {"einstein_radius": np.asarray(physics.einstein_radius_quantiles, dtype=float),
            "pixels": np.asarray(physics.pixels_quantiles, dtype=float),
            "flux": np.asarray(physics.flux_quantiles, dtype=float)}


def ks_against_quantiles(sample: np.ndarray, quantiles: np.ndarray) -> float:
    """KS statistic of ``sample`` against the CDF interpolated through stored quantiles (0..100 %).

    Atoms (repeated quantiles, e.g. the share of lenses with no pixel above 1 sigma) are kept as jumps.
    """
    sample = np.sort(np.asarray(sample, dtype=float))
    levels = np.linspace(0.0, 1.0, len(quantiles))
    points = np.unique(np.concatenate([sample, quantiles]))

    def reference_cdf(x):  # largest level whose quantile is <= x, linear in between
        upper = np.interp(x, quantiles, levels, left=0.0, right=1.0)
        at = np.searchsorted(quantiles, x, side="right")
        return np.where(at > 0, np.maximum(upper, levels[np.clip(at - 1, 0, None)]), 0.0)

    empirical_right = np.searchsorted(sample, points, side="right") / len(sample)
    empirical_left = np.searchsorted(sample, points, side="left") / len(sample)
    ref_right = reference_cdf(points)
    ref_left = np.concatenate([[0.0], ref_right[:-1]])
    return float(max(np.max(np.abs(empirical_right - ref_right)), np.max(np.abs(empirical_left - ref_left))))


def compare(simulated: dict[str, np.ndarray], physics: SurveyPhysics,
            real: dict[str, np.ndarray] | None = None) -> dict[str, dict]:
    """Per quantity: simulated and real quantiles (REPORT_QUANTILES) and the KS statistic.

    With ``real`` (a training key) the KS test is the two-sample one; otherwise against the stored quantiles.
    """
    from scipy.stats import ks_2samp

    reference = reference_quantiles(physics)
    levels = np.linspace(0.0, 1.0, len(reference["pixels"]))
    result = {}
    for q in QUANTITIES:
        if real is not None:
            ks = float(ks_2samp(simulated[q], real[q]).statistic)
            real_q = np.quantile(real[q], REPORT_QUANTILES)
        else:
            ks = ks_against_quantiles(simulated[q], reference[q])
            real_q = np.interp(REPORT_QUANTILES, levels, reference[q])
        result[q] = {"simulated": np.quantile(simulated[q], REPORT_QUANTILES).tolist(),
                     "real": real_q.tolist(), "ks": ks}
    return result


def format_comparison(survey: str, comparison: dict[str, dict], n: int) -> str:
    """A text table of :func:`compare`'s result."""
    head = " ".join(f"{int(q * 100):>8}%" for q in REPORT_QUANTILES)
    lines = [f"{survey}: {n} simulated lenses vs the real training key", f"{'':32} {head}      KS"]
    for q, entry in comparison.items():
        for which in ("simulated", "real"):
            values = " ".join(f"{v:9.3g}" for v in entry[which])
            ks = f"  {entry['ks']:.3f}" if which == "simulated" else ""
            lines.append(f"{LABELS[q] + ' ' + which:32} {values}{ks}")
    return "\n".join(lines)


def _lens_quantities_task(task: tuple) -> tuple[float, int, float]:
    physics, seed, index = task
    rng = np.random.default_rng(np.random.SeedSequence([seed, index, 7]))
    fld = scene.draw_field(physics, rng, is_lens=True)
    row = lens_quantities(physics, fld)
    return fld.theta_e, row["numb_pix_lensed_image"], row["flux_lensed_image_in_sigma"]


def simulated_lens_quantities(physics: SurveyPhysics, n: int, seed: int = 0, workers: int = 1,
                              progress: bool = False) -> dict[str, np.ndarray]:
    """The three quantities of ``n`` simulated lenses (lensed source rendered, no noise, no full image)."""
    from lexactum.progress import progress as progress_bar

    tasks = [(physics, seed, i) for i in range(n)]
    pool = None
    if workers > 1 and n > 1:
        pool = scene.worker_pool(physics, min(workers, n))
        results = pool.imap(_lens_quantities_task, tasks, chunksize=max(1, min(16, n // (4 * workers))))
    else:
        results = map(_lens_quantities_task, tasks)
    try:
        values = list(progress_bar(results, total=n, desc=f"{physics.name} lens quantities", unit="lens",
                                   enabled=None if progress else False))
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    array = np.asarray(values, dtype=float).reshape(n, 3)
    return dict(zip(QUANTITIES, array.T, strict=True))


def preview_png(dataset_root: str | Path, path: str | Path, per_class: int = 8) -> Path:
    """A PNG grid of the first ``per_class`` lenses (top) and non-lenses of a dataset (ZScale; ground in colour)."""
    from lexactum.data.layouts import ChallengeDataset
    from lexactum.data.normalise import normalise
    from lexactum.evaluation.plots import image_grid

    dataset = ChallengeDataset(dataset_root)
    chosen = [i for label in (1, 0) for i in np.flatnonzero(dataset.labels == label)[:per_class]]
    if not chosen:
        raise DataError(f"{dataset_root}: no object to show")
    images = np.stack([dataset.read(int(i)) for i in chosen])
    shown = normalise(images, "zscale", mask_value=dataset.survey.mask_value)
    titles = [f"{dataset.ids[i]} {'lens' if dataset.labels[i] == 1 else 'non-lens'}" for i in chosen]
    return image_grid(shown, path, titles=titles, ncols=per_class)
