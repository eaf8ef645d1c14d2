"""Progress bars for long work: one place decides how they look (rate and ETA always shown) and how often
they redraw: several times a second on a terminal, but only every half minute into a batch job's log file, where
each redraw is kept (a night of scoring at ten redraws a second writes tens of megabytes of log).
"""

from __future__ import annotations

import os
import sys

#: Seconds between redraws of our bars when stderr is not a terminal.
LOG_INTERVAL = 30.0
#: Training steps between redraws of Lightning's bar when stderr is not a terminal (Lightning counts steps).
LOG_REFRESH_STEPS = 50


def to_terminal() -> bool:
    """Whether stderr is a terminal (else a file or a pipe: a batch job's log)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


def lightning_refresh_rate() -> int:
    """``TQDMProgressBar(refresh_rate=...)``: every step on a terminal, every LOG_REFRESH_STEPS into a log."""
    return 1 if to_terminal() else LOG_REFRESH_STEPS


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
        mininterval=kwargs.pop("mininterval", 0.1 if to_terminal() else LOG_INTERVAL),
        **kwargs,
    )


def wanted(enabled: bool | None) -> bool:
    """Whether to show progress: as asked, else unless ``LEXACTUM_NO_PROGRESS`` is set (one rule for our bars
    and Lightning's)."""
    return not os.environ.get("LEXACTUM_NO_PROGRESS") if enabled is None else bool(enabled)
