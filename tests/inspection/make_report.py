"""Writes a synthetic report folder exactly as the contract describes (data.js, thumbs/, saliency/, roc.png and
the page's static files), so that the browser tests of the page do not depend on `lexactum inspect`.

Pictures are random blocks (a few distinct PNGs written again under every card's own name, which keeps a
10,000-card folder small and quick to write while every card still has its own file as in a real report).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np

STATIC = Path(__file__).resolve().parents[2] / "src" / "lexactum" / "inspection" / "static"
ODD_ID = 'obj,"7"\u00e9'  # an ID with a comma, quotes and a non-ASCII letter: the CSV must quote it


def _png(array: np.ndarray, **kw) -> bytes:
    from matplotlib.image import imsave

    buffer = io.BytesIO()
    imsave(buffer, array, format="png", **kw)
    return buffer.getvalue()


def _blocks(rng: np.random.Generator, shape: tuple[int, int], block: int = 8) -> np.ndarray:
    """Random values in blocks of block x block pixels: far from uniform, yet small as a PNG (pure noise is not)."""
    coarse = rng.random((-(-shape[0] // block), -(-shape[1] // block)))
    return np.kron(coarse, np.ones((block, block)))[: shape[0], : shape[1]]


def _pictures(rng: np.random.Generator, distinct: int, size: int) -> tuple[list[bytes], list[bytes]]:
    """`distinct` grey thumbnails and their 'saliency' overlays (the thumb in red with a bright blob)."""
    yy, xx = np.mgrid[:size, :size]
    thumbs, overlays = [], []
    for _ in range(distinct):
        grey = _blocks(rng, (size, size))
        cy, cx = rng.uniform(0.3, 0.7, 2) * size
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 8) ** 2))
        thumbs.append(_png(grey, cmap="gray", vmin=0, vmax=1))
        overlays.append(_png(np.dstack([np.maximum(grey, blob), grey * (1 - blob), grey * (1 - blob)])))
    return thumbs, overlays


def _cards(rng: np.random.Generator, n: int, labelled: bool, saliency: bool) -> list[dict]:
    scores = np.sort(rng.random(n))[::-1]
    cards = []
    for k, score in enumerate(scores):
        label = int(rng.random() < 0.4) if labelled else None
        cards.append({
            "id": ODD_ID if k == 2 else str(100000 + 7 * k),
            "score": round(float(score), 6),
            "rank": k + 1,
            "label": label,
            "thumb": f"thumbs/{k}.png",
            "saliency": f"saliency/{k}.png" if saliency else None,
            "catalog": ({"einstein_area": 2.5e-11 * (1 + k / 10), "lensed_pixels": 40.0 + k, "lensed_flux": 8.25}
                        if label == 1 else None),
        })
    return cards


def _galleries(rng: np.random.Generator, cards: list[dict], top: int, labelled: bool) -> list[dict]:
    n = len(cards)
    galleries = [{"key": "top", "title": f"Top {min(top, n)} candidates", "cards": list(range(min(top, n)))}]
    if labelled:
        fp = [k for k in range(n) if cards[k]["label"] == 0][:20]
        missed = [k for k in reversed(range(n)) if cards[k]["label"] == 1][:20]
        galleries += [{"key": "false_positives", "title": "Highest-scored non-lenses", "cards": fp},
                      {"key": "missed", "title": "Lowest-scored lenses", "cards": missed}]
    random = sorted(rng.choice(n, size=min(10, n), replace=False).tolist())
    return galleries + [{"key": "random", "title": "Random sample", "cards": random}]


def write_report(out: Path, n: int = 60, *, labelled: bool = True, saliency: bool = True, top: int = 500,
                 title: str = "Synthetic report", created: str = "2026-11-29T15:00:00Z", seed: int = 0,
                 distinct: int = 12, size: int = 101) -> Path:
    """Writes a report folder of `n` cards into `out` and returns the path of its index.html."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    for sub in ("thumbs", "saliency"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for name in ("index.html", "app.js", "style.css"):
        shutil.copyfile(STATIC / name, out / name)
    cards = _cards(rng, n, labelled, saliency)
    thumbs, overlays = _pictures(rng, distinct, size)
    for k in range(n):
        (out / "thumbs" / f"{k}.png").write_bytes(thumbs[k % distinct])
        if saliency:
            (out / "saliency" / f"{k}.png").write_bytes(overlays[k % distinct])
    metrics = None
    if labelled:
        (out / "roc.png").write_bytes(_png(_blocks(rng, (200, 400), 20), cmap="viridis"))
        metrics = {"auc": 0.8892, "tpr0": 0.2197, "tpr10": 0.4888, "n": n,
                   "n_lenses": sum(c["label"] for c in cards),
                   "intervals": {"auc": [0.861, 0.915], "tpr0": [0.12, 0.31], "tpr10": [0.41, 0.56]}}
    report = {
        "version": 1, "title": title, "created": created, "survey": "space",
        "models": ["space_lens_flow_10epochs.safetensors"], "dataset": "data/demo/space", "source": "run",
        "counts": {"scored": n, "lenses": metrics["n_lenses"] if metrics else None, "cards": n},
        "metrics": metrics, "roc": "roc.png" if labelled else None,
        "saliency_method": "Grad-CAM (captum LayerGradCam on the last convolution)" if saliency else None,
        "galleries": _galleries(rng, cards, top, labelled), "cards": cards,
    }
    write_data(out, report)
    return out / "index.html"


def write_data(out: Path, report: dict | str) -> None:
    """data.js holding `report` (a dict, or raw text to test what the page does with a broken one)."""
    text = report if isinstance(report, str) else "window.LEXACTUM_REPORT = " + json.dumps(report) + ";\n"
    (Path(out) / "data.js").write_text(text, encoding="utf-8")


def read_data(out: Path) -> dict:
    """The report dict of a folder's data.js."""
    text = (Path(out) / "data.js").read_text(encoding="utf-8")
    return json.loads(text.split("=", 1)[1].strip().rstrip(";"))
