"""Worker processes that die with the process that started them.

A ``kill -9`` of a command gives it no chance to stop its workers, and a pool worker waiting for its next
task never notices on its own (it holds both ends of the task queue), so the workers, the forkserver and the
resource tracker (which live as long as a worker does) would stay behind for good. Every worker started here
therefore watches the process that made its pool: a daemon thread waits on a Linux pidfd of that process
(the kernel wakes it when the process ends, zombie or not) and ends the worker at once. Workers are also
given ``PR_SET_PDEATHSIG`` so that the kernel kills them outright when their direct parent dies. The
forkserver and the resource tracker then exit by themselves once the last worker is gone.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time

#: Seconds between checks where the kernel offers no pidfd (not Linux, or Linux before 5.3).
POLL_SECONDS = 0.5
#: Exit status of a worker whose parent died.
ORPHAN_EXIT = 70


class Terminated(KeyboardInterrupt):
    """SIGTERM, as a batch scheduler's ``kill`` sends it, taken as an interruption like Ctrl-C.

    A subclass of KeyboardInterrupt so that every clean-up already written for Ctrl-C (temporary files and
    folders removed, workers stopped) runs for it too; the command then exits with 128 + 15.
    """

    exit_code = 128 + signal.SIGTERM


def interrupt_on_sigterm() -> None:
    """Make SIGTERM raise :class:`Terminated` in the main thread instead of killing the process on the spot.

    Left to its default a SIGTERM ends the command with no message and leaves its temporaries behind; inside
    Lightning's ``fit`` it even ends the command with exit status 0 (Lightning's own handler stops the loop
    with a bare ``SystemExit``), which a batch scheduler takes for success.
    """

    command = os.getpid()

    def _raise(signum, frame):
        if os.getpid() != command:  # a forked worker inherited this: it must die as a pool's terminate() wants
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise Terminated()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise)


def interruption(sigterm: bool, message: str = "") -> KeyboardInterrupt:
    """The exception to raise for an interruption found after the fact (e.g. in a Lightning fit)."""
    return Terminated(message) if sigterm else KeyboardInterrupt(message)


def interruption_line(exc: KeyboardInterrupt) -> tuple[str, int]:
    """What a front end prints for an interruption, and its exit status (130 for Ctrl-C, 143 for SIGTERM)."""
    what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
    detail = str(exc).strip()
    return (f"{what}: {detail}" if detail else what), getattr(exc, "exit_code", 130)


def executor(max_workers: int, method: str | None = None, preload: tuple[str, ...] = ()):
    """A ``ProcessPoolExecutor`` whose workers die with this process.

    ``method`` defaults to ``forkserver`` (workers start from a clean interpreter, never from a copy of
    threads such as numba's or torch's) where it exists, else ``spawn``; ``preload`` names modules the
    forkserver imports once for all workers.
    """
    from concurrent.futures import ProcessPoolExecutor

    context = _context(method, preload)
    return ProcessPoolExecutor(max_workers, mp_context=context, initializer=die_with, initargs=(os.getpid(),))


def stop(executor) -> None:
    """Shut ``executor`` down now (after an error or Ctrl-C): its workers are killed rather than waited for,
    since each may hold another queued task and take long to finish it."""
    workers = list((getattr(executor, "_processes", None) or {}).values())  # no public handle before 3.14
    executor.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        worker.kill()


def pool(processes: int, method: str | None = None, preload: tuple[str, ...] = ()):
    """A ``multiprocessing.Pool`` whose workers die with this process (``method`` as for :func:`executor`)."""
    return _context(method, preload).Pool(processes, initializer=die_with, initargs=(os.getpid(),))


def _context(method: str | None, preload: tuple[str, ...]):
    import multiprocessing

    if method is None:
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload([__name__, *preload])
    return context


#: The process that :func:`die_with` made this one watch and its pidfd (None: none, or no pidfd here).
_watched: tuple[int, int | None] | None = None


def die_with(pid: int) -> None:
    """Worker initializer: end this process as soon as process ``pid`` (the pool's maker) has ended.

    A worker also takes SIGTERM's default action again (the command's handler raises an exception, which a
    worker only sees once its main thread runs Python again): a pool's terminate() then ends it at once,
    even while it waits on the pool's queue lock."""
    global _watched
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _set_parent_death_signal()
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(ORPHAN_EXIT)  # gone already, before this worker even started
    except (AttributeError, OSError):  # no pidfd here: look from time to time instead
        handle = None
    _watched = (pid, handle)  # kept open for the life of the process, as the watch thread waits on it
    threading.Thread(target=_watch, args=(pid, handle), name="lexactum-parent-watch", daemon=True).start()


def _watch(pid: int, handle: int | None) -> None:
    _wait_for_end(pid, handle, None)
    os._exit(ORPHAN_EXIT)


def _wait_for_end(pid: int, handle: int | None, timeout: float | None) -> bool:
    """Whether process ``pid`` has ended within ``timeout`` seconds (None: wait for it): on its pidfd
    ``handle`` (readable once the process has exited, zombie or not), else by looking from time to time."""
    if handle is not None:
        return bool(select.select([handle], [], [], timeout)[0])
    deadline = None if timeout is None else time.monotonic() + timeout
    while process_alive(pid):
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True


def watched_process_ended(within: float) -> bool:
    """Whether the process this one dies with (:func:`die_with`) has ended or ends within ``within`` seconds.

    Why: when rank 0 of a training is killed with -9, the other process's next collective fails at once
    ("connection reset by peer"), often a moment before the watch thread sees rank 0 gone; that error is the
    kill's echo, not this process's own, and deserves no traceback. Zombies count as ended (a pidfd is
    readable once its process has exited)."""
    if _watched is None:
        return False
    return _wait_for_end(*_watched, within)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` still runs (an unreaped zombie counts as running; another user's process too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _set_parent_death_signal() -> None:
    """Linux: have the kernel send SIGKILL to this process when its parent dies (nothing elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass
