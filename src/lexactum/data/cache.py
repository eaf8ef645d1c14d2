"""Prepared datasets: every object read and normalised once, kept as a memory-mapped float32 array.

A cache folder holds ``images.f32`` (raw ``(N, C, H, W)`` float32) and ``index.json`` (IDs, labels, the
dataset's fingerprint, the options and the package version). It is built in a temporary folder that is
renamed into place with the index written last, so an interrupted preparation never looks complete. It is
reused while the dataset's files (names, sizes, times), the normalisation and the mask option are unchanged.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lexactum.data.layouts import ChallengeDataset, read_objects
from lexactum.data.surveys import SurveyFormat, get_survey
from lexactum.errors import DataError, LexactumError, human_size
from lexactum.processes import process_alive
from lexactum.runs import check_free_space, ensure_folder, machine_tag

INDEX_FILE = "index.json"
IMAGES_FILE = "images.f32"
#: Bumped whenever the cache's files change meaning (2: masked pixels are 0 before normalising, not ignored).
CACHE_FORMAT = 2
#: Another machine's temporary cache folder counts as abandoned when nothing in it changed for this long (a
#: running preparation writes its image file all the time).
ABANDONED_AFTER_S = 24 * 3600
#: Objects per work unit: small enough for a smooth progress bar, large enough to amortise a task.
CHUNK_OBJECTS = 256
#: Objects read and normalised together inside a work unit.
BATCH_OBJECTS = 64
#: Bytes written at a time where the file system cannot allocate a file's blocks at once.
ZERO_BLOCK = 8 << 20


@dataclass
class PreparedData:
    """A prepared dataset: ``images`` (read-only memmap ``(N, C, H, W)`` float32), ``ids``, ``labels``."""

    path: Path
    """The cache folder."""
    images: np.memmap
    ids: np.ndarray
    labels: np.ndarray
    survey: SurveyFormat
    index: dict = field(repr=False)
    """Everything ``index.json`` holds (dataset path, fingerprint, normalisation, mask, version...)."""
    reused: bool = False
    """True when an existing cache was opened rather than built."""
    seconds: float = 0.0
    """Time spent building (0 when reused)."""

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def images_path(self) -> Path:
        return self.path / IMAGES_FILE

    @property
    def dataset_path(self) -> Path:
        return Path(self.index["dataset"])

    @property
    def images_per_second(self) -> float:
        return len(self) / self.seconds if self.seconds > 0 else float("nan")

    @property
    def blank(self) -> np.ndarray:
        """Positions of the blank objects (no pixel varies: all NaN, all masked or constant); empty for a cache
        written before blanks were counted."""
        return np.asarray(self.index.get("blank", []), dtype=np.int64)

    def blank_note(self) -> str | None:
        """One line about the blank objects for the user, or None when there are none."""
        blank = self.blank
        if len(blank) == 0:
            return None
        shown = ", ".join(str(int(self.ids[k])) for k in blank[:5]) + (" ..." if len(blank) > 5 else "")
        return (f"{len(blank)} of {len(self)} objects of {self.dataset_path} are blank (no pixel varies: all NaN, "
                f"masked or constant), e.g. ID {shown}")


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where prepared datasets go: ``cache_dir``, else ``$LEXACTUM_CACHE_DIR``, else the user cache folder."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("LEXACTUM_CACHE_DIR"):
        return Path(os.environ["LEXACTUM_CACHE_DIR"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("lexactum")) / "prepared"


def cache_path(dataset: ChallengeDataset, normalisation: str = "zscale", mask: bool = True,
               cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder of ``dataset`` prepared with these options (a readable name plus a hash)."""
    key = json.dumps([str(dataset.path), dataset.survey.name, normalisation, bool(mask)])
    digest = hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
    name = f"{dataset.survey.name}-{dataset.layout}-{_safe(dataset.path.name)}-{normalisation}-{digest}"
    return cache_root(cache_dir) / name


def cache_status(dataset: ChallengeDataset, normalisation: str = "zscale", mask: bool = True,
                 cache_dir: str | os.PathLike | None = None) -> dict:
    """{'state': 'missing'|'valid'|'stale', 'path': str, 'size': bytes on disk} of the dataset's cache."""
    folder = cache_path(dataset, normalisation, mask, cache_dir)
    if not (folder / INDEX_FILE).is_file():
        state = "missing"
    else:
        state = "valid" if _stale_reason(folder, dataset, normalisation, mask) is None else "stale"
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) if folder.is_dir() else 0
    return {"state": state, "path": str(folder), "size": size}


