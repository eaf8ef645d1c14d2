"""One simulated field: mass, lens light, lensed source, neighbours, PSF, noise and masks (lenstronomy).

A field is drawn from the survey's priors as a :class:`Field` (plain numbers, no randomness left), then
rendered. Its instrument and population choices (PSF, noise, sky, profile ranges, colours, shares) come from
:mod:`lexactum.simulate.randomise`: fixed, or drawn per object when the preset's ``randomise`` is set.
Each kind of object (lens galaxy, source, its clumps, each neighbour) is rendered once, with
unit flux, on a supersampled grid (lenstronomy ``LensModel`` ray shooting + ``LightModel`` profiles); the
bands are sums of those with the object's flux in that band, convolved with the band's PSF. This is what
lenstronomy's ``ImageModel`` computes with regular supersampling, but the ray shooting and profiles are done
once for all bands instead of once per band.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np

from lexactum.simulate import impostors, randomise
from lexactum.simulate.presets import SurveyPhysics

#: Sub-pixels per pixel side when integrating the light over pixels.
SUPERSAMPLING = 2
IMAGE_SIZE = 101
ARCSEC2_PER_SR = (180.0 / np.pi * 3600.0) ** 2


@dataclass
class Component:
    """One light profile: a lenstronomy model name, its keyword arguments (unit flux) and flux per band."""

    model: str
    kwargs: dict
    flux: tuple[float, ...]
    lensed: bool = False


@dataclass
class Field:
    """Everything needed to render one field; drawing it consumed all the randomness but the noise."""

    is_lens: bool
    theta_e: float
    """Einstein radius (arcsec) of the mass, present in non-lenses too (no source behind)."""
    kwargs_lens: list[dict]
    components: list[Component]
    noise_sigma: tuple[float, ...]
    z_lens: float
    z_source: float
    mag_lens: float
    mag_source: float
    masks: list[tuple[int, np.ndarray]] = field(default_factory=list)
    """(band, flat pixel indices) set to the survey's mask value."""
    conditions: randomise.Conditions | None = None
    """The instrument and population choices it was drawn with (None: the fixed ones)."""
    artefacts: list = field(default_factory=list)
    """Impostor light and detector artefacts painted on the rendered image (:mod:`.impostors`)."""
    impostor_kinds: list[str] = field(default_factory=list)
    """The impostor kinds a non-lens was dressed with (the dataset's impostors.csv lists them)."""

    @property
    def einstein_area(self) -> float:
        """Area inside the critical curve in steradians, as in the training keys."""
        return float(np.pi * self.theta_e**2 / ARCSEC2_PER_SR)


# ----------------------------------------------------------------------------------------------- priors

def sample_einstein_radius(physics: SurveyPhysics, rng: np.random.Generator) -> float:
    """Inverse-CDF draw from the real lenses' Einstein radius quantiles (log-linear between them)."""
    quantiles = np.asarray(physics.einstein_radius_quantiles)
    levels = np.linspace(0.0, 1.0, len(quantiles))
    return float(np.exp(np.interp(rng.random(), levels, np.log(quantiles))))


def ellipticity(rng: np.random.Generator, q_range: tuple[float, float], phi: float | None = None):
    """(e1, e2, phi) of a random axis ratio in ``q_range`` and angle ``phi`` (random if None)."""
    from lenstronomy.Util.param_util import phi_q2_ellipticity

    q = rng.uniform(*q_range)
    phi = rng.uniform(0.0, np.pi) if phi is None else phi
    e1, e2 = phi_q2_ellipticity(phi, q)
    return float(e1), float(e2), float(phi)


def band_fluxes(physics: SurveyPhysics, mag: float, colour: tuple[float, ...]) -> tuple[float, ...]:
    """Flux per band of an object of magnitude ``mag`` in the first band with ``colour`` offsets."""
    offsets = tuple(colour) + (0.0,) * (physics.n_bands - len(colour))
    return tuple(physics.flux(mag + offsets[b], b) for b in range(physics.n_bands))


