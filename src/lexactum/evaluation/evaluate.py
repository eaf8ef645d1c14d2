"""Scoring images with a trained network: scores, timings, and the files an evaluation leaves behind.

Two uses share the code here: ``evaluate`` (a labelled set -> scores.csv, metrics.json, roc.png) and
``features`` (one image -> every convolutional layer's output); ``predict`` (survey scale, sharded, many
processes) lives in :mod:`lexactum.inference` and reuses the checks of results and left_out.csv from here. Data from
files is read and normalised one batch at a time (the next batch is read while the network scores the
current one), so memory stays bounded whatever the size of the set.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lexactum.checks import positive_whole
from lexactum.devices import device_name, resolve_device, synchronise
from lexactum.errors import DataError, LexactumError

SCORES_FILE = "scores.csv"
METRICS_FILE = "metrics.json"
ROC_FILE = "roc.png"
LEFT_OUT_FILE = "left_out.csv"
LEFT_OUT_COLUMNS = ("ID", "reason", "file")


# ----------------------------------------------------------------------------------------------- scoring
class ScoringClock:
    """Seconds the network alone spent on batches already in memory, and how many images that covers."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.images = 0
        self.warmup_seconds = 0.0
        """The untimed warm-up run, so that end-to-end timings can leave it out too."""

    @property
    def per_image(self) -> float:
        return self.seconds / self.images if self.images else float("nan")


def _batches_of(images_or_loader, batch_size: int) -> Iterator[np.ndarray]:
    """Image batches from an (N, C, H, W) array (memmaps too) or from an iterable of batches.

    An iterable may yield arrays/tensors or tuples whose first item is the images (the loader's
    ``(images, labels, indices)``).
    """
    if hasattr(images_or_loader, "shape") and hasattr(images_or_loader, "__getitem__"):
        for start in range(0, len(images_or_loader), batch_size):
            yield images_or_loader[start:start + batch_size]
        return
    for batch in images_or_loader:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


def _writable_float32(batch) -> np.ndarray:
    """The batch as a float32 array torch may wrap (a read-only memmap slice is copied)."""
    array = np.asarray(batch, dtype=np.float32)
    return array if array.flags.writeable else array.copy()


def score(model, images_or_loader, device="auto", batch_size: int = 256, clock: ScoringClock | None = None,
          show_progress: bool | None = False, total: int | None = None) -> np.ndarray:
    """Lens probabilities (float64) of every image: sigmoid of the network's logits, in input order.

    Runs without gradients in eval mode, one batch on the device at a time. The sigmoid is taken in float64
    so that confident scores stay distinct instead of all rounding to 1.0 (which would tie them with the
    top non-lenses and wreck TPR0). With ``clock``, the network's own time is added to it: the first batch
    is run once untimed (warm-up), then every batch is timed with the device synchronised.
    """
    import torch

    from lexactum.progress import progress

    batch_size = positive_whole(batch_size, "batch size")
    device = resolve_device(device)
    if total is None and hasattr(images_or_loader, "__len__") and hasattr(images_or_loader, "shape"):
        total = len(images_or_loader)
    model = model.to(device).eval()
    parts = []
    warmed_up = clock is None
    bar = progress(total=total, desc="scoring", unit="img", enabled=show_progress)
    with torch.inference_mode(), bar:
        for batch in _batches_of(images_or_loader, int(batch_size)):
            inputs = batch if torch.is_tensor(batch) else torch.from_numpy(_writable_float32(batch))
            inputs = inputs.to(device=device, dtype=torch.float32, non_blocking=True)
            if not warmed_up:
                started = time.perf_counter()
                model(inputs)
                synchronise(device)
                clock.warmup_seconds += time.perf_counter() - started
                warmed_up = True
            synchronise(device)
            started = time.perf_counter()
            logits = model(inputs)
            synchronise(device)
            if clock is not None:
                clock.seconds += time.perf_counter() - started
                clock.images += len(inputs)
            parts.append(torch.sigmoid(logits.reshape(-1).double()).cpu().numpy())
            bar.update(len(inputs))
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)


# ------------------------------------------------------------------------------------- streaming files
def read_batch(source, indices: Sequence[int]) -> np.ndarray:
    """Raw (B, C, H, W) images of objects ``indices`` of a dataset (batched reader when it has files)."""
    band_paths = getattr(source, "band_paths", None)
    if band_paths is not None:
        from lexactum.data.layouts import read_objects

        return read_objects([band_paths[int(i)] for i in indices])
    return np.stack([source.read(int(i)) for i in indices])


