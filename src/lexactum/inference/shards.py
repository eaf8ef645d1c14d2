"""Scores kept in shards as they come, so that a killed survey run loses at most one shard of work.

The objects are cut into shards of consecutive positions; each process scores whole shards (shard ``s``
belongs to rank ``s % world size``) and writes each one atomically when its last batch is scored, under
``OUT/shards/`` beside a manifest naming what is being computed (input, members, views). A restart with the
same command scores only the shards that are not there; a restart with another input, other models or other
views is refused, since mixing them would make a score file that no command produced.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lexactum.errors import DataError, LexactumError

SHARDS_FOLDER = "shards"
MANIFEST = "manifest.json"
SHARD_NAME = re.compile(r"shard-(\d{6,})\.npz")


@dataclass(frozen=True)
class ShardPlan:
    """Which positions each shard holds and how its batches are cut."""

    n: int
    shard_size: int
    batch_size: int

    @property
    def n_shards(self) -> int:
        return -(-self.n // self.shard_size)

    def shard_range(self, s: int) -> tuple[int, int]:
        return s * self.shard_size, min(self.n, (s + 1) * self.shard_size)

    def shard_of(self, position: int) -> int:
        return position // self.shard_size

    def shards_of_rank(self, rank: int, world_size: int) -> list[int]:
        return list(range(rank, self.n_shards, world_size))

    def batches(self, shards: list[int]) -> list[np.ndarray]:
        """The position batches of ``shards``, a batch never straddling two shards."""
        out = []
        for s in shards:
            start, stop = self.shard_range(s)
            out.extend(np.arange(k, min(stop, k + self.batch_size), dtype=np.int64)
                       for k in range(start, stop, self.batch_size))
        return out


def shard_path(out_dir: Path, s: int) -> Path:
    return Path(out_dir) / SHARDS_FOLDER / f"shard-{s:06d}.npz"


def done_shards(out_dir: Path) -> set[int]:
    """Shards already written (complete by construction: each is renamed into place whole)."""
    folder = Path(out_dir) / SHARDS_FOLDER
    if not folder.is_dir():
        return set()
    return {int(m.group(1)) for name in os.listdir(folder) if (m := SHARD_NAME.fullmatch(name))}


def write_shard(out_dir: Path, s: int, positions: np.ndarray, scores: np.ndarray, blank: np.ndarray) -> Path:
    """Write shard ``s`` (positions, member scores, which inputs were blank) whole or not at all."""
    from lexactum.runs import write_bytes_atomic

    buffer = io.BytesIO()
    np.savez(buffer, positions=np.asarray(positions, np.int64), scores=np.asarray(scores, np.float64),
             blank=np.asarray(blank, np.bool_))
    return write_bytes_atomic(shard_path(out_dir, s), buffer.getvalue())


def read_shards(out_dir: Path, plan: ShardPlan, n_members: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores (N, members), blank (N,)) in position order from every shard; each must be there, complete."""
    scores = np.full((plan.n, n_members), np.nan)
    blank = np.zeros(plan.n, dtype=np.bool_)
    seen = np.zeros(plan.n, dtype=np.bool_)
    for s in range(plan.n_shards):
        path = shard_path(out_dir, s)
        start, stop = plan.shard_range(s)
        try:
            with np.load(path, allow_pickle=False) as data:
                positions, values, flags = data["positions"], data["scores"], data["blank"]
        except FileNotFoundError:
            raise LexactumError(f"{path} is missing: a process stopped before scoring it; run the same command "
                                "again to score what is missing") from None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise DataError(f"{path}: not a readable shard ({exc}); delete it and run the same command again "
                            "to score it anew") from None
        if (values.shape != (stop - start, n_members) or not np.array_equal(np.sort(positions),
                                                                          np.arange(start, stop))):
            raise DataError(f"{path}: holds other objects than shard {s} of this prediction; delete it and run "
                            "the same command again")
        scores[positions], blank[positions], seen[positions] = values, flags, True
    if not seen.all():
        raise LexactumError(f"{int((~seen).sum())} objects were not scored")  # cannot happen with full shards
    return scores, blank


def fingerprint_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (a model file is a few MB: this costs milliseconds)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fingerprint_ids(ids: np.ndarray) -> str:
    array = np.asarray(ids)
    data = array.astype(np.int64).tobytes() if array.dtype.kind in "iu" else "\n".join(map(str, array)).encode()
    return hashlib.sha256(data).hexdigest()


def check_manifest(out_dir: Path, manifest: dict, overwrite: bool) -> str:
    """``fresh``, ``resume`` (same prediction, some shards done) or ``overwrite``; a LexactumError line when
    ``out_dir`` holds shards of another prediction and ``overwrite`` is not given. Reads only: every process
    of a distributed run decides the same from the same files."""
    from lexactum.runs import read_json

    path = Path(out_dir) / SHARDS_FOLDER / MANIFEST
    if not path.is_file():
        return "overwrite" if overwrite and (Path(out_dir) / SHARDS_FOLDER).exists() else "fresh"
    if overwrite:
        return "overwrite"
    earlier = read_json(path)
    if earlier == manifest:
        return "resume"
    changed = [key for key in manifest if earlier.get(key) != manifest[key]]
    raise LexactumError(f"{out_dir} holds part of another prediction (it differs in: "
                        f"{', '.join(changed) or 'format'}); run the same command as before to finish it, or use "
                        "--overwrite or another --out")


def start_shards(out_dir: Path, manifest: dict, state: str) -> None:
    """Rank 0 only: clear a replaced prediction's shards and write the manifest (before any shard)."""
    from lexactum.runs import ensure_folder, write_json

    folder = Path(out_dir) / SHARDS_FOLDER
    if state == "overwrite" and folder.is_dir():
        shutil.rmtree(folder)
    if state in ("fresh", "overwrite"):
        ensure_folder(folder)
        write_json(folder / MANIFEST, manifest)


def remove_shards(out_dir: Path) -> None:
    """Drop the shards once the merged files are in place (they hold nothing more)."""
    shutil.rmtree(Path(out_dir) / SHARDS_FOLDER, ignore_errors=True)
