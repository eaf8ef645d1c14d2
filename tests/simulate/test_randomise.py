"""Domain randomisation: each knob stays in its documented range and varies; off keeps the old bytes."""

from __future__ import annotations

import dataclasses
import filecmp
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from lexactum.simulate import randomise, scene, simulate_dataset, writer
from lexactum.simulate.presets import GROUND, SPACE, RandomRanges

N_FIELDS = 300
DOCS = Path(__file__).resolve().parents[2] / "docs" / "simulation.md"


@pytest.fixture(scope="module", params=[SPACE, GROUND], ids=["space", "ground"])
def drawn(request):
    """(physics, fields) of N_FIELDS randomised lenses drawn with a seeded rng (nothing rendered)."""
    physics = dataclasses.replace(request.param, randomise=True)
    rng = np.random.default_rng(12)
    return physics, [scene.draw_field(physics, rng, is_lens=True) for _ in range(N_FIELDS)]


def _q(kwargs):
    from lenstronomy.Util.param_util import ellipticity2phi_q

    return ellipticity2phi_q(kwargs["e1"], kwargs["e2"])[1]


def _colour(physics, fluxes):
    """AB colour of each band after the first against the first, from a component's fluxes."""
    zp = physics.zero_point
    mags = [zp[b] - 2.5 * np.log10(f) for b, f in enumerate(fluxes)]
    return [m - mags[0] for m in mags[1:]]


def _body(fld):
    return next(c for c in fld.components if c.lensed and c.model == "SERSIC_ELLIPSE")


def _clumps(fld):
    return [c for c in fld.components if c.lensed and c.model == "GAUSSIAN"]


def _clump_share(fld):
    clumps = sum(c.flux[0] for c in _clumps(fld))
    return clumps / (clumps + _body(fld).flux[0]) if clumps else None


#: knob -> (values of one field, the range it must stay in); values are measured on the drawn field itself
#: (profiles, fluxes, lens kwargs) where the field holds them, else read from its conditions.
KNOBS = {
    "psf_fwhm": lambda p, f: [(v, p.ranges.psf_fwhm[b]) for b, v in enumerate(f.conditions.psf_fwhm)],
    "psf_beta": lambda p, f: [(f.conditions.psf_beta, p.ranges.psf_beta)],
    "psf_ellipticity": lambda p, f: [(np.hypot(f.conditions.psf_e1, f.conditions.psf_e2), p.ranges.psf_ellipticity)],
    "noise_factor": lambda p, f: [(v, p.ranges.noise_factor) for v in f.conditions.noise_factor],
    "noise_correlation": lambda p, f: [(f.conditions.noise_correlation, p.ranges.noise_correlation)],
    "sky_offset": lambda p, f: [(v, p.ranges.sky_offset) for v in f.conditions.sky_offset],
    "sky_gradient": lambda p, f: [(v, p.ranges.sky_gradient) for v in f.conditions.sky_gradient],
    "lens_sersic_n": lambda p, f: [(f.components[0].kwargs["n_sersic"], p.ranges.lens_sersic_n)],
    "lens_axis_ratio": lambda p, f: [(_q(f.components[0].kwargs), p.ranges.lens_axis_ratio)],
    "lens_size_factor": lambda p, f: [(f.conditions.lens_size_factor, p.ranges.lens_size_factor)],
    "source_size_factor": lambda p, f: [(f.conditions.source_size_factor, p.ranges.source_size_factor)],
    "source_sersic_n": lambda p, f: [(_body(f).kwargs["n_sersic"], p.ranges.source_sersic_n)],
    "source_axis_ratio": lambda p, f: [(_q(_body(f).kwargs), p.ranges.source_axis_ratio)],
    "clumps": lambda p, f: [(len(_clumps(f)), p.ranges.clumps)],
    "clump_share": lambda p, f: [(_clump_share(f), p.ranges.clump_share)] if _clumps(f) else [],
    "clump_sigma": lambda p, f: [(c.kwargs["sigma"], p.ranges.clump_sigma) for c in _clumps(f)],
    "shear": lambda p, f: [(np.hypot(f.kwargs_lens[1]["gamma1"], f.kwargs_lens[1]["gamma2"]), p.ranges.shear)],
    "lens_colour_jitter": lambda p, f: [(c - c0, p.ranges.lens_colour_jitter) for c, c0 in
                                        zip(_colour(p, f.components[0].flux), p.lens_colour[1:], strict=True)],
    "source_colour_jitter": lambda p, f: [(c - c0, p.ranges.source_colour_jitter) for c, c0 in
                                          zip(_colour(p, _body(f).flux), p.source_colour[1:], strict=True)],
    "clump_colour_jitter": lambda p, f: [
        (c - s - c0, p.ranges.clump_colour_jitter) for clump in _clumps(f)[:1]
        for c, s, c0 in zip(_colour(p, clump.flux), _colour(p, _body(f).flux), p.clump_colour[1:], strict=True)],
    "neighbour_share": lambda p, f: [(f.conditions.neighbour_share, p.ranges.neighbour_share)],
    "star_share": lambda p, f: [(f.conditions.star_share, p.ranges.star_share)],
    "mask_share": lambda p, f: [(f.conditions.mask_share, p.ranges.mask_share)],
}


