"""Lens finder network ("Auto-detection of strong gravitational lenses using CNNs"), as the seed built it."""

from __future__ import annotations

from lexactum.models.blocks import KerasNetwork
from lexactum.models.layers import Conv, Dense, Flatten, Group, Pool
from lexactum.models.registry import register_model

REFERENCE = ("Pearson, Pennock & Robinson 2018, Emergent Scientist 2, 1 "
             "(Auto-detection of strong gravitational lenses using CNNs)")


@register_model("lens_finder", reference=REFERENCE)
class LensFinder(KerasNetwork):
    """Two convolutions with max-pool 2, then a large 128-unit dense layer (80,000 inputs)."""

    LAYERS = (
        Group("features", (
            Conv(64, 5, "relu"), Pool(2),  # 101 -> 50
            Conv(128, 3, "relu"), Pool(2),  # -> 25
        )),
        Group("classifier", (
            Flatten(),
            Dense(128, "relu"),
            Dense(1, "sigmoid"),
        )),
    )
