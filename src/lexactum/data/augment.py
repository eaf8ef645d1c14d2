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
one 3x3 matrix (the forward map, input position -> output position) and the batch is resampled with a
single ``affine_grid`` + ``grid_sample`` (bilinear, zeros outside). Images whose matrix is a pure
flip/rotation are resampled with nearest-neighbour sampling, which for them is exact, so flipped or
rotated images hold exactly the input values.

Random numbers come from ``generator`` (or torch's global generator) on its own device, in a layout that
does not depend on ``p`` or on which transforms are enabled: with the same seed, switching one transform
off leaves the others' parameters unchanged.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

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


def draw_augmentations(n: int, generator: torch.Generator | None = None, *, p: float = 0.5,
                       translate: float = 0.1, scale: tuple[float, float] = (0.75, 1.1),
                       shear_deg: float = 20.0, transforms=TRANSFORMS, size=101) -> AugmentationDraw:
    """Draw the transforms of ``n`` images of ``size`` (int or ``(H, W)``) and compose their matrices."""
    scale_low, scale_high = _check_params(p, translate, scale, shear_deg, transforms)
    height, width = _image_size(size)
    device = generator.device if generator is not None else torch.device("cpu")
    draws = torch.rand(n, _N_DRAWS, generator=generator, device=device).to("cpu", torch.float64)

    enabled = torch.tensor([name in transforms for name in TRANSFORMS])
    included = (draws[:, _INCLUDE:_INCLUDE + 7] < p) & enabled
    order = torch.argsort(draws[:, _ORDER:_ORDER + 7], dim=1)

    # One candidate matrix per image and transform (identity where not included), forward maps.
    candidates = torch.eye(3, dtype=torch.float64).repeat(n, 7, 1, 1)
    candidates[:, 0, 0, 0] = -1.0
    candidates[:, 1, 1, 1] = -1.0
    quarter_turns = 1 + torch.floor(draws[:, _ROT] * 3).clamp(max=2).long()  # 1, 2 or 3
    rotations = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [-1.0, 0.0]],
                              [[-1.0, 0.0], [0.0, -1.0]], [[0.0, -1.0], [1.0, 0.0]]], dtype=torch.float64)
    candidates[:, 2, :2, :2] = rotations[quarter_turns]
    shift = (2.0 * draws[:, _SHIFT:_SHIFT + 2] - 1.0) * translate
    candidates[:, 3, 0, 2] = shift[:, 0] * width
    candidates[:, 3, 1, 2] = shift[:, 1] * height
    stretch = scale_low + (scale_high - scale_low) * draws[:, _SCALE:_SCALE + 2]
    candidates[:, 4, 0, 0] = stretch[:, 0]
    candidates[:, 4, 1, 1] = stretch[:, 1]
    slant = torch.tan(torch.deg2rad((2.0 * draws[:, _SHEAR:_SHEAR + 2] - 1.0) * shear_deg))
    candidates[:, 5, 0, 1] = slant[:, 0]
    candidates[:, 6, 1, 0] = slant[:, 1]
    identity = torch.eye(3, dtype=torch.float64)
    candidates = torch.where(included[:, :, None, None], candidates, identity)

    rows = torch.arange(n)
    total = identity.repeat(n, 1, 1)
    for position in range(7):  # 7 batched products, no loop over images
        total = candidates[rows, order[:, position]] @ total
    return AugmentationDraw(matrices=total[:, :2, :].contiguous(), included=included, order=order)


def augment_matrices(n: int, generator: torch.Generator | None = None, **params) -> torch.Tensor:
    """(n, 2, 3) float64 forward maps of ``n`` random augmentations; ``params`` as :class:`Augmenter`."""
    return draw_augmentations(n, generator, **params).matrices


def _is_pixel_permutation(matrices: torch.Tensor) -> torch.Tensor:
    """(n,) bool: the map only permutes pixel centres (flips and quarter turns, no shift)."""
    linear = matrices[:, :, :2]
    return ((linear == linear.round()).all(dim=(1, 2)) & (linear.abs().sum(dim=2) == 1).all(dim=1)
            & (matrices[:, :, 2] == 0).all(dim=1))


