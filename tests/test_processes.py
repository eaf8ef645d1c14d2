"""Worker processes die with the command that started them: nothing is left behind after a kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux only)")

#: A pool of two workers that each mark that they started, then wait for a long time.
POOL_DRIVER = """
import os, sys, time
from lexactum import processes

def task(_):
    open(os.path.join(sys.argv[3], f"started-{os.getpid()}"), "w").close()
    time.sleep(600)

if __name__ == "__main__":
    kind, method = sys.argv[1], sys.argv[2]
    if len(sys.argv) > 4 and sys.argv[4] == "polling":  # as on macOS: no pidfd, no parent-death signal
        del os.pidfd_open
        processes._set_parent_death_signal = lambda: None
    if kind == "pool":
        pool = processes.pool(2, method)
        pool.map_async(task, range(2), chunksize=1)
    else:
        pool = processes.executor(2, method)
        futures = [pool.submit(task, i) for i in range(2)]
    time.sleep(600)
"""

#: ``lexactum dataset prepare`` whose work units wait for a long time once their worker marked its start.
PREPARE_DRIVER = """
import os, sys, time
from lexactum.data import cache

def slow_chunk(task):
    open(os.path.join(os.environ["STARTED"], f"started-{os.getpid()}"), "w").close()
    time.sleep(600)

if __name__ == "__main__":
    import prepare_driver
    cache._prepare_chunk = prepare_driver.slow_chunk  # by module name: the workers import it too
    cache.CHUNK_OBJECTS = 1
    from lexactum.cli import main
    sys.exit(main(sys.argv[1:]))
"""

#: ``lexactum simulate`` whose objects take a long time once their worker marked its start.
SIMULATE_DRIVER = """
import os, sys, time
from lexactum.simulate import writer

def slow_object(task):
    open(os.path.join(os.environ["STARTED"], f"started-{os.getpid()}"), "w").close()
    time.sleep(600)

if __name__ == "__main__":
    writer.simulate_object = slow_object  # the workers are forked: they see it
    from lexactum.cli import main
    sys.exit(main(sys.argv[1:]))
