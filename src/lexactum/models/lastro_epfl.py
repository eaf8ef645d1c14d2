"""LASTRO EPFL network (Schaefer et al. 2018), layer for layer as the seed built it."""

from __future__ import annotations

from torch import nn

from lexactum.models.blocks import SequentialNetwork, batch_norm_1d, batch_norm_2d, valid_conv
from lexactum.models.registry import register_model

REFERENCE = "Schaefer et al. 2018, A&A 611, A2 (Deep CNNs as strong gravitational lens detectors)"


@register_model("lastro_epfl", reference=REFERENCE)
class LastroEpfl(SequentialNetwork):
    """Four pairs of unpadded convolutions with batch norm, then three 1024-unit dense layers."""

    def __init__(self, in_channels: int = 1):
        features = nn.Sequential(
            valid_conv(in_channels, 16, 4), nn.ReLU(),  # 101 -> 98
            valid_conv(16, 16, 3), nn.ReLU(),  # -> 96
            nn.MaxPool2d(2), batch_norm_2d(16),  # -> 48
            valid_conv(16, 32, 3), nn.ReLU(),  # -> 46
            valid_conv(32, 32, 3), nn.ReLU(),  # -> 44
            nn.MaxPool2d(2), batch_norm_2d(32),  # -> 22
            valid_conv(32, 64, 3), nn.ReLU(),  # -> 20
            valid_conv(64, 64, 3), nn.ReLU(),  # -> 18
            nn.MaxPool2d(2), batch_norm_2d(64), nn.Dropout(0.1),  # -> 9
            valid_conv(64, 128, 3), nn.ReLU(), nn.Dropout(0.1),  # -> 7
            valid_conv(128, 128, 3), nn.ReLU(),  # -> 5
            batch_norm_2d(128), nn.Dropout(0.1),
        )
        classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(5 * 5 * 128, 1024), nn.ReLU(), nn.Dropout(0.1),
            nn.Linear(1024, 1024), nn.ReLU(), nn.Dropout(0.1),
            nn.Linear(1024, 1024), nn.ReLU(),
            batch_norm_1d(1024),
            nn.Linear(1024, 1),
        )
        super().__init__(in_channels, features, classifier)
