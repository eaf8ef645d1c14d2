"""Normalisations by name; ZScale is the default.  (PLACEHOLDER: astropy loop; fast version replaces it.)"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lexactum.errors import LexactumError

Normalisation = Callable[[np.ndarray], np.ndarray]
_REGISTRY: dict[str, Normalisation] = {}


def register_normalisation(name: str):
    def decorator(fn: Normalisation) -> Normalisation:
        _REGISTRY[name] = fn
        return fn

    return decorator


def list_normalisations() -> list[str]:
    return sorted(_REGISTRY)


def get_normalisation(name: str) -> Normalisation:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise LexactumError(
            f"unknown normalisation {name!r}: choose one of {', '.join(list_normalisations())}"
        ) from None


@register_normalisation("zscale")
def zscale(images: np.ndarray) -> np.ndarray:
    from astropy.visualization import ZScaleInterval

    images = np.asarray(images, dtype=np.float32)
    out = np.empty_like(images)
    interval = ZScaleInterval()
    for idx in np.ndindex(images.shape[:2]):
        img = np.where(np.isfinite(images[idx]), images[idx], np.nan)
        vmin, vmax = interval.get_limits(img[np.isfinite(img)])
        scaled = (images[idx] - vmin) / (vmax - vmin) if vmax > vmin else np.zeros_like(images[idx])
        out[idx] = np.nan_to_num(np.clip(scaled, 0, 1), nan=0.0)
    return out


def normalise(images: np.ndarray, method: str = "zscale", mask_value: float | None = None) -> np.ndarray:
    images = np.array(images, dtype=np.float32, copy=True)
    if mask_value is not None:
        images[images == mask_value] = 0.0
    return get_normalisation(method)(images)