def stream_batches(source, indices: Sequence[int], batch_size: int, normalisation: str = "zscale",
                   mask_value: float | None = None) -> Iterator[np.ndarray]:
    """Normalised batches of ``source``'s objects read from their files, the next one read in the background.

    ``source`` is anything with ``.read(i) -> (C, H, W)`` (a ChallengeDataset, a
    :class:`lexactum.data.cutouts.CutoutFolder`).
    """
    from lexactum.data.normalise import normalise

    def load(chunk):
        return normalise(read_batch(source, chunk), method=normalisation, mask_value=mask_value)

    chunks = [indices[k:k + batch_size] for k in range(0, len(indices), batch_size)]
    if not chunks:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load, chunks[0])
        for chunk in chunks[1:]:
            ready = pending.result()
            pending = pool.submit(load, chunk)
            yield ready
        yield pending.result()


def score_files(model, source, indices: Sequence[int] | None = None, device="auto", batch_size: int = 256,
                show_progress: bool | None = False) -> tuple[np.ndarray, dict]:
    """Scores of ``source``'s objects straight from their files, and the time per image of the pass.

    Returns ``(scores, timing)`` with ``timing`` holding ``end_to_end_s_per_image`` (reading, normalising
    and scoring: the whole pass's wall time, less the network's warm-up run, over its images) and
    ``model_s_per_image`` (the network alone).
    """
    indices = np.arange(len(source)) if indices is None else np.asarray(indices, dtype=np.int64)
    device = resolve_device(device)
    clock = ScoringClock()
    started = time.perf_counter()
    batches = stream_batches(source, indices, int(batch_size), model_normalisation(model),
                             source.survey.mask_value)
    scores = score(model, batches, device, batch_size, clock=clock, show_progress=show_progress,
                   total=len(indices))
    synchronise(device)
    elapsed = time.perf_counter() - started - clock.warmup_seconds
    timing = {
        "model_s_per_image": clock.per_image,
        "end_to_end_s_per_image": elapsed / len(indices) if len(indices) else float("nan"),
        "timed_images": int(len(indices)),
    }
    return scores, timing


def time_per_image(model, images, source=None, indices: Sequence[int] | None = None, device="auto",
                   batch_size: int = 256) -> dict:
    """Seconds per image (a) for the network alone on ``images`` in memory and (b) end to end from files.

    (b) needs ``source`` (a dataset with files): its objects ``indices`` (default all) are read, normalised
    and scored; it is ``None`` without a source.
    """
    clock = ScoringClock()
    score(model, images, device, batch_size, clock=clock)
    timing = {"model_s_per_image": clock.per_image, "end_to_end_s_per_image": None}
    if source is not None:
        _, from_files = score_files(model, source, indices, device, batch_size)
        timing["end_to_end_s_per_image"] = from_files["end_to_end_s_per_image"]
    return timing


def model_normalisation(model) -> str:
    """The normalisation the network was trained with (its metadata), ZScale by default as in the seed."""
    return (getattr(model, "metadata", None) or {}).get("normalisation") or "zscale"


# --------------------------------------------------------------------------------------- evaluation
def _write_scores(path: Path, ids, labels, scores) -> None:
    """scores.csv of an evaluation: ``ID,label,score`` in the dataset's order."""
    from lexactum.runs import write_csv

    rows = [{"ID": _plain_id(i), "label": int(label), "score": float(score)}
            for i, label, score in zip(ids, labels, scores, strict=True)]
    write_csv(path, rows, fieldnames=["ID", "label", "score"])


def _plain_id(value):
    return int(value) if isinstance(value, (int, np.integer)) else str(value)


