"""Progress bars: rate and ETA always, redrawn often on a terminal and seldom into a batch job's log."""

from __future__ import annotations

import io
import sys

import pytest

from lexactum import progress as progress_module
from lexactum.progress import LOG_INTERVAL, LOG_REFRESH_STEPS, lightning_refresh_rate, progress


class _Stream(io.StringIO):
    def __init__(self, terminal: bool):
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


def _redraws(monkeypatch, terminal: bool, steps: int = 40) -> str:
    """What a bar writes for ``steps`` updates over about a second."""
    import time

    stream = _Stream(terminal)
    monkeypatch.setattr(sys, "stderr", stream)
    with progress(total=steps, desc="scoring", unit="img", enabled=True) as bar:
        for _ in range(steps):
            time.sleep(0.025)
            bar.update(1)
    return stream.getvalue()


def test_into_a_log_the_bar_is_drawn_at_its_start_and_end_only_within_the_interval(monkeypatch):
    """A second of updates: a terminal sees several redraws, a log file only the first and the last (all
    within LOG_INTERVAL), and the last still says the count and the rate."""
    log = _redraws(monkeypatch, terminal=False)
    frames = [f for f in log.split("\r") if f.strip()]
    assert len(frames) == 2, frames
    assert "40/40" in frames[-1] and "img/s" in frames[-1]
    terminal = [f for f in _redraws(monkeypatch, terminal=True).split("\r") if f.strip()]
    assert len(terminal) >= 4
    assert LOG_INTERVAL >= 10


@pytest.mark.parametrize("terminal, rate", [(True, 1), (False, LOG_REFRESH_STEPS)])
def test_lightnings_bar_redraws_every_step_only_on_a_terminal(monkeypatch, terminal, rate):
    monkeypatch.setattr(sys, "stderr", _Stream(terminal))
    assert lightning_refresh_rate() == rate


def test_a_stderr_without_isatty_counts_as_a_log(monkeypatch):
    monkeypatch.setattr(sys, "stderr", object())
    assert not progress_module.to_terminal()


def test_the_training_bar_takes_the_refresh_rate(monkeypatch, tmp_path):
    from lightning.pytorch.callbacks import TQDMProgressBar

    from lexactum.training.trainer import build_trainer

    monkeypatch.setattr(sys, "stderr", _Stream(False))
    trainer = build_trainer(tmp_path, 1, device="cpu", progress=True)
    bar = next(c for c in trainer.callbacks if isinstance(c, TQDMProgressBar))
    assert bar.refresh_rate == LOG_REFRESH_STEPS
