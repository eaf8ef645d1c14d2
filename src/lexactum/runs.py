"""Run folders: where one training run keeps its configuration, split, per-epoch metrics and results.

A run folder (``runs/<timestamp>_<survey>_<network>/`` by default) holds ``config.json`` (the resolved
configuration), ``split.json`` (which IDs, with their labels, went to train / validation / test),
``metrics.csv`` (one row per epoch), Lightning checkpoints (``last.ckpt``, ``best.ckpt``) and the
evaluation outputs. Every file here is written to a temporary name and renamed into place, so an interrupted
run never leaves a half-written file that looks complete; the helpers for that live here and are meant to be
reused by the other modules.
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import functools
import io
import json
import os
import re
import shutil
import stat
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from lexactum.errors import LexactumError, WriteError

CONFIG = "config.json"
SPLIT = "split.json"
METRICS_CSV = "metrics.csv"
CURVES = "training_curves.png"
LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT = "best.ckpt"
#: Default parent folder of run folders (relative to the working directory).
RUNS_ROOT = Path("runs")


#: Temporary names of :func:`atomic_path`: ``.<stem>.<machine>-<pid>-<8 hex>.part<suffix>`` (the pid tells
#: whether the process writing it still runs, on the machine that :func:`machine_tag` names).
TEMPORARY_NAME = re.compile(r"\..*\.(?P<machine>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{8}\.part(\.\w+)?")
#: Folders already cleared of abandoned temporaries by this process.
_SWEPT: set[str] = set()

#: The files of the current :func:`all_or_nothing` group, waiting to be renamed into place together.
_GROUP: contextvars.ContextVar[list[tuple[Path, Path]] | None] = contextvars.ContextVar("_GROUP", default=None)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed to ``path``, on error removed.

    For writers that want a file name (matplotlib's savefig, safetensors' save_file). The temporary name
    keeps the suffix, so libraries that pick a format from it still do. The file gets the mode any new file
    gets here (0666 less the umask), whatever mode the writer gave it (safetensors makes 0600 files). A
    failure to write (disk full, read-only folder) is a :class:`WriteError` naming ``path``; removing the
    temporary never hides it. Inside :func:`all_or_nothing` the rename waits for the group's end.
    """
    path = Path(path)
    ensure_folder(path.parent)
    if path.is_dir():
        raise LexactumError(f"{path}: is a folder; cannot write a file of that name")
    _sweep_abandoned(path.parent)
    tmp = path.with_name(f".{path.stem}.{machine_tag()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.part{path.suffix}")
    try:
        mode = _new_file_mode(tmp)
        yield tmp
        with open(tmp, "rb") as written:  # on disk before the rename: no empty file after a power cut
            if stat.S_IMODE(os.fstat(written.fileno()).st_mode) != mode:
                os.fchmod(written.fileno(), mode)
            os.fsync(written.fileno())
        group = _GROUP.get()
        if group is None:
            os.replace(tmp, path)
        else:
            group.append((tmp, path))
    except WriteError:  # a writer's own, already described
        _discard(tmp)
        raise
    except OSError as exc:
        _discard(tmp)
        if exc.filename is not None and os.fsdecode(exc.filename) not in (str(tmp), str(path)):
            raise  # about another file the writer read: not ours to describe
        raise WriteError.of(exc, path) from exc
    except BaseException:
        _discard(tmp)
        raise


def _sweep_abandoned(folder: Path) -> None:
    """Remove the temporaries that killed processes left in ``folder``, once per folder and process.

    A kill -9 while a command's outputs wait in :func:`all_or_nothing` leaves their temporaries behind;
    the next write into the folder removes those whose process is gone (never a live writer's). Only this
    machine's: on a folder shared with other hosts or containers, a pid from there means nothing here."""
    from lexactum.processes import process_alive

    key = os.path.abspath(folder)
    if key in _SWEPT:
        return
    _SWEPT.add(key)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = TEMPORARY_NAME.fullmatch(entry.name)
        if (match and match["machine"] == machine_tag() and int(match["pid"]) != os.getpid()
                and not process_alive(int(match["pid"]))):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


@functools.cache
def machine_tag() -> str:
    """8 hex digits naming this host and its process-id space (a container has its own), for temporary names:
    whether their writer still runs can only be told where its pid was given."""
    import hashlib
    import socket

    try:
        pid_space = os.stat("/proc/self/ns/pid").st_ino  # Linux; elsewhere the host name alone
    except OSError:
        pid_space = 0
    return hashlib.blake2b(f"{socket.gethostname()}|{pid_space}".encode(), digest_size=4).hexdigest()


