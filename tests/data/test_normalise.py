"""ZScale equals astropy's ZScaleInterval; the registry methods do what they say; masks and NaN become 0."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.visualization import ZScaleInterval
from scipy import stats

from lexactum.data import normalise as normalise_module
from lexactum.data.fits import read_fits
from lexactum.data.normalise import (
    get_normalisation,
    list_normalisations,
    normalise,
    register_normalisation,
    zscale,
    zscale_limits,
)
from lexactum.errors import LexactumError


def _varied_images(n: int, seed: int = 0, size: int = 101) -> np.ndarray:
    """(n, size, size) float32 images of many kinds: noise at real flux scales, galaxies, masks, NaN, inf,
    quantised values, large offsets, almost-empty images, constants."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2.0
    images = np.empty((n, size, size), dtype=np.float32)
    for k in range(n):
        sigma = 10.0 ** rng.uniform(-14, 1)
        image = rng.normal(0.0, sigma, (size, size))
        kind = k % 10
        if kind in (1, 2, 3):  # a galaxy, sometimes very bright
            width = rng.uniform(1, 20)
            image += sigma * 10 ** rng.uniform(0, 4) * np.exp(-0.5 * (x**2 + y**2) / width**2)
        if kind == 2:  # masked pixels of the ground survey
            image[rng.integers(0, size, 60), rng.integers(0, size, 60)] = 100.0
        if kind == 3:
            image[rng.random((size, size)) < rng.uniform(0.001, 0.5)] = np.nan
        if kind == 4:
            image[rng.integers(0, size, 40), rng.integers(0, size, 40)] = np.inf
            image[0, : rng.integers(1, 50)] = -np.inf
        if kind == 5:  # few distinct values
            image = np.round(image / sigma * rng.uniform(0.5, 4))
        if kind == 6:  # small range on a large offset
            image += sigma * 10 ** rng.uniform(2, 5)
        if kind == 7:  # only a handful of finite pixels (fewer than min_npixels sometimes)
            keep = rng.integers(1, 12)
            flat = np.full(size * size, np.nan)
            flat[rng.choice(size * size, keep, replace=False)] = rng.normal(size=keep)
            image = flat.reshape(size, size)
        if kind == 8:  # exponential (skewed) fluxes
            image = rng.exponential(sigma, (size, size)) * (1 + (rng.random((size, size)) < 0.05) * 50)
        images[k] = image
    images[9::20] = 3.25  # constant images
    images[19::20] = 0.0
    return images


def _astropy_limits(image: np.ndarray, **params) -> tuple[float, float]:
    return ZScaleInterval(**params).get_limits(image[np.isfinite(image)])


def _assert_limits_equal(images: np.ndarray, **params) -> None:
    vmin, vmax = zscale_limits(images[:, None], **params)
    assert vmin.shape == vmax.shape == (len(images), 1)
    for k, image in enumerate(images):
        low, high = _astropy_limits(image, **params)
        # the brief's tolerance; for constant images astropy's rounding noise in the fitted slope can
        # even give low > high by ~1e-15 relative, where we give exactly the constant
        tolerance = max(1e-6 * (high - low), 1e-12 * max(abs(low), abs(high)))
        assert abs(vmin[k, 0] - low) <= tolerance and abs(vmax[k, 0] - high) <= tolerance, (
            f"image {k}: ours {vmin[k, 0]!r}, {vmax[k, 0]!r}; astropy {low!r}, {high!r}")


def test_limits_match_astropy_on_varied_images():
    _assert_limits_equal(_varied_images(300))


def test_limits_match_astropy_with_other_parameters():
    images = _varied_images(60, seed=1, size=64)
    _assert_limits_equal(images, contrast=0.6, n_samples=300, max_reject=0.3, min_npixels=20, krej=3.5,
                         max_iterations=2)
    _assert_limits_equal(images, n_samples=5000)  # more samples than pixels: stride 1


