"""LensFlow network (Pourrahmani et al. 2018), layer for layer as the seed built it."""

from __future__ import annotations

from torch import nn

from lexactum.models.blocks import SequentialNetwork, same_conv
from lexactum.models.registry import register_model

REFERENCE = "Pourrahmani et al. 2018, ApJ 856, 68 (LensFlow: a CNN in search of strong gravitational lenses)"


@register_model("lens_flow", reference=REFERENCE)
class LensFlow(SequentialNetwork):
    """A small network: average-pool 3, three convolutions with max-pool 2, one 128-unit dense layer."""

    def __init__(self, in_channels: int = 1):
        features = nn.Sequential(
            nn.AvgPool2d(3),  # 101 -> 33
            same_conv(in_channels, 16, 5), nn.ReLU(), nn.MaxPool2d(2),  # -> 16
            same_conv(16, 25, 5), nn.ReLU(), nn.MaxPool2d(2),  # -> 8
            same_conv(25, 36, 4), nn.ReLU(), nn.MaxPool2d(2),  # -> 4 (4x4 'same': pad 1 before, 2 after)
        )
        classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(4 * 4 * 36, 128), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(128, 1),
        )
        super().__init__(in_channels, features, classifier)
