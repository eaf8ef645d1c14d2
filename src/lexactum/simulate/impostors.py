"""Impostors among the non-lenses: the galaxies and artefacts that real lens searches mistake for lenses.

A network trained on non-lenses that are plain red galaxies learns "anything blue or arc-like is a lens". Real
searches are fooled by spiral arms, ring galaxies, mergers and tidal features, edge-on disks, blue companions
and chance alignments, galaxy groups, and detector or optical artefacts (the false-positive classes of Space
Warps, Marshall et al. 2016, MNRAS 455, 1171 and More et al. 2016, MNRAS 455, 1191; of SuGOHI, Sonnenfeld et al.
2018, PASJ 70, S29; of KiDS, Petrillo et al. 2019, MNRAS 484, 3879; of the Euclid Q1 search, Euclid
Collaboration: Walmsley et al. 2025, arXiv:2503.15324). Each non-lens draws each kind independently at the
survey's :class:`ImpostorRates`; lenses get none, so the lens catalogs stay calibrated.

Galaxies are lenstronomy profiles (``SERSIC_ELLIPSE``, ``GAUSSIAN``, ``LINE_PROFILE``) added to the field's
components. Light lenstronomy has no profile for (logarithmic spiral arms, Gaussian rings, tidal tails and
shells) and detector artefacts (cosmic rays, bad columns or rows) are :class:`Painted` specifications kept on
the field and painted by :func:`paint` on the rendered image: light PSF-convolved, artefacts sharp, after the
noise. Everything is drawn from the object's own generator, so output is the same for any worker count.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np

from lexactum.errors import LexactumError
from lexactum.simulate import scene
from lexactum.simulate.presets import SurveyPhysics


@dataclass(frozen=True)
class ImpostorRates:
    """Chance per non-lens of each impostor kind, drawn independently (several kinds can meet in one field).

    The searches cited in the module docstring name which kinds fool lens finders and, roughly, how often among
    their false positives (spirals and rings first, then mergers, blue companions and groups, then artefacts);
    none gives a rate per cutout of a training set, so the numbers are a judgement kept in that order: together
    about one non-lens in seven carries at least one. Four times these rates (45 %, the first choice) cost a
    network trained by the transfer-check recipe (docs/impostors.md) 0.04-0.06 in AUC on simulations without
    impostors and taught too little in return (rings and blue companions stayed inseparable in one band);
    ``lexactum simulate --impostors X`` multiplies them for longer trainings.
    """

    spiral: float
    """Disk with logarithmic spiral arms: the most frequent false positive in Space Warps and Euclid Q1."""
    ring: float
    """Blue Gaussian ring of star formation around the core (resonance/collisional rings)."""
    merger: float
    """A second core with tidal tails or shells (Galaxy Zoo mergers are ~1-3 %, Darg et al. 2010)."""
    edge_on: float
    """Thin disk (axis ratio 0.1-0.25) through the core: a straight 'arc'."""
    blue_companion: float
    """Blue compact galaxies at arc-like distances, unlensed: chance alignments, a top SuGOHI contaminant."""
    group: float
    """Three to six galaxies together (a share of the red galaxies that lens searches target live in groups)."""
    diffraction_spikes: float
    """A bright star with spikes (space optics); ground PSFs here have none."""
    bad_column: float
    """A column or row offset by a few to tens of sigma (detector defects left by the reduction)."""
    cosmic_rays: float
    """Short sharp tracks left after combining a few exposures (space: no ground-style rejection of all)."""
    satellite_trail: float
    """A straight trail across the cutout (Kruk et al. 2023, Nat. Astron. 7, 262: ~3-4 % of HST exposures,
    rarer per cutout)."""

    def kinds(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self))

    def any_share(self) -> float:
        """Expected share of non-lenses with at least one impostor."""
        return float(1.0 - np.prod([1.0 - getattr(self, k) for k in self.kinds()]))

    def scaled(self, factor: float) -> ImpostorRates:
        """Every rate times ``factor`` (at most :meth:`largest_scale`, which keeps each rate a probability)."""
        return replace(self, **{kind: getattr(self, kind) * factor for kind in self.kinds()})

    def largest_scale(self) -> float:
        """The largest factor :meth:`scaled` takes: the one that makes the most frequent kind certain."""
        return 1.0 / max(getattr(self, kind) for kind in self.kinds())


SPACE_RATES = ImpostorRates(spiral=0.03, ring=0.0125, merger=0.015, edge_on=0.015, blue_companion=0.025,
                            group=0.015, diffraction_spikes=0.01, bad_column=0.005, cosmic_rays=0.0125,
                            satellite_trail=0.005)
GROUND_RATES = ImpostorRates(spiral=0.03, ring=0.0125, merger=0.015, edge_on=0.015, blue_companion=0.03, group=0.02,
                             diffraction_spikes=0.0, bad_column=0.0075, cosmic_rays=0.0, satellite_trail=0.0075)
RATES: dict[str, ImpostorRates] = {"space": SPACE_RATES, "ground": GROUND_RATES}


@dataclass(frozen=True)
class Painted:
    """Something :func:`paint` draws on the rendered image: ``kind`` is a key of :data:`PAINTERS`."""

    kind: str
    params: dict
    flux: tuple[float, ...]
    """Total flux per band (light), or the value added per pixel per band (artefacts)."""


@dataclass
class Dressing:
    """What :func:`draw` chose for one non-lens: the kinds, and what they add to the field."""

    kinds: list[str] = field(default_factory=list)
    components: list[scene.Component] = field(default_factory=list)
    painted: list[Painted] = field(default_factory=list)
    central_share: float = 1.0
    """Share of the central galaxy's light it keeps: disks and rings take theirs from it (see :func:`_take`)."""


