"""The scoring pass as Lightning runs it: batches read and normalised in DataLoader workers, every member of a
committee (with its views) on each batch, scores written shard by shard by a prediction writer.

Lightning's Trainer.predict does the devices, precision and DDP (one process per GPU or CPU slot, on one
machine, under torchrun or srun). We keep control of which process scores what: each rank gets whole shards
(see :mod:`lexactum.inference.shards`), so there is no padding, every object is scored exactly once, and a
restart skips finished shards.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lexactum.errors import LexactumError, describe_os_error
from lexactum.inference.shards import ShardPlan, done_shards, write_shard
from lexactum.inference.tta import with_views


@contextlib.contextmanager
def quiet_lightning():
    """Lightning's start-up lines (which accelerators exist) and two warnings that do not apply here: the batch
    indices it cannot infer (shards say which objects a batch holds) and a deprecation inside Lightning."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch.utilities.rank_zero",
                                                    "lightning.fabric.utilities.distributed")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*infer the batch indices.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class SourceBatches(Dataset):
    """Item k is batch k of positions: read raw, flagged when an image has no finite pixel, and normalised
    once per normalisation the committee needs (a cache is already normalised and is passed through)."""

    def __init__(self, source, batches: list[np.ndarray], normalisations: list[str]):
        self.source, self.batches = source, batches
        self.normalisations = sorted(set(normalisations))

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> dict:
        try:
            return self._read(self.batches[k])
        except LexactumError as exc:  # a worker's exception would reach the user wrapped in its traceback
            return {"error": str(exc)}
        except OSError as exc:
            return {"error": describe_os_error(exc)}

    def _read(self, positions: np.ndarray) -> dict:
        from lexactum.data.normalise import blank_rows, normalise

        raw = np.asarray(self.source.read_batch(positions), dtype=np.float32)
        flat = raw.reshape(len(raw), -1)
        if self.source.normalised:
            blank = blank_rows(flat)
            images = {self.source.normalised: torch.from_numpy(np.ascontiguousarray(raw))}
        else:
            mask = self.source.survey.mask_value
            usable = np.isfinite(flat) if mask is None else np.isfinite(flat) & (flat != np.float32(mask))
            blank = ~usable.any(axis=1)  # nothing but NaN (or masked pixels): no image to score
            images = {name: torch.from_numpy(normalise(raw, method=name, mask_value=mask))
                      for name in self.normalisations}
        return {"positions": torch.from_numpy(positions), "blank": torch.from_numpy(blank), "images": images}


