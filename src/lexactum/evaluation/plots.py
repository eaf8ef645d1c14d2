"""Pictures of results: ROC curves, training curves, image grids and feature maps, as PNG files.

matplotlib is imported inside each function with the non-interactive Agg backend, so these work on a
server and importing this module costs nothing. Every PNG is written under a temporary name and renamed.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from lexactum.errors import LexactumError, plain_number

#: Display channels (red, green, blue) of a ground composite: bands I, R, G (channel order R, I, G, U).
GROUND_RGB_CHANNELS = (1, 0, 2)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically and close it."""
    from lexactum.runs import atomic_path

    try:
        with atomic_path(path) as temporary:
            fig.savefig(temporary, format="png", dpi=dpi)
    finally:
        _pyplot().close(fig)
    return Path(path)


def plot_roc(labels, scores, path: str | os.PathLike, title: str = "ROC") -> Path:
    """The ROC in two panels: linear axes with the AUC, and log FPR marking the TPR0 and TPR10 points.

    ``scores`` is one array, or a mapping of names to arrays (a committee and its members) drawn as one curve
    each, so that they are compared on one picture.
    """
    from lexactum.evaluation import metrics

    curves = dict(scores) if isinstance(scores, Mapping) else {"": scores}
    n_non = int(np.sum(np.asarray(labels) == 0))
    left = 0.5 / n_non  # FPR = 0 cannot sit on a log axis: the left edge (half a false positive) stands for it
    plt = _pyplot()
    fig, (full, low) = plt.subplots(1, 2, figsize=(11, 4.8))
    for k, (name, values) in enumerate(curves.items()):
        fpr, tpr, _ = metrics.roc_curve(labels, values)
        tpr0, tpr10 = metrics.tpr_at_fp(labels, values, 0), metrics.tpr_at_fp(labels, values, 10)
        colour = f"C{k}" if len(curves) > 1 else "C0"
        named = f"{name}: " if name else ""
        full.plot(fpr, tpr, lw=1.8, color=colour, label=f"{named}AUC = {metrics.auc(labels, values):.4f}")
        low.plot(np.maximum(fpr, left), tpr, lw=1.8, color=colour)
        low.plot([left], [tpr0], "o", color=colour if name else "C3",
                 label=f"{named}TPR0 = {tpr0:.3f}" + ("" if name else " (no false positive)"))
        low.plot([min(10, n_non) / n_non], [tpr10], "s", color=colour if name else "C2",
                 label=f"{named}TPR10 = {tpr10:.3f}" + ("" if name else " (10 false positives)"))
    full.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8, label="chance")
    full.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate",
             title=title)
    full.legend(loc="lower right", fontsize="small" if len(curves) > 2 else None)
    full.grid(alpha=0.3)
    low.set_xscale("log")
    low.set(xlim=(left, 1), ylim=(0, 1.01), xlabel="false positive rate (log)", ylabel="true positive rate",
            title=f"low false positive rates ({n_non} non-lenses)")
    low.legend(loc="upper left", fontsize="small" if len(curves) > 1 else None)
    low.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return save_figure(fig, path)


def _history_rows(history) -> list[dict]:
    if isinstance(history, (str, os.PathLike)):
        path = Path(history)
        try:
            with open(path, newline="") as fh:
                return list(csv.DictReader(fh))
        except OSError as exc:
            raise LexactumError(f"{path}: cannot read training history ({exc.strerror})") from None
    return [dict(row) for row in history]


