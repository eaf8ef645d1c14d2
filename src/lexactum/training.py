"""Training a lens finder with Lightning: the module, the Trainer, and :func:`train` that does a whole run.

A run is reproducible and resumable: everything random in an epoch is seeded from the run's seed and the
epoch alone (the loader's shuffle and the augmentation from ``(seed, epoch)``, dropout from ``(seed, epoch,
batch)``), so a run resumed from ``last.ckpt`` ends with the same weights as one that was never interrupted
(exactly, on CPU; tested). Lightning checkpoints are pickles: they are only ever read
from this run's own folder, with ``weights_only=True``; the model file handed to users is safetensors.

Nothing is lost to a fault: checkpoints are written atomically after every epoch (:class:`AtomicCheckpointIO`),
a resume is checked whole (its checkpoint readable, no fewer epochs than trained) before the run folder is
touched, the model file is written right after training and only then is the test part scored, and no model
file is replaced unless asked (``overwrite``) or unless it is the resumed run's own, which its metadata shows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn

from lexactum import processes, runs
from lexactum.data.loader import SEED_SPLIT  # the seed's split of one dataset: 19% / 1% / 80%
from lexactum.devices import cpu_threads, lightning_device, resolve_precision
from lexactum.errors import LexactumError

#: With a separate test dataset (the challenge's protocol) the training set is split train / validation.
CHALLENGE_SPLIT = (0.95, 0.05, 0.0)
#: The largest seed: numpy's, which Lightning's ``seed_everything`` seeds (2**32 - 1).
MAX_SEED = 2**32 - 1
#: Settings a resumed run may change; the others must match the run's config.json.
RESUMABLE_OVERRIDES = ("epochs", "device", "precision", "patience", "progress", "num_workers", "cache_dir",
                       "bootstrap", "model_out", "threads", "overwrite")

# Warnings Lightning gives for choices made here on purpose (in-memory data needs no workers on CPU).
_QUIET_WARNINGS = (
    r".*does not have many workers.*",
    r".*The number of training batches .* is smaller than the logging interval.*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*overridden `on_after_batch_transfer` in `LightningModule` but have passed in a `LightningDataModule`.*",
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*upsample_bilinear2d_backward_out_cuda.*",
    r".*grid_sampler_2d_backward_cuda.*",
    r".*max_pool2d_with_indices_backward_cuda.*",
    r".*avg_pool2d_backward_cuda.*",
)


@contextlib.contextmanager
def quiet_warnings():
    """Hide Lightning's warnings about choices made here on purpose (see ``_QUIET_WARNINGS``)."""
    with warnings.catch_warnings():
        for pattern in _QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        yield


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed that depends only on ``seed`` and ``keys`` (e.g. the epoch), well mixed."""
    state = np.random.SeedSequence([int(seed), *(int(k) for k in keys)]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


class LensFinderModule(L.LightningModule):
    """A registered network trained with binary cross-entropy on logits and Adam (the seed's settings).

    Training batches are augmented on the device after transfer (never validation or test batches), from a
    generator seeded by ``(seed, epoch)``. Each epoch logs ``train_loss``, ``val_loss`` and ``val_auc``.
    """

    def __init__(self, network: str = "lens_flow", in_channels: int = 1, augment: bool = True, seed: int = 0,
                 lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-7):
        super().__init__()
        from lexactum.data.augment import Augmenter
        from lexactum.models import create_model

        self.save_hyperparameters()
        self.network = create_model(network, in_channels)
        # In place: each batch is a fresh gather from the cache, used only after augmentation.
        self.augmenter = Augmenter(enabled=augment, inplace=True)
        self.loss_fn = nn.BCEWithLogitsLoss()
        self._augment_generator: torch.Generator | None = None
        self._val_scores: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images)

    def configure_optimizers(self):
        hp = self.hparams
        return torch.optim.Adam(self.network.parameters(), lr=hp.lr, betas=tuple(hp.betas), eps=hp.eps)

    def on_train_epoch_start(self) -> None:
        self._augment_generator = None  # re-seeded from (seed, epoch) at the epoch's first batch

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # Dropout draws from torch's global generator, which Lightning and the DataLoader also draw from in
        # an order that differs after a resume: seeding it per batch makes dropout depend on (seed, epoch,
        # batch) alone.
        torch.manual_seed(derive_seed(self.hparams.seed, self.current_epoch, batch_idx))

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels, indices = batch
        if self.augmenter.enabled and self._trainer is not None and self.trainer.training:
            if self._augment_generator is None or self._augment_generator.device != images.device:
                self._augment_generator = torch.Generator(device=images.device)
                self._augment_generator.manual_seed(derive_seed(self.hparams.seed, self.current_epoch, 1))
            images = self.augmenter(images, generator=self._augment_generator)
        return images, labels, indices

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels, _ = batch
        loss = self.loss_fn(self.network(images).float(), labels.float())
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(labels))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_scores, self._val_labels = [], []

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels, _ = batch
        logits = self.network(images).float()
        self.log("val_loss", self.loss_fn(logits, labels.float()), on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=len(labels))
        self._val_scores.append(torch.sigmoid(logits.detach().double()).cpu())  # float64: no ties at 1.0
        self._val_labels.append(labels.detach().cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val_scores:
            return
        scores = torch.cat(self._val_scores).double().numpy()
        labels = torch.cat(self._val_labels).round().long().numpy()
        self._val_scores, self._val_labels = [], []
        value = validation_auc(labels, scores, warn=not self.trainer.sanity_checking)
        self.log("val_auc", value, prog_bar=True)


def validation_auc(labels: np.ndarray, scores: np.ndarray, warn: bool = True) -> float:
    """AUC of the validation set; NaN (with a warning) when it holds only lenses or only non-lenses."""
    from lexactum.evaluation.metrics import auc

    n_lenses = int(np.sum(labels == 1))
    if n_lenses == 0 or n_lenses == len(labels):
        if warn:
            warnings.warn(f"validation set has {n_lenses} lenses among {len(labels)} images: AUC undefined (NaN); "
                          "use a larger validation split", stacklevel=2)
        return float("nan")
    return auc(labels, scores)


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
        if trainer.sanity_checking:
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
                  callbacks: list[Callback] | tuple = (), **trainer_kwargs) -> L.Trainer:
    """The Trainer of a run: checkpoints (``last.ckpt`` every epoch, ``best.ckpt`` by validation AUC),
    optional early stopping on validation AUC after ``patience`` epochs without improvement, one
    ``metrics.csv`` row per epoch, a progress bar, and deterministic algorithms where the device has them.

    ``deterministic=None`` means True on CPU and ``"warn"`` on GPU (a few CUDA backward kernels have no
    deterministic version). ``progress=None`` shows the bar unless ``LEXACTUM_NO_PROGRESS`` is set.
    """
    run_dir = Path(run_dir)
    accelerator, devices, _ = lightning_device(device)
    precision = resolve_precision(precision, accelerator)
    progress = _show_progress(progress)
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
        all_callbacks.append(TQDMProgressBar())
    all_callbacks.extend(callbacks)
    options = dict(
        default_root_dir=run_dir, max_epochs=epochs, accelerator=accelerator, devices=devices,
        precision=precision, deterministic=deterministic, logger=False, callbacks=all_callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=bool(progress), enable_model_summary=bool(progress), num_sanity_val_steps=0,
    )
    options.update(trainer_kwargs)
    _hide_lightning_advertising()
    try:
        return L.Trainer(**options)
    except (ValueError, TypeError) as exc:  # Lightning's MisconfigurationException is a ValueError
        raise LexactumError(f"cannot train with device {device!r} and precision {precision!r}: {exc}") from None


def _hide_lightning_advertising() -> None:
    """Drop Lightning's 'Tip: try installing litlogger' line: an advertisement, not information about the run."""
    import logging

    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoTips) for f in logger.filters):
        logger.addFilter(_NoTips())


