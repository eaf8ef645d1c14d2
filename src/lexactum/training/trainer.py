"""The Trainer of a run and its checkpoints: atomic writes every epoch, early stopping that keeps the patience
it is given, one metrics row per epoch, and the one reader of a run's checkpoints (weights only, damage in one
line)."""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lexactum import runs
from lexactum.devices import resolve_precision
from lexactum.errors import LexactumError
from lexactum.progress import lightning_refresh_rate, wanted
from lexactum.trainers import make_trainer


class EpochMetricsCSV(Callback):
    """Writes ``metrics.csv`` with one row per epoch (train/val loss, val AUC, seconds), atomically.

    Rows of earlier epochs already in the file are kept, so a resumed run continues its history
    (Lightning's CSVLogger deletes the file on resume and splits an epoch over several rows).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._started = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:  # the values are the same on every process
            return
        epoch = trainer.current_epoch + 1
        metrics = trainer.callback_metrics
        row = {"epoch": epoch}
        for name in ("train_loss", "val_loss", "val_auc"):
            row[name] = float(metrics[name]) if name in metrics else float("nan")
        row["lr"] = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        row["seconds"] = round(time.perf_counter() - self._started, 3)
        kept = [r for r in runs.read_csv(self.path) if r.get("epoch") and int(float(r["epoch"])) < epoch]
        runs.write_csv(self.path, [*kept, row], fieldnames=list(row))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic: each checkpoint is serialised in memory, written whole to
    a temporary name in the run folder, fsynced and renamed over the old one. A full disk or a kill never
    leaves a truncated ``last.ckpt`` (the previous one stays intact and resumable) nor a temporary file; a
    failed write is one LexactumError naming the checkpoint."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        import io

        if storage_options is not None:  # Lightning's own refusal of options it cannot honour
            return super().save_checkpoint(checkpoint, path, storage_options)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        try:
            runs.write_bytes_atomic(path, buffer.getvalue())
        except OSError as exc:  # a WriteError from the writer: its cause holds the system's reason
            from lexactum.errors import os_reason

            cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
            run_dir = Path(path).parent
            raise LexactumError(f"{path}: cannot write the checkpoint ({os_reason(cause)}); no partial file is "
                                f"left and an earlier checkpoint, if any, is kept: {_remedy(cause)}, then "
                                f"{_resume_hint(run_dir)}") from exc
        return None


def _resume_hint(run_dir: Path) -> str:
    """How to go on with an interrupted run: resume it where it has a last.ckpt, else start it again."""
    if (Path(run_dir) / runs.LAST_CHECKPOINT).is_file():
        return f"'lexactum train --resume {run_dir}' continues the run"
    return f"train again ({run_dir} has no finished epoch to resume from)"


class GivenPatience(EarlyStopping):
    """Early stopping whose patience is the one given to this run, not the one its checkpoint recorded.

    Lightning restores the patience with the rest of the callback's state, so ``--patience`` on a resumed
    run, one of the settings a resume may change, would otherwise be ignored without a word. The count of
    epochs without improvement and the best score are still restored."""

    @property
    def state_key(self) -> str:
        # Lightning files a callback's state under its class name: EarlyStopping's, so that the runs saved
        # before this class existed resume with their state, and readers of checkpoints find it there.
        return f"{EarlyStopping.__qualname__}{repr({'monitor': self.monitor, 'mode': self.mode})}"

    def load_state_dict(self, state_dict: dict) -> None:
        given = self.patience
        super().load_state_dict(state_dict)
        self.patience = given


def build_trainer(run_dir: str | os.PathLike, epochs: int, device: str = "auto", precision: str | None = None,
                  patience: int | None = None, progress: bool | None = True, deterministic: bool | str | None = None,
                  callbacks: list[Callback] | tuple = (), distribution=None, **trainer_kwargs) -> L.Trainer:
    """The Trainer of a run: checkpoints (``last.ckpt`` every epoch, ``best.ckpt`` by validation AUC),
    optional early stopping on validation AUC after ``patience`` epochs without improvement, one
    ``metrics.csv`` row per epoch, a progress bar, and deterministic algorithms where the device has them.

    It runs where ``distribution`` (a :class:`lexactum.distributed.Distribution`) says, default the one
    ``device``. With several processes (DDP) only global rank 0 writes the checkpoints and metrics.csv
    (Lightning's checkpoint callbacks take rank 0's folder), each process trains on its slice of every batch
    (:mod:`.sharding`: Lightning's sampler is not used), and on GPUs batch normalisation is computed over the
    whole global batch, as on one process.

    ``deterministic=None`` means True on CPU and ``"warn"`` on GPU (a few CUDA backward kernels have no
    deterministic version). ``progress=None`` shows the bar unless ``LEXACTUM_NO_PROGRESS`` is set.
    """
    from lexactum.distributed import resolve_distribution

    run_dir = Path(run_dir)
    if distribution is None:
        distribution = resolve_distribution(device)
    accelerator = distribution.accelerator
    precision = resolve_precision(precision, accelerator)
    progress = wanted(progress)
    if deterministic is None:
        deterministic = True if accelerator == "cpu" else "warn"
    best = ModelCheckpoint(
        dirpath=run_dir, filename=Path(runs.BEST_CHECKPOINT).stem, monitor="val_auc", mode="max", save_top_k=1,
        auto_insert_metric_name=False, enable_version_counter=False,
    )
    # Lightning's save_last copies only epochs that also saved a best checkpoint; an unmonitored
    # checkpoint of its own is written after every epoch, improved or not, so a resume repeats none.
    last = ModelCheckpoint(dirpath=run_dir, filename=Path(runs.LAST_CHECKPOINT).stem, monitor=None,
                           save_top_k=1, auto_insert_metric_name=False, enable_version_counter=False)
    all_callbacks: list[Callback] = [best, last, EpochMetricsCSV(run_dir / runs.METRICS_CSV)]
    if patience is not None:
        all_callbacks.append(GivenPatience(monitor="val_auc", mode="max", patience=patience, check_finite=False))
    if progress:
        all_callbacks.append(TQDMProgressBar(refresh_rate=lightning_refresh_rate()))
    all_callbacks.extend(callbacks)
    options = dict(
        default_root_dir=run_dir, max_epochs=epochs, use_distributed_sampler=False,
        sync_batchnorm=distribution.is_distributed and accelerator == "cuda",
        deterministic=deterministic, logger=False, callbacks=all_callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=bool(progress), enable_model_summary=bool(progress), num_sanity_val_steps=0,
    )
    options.update(trainer_kwargs)
    hide_lightning_advertising()
    return make_trainer("train", distribution, precision, **options)


def hide_lightning_advertising() -> None:
    """Drop Lightning's 'Tip: try installing litlogger' line: an advertisement, not information about the run."""
    import logging

    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoTips) for f in logger.filters):
        logger.addFilter(_NoTips())