def format_metrics_table(metrics: dict) -> str:
    """A short text table of the challenge numbers with their bootstrap intervals and timings."""
    intervals = metrics.get("intervals") or {}
    lines = [f"{'metric':<22}{'value':>10}   interval"]
    for key, label in (("auc", "AUC"), ("tpr0", "TPR0"), ("tpr10", "TPR10"), ("tpr_at_0.5", "TPR at 0.5"),
                       ("fpr_at_0.5", "FPR at 0.5")):
        low_high = intervals.get(key)
        shown = f"[{low_high[0]:.4f}, {low_high[1]:.4f}]" if low_high else ""
        lines.append(f"{label:<22}{metrics[key]:>10.4f}   {shown}")
    for key, label in (("model_s_per_image", "model ms/image"),
                       ("end_to_end_s_per_image", "end-to-end ms/image")):
        value = metrics.get(key)
        if value is not None and value == value:
            lines.append(f"{label:<22}{1000 * value:>10.3f}")
    lines.append(f"{metrics['n']} images ({metrics['n_lenses']} lenses) on {metrics.get('device', '?')}")
    return "\n".join(lines)


def evaluate_model(model, data, indices: Sequence[int] | None = None, out_dir: str | os.PathLike = ".",
                   device="auto", batch_size: int = 256, bootstrap: int = 1000, seed: int = 0,
                   end_to_end_images: int | None = 1000, files=None, show_progress: bool | None = False,
                   title: str | None = None, verbose: bool = True, model_name: str | None = None,
                   allow_nonfinite: bool = False) -> dict:
    """Score ``data`` (objects ``indices``, default all) and write scores.csv, metrics.json and roc.png.

    ``data`` is a labelled dataset with files (a ChallengeDataset: scored from its files in one pass that
    also gives both timings) or prepared data (``.images``, ``.ids``, ``.labels``, e.g. from
    ``lexactum.data.cache.prepare``: scored from memory; the end-to-end time then comes from reading
    ``end_to_end_images`` objects of its dataset's files again, ``None`` for all, 0 to skip; ``files`` is
    that dataset when the caller has it open, else it is found from the cache's index).
    Non-finite scores are an error naming ``model_name`` (see :func:`finite_scores`); objects of the dataset
    that were not scored are listed in left_out.csv (see :func:`write_left_out`). The files appear together
    or not at all. Returns the metrics dict that metrics.json holds.
    """
    from lexactum.evaluation.metrics import challenge_metrics, check_bootstrap
    from lexactum.evaluation.plots import plot_roc
    from lexactum.memory import steady_heap
    from lexactum.runs import all_or_nothing, write_json

    bootstrap = check_bootstrap(bootstrap)  # before the scoring pass
    steady_heap()
    out_dir = Path(out_dir)
    whole_set = indices is None
    indices, labels = labelled_selection(data, indices)
    device = resolve_device(device)
    scores, timing = _score_selection(model, data, indices, files, device, batch_size, end_to_end_images,
                                      show_progress)
    ids = np.asarray(data.ids)[indices]
    keep = finite_scores(scores, ids, model_name or describe_model(model), allow_nonfinite)
    left_out = (left_out_rows(files if files is not None else data, labelled=True) if whole_set else []) \
        + nonfinite_rows(ids[~keep], scores[~keep])
    ids, labels, scores = ids[keep], labels[keep], scores[keep]
    metadata = getattr(model, "metadata", None) or {}
    metrics = challenge_metrics(labels, scores, bootstrap=bootstrap, seed=seed)
    metrics.update(timing)
    metrics["device"] = device_name(device)
    described = ("network", "survey", "in_channels", "normalisation", "source")
    metrics["model"] = {k: metadata[k] for k in described if k in metadata}
    metrics["dataset"] = str(getattr(data, "dataset_path", None) or getattr(data, "path", ""))
    metrics["left_out"] = len(left_out)
    with all_or_nothing():
        _write_scores(out_dir / SCORES_FILE, ids, labels, scores)
        write_json(out_dir / METRICS_FILE, metrics)
        plot_roc(labels, scores, out_dir / ROC_FILE,
                 title=title or f"{metadata.get('network', 'model')} on {len(labels)} images")
        write_left_out(out_dir, left_out)
    if verbose:
        print(format_metrics_table(metrics))
    return metrics


