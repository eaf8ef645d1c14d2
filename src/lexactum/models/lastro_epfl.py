"""LASTRO EPFL network (Schaefer et al. 2018), layer for layer as the seed built it."""

from __future__ import annotations

from lexactum.models.blocks import KerasNetwork
from lexactum.models.layers import BatchNorm, Conv, Dense, Dropout, Flatten, Group, Pool
from lexactum.models.registry import register_model

REFERENCE = "Schaefer et al. 2018, A&A 611, A2 (Deep CNNs as strong gravitational lens detectors)"


@register_model("lastro_epfl", reference=REFERENCE)
class LastroEpfl(KerasNetwork):
    """Four pairs of unpadded convolutions with batch norm, then three 1024-unit dense layers."""

    LAYERS = (
        Group("features", (
            Conv(16, 4, "relu", padding="valid"),  # 101 -> 98
            Conv(16, 3, "relu", padding="valid"),  # -> 96
            Pool(2), BatchNorm(),  # -> 48
            Conv(32, 3, "relu", padding="valid"),  # -> 46
            Conv(32, 3, "relu", padding="valid"),  # -> 44
            Pool(2), BatchNorm(),  # -> 22
            Conv(64, 3, "relu", padding="valid"),  # -> 20
            Conv(64, 3, "relu", padding="valid"),  # -> 18
            Pool(2), BatchNorm(), Dropout(0.1),  # -> 9
            Conv(128, 3, "relu", padding="valid"), Dropout(0.1),  # -> 7
            Conv(128, 3, "relu", padding="valid"),  # -> 5
            BatchNorm(), Dropout(0.1),
        )),
        Group("classifier", (
            Flatten(),
            Dense(1024, "relu"), Dropout(0.1),
            Dense(1024, "relu"), Dropout(0.1),
            Dense(1024, "relu"),
            BatchNorm(),
            Dense(1, "sigmoid"),
        )),
    )