class _NoTips:
    @staticmethod
    def filter(record) -> bool:
        return "Tip:" not in str(record.msg)


@contextlib.contextmanager
def _torch_flags_restored():
    """Undo the process-wide switches a Trainer makes (deterministic algorithms, cuDNN) when training ends.

    Left on, deterministic mode makes every later ``torch.empty`` fill its memory, slowing a notebook's
    next steps, and in a forked child (a DataLoader worker) that fill enters OpenMP, which hangs there.
    """
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn


def _stopped_early(checkpoint: dict) -> bool:
    """Whether early stopping ended the run that wrote ``checkpoint`` (its wait reached its patience)."""
    states = checkpoint.get("callbacks") or {}
    for key, state in states.items():
        if str(key).startswith("EarlyStopping") and isinstance(state, dict):
            wait, patience = state.get("wait_count"), state.get("patience")
            if isinstance(wait, int) and isinstance(patience, int) and wait >= patience:
                return True
    return False


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint of a run folder, read with ``weights_only`` (tensors and plain values: no code runs), or
    one LexactumError naming the file when it is missing, truncated or not a checkpoint."""
    path = Path(path)
    try:
        with warnings.catch_warnings():  # torch warns of a foreign pickle's protocol before refusing it
            warnings.simplefilter("ignore", UserWarning)
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise LexactumError(f"{path}: checkpoint not found") from None
    except OSError as exc:  # unreadable (permissions, I/O error, a folder), not damaged: never advise dropping it
        from lexactum.errors import describe_os_error

        raise LexactumError(f"{describe_os_error(exc, path, 'read')}; the checkpoint itself may be intact") from exc
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, EOFError, UnpicklingError... for damage
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        reason = reason.split(". ")[0].rstrip(".")[:160]  # torch's first sentence: the rest is advice for coders
        raise LexactumError(f"{path}: corrupt or truncated checkpoint ({reason}); the run cannot continue from "
                            "it: start a new run, or put back an intact copy") from exc
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise LexactumError(f"{path}: not a Lightning checkpoint (no state_dict)")
    return checkpoint


def epochs_done(checkpoint: dict) -> int:
    """How many epochs the run had finished when ``checkpoint`` was written (Lightning's own loop count)."""
    try:
        return int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):
        return int(checkpoint.get("epoch", -1)) + 1


def _remedy(exc: OSError) -> str:
    """What the user does about a failed write before resuming: only a full disk is fixed by freeing space."""
    import errno

    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free some space"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "make the folder writable"
    return "fix that"


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