class CommitteeScorer(L.LightningModule):
    """Every member's lens probability (float64, averaged over its views) for each image of a batch."""

    def __init__(self, networks: list[nn.Module], normalisations: list[str], tta: int = 1):
        super().__init__()
        self.networks = nn.ModuleList([with_views(network, tta) for network in networks])
        self.normalisations = list(normalisations)

    def on_predict_start(self) -> None:
        """CPU processes share the idle cores: each takes its part of them for its threads. OpenMP threads that
        wait for a busy core spin: one 2-thread process scored 5x slower than two 1-thread ones on busy cores."""
        from lexactum.devices import idle_cpu_count

        self._threads_before = torch.get_num_threads()
        if self.device.type == "cpu":
            torch.set_num_threads(max(1, idle_cpu_count() // self.trainer.world_size))

    def on_predict_end(self) -> None:
        """A library caller keeps its own thread count."""
        torch.set_num_threads(getattr(self, "_threads_before", torch.get_num_threads()))

    def predict_step(self, batch: dict, batch_idx: int = 0) -> dict:
        if "error" in batch:  # raised where the batch was read (maybe a worker process): one line here
            raise LexactumError(batch["error"])
        columns = []
        for network, name in zip(self.networks, self.normalisations, strict=True):
            logits = network(batch["images"][name].float())
            columns.append(torch.sigmoid(logits.reshape(-1).double()))
        return {"positions": batch["positions"], "blank": batch["blank"], "scores": torch.stack(columns, dim=1)}


class ShardWriter(BasePredictionWriter):
    """Collects each batch's scores and writes a shard as soon as its last batch is scored; also keeps the
    time the loop waited for data (between one batch's end and the next one's start) and the progress bar."""

    def __init__(self, out_dir, plan: ShardPlan, show_progress: bool = False):
        super().__init__(write_interval="batch")
        self.out_dir, self.plan, self.show_progress = out_dir, plan, show_progress
        self.bar = None
        self._parts: dict[int, list[dict]] = {}
        self._filled: dict[int, int] = {}
        self.wait_seconds = self.busy_seconds = 0.0
        self.first_wait_seconds = 0.0
        """From the start of the loop to its first batch (loader workers starting, first read): kept apart, so
        that ``wait_share`` is the steady state's."""
        self.images = 0
        self.settings: dict = {}
        self._last_end: float | None = None
        self._started = 0.0

    def on_predict_start(self, trainer, pl_module) -> None:
        from lexactum.progress import progress

        self._loop_started = time.perf_counter()
        if trainer.is_global_zero and self.show_progress:
            total = getattr(trainer.datamodule, "pending_images", None)
            self.bar = progress(total=total, desc="scoring" if trainer.world_size == 1 else "scoring (rank 0)",
                                unit="img")

    def on_predict_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        now = time.perf_counter()
        if self._last_end is not None:
            self.wait_seconds += now - self._last_end
        else:
            self.first_wait_seconds += now - getattr(self, "_loop_started", now)
        self._started = now

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx=0) -> None:
        part = {key: value.cpu().numpy() for key, value in prediction.items()}
        s = self.plan.shard_of(int(part["positions"][0]))
        self._parts.setdefault(s, []).append(part)
        self._filled[s] = self._filled.get(s, 0) + len(part["positions"])
        start, stop = self.plan.shard_range(s)
        if self._filled[s] == stop - start:
            parts = self._parts.pop(s)
            del self._filled[s]
            write_shard(self.out_dir, s, *(np.concatenate([p[key] for p in parts])
                                           for key in ("positions", "scores", "blank")))
        n = len(part["positions"])
        self.images += n
        if self.bar is not None:
            self.bar.update(n)
        self._last_end = time.perf_counter()
        self.busy_seconds += self._last_end - self._started

    @property
    def wait_share(self) -> float:
        total = self.wait_seconds + self.busy_seconds
        return self.wait_seconds / total if total else float("nan")


class ShardedSource(L.LightningDataModule):
    """The batches of the shards this process owns and has not finished, known once the ranks are set up."""

    def __init__(self, source, plan: ShardPlan, out_dir, normalisations: list[str], workers: int = 0,
                 pin_memory: bool = False):
        super().__init__()
        self.source, self.plan, self.out_dir = source, plan, out_dir
        self.normalisations, self.workers, self.pin_memory = normalisations, workers, pin_memory
        self.pending_images = 0

    def predict_dataloader(self) -> DataLoader:
        rank, world = self.trainer.global_rank, self.trainer.world_size
        finished = done_shards(self.out_dir)
        shards = [s for s in self.plan.shards_of_rank(rank, world) if s not in finished]
        batches = self.plan.batches(shards)
        self.pending_images = sum(len(b) for b in batches)
        dataset = SourceBatches(self.source, batches, self.normalisations)
        extra = {"prefetch_factor": 4, "persistent_workers": False} if self.workers else {}
        return DataLoader(dataset, batch_size=None, shuffle=False, num_workers=self.workers,
                          pin_memory=self.pin_memory, worker_init_fn=_die_with_parent, **extra)


def _die_with_parent(worker_id: int) -> None:
    """A loader worker ends with its process at once, even in the middle of a long read (torch's own check
    waits for the read to finish)."""
    import os

    from lexactum.processes import die_with

    die_with(os.getppid())
