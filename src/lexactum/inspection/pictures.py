"""The small pictures of a report: a thumbnail per card and its saliency overlay, as PNG bytes.

Space (one band, VIS): grey, ZScale as the networks see it. Ground (R, I, G, U): a colour composite of I, R and
G as red, green and blue (the three reddest bands, as the project's image grids draw them; U is the noisiest),
each band's sky subtracted and divided by its noise, mapped with astropy's Lupton asinh stretch so that faint
arcs and bright galaxies both show. Thumbnails keep the cutout's 101x101 pixels (an arc is a few pixels wide)
and are drawn with row 0 at the bottom, as FITS images are shown.
"""

from __future__ import annotations

import io

import numpy as np

#: Ground bands drawn as red, green, blue (channel indices of R, I, G, U): I, R, G.
from lexactum.evaluation.plots import GROUND_RGB_CHANNELS

#: Lupton asinh stretch of the ground composite, in units of each band's noise: linear up to about
#: LUPTON_STRETCH sigma, compressed above (softening Q).
LUPTON_STRETCH = 3.0
LUPTON_Q = 8.0
#: Colour map and strength of the saliency overlay (a pixel's colour weight is OVERLAY_ALPHA x its heat).
OVERLAY_CMAP = "inferno"
OVERLAY_ALPHA = 0.65


def thumbnails(images: np.ndarray, survey) -> np.ndarray:
    """uint8 pictures of raw ``images`` (B, C, H, W): (B, H, W) grey for one band, (B, H, W, 3) colour for
    several (``survey``'s masked pixels and NaN count as sky)."""
    images = np.asarray(images, dtype=np.float32)
    if images.shape[1] == 1:
        from lexactum.data.normalise import normalise

        grey = normalise(images, "zscale", mask_value=survey.mask_value)[:, 0]
        return _to_uint8(grey[:, ::-1])
    return np.stack([colour_composite(image, survey.mask_value) for image in images])


def colour_composite(image: np.ndarray, mask_value: float | None = None) -> np.ndarray:
    """(H, W, 3) uint8 Lupton composite of a (C, H, W) ground image (bands I, R, G as red, green, blue)."""
    from astropy.visualization import make_lupton_rgb

    channels = list(GROUND_RGB_CHANNELS) if image.shape[0] >= 3 else [0] * 3
    bands = np.array(image[channels], dtype=np.float64)
    if mask_value is not None:
        bands[bands == mask_value] = np.nan
    scaled = []
    for band in bands:
        finite = band[np.isfinite(band)]
        if finite.size == 0:
            scaled.append(np.zeros_like(band))
            continue
        sky = np.median(finite)
        noise = 1.4826 * np.median(np.abs(finite - sky)) or np.std(finite) or 1.0
        scaled.append(np.nan_to_num((band - sky) / noise, nan=0.0, posinf=0.0, neginf=0.0))
    with np.errstate(invalid="ignore", divide="ignore"):  # astropy divides by the intensity, 0 at black pixels
        rgb = make_lupton_rgb(*scaled, minimum=0.0, stretch=LUPTON_STRETCH, Q=LUPTON_Q)
    return np.ascontiguousarray(rgb[::-1])


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.nan_to_num(values) * 255.0), 0, 255).astype(np.uint8)


def overlay(thumb: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: the thumbnail (grey or colour) with ``heat`` ((H, W) in [0, 1], row 0 at the top
    of the image as the network sees it) drawn over it in colour, weighted by the heat itself (cold pixels
    show the cutout unchanged)."""
    from matplotlib import colormaps

    base = thumb.astype(np.float32) / 255.0
    if base.ndim == 2:
        base = np.repeat(base[..., None], 3, axis=2)
    heat = np.clip(np.nan_to_num(heat[::-1].astype(np.float32)), 0.0, 1.0)
    colour = colormaps[OVERLAY_CMAP](heat)[..., :3].astype(np.float32)
    weight = (OVERLAY_ALPHA * heat)[..., None]
    return _to_uint8(base * (1.0 - weight) + colour * weight)


def png_bytes(picture: np.ndarray, palette: bool = False) -> bytes:
    """A uint8 (H, W) grey or (H, W, 3) RGB picture as PNG bytes (Pillow, which matplotlib brings).

    ``palette``: 256 colours (Pillow's fast octree): a saliency overlay then takes about a third of the bytes
    (6-8 kB instead of 18-25 kB), which counts in a report of 10,000 cards; thumbnails keep every colour."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(picture))
    if palette and image.mode == "RGB":
        image = image.quantize(256, method=Image.Quantize.FASTOCTREE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
