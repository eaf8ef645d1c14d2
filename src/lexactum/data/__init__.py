"""From folders of challenge FITS files to normalised batches.

Public names: :class:`ChallengeDataset`, :func:`read_fits`, :func:`zscale`, :func:`normalise`.
They are imported lazily so that ``import lexactum.data`` stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ChallengeDataset": "lexactum.data.layouts",
    "read_fits": "lexactum.data.fits",
    "zscale": "lexactum.data.normalise",
    "normalise": "lexactum.data.normalise",
    "list_normalisations": "lexactum.data.normalise",
    "open_cutouts": "lexactum.data.cutouts",
    "get_survey": "lexactum.data.surveys",
    "SURVEYS": "lexactum.data.surveys",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lexactum.data' has no attribute {name!r}")