def draw_mass(physics: SurveyPhysics, rng: np.random.Generator,
              cond: randomise.Conditions) -> tuple[float, list[dict], float]:
    """SIE + external shear around the centre: (theta_E, lenstronomy kwargs, position angle)."""
    theta_e = sample_einstein_radius(physics, rng)
    e1, e2, phi = ellipticity(rng, (0.55, 0.98))
    centre = rng.normal(0.0, 0.5 * physics.pixel_scale, 2)
    gamma = rng.uniform(*cond.shear)
    gphi = rng.uniform(0.0, np.pi)
    kwargs = [
        {"theta_E": theta_e, "e1": e1, "e2": e2, "center_x": float(centre[0]), "center_y": float(centre[1])},
        {"gamma1": float(gamma * np.cos(2 * gphi)), "gamma2": float(gamma * np.sin(2 * gphi)),
         "ra_0": 0.0, "dec_0": 0.0},
    ]
    return theta_e, kwargs, phi


def draw_lens_light(physics: SurveyPhysics, rng: np.random.Generator, theta_e: float, mass: dict,
                    mass_phi: float, cond: randomise.Conditions) -> tuple[Component, float]:
    """Elliptical Sersic roughly aligned with the mass; bigger Einstein radius, brighter and larger galaxy."""
    mag = physics.lens_mag_small - 3.0 * np.log10(1.0 + theta_e) + rng.normal(0.0, 0.7)
    mag = float(np.clip(mag, physics.lens_mag_small - 5.0, physics.lens_mag_small + 2.0))
    radius = float(10 ** rng.normal(np.log10(0.5 + 0.4 * theta_e), 0.15)) * cond.lens_size_factor
    e1, e2, _ = ellipticity(rng, cond.lens_axis_ratio, phi=mass_phi + rng.normal(0.0, np.radians(10.0)))
    kwargs = {"R_sersic": radius, "n_sersic": float(rng.uniform(*cond.lens_sersic_n)), "e1": e1, "e2": e2,
              "center_x": mass["center_x"], "center_y": mass["center_y"]}
    return Component("SERSIC_ELLIPSE", kwargs, band_fluxes(physics, mag, cond.lens_colour)), mag


def source_magnitude(physics: SurveyPhysics, u: float) -> float:
    """Magnitude at quantile ``u`` of a normal prior truncated at the faint end (``source_mag_faint``)."""
    from scipy.special import ndtr, ndtri

    mean, sd = physics.source_mag_mean, physics.source_mag_sd
    return float(mean + sd * ndtri(u * ndtr((physics.source_mag_faint - mean) / sd)))


def draw_source(physics: SurveyPhysics, rng: np.random.Generator, theta_e: float,
                cond: randomise.Conditions) -> tuple[list[Component], float]:
    """A Sersic galaxy plus star-forming clumps, placed to give arcs, rings, doubles, quads or weak arcs."""
    mag = source_magnitude(physics, rng.random()) + cond.source_mag_shift
    radius = float(10 ** rng.normal(np.log10(physics.source_radius_median), physics.source_radius_sd_dex))
    radius *= cond.source_size_factor
    if rng.random() < physics.barely_lensed_share:
        offset = theta_e * rng.uniform(1.3, 3.0) + radius  # outside the caustics: one weakly distorted image
    else:
        offset = theta_e * physics.source_offset_max * np.sqrt(rng.random())
    angle = rng.uniform(0.0, 2 * np.pi)
    cx, cy = float(offset * np.cos(angle)), float(offset * np.sin(angle))
    n_clumps = int(rng.integers(cond.clumps[0], cond.clumps[1] + 1))
    clump_share = rng.uniform(*cond.clump_share) if n_clumps else 0.0
    body_fluxes = band_fluxes(physics, mag, cond.source_colour)
    e1, e2, _ = ellipticity(rng, cond.source_axis_ratio)
    components = [Component(
        "SERSIC_ELLIPSE",
        {"R_sersic": radius, "n_sersic": float(rng.uniform(*cond.source_sersic_n)), "e1": e1, "e2": e2,
         "center_x": cx, "center_y": cy},
        tuple(f * (1.0 - clump_share) for f in body_fluxes), lensed=True)]
    clump_colour = tuple(s + c for s, c in zip(cond.source_colour, cond.clump_colour, strict=True))
    clump_fluxes = band_fluxes(physics, mag, clump_colour)
    for _ in range(n_clumps):
        r, a = radius * rng.uniform(0.0, 1.0), rng.uniform(0.0, 2 * np.pi)
        components.append(Component(
            "GAUSSIAN",
            {"sigma": float(rng.uniform(*cond.clump_sigma)), "center_x": cx + r * np.cos(a),
             "center_y": cy + r * np.sin(a)},
            tuple(f * clump_share / n_clumps for f in clump_fluxes), lensed=True))
    return components, mag


