"""LensFlow network (Pourrahmani et al. 2018), layer for layer as the seed built it."""

from __future__ import annotations

from lexactum.models.blocks import KerasNetwork
from lexactum.models.layers import Conv, Dense, Dropout, Flatten, Group, Pool
from lexactum.models.registry import register_model

REFERENCE = "Pourrahmani et al. 2018, ApJ 856, 68 (LensFlow: a CNN in search of strong gravitational lenses)"


@register_model("lens_flow", reference=REFERENCE)
class LensFlow(KerasNetwork):
    """A small network: average-pool 3, three convolutions with max-pool 2, one 128-unit dense layer."""

    LAYERS = (
        Group("features", (
            Pool(3, average=True),  # 101 -> 33
            Conv(16, 5, "relu"), Pool(2),  # -> 16
            Conv(25, 5, "relu"), Pool(2),  # -> 8
            Conv(36, 4, "relu"), Pool(2),  # -> 4 (4x4 'same': pad 1 before, 2 after)
        )),
        Group("classifier", (
            Flatten(),
            Dense(128, "relu"), Dropout(0.5),
            Dense(1, "sigmoid"),
        )),
    )
