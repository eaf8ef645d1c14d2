"""Normalisations by name; ZScale (the seed's choice) is the default.

:func:`zscale` reproduces ``astropy.visualization.ZScaleInterval`` (IRAF's zscale) exactly, per image and
per band, but compiled with numba over a whole batch: about 50x less CPU than calling astropy image by
image. Other methods are plain numpy; adding one is one function plus :func:`register_normalisation`.

Conventions shared by every method: input and output are float32 ``(N, C, H, W)``; a method receives an
array it may overwrite, in which masked pixels are already 0 (like every known challenge pipeline, the issue
and docs/architecture.md ask for) and missing pixels (NaN, inf) are NaN, which it must ignore;
:func:`normalise` turns them into 0 afterwards.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import get_num_threads, njit, prange

from lexactum.errors import LexactumError

Normalisation = Callable[[np.ndarray], np.ndarray]
_REGISTRY: dict[str, Normalisation] = {}


def register_normalisation(name: str):
    """Decorator: make ``fn(images) -> images`` available to :func:`normalise` as ``method=name``."""

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


# --------------------------------------------------------------------------------------------------
# ZScale, compiled. Each step mirrors astropy's ZScaleInterval.get_limits (astropy 6-8):
#   values   = finite pixels, flattened in C order (NaN/inf dropped *before* sampling)
#   samples  = values[::stride][:n_samples], stride = int(max(1, values.size / n_samples)); sorted
#   loop     = at most max_iterations times, while the good count shrinks and stays >= minpix:
#              least-squares line through the good samples (x = rank), flat = samples - line,
#              reject |flat| > krej * std(flat[good]), then dilate the rejected set by ngrow
#              (numpy.convolve(bad, ones(ngrow), "same"): pixel j spreads to j-(ngrow-1)//2 .. j+ngrow//2)
#   limits   = [median -/+ rank offsets * slope / contrast] clipped to the sample range, or the sample
#              range itself when too few good samples are left.
# --------------------------------------------------------------------------------------------------


@njit(cache=True)
def _sort_float32(values, keys, spare, counts):
    """Sort finite float32 ``values`` in place: LSD radix sort on their bits, ~10x faster than numba's
    quicksort for the 1000 ZScale samples. ``keys``/``spare`` (uint32, len >= n) and ``counts`` (4, 256)
    are scratch space."""
    n = values.size
    bits = values.view(np.uint32)
    counts[:, :] = 0
    for i in range(n):
        b = np.int64(bits[i])
        k = (0xFFFFFFFF - b) if b >= 0x80000000 else (b + 0x80000000)  # order-preserving as unsigned
        keys[i] = k
        for d in range(4):
            counts[d, (k >> (8 * d)) & 255] += 1
    source = keys
    target = spare
    for d in range(4):
        if counts[d, (np.int64(source[0]) >> (8 * d)) & 255] == n:
            continue  # every key has the same digit here
        total = 0
        for digit in range(256):
            c = counts[d, digit]
            counts[d, digit] = total
            total += c
        for i in range(n):
            k = np.int64(source[i])
            digit = (k >> (8 * d)) & 255
            target[counts[d, digit]] = k
            counts[d, digit] += 1
        source, target = target, source
    for i in range(n):
        k = np.int64(source[i])
        bits[i] = (k - 0x80000000) if k >= 0x80000000 else (0xFFFFFFFF - k)


@njit(cache=True, fastmath={"reassoc", "contract", "nsz", "arcp"})
def _fit_with_rejection(y, x, good, prefix, minpix, ngrow, krej, max_iterations):
    """ZScale's iterative line fit to the sorted samples ``y`` (x = rank): returns (slope of the last fit,
    number of good samples left, whether any fit was made).

    Branch-free passes with 0/1 weights and reassociation allowed, so that LLVM vectorises them; the sums
    differ from numpy's only in rounding order. ``good`` (float64) and ``prefix`` (int64, len n + 1) are
    scratch space.
    """
    npix = y.size
    before = ngrow // 2  # numpy.convolve(bad, ones(ngrow), "same") spreads sample j to
    after = (ngrow - 1) // 2  # j - after .. j + before, i.e. sample i looks at [i - before, i + after]
    for i in range(npix):
        good[i] = 1.0
    ngood = npix
    last_ngood = npix + 1
    slope = 0.0
    fitted = False
    for _ in range(max_iterations):
        if ngood >= last_ngood or ngood < minpix:
            break
        sum_x = 0.0
        sum_y = 0.0
        sum_xx = 0.0
        sum_xy = 0.0
        for i in range(npix):
            weight = good[i]
            sum_x += weight * x[i]
            sum_y += weight * y[i]
            sum_xx += weight * x[i] * x[i]
            sum_xy += weight * x[i] * y[i]
        x_mean = sum_x / ngood
        y_mean = sum_y / ngood
        sxx = sum_xx - ngood * x_mean * x_mean
        slope = (sum_xy - ngood * x_mean * y_mean) / sxx if sxx > 0 else 0.0
        intercept = y_mean - slope * x_mean
        fitted = True
        sum_f = 0.0
        sum_ff = 0.0
        for i in range(npix):
            weighted = good[i] * (y[i] - (slope * x[i] + intercept))
            sum_f += weighted
            sum_ff += weighted * weighted
        mean_f = sum_f / ngood
        threshold = krej * np.sqrt(max(sum_ff / ngood - mean_f * mean_f, 0.0))
        # rejected samples (old and new) as a running count, then dilation as a window difference
        prefix[0] = 0
        for i in range(npix):
            flat = y[i] - (slope * x[i] + intercept)
            prefix[i + 1] = prefix[i] + ((good[i] == 0.0) | (flat < -threshold) | (flat > threshold))
        last_ngood = ngood
        ngood = 0
        inner_start = min(before, npix)
        inner_stop = max(inner_start, npix - after - 1)
        for i in range(inner_start):  # windows clipped at the start
            clean = prefix[min(i + after + 1, npix)] == prefix[0]
            good[i] = 1.0 if clean else 0.0
            ngood += clean
        for i in range(inner_start, inner_stop):
            clean = prefix[i + after + 1] == prefix[i - before]
            good[i] = 1.0 if clean else 0.0
            ngood += clean
        for i in range(inner_stop, npix):  # windows clipped at the end
            clean = prefix[npix] == prefix[max(i - before, 0)]
            good[i] = 1.0 if clean else 0.0
            ngood += clean
    return slope, ngood, fitted


@njit(cache=True)
def _zscale_limits_one(image, finite_pixels, samples, relative, ranks, good, prefix, keys, spare, counts,
                       n_samples, contrast, max_reject, min_npixels, krej, max_iterations):
    """(vmin, vmax) of one flattened image; NaN, NaN when it has no finite pixel."""
    n_finite = 0
    for i in range(image.size):
        if np.isfinite(image[i]):
            n_finite += 1
    if n_finite == 0:
        return np.nan, np.nan
    stride = int(max(1.0, n_finite / n_samples))
    npix = 0
    if n_finite == image.size:
        npix = min(n_samples, (image.size + stride - 1) // stride)
        for j in range(npix):
            samples[j] = image[j * stride]
    else:  # every stride-th finite pixel: pack the finite ones first (branch-free), then sample
        k = 0
        for i in range(image.size):
            value = image[i]
            finite_pixels[k] = value
            k += np.isfinite(value)
        npix = min(n_samples, (n_finite + stride - 1) // stride)
        for j in range(npix):
            samples[j] = finite_pixels[j * stride]
    sorted_samples = samples[:npix]
    _sort_float32(sorted_samples, keys, spare, counts)
    vmin = np.float64(sorted_samples[0])
    vmax = np.float64(sorted_samples[npix - 1])

    minpix = max(min_npixels, int(npix * max_reject))
    ngrow = max(1, int(npix * 0.01))
    y_ref = np.float64(sorted_samples[npix // 2])  # fit y - y_ref, against cancellation in the sums
    for i in range(npix):
        relative[i] = sorted_samples[i] - y_ref
    slope, ngood, fitted = _fit_with_rejection(relative[:npix], ranks, good, prefix, minpix, ngrow, krej,
                                               max_iterations)
    if fitted and ngood >= minpix:
        if contrast > 0:
            slope = slope / contrast
        center = (npix - 1) // 2
        if npix % 2:
            median = sorted_samples[center]
        else:  # numpy's median of float32: the float32 mean of the two middle values
            median = (sorted_samples[center] + sorted_samples[center + 1]) * np.float32(0.5)
        vmin = max(vmin, median - (center - 1) * slope)
        vmax = min(vmax, median + (npix - center) * slope)
    return vmin, vmax


@njit(cache=True)
def _scale_one(image, out, vmin, vmax):
    """(image - vmin) / (vmax - vmin) clipped to [0, 1], with astropy's float32 subtraction (the division
    becomes a float32 multiplication, within 1 ulp, so the loop vectorises); non-finite pixels and
    degenerate intervals give 0."""
    span = vmax - vmin
    if not span > 0:
        out[:] = 0.0
        return
    vmin32 = np.float32(vmin)
    inverse = np.float32(1.0 / span)
    zero = np.float32(0.0)
    one = np.float32(1.0)
    for i in range(image.size):
        value = image[i]
        scaled = min(max((value - vmin32) * inverse, zero), one)
        out[i] = scaled if value - value == zero else zero


@njit(cache=True, nogil=True)
def _zscale_rows(images, out, limits, scale, start, stop, params):
    """Limits (and, if ``scale``, scaled images into ``out``) for rows ``start:stop`` of ``images`` (M, P).

    Scratch arrays are allocated once per call, not per image. Releases the GIL, so callers may run
    several calls in threads.
    """
    n_samples, contrast, max_reject, min_npixels, krej, max_iterations = params
    finite_pixels = np.empty(images.shape[1], dtype=np.float32)
    samples = np.empty(n_samples, dtype=np.float32)
    relative = np.empty(n_samples, dtype=np.float64)
    ranks = np.arange(n_samples, dtype=np.float64)
    good = np.empty(n_samples, dtype=np.float64)
    prefix = np.empty(n_samples + 1, dtype=np.int64)
    keys = np.empty(n_samples, dtype=np.uint32)
    spare = np.empty(n_samples, dtype=np.uint32)
    counts = np.empty((4, 256), dtype=np.int64)
    for m in range(start, stop):
        vmin, vmax = _zscale_limits_one(images[m], finite_pixels, samples, relative, ranks, good, prefix, keys,
                                        spare, counts, n_samples, contrast, max_reject, min_npixels, krej,
                                        max_iterations)
        limits[m, 0] = vmin
        limits[m, 1] = vmax
        if scale:
            _scale_one(images[m], out[m], vmin, vmax)


@njit(cache=True, parallel=True)
def _zscale_rows_parallel(images, out, limits, scale, n_chunks, params):
    """:func:`_zscale_rows` over ``n_chunks`` slices of the rows on numba's threads (compiled on first use)."""
    n_images = images.shape[0]
    for chunk in prange(n_chunks):
        _zscale_rows(images, out, limits, scale, chunk * n_images // n_chunks,
                     (chunk + 1) * n_images // n_chunks, params)


def _as_batch(images) -> np.ndarray:
    """A float32 (N, C, H, W) view or copy of a (H, W), (C, H, W) or (N, C, H, W) array."""
    images = np.asarray(images)
    if not 2 <= images.ndim <= 4:
        raise LexactumError(f"images have shape {images.shape}; expected (H, W), (C, H, W) or (N, C, H, W)")
    return np.ascontiguousarray(images.reshape((1,) * (4 - images.ndim) + images.shape), dtype=np.float32)


def _checked_out(out, shape: tuple[int, ...]) -> np.ndarray:
    """``out`` as a plain array (a memmap becomes a view of the same memory), or one line if it cannot receive
    a normalised batch of ``shape``: the kernels write float32 rows in place."""
    array = np.asarray(out)
    if array.shape != shape or array.dtype != np.float32 or not array.flags.c_contiguous:
        raise LexactumError(f"out has shape {array.shape} and dtype {array.dtype}; expected a "
                            f"C-contiguous float32 array of shape {shape}")
    return array


def _run_zscale(images, out, scale, parallel, n_samples, contrast, max_reject, min_npixels, krej,
                max_iterations):
    if n_samples < 1 or max_iterations < 0 or min_npixels < 1:
        raise LexactumError(f"zscale parameters out of range: n_samples={n_samples} (>= 1), "
                            f"max_iterations={max_iterations} (>= 0), min_npixels={min_npixels} (>= 1)")
    batch = _as_batch(images)
    n, c = batch.shape[:2]
    flat = batch.reshape(n * c, -1)
    limits = np.empty((n * c, 2), dtype=np.float64)
    flat_out = flat
    if scale:
        if out is None:
            out = np.empty_like(batch)
        flat_out = _checked_out(out, batch.shape).reshape(n * c, -1)
    params = (int(n_samples), float(contrast), float(max_reject), int(min_npixels), float(krej),
              int(max_iterations))
    if parallel and n * c > 1:
        _zscale_rows_parallel(flat, flat_out, limits, scale, min(n * c, 4 * get_num_threads()), params)
    elif n * c:
        _zscale_rows(flat, flat_out, limits, scale, 0, n * c, params)
    return out, limits[:, 0].reshape(n, c), limits[:, 1].reshape(n, c)


def zscale_limits(images, contrast: float = 0.25, n_samples: int = 1000, max_reject: float = 0.5,
                  min_npixels: int = 5, krej: float = 2.5, max_iterations: int = 5, parallel: bool = False):
    """ZScale ``(vmin, vmax)``, each of shape (N, C), for images (N, C, H, W) (or (C, H, W), (H, W)).

    Equal to ``ZScaleInterval(...).get_limits(image[np.isfinite(image)])`` per band image, which is also
    what astropy gives for the image with its NaN/inf in place (it drops them before sampling). An image
    without any finite pixel gets NaN limits. ``parallel=True`` spreads the images over numba's threads.
    """
    _, vmin, vmax = _run_zscale(images, None, False, parallel, n_samples, contrast, max_reject, min_npixels,
                                krej, max_iterations)
    return vmin, vmax


def zscale(images, contrast: float = 0.25, n_samples: int = 1000, max_reject: float = 0.5,
           min_npixels: int = 5, krej: float = 2.5, max_iterations: int = 5, out=None,
           parallel: bool = False) -> np.ndarray:
    """Each band image scaled by its ZScale limits to [0, 1] with clipping, as the seed did.

    Returns float32 (N, C, H, W) (a 2-D or 3-D input gets leading axes of 1). NaN/inf pixels are ignored
    for the limits and become 0; a degenerate interval (constant image) gives 0 everywhere. ``out`` (a
    C-contiguous float32 array of the (N, C, H, W) batch's shape, e.g. a memmap slice, or a 4-D
    ``images`` itself for in-place work) receives the result. ``parallel=True`` spreads the images over
    numba's threads (worth it for large batches when the caller is not already parallel; the first call
    compiles ~10 s more).
    """
    result, _, _ = _run_zscale(images, out, True, parallel, n_samples, contrast, max_reject, min_npixels,
                               krej, max_iterations)
    return result


# --------------------------------------------------------------------------------------------------
# Registered methods: fn(images (N, C, H, W) float32, writable, masks 0, NaN/inf as NaN) -> images.
# --------------------------------------------------------------------------------------------------


@register_normalisation("zscale")
def _zscale_method(images: np.ndarray) -> np.ndarray:
    """The seed's normalisation (ZScale, clipped to [0, 1])."""
    return zscale(images, out=images)


@register_normalisation("none")
def _no_normalisation(images: np.ndarray) -> np.ndarray:
    """Raw fluxes (only masked and NaN/inf pixels become 0)."""
    return images


def _per_band(images: np.ndarray, reducer, **kwargs) -> np.ndarray:
    """``reducer`` over the pixels of each image and band, ignoring NaN, shape (N, C, 1, 1); NaN if empty."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bands: result NaN, handled by callers
        return reducer(images, axis=(2, 3), keepdims=True, **kwargs)


def _rescale(images: np.ndarray, low: np.ndarray, span: np.ndarray) -> np.ndarray:
    """(images - low) / span in place, computed in float64 (small spans on large offsets stay exact);
    bands with no positive finite span become 0."""
    usable = np.isfinite(span) & (span > 0)
    inverse = np.where(usable, 1.0 / np.where(usable, span, 1.0), 0.0)
    images[...] = (images - np.where(usable, low, 0.0)) * inverse
    return images


@register_normalisation("minmax")
def _minmax(images: np.ndarray) -> np.ndarray:
    """Each image and band scaled linearly so that its finite pixels span [0, 1]."""
    low = _per_band(images, np.nanmin)
    high = _per_band(images, np.nanmax)
    return _rescale(images, low, high - low)


@register_normalisation("standardize")
def _standardize(images: np.ndarray) -> np.ndarray:
    """Each image and band to zero mean and unit standard deviation over its finite pixels."""
    mean = _per_band(images, np.nanmean, dtype=np.float64)
    std = _per_band(images, np.nanstd, dtype=np.float64)
    return _rescale(images, mean, std)


@register_normalisation("asinh")
def _asinh(images: np.ndarray) -> np.ndarray:
    """asinh((x - median) / sigma), then min-max to [0, 1], per image and band.

    sigma is the robust noise level 1.4826 * MAD (the standard deviation when the MAD is 0), so faint
    features are stretched linearly near the noise and bright cores compressed logarithmically.
    """
    median = _per_band(images, np.nanmedian)
    images -= np.where(np.isfinite(median), median, 0)
    sigma = 1.4826 * _per_band(np.abs(images), np.nanmedian)
    sigma = np.where(sigma > 0, sigma, _per_band(images, np.nanstd, dtype=np.float64))
    _rescale(images, np.zeros_like(sigma), sigma)
    np.arcsinh(images, out=images)
    return _minmax(images)


@njit(cache=True, nogil=True)
def _copy_marking_missing(source, target, mask_value, use_mask):
    """target = source with non-finite pixels as NaN and, if ``use_mask``, those equal to ``mask_value`` as 0.

    Written without branches (x - x is 0 only for finite x) so that it vectorises.
    """
    zero = np.float32(0.0)
    nan = np.float32(np.nan)
    for i in range(source.size):
        value = source[i]
        value = zero if use_mask & (value == mask_value) else value
        target[i] = nan if value - value != zero else value


@njit(cache=True, nogil=True)
def _zero_non_finite(values):
    """Missing pixels become 0 in every method's output."""
    zero = np.float32(0.0)
    for i in range(values.size):
        value = values[i]
        values[i] = value if value - value == zero else zero


def normalise(images, method: str = "zscale", mask_value: float | None = None, out=None) -> np.ndarray:
    """Normalise images (N, C, H, W) (or (C, H, W), (H, W)) with a registered method; float32 (N, C, H, W).

    Pixels equal to ``mask_value`` (ground: 100.0) are set to 0 before normalising (so they count as a flux
    of 0); NaN/inf pixels are ignored by the method and 0 in the result. Works on a copy, or in ``out``
    (float32, the (N, C, H, W) batch's shape, C-contiguous; may be a 4-D ``images`` itself or a memmap
    slice).
    """
    fn = get_normalisation(method)
    batch = _as_batch(images)
    if out is None:
        result = work = np.empty_like(batch)
    else:
        result, work = out, _checked_out(out, batch.shape)
    _copy_marking_missing(batch.reshape(-1), work.reshape(-1),
                          np.float32(0.0 if mask_value is None else mask_value), mask_value is not None)
    fn(work)
    _zero_non_finite(work.reshape(-1))
    return result


@njit(cache=True)
def blank_rows(flat: np.ndarray) -> np.ndarray:
    """Which rows of a 2-D array hold one value only (a blank image: all NaN or masked, hence 0 once normalised,
    or constant). Stops at a row's first differing pixel, so a real image costs a few comparisons, not a pass."""
    blank = np.ones(flat.shape[0], dtype=np.bool_)
    for i in range(flat.shape[0]):
        first = flat[i, 0]
        for j in range(1, flat.shape[1]):
            if flat[i, j] != first:
                blank[i] = False
                break
    return blank
