"""A folder of outputs that appears whole or not at all: written under a temporary sibling name, then renamed.

A report is thousands of files; renaming each into place (``runs.all_or_nothing``) would let a kill leave a
folder with half of them. Instead every file is written into a hidden sibling folder named like
:func:`lexactum.runs.atomic_path`'s temporaries, all of them are fsynced, and the folder is renamed to its name
at the end: the rename is the one atomic step. (A temporary name and a rename per file as well, inside a folder
nobody sees yet, would add nothing but time: about 4 ms a file here against under 1 ms, a minute for the
20,000 files of a 10,000-card report.)
A folder left by a killed process is removed by the next command writing beside it. An existing folder is
replaced only when asked (``--overwrite``), and only when it is a folder this command wrote (never a user's
other folder given as --out by mistake).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from lexactum.errors import LexactumError, WriteError
from lexactum.runs import TEMPORARY_NAME, check_output_folder, ensure_folder, machine_tag


def check_target(out: Path, overwrite: bool, is_ours: Callable[[Path], bool], what: str) -> None:
    """Before any work: ``out`` may be written (absent, or with ``overwrite`` a folder ``is_ours`` accepts)."""
    if os.path.lexists(out):
        if not overwrite:
            raise LexactumError(f"{out} already exists: use --overwrite to replace it, or choose another --out")
        if out.is_symlink() or not out.is_dir():
            raise LexactumError(f"{out} is not a folder: not replaced, even with --overwrite")
        if not is_ours(out):
            raise LexactumError(f"{out} is not {what}: not replaced, even with --overwrite (choose another --out)")
    check_output_folder(out.parent, "--out")


class Staging:
    """The temporary folder being filled (``path``): each file written once, all synced before publishing."""

    #: Threads syncing the files at the end: each fsync mostly waits for the disk, so they overlap.
    SYNC_THREADS = 8

    def __init__(self, path: Path):
        self.path = path
        self._files: list[Path] = []
        self._folders: set[Path] = {path}

    def write(self, name: str, data: bytes) -> Path:
        """Write ``data`` to ``name`` (a path relative to the folder, its sub-folders made as needed)."""
        target = self.path / name
        try:
            if target.parent not in self._folders:
                target.parent.mkdir(parents=True, exist_ok=True)
                self._folders.add(target.parent)
            with open(target, "xb") as handle:
                handle.write(data)
        except OSError as exc:
            raise WriteError.of(exc, target) from exc
        self._files.append(target)
        return target

    def sync(self) -> None:
        """Every file and folder written on disk, so that the renamed folder survives a power cut whole."""
        from concurrent.futures import ThreadPoolExecutor

        def fsync(path: Path) -> None:
            try:
                handle = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(handle)
                finally:
                    os.close(handle)
            except OSError as exc:
                raise WriteError.of(exc, path) from exc

        with ThreadPoolExecutor(self.SYNC_THREADS) as pool:
            list(pool.map(fsync, [*self._files, *sorted(self._folders, reverse=True)]))


@contextlib.contextmanager
def staged_folder(out: Path, overwrite: bool = False) -> Iterator[Staging]:
    """Yield a :class:`Staging` of an empty temporary folder beside ``out``; when the block ends without error
    it becomes ``out`` (replacing the earlier one with ``overwrite``), else it is removed and ``out`` stays as
    it was."""
    parent = ensure_folder(out.parent)
    _sweep(parent)
    staging = parent / f".{out.name}.{machine_tag()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.part"
    try:
        staging.mkdir()
    except OSError as exc:
        raise WriteError.of(exc, out) from exc
    try:
        filling = Staging(staging)
        yield filling
        filling.sync()
        _publish(staging, out, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _publish(staging: Path, out: Path, overwrite: bool) -> None:
    """Rename ``staging`` to ``out``; an earlier ``out`` (``overwrite``) is moved aside first and removed
    after, or moved back when the rename fails."""
    old = None
    if os.path.lexists(out):
        if not overwrite:  # appeared while we worked
            raise LexactumError(f"{out} appeared while the report was written: use --overwrite to replace it")
        old = staging.with_name(staging.name + ".old")
        try:
            os.replace(out, old)
        except OSError as exc:
            raise WriteError.of(exc, out) from exc
    try:
        os.replace(staging, out)
    except OSError as exc:
        if old is not None:
            with contextlib.suppress(OSError):
                os.replace(old, out)
        raise WriteError.of(exc, out) from exc
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _sweep(parent: Path) -> None:
    """Remove the staging folders that killed processes of this machine left in ``parent``."""
    from lexactum.processes import process_alive

    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    for entry in entries:
        match = TEMPORARY_NAME.fullmatch(entry.name)
        if (match and entry.is_dir(follow_symlinks=False) and match["machine"] == machine_tag()
                and int(match["pid"]) != os.getpid() and not process_alive(int(match["pid"]))):
            shutil.rmtree(entry.path, ignore_errors=True)