def draw_neighbours(physics: SurveyPhysics, rng: np.random.Generator,
                    cond: randomise.Conditions) -> list[Component]:
    """Unlensed galaxies and stars elsewhere in the field, in a share of fields."""
    half = IMAGE_SIZE * physics.pixel_scale / 2.0
    components = []

    def position():
        r = rng.uniform(1.5, half * 1.2)
        a = rng.uniform(0.0, 2 * np.pi)
        return float(r * np.cos(a)), float(r * np.sin(a))

    if rng.random() < cond.neighbour_share:
        for _ in range(int(rng.integers(1, 4))):
            x, y = position()
            e1, e2, _ = ellipticity(rng, (0.3, 1.0))
            colour = tuple(rng.uniform(0.0, 1.0) * (lc - sc) + sc
                           for lc, sc in zip(physics.lens_colour, physics.source_colour, strict=True))
            kwargs = {"R_sersic": float(10 ** rng.uniform(-0.7, 0.1)), "n_sersic": float(rng.uniform(0.8, 4.0)),
                      "e1": e1, "e2": e2, "center_x": x, "center_y": y}
            fluxes = band_fluxes(physics, rng.uniform(19.5, 24.5), colour)
            components.append(Component("SERSIC_ELLIPSE", kwargs, fluxes))
    if rng.random() < cond.star_share:
        for _ in range(int(rng.integers(1, 3))):
            x, y = position()
            colour = tuple(rng.uniform(-0.3, 1.0) * c for c in physics.lens_colour)
            kwargs = {"sigma": 0.25 * physics.pixel_scale, "center_x": x, "center_y": y}
            components.append(Component("GAUSSIAN", kwargs, band_fluxes(physics, rng.uniform(18.0, 23.5), colour)))
    return components


def draw_masks(physics: SurveyPhysics, rng: np.random.Generator,
               share: float | None = None) -> list[tuple[int, np.ndarray]]:
    """Masked pixels like the real ground images: a few lines (trails, bleed columns) and blobs per band.

    ``share``: the chance of a field with masks (default: the preset's).
    """
    share = physics.mask_share if share is None else share
    if physics.mask_value is None or rng.random() >= share:
        return []
    n = IMAGE_SIZE
    yy, xx = np.mgrid[:n, :n]
    mask = np.zeros((n, n), dtype=bool)
    for _ in range(int(rng.integers(1, 4))):
        y0, x0 = rng.uniform(0, n, 2)
        if rng.random() < 0.5:
            angle = rng.choice([0.0, np.pi / 2]) if rng.random() < 0.5 else rng.uniform(0, np.pi)
            length, width = rng.uniform(5, 60), rng.uniform(0.5, 1.5)
            along = (xx - x0) * np.cos(angle) + (yy - y0) * np.sin(angle)
            across = -(xx - x0) * np.sin(angle) + (yy - y0) * np.cos(angle)
            mask |= (np.abs(along) <= length / 2) & (np.abs(across) <= width)
        else:
            mask |= (xx - x0) ** 2 + (yy - y0) ** 2 <= rng.uniform(1.0, 6.0) ** 2
    pixels = np.flatnonzero(mask)
    bands = [b for b in range(physics.n_bands) if rng.random() < 0.5] or [int(rng.integers(physics.n_bands))]
    return [(b, pixels) for b in bands]