def test_every_knob_has_a_test_a_source_and_a_documented_range():
    knobs = [f.name for f in dataclasses.fields(RandomRanges) if f.name not in ("sources", "source_mag_shift")]
    assert sorted(knobs) == sorted(KNOBS)
    docs = DOCS.read_text()
    for physics in (SPACE, GROUND):
        assert sorted(dict(physics.ranges.sources)) == sorted(knobs), physics.name
        for knob in knobs:
            assert physics.ranges.source(knob).strip()
            assert f"`{knob}`" in docs, knob


@pytest.mark.parametrize("knob", sorted(KNOBS))
def test_each_knob_stays_in_its_range_and_varies(drawn, knob):
    physics, fields = drawn
    pairs = [pair for fld in fields for pair in KNOBS[knob](physics, fld)]
    values = np.array([v for v, _ in pairs], dtype=float)
    lows = np.array([r[0] for _, r in pairs], dtype=float)
    highs = np.array([r[1] for _, r in pairs], dtype=float)
    tol = 1e-9 * np.maximum(1.0, np.abs(highs))
    if not pairs:  # a knob of bands after the first, in a one-band survey
        assert physics.n_bands == 1
        return
    assert np.all(values >= lows - tol) and np.all(values <= highs + tol), (values.min(), values.max())
    if np.all(lows == highs):  # not randomised in this survey (one band, no masks): fixed there
        assert np.ptp(values) < 1e-9
        return
    spread = (values - lows) / (highs - lows)
    assert np.ptp(spread) > 0.5, f"{knob} barely varies: {values.min()}..{values.max()}"


@pytest.mark.parametrize("change, message", [
    ({"shear": (0.1, 0.0)}, "randomisation range shear = (0.1, 0.0): need low <= high"),
    ({"noise_factor": (0.0, 1.2)}, "randomisation range noise_factor = (0.0, 1.2): need low <= high and low > 0"),
    ({"psf_fwhm": ((0.2, 0.1),)}, "randomisation range psf_fwhm = (0.2, 0.1)")])
def test_a_bad_range_is_one_clear_error(change, message):
    from lexactum.errors import LexactumError

    with pytest.raises(LexactumError, match=re.escape(message)):
        dataclasses.replace(SPACE.ranges, **change)


def test_einstein_radius_keeps_the_calibrated_quantiles_and_varies(drawn):
    physics, fields = drawn
    radii = np.array([f.theta_e for f in fields])
    real = np.asarray(physics.einstein_radius_quantiles)
    assert radii.min() >= real[0] and radii.max() <= real[-1]
    assert abs(np.median(radii) / real[10] - 1) < 0.2


def test_off_draws_the_fixed_conditions():
    rng = np.random.default_rng(1)
    for physics in (SPACE, GROUND):
        assert not physics.randomise
        fld = scene.draw_field(physics, rng, is_lens=True)
        assert fld.conditions == randomise.fixed_conditions(physics)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


