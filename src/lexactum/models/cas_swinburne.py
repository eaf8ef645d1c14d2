"""CAS Swinburne network (Jacobs et al. 2017), layer for layer as the seed built it."""

from __future__ import annotations

from torch import nn

from lexactum.models.blocks import SequentialNetwork, same_conv
from lexactum.models.registry import register_model

REFERENCE = "Jacobs et al. 2017, MNRAS 471, 167 (Finding strong lenses in CFHTLS using CNNs)"


@register_model("cas_swinburne", reference=REFERENCE)
class CasSwinburne(SequentialNetwork):
    """Three wide convolutions with max-pool 3, then two 1024-unit dense layers with dropout 0.5."""

    def __init__(self, in_channels: int = 1):
        features = nn.Sequential(
            same_conv(in_channels, 96, 11), nn.ReLU(), nn.MaxPool2d(3),  # 101 -> 33
            same_conv(96, 128, 5), nn.ReLU(), nn.MaxPool2d(3),  # -> 11
            same_conv(128, 256, 3), nn.ReLU(), nn.MaxPool2d(3),  # -> 3
        )
        classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(3 * 3 * 256, 1024), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(1024, 1024), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(1024, 1),
        )
        super().__init__(in_channels, features, classifier)
