"""What a mutation check of data/normalise.py found unpinned: normalise's refusal of an ``out`` that is not
float32, and which rows blank_rows calls blank."""

from __future__ import annotations

import numpy as np
import pytest

from lexactum.data.normalise import blank_rows, normalise
from lexactum.errors import LexactumError


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int32])
def test_an_out_array_of_another_dtype_is_refused_naming_it(dtype):
    """Only float32 is written: any other ``out`` (narrower, wider or integer) is one clear error naming its
    dtype, before anything is written to it."""
    images = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    out = np.full(images.shape, 7, dtype=dtype)
    name = np.dtype(dtype).name
    with pytest.raises(LexactumError, match=rf"out has shape \(2, 3, 4, 4\) and dtype {name}; expected a "
                                            r"C-contiguous float32 array of shape \(2, 3, 4, 4\)"):
        normalise(images, method="minmax", out=out)
    assert np.all(out == 7)


def test_blank_rows_are_the_rows_holding_one_value_only():
    """A blank image (all 0 once normalised, or constant) is one whose pixels all equal its first; a row
    differing anywhere, first pixel or last, is a real image."""
    flat = np.array([[0, 0, 0, 0],
                     [1, 2, 3, 4],
                     [5, 5, 5, 6],
                     [6, 5, 5, 5],
                     [2.5, 2.5, 2.5, 2.5]], dtype=np.float32)
    assert blank_rows(flat).tolist() == [True, False, False, False, True]
    assert blank_rows(flat[:, :1]).tolist() == [True] * 5  # one pixel: nothing differs
