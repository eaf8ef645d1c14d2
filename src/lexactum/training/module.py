"""The LightningModule: a registered network trained with the seed's loss and optimiser, augmentation on the
device, and per-epoch validation AUC; seeded so that a resumed run repeats an uninterrupted one exactly."""

from __future__ import annotations

import contextlib
import warnings

import lightning as L
import numpy as np
import torch
from torch import nn

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

    Under DDP each process draws its augmentation and dropout from seeds that also depend on its rank
    (rank 0's are those of a single process): with the same seeds, the processes' slices of a batch would
    get the same random transforms and dropout masks, image for image. The logged values are averaged over
    the processes: the training loss over the whole global batch; the validation values are the same on
    every process, which each scores the whole validation part (see :mod:`.sharding`).
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
        seed = derive_seed(self.hparams.seed, *self._rank_keys(self.current_epoch, batch_idx))
        torch.default_generator.manual_seed(seed)  # not torch.manual_seed: on every step it also queued the
        if self.device.type == "cuda":             # seeding of absent CUDA/XPU devices, 5% of a CPU training
            torch.cuda.manual_seed(seed)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels, indices = batch
        if self.augmenter.enabled and self._trainer is not None and self.trainer.training:
            if self._augment_generator is None or self._augment_generator.device != images.device:
                self._augment_generator = torch.Generator(device=images.device)
                self._augment_generator.manual_seed(derive_seed(self.hparams.seed,
                                                                *self._rank_keys(self.current_epoch, 1)))
            images = self.augmenter(images, generator=self._augment_generator)
        return images, labels, indices

    def _rank_keys(self, *keys: int) -> tuple[int, ...]:
        """Seed keys of this process: ``keys`` on rank 0 (a single process), with the rank added on the others."""
        return keys if self.global_rank == 0 else (*keys, self.global_rank)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels, _ = batch
        loss = self.loss_fn(self.network(images).float(), labels.float())
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(labels),
                 sync_dist=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_scores, self._val_labels = [], []

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels, _ = batch
        logits = self.network(images).float()
        self.log("val_loss", self.loss_fn(logits, labels.float()), on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=len(labels), sync_dist=True)
        self._val_scores.append(torch.sigmoid(logits.detach().double()).cpu())  # float64: no ties at 1.0
        self._val_labels.append(labels.detach().cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val_scores:
            return
        scores = torch.cat(self._val_scores).double().numpy()
        labels = torch.cat(self._val_labels).round().long().numpy()
        self._val_scores, self._val_labels = [], []
        value = validation_auc(labels, scores, warn=self.trainer.is_global_zero and not self.trainer.sanity_checking)
        self.log("val_auc", value, prog_bar=True, sync_dist=True)


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