def draw_field(physics: SurveyPhysics, rng: np.random.Generator, is_lens: bool) -> Field:
    """Draw one field from the priors; non-lenses are the same kinds of fields without a lensed source.

    The conditions (instrument, population ranges) come first: drawn per object when ``physics.randomise``,
    otherwise fixed, and then nothing else is drawn, so a seed gives the fields it gave before randomisation.
    """
    cond = randomise.conditions(physics, rng)
    theta_e, kwargs_lens, phi = draw_mass(physics, rng, cond)
    lens_light, mag_lens = draw_lens_light(physics, rng, theta_e, kwargs_lens[0], phi, cond)
    source, mag_source = draw_source(physics, rng, theta_e, cond)  # drawn for non-lenses too: same rng stream
    z_lens = float(rng.uniform(0.2, 0.9))
    z_source = float(z_lens + rng.uniform(0.5, 2.5))
    neighbours = draw_neighbours(physics, rng, cond)
    noisy = rng.random() < physics.noisy_share
    factor = float(rng.uniform(*physics.noisy_range)) if noisy else 1.0
    masks = draw_masks(physics, rng, cond.mask_share)
    components = [lens_light] + (source if is_lens else []) + neighbours
    noise_sigma = tuple(s * factor * f for s, f in zip(physics.noise_sigma, cond.noise_factor, strict=True))
    fld = Field(is_lens=bool(is_lens), theta_e=theta_e, kwargs_lens=kwargs_lens, components=components,
                noise_sigma=noise_sigma, z_lens=z_lens, z_source=z_source, mag_lens=mag_lens,
                mag_source=mag_source if is_lens else float("nan"), masks=masks, conditions=cond)
    if physics.randomise:  # randomised populations include the impostors; off keeps the earlier bytes
        fld.impostor_kinds = impostors.dress(physics, rng, fld)  # non-lenses only: spirals, rings, mergers, ...
    return fld


# ----------------------------------------------------------------------------------------------- render

@cache
def _light_model(name: str):
    from lenstronomy.LightModel.light_model import LightModel

    return LightModel([name])


@cache
def _lens_model():
    from lenstronomy.LensModel.lens_model import LensModel

    return LensModel(["SIE", "SHEAR"])


@cache
def pixel_grid(pixel_scale: float, size: int = IMAGE_SIZE, supersampling: int = SUPERSAMPLING):
    """Flattened (x, y) arcsec coordinates of the sub-pixel centres; pixel (row, col) = (y, x)."""
    sub = ((np.arange(size * supersampling) + 0.5) / supersampling - 0.5 - (size - 1) / 2.0) * pixel_scale
    x, y = np.meshgrid(sub, sub)
    return x.ravel(), y.ravel()


@cache
def psf_kernel(fwhm: float, pixel_scale: float) -> np.ndarray:
    """lenstronomy's Gaussian PSF kernel (normalised, truncated at 5 sigma)."""
    from lenstronomy.Data.psf import PSF

    return PSF(psf_type="GAUSSIAN", fwhm=fwhm, pixel_size=pixel_scale, truncation=5).kernel_point_source


