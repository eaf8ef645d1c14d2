"""The one rule for counts users give: whole numbers of at least 1, whatever the front end."""

from __future__ import annotations

import numpy as np
import pytest

from lexactum.checks import positive_whole
from lexactum.errors import LexactumError


def test_whole_numbers_of_at_least_one_pass_as_ints():
    assert positive_whole(3, "epochs") == 3
    assert positive_whole(np.int64(2), "epochs") == 2 and type(positive_whole(np.int64(2), "epochs")) is int


@pytest.mark.parametrize(("value", "shown"), [(0, "0"), (-8, "-8"), (np.int64(0), "0"), (1.5, "1.5"),
                                              (True, "True"), ("3", "'3'"), (None, "None")])
def test_anything_else_is_one_line_naming_the_value(value, shown):
    with pytest.raises(LexactumError) as caught:
        positive_whole(value, "--batch-size")
    assert str(caught.value) == f"--batch-size must be a positive whole number, got {shown}"
