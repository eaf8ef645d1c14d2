"""Toy datasets in the challenge format: noise, a galaxy, and a ring for lenses.

Much faster than the physical simulator (:mod:`lexactum.simulate.scene`), for tests and benchmarks of the
data path where realism does not matter but the format must be exact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lexactum.data.surveys import get_survey
from lexactum.simulate import writer
from lexactum.simulate.presets import PRESETS

#: Median noise sigma per band of the real sample files: the simulator's presets.
TOY_NOISE = {name: physics.noise_sigma for name, physics in PRESETS.items()}


def toy_images(survey: str, n: int, labels: np.ndarray, rng: np.random.Generator,
               signal: float = 30.0) -> np.ndarray:
    """(n, C, H, W) float32 images: Gaussian noise + a central galaxy; lenses add a ring of ``signal`` sigma."""
    fmt = get_survey(survey)
    size = fmt.image_size
    sigma = np.asarray(TOY_NOISE[fmt.name], dtype=np.float64)[None, :, None, None]
    y, x = np.mgrid[:size, :size] - (size - 1) / 2.0
    r = np.hypot(x, y)
    images = rng.normal(0.0, 1.0, (n, fmt.n_bands, size, size))
    amp = rng.uniform(20, 200, (n, 1, 1, 1))
    width = rng.uniform(2, 6, (n, 1, 1, 1))
    images += amp * np.exp(-0.5 * (r / width) ** 2)
    radius = rng.uniform(10, 30, (n, 1, 1, 1))
    images += signal * labels[:, None, None, None] * np.exp(-0.5 * ((r - radius) / 1.5) ** 2)
    return (images * sigma).astype(np.float32)


def write_toy_dataset(root: str | Path, survey: str = "space", n: int = 40, layout: str = "test",
                      lens_fraction: float = 0.5, seed: int = 0, per_folder: int = 10_000,
                      signal: float = 30.0, mask_fraction: float = 0.0) -> Path:
    """Write a small dataset of ``layout`` ('train' or 'test') to ``root``; returns ``root``.

    IDs start at 100000 as in the challenge. ``mask_fraction`` of ground images get a few pixels set to
    exactly 100.0, like the real masked pixels.
    """
    fmt = get_survey(survey)
    root = Path(root)
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < lens_fraction).astype(np.int64)
    images = toy_images(fmt.name, n, labels, rng, signal=signal)
    if fmt.mask_value is not None and mask_fraction > 0:
        for i in np.flatnonzero(rng.random(n) < mask_fraction):
            ys, xs = rng.integers(0, fmt.image_size, (2, 20))
            images[i, :, ys, xs] = fmt.mask_value
    header = writer.fits_header_bytes(fmt)
    ids = 100_000 + np.arange(n)
    rows = []
    for i, object_id in enumerate(ids):
        for band, path in enumerate(writer.band_paths(root, fmt, layout, i, int(object_id), per_folder)):
            writer.write_fits_image(path, images[i, band], header)
        rows.append({"ID": int(object_id), "is_lens": int(labels[i]), "no_source": int(1 - labels[i])})
    if layout == "train":
        writer.write_training_catalog(root, rows)
    else:
        writer.write_test_catalog(root, fmt, rows, ["ID", "no_source", "n_source_im", "mag_eff"],
                                  comments=["toy catalog written by lexactum.simulate.toy", "ID: object ID"])
    return root