# ----------------------------------------------------------------------------------------------- drawing

def _colour(physics: SurveyPhysics, redness: float) -> tuple[float, ...]:
    """Colour between the blue sources' (0) and the red lenses' (1)."""
    return tuple(redness * lc + (1.0 - redness) * sc
                 for lc, sc in zip(physics.lens_colour, physics.source_colour, strict=True))


def _sersic(physics, rng, x, y, mag, redness, radius, n, q_range=(0.4, 1.0), phi=None) -> scene.Component:
    e1, e2, _ = scene.ellipticity(rng, q_range, phi)
    kwargs = {"R_sersic": float(radius), "n_sersic": float(n), "e1": e1, "e2": e2,
              "center_x": float(x), "center_y": float(y)}
    return scene.Component("SERSIC_ELLIPSE", kwargs, scene.band_fluxes(physics, mag, _colour(physics, redness)))


def _arc_radius(physics: SurveyPhysics, rng: np.random.Generator, theta_e: float) -> float:
    """A distance from the core where lensed arcs would be (the field's Einstein radius, at least 3 pixels)."""
    return float(np.clip(theta_e * rng.uniform(0.8, 1.5), 3 * physics.pixel_scale, 3.5))


def _polar(r: float, angle: float, cx: float, cy: float) -> tuple[float, float]:
    return cx + r * float(np.cos(angle)), cy + r * float(np.sin(angle))


def _take(rng: np.random.Generator, fld: scene.Field, out: Dressing, low: float, high: float) -> float:
    """Move a share (``low``-``high``) of the central galaxy's light to a disk or ring; its magnitude.

    The central galaxies' magnitudes are calibrated on the real images' total fluxes, so a spiral, an edge-on
    disk or a ring around the core takes its light from the galaxy (the rest is the bulge) instead of adding.
    """
    taken = out.central_share * rng.uniform(low, high)
    out.central_share -= taken
    return float(fld.mag_lens - 2.5 * np.log10(taken))


