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
one 3x3 matrix (the forward map, input position -> output position; 7 batched products, no loop over
images) and the whole batch is resampled at once, bilinear with zeros outside: on GPUs (any non-CPU
device) by one ``F.affine_grid`` + ``F.grid_sample``; on CPU by a numba kernel with the same result that
builds no grid (2-4x faster there, and it can work in place). Images whose matrix is a pure
flip/rotation are sampled nearest-neighbour, which for them is exact: they hold exactly the input values.

Random numbers come from ``generator`` (on its own device) or else torch's global CPU generator, 21 per
image in a layout that does not depend on ``p`` or on which transforms are enabled: with the same seed,
switching one transform off leaves the others' parameters unchanged. The matrices are built on the CPU in
float64 (tiny) and only the sampling runs on the batch's device.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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

    The small per-image matrices are built with numpy: per call this costs well under a millisecond,
    where the same steps as torch operations cost a few (it matters at the seed's batch size of 8).
    """
    transforms = _transform_names(transforms)
    scale_low, scale_high = _check_params(p, translate, scale, shear_deg, transforms)
    height, width = _image_size(size)
    device = generator.device if generator is not None else torch.device("cpu")
    draws = torch.rand(n, _N_DRAWS, generator=generator, device=device).to("cpu", torch.float64).numpy()

    enabled = np.array([name in transforms for name in TRANSFORMS])
    included = (draws[:, _INCLUDE:_INCLUDE + 7] < p) & enabled
    order = np.argsort(draws[:, _ORDER:_ORDER + 7], axis=1)

    # One candidate matrix per image and transform (identity where not included), forward maps.
    candidates = np.tile(np.eye(3), (n, 7, 1, 1))
    candidates[:, 0, 0, 0] = -1.0
    candidates[:, 1, 1, 1] = -1.0
    quarter_turns = 1 + np.minimum(np.floor(draws[:, _ROT] * 3), 2).astype(np.int64)  # 1, 2 or 3
    candidates[:, 2, :2, :2] = _ROTATIONS[quarter_turns]
    shift = (2.0 * draws[:, _SHIFT:_SHIFT + 2] - 1.0) * translate
    candidates[:, 3, 0, 2] = shift[:, 0] * width
    candidates[:, 3, 1, 2] = shift[:, 1] * height
    stretch = scale_low + (scale_high - scale_low) * draws[:, _SCALE:_SCALE + 2]
    candidates[:, 4, 0, 0] = stretch[:, 0]
    candidates[:, 4, 1, 1] = stretch[:, 1]
    slant = np.tan(np.deg2rad((2.0 * draws[:, _SHEAR:_SHEAR + 2] - 1.0) * shear_deg))
    candidates[:, 5, 0, 1] = slant[:, 0]
    candidates[:, 6, 1, 0] = slant[:, 1]
    candidates = np.where(included[:, :, None, None], candidates, np.eye(3))

    rows = np.arange(n)
    total = np.tile(np.eye(3), (n, 1, 1))
    for position in range(7):  # 7 batched products, no loop over images
        total = candidates[rows, order[:, position]] @ total
    return AugmentationDraw(matrices=torch.from_numpy(np.ascontiguousarray(total[:, :2, :])),
                            included=torch.from_numpy(included), order=torch.from_numpy(order))


def augment_matrices(n: int, generator: torch.Generator | None = None, **params) -> torch.Tensor:
    """(n, 2, 3) float64 forward maps of ``n`` random augmentations; ``params`` as :class:`Augmenter`."""
    return draw_augmentations(n, generator, **params).matrices


def _is_pixel_permutation(matrices: np.ndarray) -> np.ndarray:
    """(n,) bool: the map only permutes pixel centres (flips and quarter turns, no shift)."""
    linear = matrices[:, :, :2]
    return ((linear == np.round(linear)).all(axis=(1, 2)) & (np.abs(linear).sum(axis=2) == 1).all(axis=1)
            & (matrices[:, :, 2] == 0).all(axis=1))


def _inverse_in(matrices: np.ndarray, to_centred: np.ndarray) -> np.ndarray:
    """(n, 2, 3) float64 output -> input maps of forward ``matrices``, in the coordinates that the 3x3
    ``to_centred`` maps to centred pixel coordinates. (The 2x2 inverse is written out: exact for flips and
    rotations, and batched ``torch.linalg.inv`` takes milliseconds on CPU.)"""
    (a, b), (c, d) = matrices[:, 0, :2].T, matrices[:, 1, :2].T
    det = a * d - b * c
    inverse = np.zeros((len(matrices), 3, 3))
    inverse[:, :2, :2] = np.stack([np.stack([d, -b], 1), np.stack([-c, a], 1)], 1) / det[:, None, None]
    inverse[:, :2, 2] = -(inverse[:, :2, :2] @ matrices[:, :, 2:])[:, :, 0]
    inverse[:, 2, 2] = 1.0
    return np.ascontiguousarray((np.linalg.inv(to_centred) @ inverse @ to_centred)[:, :2, :])


def sampling_grid_theta(matrices: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The ``F.affine_grid`` theta (output -> input, normalised, ``align_corners=True``) of forward maps."""
    half_size = np.diag([(width - 1) / 2.0, (height - 1) / 2.0, 1.0])
    return torch.from_numpy(_inverse_in(_as_numpy(matrices), half_size))


def _pixel_inverse(matrices: np.ndarray, height: int, width: int) -> np.ndarray:
    """Output -> input maps in raw pixel indices ``(column, row)``."""
    from_corner = np.eye(3)
    from_corner[:2, 2] = -(width - 1) / 2.0, -(height - 1) / 2.0
    return _inverse_in(matrices, from_corner)


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
    start = min(max(0, int(math.floor(low)) - 1), width)
    end = max(min(width, int(math.ceil(high)) + 1), start)
    while start < end and not 0.0 <= slope * start + offset < limit:
        start += 1
    while end > start and not 0.0 <= slope * (end - 1) + offset < limit:
        end -= 1
    return start, end


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _resample(images, inverse, exact, out):
    """Bilinear resampling with zeros outside (nearest where ``exact``), the semantics of ``grid_sample``.

    On CPU, ``affine_grid`` + ``grid_sample`` cost 35-55 % of a lens_flow training step (batch 256), much
    of it in building the grid; this kernel builds none and can write in place (each image is first
    copied into a scratch with a one-pixel zero border). Along each output row the source position is
    linear in x, so the span of columns that read inside the image is solved once per row and the inner
    loop has no bounds tests. Tests check it against ``F.grid_sample`` and scipy.

    For speed the scratch is one flat plane per channel, read with a single index ``y0 * (W + 2) + x0``
    (its border is zeroed once; only the interior is rewritten per image); each row's indices and
    weights are computed once, in a loop that vectorises (positions in float64, truncated to int32;
    weights in float32), and reused by every channel; and the inner loops index with unsigned integers,
    which numba does not test for negative (wraparound) indices. All positions used are >= 0: the spans
    keep them in ``[0, W + 1)``. (int32 indices limit an image to 2**31 padded pixels, far beyond use.)
    """
    n, channels, height, width = images.shape
    stride = np.uint64(width + 2)
    one = np.uint64(1)
    padded = np.zeros((channels, (height + 2) * (width + 2)), dtype=images.dtype)
    stride32 = np.int32(width + 2)
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
        # Source position in padded pixels: (ax x + bx y + cx, ay x + by y + cy).
        ax, bx, cx = inverse[i, 0, 0], inverse[i, 0, 1], inverse[i, 0, 2] + 1.0
        ay, by, cy = inverse[i, 1, 0], inverse[i, 1, 1], inverse[i, 1, 2] + 1.0
        nearest = exact[i]
        for y in range(height):
            offset_x = bx * y + cx
            offset_y = by * y + cy
            start_x, end_x = _inside_span(ax, offset_x, width + 1.0, width)
            start_y, end_y = _inside_span(ay, offset_y, height + 1.0, width)
            start = np.uint64(max(start_x, start_y))
            end = np.uint64(max(max(start_x, start_y), min(end_x, end_y)))
            if nearest:
                for x in range(start, end):
                    row_index = np.int32(np.rint(ay * x + offset_y)) * stride32
                    index[x] = np.uint32(row_index + np.int32(np.rint(ax * x + offset_x)))
            else:
                for x in range(start, end):
                    sx = ax * x + offset_x
                    sy = ay * x + offset_y
                    x0 = np.int32(sx)  # int32: these conversions vectorise (AVX2 has none to 64 bits)
                    y0 = np.int32(sy)
                    index[x] = np.uint32(y0 * stride32 + x0)
                    right[x] = np.float32(sx - x0)
                    below[x] = np.float32(sy - y0)
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


def _resample_on_cpu(images, inverse, exact, out) -> None:
    """Run the kernel on chunks of the batch in torch's number of threads (the kernel releases the GIL)."""
    n = len(images)
    workers = max(1, min(torch.get_num_threads(), n // 4))
    if workers == 1:
        _resample(images, inverse, exact, out)
        return
    bounds = [n * k // workers for k in range(workers + 1)]
    with ThreadPoolExecutor(workers - 1) as pool:  # the calling thread does the first chunk itself
        chunks = [pool.submit(_resample, images[a:b], inverse[a:b], exact[a:b], out[a:b])
                  for a, b in zip(bounds[1:-1], bounds[2:], strict=True)]
        _resample(images[:bounds[1]], inverse[:bounds[1]], exact[:bounds[1]], out[:bounds[1]])
        for chunk in chunks:
            chunk.result()


def apply_matrices(batch: torch.Tensor, matrices: torch.Tensor, backend: str = "auto",
                   inplace: bool = False) -> torch.Tensor:
    """Resample ``batch`` (N, C, H, W) with forward maps ``matrices`` (N, 2, 3): bilinear, zeros outside.

    ``backend``: ``"torch"`` (``affine_grid`` + ``grid_sample``, any device), ``"numba"`` (CPU float32
    only, 2-4x faster there) or ``"auto"`` (numba for CPU float32 batches without grad, torch
    otherwise). Images whose map only permutes pixels (flips, quarter turns) are sampled nearest, hence
    exactly. ``inplace=True`` overwrites and returns ``batch`` (on CPU it saves allocating a new batch).
    """
    height, width = batch.shape[-2:]
    matrices = _as_numpy(matrices)
    exact = _is_pixel_permutation(matrices)
    cpu_ready = batch.device.type == "cpu" and batch.dtype == torch.float32
    if backend == "auto":
        backend = "numba" if cpu_ready and not batch.requires_grad else "torch"
    if backend == "numba":
        if not cpu_ready:
            raise LexactumError(
                f"the numba backend needs a CPU float32 batch, got {batch.device} {batch.dtype}")
        images = batch.detach().contiguous()
        out = images if inplace else torch.empty_like(images)
        _resample_on_cpu(images.numpy(), _pixel_inverse(matrices, height, width), exact, out.numpy())
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
