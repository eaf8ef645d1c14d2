"""Helpers of the fault suite: run the CLI as a user would, kill it, find what it left behind.

Every command runs as ``python -m lexactum ...`` in a child process whose environment carries a unique marker
(``LEXACTUM_TEST_TAG=<uuid4>``); the marker is inherited by everything the command starts (workers, the
forkserver, the resource tracker), so after a kill the processes that outlived it are found by their
``/proc/<pid>/environ`` whoever their parent now is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
TAG_VARIABLE = "LEXACTUM_TEST_TAG"
#: A command that has not finished in this time is stuck: the suite fails rather than hangs.
COMMAND_TIMEOUT = 300.0
#: How long processes of a killed command may take to go away (they watch their parent).
ORPHAN_GRACE = 5.0

# The datasets of the suite, sized so that the killed commands are usually killed mid-work.
PREPARE_N = 3000      # dataset prepare --workers 2: a few seconds of reading and normalising
TRAIN_N = 600         # train: 3 epochs of lens_flow over 360 images, about a second each
SMALL_N = 200         # the no-space / read-only tests: a cache of 8 MB
TRAIN_ARGS = ["--epochs", "3", "--batch-size", "8", "--split", "0.6,0.2,0.2", "--device", "cpu",
              "--threads", "1", "--bootstrap", "0", "--seed", "0"]
SIMULATE_ARGS = ["--survey", "space", "--n", "300", "--layout", "train", "--seed", "4", "--lens-fraction", "0.5"]


def prepare_started(cache: Path) -> bool:
    """``dataset prepare`` is at work: something (its temp folder) appeared in the cache folder."""
    return cache.is_dir() and any(cache.iterdir())


def train_started(run_dir: Path) -> bool:
    """``train`` finished its first epoch."""
    return (run_dir / "last.ckpt").is_file()


def simulate_started(out: Path) -> bool:
    """``simulate`` wrote its first object."""
    return out.is_dir() and any(out.rglob("*.fits"))


#: Temporary names the code uses: ``lexactum.runs.atomic_path``'s ``.NAME.XXXXXXXX.partSUFFIX``, the
#: cache's ``.NAME.tmp-PID-XXXXXXXX`` and ``.NAME.old-XXXXXXXX`` folders, any other hidden ``.part``/``.tmp``,
#: and the ``.tmpXXXXXX`` of libraries that write next to the target (safetensors).
TEMPORARY = (
    re.compile(r"^\..+\.[0-9a-f]{8}\.part(\.\w+)?$"),
    re.compile(r"^\..+\.(tmp|old)-[0-9a-f-]+$"),
    re.compile(r"^\..*\.(part|tmp)\b"),
    re.compile(r".*\.part$"),
    re.compile(r"^\.tmp\w{6,}$"),
)


@dataclasses.dataclass(frozen=True)
class Reference:
    """An uninterrupted run shared by the session: its folder, and how long the command worked after its
    progress point (its start if it has none)."""

    folder: Path
    seconds: float


def new_tag() -> str:
    return uuid.uuid4().hex


def cli_env(tag: str | None = None) -> dict[str, str]:
    """The environment of a command: these sources first, no progress bars, no GUI, the marker."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    env["LEXACTUM_NO_PROGRESS"] = "1"
    env["MPLBACKEND"] = "Agg"
    env.pop("LEXACTUM_CACHE_DIR", None)
    env[TAG_VARIABLE] = tag or new_tag()
    return env


def command_line(argv: Sequence[str | os.PathLike]) -> list[str]:
    return [sys.executable, "-m", "lexactum", *map(str, argv)]


def run_cli(argv: Sequence[str | os.PathLike], check: bool = False) -> subprocess.CompletedProcess:
    """Run ``lexactum ARGV`` to its end (in the temp folder: nothing lands in the checkout by default).

    The processes it leaves behind are killed and listed in the result's ``left_behind`` ('' if none), which
    :func:`assert_one_line_error` and :func:`assert_succeeded` check last. With ``check``, a failure fails
    the test at once (reference runs)."""
    tag = new_tag()
    started = time.monotonic()
    proc = subprocess.run(command_line(argv), env=cli_env(tag), cwd=tempfile.gettempdir(), capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT)
    proc.seconds = time.monotonic() - started
    proc.left_behind = left_behind(tag)
    if check:
        assert_succeeded(proc, "reference run")
    return proc


def assert_succeeded(proc: subprocess.CompletedProcess, context: str) -> None:
    command = " ".join(map(str, proc.args[3:]))
    assert proc.returncode == 0, f"{context}; {command} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    assert not proc.left_behind, f"{context}; {command} left processes behind:\n{proc.left_behind}"


