"""Domain randomisation: the per-object instrument and population choices of one field.

Why: a network trained on simulations with one PSF, one noise level and one galaxy population learns those
choices instead of what a lens is, and fails on real images that differ in them. With randomisation on, each
object draws its choices from the survey's :class:`~lexactum.simulate.presets.RandomRanges`; off, every
object gets :func:`fixed_conditions`, the simulator's values before randomisation existed, and draws nothing
more from the random stream, so the same seed still writes the same bytes as before.

A :class:`Conditions` holds values (PSF, noise, sky, colours, shares) and, for choices the scene already drew
per object, the range the scene draws them from (Sersic indices, axis ratios, clumps, shear).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lexactum.simulate.presets import Range, SurveyPhysics


@dataclass(frozen=True)
class Conditions:
    """Everything about one field's instrument and population that randomisation may change."""

    psf_fwhm: tuple[float, ...]
    psf_beta: float | None
    """Moffat exponent; None: the preset's Gaussian PSF (lenstronomy's kernel)."""
    psf_e1: float
    psf_e2: float
    noise_factor: tuple[float, ...]
    """Per band, noise sigma over the preset's (before the 'noisy' share's factor)."""
    noise_correlation: float
    """Sigma in pixels of the Gaussian smoothing the noise; 0: white noise."""
    sky_offset: tuple[float, ...]
    """Per band, in units of that band's noise sigma."""
    sky_gradient: tuple[float, ...]
    """Per band, change across the cutout in units of sigma, along ``sky_angle``."""
    sky_angle: float
    lens_sersic_n: Range
    lens_axis_ratio: Range
    lens_size_factor: float
    source_size_factor: float
    source_sersic_n: Range
    source_axis_ratio: Range
    clumps: tuple[int, int]
    clump_share: Range
    clump_sigma: Range
    shear: Range
    lens_colour: tuple[float, ...]
    source_colour: tuple[float, ...]
    clump_colour: tuple[float, ...]
    """Clump colour relative to the source's."""
    neighbour_share: float
    star_share: float
    mask_share: float
    source_mag_shift: float
    """Added to the source magnitudes (the randomised simulator's own calibration)."""

    @property
    def gaussian_psf(self) -> bool:
        return self.psf_beta is None


def fixed_conditions(physics: SurveyPhysics) -> Conditions:
    """The simulator's fixed choices (randomisation off): its output for a seed stays what it always was."""
    n = physics.n_bands
    return Conditions(
        psf_fwhm=tuple(physics.psf_fwhm), psf_beta=None, psf_e1=0.0, psf_e2=0.0, noise_factor=(1.0,) * n,
        noise_correlation=0.0, sky_offset=(0.0,) * n, sky_gradient=(0.0,) * n, sky_angle=0.0,
        lens_sersic_n=(2.5, 5.0), lens_axis_ratio=(0.6, 1.0), lens_size_factor=1.0, source_size_factor=1.0,
        source_sersic_n=(0.7, 2.5), source_axis_ratio=(0.4, 1.0), clumps=(0, 3), clump_share=(0.1, 0.4),
        clump_sigma=(0.03, 0.08), shear=(0.0, 0.07), lens_colour=_padded(physics.lens_colour, n),
        source_colour=_padded(physics.source_colour, n), clump_colour=_padded(physics.clump_colour, n),
        neighbour_share=physics.neighbour_share, star_share=physics.star_share, mask_share=physics.mask_share,
        source_mag_shift=0.0)


def draw_conditions(physics: SurveyPhysics, rng: np.random.Generator) -> Conditions:
    """One object's choices drawn from ``physics.ranges`` (uniform; scale factors log-uniform)."""
    r, n = physics.ranges, physics.n_bands
    fixed = fixed_conditions(physics)
    e = rng.uniform(*r.psf_ellipticity)
    angle = rng.uniform(0.0, np.pi)
    return Conditions(
        psf_fwhm=tuple(float(rng.uniform(*r.psf_fwhm[b])) for b in range(n)),
        psf_beta=float(rng.uniform(*r.psf_beta)),
        psf_e1=float(e * np.cos(2 * angle)), psf_e2=float(e * np.sin(2 * angle)),
        noise_factor=tuple(_log_uniform(rng, r.noise_factor) for _ in range(n)),
        noise_correlation=float(rng.uniform(*r.noise_correlation)),
        sky_offset=tuple(float(rng.uniform(*r.sky_offset)) for _ in range(n)),
        sky_gradient=tuple(float(rng.uniform(*r.sky_gradient)) for _ in range(n)),
        sky_angle=float(rng.uniform(0.0, 2 * np.pi)),
        lens_sersic_n=r.lens_sersic_n, lens_axis_ratio=r.lens_axis_ratio,
        lens_size_factor=_log_uniform(rng, r.lens_size_factor),
        source_size_factor=_log_uniform(rng, r.source_size_factor),
        source_sersic_n=r.source_sersic_n, source_axis_ratio=r.source_axis_ratio, clumps=r.clumps,
        clump_share=r.clump_share, clump_sigma=r.clump_sigma, shear=r.shear,
        lens_colour=_jittered(rng, fixed.lens_colour, r.lens_colour_jitter),
        source_colour=_jittered(rng, fixed.source_colour, r.source_colour_jitter),
        clump_colour=_jittered(rng, fixed.clump_colour, r.clump_colour_jitter),
        neighbour_share=float(rng.uniform(*r.neighbour_share)), star_share=float(rng.uniform(*r.star_share)),
        mask_share=float(rng.uniform(*r.mask_share)), source_mag_shift=r.source_mag_shift)