#: sha256 of the files (not hidden) of 4-object datasets written by the simulator before randomisation
#: existed (commit d23a282): with randomisation off the same seed must still write exactly these bytes.
BEFORE_RANDOMISATION = {
    ("space", "train", 5): "5f48f2ea928b7e2739b66f9e748f82cfd596e45d263f16dfe2247e25897f4e28",
    ("ground", "train", 6): "1ece7f88ac62821d18becb0dc7880f992c9411d116ca692885f6be7ce3b14bb2",
    ("ground", "test", 7): "363a7c1ab57e7d88d68f3f0cb1f3f20eb848a464703623dddaff66acf8d709ea",
}


@pytest.mark.parametrize("survey,layout,seed", sorted(BEFORE_RANDOMISATION))
def test_off_writes_the_same_bytes_as_before_randomisation(tmp_path, survey, layout, seed):
    kwargs = {"randomise": False} if layout == "train" else {}  # test sets are off by default
    root = simulate_dataset(tmp_path / "sim", survey, 4, layout=layout, seed=seed, lens_fraction=0.5, workers=1,
                            progress=False, **kwargs)
    assert _digest(root) == BEFORE_RANDOMISATION[(survey, layout, seed)]
    assert json.loads((root / writer.MANIFEST).read_text())["randomise"] is False


def test_randomised_bytes_do_not_depend_on_workers(tmp_path):
    one = simulate_dataset(tmp_path / "one", "ground", 6, layout="test", seed=2, lens_fraction=0.5, workers=1,
                           progress=False, randomise=True)
    two = simulate_dataset(tmp_path / "two", "ground", 6, layout="test", seed=2, lens_fraction=0.5, workers=2,
                           progress=False, randomise=True)
    files = sorted(str(p.relative_to(one)) for p in one.rglob("*") if p.is_file())
    _, mismatch, errors = filecmp.cmpfiles(one, two, files, shallow=False)
    assert not mismatch and not errors
    assert json.loads((one / writer.MANIFEST).read_text())["randomise"] is True
    off = simulate_dataset(tmp_path / "off", "ground", 6, layout="test", seed=2, lens_fraction=0.5, workers=1,
                           progress=False)
    assert _digest(off) != _digest(one)  # randomisation changed the images


def test_moffat_psf_has_the_drawn_width_and_shape():
    pixel = 0.02  # fine pixels: the half-maximum area measures the FWHM well
    for beta in (2.5, 8.0):
        kernel = randomise.psf_kernel(0.8, beta, 0.0, 0.0, pixel)
        assert kernel.sum() == pytest.approx(1.0) and kernel.shape[0] % 2 == 1
        area = np.count_nonzero(kernel >= kernel.max() / 2) * pixel**2
        assert np.sqrt(area / np.pi) * 2 == pytest.approx(0.8, rel=0.03)
    round_, flat = (randomise.psf_kernel(0.8, 3.0, e, 0.0, pixel) for e in (0.0, 0.1))
    y, x = np.indices(flat.shape) - flat.shape[0] // 2
    ratio = lambda k: (k * x**2).sum() / (k * y**2).sum()  # noqa: E731
    assert ratio(round_) == pytest.approx(1.0, rel=1e-6) and abs(ratio(flat) - 1) > 0.2


def test_noise_correlation_and_sky_residuals_are_rendered():
    physics = dataclasses.replace(GROUND, randomise=True, mask_share=0.0)
    fld = scene.draw_field(physics, np.random.default_rng(3), is_lens=False)
    fld.components, fld.masks = [], []
    base = dict(noise_correlation=0.0, sky_offset=(0.0,) * 4, sky_gradient=(0.0,) * 4)
    cases = {"white": base, "correlated": dict(base, noise_correlation=0.8),
             "sky": dict(base, sky_offset=(0.2, -0.1, 0.0, 0.1), sky_gradient=(0.3, 0.0, 0.0, 0.0), sky_angle=0.0)}
    images = {}
    for name, change in cases.items():
        fld.conditions = dataclasses.replace(fld.conditions, **change)
        images[name] = scene.render_field(physics, fld, np.random.default_rng(5)).astype(float)
    sigma = np.asarray(fld.noise_sigma)
    for name in ("white", "correlated"):  # the drawn sigma, whatever the correlation
        assert np.allclose(images[name].std(axis=(1, 2)) / sigma, 1.0, atol=0.05), name
    lag = lambda im: np.mean([np.corrcoef(b[:, 1:].ravel(), b[:, :-1].ravel())[0, 1] for b in im])  # noqa: E731
    assert abs(lag(images["white"])) < 0.05 and lag(images["correlated"]) > 0.4
    sky = (images["sky"] - images["white"]) / sigma[:, None, None]
    assert np.allclose(sky.mean(axis=(1, 2)), [0.2, -0.1, 0.0, 0.1], atol=1e-3)
    left_right = sky[0, :, -10:].mean() - sky[0, :, :10].mean()
    assert left_right == pytest.approx(0.3 * 91 / 101, rel=0.02)


