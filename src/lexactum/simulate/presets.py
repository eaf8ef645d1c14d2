"""Physical presets of the two simulated surveys, as plain data with their sources.

Sources:
- Metcalf et al. 2019, A&A 625, A119 (the Lens Finding Challenge 1.0): pixel scales, the space PSF
  (Gaussian, FWHM 0.18"), the lens fractions, the smallest Einstein radius (1.5 pixels).
- Laureijs et al. 2011, Euclid Definition Study Report (arXiv:1110.3193): VIS depth 24.5 AB at 10 sigma
  for a 1" extended source.
- Kuijken et al. 2019, A&A 625, A2 (KiDS DR4): 5 sigma depths in 2" apertures (u 24.2, g 25.1, r 25.0,
  i 23.7 AB) and typical seeing per band (r ~0.7", g ~0.8", u ~1.0", i ~0.8").
- Measurements on the real sample files and training keys (docs/challenge-format.md and
  ``../shared/challenge_samples``): noise sigma per band (median), the Einstein radius quantiles of the
  real lenses, the share of images with masked pixels and with more noise.
The source priors (magnitude, size, offset) were tuned so that the catalog quantities of simulated lenses
match the real training keys (see :mod:`lexactum.simulate.catalog` and ``lexactum simulate --report``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lexactum.errors import LexactumError


@dataclass(frozen=True)
class SurveyPhysics:
    """Everything the scene needs to know about one survey: instrument, noise and priors."""

    name: str
    bands: tuple[str, ...]
    pixel_scale: float
    """Arcseconds per pixel."""
    psf_fwhm: tuple[float, ...]
    """Gaussian PSF FWHM per band (arcsec)."""
    noise_sigma: tuple[float, ...]
    """Median background noise sigma per band, in the files' flux units."""
    depth_mag: tuple[float, ...]
    """Limiting AB magnitude per band at ``depth_snr`` in a circular aperture of ``depth_aperture`` arcsec."""
    depth_snr: float
    depth_aperture: float
    """Aperture diameter (arcsec) of the quoted depth."""
    einstein_radius_quantiles: tuple[float, ...]
    """Einstein radius (arcsec) of the real lenses at quantiles 0, 5, ..., 100 % (training key)."""
    pixels_quantiles: tuple[float, ...]
    """``numb_pix_lensed_image`` of the real lenses at quantiles 0, 5, ..., 100 % (training key)."""
    flux_quantiles: tuple[float, ...]
    """``flux_lensed_image_in_sigma`` of the real lenses at quantiles 0, 5, ..., 100 % (training key)."""
    lens_fraction_train: float
    lens_fraction_test: float
    catalog_band: int = 0
    """Band whose noise defines ``numb_pix_lensed_image`` and ``flux_lensed_image_in_sigma``."""
    # colours: AB magnitude in each band minus the first band's, for each kind of object
    lens_colour: tuple[float, ...] = (0.0,)
    source_colour: tuple[float, ...] = (0.0,)
    clump_colour: tuple[float, ...] = (0.0,)
    # priors (tuned; see the module docstring)
    lens_mag_small: float = 22.0
    """Typical lens galaxy magnitude as theta_E -> 0 (brighter by 3 log10(1 + theta_E)); set so that the
    images' total fluxes match the real sample files."""
    source_mag_mean: float = 24.0
    source_mag_sd: float = 1.0
    source_mag_faint: float = 99.0
    """Faintest source magnitude (the normal prior is truncated there)."""
    source_radius_median: float = 0.25
    """Median source Sersic half-light radius (arcsec); log-normal."""
    source_radius_sd_dex: float = 0.25
    source_offset_max: float = 1.0
    """Largest source offset from the optical axis, in Einstein radii, for most sources."""
    barely_lensed_share: float = 0.05
    """Share of lenses whose source lies well outside the caustics (weak, single arcs)."""
    noisy_share: float = 0.1
    """Share of images with 1.5-3x the median noise (seen in the real files)."""
    noisy_range: tuple[float, float] = (1.5, 3.0)
    mask_share: float = 0.0
    """Share of images with masked pixels (value ``mask_value``)."""
    mask_value: float | None = None
    neighbour_share: float = 0.4
    star_share: float = 0.25

    @property
    def n_bands(self) -> int:
        return len(self.bands)

    @property
    def zero_point(self) -> tuple[float, ...]:
        """Per band, the magnitude of one flux unit: ``mag = zero_point - 2.5 log10(flux)``.

        Derived from the quoted depth: a source at ``depth_mag`` gives ``depth_snr`` in the aperture,
        whose noise is ``sigma * sqrt(pixels in the aperture)``.
        """
        pixels = math.pi * (self.depth_aperture / 2.0 / self.pixel_scale) ** 2
        return tuple(m + 2.5 * math.log10(self.depth_snr * s * math.sqrt(pixels))
                     for m, s in zip(self.depth_mag, self.noise_sigma, strict=True))

    def flux(self, mag: float, band: int) -> float:
        """Total flux in file units of an object of AB magnitude ``mag`` in ``band``."""
        return 10.0 ** (-0.4 * (mag - self.zero_point[band]))

    def default_lens_fraction(self, layout: str) -> float:
        return self.lens_fraction_train if layout == "train" else self.lens_fraction_test