@contextlib.contextmanager
def all_or_nothing() -> Iterator[None]:
    """Files written (with :func:`atomic_path` and the writers here) inside the block are renamed into place
    together at its end; when anything in the block fails, none of them is and the earlier files stay.

    So a command's outputs (scores, submission, config.json...) do not mix two runs. Every file is already
    written and synced when the renames start, and a rename in the same folder needs no space, so the renames
    themselves fail only if the folder changes under us (then the files renamed so far stay new, the rest
    are removed, and the error names the file). A kill during the renames is the same case. A nested block
    joins the outer one.
    """
    if _GROUP.get() is not None:
        yield
        return
    staged: list[tuple[Path, Path]] = []
    token = _GROUP.set(staged)
    try:
        yield
    except BaseException:
        for tmp, _ in staged:
            _discard(tmp)
        raise
    finally:
        _GROUP.reset(token)
    with _folders_locked(path.parent for _, path in staged):
        for k, (tmp, path) in enumerate(staged):
            try:
                os.replace(tmp, path)
            except OSError as exc:
                for left, _ in staged[k:]:
                    _discard(left)
                raise WriteError.of(exc, path) from exc


@contextlib.contextmanager
def _folders_locked(folders: Iterable[Path]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on each folder (in a fixed order: no deadlock) while a group is renamed.

    Two commands writing into the same folder at once (two ``predict --out DIR``) would otherwise interleave
    their renames and leave scores.csv of one run beside submission.txt of the other; locked, the last
    group to finish replaces the whole set. Where folders cannot be locked (no fcntl), nothing is held.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    handles = []
    try:
        for folder in sorted({os.fspath(f) for f in folders}):
            try:
                handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:  # the rename will say what is wrong with the folder
                continue
            handles.append(handle)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        for handle in handles:
            os.close(handle)


def _new_file_mode(tmp: Path) -> int:
    """The permission bits a new file gets in ``tmp``'s folder (0666 less the umask, or what the folder's
    default ACL says), found by creating ``tmp`` (removed again: some writers refuse an existing file)."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    os.unlink(tmp)
    return mode


def _discard(tmp: Path) -> None:
    """Remove a temporary file if it is there; a failure here (a read-only folder) must not hide the error
    that brought us here, so it is ignored (a later run of the same writer removes the leftover)."""
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


#: The file whose lock claims a folder for one process (:func:`claimed`).
CLAIM_FILE = ".lexactum.lock"


@contextlib.contextmanager
def claimed(folder: str | os.PathLike, doing: str = "is in use") -> Iterator[None]:
    """Hold ``folder`` for this process during the block: another process asking meanwhile gets one line
    ("FOLDER is being trained by another process") instead of both writing the same files.

    An advisory lock (flock) on a small file in the folder: the system drops it when the process ends, even
    by kill -9, so a crash never leaves the folder claimed; forked children (data loader workers) do not keep
    it. A folder where the file cannot be made (read-only), or a file system without locks, is not claimed:
    the writes there say what is wrong, or the run goes on unguarded.
    """
    try:
        import fcntl

        handle = os.open(Path(folder) / CLAIM_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    except (ImportError, OSError):
        yield
        return
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LexactumError(f"{folder} {doing} by another process; wait for it to end") from None
        except OSError:  # no locks on this file system (some NFS, FUSE, SMB mounts)
            pass
        _CLAIMS.add(handle)
        yield
    finally:
        _CLAIMS.discard(handle)
        os.close(handle)


#: Descriptors of the claims this process holds; a forked child closes its copies (:func:`_drop_claims`).
_CLAIMS: set[int] = set()


def _drop_claims() -> None:
    """In a forked child: close the inherited claims, so that after a kill -9 of the parent a lingering worker
    does not keep its run folder claimed."""
    for handle in list(_CLAIMS):
        with contextlib.suppress(OSError):
            os.close(handle)
    _CLAIMS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_claims)


def _nearest_existing(path: Path) -> Path:
    """``path``, or its nearest ancestor that exists (a folder still to be made lands on its file system)."""
    existing = path
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        existing = existing.parent
    return existing


def check_free_space(folder: str | os.PathLike, need: int, what: str, advice: str) -> None:
    """Before long work that will write ``need`` bytes under ``folder`` (which may not exist yet): one
    LexactumError now, ``no space left on FOLDER for WHAT: need X, Y free (ADVICE)``, when its file system has
    less free, rather than a full disk after hours. Where the free space cannot be told, the writes will say."""
    from lexactum.errors import human_size

    existing = _nearest_existing(Path(folder))
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        return
    if need > free:
        raise LexactumError(f"no space left on {existing} for {what}: need {human_size(need)}, "
                            f"{human_size(free)} free ({advice})")


def check_output_folder(folder: str | os.PathLike, what: str = "--out") -> None:
    """Before long work whose outputs go to ``folder``: it is a folder, or can be created as one, and can be
    written to; else one LexactumError now, rather than after hours of scoring or training. Creates nothing."""
    folder = Path(folder)
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        where = "" if existing == folder else f" ({existing} is not a folder)"
        raise LexactumError(f"{what} {folder}: not a folder{where}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise LexactumError(f"{what} {folder}: cannot write in {existing} (read-only or no permission)")


def ensure_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (and its parents) if needed, or a LexactumError naming it when it cannot be one."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise LexactumError(f"{folder}: is a file, not a folder") from None
    except OSError as exc:
        raise LexactumError(f"{folder}: cannot create the folder ({exc.strerror or exc})") from None
    return folder


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj) -> Path:
    """Pretty JSON, atomically; numpy scalars and paths are converted, NaN is written as null."""
    return write_text_atomic(path, json.dumps(_plain(obj), indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike) -> dict:
    """A JSON object from ``path``, or a LexactumError naming the file."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LexactumError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LexactumError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(value, dict):
        raise LexactumError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping],
              fieldnames: Sequence[str] | None = None) -> Path:
    """Rows of dicts as CSV with a header (columns: ``fieldnames`` or the keys in first-seen order)."""
    if fieldnames is None:
        fieldnames = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
    return write_text_atomic(path, buffer.getvalue())


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a CSV file with a header, as dicts of strings ([] when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def new_run_dir(survey: str, network: str, root: str | os.PathLike = RUNS_ROOT,
                now: datetime | None = None) -> Path:
    """Create and return ``<root>/<UTC timestamp>_<survey>_<network>`` (``-2``, ``-3``... if taken)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}_{survey}_{network}"
    candidate, k = base, 1
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            k += 1
            candidate = base.with_name(f"{base.name}-{k}")


def write_config(run_dir: str | os.PathLike, config: Mapping) -> Path:
    """``config.json``: the resolved configuration plus the versions of the software that ran it."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from lexactum import __version__

    def installed(name: str) -> str | None:  # from the package metadata: importing lightning takes seconds
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    record = dict(config)
    record["versions"] = {
        "lexactum": __version__,
        "python": platform.python_version(),
        "torch": installed("torch"),
        "lightning": installed("lightning"),
    }
    record.setdefault("created", datetime.now(UTC).isoformat(timespec="seconds"))
    return write_json(Path(run_dir) / CONFIG, record)


def read_config(run_dir: str | os.PathLike) -> dict:
    """The ``config.json`` of a run folder; a clear error when ``run_dir`` is not a run folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise LexactumError(f"{run_dir}: run folder does not exist")
    if not (run_dir / CONFIG).is_file():
        raise LexactumError(f"{run_dir}: not a run folder (no {CONFIG})")
    return read_json(run_dir / CONFIG)


def write_split(run_dir: str | os.PathLike, parts: Mapping[str, Iterable[int]],
                labels: Mapping[str, Iterable[int]] | None = None, **details) -> Path:
    """``split.json``: the object IDs of each part (``train``, ``val``, ``test``), their labels when given
    (a resume checks both: a catalog whose labels changed is not the data the run was trained on), plus
    ``details``."""
    record = dict(details)
    for name, ids in parts.items():
        ids = [int(i) for i in ids]
        record[name] = {"n": len(ids), "ids": ids}
        if labels is not None and name in labels:
            record[name]["labels"] = [int(label) for label in labels[name]]
    return write_json(Path(run_dir) / SPLIT, record)


def read_split(run_dir: str | os.PathLike) -> dict:
    return read_json(Path(run_dir) / SPLIT)


def _csv_value(value):
    if isinstance(value, float) and value != value:  # NaN: an empty cell reads back as missing
        return ""
    return value


def _plain(obj):
    """``obj`` with numpy scalars/arrays, paths and tuples made JSON-friendly and NaN/inf made null."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy scalar or array, torch tensor
        return _plain(obj.tolist())
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    return obj