def test_limits_ignore_non_finite_like_astropy():
    """astropy drops NaN/inf before sampling, so the image with them in place gives the same limits."""
    images = _varied_images(40, seed=2)[[3, 4, 13, 14, 23, 24, 33, 34]]
    vmin, vmax = zscale_limits(images)
    for k, image in enumerate(images):
        assert np.allclose((vmin[0, k], vmax[0, k]), ZScaleInterval().get_limits(image), rtol=1e-6, atol=0)


def test_limits_and_scaling_on_real_files(samples):
    files = sorted(samples.rglob("*.fits"))
    images = np.stack([read_fits(path) for path in files])
    _assert_limits_equal(images)
    scaled = zscale(images[:, None])[:, 0]
    for image, ours in zip(images, scaled, strict=True):
        reference = np.nan_to_num(ZScaleInterval()(image), nan=0.0)
        assert np.allclose(ours, reference, rtol=0, atol=1e-6)


def test_scaling_matches_astropy_and_zeroes_missing_pixels():
    images = _varied_images(120, seed=3)
    scaled = zscale(images[:, None])
    assert scaled.shape == (120, 1, 101, 101) and scaled.dtype == np.float32
    finite = np.isfinite(images)
    assert np.all(scaled[:, 0][~finite] == 0)
    compared = 0
    for k, image in enumerate(images):
        low, high = _astropy_limits(image)
        if not high > low:  # degenerate interval: we give 0 (astropy would give clip(x - vmin))
            assert np.all(scaled[k] == 0)
            continue
        reference = ZScaleInterval()(image)
        assert np.allclose(scaled[k, 0][finite[k]], reference[finite[k]], rtol=0, atol=1e-6), k
        compared += 1
    assert compared > 100


def test_constant_and_empty_images():
    images = np.stack([np.full((2, 20, 20), 7.5, np.float32), np.full((2, 20, 20), np.nan, np.float32)])
    with np.errstate(all="raise"):
        scaled = zscale(images)
        vmin, vmax = zscale_limits(images)
    assert np.all(scaled == 0)
    assert np.all(vmin[0] == 7.5) and np.all(vmax[0] == 7.5)
    assert np.all(np.isnan(vmin[1])) and np.all(np.isnan(vmax[1]))


def test_bands_and_images_are_independent():
    images = _varied_images(24, seed=4).reshape(6, 4, 101, 101)
    batch = zscale(images)
    for n in range(6):
        assert np.array_equal(zscale(images[n]), batch[n:n + 1])  # (C, H, W) -> (1, C, H, W)
        for c in range(4):
            assert np.array_equal(zscale(images[n, c])[0, 0], batch[n, c])  # (H, W) -> (1, 1, H, W)


def test_out_in_place_and_memmap(tmp_path):
    images = _varied_images(8, seed=5).reshape(4, 2, 101, 101)
    expected = zscale(images)
    memmap = np.lib.format.open_memmap(tmp_path / "c.npy", mode="w+", dtype=np.float32, shape=(6, 2, 101, 101))
    zscale(images, out=memmap[1:5])
    assert np.array_equal(memmap[1:5], expected) and np.all(memmap[0] == 0)
    in_place = images.copy()
    assert zscale(in_place, out=in_place) is in_place
    assert np.array_equal(in_place, expected)
    with pytest.raises(LexactumError, match="out has shape"):
        zscale(images, out=np.empty((4, 2, 101, 100), np.float32))


def test_registry_lists_methods_and_rejects_unknown():
    assert {"zscale", "none", "minmax", "asinh", "standardize"} <= set(list_normalisations())
    with pytest.raises(LexactumError, match=r"'zscal'.*asinh.*minmax.*none.*standardize.*zscale"):
        get_normalisation("zscal")
    with pytest.raises(LexactumError, match="unknown normalisation"):
        normalise(np.zeros((1, 1, 4, 4)), method="nope")


def test_adding_a_method_is_one_decorated_function(monkeypatch):
    monkeypatch.setattr(normalise_module, "_REGISTRY", dict(normalise_module._REGISTRY))

    @register_normalisation("double")
    def double(images):
        images *= 2
        return images

    result = normalise(np.ones((2, 1, 3, 3)), method="double")
    assert "double" in list_normalisations() and np.all(result == 2)


