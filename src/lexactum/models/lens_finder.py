"""Lens finder network ("Auto-detection of strong gravitational lenses using CNNs"), as the seed built it."""

from __future__ import annotations

from torch import nn

from lexactum.models.blocks import SequentialNetwork, same_conv
from lexactum.models.registry import register_model

REFERENCE = ("Pearson, Pennock & Robinson 2018, Emergent Scientist 2, 1 "
             "(Auto-detection of strong gravitational lenses using CNNs)")


@register_model("lens_finder", reference=REFERENCE)
class LensFinder(SequentialNetwork):
    """Two convolutions with max-pool 2, then a large 128-unit dense layer (80,000 inputs)."""

    def __init__(self, in_channels: int = 1):
        features = nn.Sequential(
            same_conv(in_channels, 64, 5), nn.ReLU(), nn.MaxPool2d(2),  # 101 -> 50
            same_conv(64, 128, 3), nn.ReLU(), nn.MaxPool2d(2),  # -> 25
        )
        classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(25 * 25 * 128, 128), nn.ReLU(),
            nn.Linear(128, 1),
        )
        super().__init__(in_channels, features, classifier)