def sampling_grid_theta(matrices: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The ``F.affine_grid`` theta (output -> input, normalised, ``align_corners=True``) of forward maps."""
    n = matrices.shape[0]
    forward = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
    forward[:, :2, :] = matrices.to(torch.float64)
    half = torch.diag(torch.tensor([(width - 1) / 2.0, (height - 1) / 2.0, 1.0], dtype=torch.float64))
    inverse_half = torch.diag(1.0 / torch.diagonal(half))
    theta = inverse_half @ torch.linalg.inv(forward) @ half
    return theta[:, :2, :]


def _pixel_inverse(matrices: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, 2, 3) float64 output -> input maps in raw pixel indices ``(column, row)``."""
    n = matrices.shape[0]
    forward = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
    forward[:, :2, :] = matrices.to(torch.float64)
    centre = torch.eye(3, dtype=torch.float64)
    centre[:2, 2] = torch.tensor([(width - 1) / 2.0, (height - 1) / 2.0], dtype=torch.float64)
    return (centre @ torch.linalg.inv(forward) @ torch.linalg.inv(centre))[:, :2, :]


@functools.cache
def _cpu_resampler():
    """Numba kernel with ``grid_sample`` semantics (bilinear, zeros outside; nearest where ``exact``).

    On CPU, ``affine_grid`` + ``grid_sample`` cost 35-50 % of a lens_flow training step (batch 256), much
    of it in allocating the grid and output; this kernel builds no grid and can write in place (each
    image is copied to a small scratch first). Tests check it against ``F.grid_sample``.
    """
    import numba
    import numpy as np

    @numba.njit(parallel=True, cache=True, nogil=True)
    def resample(images, inverse, exact, out):
        n, channels, height, width = images.shape
        for i in numba.prange(n):
            src = images[i].copy()
            ax, bx, cx = inverse[i, 0, 0], inverse[i, 0, 1], inverse[i, 0, 2]
            ay, by, cy = inverse[i, 1, 0], inverse[i, 1, 1], inverse[i, 1, 2]
            for y in range(height):
                row_x = bx * y + cx
                row_y = by * y + cy
                for x in range(width):
                    sx = ax * x + row_x
                    sy = ay * x + row_y
                    if not (-1.0 < sx < width and -1.0 < sy < height):
                        for ch in range(channels):
                            out[i, ch, y, x] = 0.0
                        continue
                    if exact[i]:
                        ix = int(np.rint(sx))
                        iy = int(np.rint(sy))
                        inside = 0 <= ix < width and 0 <= iy < height
                        for ch in range(channels):
                            out[i, ch, y, x] = src[ch, iy, ix] if inside else 0.0
                        continue
                    x0 = int(sx + 1.0) - 1  # floor, as sx > -1
                    y0 = int(sy + 1.0) - 1
                    fx = sx - x0
                    fy = sy - y0
                    # Corners outside the image weigh 0 (zero fill); their clamped indices stay readable.
                    left = (1.0 - fx) * (x0 >= 0)
                    right = fx * (x0 + 1 < width)
                    top = (1.0 - fy) * (y0 >= 0)
                    bottom = fy * (y0 + 1 < height)
                    xa = max(x0, 0)
                    xb = min(x0 + 1, width - 1)
                    ya = max(y0, 0)
                    yb = min(y0 + 1, height - 1)
                    for ch in range(channels):
                        out[i, ch, y, x] = (top * (left * src[ch, ya, xa] + right * src[ch, ya, xb])
                                            + bottom * (left * src[ch, yb, xa] + right * src[ch, yb, xb]))

    return resample


def apply_matrices(batch: torch.Tensor, matrices: torch.Tensor, backend: str = "auto",
                   inplace: bool = False) -> torch.Tensor:
    """Resample ``batch`` (N, C, H, W) with forward maps ``matrices`` (N, 2, 3): bilinear, zeros outside.

    ``backend``: ``"torch"`` (``affine_grid`` + ``grid_sample``, any device), ``"numba"`` (CPU float32/64
    only, several times faster there) or ``"auto"`` (numba for CPU float32/64 batches without grad, torch
    otherwise). Images whose map only permutes pixels (flips, quarter turns) are sampled nearest, hence
    exactly. ``inplace=True`` overwrites and returns ``batch`` (on CPU it saves allocating a new batch).
    """
    height, width = batch.shape[-2:]
    exact = _is_pixel_permutation(matrices)
    cpu_ready = batch.device.type == "cpu" and batch.dtype in (torch.float32, torch.float64)
    if backend == "auto":
        backend = "numba" if cpu_ready and not batch.requires_grad else "torch"
    if backend == "numba":
        if not cpu_ready:
            raise LexactumError(
                f"the numba backend needs a CPU float32/64 batch, got {batch.device} {batch.dtype}")
        images = batch.detach().contiguous()
        out = images if inplace else torch.empty_like(images)
        _cpu_resampler()(images.numpy(), _pixel_inverse(matrices, height, width).numpy(), exact.numpy(),
                         out.numpy())
    elif backend == "torch":
        theta = sampling_grid_theta(matrices, height, width).to(device=batch.device, dtype=batch.dtype,
                                                                non_blocking=True)
        grid = F.affine_grid(theta, list(batch.shape), align_corners=True)
        out = F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        exact = torch.nonzero(exact).flatten()
        if len(exact):  # flips/rotations: nearest sampling lands exactly on the source pixels
            exact = exact.to(batch.device)
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
        transforms = (transforms,) if isinstance(transforms, str) else tuple(transforms)
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
