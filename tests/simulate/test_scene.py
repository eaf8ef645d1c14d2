"""The physics of one field: lenstronomy agreement, Einstein rings, noise, masks, priors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lexactum.simulate import scene
from lexactum.simulate.presets import GROUND, SPACE, get_preset


def _image_model(physics, band, kwargs_numerics):
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    n, pix = scene.IMAGE_SIZE, physics.pixel_scale
    data = ImageData(np.zeros((n, n)), ra_at_xy_0=-(n - 1) / 2 * pix, dec_at_xy_0=-(n - 1) / 2 * pix,
                     transform_pix2angle=np.diag([pix, pix]))
    psf = PSF(psf_type="GAUSSIAN", fwhm=physics.psf_fwhm[band], pixel_size=pix, truncation=5)
    return ImageModel(data, psf, LensModel(["SIE", "SHEAR"]), LightModel(["SERSIC_ELLIPSE"]),
                      LightModel(["SERSIC_ELLIPSE"]), kwargs_numerics=kwargs_numerics)


def _lens_field(physics, rng, **source):
    """A lens with a single Sersic source (no clumps, no neighbours) for comparisons."""
    fld = scene.draw_field(physics, rng, is_lens=True)
    lens_light = fld.components[0]
    body = next(c for c in fld.components if c.lensed)
    body.kwargs.update(source)
    fld.components = [lens_light, body]
    return fld


@pytest.mark.parametrize("physics", [SPACE, GROUND], ids=["space", "ground"])
def test_noise_free_image_matches_lenstronomy_image_model(physics):
    rng = np.random.default_rng(3)
    fld = _lens_field(physics, rng)
    band = physics.n_bands - 1
    ours = scene.noise_free_bands(physics, fld, bands=(band,))[0]
    model = _image_model(physics, band, {"supersampling_factor": scene.SUPERSAMPLING,
                                         "supersampling_convolution": False})
    lens_light, body = fld.components
    amps = []
    for comp in (lens_light, body):  # lenstronomy's amp for the component's flux in this band
        kw = dict(comp.kwargs, amp=1.0)
        amps.append(dict(comp.kwargs, amp=comp.flux[band] / model.LensLightModel.total_flux([kw], norm=True)[0]))
    reference = model.image(fld.kwargs_lens, [amps[1]], [amps[0]])
    # lenstronomy convolves a Gaussian PSF with reflecting borders, we pad with zeros: compare the pixels
    # farther from the border than the kernel's half-width, and the borders loosely
    edge = scene.psf_kernel(physics.psf_fwhm[band], physics.pixel_scale).shape[0] // 2
    inner = (slice(edge, -edge),) * 2
    assert np.allclose(ours[inner], reference[inner], rtol=1e-6, atol=1e-9 * reference.max())
    assert np.abs(ours - reference).max() < 1e-3 * reference.max()


def test_large_einstein_radius_puts_source_flux_in_a_ring():
    rng = np.random.default_rng(5)
    fld = _lens_field(SPACE, rng, center_x=0.0, center_y=0.0, R_sersic=0.1, e1=0.0, e2=0.0)
    theta_e = 3.0
    fld.kwargs_lens[0].update(theta_E=theta_e, e1=0.0, e2=0.0, center_x=0.0, center_y=0.0)
    fld.kwargs_lens[1].update(gamma1=0.0, gamma2=0.0)
    source = scene.noise_free_bands(SPACE, fld, lensed_only=True)[0]
    y, x = (np.mgrid[:101, :101] - 50) * SPACE.pixel_scale
    r = np.hypot(x, y)
    in_ring = np.abs(r - theta_e) < 0.3
    assert source[in_ring].sum() > 0.9 * source.sum()
    profile = [source[np.abs(r - radius) < 0.05].mean() for radius in np.arange(0.5, 4.6, 0.1)]
    assert abs(np.arange(0.5, 4.6, 0.1)[int(np.argmax(profile))] - theta_e) <= 0.1 + 1e-9
    # the ring goes all around: every quadrant holds a fair share
    quadrants = [source[in_ring & (np.arctan2(y, x) // (np.pi / 2) == q)].sum() for q in (-2, -1, 0, 1)]
    assert min(quadrants) > 0.15 * sum(quadrants)


@pytest.mark.parametrize("name", ["space", "ground"])
def test_noise_on_empty_sky_matches_the_preset(name):
    physics = dataclasses.replace(get_preset(name), noisy_share=0.0, mask_share=0.0)
    rng = np.random.default_rng(11)
    residuals = [[] for _ in physics.bands]
    for _ in range(4):
        fld = scene.draw_field(physics, rng, is_lens=bool(rng.integers(2)))
        clean = scene.noise_free_bands(physics, fld)
        image = scene.render_field(physics, fld, np.random.default_rng(int(rng.integers(1 << 30))))
        for b in range(physics.n_bands):
            sky = clean[b] < 0.01 * physics.noise_sigma[b]
            residuals[b].append(image[b][sky] - clean[b][sky])
    for b, sigma in enumerate(physics.noise_sigma):
        measured = np.concatenate(residuals[b]).std()
        assert abs(measured / sigma - 1) < 0.05, (physics.bands[b], measured, sigma)


def test_preset_noise_matches_the_real_sample_files(samples):
    """The presets' sigma is the median sky noise of the real files (robust std, sources clipped)."""
    from astropy.io import fits
    from astropy.stats import sigma_clipped_stats

    root = samples / "mariogeiger_lensfinder-euclid" / "samples"
    for physics, pattern in ((SPACE, "space_based/*/imageEUC_VIS-*.fits"),) + tuple(
            (GROUND, f"ground_based/*/Band{b + 1}/*.fits") for b in range(4)):
        band = 0 if physics is SPACE else int(pattern.split("Band")[1][0]) - 1
        sigmas = []
        for path in sorted(root.glob(pattern)):
            data = fits.getdata(path).astype(np.float64)
            sigmas.append(sigma_clipped_stats(data[data != 100.0], sigma=3)[2])
        assert sigmas
        assert abs(np.median(sigmas) / physics.noise_sigma[band] - 1) < 0.1, (pattern, np.median(sigmas))