@pytest.mark.parametrize("argv, randomised", [
    (["--layout", "train"], True), (["--layout", "train", "--no-randomise"], False),
    (["--layout", "test"], False), (["--layout", "test", "--randomise"], True)])
def test_cli_randomises_training_sets_by_default(tmp_path, capsys, argv, randomised):
    from lexactum.cli import main

    out = tmp_path / "sim"
    assert main(["simulate", "--survey", "space", "--n", "2", "--out", str(out), "--workers", "1"] + argv) == 0
    assert json.loads((out / writer.MANIFEST).read_text())["randomise"] is randomised
    said = "randomised" if randomised else "fixed instrument and population"
    assert f"layout, {said}) to {out}" in capsys.readouterr().out


def test_a_run_resumes_only_with_the_same_randomisation(tmp_path):
    from lexactum.errors import LexactumError

    out = simulate_dataset(tmp_path / "sim", "space", 2, layout="train", workers=1, progress=False)
    with pytest.raises(LexactumError, match="other parameters: randomise True \\(now False\\)"):
        simulate_dataset(out, "space", 2, layout="train", workers=1, progress=False, randomise=False)
    # a manifest written before randomisation existed (no such key) resumes as a run without it
    off = simulate_dataset(tmp_path / "off", "space", 2, layout="test", workers=1, progress=False)
    manifest = json.loads((off / writer.MANIFEST).read_text())
    del manifest["randomise"]
    (off / writer.MANIFEST).write_text(json.dumps(manifest))
    before = _digest(off)
    simulate_dataset(off, "space", 2, layout="test", workers=1, progress=False)
    assert _digest(off) == before
    with pytest.raises(LexactumError, match="randomise False \\(now True\\)"):
        simulate_dataset(off, "space", 2, layout="test", workers=1, progress=False, randomise=True)


def _sky_sigma(image: np.ndarray) -> float:
    """The robust sky noise of one band, as measured on the real files (sources and masks clipped)."""
    from astropy.stats import sigma_clipped_stats

    return float(sigma_clipped_stats(image[image != 100.0], sigma=3)[2])


@pytest.mark.parametrize("physics, pattern", [
    (SPACE, "space_based/*/imageEUC_VIS-*.fits"), *((GROUND, f"ground_based/*/Band{b + 1}/*.fits") for b in range(4))])
def test_randomised_noise_stays_within_a_quarter_of_the_real_files(samples, physics, pattern):
    """The issue's calibration bound: the median sky noise of randomised images (noise factor, correlation,
    sky residuals and the noisy share all on) within 25% of the real files' median, measured the same way."""
    from astropy.io import fits

    band = 0 if physics is SPACE else int(pattern.split("Band")[1][0]) - 1
    real = np.median([_sky_sigma(fits.getdata(p).astype(np.float64))
                      for p in sorted((samples / "mariogeiger_lensfinder-euclid" / "samples").glob(pattern))])
    randomised = dataclasses.replace(physics, randomise=True)
    rng = np.random.default_rng(21)
    sigmas = []
    for _ in range(40):
        fld = scene.draw_field(randomised, rng, is_lens=bool(rng.integers(2)))
        sigmas.append(_sky_sigma(scene.render_field(randomised, fld, rng)[band].astype(np.float64)))
    assert abs(np.median(sigmas) / real - 1) < 0.25, (pattern, np.median(sigmas), real)
    assert np.ptp(sigmas) > 0.1 * real  # and the noise level does vary from image to image