def labelled_selection(data, indices: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """(positions, labels) of the objects to evaluate (default all): distinct, in range, all labelled, both
    classes present. Checked before the scoring pass, which may take long."""
    from lexactum.evaluation.metrics import check_both_classes

    indices = np.arange(len(data.ids)) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(indices) == 0:
        raise LexactumError("nothing to evaluate: the selection of objects is empty")
    if indices.min() < 0 or indices.max() >= len(data.ids) or len(np.unique(indices)) != len(indices):
        raise LexactumError(f"object positions to evaluate must be distinct and in [0, {len(data.ids)}), got "
                            f"{int(indices.min())}..{int(indices.max())} "
                            f"({len(indices) - len(np.unique(indices))} repeated)")
    labels = np.asarray(data.labels)[indices]
    if (labels < 0).any():
        raise DataError(f"{getattr(data, 'path', 'data')}: {int((labels < 0).sum())} selected objects have "
                        "no label; evaluation needs a catalog ('lexactum predict' scores unlabelled data)")
    check_both_classes(labels)
    return indices, labels


def prepared_if_current(dataset, normalisation: str):
    """The dataset's cache when one is built and up to date for ``normalisation`` (never builds one)."""
    from lexactum.data import cache

    if cache.cache_status(dataset, normalisation)["state"] != "valid":
        return None
    return cache.prepare(dataset, normalisation, progress=False)


def _score_selection(model, data, indices, files, device, batch_size, end_to_end_images, show_progress):
    """(scores, timing) of ``data``'s objects ``indices``: from its files, or from memory plus a timed pass
    over up to ``end_to_end_images`` of those objects' files (see :func:`evaluate_model`)."""
    images = getattr(data, "images", None)
    if images is None:
        return score_files(model, data, indices, device, batch_size, show_progress)
    clock = ScoringClock()
    selected = images if len(indices) == len(images) and (indices == np.arange(len(images))).all() \
        else _Rows(images, indices)
    scores = score(model, selected, device, batch_size, clock=clock, show_progress=show_progress)
    timing = {"model_s_per_image": clock.per_image, "end_to_end_s_per_image": None, "timed_images": 0}
    source = files if files is not None else _files_of(data)
    if source is not None and end_to_end_images != 0:
        subset = indices if end_to_end_images is None else indices[:end_to_end_images]
        _, from_files = score_files(model, source, subset, device, batch_size)
        timing["end_to_end_s_per_image"] = from_files["end_to_end_s_per_image"]
        timing["timed_images"] = from_files["timed_images"]
    return scores, timing


# ------------------------------------------------------------------------------ checks of the results
def describe_model(model) -> str:
    """How messages name a model when the caller has no file name for it."""
    metadata = getattr(model, "metadata", None) or {}
    return str(metadata.get("source") or metadata.get("network") or type(model).__name__)


def finite_scores(scores: np.ndarray, ids, model_name: str, allow: bool = False) -> np.ndarray:
    """Which scores are finite (a boolean mask); a LexactumError naming the model when any is not.

    A NaN or infinite score means broken weights (or inputs): writing ``ID nan`` lines or computing metrics
    from them would hide that. With ``allow`` the other objects go on (the caller lists these as left out),
    unless no score at all is finite.
    """
    finite = np.isfinite(scores)
    bad = int((~finite).sum())
    if bad == 0:
        return finite
    examples = ", ".join(str(_plain_id(i)) for i in np.asarray(ids)[~finite][:5]) + (" ..." if bad > 5 else "")
    message = (f"{model_name} gave {bad} non-finite score(s) (NaN or infinite) of {len(scores)} objects, "
               f"e.g. ID {examples}: its weights or these images are broken; nothing was written")
    if bad == len(scores):
        raise LexactumError(message)
    if not allow:
        raise LexactumError(f"{message} (--allow-nonfinite writes the other scores and lists these objects "
                            f"in {LEFT_OUT_FILE})")
    return finite


def nonfinite_rows(ids, scores) -> list[dict]:
    """left_out.csv rows of objects left out for their non-finite score."""
    return [{"ID": _plain_id(i), "reason": f"non-finite score ({float(s)})", "file": ""}
            for i, s in zip(ids, scores, strict=True)]


def left_out_rows(source, labelled: bool = False) -> list[dict]:
    """left_out.csv rows of the objects under ``source``'s folder that are not among its objects.

    A ChallengeDataset leaves out objects with a missing band file (the challenge's rule), catalog rows
    without any image file and, when ``labelled`` (evaluation), complete objects without a catalog row.
    Other sources (loose cutouts, prepared data) leave nothing out.
    """
    rows: dict = {}
    for object_id, expected in getattr(source, "incomplete", []):
        rows.setdefault(int(object_id), {"ID": int(object_id), "reason": "band file missing",
                                         "file": str(expected)})
    for object_id in getattr(source, "missing_images", []):
        rows.setdefault(int(object_id), {"ID": int(object_id), "reason": "catalog row without image files",
                                         "file": str(getattr(source, "catalog_path", "") or "")})
    if labelled:
        for object_id in getattr(source, "unlabelled", []):
            rows.setdefault(int(object_id), {"ID": int(object_id), "reason": "no catalog row (no label)",
                                             "file": ""})
    return [rows[k] for k in sorted(rows)]


def write_left_out(out_dir: Path, rows: list[dict]) -> Path | None:
    """Write ``out_dir``/left_out.csv (ID, reason, file) when objects were left out, or when an earlier
    run's list is there (then replaced, header only if nothing is left out now, so it is never stale)."""
    from lexactum.runs import write_csv

    path = Path(out_dir) / LEFT_OUT_FILE
    if not rows and not path.is_file():
        return None
    return write_csv(path, rows, fieldnames=LEFT_OUT_COLUMNS)


def left_out_summary(rows: list[dict], path) -> str:
    """One line for the terminal: how many objects were left out, why, and where the list is."""
    reasons: dict[str, int] = {}
    for row in rows:
        reason = row["reason"].split(" (")[0]
        reasons[reason] = reasons.get(reason, 0) + 1
    why = ", ".join(f"{n} {reason}" for reason, n in reasons.items())
    return f"left out {len(rows)} object(s) ({why}): listed in {path}"


class _Rows:
    """A lazy row selection of an array: batches are gathered one at a time (bounded memory)."""

    def __init__(self, images, rows: np.ndarray):
        self.images, self.rows = images, rows
        self.shape = (len(rows), *images.shape[1:])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: slice) -> np.ndarray:
        return np.asarray(self.images[self.rows[item]])