def _spiral(physics, rng, fld, cx, cy, out: Dressing) -> None:
    """Exponential disk (Sersic n=1) plus 2-4 logarithmic arms sharing its inclination, 50-85 % of the light."""
    total = _take(rng, fld, out, 0.5, 0.85)
    arms_share = rng.uniform(0.3, 0.6)
    mag = total - 2.5 * np.log10(1.0 - arms_share)
    scale = rng.uniform(0.25, 0.8)
    q, phi = rng.uniform(0.4, 1.0), rng.uniform(0.0, np.pi)
    out.components.append(_sersic(physics, rng, cx, cy, mag, rng.uniform(0.3, 0.7), 1.68 * scale, 1.0,
                                  (q, q), phi))
    arms = dict(center=(cx, cy), q=q, phi=phi, scale=scale, pitch=float(np.radians(rng.uniform(10, 30))),
                arms=int(rng.integers(2, 5)), phase=rng.uniform(0, 2 * np.pi), sharpness=rng.uniform(1.5, 4.0))
    flux = scene.band_fluxes(physics, total - 2.5 * np.log10(arms_share), _colour(physics, 0.2))
    out.painted.append(Painted("spiral", arms, flux))


def _ring(physics, rng, fld, cx, cy, out: Dressing) -> None:
    """Clumpy blue Gaussian ring around the core, at an Einstein-ring-like radius, 30-60 % of the light."""
    radius = _arc_radius(physics, rng, fld.theta_e)
    params = dict(center=(cx, cy), radius=radius, width=radius * rng.uniform(0.08, 0.15), q=rng.uniform(0.6, 1.0),
                  phi=rng.uniform(0, np.pi), angle=0.0, span=None, clumps=int(rng.integers(3, 9)),
                  clumpiness=rng.uniform(0.0, 0.8), clump_phase=rng.uniform(0, 2 * np.pi))
    colour = tuple(s + c for s, c in zip(physics.source_colour, physics.clump_colour, strict=True))
    out.painted.append(Painted("arc", params, scene.band_fluxes(physics, _take(rng, fld, out, 0.3, 0.6), colour)))


def _tidal(physics, rng, fld, cx, cy, out: Dressing) -> None:
    """A second core and either two tidal tails (opposite arcs about the pair) or 2-3 shells about the core."""
    sep, angle = rng.uniform(0.6, 2.5), rng.uniform(0, 2 * np.pi)
    x2, y2 = _polar(sep, angle, cx, cy)
    out.components.append(_sersic(physics, rng, x2, y2, fld.mag_lens + rng.uniform(0.0, 1.5),
                                  rng.uniform(0.5, 1.0), rng.uniform(0.3, 1.0), rng.uniform(1.0, 4.0)))
    redness = rng.uniform(0.3, 0.8)
    if rng.random() < 0.5:  # tails
        mx, my = (cx + x2) / 2, (cy + y2) / 2
        arcs = [((mx, my), sep * rng.uniform(0.8, 1.6), angle + side * np.pi + rng.normal(0, 0.5))
                for side in (0, 1)]
    else:  # shells at alternating sides, growing outwards
        arcs = [((cx, cy), sep * (0.6 + 0.5 * i) * rng.uniform(0.9, 1.1), angle + np.pi * i + rng.normal(0, 0.3))
                for i in range(int(rng.integers(2, 4)))]
    for centre, radius, direction in arcs:
        params = dict(center=centre, radius=radius, width=radius * rng.uniform(0.1, 0.25), q=1.0, phi=0.0,
                      angle=float(direction), span=rng.uniform(0.4, 0.9), clumps=0, clumpiness=0.0, clump_phase=0.0)
        mag = fld.mag_lens + rng.uniform(1.0, 2.5)
        out.painted.append(Painted("arc", params, scene.band_fluxes(physics, mag, _colour(physics, redness))))


