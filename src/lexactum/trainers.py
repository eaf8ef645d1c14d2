"""Lightning Trainers as ``train`` and ``predict`` run them: one line for a Trainer that Lightning refuses, a
SIGTERM handler that cannot deadlock several processes, and a stopped run ended as our interruption.

Lightning's own SIGTERM handler (2.6) broadcasts a flag from rank 0 *inside the signal handler*. The handler runs
wherever rank 0's Python happens to be, e.g. halfway through saving a checkpoint, while another process is already
waiting in a different collective (the barrier after that checkpoint): neither collective can complete and both
processes wait for the 30-minute gloo timeout (a two-process CPU run stopped by SIGTERM hung in 4 of 10 tries this
way on a busy two-core machine; with this handler, in none of 15). Our handler does everything else Lightning's does
(the SIGTERM passed on to the processes Lightning started, the flag that its loops check and broadcast between steps
themselves) and no collective; the command's own handler, which Lightning calls after it, then stops the process at
once.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.trainer.connectors.signal_connector import _SignalConnector

from lexactum import processes
from lexactum.errors import LexactumError


class NoCollectiveSignalConnector(_SignalConnector):
    """Lightning's signal connector, whose SIGTERM handler makes no collective call (see the module). A class
    of the module, not of a function: ``--strategy ddp_spawn`` pickles the Trainer into its processes."""

    def _sigterm_notifier_fn(self, signum, _frame) -> None:
        launcher = self.trainer.strategy.launcher
        if not self.received_sigterm and launcher is not None:
            launcher.kill(signum)  # the processes Lightning started itself stop too
        self.received_sigterm = True


def make_trainer(what: str, distribution, precision: str, **options) -> L.Trainer:
    """``lightning.Trainer(**options)`` on ``distribution`` at ``precision``, with the SIGTERM handler above;
    a combination Lightning refuses is one line that names ``what`` the Trainer was for."""
    try:
        trainer = L.Trainer(**distribution.trainer_kwargs(), precision=precision, **options)
    except (ValueError, TypeError) as exc:  # Lightning's MisconfigurationException is a ValueError
        raise LexactumError(f"cannot {what} on {distribution.describe()} with precision {precision!r}: "
                            f"{exc}") from None
    trainer._signal_connector = NoCollectiveSignalConnector(trainer)
    return trainer


def run_stopping_cleanly(trainer, stage: str, hint, *args, **kwargs):
    """``trainer.<stage>(*args, **kwargs)`` (fit or predict), where a run stopped by Ctrl-C or SIGTERM ends as
    :class:`processes.Terminated` or KeyboardInterrupt with ``hint()`` (how to go on, as things stand once
    stopped) rather than as Lightning ends it: a bare ``SystemExit``, of status 1 for Ctrl-C and 0 for SIGTERM,
    which a scheduler takes for success."""
    try:
        return getattr(trainer, stage)(*args, **kwargs)
    except SystemExit as stop:
        if not trainer.interrupted:
            raise
        # A SIGTERM before Lightning's handler is in place reaches Lightning as our Terminated, which it
        # takes for a Ctrl-C (status 1): the exception it was handling tells them apart.
        sigterm = trainer.received_sigterm or isinstance(stop.__context__, processes.Terminated)
        raise processes.interruption(sigterm, hint()) from None
