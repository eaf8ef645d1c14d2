"""Benchmark of the lens simulator: cost per image, parallel scaling, and the full calibration check.

    python benchmarks/bench_simulate.py                      # everything (a few minutes on 2 cores)
    python benchmarks/bench_simulate.py --skip-calibration   # timings only

1. Cost per image (all bands) and per band-image of ``scene.render_field``, of a whole object as
   ``simulate_dataset`` writes it (render + FITS files + catalog quantities) with fixed and with
   domain-randomised conditions (target: randomised at most 1.5x fixed), and of plain lenstronomy with the
   same settings (``ImageModel`` per band with the same profiles, supersampling and Gaussian PSF).
2. Wall time of ``simulate_dataset`` with 1 and 2 workers (target speed-up >= 1.8 on an idle machine).
3. Calibration, fixed and randomised: Einstein radius, lensed pixels above 1 sigma and lensed flux of 2,000
   simulated lenses per survey against the real training keys (two-sample KS < 0.1 each), when ../shared
   is present; otherwise
   against the quantiles stored in the presets.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from lexactum.simulate import catalog, scene, simulate_dataset
from lexactum.simulate.presets import get_preset
from lexactum.simulate.writer import simulate_object

KEYS = Path(__file__).resolve().parents[2] / "shared" / "challenge_samples"
KEY_FILES = {"space": KEYS / "ClarkGuilty_LensFindingChallenge1Julia" / "classifications.csv",
             "ground": KEYS / "agoila_strong-lenses" / "classifications.csv"}


def plain_lenstronomy_image(physics, fld, rng) -> np.ndarray:
    """The same field with lenstronomy's ImageModel, one model and one call per band."""
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    n, pix = scene.IMAGE_SIZE, physics.pixel_scale
    lensed = [c for c in fld.components if c.lensed]
    unlensed = [c for c in fld.components if not c.lensed]
    bands = []
    for b in range(physics.n_bands):
        data = ImageData(np.zeros((n, n)), ra_at_xy_0=-(n - 1) / 2 * pix, dec_at_xy_0=-(n - 1) / 2 * pix,
                         transform_pix2angle=np.diag([pix, pix]))
        psf = PSF(psf_type="GAUSSIAN", fwhm=physics.psf_fwhm[b], pixel_size=pix, truncation=5)
        source, light = LightModel([c.model for c in lensed]), LightModel([c.model for c in unlensed])
        model = ImageModel(data, psf, LensModel(["SIE", "SHEAR"]), source, light,
                           kwargs_numerics={"supersampling_factor": scene.SUPERSAMPLING})

        image = model.image(fld.kwargs_lens, _amps(lensed, b), _amps(unlensed, b))
        bands.append(image + rng.normal(0.0, fld.noise_sigma[b], image.shape))
    return np.asarray(bands, dtype=np.float32)


def _amps(components, band: int) -> list[dict]:
    """lenstronomy kwargs giving each component its flux in ``band``."""
    from lenstronomy.LightModel.light_model import LightModel

    return [dict(c.kwargs, amp=c.flux[band] / LightModel([c.model]).total_flux(
        [dict(c.kwargs, amp=1.0)], norm=True)[0]) for c in components]


#: Passes over the same fields when timing one image; the fastest counts.
REPEATS = 3


def time_per_image(survey: str, n: int) -> dict:
    physics = get_preset(survey)
    fields = [scene.draw_field(physics, np.random.default_rng(i), is_lens=i % 2 == 0) for i in range(n)]
    scene.warm_up(physics)
    plain_lenstronomy_image(physics, fields[0], np.random.default_rng(0))
    out = {"render": np.inf, "plain lenstronomy": np.inf}
    for _ in range(REPEATS):  # interleaved, best of REPEATS: a busy machine slows one pass, not all
        for what, render in (("render", scene.render_field), ("plain lenstronomy", plain_lenstronomy_image)):
            start = time.perf_counter()
            for fld in fields:
                render(physics, fld, np.random.default_rng(0))
            out[what] = min(out[what], (time.perf_counter() - start) / n)
    out.update(time_whole_objects(survey, n))
    return out


def time_whole_objects(survey: str, n: int) -> dict:
    """Seconds per object as ``simulate_dataset`` makes one, fixed and domain-randomised (with impostors),
    interleaved and best of REPEATS. The same indices are drawn in both modes (randomised objects draw their
    conditions, then their field: lens or not as the fixed ones)."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for randomise in (False, True):
            simulate_object((tmp, survey, "test", 0, 0.5, 10_000, 0, 0.0, randomise, 1.0))  # warm-up
        for _ in range(REPEATS):
            for randomise, what in ((False, "whole object, fixed"), (True, "whole object, randomised")):
                start = time.perf_counter()
                for i in range(n):
                    simulate_object((tmp, survey, "test", 0, 0.5, 10_000, i, 0.0, randomise, 1.0))
                out[what] = min(out.get(what, np.inf), (time.perf_counter() - start) / n)
    return out


def scaling(survey: str, n: int) -> dict:
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            start = time.perf_counter()
            simulate_dataset(Path(tmp) / f"w{workers}", survey, n, workers=workers, progress=False)
            times[workers] = time.perf_counter() - start
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-images", type=int, default=40, help="images timed per survey")
    parser.add_argument("--n-scaling", type=int, default=200, help="objects per scaling run")
    parser.add_argument("--n-lenses", type=int, default=2000, help="lenses in the calibration check")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="workers for the calibration")
    parser.add_argument("--skip-calibration", action="store_true")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    for survey in ("space", "ground"):
        bands = get_preset(survey).n_bands
        timings = time_per_image(survey, args.n_images)
        for what, seconds in timings.items():
            print(f"{survey:6} {what:40} {seconds * 1000:8.1f} ms per image, "
                  f"{seconds * 1000 / bands:8.1f} ms per band-image")
        ratio = timings["whole object, randomised"] / timings["whole object, fixed"]
        print(f"{survey:6} randomised / fixed per object: {ratio:.2f}x (target <= 1.5x)")
    for survey in ("space", "ground"):
        times = scaling(survey, args.n_scaling)
        print(f"{survey:6} simulate_dataset n={args.n_scaling}: 1 worker {times[1]:.1f} s, 2 workers {times[2]:.1f} s, "
              f"speed-up {times[1] / times[2]:.2f}x")
    if args.skip_calibration:
        return
    for survey in ("space", "ground"):
        for randomise in (False, True):
            calibration(survey, randomise, args.n_lenses, args.workers)


def calibration(survey: str, randomise: bool, n_lenses: int, workers: int) -> None:
    """The three catalog quantities of ``n_lenses`` simulated lenses against the real key (KS < 0.1 each)."""
    physics = dataclasses.replace(get_preset(survey), randomise=randomise)
    start = time.perf_counter()
    simulated = catalog.simulated_lens_quantities(physics, n_lenses, seed=0, workers=workers)
    real = catalog.read_training_key(KEY_FILES[survey]) if KEY_FILES[survey].is_file() else None
    comparison = catalog.compare(simulated, physics, real)
    print(catalog.format_comparison(f"{survey} ({'randomised' if randomise else 'fixed'})", comparison, n_lenses))
    verdict = all(entry["ks"] < 0.1 for entry in comparison.values())
    print(f"KS < 0.1 for all three: {verdict} ({'two-sample vs the real key' if real else 'vs stored quantiles'}, "
          f"{time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