class _NoTips:
    @staticmethod
    def filter(record) -> bool:
        return "Tip:" not in str(record.msg)


def parse_split(text: str) -> tuple[float, ...]:
    """'0.19,0.01,0.80' -> (0.19, 0.01, 0.8); a clear error otherwise (the sum is checked by training)."""
    try:
        values = tuple(float(part) for part in str(text).split(","))
    except ValueError:
        values = ()
    if len(values) not in (2, 3):
        raise LexactumError(f"--split must be 3 comma-separated fractions like 0.19,0.01,0.80 (or 2 with "
                            f"--test-dataset), got {text!r}")
    return values


@dataclass
class TrainConfig:
    """Everything a training run needs; :func:`train` validates it and records it in ``config.json``."""

    dataset: str | os.PathLike
    network: str = "lens_flow"
    survey: str | None = None
    epochs: int = 10
    batch_size: int = 8
    augment: bool = True
    split: tuple[float, float, float] | None = None
    """Train / validation / test fractions; default the seed's 19/1/80, or 95/5/0 with ``test_dataset``."""
    test_dataset: str | os.PathLike | None = None
    seed: int = 0
    device: str = "auto"
    precision: str | None = None
    patience: int | None = None
    resume: bool = False
    """Continue the run in ``run_dir`` from its ``last.ckpt``."""
    run_dir: str | os.PathLike | None = None
    runs_root: str | os.PathLike = runs.RUNS_ROOT
    model_out: str | os.PathLike | None = None
    """Model file; default ``models/<survey>_<network>_<epochs>epochs.safetensors``."""
    models_dir: str | os.PathLike = "models"
    overwrite: bool = False
    """Replace an existing model file. Without it an explicit ``model_out`` that exists is refused before
    training, and a default name that is taken gives way to a free ``-2``, ``-3``... name."""
    backup_existing: bool = False
    """Keep an existing file at ``model_out`` under a dated backup name beside it, then write the new model
    there (the seed's fixed file names, which its load mode expects)."""
    cache_dir: str | os.PathLike | None = None
    normalisation: str = "zscale"
    num_workers: int | None = None
    threads: int | None = None
    """Torch CPU threads when training on the CPU; default the idle cores (from the load average). A
    resumed run takes the count its run used: sums split over another number of threads round
    differently, and the resumed run would not end bit-identical to an uninterrupted one."""
    bootstrap: int = 1000
    """Bootstrap resamples for the test metrics' intervals (0: none)."""
    progress: bool | None = None

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, **overrides) -> TrainConfig:
        """The configuration saved in ``run_dir``'s config.json, set to resume, with ``overrides`` applied.

        Only settings that do not change what is being trained may be overridden (see
        :data:`RESUMABLE_OVERRIDES`); asking for a different dataset, network, split... is an error.
        """
        saved = runs.read_config(run_dir)
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in saved.get("config", {}).items() if k in names}
        if "dataset" not in values:
            raise LexactumError(f"{Path(run_dir) / runs.CONFIG}: has no training configuration")
        for key, value in overrides.items():
            if key not in names:
                raise LexactumError(f"unknown training setting {key!r}")
            if key in RESUMABLE_OVERRIDES or value is None:
                if value is not None:
                    values[key] = value
                continue
            if not _same_setting(key, value, values.get(key)):
                raise LexactumError(
                    f"--resume {run_dir}: {key} was {values.get(key)!r} in that run, not {value!r} "
                    f"(a resumed run may change only {', '.join(RESUMABLE_OVERRIDES)})")
        if overrides.get("threads") is None and saved.get("torch_threads") \
                and str(saved.get("device", "")).startswith("cpu"):  # a GPU run's count meant nothing
            values["threads"] = int(saved["torch_threads"])
        values.update(resume=True, run_dir=str(run_dir))
        if values.get("split") is not None:
            values["split"] = tuple(values["split"])
        return cls(**values)

    def resolved_split(self) -> tuple[float, ...]:
        """(train, validation, test) fractions; two numbers mean no test part."""
        if self.split is None:
            return CHALLENGE_SPLIT if self.test_dataset is not None else SEED_SPLIT
        try:
            values = tuple(float(f) for f in self.split)
        except (TypeError, ValueError):
            raise LexactumError(f"split must be numbers (train, validation, test), got {self.split!r}") from None
        return values + (0.0,) if len(values) == 2 else values

    def validate(self) -> None:
        """A LexactumError naming the first bad setting."""
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise LexactumError(f"{name} must be a positive whole number, got {value!r}")
        if self.patience is not None and (isinstance(self.patience, bool) or not isinstance(self.patience, int)
                                          or self.patience < 1):
            raise LexactumError(f"patience must be a positive whole number of epochs, got {self.patience!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) \
                or not 0 <= self.seed <= MAX_SEED:
            raise LexactumError(f"seed must be a whole number from 0 to {MAX_SEED}, got {int(self.seed)}"
                                if isinstance(self.seed, (int, np.integer)) else
                                f"seed must be a whole number from 0 to {MAX_SEED}, got {self.seed!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise LexactumError(f"threads must be a positive whole number, got {self.threads!r}")
        from lexactum.evaluation.metrics import check_bootstrap  # the one bound, shared with 'evaluate'
        check_bootstrap(self.bootstrap)
        split = self.resolved_split()
        if len(split) != 3 or any(not math.isfinite(f) or f < 0 for f in split):
            raise LexactumError(f"split must be 3 fractions >= 0 (train, validation, test), got {self.split!r}")
        if abs(sum(split) - 1.0) > 1e-6:
            raise LexactumError(f"split fractions must sum to 1, got {split!r} (sum {sum(split):.6g})")
        if split[0] <= 0 or split[1] <= 0:
            raise LexactumError(f"split needs a training and a validation part, got {split!r}")
        if self.test_dataset is None and split[2] <= 0:
            raise LexactumError(f"split {split!r} leaves no test part; give a test fraction or a test dataset")
        if self.test_dataset is not None and split[2] > 0:
            raise LexactumError(f"split {split!r} has a test part, but the test dataset is scored instead: "
                                "give train,validation fractions only")
        from lexactum.models import list_models

        if self.network not in list_models():
            raise LexactumError(f"unknown network {self.network!r}: choose one of {', '.join(list_models())}")

    def record(self) -> dict:
        """The settings as JSON-friendly values (paths as strings, the split resolved)."""
        values = dataclasses.asdict(self)
        values["split"] = list(self.resolved_split())
        for key, value in values.items():
            if isinstance(value, os.PathLike):
                values[key] = os.fspath(value)
        values.pop("resume")
        return values


@dataclass
class TrainResult:
    """What a run produced: its folder, the model file, the test metrics and the per-epoch history."""

    run_dir: Path
    model_path: Path
    metrics: dict
    history: list[dict] = field(default_factory=list)
    best_val_auc: float = float("nan")
    epochs_trained: int = 0


def train(config: TrainConfig) -> TrainResult:
    """One whole run: dataset -> prepared cache -> split -> fit -> model file -> test evaluation, and the run
    folder recording all of it. Everything that can refuse the run (bad settings, a resume that cannot
    continue, an output that is taken or cannot be written, a test part that cannot be scored) fails with a
    LexactumError before anything is written or trained."""
    config.validate()
    # Two processes continuing one run would write the same checkpoints and records: the second is refused.
    claim = runs.claimed(config.run_dir, "is being trained") if config.resume else contextlib.nullcontext()
    with claim:
        return _train(config)


def _train(config: TrainConfig) -> TrainResult:
    from lexactum.data import ChallengeDataset
    from lexactum.data.loader import split_indices

    split = config.resolved_split()
    accelerator, _, torch_device = lightning_device(config.device)
    precision = resolve_precision(config.precision, accelerator)
    epochs_done, finished = _check_resume(config) if config.resume else (0, False)
    if not config.resume and config.run_dir is not None:
        runs.check_output_folder(Path(config.run_dir), "--run-dir")
    dataset = ChallengeDataset(config.dataset, survey=config.survey)
    test_dataset = ChallengeDataset(config.test_dataset, survey=dataset.survey) if config.test_dataset else None
    loader_split = split[:2] if test_dataset is not None else split
    split_indices(len(dataset), loader_split, config.seed)  # a dataset too small for the split fails here
    model_path = _choose_model_path(config, dataset.survey.name, Path(config.run_dir) if config.resume else None)

    threads = cpu_threads(config.threads) if accelerator == "cpu" else contextlib.nullcontext()
    with quiet_warnings(), threads:
        datamodule = _prepare_data(config, dataset, test_dataset, loader_split)
        run_dir = _start_run(config, datamodule, torch_device, precision, model_path)
        # A new run claims its folder as soon as it exists (a resume holds its claim already): no resume of it
        # can start while it trains.
        with contextlib.nullcontext() if config.resume else runs.claimed(run_dir, "is being trained"):
            module = _fit(config, datamodule, run_dir, dataset.survey.n_bands, precision, epochs_done, finished)
            return _finish_run(config, module, datamodule, run_dir, torch_device, model_path)


def _prepare_data(config: TrainConfig, dataset, test_dataset, loader_split):
    """The prepared, split data; a test part that cannot be scored is refused here, before any training."""
    from lexactum.data.loader import ChallengeDataModule
    from lexactum.evaluation.metrics import check_both_classes

    L.seed_everything(config.seed, workers=True, verbose=False)
    datamodule = ChallengeDataModule(
        dataset, batch_size=config.batch_size, split=loader_split, seed=config.seed, test_dataset=test_dataset,
        num_workers=config.num_workers, normalisation=config.normalisation, cache_dir=config.cache_dir,
        progress=_show_progress(config.progress),
    )
    datamodule.setup("fit")
    labels = np.asarray(datamodule.prepared_test.labels)[datamodule.test_indices]
    where = (f"test dataset {test_dataset.path}" if test_dataset is not None
             else f"the test part of {dataset.path} (split {tuple(loader_split)}, seed {config.seed})")
    if (labels < 0).any():
        raise LexactumError(f"{where}: {int((labels < 0).sum())} objects have no label; the test part must be "
                            "labelled to be scored")
    try:
        check_both_classes(labels.astype(np.int64))
    except LexactumError as exc:
        fix = "choose a test dataset with both" if test_dataset is not None else "change the split or the seed"
        raise LexactumError(f"{where} cannot be scored: {exc}; {fix}") from exc
    return datamodule


def _start_run(config: TrainConfig, datamodule, torch_device, precision: str, model_path: Path) -> Path:
    """Create (or, when resuming, check) the run folder, then write its records: config.json, split.json."""
    dataset, test_dataset = datamodule.dataset, datamodule.test_dataset
    parts = {"train": datamodule.train_ids, "val": datamodule.val_ids, "test": datamodule.test_ids}
    if config.resume:
        run_dir = Path(config.run_dir)
        _check_same_split(run_dir, parts)
    elif config.run_dir is None:
        run_dir = runs.new_run_dir(dataset.survey.name, config.network, root=config.runs_root)
    else:
        run_dir = Path(config.run_dir)
        if (run_dir / runs.CONFIG).exists():
            raise LexactumError(f"{run_dir} already holds a run: resume it or choose another run folder")
        runs.ensure_folder(run_dir)
    test_path = str(test_dataset.path) if test_dataset is not None else None
    record = config.record()
    record.update(survey=dataset.survey.name, dataset=str(dataset.path), test_dataset=test_path,
                  run_dir=str(run_dir))
    resolved = {"config": record, "device": str(torch_device), "precision": precision,
                "torch_threads": torch.get_num_threads(), "n_images": len(dataset), "model_file": str(model_path),
                "resumed": []}
    if config.resume:
        previous = runs.read_config(run_dir)
        resolved["created"] = previous.get("created")
        resolved["resumed"] = [*previous.get("resumed", []), datetime.now(UTC).isoformat(timespec="seconds")]
    runs.write_config(run_dir, resolved)
    runs.write_split(run_dir, parts, fractions=list(config.resolved_split()), seed=config.seed,
                     dataset=str(dataset.path), test_dataset=test_path)
    return run_dir


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


def _fit(config: TrainConfig, datamodule, run_dir: Path, n_bands: int, precision: str,
         epochs_done: int = 0, finished: bool = False) -> LensFinderModule:
    """Train (from last.ckpt when resuming); with early stopping, end with the best epoch's weights.

    A resumed run that has already trained ``config.epochs`` epochs, or ``finished`` (stopped early), trains
    nothing: its checkpoints are finished instead (model file, test evaluation), e.g. after a failure once
    training was done.
    """
    module = LensFinderModule(config.network, n_bands, augment=config.augment, seed=config.seed)
    last = run_dir / runs.LAST_CHECKPOINT
    if config.resume and (finished or epochs_done >= config.epochs):
        how = "stopped early after" if epochs_done < config.epochs else "already trained"
        print(f"{run_dir}: {how} {_epochs(epochs_done)}, nothing to train; writing the model file "
              f"and the test evaluation from its checkpoints", flush=True)
        module.load_state_dict(load_checkpoint(last)["state_dict"])
        module.epochs_trained = epochs_done
    else:
        with _torch_flags_restored():
            trainer = build_trainer(run_dir, config.epochs, device=config.device, precision=precision,
                                    patience=config.patience, progress=config.progress)
            try:
                trainer.fit(module, datamodule=datamodule, ckpt_path=last if config.resume else None,
                            weights_only=True)
            except SystemExit:  # how Lightning ends a fit stopped by Ctrl-C (status 1) or SIGTERM (status 0)
                if not trainer.interrupted:
                    raise
                raise processes.interruption(trainer.received_sigterm, _resume_hint(run_dir)) from None
        module.epochs_trained = int(trainer.current_epoch)
    best = run_dir / runs.BEST_CHECKPOINT
    if config.patience is not None and best.is_file():
        module.load_state_dict(load_checkpoint(best)["state_dict"])
    return module


def _finish_run(config: TrainConfig, module: LensFinderModule, datamodule, run_dir: Path, torch_device,
                model_path: Path) -> TrainResult:
    """The model file first (trained weights outlive any failure after training), then the training curves
    and the test evaluation (scores.csv, metrics.json, roc.png), then the same model file with the metrics."""
    history = runs.read_csv(run_dir / runs.METRICS_CSV)
    best_auc = _best_val_auc(history)
    network = module.network.eval()
    network.metadata = _model_metadata(config, module, datamodule, run_dir, best_auc)
    model_path = _save_new_model(config, network, model_path, run_dir)
    try:
        metrics = _evaluate(config, network, datamodule, run_dir, torch_device, history, module.epochs_trained)
    except (LexactumError, OSError) as exc:
        reason = _os_error_text(exc) if isinstance(exc, OSError) else str(exc)
        raise LexactumError(f"{reason} (after training: the model is saved as {model_path}, without test "
                            f"metrics; the run is in {run_dir})") from exc
    network.metadata["metrics"] = {k: _json_float(v) for k, v in metrics.items()
                                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
    _write_model(network, model_path, run_dir)
    return TrainResult(run_dir=run_dir, model_path=model_path, metrics=metrics, history=history,
                       best_val_auc=best_auc, epochs_trained=module.epochs_trained)


def _model_metadata(config: TrainConfig, module: LensFinderModule, datamodule, run_dir: Path,
                    best_auc: float) -> dict:
    """What the model file says about how it was made (the test metrics are added after the evaluation)."""
    return {
        "survey": datamodule.prepared.survey.name, "network": config.network, "epochs": module.epochs_trained,
        "epochs_requested": config.epochs, "seed": config.seed, "batch_size": config.batch_size,
        "augment": config.augment, "normalisation": config.normalisation,
        "split": {"fractions": list(config.resolved_split()), "seed": config.seed,
                  "n_train": len(datamodule.train_indices), "n_val": len(datamodule.val_indices),
                  "n_test": len(datamodule.test_indices)},
        "dataset": str(datamodule.prepared.dataset_path), "run_dir": str(run_dir),
        "test_dataset": str(datamodule.prepared_test.dataset_path) if config.test_dataset else None,
        "best_val_auc": _json_float(best_auc),
    }


def _evaluate(config: TrainConfig, network, datamodule, run_dir: Path, torch_device, history: list[dict],
              epochs: int) -> dict:
    """The training curves and the test evaluation: everything after training that may still fail."""
    from lexactum.evaluation.evaluate import evaluate_model
    from lexactum.evaluation.plots import plot_training_curves

    survey = datamodule.prepared.survey
    if history:
        plot_training_curves(run_dir / runs.METRICS_CSV, run_dir / runs.CURVES,
                             title=f"{survey.name} {config.network}")
    return evaluate_model(network, datamodule.prepared_test, datamodule.test_indices, run_dir,
                          device=torch_device, batch_size=max(config.batch_size, 64), bootstrap=config.bootstrap,
                          seed=config.seed, show_progress=_show_progress(config.progress), verbose=False,
                          title=f"{survey.name} {config.network}, {epochs} epochs")


def _check_resume(config: TrainConfig) -> tuple[int, bool]:
    """Everything that can refuse a resume, before anything in the run folder is written (a refused resume
    leaves config.json and split.json as they were): the folder, its config.json, an intact last.ckpt, and
    no fewer epochs than it has trained. Returns the epochs it has trained, and whether it is finished: it
    stopped early and no more epochs than its own are asked for (Lightning does not keep that it stopped,
    and would train on, and might change the best checkpoint, hence the model)."""
    if config.run_dir is None:
        raise LexactumError("resume needs the run folder to continue (run_dir)")
    run_dir = Path(config.run_dir)
    last = run_dir / runs.LAST_CHECKPOINT
    if not last.is_file():
        raise LexactumError(f"{run_dir}: no {runs.LAST_CHECKPOINT} to resume from")
    saved_epochs = runs.read_config(run_dir).get("config", {}).get("epochs")
    checkpoint = load_checkpoint(last)
    done = epochs_done(checkpoint)
    if config.epochs < done:
        raise LexactumError(f"--resume {run_dir}: the run has already trained {_epochs(done)}; "
                            f"give --epochs {done} or more")
    return done, _stopped_early(checkpoint) and saved_epochs is not None and config.epochs <= saved_epochs


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


def _choose_model_path(config: TrainConfig, survey: str, own_run: Path | None) -> Path:
    """The model file, settled before training. An explicit one that exists is refused unless ``overwrite``
    (or ``backup_existing``, or it is the resumed run's own model); a default name that is taken moves to a
    free ``-2``, ``-3``... name, said here, so no other model is ever replaced."""
    from lexactum.models.files import default_model_path, free_model_path

    def own(path: Path) -> bool:
        return _is_own_model(path, own_run)

    explicit = config.model_out is not None
    path = Path(config.model_out) if explicit else default_model_path(
        survey, config.network, config.epochs, models_dir=config.models_dir)
    runs.check_output_folder(path.parent, "--model-out" if explicit else "models folder")
    if explicit and path.exists() and not (path.is_file() and (config.overwrite or config.backup_existing)) \
            and not own(path):
        hint = "a folder; give a file name" if path.is_dir() else "exists; give --overwrite to replace it"
        raise LexactumError(f"--model-out {path}: {hint}, or choose another name")
    if not explicit and not config.overwrite:
        chosen = free_model_path(path, reusable=own)
        if chosen != path:
            print(f"{path} holds another model: this run's model will be saved as {chosen}", flush=True)
        path = chosen
    if path.is_dir():
        raise LexactumError(f"model file {path}: is a folder")
    return path


def _save_new_model(config: TrainConfig, network, path: Path, run_dir: Path) -> Path:
    """Write the model to ``path`` chosen before training; a file that appeared there since is not replaced
    (the model goes to a free name, said) unless ``overwrite``, or is kept aside (``backup_existing``)."""
    from lexactum.models.files import backup_model_file, free_model_path

    own_run = run_dir if config.resume else None
    if (path.exists() or path.is_symlink()) and not config.overwrite and not _is_own_model(path, own_run):
        if config.backup_existing and path.is_file():
            print(f"{path} held another model: kept as {backup_model_file(path)}", flush=True)
        else:
            taken, path = path, free_model_path(path)
            print(f"{taken} appeared during training: the model is saved as {path}", flush=True)
    _write_model(network, path, run_dir)
    return path


def _write_model(network, path: Path, run_dir: Path) -> None:
    from lexactum.models import save_model

    try:
        save_model(network, path, metadata=network.metadata)
    except OSError as exc:
        raise LexactumError(f"{_os_error_text(exc, path)}; the model file was not written, the run folder "
                            f"{run_dir} keeps the trained checkpoints: once that is fixed, "
                            f"'lexactum train --resume {run_dir}' writes it") from exc


def _is_own_model(path: Path, run_dir: Path | None) -> bool:
    """Whether the model file at ``path`` was written by the run in ``run_dir`` (its metadata names that
    folder): a resumed run may replace its own model, never another."""
    if run_dir is None or not path.is_file():
        return False
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            saved = json.loads((handle.metadata() or {}).get("run_dir", "null"))
    except Exception:  # noqa: BLE001 - unreadable or foreign: not this run's
        return False
    return isinstance(saved, str) and Path(saved).resolve() == run_dir.resolve()


def _os_error_text(exc: OSError, path=None) -> str:
    """The one line for an OSError met while writing ``path``: a WriteError's own text (it names its file
    already), else the file and the reason as :func:`lexactum.errors.describe_os_error` words them."""
    from lexactum.errors import WriteError, describe_os_error

    if isinstance(exc, WriteError):
        return str(exc)
    return describe_os_error(exc, path if exc.filename is None else None, "write" if exc.filename is None else None)


def _remedy(exc: OSError) -> str:
    """What the user does about a failed write before resuming: only a full disk is fixed by freeing space."""
    import errno

    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free some space"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "make the folder writable"
    return "fix that"


def _check_same_split(run_dir: Path, parts: dict) -> None:
    """A resumed run must see the same split; it changes when the dataset's objects changed."""
    saved = runs.read_split(run_dir) if (run_dir / runs.SPLIT).is_file() else {}
    for name, ids in parts.items():
        if name in saved and [int(i) for i in ids] != saved[name].get("ids"):
            raise LexactumError(f"{run_dir}: the dataset's {name} part differs from the run's {runs.SPLIT} "
                                "(were objects added or removed?); cannot resume")


def _same_setting(key: str, given, saved) -> bool:
    """Whether a setting given for a resumed run equals the run's saved one (paths resolved, splits padded)."""
    if given is None or saved is None:
        return given is None and saved is None
    if key in ("dataset", "test_dataset", "runs_root", "models_dir"):
        return Path(given).expanduser().resolve() == Path(saved).expanduser().resolve()
    if key == "split":
        given, saved = (list(map(float, v)) + [0.0] * (3 - len(v)) for v in (given, saved))
        return len(given) == len(saved) and bool(np.allclose(given, saved))
    return given == saved


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def _show_progress(progress: bool | None) -> bool:
    return not os.environ.get("LEXACTUM_NO_PROGRESS") if progress is None else bool(progress)


def _best_val_auc(history: list[dict]) -> float:
    values = [float(r["val_auc"]) for r in history if r.get("val_auc") not in (None, "")]
    values = [v for v in values if not math.isnan(v)]
    return max(values) if values else float("nan")


def _json_float(value):
    value = float(value)
    return value if math.isfinite(value) else None
