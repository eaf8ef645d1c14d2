"""Progress bars for long work: one place decides how they look (rate and ETA always shown)."""

from __future__ import annotations

import os
import sys


def progress(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it",
             enabled: bool | None = None, **kwargs):
    """A tqdm bar on stderr showing count, rate and ETA.

    ``enabled=None`` shows it unless ``LEXACTUM_NO_PROGRESS`` is set; tests and library callers may pass
    ``enabled=False``.
    """
    from tqdm.auto import tqdm

    enabled = wanted(enabled)
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=total is not None and total >= 100_000,
        dynamic_ncols=True,
        file=sys.stderr,
        disable=not enabled,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]",
        **kwargs,
    )


def wanted(enabled: bool | None) -> bool:
    """Whether to show progress: as asked, else unless ``LEXACTUM_NO_PROGRESS`` is set (one rule for our bars
    and Lightning's)."""
    return not os.environ.get("LEXACTUM_NO_PROGRESS") if enabled is None else bool(enabled)