def _edge_on(physics, rng, fld, cx, cy, out: Dressing) -> None:
    """A thin disk (axis ratio 0.1-0.25) through the core with 50-85 % of the light."""
    out.components.append(_sersic(physics, rng, cx, cy, _take(rng, fld, out, 0.4, 0.8),
                                  rng.uniform(0.3, 0.8), rng.uniform(0.6, 1.5), rng.uniform(0.8, 1.2), (0.1, 0.25)))


def _blue_companion(physics, rng, fld, cx, cy, out: Dressing) -> None:
    """One or two compact blue galaxies at arc-like distances, as bright as the brighter lensed sources."""
    for _ in range(int(rng.integers(1, 3))):
        x, y = _polar(_arc_radius(physics, rng, fld.theta_e), rng.uniform(0, 2 * np.pi), cx, cy)
        mag = scene.source_magnitude(physics, rng.uniform(0.0, 0.6))  # the brighter lensed-source magnitudes
        out.components.append(_sersic(physics, rng, x, y, mag, 0.0, rng.uniform(0.05, 0.3), rng.uniform(0.5, 1.5),
                                      (0.3, 1.0)))


def _group(physics, rng, fld, cx, cy, out: Dressing) -> None:
    """Two to five more red galaxies around the central one (3-6 in all)."""
    reach = min(4.0, 0.45 * scene.IMAGE_SIZE * physics.pixel_scale)
    for _ in range(int(rng.integers(2, 6))):
        x, y = _polar(rng.uniform(1.0, reach), rng.uniform(0, 2 * np.pi), cx, cy)
        out.components.append(_sersic(physics, rng, x, y, fld.mag_lens + rng.uniform(0.5, 2.5),
                                      rng.uniform(0.7, 1.0), 10 ** rng.uniform(-0.5, 0.0), rng.uniform(2.5, 4.5)))


def _line(x0, y0, angle, length, width, flux) -> scene.Component:
    """lenstronomy's uniform line through (x0, y0) at ``angle`` (radians from +x towards +y), centred there.

    lenstronomy 1.14's ``LINE_PROFILE`` runs from its start at minus its ``angle`` in these coordinates.
    """
    start_x, start_y = _polar(-length / 2, angle, x0, y0)
    kwargs = {"angle": -float(np.degrees(angle)), "length": float(length), "width": float(width),
              "start_x": start_x, "start_y": start_y}
    return scene.Component("LINE_PROFILE", kwargs, tuple(flux))


def _spikes(physics, rng, fld, cx, cy, out: Dressing) -> None:
    """A bright star with 4 or 6 diffraction spikes (2 or 3 lines through it), each 1-3 % of its flux."""
    x, y = _polar(rng.uniform(1.5, 0.45 * scene.IMAGE_SIZE * physics.pixel_scale), rng.uniform(0, 2 * np.pi), cx, cy)
    star = scene.band_fluxes(physics, rng.uniform(15.5, 18.5), _colour(physics, rng.uniform(0.0, 1.0)))
    out.components.append(scene.Component("GAUSSIAN", {"sigma": 0.25 * physics.pixel_scale, "center_x": x,
                                                       "center_y": y}, star))
    lines, turn = int(rng.choice([2, 3])), rng.uniform(0, np.pi)
    length, share = rng.uniform(2.0, 6.0), rng.uniform(0.01, 0.03)
    for i in range(lines):
        out.components.append(_line(x, y, turn + i * np.pi / lines, length, physics.pixel_scale,
                                    tuple(share * f for f in star)))


def _trail(physics, rng, fld, cx, cy, out: Dressing) -> None:
    """A satellite trail crossing the whole cutout, 3-30 sigma per pixel before the PSF."""
    half = scene.IMAGE_SIZE * physics.pixel_scale / 2
    x, y = rng.uniform(-half, half, 2)
    length, level = 4 * half, rng.uniform(3.0, 30.0)
    flux = tuple(level * s * length / physics.pixel_scale for s in fld.noise_sigma)
    out.components.append(_line(float(x), float(y), rng.uniform(0, np.pi), length, physics.pixel_scale, flux))