def prepare(dataset: ChallengeDataset | str | os.PathLike, normalisation: str = "zscale", mask: bool = True,
            cache_dir: str | os.PathLike | None = None, workers: int | None = None,
            progress: bool = True) -> PreparedData:
    """Read and normalise every object of ``dataset`` once, or reuse a valid cache of it.

    ``mask`` sets the survey's masked pixels (ground: exactly 100.0) to 0 before normalising. ``workers``
    processes (default: all cores) each write their chunks of objects straight into the shared memmap.
    """
    from lexactum.data.normalise import get_normalisation

    if not isinstance(dataset, ChallengeDataset):
        dataset = ChallengeDataset(dataset)
    get_normalisation(normalisation)  # an unknown name fails before any work
    if workers is not None and workers < 1:
        raise LexactumError(f"--workers must be 1 or more, not {workers}")
    folder = cache_path(dataset, normalisation, mask, cache_dir)
    if (folder / INDEX_FILE).is_file() and _stale_reason(folder, dataset, normalisation, mask) is None:
        return open_prepared(folder, reused=True)
    started = time.perf_counter()
    _build(dataset, folder, normalisation, mask, workers, progress)
    prepared = open_prepared(folder)
    prepared.seconds = time.perf_counter() - started
    return prepared


def open_prepared(folder: str | os.PathLike, reused: bool = False) -> PreparedData:
    """Open a cache folder written by :func:`prepare` (read-only memmap, nothing executed)."""
    folder = Path(folder)
    index = _read_index(folder)
    if index is None:
        raise DataError(f"{folder}: not a prepared dataset (no readable {INDEX_FILE})")
    shape = tuple(index["shape"])
    images_file = folder / IMAGES_FILE
    expected = int(np.prod(shape)) * 4
    if not images_file.is_file() or images_file.stat().st_size != expected:
        raise DataError(f"{images_file}: missing or not {expected} bytes; prepare the dataset again")
    images = np.memmap(images_file, dtype=np.float32, mode="r", shape=shape)
    return PreparedData(path=folder, images=images, ids=np.asarray(index["ids"], dtype=np.int64),
                        labels=np.asarray(index["labels"], dtype=np.int64),
                        survey=get_survey(index["survey"]), index=index, reused=reused)