def _as_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def plot_training_curves(history: str | os.PathLike | Iterable[Mapping], path: str | os.PathLike,
                         title: str = "training") -> Path:
    """Loss (every column with 'loss' in its name) and validation AUC per epoch.

    ``history`` is a CSV file (e.g. Lightning's ``metrics.csv``) or rows of dicts with an ``epoch`` column;
    rows of one epoch are merged, the last non-empty value winning, so step-wise logs work too.
    """
    rows = _history_rows(history)
    if not rows or "epoch" not in rows[0]:
        source = history if isinstance(history, (str, os.PathLike)) else "rows"
        raise LexactumError(f"training history ({source}) has no rows or no 'epoch' column")
    per_epoch: dict[int, dict[str, float]] = {}
    for row in rows:
        epoch = _as_float(row.get("epoch"))
        if math.isnan(epoch):
            continue
        merged = per_epoch.setdefault(int(epoch), {})
        for key, value in row.items():
            number = _as_float(value)
            if key != "epoch" and not math.isnan(number):
                merged[key] = number
    epochs = sorted(per_epoch)
    columns = sorted({key for values in per_epoch.values() for key in values})
    loss_columns = [c for c in columns if "loss" in c.lower()]
    auc_columns = [c for c in columns if "auc" in c.lower()]
    if not loss_columns and not auc_columns:
        raise LexactumError(f"training history has no loss or AUC column (columns: {', '.join(columns)})")

    plt = _pyplot()
    fig, (loss_ax, auc_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, names, label in ((loss_ax, loss_columns, "loss"), (auc_ax, auc_columns, "AUC")):
        for name in names:
            xs = [e for e in epochs if name in per_epoch[e]]
            axis.plot(xs, [per_epoch[e][name] for e in xs], marker="o", ms=3, label=name)
        axis.set(xlabel="epoch", ylabel=label, title=f"{title}: {label}")
        axis.grid(alpha=0.3)
        if names:
            axis.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def _display(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(H, W) grey or (H, W, 3) RGB in [0, 1] for a (C, H, W) image; data outside [0, 1] is stretched."""
    image = np.nan_to_num(np.asarray(image, dtype=np.float32))
    if image.ndim == 2:
        image = image[None]
    if image.shape[0] >= 3:
        channels = GROUND_RGB_CHANNELS if image.shape[0] == 4 else (0, 1, 2)
        shown = np.moveaxis(image[list(channels)], 0, -1)
        cmap = None
    else:
        shown, cmap = image[0], "gray"
    if shown.min() < 0 or shown.max() > 1:
        low, high = shown.min(), shown.max()
        shown = (shown - low) / (high - low) if high > low else np.zeros_like(shown)
    return np.clip(shown, 0, 1), cmap


def image_grid(images, path: str | os.PathLike, titles: Iterable[str] | None = None, ncols: int = 8) -> Path:
    """Normalised images (N, C, H, W) in a grid: grey for one band, an RGB composite (I, R, G) for ground.

    The tiles are pasted into one picture (one axis, not one per image), so grids of hundreds stay quick.
    """
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise LexactumError(f"image_grid needs images shaped (N, C, H, W) with N >= 1, got {images.shape}")
    titles = [str(t) for t in titles] if titles is not None else []
    n, _, height, width = images.shape
    ncols = max(1, min(int(ncols), n))
    nrows = math.ceil(n / ncols)
    gap = max(2, width // 25)
    title_room = int(0.18 * height) if titles else 0
    cell_h, cell_w = height + gap + title_room, width + gap
    canvas = np.ones((nrows * cell_h, ncols * cell_w, 3), dtype=np.float32)
    plt = _pyplot()
    fig = plt.figure(figsize=(1.9 * ncols, 1.9 * nrows * cell_h / cell_w))
    axis = fig.add_axes((0, 0, 1, 1))
    for k in range(n):
        row, col = divmod(k, ncols)
        shown, cmap = _display(images[k])
        tile = shown[::-1]  # row 0 at the bottom, as origin="lower" draws a FITS image
        y, x = row * cell_h + title_room, col * cell_w
        canvas[y:y + height, x:x + width] = tile[..., None] if cmap else tile
        if k < len(titles):
            axis.text(x + width / 2, y - 1, titles[k], ha="center", va="bottom", fontsize=8, clip_on=True)
    axis.imshow(canvas, interpolation="nearest")
    axis.set_axis_off()
    return save_figure(fig, path)


def _file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "layer"


def channel_mosaic(maps: np.ndarray, gap: int = 1) -> np.ndarray:
    """(C, H, W) channels tiled row by row into one 2-D array, each stretched to [0, 1], NaN between tiles.

    Meant for ``imshow`` with the default origin (first channel top left); each tile is flipped so that it
    appears like the input drawn with ``origin="lower"``. One image instead of one axis per channel keeps
    drawing a 64-channel layer fast.
    """
    n, height, width = maps.shape
    ncols = math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    stretched = np.where(span > 0, (maps - low) / np.where(span > 0, span, 1), 0.5)
    mosaic = np.full((nrows * (height + gap) - gap, ncols * (width + gap) - gap), np.nan, dtype=np.float32)
    for c in range(n):
        row, col = divmod(c, ncols)
        y, x = row * (height + gap), col * (width + gap)
        mosaic[y:y + height, x:x + width] = stretched[c][::-1]  # each tile drawn with row 0 at the bottom
    return mosaic


def plot_feature_maps(activations: Mapping[str, np.ndarray], input_image, out_dir: str | os.PathLike,
                      max_channels: int = 64) -> list[Path]:
    """One PNG per layer: the input image first, then a grid of that layer's channels, titled by the layer.

    ``activations`` maps layer names to (C, H, W) outputs in network order; at most ``max_channels``
    channels are drawn per layer (row by row, each stretched to its own range). Files are
    ``NN_<layer name>.png``.
    """
    if isinstance(max_channels, bool) or not isinstance(max_channels, (int, np.integer)) or max_channels < 1:
        raise LexactumError(f"max_channels must be a whole number >= 1, got {plain_number(max_channels)!r}")
    out_dir = Path(out_dir)
    plt = _pyplot()
    input_shown, input_cmap = _display(input_image)
    paths = []
    for index, (name, maps) in enumerate(activations.items(), start=1):
        maps = np.asarray(maps, dtype=np.float32)
        if maps.ndim != 3:
            raise LexactumError(f"activation of layer {name!r} must be (C, H, W), got shape {maps.shape}")
        shown = np.nan_to_num(maps[:max_channels])
        mosaic = channel_mosaic(shown)
        fig, (input_ax, maps_ax) = plt.subplots(
            1, 2, figsize=(10, 5.4), gridspec_kw={"width_ratios": [1, 2]})
        input_ax.imshow(input_shown, cmap=input_cmap, origin="lower", vmin=0, vmax=1)
        input_ax.set_title("input image")
        cmap = plt.get_cmap("viridis").with_extremes(bad="white")
        maps_ax.imshow(mosaic, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        suffix = f", first {len(shown)}" if len(shown) < len(maps) else ""
        maps_ax.set_title(f"{len(maps)} channels of {maps.shape[1]}x{maps.shape[2]}{suffix}")
        for axis in (input_ax, maps_ax):
            axis.axis("off")
        fig.suptitle(name, fontsize=14)
        fig.tight_layout()
        paths.append(save_figure(fig, out_dir / f"{index:02d}_{_file_stem(name)}.png"))
    return paths


def draw_top_scored(run_dir, data, top: int):
    """A PNG grid of the ``top`` highest-scored test images of a run (its ``scores.csv``), titled with ID,
    label and score: the first thing a person looks at after training."""
    import pandas as pd

    from lexactum.data import ChallengeDataset
    from lexactum.data.cache import prepare

    scores = pd.read_csv(run_dir / "scores.csv").sort_values("score", ascending=False).head(top)
    prepared = prepare(ChallengeDataset(data), progress=False)
    row_of = {int(i): k for k, i in enumerate(prepared.ids)}
    rows = np.array([row_of[int(i)] for i in scores["ID"]])
    titles = [f"{int(i)} {'lens' if int(lab) == 1 else 'non-lens'}\n{s:.3f}"
              for i, lab, s in zip(scores["ID"], scores["label"], scores["score"], strict=True)]
    return image_grid(np.asarray(prepared.images[rows]), run_dir / "top_scored.png", titles=titles, ncols=8)
