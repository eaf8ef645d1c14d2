"""Errors the user can act on.

Anything raised as a :class:`LexactumError` is the user's input being wrong (a missing file, a bad value),
not a bug: the command line prints its message on one line and exits with status 2, no traceback
(unless ``--debug``). Messages name the file or value and say what is wrong.
"""

from __future__ import annotations

import errno
import os


class LexactumError(Exception):
    """A problem with the user's input, reported as one clear line."""


class DataError(LexactumError):
    """A dataset, catalog or image that cannot be read as challenge data."""


class ModelFileError(LexactumError):
    """A model file that is missing, corrupt, or does not fit what was asked for."""


class WriteError(LexactumError, OSError):
    """An output that could not be written (disk full, read-only folder...): nothing half-written is left.

    Also an OSError, so code that handles a failed write (retry elsewhere, clean up) still sees one, with the
    system's ``errno`` (ENOSPC, EROFS...); its text stays the one line.
    """

    @classmethod
    def of(cls, exc: OSError, path: str | os.PathLike) -> WriteError:
        """The WriteError for ``exc`` raised while writing ``path``."""
        error = cls(describe_os_error(exc, path, "write"))
        error.errno = exc.errno  # errno alone leaves the message as it is (str() needs strerror as well)
        return error


def os_reason(exc: OSError) -> str:
    """What went wrong in ``exc``, in lower case ('no space left on device'), without the file name."""
    reason = exc.strerror or (os.strerror(exc.errno) if exc.errno else "") or str(exc) or type(exc).__name__
    return reason[:1].lower() + reason[1:]


def describe_os_error(exc: OSError, path: str | os.PathLike | None = None, action: str | None = None) -> str:
    """One line for an OSError: the file it concerns (``path``, else the error's own) and the reason.

    Used by the writers (``action='write'``: "cannot write PATH: no space left on device") and, as the last
    safety net, by the command lines for an OSError that escaped a command.
    """
    def text(name) -> str:
        return os.fsdecode(name) if isinstance(name, (str, bytes, os.PathLike)) else str(name)

    name = path if path is not None else exc.filename
    if name is not None and path is None and exc.filename2 is not None:
        name = f"{text(exc.filename)} -> {text(exc.filename2)}"
    elif name is not None:
        name = text(name)
    reason = os_reason(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += " (free some space or choose another folder)"
    elif exc.errno == errno.EROFS or (exc.errno in (errno.EACCES, errno.EPERM) and action == "write"):
        reason += " (choose a folder you can write to)"  # a refused read is no matter of folders
    if action and name is not None:
        return f"cannot {action} {name}: {reason}"
    return f"{name}: {reason}" if name is not None else reason


def plain_number(value):
    """``value`` as a message should show it: a numpy (or torch) scalar as the plain number it holds, so that
    ``f"{plain_number(v)!r}"`` reads 2 and not np.int64(2); anything else unchanged."""
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        return item()
    return value


def human_size(n_bytes: float) -> str:
    """``n_bytes`` for people: '1.6 GB', '340.2 MB', '12.0 kB', '512 bytes' (powers of 1000, as ``info``)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{int(n_bytes)} bytes"


def run_reporting_errors(prog: str, work, debug: bool = False) -> int:
    """Run ``work()`` as a command named ``prog`` and return its exit status, every way it can end reported
    on one line of stderr: a LexactumError or an OSError no writer described (status 2; ``debug`` re-raises
    them for the traceback), Ctrl-C (130) or SIGTERM (143), output piped into ``head`` (0). Both front ends
    (``lexactum`` and ``Space.py``/``Ground.py``) end this way."""
    import sys

    from lexactum import processes

    processes.interrupt_on_sigterm()
    try:
        return int(work() or 0)
    except LexactumError as exc:
        if debug:
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        sys.stderr.close()
        return 0
    except OSError as exc:  # the last safety net: a disk full or a read-only folder no writer described
        if debug:
            raise
        print(f"{prog}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (processes.Terminated)
        line, status = processes.interruption_line(exc)
        print(f"{prog}: {line}", file=sys.stderr)
        return status