SPACE = SurveyPhysics(
    name="space",
    bands=("VIS",),
    pixel_scale=0.1,
    psf_fwhm=(0.18,),
    noise_sigma=(7.9e-13,),
    depth_mag=(24.5,),
    depth_snr=10.0,
    depth_aperture=1.0,
    einstein_radius_quantiles=(0.151, 0.169, 0.193, 0.22, 0.255, 0.303, 0.368, 0.448, 0.555, 0.681, 0.844,
                               1.074, 1.312, 1.595, 1.962, 2.449, 2.92, 3.433, 3.906, 4.524, 5.05),
    pixels_quantiles=(0, 28, 47, 64, 83, 101, 120, 142, 167, 197, 232, 275, 329, 399, 491, 599, 736, 930, 1192,
                      1683, 7558),
    flux_quantiles=(0, 59.2, 122.3, 175.7, 231.6, 298.2, 373.0, 457.2, 557.5, 678.9, 822.4, 999.5, 1217, 1504,
                    1850, 2308, 2907, 3872, 5611, 10470, 882900),
    lens_fraction_train=0.7,
    lens_fraction_test=0.4,
    lens_mag_small=22.3,
    source_mag_mean=23.0,
    source_mag_sd=1.25,
    source_mag_faint=24.5,
    source_offset_max=0.5,
    source_radius_median=0.6,
    source_radius_sd_dex=0.35,
    barely_lensed_share=0.025,
    noisy_share=0.0,
)

GROUND = SurveyPhysics(
    name="ground",
    bands=("R", "I", "G", "U"),
    pixel_scale=0.2,
    psf_fwhm=(0.7, 0.8, 0.85, 1.0),
    noise_sigma=(1.5e-12, 3.2e-12, 1.27e-12, 2.0e-12),
    depth_mag=(25.0, 23.7, 25.1, 24.2),
    depth_snr=5.0,
    depth_aperture=2.0,
    einstein_radius_quantiles=(0.302, 0.362, 0.426, 0.488, 0.561, 0.647, 0.731, 0.829, 0.964, 1.106, 1.28,
                               1.458, 1.718, 2.019, 2.638, 3.096, 3.466, 3.842, 4.684, 5.307, 6.256),
    pixels_quantiles=(0, 0, 9, 20, 32, 43, 56, 70, 84, 99, 116, 135, 154, 178, 206, 242, 287, 359, 471, 703, 3135),
    flux_quantiles=(0, 0, 10.6, 28.1, 47.53, 69.85, 95.84, 125.6, 160.3, 200.1, 248.3, 307.5, 370.0, 439.8, 542.3,
                    677.2, 877.1, 1195, 1836, 3814, 145000),
    lens_fraction_train=0.4,
    lens_fraction_test=0.5,
    # magnitude in each band minus the R one: early-type lenses at z~0.4 are red (g-r 1.1, r-i 0.45),
    # star-forming sources at z~1-2 are blue (g-r 0.3)
    lens_colour=(0.0, -0.45, 1.1, 2.6),
    source_colour=(0.0, -0.2, 0.3, 0.6),
    clump_colour=(0.0, 0.0, 0.0, 0.2),
    lens_mag_small=23.3,
    source_mag_mean=24.0,
    source_mag_sd=1.25,
    source_mag_faint=26.0,
    source_offset_max=0.5,
    source_radius_median=0.6,
    source_radius_sd_dex=0.3,
    barely_lensed_share=0.06,
    noisy_share=0.15,
    mask_share=0.3,
    mask_value=100.0,
)

PRESETS: dict[str, SurveyPhysics] = {p.name: p for p in (SPACE, GROUND)}


def get_preset(name: str) -> SurveyPhysics:
    """The physics preset of survey ``name``; a clear error for an unknown one."""
    try:
        return PRESETS[str(name).lower()]
    except KeyError:
        raise LexactumError(f"unknown survey {name!r}: choose one of {', '.join(PRESETS)}") from None