def _files_of(prepared):
    """The dataset whose files ``prepared`` was made from, when they are still there."""
    path = getattr(prepared, "dataset_path", None)
    if path is None or not Path(path).is_dir():
        return None
    from lexactum.data.layouts import ChallengeDataset

    try:
        dataset = ChallengeDataset(path, survey=prepared.survey)
    except DataError:  # the files moved on since the cache was made: no end-to-end timing then
        return None
    if len(dataset) != len(prepared.ids) or not np.array_equal(dataset.ids, prepared.ids):
        return None
    return dataset


# ----------------------------------------------------------------------------------------- feature maps
def conv_activations(model, image: np.ndarray, device="cpu") -> dict[str, np.ndarray]:
    """Output (C, H, W) of every Conv2d of ``model`` for one normalised (C, H, W) image, in call order.

    As the seed drew them: a Keras ``Conv2D`` carries its activation, so a convolution that is directly
    followed by an activation (the next module of an ``nn.Sequential``; the ELU after every convolution
    of a residual block; those a network names in its ``ACTIVATION_AFTER``) is shown after it. Keys are
    the convolutions' path names in the network (e.g. ``features.0``), found with forward hooks.
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    from lexactum.models.blocks import ResidualBlock

    device = resolve_device(device)
    model = model.to(device).eval()
    activations = (nn.ReLU, nn.ELU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.SiLU)
    after: dict[nn.Module, object] = {}  # conv -> the activation applied to its output
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            children = list(module.children())
            for conv, follower in zip(children, children[1:], strict=False):
                if isinstance(conv, nn.Conv2d) and isinstance(follower, activations):
                    after[conv] = follower
        elif isinstance(module, ResidualBlock):
            for conv in module.modules():
                if isinstance(conv, nn.Conv2d):
                    after[conv] = F.elu
    captured: dict[str, np.ndarray] = {}
    hooks = []

    def keep(name, activation):
        def hook(_module, _inputs, output):
            shown = activation(output) if activation is not None else output
            captured.setdefault(name, shown[0].detach().float().cpu().numpy())

        return hook

    declared = {name: getattr(F, function) for name, function in getattr(model, "ACTIVATION_AFTER", {}).items()}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(keep(name, after.get(module, declared.get(name)))))
    if not hooks:
        raise LexactumError(f"{type(model).__name__} has no convolutional layer to show")
    try:
        with torch.inference_mode():
            model(torch.as_tensor(np.asarray(image, dtype=np.float32)[None], device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return captured

