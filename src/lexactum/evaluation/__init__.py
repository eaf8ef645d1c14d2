"""Scores to numbers and pictures: the challenge metrics, ROC and other plots, evaluation runs.

Public names are imported lazily so that ``import lexactum.evaluation`` stays cheap (no torch, no
matplotlib until used): :func:`challenge_metrics`, :func:`auc`, :func:`roc_curve`, :func:`tpr_at_fp`,
:func:`rates_at_threshold`, :func:`bootstrap` (numpy only); :func:`plot_roc`, :func:`plot_training_curves`,
:func:`image_grid`, :func:`plot_feature_maps`; :func:`score`, :func:`time_per_image`,
:func:`evaluate_model`, :func:`conv_activations`.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "roc_curve": "metrics",
    "auc": "metrics",
    "tpr_at_fp": "metrics",
    "rates_at_threshold": "metrics",
    "bootstrap": "metrics",
    "challenge_metrics": "metrics",
    "plot_roc": "plots",
    "plot_training_curves": "plots",
    "image_grid": "plots",
    "plot_feature_maps": "plots",
    "score": "evaluate",
    "time_per_image": "evaluate",
    "evaluate_model": "evaluate",
    "conv_activations": "evaluate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"lexactum.evaluation.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'lexactum.evaluation' has no attribute {name!r}")
