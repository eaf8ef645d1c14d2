"""``lexactum inspect`` as a library call: scores + dataset (+ model) -> a self-contained report folder.

The folder (see docs of issue 11's contract) holds the page (index.html, app.js, style.css copied from
``static/``), ``data.js`` (``window.LEXACTUM_REPORT = {...};``: a script, because a page opened from disk
cannot fetch JSON), ``roc.png`` for labelled scores, and per card ``thumbs/<k>.png`` and ``saliency/<k>.png``
(k the card's index: IDs may be any string). Everything is checked before the first picture is drawn, and the
folder appears whole or not at all (:mod:`lexactum.inspection.folder`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lexactum.errors import LexactumError, ModelFileError

#: Version of the data.js layout the page reads.
REPORT_VERSION = 1
DATA_FILE = "data.js"
DATA_PREFIX = "window.LEXACTUM_REPORT = "
STATIC = Path(__file__).with_name("static")
#: Bootstrap resamples for the intervals of labelled predict outputs (run and evaluate outputs bring theirs).
BOOTSTRAP = 1000
#: Cards drawn per batch (bounded memory; one read of the dataset per batch).
BATCH = 64
if TYPE_CHECKING:
    import numpy as np

KIND_TITLES = {"run": "Training run", "predict": "Prediction", "evaluate": "Evaluation"}


@dataclass
class InspectRequest:
    """What ``lexactum inspect`` was asked: every option, its default defined here once."""

    path: str
    out: str
    top: int = 500
    random: int = 100
    seed: int = 0
    saliency: bool = True
    dataset: str | None = None
    overwrite: bool = False
    show_progress: bool | None = None


def is_report(folder: Path) -> bool:
    """Whether ``folder`` is a report this command wrote (so --overwrite may replace it)."""
    return (folder / DATA_FILE).is_file() and (folder / "thumbs").is_dir()


def inspect(request: InspectRequest) -> dict:
    """Write the report ``request.out`` for ``request.path``; returns a summary (out, counts, bytes)."""
    from lexactum.checks import positive_whole
    from lexactum.inspection import folder, galleries
    from lexactum.inspection.inputs import open_dataset, read_scored

    top = positive_whole(request.top, "--top")
    if isinstance(request.random, bool) or int(request.random) < 0:
        raise LexactumError(f"--random must be 0 or more, got {request.random}")
    out = Path(request.out).expanduser()
    folder.check_target(out, request.overwrite, is_report, "a report folder (no data.js and thumbs/ in it)")
    scored = read_scored(request.path)
    source, positions = open_dataset(scored, request.dataset)
    network, method = saliency_network(scored, source) if request.saliency else (None, None)
    chosen = galleries.choose(scored.scores, scored.labels, top, int(request.random), request.seed)
    with folder.staged_folder(out, request.overwrite) as staging:
        roc, metrics = _write_roc(scored, staging)
        cards = _write_cards(scored, source, positions, chosen, network, staging, request.show_progress)
        data = _report_data(scored, source, chosen, cards, metrics, roc, method)
        staging.write(DATA_FILE, data_js(data).encode("utf-8"))
        _copy_static(staging)
    return {"out": out, "cards": len(cards), "galleries": {g.key: len(g.rows) for g in chosen.galleries},
            "bytes": folder_bytes(out), "saliency": method is not None}


def saliency_network(scored, source):
    """(network, method text) of the saliency maps: the model that made the scores (a committee's first
    member); one line suggesting --no-saliency when it is not there."""
    from lexactum.evaluation.evaluate import model_normalisation
    from lexactum.inspection.inputs import CONFIG_FILE
    from lexactum.inspection.saliency import GRAD_CAM
    from lexactum.models.files import load_model

    config = scored.path / CONFIG_FILE
    if not scored.models:
        raise ModelFileError(f"{config} names no model file, which the saliency maps need; build the report "
                             "without them with --no-saliency")
    first = Path(scored.models[0])
    if not first.is_file():
        raise ModelFileError(f"the saliency maps need the model file {first} (named in {config}), which is not "
                             "there; build the report without them with --no-saliency")
    network = load_model(first, survey=source.survey)
    channels = network.metadata.get("in_channels")
    if channels is not None and int(channels) != source.survey.n_bands:
        raise ModelFileError(f"{first} takes {channels} band(s), but {source.describe()} has "
                             f"{source.survey.n_bands}")
    normalisation = model_normalisation(network)
    if source.normalised and source.normalised != normalisation:
        raise ModelFileError(f"{source.path} is a cache of {source.normalised}-normalised images, but {first} "
                             f"was trained on {normalisation}; give the dataset's folder with --dataset, or use "
                             "--no-saliency")
    method = GRAD_CAM
    if len(scored.models) > 1:
        method += f"; of the first of the committee's {len(scored.models)} members, {first.name}"
    return network, method


def _write_roc(scored, staging) -> tuple[str | None, dict | None]:
    """roc.png (copied, or drawn for a labelled prediction) and the metrics with their intervals."""
    metrics = scored.metrics
    if scored.roc is not None:
        staging.write("roc.png", scored.roc.read_bytes())
        return "roc.png", _metrics_of(metrics)
    labels = scored.labels
    if labels is None or (labels < 0).any() or labels.min() == labels.max():
        return None, _metrics_of(metrics)
    from lexactum.evaluation.metrics import challenge_metrics
    from lexactum.evaluation.plots import plot_roc

    metrics = metrics or challenge_metrics(labels, scored.scores, bootstrap=BOOTSTRAP)
    plot_roc(labels, scored.scores, staging.path / "roc.png", title=f"{scored.path.name}: {len(labels)} objects")
    return "roc.png", _metrics_of(metrics)


def _metrics_of(metrics: dict | None) -> dict | None:
    """The numbers the page shows: AUC, TPR0, TPR10, their 95% intervals, the counts."""
    if not metrics or "auc" not in metrics:
        return None
    intervals = metrics.get("intervals") or {}
    return {"auc": metrics["auc"], "tpr0": metrics.get("tpr0"), "tpr10": metrics.get("tpr10"),
            "intervals": {k: intervals[k] for k in ("auc", "tpr0", "tpr10") if k in intervals},
            "n": metrics.get("n"), "n_lenses": metrics.get("n_lenses")}


def _write_cards(scored, source, positions, chosen, network, staging, show_progress) -> list[dict]:
    """Every card's thumbnail (and saliency overlay), batch by batch; the cards' page data."""
    from lexactum.inspection.inputs import catalog_quantities
    from lexactum.inspection.pictures import png_bytes, thumbnails
    from lexactum.progress import progress

    rows = chosen.cards
    catalog = catalog_quantities(source, positions[rows])
    cards = []
    with progress(total=len(rows), desc="cards", unit="card", enabled=show_progress) as bar:
        for start in range(0, len(rows), BATCH):
            batch = rows[start:start + BATCH]
            raw = source.read_batch(positions[batch])
            thumbs = thumbnails(raw, source.survey)
            overlays = _overlays(network, raw, thumbs, source) if network is not None else None
            for j, row in enumerate(batch.tolist()):
                k = start + j
                staging.write(f"thumbs/{k}.png", png_bytes(thumbs[j]))
                if overlays is not None:
                    staging.write(f"saliency/{k}.png", png_bytes(overlays[j], palette=True))
                cards.append(_card(scored, row, k, chosen.ranks[row], overlays is not None,
                                   None if catalog is None else catalog[k]))
            bar.update(len(batch))
    return cards


def _overlays(network, raw: np.ndarray, thumbs: np.ndarray, source) -> list[np.ndarray]:
    """Grad-CAM overlays of a batch: the network sees the images as it was trained to (its normalisation)."""
    from lexactum.data.normalise import normalise
    from lexactum.evaluation.evaluate import model_normalisation
    from lexactum.inspection.pictures import overlay
    from lexactum.inspection.saliency import grad_cam, heat

    images = raw if source.normalised else normalise(raw, model_normalisation(network), source.survey.mask_value)
    heats = heat(grad_cam(network, images))
    return [overlay(thumb, h) for thumb, h in zip(thumbs, heats, strict=True)]


def _card(scored, row: int, k: int, rank, with_saliency: bool, catalog: dict | None) -> dict:
    label = None if scored.labels is None or scored.labels[row] < 0 else int(scored.labels[row])
    return {"id": str(scored.ids[row]), "score": float(scored.scores[row]), "rank": int(rank), "label": label,
            "thumb": f"thumbs/{k}.png", "saliency": f"saliency/{k}.png" if with_saliency else None,
            "catalog": catalog}


def _report_data(scored, source, chosen, cards, metrics, roc, method) -> dict:
    """window.LEXACTUM_REPORT: the header, the galleries (card indices) and the cards."""
    card_of = {int(row): k for k, row in enumerate(chosen.cards.tolist())}
    lenses = None if not scored.labelled else int((scored.labels == 1).sum())
    return {
        "version": REPORT_VERSION,
        "title": f"{KIND_TITLES[scored.kind]} {scored.path.resolve().name}",
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "survey": source.survey.name,
        "models": [str(m) for m in scored.models],
        "dataset": str(source.path),
        "source": scored.kind,
        "counts": {"scored": len(scored.ids), "lenses": lenses, "cards": len(cards)},
        "metrics": metrics,
        "roc": roc,
        "saliency_method": method,
        "galleries": [{"key": g.key, "title": g.title, "cards": [card_of[int(r)] for r in g.rows.tolist()]}
                      for g in chosen.galleries],
        "cards": cards,
    }


def data_js(data: dict) -> str:
    """data.js: one assignment of the report's JSON (NaN written as null; every non-ASCII character escaped,
    so the file reads the same whatever encoding the browser assumes)."""
    from lexactum.runs import _plain

    text = json.dumps(_plain(data), allow_nan=False, separators=(",", ":"))
    return f"{DATA_PREFIX}{text};\n"


def _copy_static(staging) -> None:
    """The page's files from ``static/`` (all but its README)."""
    if not STATIC.is_dir():
        raise LexactumError(f"{STATIC}: the report page is missing from this installation of lexactum")
    for entry in sorted(STATIC.iterdir()):
        if entry.is_file() and not entry.name.startswith(("README", ".")):
            staging.write(entry.name, entry.read_bytes())


def folder_bytes(folder: Path) -> int:
    """Bytes the files under ``folder`` take on disk (blocks allocated, as ``du`` counts)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total