def _build(dataset: ChallengeDataset, folder: Path, normalisation: str, mask: bool, workers: int | None,
           progress: bool) -> None:
    """Write the cache into a temporary sibling folder, index last, then rename it into place.

    The space it takes is known beforehand and checked first; the image file is then allocated on disk
    before it is mapped, so a disk that fills up meanwhile gives an OSError (a write into a mapped sparse
    file would kill the process with SIGBUS instead). Any OSError is one line naming the cache folder,
    and the temporary folder is removed."""
    index = _index(dataset, normalisation, mask)
    ensure_folder(folder.parent)
    _remove_abandoned(folder)
    n_bytes = int(np.prod(index["shape"])) * 4
    check_free_space(folder.parent, n_bytes + len(json.dumps(index)) + 4096, "the prepared dataset",
                     "free some space or choose another --cache-dir")
    tmp = folder.parent / f".{folder.name}.tmp-{machine_tag()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        _allocate(tmp / IMAGES_FILE, n_bytes)
        index["blank"] = _fill(dataset, tmp / IMAGES_FILE, tuple(index["shape"]), normalisation, mask, workers,
                               progress)
        _sync(tmp / IMAGES_FILE)  # on disk before the index says so: no zeros taken for images after a crash
        index["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        with open(tmp / INDEX_FILE, "w") as fh:
            fh.write(json.dumps(index))
            fh.flush()
            os.fsync(fh.fileno())
        _swap_into_place(tmp, folder)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise LexactumError(_os_error_line(exc, folder.parent, n_bytes)) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _index(dataset: ChallengeDataset, normalisation: str, mask: bool) -> dict:
    """What ``index.json`` holds, but the time of creation."""
    fingerprint = dataset.fingerprint()  # before reading: a file changed meanwhile makes the cache stale
    first = dataset.read(0)
    return {
        "format": CACHE_FORMAT,
        "version": _package_version(),
        "dataset": str(dataset.path),
        "survey": dataset.survey.name,
        "layout": dataset.layout,
        "fingerprint": fingerprint,
        "normalisation": normalisation,
        "mask": bool(mask),
        "shape": [len(dataset), *first.shape],
        "ids": dataset.ids.tolist(),
        "labels": dataset.labels.tolist(),
    }


def _fill(dataset: ChallengeDataset, images_path: Path, shape: tuple, normalisation: str, mask: bool,
          workers: int | None, progress: bool) -> list[int]:
    """Read and normalise every object into the allocated image file, in chunks (in processes if several);
    returns the positions of blank objects (see :func:`_prepare_chunk`)."""
    from lexactum.progress import progress as progress_bar

    mask_value = dataset.survey.mask_value if mask else None
    starts = range(0, shape[0], CHUNK_OBJECTS)
    chunks = [(start, min(start + CHUNK_OBJECTS, shape[0])) for start in starts]
    n_workers = _worker_count(workers, len(chunks))
    tasks = [(str(images_path), shape, start, stop, dataset._band_files[start:stop], normalisation,
              mask_value, n_workers > 1) for start, stop in chunks]
    blank: list[int] = []
    with progress_bar(total=shape[0], desc=f"preparing {dataset.path.name}", unit="img",
                      enabled=None if progress else False) as bar:
        try:
            if n_workers <= 1:
                for task in tasks:
                    blank += _counted(bar, _prepare_chunk(task))
            else:
                blank += _run_parallel(tasks, n_workers, bar)
        except BaseException:
            bar.leave = False  # erase the unfinished bar: the error is then the only line left
            raise
    return sorted(blank)


def _counted(bar, result: tuple[int, list[int]]) -> list[int]:
    """Advance the bar by a chunk's objects; its blank positions."""
    written, blank = result
    bar.update(written)
    return blank


def _allocate(path: Path, n_bytes: int) -> None:
    """Create ``path`` with ``n_bytes`` really reserved on disk (zeros), so that no later write can fail.

    ``posix_fallocate`` reserves the blocks at once; where the file system cannot (or the call is
    missing), zeros are written instead, which reserves them as well, only slower."""
    with open(path, "xb") as fh:
        try:
            os.posix_fallocate(fh.fileno(), 0, n_bytes)
            return
        except AttributeError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
        block = bytes(ZERO_BLOCK)
        fh.truncate(0)
        for _ in range(n_bytes // len(block)):
            fh.write(block)
        fh.write(block[:n_bytes % len(block)])
        fh.flush()


def _sync(path: Path) -> None:
    """Write ``path``'s pages (written through memory maps, by any process) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _os_error_line(exc: OSError, folder: Path, n_bytes: int) -> str:
    """One line for an OSError met while building a cache in ``folder``."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on {folder} while preparing the dataset ({human_size(n_bytes)} needed; free some "
                "space or choose another --cache-dir)")
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{folder}: cannot write the prepared dataset: {exc.strerror or exc}{where}"


def _prepare_chunk(task) -> tuple[int, list[int]]:
    """Read and normalise objects [start, stop) into the shared memmap; returns how many were written and the
    positions of the blank ones: no pixel of any band differs from the others (all NaN, all masked, or
    constant), which no network can score, and which a user should hear about rather than train on."""
    from lexactum.data.normalise import blank_rows, normalise

    images_path, shape, start, stop, band_files, normalisation, mask_value, in_worker = task
    if in_worker:  # the processes already share the cores: no threads inside each
        import numba

        numba.set_num_threads(1)
    images = np.memmap(images_path, dtype=np.float32, mode="r+", shape=tuple(shape))
    buffer = np.empty((BATCH_OBJECTS, *shape[1:]), dtype=np.float32)
    blank: list[int] = []
    for lo in range(0, stop - start, BATCH_OBJECTS):
        files = band_files[lo:lo + BATCH_OBJECTS]
        raw = read_objects(files, out=buffer[:len(files)])
        out = images[start + lo:start + lo + len(files)]
        normalise(raw, method=normalisation, mask_value=mask_value, out=out)
        blank += [start + lo + int(k) for k in np.flatnonzero(blank_rows(out.reshape(len(files), -1)))]
    del images  # shared pages: other processes see the data without a flush to disk
    return stop - start, blank


def _run_parallel(tasks: list, n_workers: int, bar) -> list[int]:
    from concurrent.futures import FIRST_COMPLETED, wait

    from lexactum.processes import executor, stop

    with executor(n_workers, preload=("lexactum.data.cache", "lexactum.data.normalise", "lexactum.data.fits")) as pool:
        futures = {pool.submit(_prepare_chunk, task) for task in tasks}
        blank: list[int] = []
        try:
            while futures:
                done, futures = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    blank += _counted(bar, future.result())
        except BaseException:
            stop(pool)
            raise
    return blank


def _worker_count(workers: int | None, n_chunks: int) -> int:
    from lexactum.devices import usable_cores

    available = usable_cores()
    return max(1, min(workers or available, n_chunks))


def _stale_reason(folder: Path, dataset: ChallengeDataset, normalisation: str, mask: bool) -> str | None:
    """Why the cache in ``folder`` does not fit the dataset and options, or None when it does."""
    index = _read_index(folder)
    if index is None:
        return "no readable index"
    checks = {
        "format": CACHE_FORMAT,
        "version": _package_version(),
        "dataset": str(dataset.path),
        "normalisation": normalisation,
        "mask": bool(mask),
        "survey": dataset.survey.name,
    }
    for key, value in checks.items():
        if index.get(key) != value:
            return f"{key} changed"
    if index.get("ids") != dataset.ids.tolist() or index.get("labels") != dataset.labels.tolist():
        return "objects changed"
    if index.get("fingerprint") != dataset.fingerprint():
        return "files changed"
    images_file = folder / IMAGES_FILE
    if not images_file.is_file() or images_file.stat().st_size != int(np.prod(index["shape"])) * 4:
        return "image file incomplete"
    return None


def _read_index(folder: Path) -> dict | None:
    """The index of the cache in ``folder`` when it is a readable, well-formed one; else None (then the
    cache is rebuilt, or refused by :func:`open_prepared`), whatever the folder holds."""
    path = Path(folder) / INDEX_FILE
    try:
        if not path.is_file():  # nothing, or something never to open (a named pipe would block)
            return None
        index = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(index, dict) or not {"ids", "labels", "shape", "survey"} <= set(index):
        return None
    shape, ids, labels = index["shape"], index["ids"], index["labels"]
    well_formed = (isinstance(shape, list) and len(shape) == 4 and all(type(n) is int and n > 0 for n in shape)
                   and isinstance(ids, list) and isinstance(labels, list) and len(ids) == len(labels) == shape[0])
    return index if well_formed else None


def _swap_into_place(tmp: Path, folder: Path) -> None:
    """Rename the finished ``tmp`` folder to ``folder``, moving an older cache aside first.

    Another process preparing the same cache may put its folder there in between (two trainings started
    on one dataset): then the rename fails, and as that cache holds the same files it is kept, ours
    dropped."""
    old = None
    if folder.exists():
        old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
        try:
            os.replace(folder, old)
        except FileNotFoundError:  # the other process moved it aside itself
            old = None
    try:
        os.replace(tmp, folder)
    except OSError:
        if _read_index(folder) is None:  # not a finished cache there: a real failure
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_abandoned(folder: Path) -> None:
    """Delete the temporary folders of this cache that killed preparations left (their process is gone).

    A cache folder may be shared by the nodes of a cluster: another machine's temporary folder (its tag is
    not ours, so its pid means nothing here) is left to that machine unless it is older than
    :data:`ABANDONED_AFTER_S`, when no preparation can still be writing it."""
    for leftover in folder.parent.glob(f".{folder.name}.*"):
        if _in_use(leftover.name[len(folder.name) + 2:].split("-"), leftover):
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                leftover.unlink()


def _in_use(parts: list[str], leftover: Path) -> bool:
    """Whether the temporary ``tmp-<machine>-<pid>-<hex>`` (or the older ``tmp-<pid>-<hex>``) may still be
    written by a running preparation."""
    if parts[0] != "tmp" or not parts[-2].isdigit() or len(parts) not in (3, 4):
        return False
    if len(parts) == 4 and parts[1] != machine_tag():
        return time.time() - _last_change(leftover) < ABANDONED_AFTER_S
    return process_alive(int(parts[-2]))


def _last_change(path: Path) -> float:
    """The newest modification time of ``path`` and the files in it (0 when it cannot be read)."""
    try:
        times = [path.lstat().st_mtime]
        if path.is_dir() and not path.is_symlink():
            times += [entry.stat(follow_symlinks=False).st_mtime for entry in os.scandir(path)]
    except OSError:
        return 0.0
    return max(times)


def _package_version() -> str:
    from lexactum import __version__

    return __version__


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:40] or "dataset"