def test_ground_masks_are_exactly_the_mask_value_in_a_realistic_share():
    physics = dataclasses.replace(GROUND, mask_share=1.0)
    rng = np.random.default_rng(2)
    counts = []
    for _ in range(20):
        masks = scene.draw_masks(physics, rng)
        assert masks and all(0 <= b < 4 for b, _ in masks)
        counts.append(len(masks[0][1]))
    assert 3 <= np.median(counts) <= 400 and min(counts) >= 1
    fld = scene.draw_field(physics, np.random.default_rng(4), is_lens=False)
    image = scene.render_field(physics, fld, np.random.default_rng(4))
    band, pixels = fld.masks[0]
    assert np.all(image[band].flat[pixels] == 100.0)
    assert np.count_nonzero(image == 100.0) == sum(len(p) for _, p in fld.masks)
    share = np.mean([bool(scene.draw_masks(GROUND, rng)) for _ in range(400)])
    assert abs(share - GROUND.mask_share) < 0.08
    assert scene.draw_masks(SPACE, rng) == []


def test_ground_colours_red_lens_blue_source():
    rng = np.random.default_rng(8)
    fld = _lens_field(GROUND, rng)
    lens, source = fld.components
    order = {b: i for i, b in enumerate(GROUND.bands)}
    mag = lambda flux, band: -2.5 * np.log10(flux[order[band]]) + GROUND.zero_point[order[band]]  # noqa: E731
    assert mag(lens.flux, "G") - mag(lens.flux, "I") > 1.0  # g - i of a red early-type
    assert mag(source.flux, "G") - mag(source.flux, "I") < 0.7


def test_einstein_radii_follow_the_real_quantiles():
    rng = np.random.default_rng(0)
    draws = np.array([scene.sample_einstein_radius(SPACE, rng) for _ in range(4000)])
    real = np.asarray(SPACE.einstein_radius_quantiles)
    assert draws.min() >= real[0] and draws.max() <= real[-1]
    assert np.allclose(np.quantile(draws, [0.25, 0.5, 0.75]), real[[5, 10, 15]], rtol=0.08)
    # Einstein area in steradians, as in the keys: pi theta_E^2 (checked with astropy units)
    from astropy import units as u

    fld = scene.draw_field(SPACE, rng, is_lens=False)
    assert fld.einstein_area == pytest.approx((np.pi * (fld.theta_e * u.arcsec) ** 2).to_value(u.sr), rel=1e-12)


def test_zero_point_reproduces_the_quoted_depth():
    """A source at the quoted depth has the quoted S/N in the quoted aperture."""
    for physics in (SPACE, GROUND):
        pixels = np.pi * (physics.depth_aperture / 2 / physics.pixel_scale) ** 2
        for b in range(physics.n_bands):
            snr = physics.flux(physics.depth_mag[b], b) / (physics.noise_sigma[b] * np.sqrt(pixels))
            assert snr == pytest.approx(physics.depth_snr, rel=1e-9)


def test_unknown_survey_is_a_clear_error():
    from lexactum.errors import LexactumError

    with pytest.raises(LexactumError, match="unknown survey 'hubble'"):
        get_preset("hubble")


def test_sample_holds_quads_doubles_and_singly_imaged_sources():
    """Image multiplicity of the source centre (lenstronomy's analytical SIE+shear solver) over 300 lenses."""
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LensModel.Solver.lens_equation_solver import LensEquationSolver

    solver = LensEquationSolver(LensModel(["SIE", "SHEAR"]))
    rng = np.random.default_rng(21)
    counts = []
    for _ in range(300):
        fld = scene.draw_field(SPACE, rng, is_lens=True)
        source = next(c for c in fld.components if c.lensed).kwargs
        x, _ = solver.image_position_from_source(source["center_x"], source["center_y"], fld.kwargs_lens,
                                                 solver="analytical")
        counts.append(len(x))
    share = np.bincount(counts, minlength=5) / len(counts)
    assert share[1] >= 0.03 and share[2] >= 0.5 and share[4] >= 0.01, share