def unit_image(component: Component, physics: SurveyPhysics, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(H, W) flux per pixel of ``component`` with total (unlensed) flux 1, before the PSF.

    ``x, y`` are the sub-pixel coordinates of :func:`pixel_grid`, already ray-shot for a lensed component.
    """
    model = _light_model(component.model)
    kwargs = dict(component.kwargs, amp=1.0)
    kwargs["amp"] = 1.0 / model.total_flux([kwargs], norm=True)[0]
    s, n = SUPERSAMPLING, IMAGE_SIZE
    surface = model.surface_brightness(x, y, [kwargs]).reshape(n, s, n, s).mean(axis=(1, 3))
    return surface * physics.pixel_scale**2


def convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    from scipy.signal import fftconvolve

    return fftconvolve(image, kernel, mode="same")


def noise_free_bands(physics: SurveyPhysics, fld: Field, lensed_only: bool = False,
                     bands: tuple[int, ...] | None = None) -> np.ndarray:
    """(C, H, W) float64 noise-free image (PSF-convolved) of the field, or of its lensed source only."""
    bands = tuple(range(physics.n_bands)) if bands is None else bands
    out = np.zeros((len(bands), IMAGE_SIZE, IMAGE_SIZE))
    x, y = pixel_grid(physics.pixel_scale)
    source_plane = None  # ray-shot once for all lensed components
    for component in fld.components:
        if lensed_only and not component.lensed:
            continue
        if component.lensed and source_plane is None:
            source_plane = _lens_model().ray_shooting(x, y, fld.kwargs_lens)
        unit = unit_image(component, physics, *(source_plane if component.lensed else (x, y)))
        for i, b in enumerate(bands):
            out[i] += component.flux[b] * unit
    for i, b in enumerate(bands):
        out[i] = convolve(out[i], field_psf(physics, fld, b))
    return out


def field_psf(physics: SurveyPhysics, fld: Field, band: int) -> np.ndarray:
    """The PSF kernel of ``band`` in this field: the preset's Gaussian, or its drawn Moffat."""
    cond = fld.conditions
    if cond is None or cond.gaussian_psf:
        fwhm = physics.psf_fwhm[band] if cond is None else cond.psf_fwhm[band]
        return psf_kernel(fwhm, physics.pixel_scale)
    return randomise.psf_kernel(cond.psf_fwhm[band], cond.psf_beta, cond.psf_e1, cond.psf_e2, physics.pixel_scale)


def render_field(physics: SurveyPhysics, fld: Field, rng: np.random.Generator) -> np.ndarray:
    """(C, H, W) float32 observed image: noise-free bands + (correlated) Gaussian noise + sky residual,
    then masked pixels."""
    image = noise_free_bands(physics, fld)
    sigma = np.asarray(fld.noise_sigma)[:, None, None]
    cond = fld.conditions
    correlation = 0.0 if cond is None else cond.noise_correlation
    image += randomise.correlated_noise(rng, image.shape, correlation) * sigma
    if cond is not None and any(cond.sky_offset + cond.sky_gradient):
        image += randomise.sky_residual(cond, sigma, IMAGE_SIZE)
    impostors.paint(physics, fld, image)
    image = image.astype(np.float32)
    for band, pixels in fld.masks:
        image[band].flat[pixels] = physics.mask_value
    return image


def worker_pool(physics: SurveyPhysics, processes: int):
    """A process pool for rendering: forked after :func:`warm_up` where fork exists (workers start ready)."""
    import multiprocessing

    from lexactum.processes import pool

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    if method == "fork":
        warm_up(physics)
    return pool(processes, method)  # workers that die with this process


def warm_up(physics: SurveyPhysics) -> None:
    """Import and build everything rendering needs, so that forked workers start ready (imports take seconds)."""
    rng = np.random.default_rng(0)
    fld = draw_field(physics, rng, is_lens=True)
    fld.components.append(Component("GAUSSIAN", {"sigma": 0.1, "center_x": 0.0, "center_y": 0.0},
                                    (1.0,) * physics.n_bands))
    render_field(physics, fld, rng)