class Started:
    """A command running in the background, its output going to files (a full pipe would stall it)."""

    def __init__(self, argv: Sequence[str | os.PathLike], logs: Path):
        self.argv = [str(a) for a in argv]
        self.tag = new_tag()
        logs.mkdir(parents=True, exist_ok=True)
        self.stdout = logs / f"{self.tag}.out"
        self.stderr = logs / f"{self.tag}.err"
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen(command_line(self.argv), env=cli_env(self.tag), cwd=tempfile.gettempdir(),
                                         stdout=out, stderr=err)
        self.started = time.monotonic()

    def finished(self) -> bool:
        return self.proc.poll() is not None

    def wait_for(self, condition: Callable[[], bool], timeout: float = 120.0) -> bool:
        """Poll ``condition`` until it holds (True) or the command ends (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            if self.finished():
                return False
            time.sleep(0.02)
        self.kill()
        pytest.fail(f"lexactum {' '.join(self.argv)}: the awaited progress point never came in {timeout} s")

    def kill_after(self, delay: float) -> str:
        """SIGKILL the command ``delay`` seconds from now (sooner if it ends) and check nothing outlives it.

        Returns what happened, for assertion messages."""
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not self.finished():
            time.sleep(0.01)
        at = time.monotonic() - self.started
        if self.finished():
            what = (f"the command had already finished (exit {self.proc.returncode}) {at:.2f} s after its start; "
                    "only the rerun is checked")
            warnings.warn(f"lexactum {' '.join(self.argv[:2])}: the kill came too late: {what}", stacklevel=2)
        else:
            self.kill()
            what = f"killed with SIGKILL {at:.2f} s after its start"
        self.left_behind = left_behind(self.tag)
        if self.left_behind:
            what += f"; {len(self.left_behind.splitlines())} process(es) outlived it"
        return what

    def assert_nothing_left_behind(self) -> None:
        """Checked last, so that a test reports what the rerun gives even when the kill left processes."""
        if self.left_behind:
            pytest.fail(f"lexactum {' '.join(self.argv[:2])}: processes left behind {ORPHAN_GRACE:.0f} s after "
                        f"the SIGKILL:\n{self.left_behind}")

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def marked_processes(tag: str) -> dict[int, str]:
    """{pid: command line} of the live processes whose environment holds ``TAG_VARIABLE=tag``."""
    marker = f"{TAG_VARIABLE}={tag}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            if marker not in environ.split(b"\0"):
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile, or a zombie (its environment is empty anyway)
            continue
        found[int(entry.name)] = cmdline
    return found


def left_behind(tag: str, grace: float = ORPHAN_GRACE) -> str:
    """The processes of the tagged command still alive ``grace`` s from now, one line each ('' if none).

    They are killed, so that nothing runs on into the next tests."""
    if not Path("/proc/self/environ").is_file():
        return ""  # no /proc (not Linux): nothing to inspect
    deadline = time.monotonic() + grace
    while (left := marked_processes(tag)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return "\n".join(f"  {pid}: {cmd[:160]}" for pid, cmd in sorted(left.items()))


def temporaries(*folders: Path) -> list[str]:
    """Files and folders under ``folders`` with a temporary name (what a kill or a failure left)."""
    found = []
    for folder in folders:
        if not Path(folder).exists():
            continue
        for path in Path(folder).rglob("*"):
            if any(p.match(path.name) for p in TEMPORARY):
                found.append(str(path))
    return sorted(found)


def snapshot(*folders: Path) -> dict[str, str]:
    """{path: sha256 of the bytes, or 'dir'} of everything under ``folders``: to prove nothing changed."""
    state = {}
    for folder in folders:
        folder = Path(folder)
        state[str(folder)] = "dir" if folder.is_dir() else "missing"
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                state[str(path)] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def files_under(folder: Path, hidden: bool = False) -> dict[str, bytes]:
    """{relative path: bytes} of the regular files under ``folder`` (hidden ones only when asked)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and (hidden or not any(part.startswith(".") for part in p.relative_to(folder).parts))}


def error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def assert_one_line_error(proc: subprocess.CompletedProcess, command: str, names: Iterable[str],
                          *words: Sequence[str]) -> str:
    """The contract of a failure: exit 2, no traceback, a last stderr line ``lexactum COMMAND...: error:``
    naming one of ``names`` (a path or a file name) and, for each of ``words``, one of its alternatives
    (case-insensitive). Returns that line."""
    line = error_line(proc)
    told = f"exit {proc.returncode}, stderr ends with:\n{proc.stderr[-2500:]}"
    assert proc.returncode == 2, f"expected exit 2: {told}"
    assert "Traceback" not in proc.stderr, f"a traceback instead of one line: {told}"
    assert line.startswith(f"lexactum {command}") and ": error:" in line, f"not a lexactum error line: {told}"
    names = [str(n) for n in names]
    assert any(n in line for n in names), f"the error names none of {names}: {line!r}"
    for alternatives in words:
        assert any(w.lower() in line.lower() for w in alternatives), f"the error says none of {alternatives}: {line!r}"
    assert not getattr(proc, "left_behind", ""), f"processes left behind after the error:\n{proc.left_behind}"
    return line


#: What a no-space message says (not just "space": that is also a survey's name, in paths and cache names).
NO_SPACE = ("no space", "space left", "enough space", "free space", "disk full", "disk is full")
#: What a read-only message says.
READ_ONLY = ("read-only", "read only", "permission", "cannot write", "not writable")


def no_space(*args, **kwargs):
    """Stand-in for a write that meets a full disk."""
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
