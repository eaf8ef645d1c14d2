"""Networks by name: adding one is writing a module with ``@register_model("name")`` (seed feature 6).

The built-in networks register themselves when their modules are imported; that happens on the first call
to :func:`create_model` or :func:`list_models`, so ``import lexactum.models`` stays cheap.
"""

from __future__ import annotations

import importlib
import operator
from collections.abc import Callable
from dataclasses import dataclass

from lexactum.errors import LexactumError

#: Modules of the built-in networks, in the seed's order.
BUILTIN_MODULES = ("cas_swinburne", "lastro_epfl", "cmu_deeplens", "wsi_net", "lens_flow", "lens_finder")


@dataclass(frozen=True)
class ModelEntry:
    """A registered network: how to build it and where it comes from."""

    name: str
    builder: Callable
    """Class or factory called as ``builder(in_channels=..., **kwargs)``."""
    reference: str


_REGISTRY: dict[str, ModelEntry] = {}
_builtins_loaded = False


def _identity(builder: Callable) -> tuple[str, str]:
    """Where a builder is defined: re-importing its module may register it again, anything else may not."""
    return builder.__module__, builder.__qualname__


def register_model(name: str, reference: str = "") -> Callable:
    """Decorator registering a network class or factory (taking ``in_channels``) under ``name``."""

    def decorate(builder: Callable) -> Callable:
        existing = _REGISTRY.get(name)
        if existing is not None and _identity(existing.builder) != _identity(builder):
            raise LexactumError(
                f"a network named {name!r} is already registered ({existing.builder.__module__})"
            )
        if isinstance(builder, type):
            builder.name = name
        _REGISTRY[name] = ModelEntry(name, builder, reference)
        return builder

    return decorate


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        for module in BUILTIN_MODULES:
            importlib.import_module(f"lexactum.models.{module}")
        _builtins_loaded = True


def list_models() -> list[str]:
    """Names of all registered networks, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; the error lists the valid names."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        valid = ", ".join(sorted(_REGISTRY))
        raise LexactumError(f"unknown network {name!r}: choose one of {valid}") from None


def create_model(name: str, in_channels: int = 1, **kwargs):
    """A new network ``name`` for images with ``in_channels`` bands, with Keras's starting weights.

    The network maps ``(N, in_channels, 101, 101)`` images to ``(N,)`` logits and carries ``.name`` and
    ``.in_channels``.
    """
    entry = get_entry(name)
    try:
        valid = not isinstance(in_channels, bool) and operator.index(in_channels) >= 1
    except TypeError:
        valid = False
    if not valid:
        raise LexactumError(f"in_channels must be a positive whole number of bands, not {in_channels!r}")
    in_channels = operator.index(in_channels)
    model = entry.builder(in_channels=in_channels, **kwargs)
    model.name = name
    model.in_channels = in_channels
    return model
