"""Checks of the counts users give (epochs, batch sizes, threads...): one rule and one wording, whichever
front end or library call they come through, so that a bad value fails the same way before any work."""

from __future__ import annotations

import numbers

from lexactum.errors import LexactumError


def positive_whole(value, name: str) -> int:
    """``value`` as an int when it is a whole number of at least 1 (not a bool, not 1.5, not '3'); else one
    LexactumError ``NAME must be a positive whole number, got VALUE``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        shown = int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else repr(value)
        raise LexactumError(f"{name} must be a positive whole number, got {shown}")
    return int(value)
