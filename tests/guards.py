"""Guards for tests of code that could hang: a hang must fail the test, never block CI."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


class Hang(BaseException):
    """Raised by the alarm; a BaseException so that no ``except Exception`` in the code under test can
    swallow it."""


@contextlib.contextmanager
def time_limit(seconds: float, what: str = "the block") -> Iterator[None]:
    """Raise :class:`Hang` in the block when it runs longer than ``seconds`` (SIGALRM; the main thread)."""

    def on_alarm(signum, frame):
        raise Hang(f"{what} took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
