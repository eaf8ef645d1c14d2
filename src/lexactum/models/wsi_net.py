"""WSI-Net's classification branch (after Ni et al. 2019) as the seed adapted it to lens finding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lexactum.models.blocks import ResidualBlock, batch_norm_2d, check_input, glorot_init_, same_conv
from lexactum.models.registry import register_model

REFERENCE = ("after Ni et al. 2019, MLMI 2019, LNCS 11861 (WSI-Net: branch-based and hierarchy-aware "
             "network for whole-slide images)")


@register_model("wsi_net", reference=REFERENCE)
class WsiNet(nn.Module):
    """Stem conv, two residual blocks (101 -> 51), two conv + batch-norm + ReLU stages, max-pool 2, dense."""

    #: The activation each convolution applies in ``forward`` (a Keras Conv2D's own): feature maps show it.
    ACTIVATION_AFTER = {"stem": "elu", "conv_a": "elu", "conv_b": "elu"}

    def __init__(self, in_channels: int = 1):
        super().__init__()
        self.in_channels = in_channels
        self.stem = same_conv(in_channels, 32, 7)
        self.block1 = ResidualBlock(16, 32, downsample=False)
        self.block2 = ResidualBlock(32, 64, downsample=True)  # 101 -> 51
        self.conv_a = same_conv(64, 32, 1)
        self.bn_a = batch_norm_2d(32)
        self.conv_b = same_conv(32, 32, 5)
        self.bn_b = batch_norm_2d(32)
        self.pool = nn.MaxPool2d(2)  # -> 25
        self.fc1 = nn.Linear(25 * 25 * 32, 128)
        self.fc2 = nn.Linear(128, 1)
        glorot_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.name)
        x = F.elu(self.stem(x))
        x = self.block2(self.block1(x))
        x = F.relu(self.bn_a(F.elu(self.conv_a(x))))
        x = F.relu(self.bn_b(F.elu(self.conv_b(x))))
        x = torch.flatten(self.pool(x), 1)
        return self.fc2(self.fc1(x)).squeeze(1)  # fc1 is linear, as in the seed
