"""The six seed networks, a registry to pick them by name, and model files.

``import lexactum.models`` is cheap: torch and the networks load on first use of what is exported here.
"""

from __future__ import annotations

from lexactum.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "default_model_path", "list_models", "load_model", "register_model", "save_model"]

_FROM_FILES = ("load_model", "save_model", "default_model_path")


def __getattr__(name: str):
    if name in _FROM_FILES:
        from lexactum.models import files

        return getattr(files, name)
    raise AttributeError(f"module 'lexactum.models' has no attribute {name!r}")