def enabled(layout: str, randomise: bool | None = None) -> bool:
    """Whether a dataset of ``layout`` is randomised: as asked, else on for training sets only.

    Why: training sets should not teach the simulator's fixed choices; test sets keep the fixed ones so that
    the datasets already made (and the demo's) stay reproducible byte for byte.
    """
    return layout == "train" if randomise is None else bool(randomise)


def conditions(physics: SurveyPhysics, rng: np.random.Generator) -> Conditions:
    """Drawn conditions when ``physics.randomise``, else the fixed ones (nothing drawn from ``rng``)."""
    return draw_conditions(physics, rng) if physics.randomise else fixed_conditions(physics)


def _padded(colour: tuple[float, ...], n: int) -> tuple[float, ...]:
    return tuple(colour) + (0.0,) * (n - len(colour))


def _log_uniform(rng: np.random.Generator, bounds: Range) -> float:
    low, high = bounds
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _jittered(rng: np.random.Generator, colour: tuple[float, ...], jitter: Range) -> tuple[float, ...]:
    """The colour with each band after the first moved by a uniform draw from ``jitter`` (the first is 0)."""
    return (colour[0],) + tuple(float(c + rng.uniform(*jitter)) for c in colour[1:])


def psf_kernel(fwhm: float, beta: float, e1: float, e2: float, pixel_scale: float) -> np.ndarray:
    """Normalised elliptical Moffat kernel (lenstronomy's Moffat profile, 3x3 sub-pixels per pixel).

    The half-width covers 3 FWHM, where a beta 2.5 Moffat has left under 1% of its light.
    """
    from lenstronomy.LightModel.Profiles.moffat import Moffat
    from lenstronomy.Util.param_util import transform_e1e2_product_average

    half = int(np.ceil(3.0 * fwhm / pixel_scale))
    sub = 3
    axis = (np.arange((2 * half + 1) * sub) + 0.5) / sub - (half + 0.5)
    x, y = np.meshgrid(axis * pixel_scale, axis * pixel_scale)
    xe, ye = transform_e1e2_product_average(x, y, e1, e2, 0.0, 0.0)
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    kernel = Moffat().function(xe, ye, amp=1.0, alpha=alpha, beta=beta)
    kernel = kernel.reshape(2 * half + 1, sub, 2 * half + 1, sub).mean(axis=(1, 3))
    return kernel / kernel.sum()


def correlated_noise(rng: np.random.Generator, shape: tuple[int, ...], correlation: float) -> np.ndarray:
    """Unit-variance Gaussian noise, smoothed per band by a Gaussian of ``correlation`` pixels when > 0.

    The smoothed noise is divided by the kernel's root sum of squares, so that its sigma stays the drawn one.
    """
    noise = rng.standard_normal(shape)
    if correlation <= 0.0:
        return noise
    from scipy.ndimage import gaussian_filter

    half = int(np.ceil(4 * correlation))
    delta = np.zeros((2 * half + 1,) * 2)
    delta[half, half] = 1.0
    norm = np.sqrt(np.sum(gaussian_filter(delta, correlation, mode="constant", truncate=4.0) ** 2))
    smoothed = [gaussian_filter(band, correlation, mode="wrap", truncate=4.0) for band in noise]
    return np.asarray(smoothed) / norm


def sky_residual(conditions: Conditions, sigma: np.ndarray, size: int) -> np.ndarray:
    """(C, size, size) sky residual: per band a constant plus a linear gradient, in flux units."""
    coords = (np.arange(size) - (size - 1) / 2.0) / size  # -0.5..0.5 across the cutout
    x, y = np.meshgrid(coords, coords)
    along = x * np.cos(conditions.sky_angle) + y * np.sin(conditions.sky_angle)
    offset = np.asarray(conditions.sky_offset)[:, None, None]
    gradient = np.asarray(conditions.sky_gradient)[:, None, None]
    return (offset + gradient * along[None]) * np.asarray(sigma).reshape(-1, 1, 1)