def _ground_batch(seed: int = 6) -> np.ndarray:
    images = _varied_images(16, seed=seed).reshape(4, 4, 101, 101)
    images[0, 1, 10:13, 20:40] = 100.0
    images[2, :, 50, 50] = np.nan
    images[3, 3, 0, 0] = -np.inf
    return images


@pytest.mark.parametrize("method", ["zscale", "none", "minmax", "asinh", "standardize"])
def test_masks_and_non_finite_become_zero(method):
    images = _ground_batch()
    original = images.copy()
    result = normalise(images, method=method, mask_value=100.0)
    assert result.shape == images.shape and result.dtype == np.float32
    assert np.array_equal(images, original, equal_nan=True)  # input untouched
    assert np.all(result[~np.isfinite(images)] == 0) and np.all(np.isfinite(result))
    # masked pixels are set to 0 before normalising (a flux of 0, not ignored)
    as_zero = np.where(images == 100.0, 0.0, images)
    assert np.array_equal(result, normalise(as_zero, method=method))
    if method == "none":
        assert np.all(result[images == 100.0] == 0)


def test_zscale_method_is_zscale_of_masked_image():
    images = _ground_batch()
    masked = np.where(images == 100.0, np.float32(0.0), images)
    assert (images == 100.0).any()
    assert np.array_equal(normalise(images, mask_value=100.0), zscale(masked))


def test_normalise_into_out(tmp_path):
    images = _ground_batch()
    memmap = np.lib.format.open_memmap(tmp_path / "n.npy", mode="w+", dtype=np.float32, shape=(5, 4, 101, 101))
    normalise(images, mask_value=100.0, out=memmap[1:])
    assert np.array_equal(memmap[1:], normalise(images, mask_value=100.0))
    in_place = images.copy()
    assert normalise(in_place, out=in_place) is in_place


def _finite_bands(images, result):
    for n, c in np.ndindex(images.shape[:2]):
        keep = np.isfinite(images[n, c])
        yield images[n, c][keep], result[n, c][keep]


def test_minmax_matches_sklearn():
    from sklearn.preprocessing import minmax_scale

    images = _ground_batch()
    result = normalise(images, method="minmax")
    for raw, ours in _finite_bands(images, result):
        if raw.max() > raw.min():
            assert np.allclose(ours, minmax_scale(raw.astype(np.float64)), atol=1e-6)
        else:
            assert np.all(ours == 0)


def test_standardize_matches_scipy():
    images = _ground_batch()
    result = normalise(images, method="standardize")
    for raw, ours in _finite_bands(images, result):
        if raw.std() > 0:
            assert np.allclose(ours, stats.zscore(raw.astype(np.float64)), rtol=1e-4, atol=1e-4)
        else:
            assert np.all(ours == 0)


def test_asinh_is_monotonic_and_in_unit_range():
    images = _ground_batch()
    result = normalise(images, method="asinh")
    assert result.min() >= 0 and result.max() <= 1
    for raw, ours in _finite_bands(images, result):
        if raw.max() > raw.min():
            assert ours.min() == 0 and ours.max() == pytest.approx(1)
            assert stats.spearmanr(raw, ours).statistic > 0.999  # same order (ties from float32 rounding)
        else:
            assert np.all(ours == 0)


def test_none_keeps_fluxes():
    images = _ground_batch()
    result = normalise(images, method="none", mask_value=100.0)
    keep = np.isfinite(images) & (images != 100.0)
    assert np.array_equal(result[keep], images[keep])


def test_bad_shapes_and_parameters():
    with pytest.raises(LexactumError, match=r"shape \(5,\)"):
        zscale(np.zeros(5))
    with pytest.raises(LexactumError, match="n_samples=0"):
        zscale_limits(np.zeros((3, 3)), n_samples=0)


def test_parallel_equals_serial():
    images = _varied_images(40, seed=7).reshape(10, 4, 101, 101)
    assert np.array_equal(zscale(images, parallel=True), zscale(images))
    for ours, serial in zip(zscale_limits(images, parallel=True), zscale_limits(images), strict=True):
        assert np.array_equal(ours, serial, equal_nan=True)
