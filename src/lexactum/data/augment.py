"""The seed's training augmentation, batched in torch so it runs where the batch is (CPU or GPU).

Each image independently gets a random subset of seven transforms, in an order drawn per image:

============  =====================================================================================
``hflip``     mirror left-right: column ``x`` goes to ``W-1-x`` (``torch.flip(dims=[-1])``)
``vflip``     mirror top-bottom: row ``y`` goes to ``H-1-y`` (``torch.flip(dims=[-2])``)
``rot90``     one of 90, 180, 270 degrees, as ``torch.rot90(image, k, dims=(-2, -1))``: counter-clockwise
              when row 0 is drawn at the top (``imshow(origin="upper")``)
``translate`` shift by ``tx*W`` columns and ``ty*H`` rows, ``tx, ty ~ U(-translate, translate)``
``scale``     stretch about the centre by ``sx`` along x and ``sy`` along y, each ``~ U(*scale)``;
              ``> 1`` makes the content larger
``shear_x``   ``x -> x + tan(a) * y`` about the centre, ``a ~ U(-shear_deg, shear_deg)`` degrees: vertical
              lines lean by ``a``, horizontal lines stay put
``shear_y``   ``y -> y + tan(b) * x``, ``b`` drawn the same way
============  =====================================================================================

Each transform is included with probability ``p`` (1/2 by default), so every subset from none to all
occurs, the identity with probability 1/128. The seed lists x/y translation and x/y scaling as one item
each and shear "in x and in y"; shear is split into two transforms, as in imgaug's ShearX/ShearY.

Coordinates: ``x`` is the column (last axis, increasing rightwards), ``y`` the row (increasing
downwards), both measured from the image centre ``((W-1)/2, (H-1)/2)``, so the transforms map pixel centres
of an ``H x W`` image the way the functions named above do. Every image's transforms are composed into
one affine map (the forward map, input position -> output position; one compiled loop over the batch)
and the whole batch is resampled at once, bilinear with zeros outside: on GPUs (any non-CPU device) by
one ``F.affine_grid`` + ``F.grid_sample``; on CPU by a numba kernel with the same result that builds no
grid (2-4x faster there, and it can work in place; 4-band images get a variant that blends a pixel's 4
bands in one vector operation, bit-identical and about 1.7x faster again). Images whose map sends pixel
centres to pixel centres (flips, quarter turns of square images, whole-pixel shifts) are sampled
nearest-neighbour, which for them is exact: they hold exactly the input values.

Random numbers come from ``generator`` (on its own device) or else torch's global CPU generator, 21 per
image in a layout that does not depend on ``p`` or on which transforms are enabled: with the same seed,
switching one transform off leaves the others' parameters unchanged. The matrices are built on the CPU in
float64 (tiny) and only the sampling runs on the batch's device.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lexactum.data._vector4 import bilinear4, deinterleave4, interleave4
from lexactum.errors import LexactumError

TRANSFORMS = ("hflip", "vflip", "rot90", "translate", "scale", "shear_x", "shear_y")
BACKENDS = ("auto", "torch", "numba")

# Columns of the per-call uniform draw: inclusion (7), order keys (7), rotation, tx ty, sx sy, shear x y.
_INCLUDE, _ORDER, _ROT, _SHIFT, _SCALE, _SHEAR = 0, 7, 14, 15, 17, 19
_N_DRAWS = 21


@dataclass(frozen=True)
class AugmentationDraw:
    """What was drawn for a batch: which transforms each image got, in which order, and the result."""

    matrices: torch.Tensor
    """(n, 2, 3) float64 forward maps in centred pixel coordinates:
    ``[x', y'] = M[:, :2] @ [x, y] + M[:, 2]``."""
    included: torch.Tensor
    """(n, 7) bool: image ``i`` got transform ``TRANSFORMS[j]``."""
    order: torch.Tensor
    """(n, 7) long: image ``i`` applies ``TRANSFORMS[order[i, 0]]`` first, then ``order[i, 1]``..."""


def _transform_names(transforms) -> tuple[str, ...]:
    """The enabled transforms as a tuple of names (one name alone is accepted too)."""
    return (transforms,) if isinstance(transforms, str) else tuple(transforms)


def _check_params(p, translate, scale, shear_deg, transforms) -> tuple[float, float]:
    """The scale range as floats, after checking every parameter (one clear error for a bad one)."""
    if not 0.0 <= p <= 1.0:
        raise LexactumError(f"augmentation probability p={p} must be between 0 and 1")
    if not 0.0 <= translate < 1.0:
        raise LexactumError(f"augmentation translate={translate} must be a fraction of the size in [0, 1)")
    try:
        low, high = (float(v) for v in scale)
    except (TypeError, ValueError):
        raise LexactumError(f"augmentation scale={scale!r} must be a pair (low, high)") from None
    if not 0.0 < low <= high:
        raise LexactumError(f"augmentation scale={scale!r} must satisfy 0 < low <= high")
    if not 0.0 <= shear_deg < 90.0:
        raise LexactumError(f"augmentation shear_deg={shear_deg} must be in [0, 90) degrees")
    unknown = sorted(set(transforms) - set(TRANSFORMS))
    if unknown:
        raise LexactumError(
            f"unknown augmentation transform {unknown[0]!r}: choose from {', '.join(TRANSFORMS)}")
    return low, high


def _image_size(size) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if height < 2 or width < 2:
        raise LexactumError(f"cannot augment images of size {height}x{width}: need at least 2x2 pixels")
    return height, width


_ROTATIONS = np.array([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [-1.0, 0.0]],
                       [[-1.0, 0.0], [0.0, -1.0]], [[0.0, -1.0], [1.0, 0.0]]])
"""Linear part of 0, 1, 2, 3 quarter turns (``torch.rot90`` sense) in (x, y) = (column, row)."""


def draw_augmentations(n: int, generator: torch.Generator | None = None, *, p: float = 0.5,
                       translate: float = 0.1, scale: tuple[float, float] = (0.75, 1.1),
                       shear_deg: float = 20.0, transforms=TRANSFORMS, size=101) -> AugmentationDraw:
    """Draw the transforms of ``n`` images of ``size`` (int or ``(H, W)``) and compose their matrices.

    Only the uniform numbers come from torch; turning them into matrices is one compiled loop (the same
    steps as a few dozen numpy operations on tiny arrays cost about 0.3 ms per batch, three times that
    right after the resampling has filled the caches).
    """
    transforms = _transform_names(transforms)
    scale_low, scale_high = _check_params(p, translate, scale, shear_deg, transforms)
    height, width = _image_size(size)
    device = generator.device if generator is not None else torch.device("cpu")
    draws = torch.rand(n, _N_DRAWS, generator=generator, device=device).to("cpu", torch.float64).numpy()
    enabled = np.array([name in transforms for name in TRANSFORMS])
    matrices, included, order = _compose(draws, enabled, float(p), float(translate), scale_low, scale_high,
                                         float(shear_deg), float(width), float(height))
    return AugmentationDraw(matrices=torch.from_numpy(matrices), included=torch.from_numpy(included),
                            order=torch.from_numpy(order))


@numba.njit(cache=True, nogil=True)
def _compose(draws, enabled, p, translate, scale_low, scale_high, shear_deg, width, height):
    """Matrices, inclusion and order of each image from its row of uniform ``draws`` (layout at the top).

    Each included transform is a 2x3 forward map ``[[a, b, e], [c, d, f]]``; they are composed in the
    drawn order (a stable insertion sort of the 7 order keys, so equal keys keep the list's order).
    """
    n = draws.shape[0]
    matrices = np.empty((n, 2, 3))
    included = np.empty((n, 7), np.bool_)
    order = np.empty((n, 7), np.int64)
    for i in range(n):
        row = draws[i]
        for j in range(7):
            included[i, j] = enabled[j] and row[_INCLUDE + j] < p
            order[i, j] = j
        for j in range(1, 7):  # insertion sort of the order keys
            current = order[i, j]
            key = row[_ORDER + current]
            k = j - 1
            while k >= 0 and row[_ORDER + order[i, k]] > key:
                order[i, k + 1] = order[i, k]
                k -= 1
            order[i, k + 1] = current
        a, b, c, d, e, f = 1.0, 0.0, 0.0, 1.0, 0.0, 0.0  # the composition so far
        for position in range(7):
            t = order[i, position]
            if not included[i, t]:
                continue
            # This transform as [[ta, tb, te], [tc, td, tf]]; then total = transform @ total.
            ta, tb, tc, td, te, tf = 1.0, 0.0, 0.0, 1.0, 0.0, 0.0
            if t == 0:
                ta = -1.0
            elif t == 1:
                td = -1.0
            elif t == 2:
                turns = 1 + min(int(math.floor(row[_ROT] * 3.0)), 2)  # 1, 2 or 3 quarter turns
                ta, tb = _ROTATIONS[turns, 0, 0], _ROTATIONS[turns, 0, 1]
                tc, td = _ROTATIONS[turns, 1, 0], _ROTATIONS[turns, 1, 1]
            elif t == 3:
                te = (2.0 * row[_SHIFT] - 1.0) * translate * width
                tf = (2.0 * row[_SHIFT + 1] - 1.0) * translate * height
            elif t == 4:
                ta = scale_low + (scale_high - scale_low) * row[_SCALE]
                td = scale_low + (scale_high - scale_low) * row[_SCALE + 1]
            elif t == 5:
                tb = math.tan(math.radians((2.0 * row[_SHEAR] - 1.0) * shear_deg))
            else:
                tc = math.tan(math.radians((2.0 * row[_SHEAR + 1] - 1.0) * shear_deg))
            a, b, c, d, e, f = (ta * a + tb * c, ta * b + tb * d, tc * a + td * c, tc * b + td * d,
                                ta * e + tb * f + te, tc * e + td * f + tf)
        matrices[i, 0, 0], matrices[i, 0, 1], matrices[i, 0, 2] = a, b, e
        matrices[i, 1, 0], matrices[i, 1, 1], matrices[i, 1, 2] = c, d, f
    return matrices, included, order


def augment_matrices(n: int, generator: torch.Generator | None = None, **params) -> torch.Tensor:
    """(n, 2, 3) float64 forward maps of ``n`` random augmentations; ``params`` as :class:`Augmenter`."""
    return draw_augmentations(n, generator, **params).matrices


@numba.njit(cache=True, nogil=True)
def _exact_maps(inverse):
    """(n,) bool: the output -> input pixel map (:func:`_pixel_inverse`) sends pixel centres to pixel
    centres: a signed permutation of the axes (flips, quarter turns) and a whole-pixel shift. Then
    nearest sampling is exact; bilinear would give the same values, slower. (A quarter turn of an image
    whose height and width differ by an odd number lands between pixels, and is not exact.)"""
    n = inverse.shape[0]
    exact = np.empty(n, np.bool_)
    for i in range(n):
        exact[i] = True
        for r in range(2):
            first, second, shift = inverse[i, r, 0], inverse[i, r, 1], inverse[i, r, 2]
            if (first != np.floor(first) or second != np.floor(second) or abs(first) + abs(second) != 1.0
                    or shift != np.floor(shift)):
                exact[i] = False
    return exact


@numba.njit(cache=True, nogil=True)
def _output_to_input(matrices, scale, offset):
    """(n, 2, 3) output -> input maps of forward ``matrices``, in coordinates ``u`` with centred pixel
    coordinates ``scale * u + offset`` (per axis, x then y). The 2x2 inverse is written out (adjugate over
    determinant): exact for flips and quarter turns."""
    n = matrices.shape[0]
    inverse = np.empty((n, 2, 3))
    linear = np.empty((2, 2))
    for i in range(n):
        a, b, e = matrices[i, 0, 0], matrices[i, 0, 1], matrices[i, 0, 2]
        c, d, f = matrices[i, 1, 0], matrices[i, 1, 1], matrices[i, 1, 2]
        det = a * d - b * c
        linear[0, 0], linear[0, 1], linear[1, 0], linear[1, 1] = d / det, -b / det, -c / det, a / det
        for r in range(2):
            inverse[i, r, 0] = linear[r, 0] * scale[0] / scale[r]
            inverse[i, r, 1] = linear[r, 1] * scale[1] / scale[r]
            inverse[i, r, 2] = (linear[r, 0] * (offset[0] - e) + linear[r, 1] * (offset[1] - f)
                                - offset[r]) / scale[r]
    return inverse


def _checked(matrices, n: int | None = None) -> np.ndarray:
    """``matrices`` as a float64 (n, 2, 3) array of invertible, finite maps, or one clear error."""
    matrices = _as_numpy(matrices)
    if matrices.ndim != 3 or matrices.shape[1:] != (2, 3) or (n is not None and len(matrices) != n):
        wanted = f"({n}, 2, 3)" if n is not None else "(n, 2, 3)"
        raise LexactumError(f"augmentation matrices must have the shape {wanted}, got {matrices.shape}")
    matrices = np.ascontiguousarray(matrices)
    i = _first_unusable(matrices)
    if i >= 0:
        raise LexactumError(f"augmentation matrix {i} is singular or not finite: {matrices[i].tolist()}")
    return matrices


@numba.njit(cache=True, nogil=True)
def _first_unusable(matrices) -> int:
    """Index of the first matrix that is not finite or not invertible, else -1 (compiled: the same
    with numpy takes 0.2 ms per batch, a tenth of the resampling)."""
    for i in range(matrices.shape[0]):
        m = matrices[i]
        det = m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]
        if not (np.isfinite(det) and det != 0.0 and np.isfinite(m[0, 2]) and np.isfinite(m[1, 2])):
            return i
    return -1


def sampling_grid_theta(matrices: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The ``F.affine_grid`` theta (output -> input, normalised, ``align_corners=True``) of forward maps."""
    half_size = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    return torch.from_numpy(_output_to_input(_checked(matrices), half_size, np.zeros(2)))


def _pixel_inverse(matrices: np.ndarray, height: int, width: int) -> np.ndarray:
    """Output -> input maps in raw pixel indices ``(column, row)``."""
    corner = np.array([-(width - 1) / 2.0, -(height - 1) / 2.0])
    return _output_to_input(matrices, np.ones(2), corner)


def _as_numpy(matrices) -> np.ndarray:
    return np.asarray(matrices.cpu() if isinstance(matrices, torch.Tensor) else matrices, dtype=np.float64)


@numba.njit(cache=True, nogil=True)
def _inside_span(slope, offset, limit, width):
    """Columns ``x`` in [0, width) with ``0 <= slope * x + offset < limit``, as (start, end)."""
    if slope == 0.0:
        return (0, width) if 0.0 <= offset < limit else (0, 0)
    low, high = -offset / slope, (limit - offset) / slope
    if slope < 0.0:
        low, high = high, low
    low, high = min(max(low, -2.0), width + 2.0), min(max(high, -2.0), width + 2.0)  # int() stays in range
    start = min(max(0, int(math.floor(low)) - 1), width)
    end = max(min(width, int(math.ceil(high)) + 1), start)
    while start < end and not 0.0 <= slope * start + offset < limit:
        start += 1
    while end > start and not 0.0 <= slope * (end - 1) + offset < limit:
        end -= 1
    return start, end


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _row_positions(inverse, nearest, y, height, width, columns, index, right, below):
    """Where output row ``y`` reads: its span ``[start, end)`` of columns inside the source, and for each
    of them the source cell ``index`` (``row * (W + 2) + column`` in the zero-bordered scratch) with the
    bilinear weights ``right`` and ``below`` (only the cell, rounded, when ``nearest``).

    Along a row the source position is linear in x, so the span is solved once and the kernels' inner
    loops have no bounds tests. This loop vectorises: positions in float64 (from a float array of the
    column numbers, as AVX2 has no int64 -> float conversion), truncated to int32, weights in float32.
    """
    # Source position in bordered pixels: (ax x + bx y + cx, ay x + by y + cy).
    ax, ay = inverse[0, 0], inverse[1, 0]
    offset_x = inverse[0, 1] * y + inverse[0, 2] + 1.0
    offset_y = inverse[1, 1] * y + inverse[1, 2] + 1.0
    start_x, end_x = _inside_span(ax, offset_x, width + 1.0, width)
    start_y, end_y = _inside_span(ay, offset_y, height + 1.0, width)
    start = np.uint64(max(start_x, start_y))
    end = np.uint64(max(max(start_x, start_y), min(end_x, end_y)))
    stride = np.int32(width + 2)
    if nearest:
        for x in range(start, end):
            column = columns[x]
            index[x] = np.uint32(np.int32(np.rint(ay * column + offset_y)) * stride
                                 + np.int32(np.rint(ax * column + offset_x)))
    else:
        for x in range(start, end):
            column = columns[x]
            source_x = ax * column + offset_x
            source_y = ay * column + offset_y
            x0 = np.int32(source_x)
            y0 = np.int32(source_y)
            index[x] = np.uint32(y0 * stride + x0)
            right[x] = np.float32(source_x - x0)
            below[x] = np.float32(source_y - y0)
    return start, end


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _resample(images, inverse, exact, out):
    """Bilinear resampling with zeros outside (nearest where ``exact``), the semantics of ``grid_sample``.

    On CPU, ``affine_grid`` + ``grid_sample`` cost 35-55 % of a lens_flow training step (batch 256), much
    of it in building the grid; this kernel builds none and can write in place (each image is first
    copied into a scratch with a one-pixel zero border). Tests check it against ``F.grid_sample`` and
    scipy. :func:`_resample_on_cpu` sends float32 batches of 4 bands (or 8, 12...) to
    :func:`_resample_by_fours` instead.

    For speed the scratch is one flat plane per channel, read with a single index ``y0 * (W + 2) + x0``
    (its border is zeroed once; only the interior is rewritten per image); each row's indices and
    weights are computed once (:func:`_row_positions`) and reused by every channel; and the inner loops
    index with unsigned integers, which numba does not test for negative (wraparound) indices. All
    positions used are >= 0: the spans keep them in ``[0, W + 1)``. (int32 indices limit an image to
    2**31 padded pixels, far beyond use.)
    """
    n, channels, height, width = images.shape
    stride = np.uint64(width + 2)
    one = np.uint64(1)
    padded = np.zeros((channels, (height + 2) * (width + 2)), dtype=images.dtype)
    columns = np.arange(width).astype(np.float64)
    index = np.empty(width, np.uint32)
    right = np.empty(width, np.float32)
    below = np.empty(width, np.float32)
    for i in range(n):
        for ch in range(channels):
            plane = padded[ch]
            for r in range(height):
                source = images[i, ch, r]
                base = (r + 1) * (width + 2) + 1
                for c in range(width):
                    plane[base + c] = source[c]
        nearest = exact[i]
        for y in range(height):
            start, end = _row_positions(inverse[i], nearest, y, height, width, columns, index, right, below)
            for ch in range(channels):
                plane = padded[ch]
                row = out[i, ch, y]
                for x in range(np.uint64(0), start):
                    row[x] = 0.0
                for x in range(end, np.uint64(width)):
                    row[x] = 0.0
                if nearest:
                    for x in range(start, end):
                        row[x] = plane[np.uint64(index[x])]
                    continue
                for x in range(start, end):
                    k = np.uint64(index[x])
                    fx = right[x]
                    fy = below[x]
                    below_k = k + stride
                    top = plane[k] + fx * (plane[k + one] - plane[k])
                    bottom = plane[below_k] + fx * (plane[below_k + one] - plane[below_k])
                    row[x] = top + fy * (bottom - top)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _resample_by_fours(images, inverse, exact, out):
    """:func:`_resample` for float32 images with a multiple of 4 channels (ground images: 4 bands).

    Each group of 4 channels is copied into a scratch that interleaves them (the 4 values of a pixel
    side by side), so one vector operation (:mod:`lexactum.data._vector4`) blends a pixel's 4 bands,
    and the blended row is transposed back into the 4 output rows. Same arithmetic, per band and in the
    same order, as the planar loop: the results are bit-identical (a test checks it). ``images`` and
    ``out`` must be C-contiguous: the vector operations ignore strides (:func:`_kernel_for` checks).
    """
    n, channels, height, width = images.shape
    four = np.uint64(4)
    stride = np.uint64(4 * (width + 2))  # one scratch row, in floats
    padded = np.zeros(4 * (height + 2) * (width + 2), dtype=np.float32)
    columns = np.arange(width).astype(np.float64)
    index = np.empty(width, np.uint32)
    right = np.empty(width, np.float32)
    below = np.empty(width, np.float32)
    blended = np.empty(4 * width + 16, np.float32)
    whole = np.uint64(width - width % 4)  # columns handled 4 at a time by the transposes
    for i in range(n):
        nearest = exact[i]
        for group in range(channels // 4):
            band = 4 * group
            for r in range(height):
                base = np.uint64(r + 1) * stride + four  # bordered row r + 1, column 1
                first, second, third, fourth = images[i, band, r], images[i, band + 1, r], \
                    images[i, band + 2, r], images[i, band + 3, r]
                for c in range(np.uint64(0), whole, four):
                    interleave4(first, second, third, fourth, c, padded, base + four * c)
                for c in range(whole, np.uint64(width)):
                    at = base + four * c
                    padded[at] = first[c]
                    padded[at + np.uint64(1)] = second[c]
                    padded[at + np.uint64(2)] = third[c]
                    padded[at + np.uint64(3)] = fourth[c]
            for y in range(height):
                start, end = _row_positions(inverse[i], nearest, y, height, width, columns, index, right, below)
                for x in range(start, end):
                    k = four * np.uint64(index[x])
                    if nearest:
                        for lane in range(np.uint64(0), four):
                            blended[four * x + lane] = padded[k + lane]
                    else:
                        bilinear4(padded, k, k + stride, right[x], below[x], blended, four * x)
                for at in range(np.uint64(0), four * start):  # zeros outside the span (vectorised fills)
                    blended[at] = 0.0
                for at in range(four * end, four * np.uint64(width)):
                    blended[at] = 0.0
                band = 4 * group
                first, second, third, fourth = out[i, band, y], out[i, band + 1, y], out[i, band + 2, y], \
                    out[i, band + 3, y]
                # The row goes back to the 4 bands by transposes of 4 pixels, the last few one by one.
                for x in range(np.uint64(0), whole, four):
                    deinterleave4(blended, four * x, first, second, third, fourth, x)
                for x in range(whole, np.uint64(width)):
                    at = four * x
                    first[x] = blended[at]
                    second[x] = blended[at + np.uint64(1)]
                    third[x] = blended[at + np.uint64(2)]
                    fourth[x] = blended[at + np.uint64(3)]


_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def _forget_pool() -> None:
    """Drop the pool without joining it: a forked child (a DataLoader worker) inherits the object but
    none of its threads, and submitting to it there would wait forever."""
    global _pool, _pool_size, _pool_lock
    _pool, _pool_size, _pool_lock = None, 0, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def _helper_pool(workers: int) -> ThreadPoolExecutor:
    """A pool of at least ``workers`` threads kept between calls: starting threads per batch cost more
    (about 1 ms) than a quarter of the resampling of a ground batch of 64 on two cores. It only ever
    grows (a bigger one replaces it; the old one's threads end once no caller holds it), so threads of
    a user's program that augment at the same time never find their pool shut down."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < workers:
            _pool = ThreadPoolExecutor(workers, thread_name_prefix="lexactum-augment")
            _pool_size = workers
        return _pool


def _kernel_for(images: np.ndarray, out: np.ndarray):
    """The resampling kernel for this batch: by fours for C-contiguous float32 arrays with a multiple of 4
    channels (its vector operations read and write rows as plain runs of floats), else the planar one."""
    by_fours = (images.shape[1] % 4 == 0 and images.dtype == out.dtype == np.float32
                and images.flags.c_contiguous and out.flags.c_contiguous)
    return _resample_by_fours if by_fours else _resample


def _resample_on_cpu(images, inverse, exact, out) -> None:
    """Run the kernel on chunks of the batch in torch's number of threads (the kernel releases the GIL)."""
    kernel = _kernel_for(images, out)
    n = len(images)
    workers = max(1, min(torch.get_num_threads(), n // 4))
    if workers == 1:
        kernel(images, inverse, exact, out)
        return
    bounds = [n * k // workers for k in range(workers + 1)]
    pool = _helper_pool(workers - 1)  # the calling thread does the first chunk itself
    chunks = [pool.submit(kernel, images[a:b], inverse[a:b], exact[a:b], out[a:b])
              for a, b in zip(bounds[1:-1], bounds[2:], strict=True)]
    kernel(images[:bounds[1]], inverse[:bounds[1]], exact[:bounds[1]], out[:bounds[1]])
    for chunk in chunks:
        chunk.result()


def apply_matrices(batch: torch.Tensor, matrices: torch.Tensor, backend: str = "auto",
                   inplace: bool = False) -> torch.Tensor:
    """Resample ``batch`` (N, C, H, W) with forward maps ``matrices`` (N, 2, 3): bilinear, zeros outside.

    ``backend``: ``"torch"`` (``affine_grid`` + ``grid_sample``, any device), ``"numba"`` (CPU float32
    only, 2-4x faster there) or ``"auto"`` (numba for CPU float32 batches without grad, torch
    otherwise). Images whose map sends pixel centres to pixel centres are sampled nearest, hence exactly.
    ``matrices`` must be finite and invertible, one per image. ``inplace=True`` overwrites and returns
    ``batch`` (on CPU it saves allocating a new batch).
    """
    height, width = batch.shape[-2:]
    matrices = _checked(matrices, len(batch))
    inverse = _pixel_inverse(matrices, height, width)
    exact = _exact_maps(inverse)
    cpu_ready = batch.device.type == "cpu" and batch.dtype == torch.float32
    if backend == "auto":
        backend = "numba" if cpu_ready and not batch.requires_grad else "torch"
    if backend == "numba":
        if not cpu_ready:
            raise LexactumError(
                f"the numba backend needs a CPU float32 batch, got {batch.device} {batch.dtype}")
        images = batch.detach().contiguous()
        out = images if inplace else torch.empty_like(images)
        _resample_on_cpu(images.numpy(), inverse, exact, out.numpy())
    elif backend == "torch":
        theta = sampling_grid_theta(matrices, height, width).to(device=batch.device, dtype=batch.dtype,
                                                                non_blocking=True)
        grid = F.affine_grid(theta, list(batch.shape), align_corners=True)
        out = F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        if exact.any():  # flips/rotations: nearest sampling lands exactly on the source pixels
            exact = torch.from_numpy(np.flatnonzero(exact)).to(batch.device)
            out[exact] = F.grid_sample(batch[exact], grid[exact], mode="nearest", padding_mode="zeros",
                                       align_corners=True)
    else:
        raise LexactumError(f"unknown augmentation backend {backend!r}: choose {', '.join(BACKENDS)}")
    if inplace and out is not batch:
        with torch.no_grad():
            batch.copy_(out)
        return batch
    return out


class Augmenter(nn.Module):
    """Random seed-style augmentation of training batches: ``augmenter(batch, generator=None) -> batch``.

    ``batch`` is a floating tensor (N, C, H, W) on any device; the result has the same shape, dtype and
    device. With ``enabled=False`` the batch itself is returned. ``inplace=True`` overwrites the batch
    instead of allocating a new one (faster on CPU; fine for a training batch used only once).
    ``backend`` as in :func:`apply_matrices`. The module holds no parameters or buffers.
    """

    def __init__(self, enabled: bool = True, p: float = 0.5, translate: float = 0.1,
                 scale: tuple[float, float] = (0.75, 1.1), shear_deg: float = 20.0,
                 transforms=TRANSFORMS, inplace: bool = False, backend: str = "auto"):
        super().__init__()
        transforms = _transform_names(transforms)
        _check_params(p, translate, scale, shear_deg, transforms)
        if backend not in BACKENDS:
            raise LexactumError(f"unknown augmentation backend {backend!r}: choose {', '.join(BACKENDS)}")
        self.enabled = bool(enabled)
        self.inplace = bool(inplace)
        self.backend = backend
        self.params = dict(p=float(p), translate=float(translate), scale=tuple(float(s) for s in scale),
                           shear_deg=float(shear_deg), transforms=transforms)

    def forward(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.enabled:
            return batch
        if batch.ndim != 4 or not batch.is_floating_point():
            raise LexactumError(
                f"augmentation needs a floating (N, C, H, W) batch, got {tuple(batch.shape)} {batch.dtype}")
        if batch.shape[0] == 0:
            return batch
        matrices = augment_matrices(batch.shape[0], generator, size=tuple(batch.shape[-2:]), **self.params)
        return apply_matrices(batch, matrices, backend=self.backend, inplace=self.inplace)

    def extra_repr(self) -> str:
        settings = dict(enabled=self.enabled, **self.params, inplace=self.inplace, backend=self.backend)
        return ", ".join(f"{key}={value}" for key, value in settings.items())
