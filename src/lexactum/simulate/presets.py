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
The ranges of domain randomisation (:class:`RandomRanges`, one per survey) carry their own source or reason
per knob (``RandomRanges.sources``; docs/simulation.md).
The source priors (magnitude, size, offset) were tuned so that the catalog quantities of simulated lenses
match the real training keys (see :mod:`lexactum.simulate.catalog` and ``lexactum simulate --report``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from lexactum.errors import LexactumError

Range = tuple[float, float]


@dataclass(frozen=True)
class RandomRanges:
    """Per-object ranges (low, high) of domain randomisation: every choice the real data could plausibly take.

    Why: a network trained on one fixed instrument and population learns that simulator's choices instead of
    what a lens is; drawing them per object from plausible ranges makes those choices useless as cues.
    Drawn uniformly (scale factors log-uniformly) by :func:`lexactum.simulate.randomise.draw_conditions`.
    ``sources`` names, per knob, the paper or measurement behind its range, or says it is a judgement.
    """

    psf_fwhm: tuple[Range, ...]
    """PSF FWHM per band (arcsec)."""
    psf_beta: Range
    """Moffat exponent of the PSF (large: close to a Gaussian)."""
    psf_ellipticity: Range
    """|e| = (1 - q) / (1 + q) of the PSF, at a random angle."""
    noise_factor: Range
    """Background noise sigma over the preset's median, per band."""
    noise_correlation: Range
    """Sigma (pixels) of the Gaussian kernel smoothing the noise (resampling in co-adds); re-scaled to sigma."""
    sky_offset: Range
    """Constant sky residual, in units of the band's noise sigma."""
    sky_gradient: Range
    """Sky residual change across the cutout (random direction), in units of the band's noise sigma."""
    lens_sersic_n: Range
    lens_axis_ratio: Range
    lens_size_factor: Range
    """Lens light half-light radius over the Einstein-radius relation's value."""
    source_size_factor: Range
    """Source half-light radius over the calibrated log-normal draw."""
    source_sersic_n: Range
    source_axis_ratio: Range
    clumps: tuple[int, int]
    """Number of star-forming clumps in the source (inclusive)."""
    clump_share: Range
    """Share of the source's flux in its clumps."""
    clump_sigma: Range
    """Gaussian sigma of one clump (arcsec)."""
    shear: Range
    """External shear strength."""
    lens_colour_jitter: Range
    """Added to each band's lens colour (mag; bands after the first)."""
    source_colour_jitter: Range
    clump_colour_jitter: Range
    neighbour_share: Range
    star_share: Range
    mask_share: Range
    source_mag_shift: float = 0.0
    """Not a range: added to the source magnitudes when randomised, tuned so that the randomised catalogs stay
    calibrated on the real keys (broader PSFs, Moffat wings and noisier files hide more faint sources)."""
    sources: tuple[tuple[str, str], ...] = ()
    """(knob, source or reason) for every knob above."""

    def __post_init__(self) -> None:
        """Each range is (low, high) with low <= high; scale factors and widths positive: checked once, here."""
        positive = {"psf_fwhm", "psf_beta", "noise_factor", "lens_size_factor", "source_size_factor",
                    "clump_sigma"}
        for f in dataclasses.fields(self):
            if f.name in ("sources", "source_mag_shift"):
                continue
            value = getattr(self, f.name)
            for low, high in (value if f.name == "psf_fwhm" else (value,)):
                if not low <= high or (f.name in positive and low <= 0):
                    raise LexactumError(f"randomisation range {f.name} = ({low}, {high}): need low <= high"
                                        + (" and low > 0" if f.name in positive else ""))

    def source(self, knob: str) -> str:
        return dict(self.sources)[knob]


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
    ranges: RandomRanges
    """Domain randomisation ranges, used when ``randomise`` is set."""
    randomise: bool = False
    """Draw the instrument and population choices per object from ``ranges`` (False: the fixed values, the
    simulator's output before randomisation existed, byte for byte)."""
    impostor_scale: float = 1.0
    """Multiplies the survey's impostor rates (:mod:`lexactum.simulate.impostors`) of randomised fields: 0 none,
    1 the survey's rates (``lexactum simulate --impostors``)."""
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


_SHARED_SOURCES = (
    ("noise_correlation", "judgement: co-adds resampled with a Lanczos-3 kernel (SWarp, Bertin et al. 2002) "
                          "correlate neighbouring pixels; from none up to a smoothing of about one pixel"),
    ("sky_offset", "judgement: background subtraction leaves residuals of a small fraction of sigma "
                   "(KiDS DR4, Kuijken et al. 2019, section 3)"),
    ("sky_gradient", "judgement: residual gradients from nearby bright objects, up to a third of sigma across"),
    ("lens_sersic_n", "SLACS and SL2S lens light fits: Sersic n about 2-6 (Bolton et al. 2008; "
                      "Sonnenfeld et al. 2013)"),
    ("lens_axis_ratio", "SLACS lens light axis ratios 0.5-1 (Bolton et al. 2008, table 4)"),
    ("lens_size_factor", "judgement: SLACS half-light radius over Einstein radius scatters by a factor ~2 "
                         "(Auger et al. 2009); +-0.15 dex around our relation"),
    ("source_size_factor", "judgement around the calibrated median: HUDF/CANDELS star-forming galaxies at z 1-3 "
                           "(Shibuya et al. 2015; van der Wel et al. 2014); kept narrow to stay calibrated"),
    ("source_sersic_n", "HUDF/CANDELS star-forming galaxies: disk-like, n 0.5-3 (van der Wel et al. 2012)"),
    ("source_axis_ratio", "star-forming galaxies at z 1-2 are often elongated, q 0.3-1 (van der Wel et al. 2014)"),
    ("clumps", "0-6 giant star-forming clumps per galaxy at z 1-3 (Guo et al. 2015, CANDELS)"),
    ("clump_share", "clumps hold 5-50% of the UV light of clumpy galaxies (Guo et al. 2015; Wuyts et al. 2012)"),
    ("clump_sigma", "clump sizes up to ~1 kpc, 0.02-0.12 arcsec at z 1-2 (Guo et al. 2015; judgement)"),
    ("shear", "external shear of lens galaxies mostly below 0.1-0.12 (Keeton, Kochanek & Seljak 1997; "
              "SLACS models, Bolton et al. 2008)"),
    ("neighbour_share", "judgement around the measured 0.4 of fields with a galaxy nearby (real sample files)"),
    ("star_share", "judgement around the measured 0.25 of fields with a star (real sample files)"),
)

SPACE_RANGES = RandomRanges(
    psf_fwhm=((0.16, 0.20),),
    psf_beta=(3.0, 8.0),
    psf_ellipticity=(0.0, 0.05),
    noise_factor=(0.9, 1.15),
    noise_correlation=(0.0, 0.6),
    sky_offset=(-0.15, 0.15),
    sky_gradient=(0.0, 0.3),
    lens_sersic_n=(2.0, 6.0),
    lens_axis_ratio=(0.5, 1.0),
    lens_size_factor=(0.7, 1.4),
    source_size_factor=(0.8, 1.25),
    source_sersic_n=(0.5, 3.0),
    source_axis_ratio=(0.3, 1.0),
    clumps=(0, 6),
    clump_share=(0.05, 0.5),
    clump_sigma=(0.02, 0.12),
    shear=(0.0, 0.12),
    lens_colour_jitter=(0.0, 0.0),
    source_colour_jitter=(0.0, 0.0),
    clump_colour_jitter=(0.0, 0.0),
    neighbour_share=(0.25, 0.55),
    star_share=(0.1, 0.4),
    mask_share=(0.0, 0.0),
    sources=_SHARED_SOURCES + (
        ("psf_fwhm", "Euclid VIS PSF FWHM 0.16-0.20 arcsec (Cropper et al. 2016; Euclid Collaboration: "
                     "Mellier et al. 2024); the challenge used 0.18"),
        ("psf_beta", "judgement: a diffraction-limited core with wings, between a Gaussian (large beta) and "
                     "beta 3"),
        ("psf_ellipticity", "Euclid VIS PSF ellipticity of a few per cent (Cropper et al. 2016)"),
        ("noise_factor", "judgement: the real space sample files' sky noise varies by about +-10% "
                         "around the median (ours: 0.9-1.15)"),
        ("lens_colour_jitter", "one band: no colour"),
        ("source_colour_jitter", "one band: no colour"),
        ("clump_colour_jitter", "one band: no colour"),
        ("mask_share", "the real space files hold no masked pixels"),
    ),
)

GROUND_RANGES = dataclasses.replace(
    SPACE_RANGES,
    psf_fwhm=((0.55, 0.85), (0.55, 1.2), (0.6, 1.1), (0.7, 1.3)),
    psf_beta=(3.5, 8.0),
    psf_ellipticity=(0.0, 0.08),
    noise_factor=(0.85, 1.18),
    noise_correlation=(0.0, 0.8),
    source_size_factor=(0.85, 1.15),
    lens_colour_jitter=(-0.2, 0.2),
    source_colour_jitter=(-0.4, 0.4),
    clump_colour_jitter=(-0.3, 0.3),
    mask_share=(0.15, 0.45),
    source_mag_shift=-0.15,
    sources=_SHARED_SOURCES + (
        ("psf_fwhm", "KiDS DR4 seeing distributions per band (Kuijken et al. 2019, fig. 3): r 0.55-0.85 "
                     "(r is observed in the best seeing; its tails cut to keep the catalogs calibrated), "
                     "i 0.55-1.2, g 0.6-1.1, u 0.7-1.3 arcsec"),
        ("psf_beta", "atmospheric PSFs are Moffat-like, beta ~2.5-5 (Trujillo et al. 2001); 3.5-8 here: "
                     "beta below 3.5 lost too many faint arcs against the real keys (judgement)"),
        ("psf_ellipticity", "KiDS PSF ellipticities up to ~0.08 before correction (Kuijken et al. 2015)"),
        ("noise_factor", "KiDS DR4 limiting magnitudes scatter by ~0.2 mag over tiles (Kuijken et al. 2019), "
                         "a factor 0.85-1.18 in sigma; the noisier 15% of files stay on top"),
        ("lens_colour_jitter", "early-type colours change by ~0.2 mag over z 0.2-0.9 around the preset "
                               "(red-sequence models, e.g. Bruzual & Charlot 2003; judgement)"),
        ("source_colour_jitter", "star-forming sources at z 1-3 span ~0.8 mag in g-r and r-i (judgement from "
                                 "CANDELS colours)"),
        ("clump_colour_jitter", "clumps are bluer or redder than their host by a few tenths of a magnitude "
                                "(Guo et al. 2015; judgement)"),
        ("mask_share", "judgement around the 0.3 of real ground files with masked pixels (real sample files)"),
    ),
)

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
    ranges=SPACE_RANGES,
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
    ranges=GROUND_RANGES,
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