def _bad_column(physics, rng, fld, cx, cy, out: Dressing) -> None:
    """A column or row of one band offset by 3-30 sigma, up or down."""
    band = int(rng.integers(physics.n_bands))
    offset = rng.choice([-1.0, 1.0]) * rng.uniform(3.0, 30.0) * fld.noise_sigma[band]
    params = dict(axis=str(rng.choice(["column", "row"])), index=int(rng.integers(scene.IMAGE_SIZE)), band=band)
    out.painted.append(Painted("bad_line", params, (float(offset),)))


def _cosmic_rays(physics, rng, fld, cx, cy, out: Dressing) -> None:
    """One to four short sharp tracks (1-10 pixels), 10-100 sigma, in one band each."""
    n = scene.IMAGE_SIZE
    for _ in range(int(rng.integers(1, 5))):
        band = int(rng.integers(physics.n_bands))
        (r0, c0), length, angle = rng.uniform(0, n, 2), rng.uniform(1.0, 10.0), rng.uniform(0, np.pi)
        steps = np.linspace(0.0, length, int(np.ceil(length * 2)) + 1)
        rows = np.clip(np.round(r0 + steps * np.sin(angle)), 0, n - 1).astype(int)
        cols = np.clip(np.round(c0 + steps * np.cos(angle)), 0, n - 1).astype(int)
        pixels = np.unique(rows * n + cols)
        values = rng.uniform(10.0, 100.0, len(pixels)) * fld.noise_sigma[band]
        out.painted.append(Painted("cosmic_ray", dict(pixels=pixels, values=values, band=band), ()))


DRAWERS = {"spiral": _spiral, "ring": _ring, "merger": _tidal, "edge_on": _edge_on,
           "blue_companion": _blue_companion, "group": _group, "diffraction_spikes": _spikes,
           "bad_column": _bad_column, "cosmic_rays": _cosmic_rays, "satellite_trail": _trail}


def rates_for(physics: SurveyPhysics) -> ImpostorRates:
    """The impostor rates of ``physics``'s survey times its ``impostor_scale``; a clear error for a survey
    without any."""
    try:
        return RATES[physics.name].scaled(physics.impostor_scale)
    except KeyError:
        raise LexactumError(f"no impostor rates for survey {physics.name!r}: add them to "
                            f"lexactum.simulate.impostors.RATES (known: {', '.join(RATES)})") from None


def draw(physics: SurveyPhysics, rng: np.random.Generator, fld: scene.Field) -> Dressing:
    """Choose the impostor kinds of one non-lens field and draw each (one uniform per kind, in a fixed order)."""
    rates = rates_for(physics)
    chosen = [kind for kind in rates.kinds() if rng.random() < getattr(rates, kind)]
    cx, cy = fld.kwargs_lens[0]["center_x"], fld.kwargs_lens[0]["center_y"]
    out = Dressing(kinds=chosen)
    for kind in chosen:
        DRAWERS[kind](physics, rng, fld, cx, cy, out)
    return out


def dress(physics: SurveyPhysics, rng: np.random.Generator, fld: scene.Field) -> list[str]:
    """Add impostors to a non-lens field (lenses are left as they are); returns the kinds added."""
    if fld.is_lens:
        return []
    out = draw(physics, rng, fld)
    if out.central_share != 1.0:
        centre = (fld.kwargs_lens[0]["center_x"], fld.kwargs_lens[0]["center_y"])
        index = next(i for i, c in enumerate(fld.components)  # the central galaxy sits on the mass centre
                     if not c.lensed and (c.kwargs.get("center_x"), c.kwargs.get("center_y")) == centre)
        central = fld.components[index]
        fld.components[index] = replace(central, flux=tuple(f * out.central_share for f in central.flux))
    fld.components.extend(out.components)
    fld.artefacts.extend(out.painted)
    return out.kinds