"""


def _tagged(tag: str) -> list[int]:
    """Process IDs whose environment holds ``LEXACTUM_TEST_TAG=tag`` (the command and all it started)."""
    marker = f"LEXACTUM_TEST_TAG={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:  # ended meanwhile
                continue
    return found


#: Starts the rest of the command line with Ctrl-C handled as in a terminal, even where this test runs with
#: SIGINT ignored (a shell's background job), which a child would inherit.
WITH_CTRL_C = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
               "os.execv(sys.argv[1], sys.argv[1:])")


def _stop_once_started(argv: list[str], started: Path, how: signal.Signals = signal.SIGKILL, group: bool = True,
                       ) -> tuple[list[int], subprocess.Popen, str]:
    """Run ``argv``; once two workers have started, kill -9 it, or send ``how`` to its whole process group
    (as a terminal's Ctrl-C does; to the command alone without ``group``, as ``kill PID`` does); return the
    tagged processes left after a few seconds (then killed, also when this fails, so that a failing test
    leaves nothing either), the process, and its stderr."""
    tag = uuid.uuid4().hex
    started.mkdir()
    env = dict(os.environ, LEXACTUM_TEST_TAG=tag, STARTED=str(started))
    with open(started.parent / "stderr.txt", "w+") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", WITH_CTRL_C, sys.executable, *argv], env=env,
                                stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        left = []
        try:
            _wait_for_workers(proc, started, tag)
            if how == signal.SIGKILL:
                proc.kill()
            elif group:
                os.killpg(proc.pid, how)
            else:
                proc.send_signal(how)
            proc.wait(timeout=30)
            deadline = time.monotonic() + 10
            while (left := _tagged(tag)) and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            proc.kill()
            proc.wait()
            for pid in _tagged(tag):
                os.kill(pid, signal.SIGKILL)
        stderr.seek(0)
        return left, proc, stderr.read()


def _wait_for_workers(proc: subprocess.Popen, started: Path, tag: str) -> None:
    deadline = time.monotonic() + 120
    while len(list(started.iterdir())) < 2:
        assert proc.poll() is None, f"the command ended (status {proc.returncode}) before its workers started"
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.05)
    assert len(_tagged(tag)) >= 3  # the command and its workers at least


@pytest.mark.parametrize("kind, method", [("executor", "forkserver"), ("pool", "fork"), ("pool", "spawn")])
def test_workers_die_with_their_parent(tmp_path, kind, method):
    script = tmp_path / "pool_driver.py"
    script.write_text(POOL_DRIVER)
    left, _, _ = _stop_once_started([str(script), kind, method, str(tmp_path / "started")], tmp_path / "started")
    assert left == [], "processes left after kill -9"


def test_workers_die_with_their_parent_where_they_can_only_poll(tmp_path):
    """Without pidfd and PR_SET_PDEATHSIG (macOS, Linux before 5.3) the workers notice by polling."""
    script = tmp_path / "pool_driver.py"
    script.write_text(POOL_DRIVER)
    left, _, _ = _stop_once_started([str(script), "pool", "fork", str(tmp_path / "started"), "polling"],
                                    tmp_path / "started")
    assert left == [], "processes left after kill -9"


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=["kill -9", "Ctrl-C", "SIGTERM"])
def test_stopped_prepare_leaves_no_process(make_dataset, tmp_path, how):
    """kill -9 of ``dataset prepare --workers 2``: the workers, the forkserver and the resource tracker go.
    Ctrl-C or SIGTERM: the command stops at once (its workers killed, not waited for) with one line."""
    root = make_dataset(survey="space", n=6, layout="train")
    (tmp_path / "prepare_driver.py").write_text(PREPARE_DRIVER)
    argv = [str(tmp_path / "prepare_driver.py"), "dataset", "prepare", str(root),
            "--cache-dir", str(tmp_path / "cache"), "--workers", "2"]
    left, proc, stderr = _stop_once_started(argv, tmp_path / "started", how)
    assert left == [], "processes left"
    if how != signal.SIGKILL:  # SIGTERM (a batch scheduler's) too: one line, the temp folder removed
        line, status = {signal.SIGINT: ("interrupted", 130), signal.SIGTERM: ("terminated (SIGTERM)", 143)}[how]
        assert proc.returncode == status and stderr.strip().splitlines() == [f"lexactum dataset: {line}"]
        assert list((tmp_path / "cache").iterdir()) == []


def test_killed_simulate_leaves_no_process(tmp_path):
    (tmp_path / "simulate_driver.py").write_text(SIMULATE_DRIVER)
    argv = [str(tmp_path / "simulate_driver.py"), "simulate", "--survey", "space", "--n", "8",
            "--out", str(tmp_path / "out"), "--workers", "2"]
    left, _, _ = _stop_once_started(argv, tmp_path / "started")
    assert left == [], "processes left after kill -9"


def test_simulate_terminated_alone_stops_its_forked_workers(tmp_path):
    """``kill PID`` (SIGTERM to the command only): the pool's terminate() sends SIGTERM to the forked
    workers, which inherited the command's SIGTERM handler; they must die of it (raising in a worker printed
    its traceback, and in a real simulation the worker then hung at exit with the command waiting on it)."""
    (tmp_path / "simulate_driver.py").write_text(SIMULATE_DRIVER)
    argv = [str(tmp_path / "simulate_driver.py"), "simulate", "--survey", "space", "--n", "8",
            "--out", str(tmp_path / "out"), "--workers", "2"]
    left, proc, stderr = _stop_once_started(argv, tmp_path / "started", signal.SIGTERM, group=False)
    assert left == [], "processes left after SIGTERM"
    assert proc.returncode == 143
    assert stderr.strip().splitlines() == ["lexactum simulate: terminated (SIGTERM)"]  # no worker's traceback


def _sigterm_disposition(_=None):
    import signal as signals

    return signals.getsignal(signals.SIGTERM) == signals.SIG_DFL


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_take_sigterms_default_action_whatever_the_command_installed(method):
    """The command's SIGTERM handler raises in its main thread; a pool worker that inherited it would only
    act on a SIGTERM once its main thread ran Python again (a worker waiting on the queue lock never does,
    and the pool's terminate() then waits for it forever). Workers get the default action back."""
    import signal as signals

    from lexactum import processes

    before = signals.getsignal(signals.SIGTERM)
    processes.interrupt_on_sigterm()
    try:
        with processes.pool(1, method) as workers:
            assert workers.apply(_sigterm_disposition) is True
    finally:
        signals.signal(signals.SIGTERM, before)


def test_the_watched_process_counts_as_ended_once_it_exits_zombie_included(monkeypatch):
    """On the pidfd that die_with opened (readable once the process has exited, zombie or not)."""
    from lexactum import processes

    monkeypatch.setattr(processes, "_watched", None)
    assert not processes.watched_process_ended(0.0)  # nothing watched: never
    child = subprocess.Popen(["sleep", "30"])
    handle = os.pidfd_open(child.pid)
    try:
        monkeypatch.setattr(processes, "_watched", (child.pid, handle))
        assert not processes.watched_process_ended(0.2)
        child.kill()  # not reaped yet: a zombie, as rank 0 is until its parent waits for it
        start = time.monotonic()
        assert processes.watched_process_ended(5.0) and time.monotonic() - start < 4
    finally:
        child.wait()
        os.close(handle)


@pytest.mark.parametrize("rank_zero_ended", [True, False])
def test_a_failed_collective_after_rank_zero_was_killed_ends_the_other_process_quietly(monkeypatch,
                                                                                       rank_zero_ended):
    """The echo of a kill -9 of rank 0 (a collective failing with 'connection reset') ends a process of rank >
    0 with status 70 and no traceback; any other error of its own still propagates."""
    import lexactum.training
    from lexactum import processes
    from lexactum.cli import train as train_cli

    def failed_collective(config):
        raise RuntimeError("Read error [127.0.0.1]:46291: Connection reset by peer")

    monkeypatch.setattr(lexactum.training, "train", failed_collective)
    monkeypatch.setattr(processes, "watched_process_ended", lambda within: rank_zero_ended)
    if rank_zero_ended:
        assert train_cli._train_quietly(object()) == processes.ORPHAN_EXIT
    else:
        with pytest.raises(RuntimeError, match="Connection reset"):
            train_cli._train_quietly(object())
