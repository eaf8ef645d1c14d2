"""CMU DeepLens (Lanusse et al. 2018) as the seed wrote it: a stem and 15 pre-activation residual blocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lexactum.models.blocks import ResidualBlock, batch_norm_2d, check_input, glorot_init_, same_conv
from lexactum.models.registry import register_model

REFERENCE = "Lanusse et al. 2018, MNRAS 473, 3895 (CMU DeepLens: deep learning for strong lens finding)"

#: (in, out) filters of the five groups of three blocks; the first block of groups 2-5 downsamples.
GROUPS = ((16, 32), (32, 64), (64, 128), (128, 256), (256, 512))
BLOCKS_PER_GROUP = 3


@register_model("cmu_deeplens", reference=REFERENCE)
class CmuDeepLens(nn.Module):
    """Stem conv 32@7x7 + batch norm, 5 groups of 3 residual blocks (101 -> 7), avg-pool 2, dense 1."""

    #: The activation each convolution applies in ``forward`` (a Keras Conv2D's own): feature maps show it.
    ACTIVATION_AFTER = {"stem": "elu"}

    def __init__(self, in_channels: int = 1):
        super().__init__()
        self.in_channels = in_channels
        self.stem = same_conv(in_channels, 32, 7)
        self.stem_bn = batch_norm_2d(32)
        blocks = []
        for group, (in_filters, out_filters) in enumerate(GROUPS):
            for index in range(BLOCKS_PER_GROUP):
                blocks.append(ResidualBlock(in_filters, out_filters, downsample=group > 0 and index == 0))
        self.blocks = nn.Sequential(*blocks)  # 101 -> 101 -> 51 -> 26 -> 13 -> 7
        self.pool = nn.AvgPool2d(2)  # -> 3
        self.fc = nn.Linear(3 * 3 * GROUPS[-1][1], 1)
        glorot_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.name)
        x = self.stem_bn(F.elu(self.stem(x)))  # the seed has no activation after this batch norm
        x = self.pool(self.blocks(x))
        return self.fc(torch.flatten(x, 1)).squeeze(1)