# ----------------------------------------------------------------------------------------------- painting

def _ellipse_coords(params: dict, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radius and angle in the disk's own plane (axis ratio ``q`` at position angle ``phi``)."""
    dx, dy = x - params["center"][0], y - params["center"][1]
    cos, sin = np.cos(params["phi"]), np.sin(params["phi"])
    u, v = dx * cos + dy * sin, (-dx * sin + dy * cos) / params["q"]
    return np.hypot(u, v), np.arctan2(v, u)


def spiral_light(params: dict, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Logarithmic arms on an exponential disk: brightest where angle = ln(r/scale) / tan(pitch) + phase."""
    r, theta = _ellipse_coords(params, x, y)
    r = np.maximum(r, 1e-6)
    scale = params["scale"]
    winding = np.log(r / scale) / np.tan(params["pitch"])
    arm = (0.5 + 0.5 * np.cos(params["arms"] * (theta - winding) - params["phase"])) ** params["sharpness"]
    return np.exp(-r / scale) * arm * (1.0 - np.exp(-((r / (0.5 * scale)) ** 2)))


def arc_light(params: dict, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gaussian ring profile about ``center``, optionally clumpy, optionally only an arc of it (tails, shells)."""
    r, theta = _ellipse_coords(params, x, y)
    light = np.exp(-0.5 * ((r - params["radius"]) / params["width"]) ** 2)
    if params["span"] is not None:
        off = np.angle(np.exp(1j * (theta - params["angle"])))
        light = light * np.exp(-0.5 * (off / params["span"]) ** 2)
    if params["clumps"]:
        light = light * (1.0 + params["clumpiness"] * np.cos(params["clumps"] * theta + params["clump_phase"]))
    return light


LIGHT = {"spiral": spiral_light, "arc": arc_light}


def _unit_light(painted: Painted, physics: SurveyPhysics) -> np.ndarray:
    """(H, W) image of the painted light with total flux 1 over the cutout, before the PSF."""
    x, y = scene.pixel_grid(physics.pixel_scale)
    s, n = scene.SUPERSAMPLING, scene.IMAGE_SIZE
    image = LIGHT[painted.kind](painted.params, x, y).reshape(n, s, n, s).mean(axis=(1, 3))
    total = image.sum()
    return image / total if total > 0 else image


def _field_psf(physics: SurveyPhysics, fld: scene.Field, band: int) -> np.ndarray:
    """The kernel the rest of the field was convolved with (a painted arm must not be sharper than its disk).

    The domain-randomisation branch gives each field its own PSF through ``scene.field_psf``; until both are
    merged the preset's Gaussian is the field's PSF. After the merge this can be ``scene.field_psf`` alone.
    """
    per_field = getattr(scene, "field_psf", None)
    if per_field is not None:
        return per_field(physics, fld, band)
    return scene.psf_kernel(physics.psf_fwhm[band], physics.pixel_scale)


def paint(physics: SurveyPhysics, fld: scene.Field, image: np.ndarray) -> None:
    """Paint ``fld.artefacts`` on the noisy (C, H, W) ``image`` in place: light convolved, artefacts sharp."""
    light = [p for p in fld.artefacts if p.kind in LIGHT]
    if light:
        extra = np.zeros_like(image)
        for painted in light:
            unit = _unit_light(painted, physics)
            for b in range(image.shape[0]):
                extra[b] += painted.flux[b] * unit
        for b in range(image.shape[0]):
            image[b] += scene.convolve(extra[b], _field_psf(physics, fld, b))
    for painted in fld.artefacts:
        params = painted.params
        if painted.kind == "bad_line":
            index = params["index"]
            if params["axis"] == "column":
                image[params["band"], :, index] += painted.flux[0]
            else:
                image[params["band"], index, :] += painted.flux[0]
        elif painted.kind == "cosmic_ray":
            image[params["band"]].flat[params["pixels"]] += params["values"]
