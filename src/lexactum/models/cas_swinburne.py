"""CAS Swinburne network (Jacobs et al. 2017), layer for layer as the seed built it."""

from __future__ import annotations

from lexactum.models.blocks import KerasNetwork
from lexactum.models.layers import Conv, Dense, Dropout, Flatten, Group, Pool
from lexactum.models.registry import register_model

REFERENCE = "Jacobs et al. 2017, MNRAS 471, 167 (Finding strong lenses in CFHTLS using CNNs)"


@register_model("cas_swinburne", reference=REFERENCE)
class CasSwinburne(KerasNetwork):
    """Three wide convolutions with max-pool 3, then two 1024-unit dense layers with dropout 0.5."""

    LAYERS = (
        Group("features", (
            Conv(96, 11, "relu"), Pool(3),  # 101 -> 33
            Conv(128, 5, "relu"), Pool(3),  # -> 11
            Conv(256, 3, "relu"), Pool(3),  # -> 3
        )),
        Group("classifier", (
            Flatten(),
            Dense(1024, "relu"), Dropout(0.5),
            Dense(1024, "relu"), Dropout(0.5),
            Dense(1, "sigmoid"),
        )),
    )
