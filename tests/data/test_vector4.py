"""The four-float vector intrinsics against plain numpy, lane by lane."""

from __future__ import annotations

import numba
import numpy as np

from lexactum.data._vector4 import bilinear4, deinterleave4, interleave4


@numba.njit
def _blend(source, top, bottom, right, below, out, at):
    bilinear4(source, np.uint64(top), np.uint64(bottom), np.float32(right), np.float32(below), out, np.uint64(at))


@numba.njit
def _interleave(rows, start, out, at):
    interleave4(rows[0], rows[1], rows[2], rows[3], np.uint64(start), out, np.uint64(at))


@numba.njit
def _deinterleave(source, at, rows, start):
    deinterleave4(source, np.uint64(at), rows[0], rows[1], rows[2], rows[3], np.uint64(start))


def test_bilinear4_blends_each_lane_like_the_scalar_formula():
    rng = np.random.default_rng(0)
    source = rng.normal(size=64).astype(np.float32)
    out = np.full(12, np.nan, dtype=np.float32)
    top, bottom, right, below, at = 5, 37, np.float32(0.3), np.float32(0.85), 3  # unaligned on purpose
    _blend(source, top, bottom, right, below, out, at)
    a, b = source[top:top + 4], source[top + 4:top + 8]
    c, d = source[bottom:bottom + 4], source[bottom + 4:bottom + 8]
    upper, lower = a + right * (b - a), c + right * (d - c)
    np.testing.assert_array_equal(out[at:at + 4], upper + below * (lower - upper))  # same float32 steps
    assert np.isnan(out[:at]).all() and np.isnan(out[at + 4:]).all()  # nothing else written


def test_interleave4_and_deinterleave4_are_transposes_and_inverse_of_each_other():
    rows = np.arange(40, dtype=np.float32).reshape(4, 10)
    out = np.full(24, np.nan, dtype=np.float32)
    _interleave(rows, 3, out, 2)
    np.testing.assert_array_equal(out[2:18], rows[:, 3:7].T.ravel())  # pixel-major: 4 bands per pixel
    assert np.isnan(out[:2]).all() and np.isnan(out[18:]).all()
    back = np.full((4, 10), np.nan, dtype=np.float32)
    _deinterleave(out, 2, back, 5)
    np.testing.assert_array_equal(back[:, 5:9], rows[:, 3:7])
    assert np.isnan(back[:, :5]).all() and np.isnan(back[:, 9:]).all()
