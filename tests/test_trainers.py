"""The Trainers train and predict build: a SIGTERM handler with no collective call, Lightning's stops turned
into our interruptions, and one line for a Trainer Lightning refuses."""

from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest
import torch.distributed

from lexactum import processes
from lexactum.distributed import Distribution
from lexactum.errors import LexactumError
from lexactum.trainers import make_trainer, run_stopping_cleanly

ONE_CPU = Distribution(accelerator="cpu", devices=1, num_nodes=1, strategy="auto")


class _Launcher:
    def __init__(self):
        self.signals = []

    def kill(self, signum):
        self.signals.append(signum)


def test_sigterm_on_a_process_of_a_distributed_run_makes_no_collective_call(monkeypatch):
    """Lightning's own handler broadcasts from inside the signal handler, which deadlocks when another process
    already waits in another collective; ours only passes the signal on (once) and raises the flag that
    Lightning's loops broadcast between steps."""
    import lightning as L

    def no_collective(*args, **kwargs):
        raise AssertionError("a collective call inside the SIGTERM handler")

    trainer = make_trainer("train", ONE_CPU, "32-true", logger=False, enable_checkpointing=False,
                           enable_progress_bar=False, enable_model_summary=False)
    launcher = _Launcher()
    monkeypatch.setattr(trainer.strategy, "_launcher", launcher)
    monkeypatch.setattr(L.Trainer, "world_size", property(lambda self: 2))
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    for name in ("broadcast", "barrier", "all_reduce"):
        monkeypatch.setattr(torch.distributed, name, no_collective)
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    connector = trainer._signal_connector
    try:
        connector.register_signal_handlers()  # as Lightning does before running the stage
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)
    finally:
        connector.teardown()
        signal.signal(signal.SIGTERM, previous)
    assert trainer.received_sigterm
    assert launcher.signals == [signal.SIGTERM]


def test_a_trainer_lightning_refuses_is_one_line_naming_the_work():
    with pytest.raises(LexactumError, match=r"cannot predict on cpu with precision 'no-such-precision'"):
        make_trainer("predict", ONE_CPU, "no-such-precision", logger=False)


def _stopped(interrupted: bool, sigterm: bool, context: BaseException | None, code: int = 1, state=None):
    """A stand-in Trainer whose fit ends as Lightning ends a stopped one: a bare SystemExit raised while
    handling ``context`` (the interruption Lightning caught), after marking ``state`` stopped."""
    trainer = SimpleNamespace(interrupted=interrupted, received_sigterm=sigterm)

    def fit(*args, **kwargs):
        if state is not None:
            state["stopped"] = True
        if context is None:
            raise SystemExit(code)
        try:
            raise context
        except BaseException:
            raise SystemExit(code)  # noqa: B904 (Lightning's sys.exit inside its except clause)

    trainer.fit = fit
    return trainer


@pytest.mark.parametrize("sigterm, context, expected", [
    (True, None, processes.Terminated),  # Lightning's handler saw the SIGTERM
    (False, processes.Terminated(), processes.Terminated),  # ours did, before Lightning's was in place
    (False, KeyboardInterrupt(), KeyboardInterrupt),  # Ctrl-C
])
def test_a_stopped_stage_ends_as_our_interruption_with_the_hint_as_it_is_once_stopped(sigterm, context, expected):
    state = {"stopped": False}
    trainer = _stopped(True, sigterm, context, state=state)
    with pytest.raises(KeyboardInterrupt) as caught:
        run_stopping_cleanly(trainer, "fit", lambda: f"stopped={state['stopped']}")
    assert type(caught.value) is expected
    assert str(caught.value) == "stopped=True"  # the hint describes the run as the stop left it
    assert processes.interruption_line(caught.value)[1] == (143 if expected is processes.Terminated else 130)


def test_a_system_exit_that_is_no_interruption_goes_through():
    with pytest.raises(SystemExit) as caught:
        run_stopping_cleanly(_stopped(False, False, None, code=3), "fit", lambda: "")
    assert caught.value.code == 3


def test_the_trainer_pickles_as_ddp_spawn_sends_it_to_its_processes():
    import pickle

    trainer = make_trainer("train", ONE_CPU, "32-true", logger=False, enable_checkpointing=False,
                           enable_progress_bar=False, enable_model_summary=False)
    copy = pickle.loads(pickle.dumps(trainer._signal_connector))
    assert type(copy) is type(trainer._signal_connector) and not copy.received_sigterm
