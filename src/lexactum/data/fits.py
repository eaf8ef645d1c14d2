"""Reading challenge FITS cutouts.  (PLACEHOLDER: astropy-only; the fast reader replaces it.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lexactum.errors import DataError


def read_fits(path: str | Path) -> np.ndarray:
    """The primary image of a FITS file as float32 in native byte order."""
    from astropy.io import fits

    try:
        data = fits.getdata(path)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{path}: cannot read as a FITS image ({exc})") from None
    return np.ascontiguousarray(data, dtype=np.float32)
