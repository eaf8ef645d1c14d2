"""Test-time augmentation: a network's lens probability averaged over exact flips and quarter turns.

A lens stays a lens under the eight symmetries of the square (the dihedral group D4), and on a 101x101 pixel
grid they are exact (no interpolation), so averaging over them removes orientation noise from the score at
the cost of n network passes. ``--tta 4`` uses the quarter turns, ``--tta 8`` adds their mirror images.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lexactum.inference.options import check_tta


def dihedral(images: torch.Tensor, k: int) -> torch.Tensor:
    """View ``k`` (0-7) of a (B, C, H, W) tensor: ``k % 4`` quarter turns, mirrored left-right when k >= 4."""
    turned = torch.rot90(images, k % 4, dims=(-2, -1))
    return torch.flip(turned, dims=(-1,)) if k >= 4 else turned


class AveragedViews(nn.Module):
    """A network whose output is the log-odds of its probability averaged over ``n`` views of the input.

    Returning log-odds keeps the wrapper a drop-in network (scores are the sigmoid of its output). They are
    computed from log-sigmoids with logsumexp in float64, so that the mean probability of confident views
    (p within 1e-12 of 1) is not lost to rounding: log(mean p) - log(mean (1 - p)).
    """

    def __init__(self, network: nn.Module, n: int):
        super().__init__()
        self.network, self.n = network, check_tta(n)
        self.metadata = getattr(network, "metadata", None)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        views = torch.cat([dihedral(images, k) for k in range(self.n)])
        logits = self.network(views).reshape(self.n, len(images)).double()
        log_n = math.log(self.n)
        lens = torch.logsumexp(nn.functional.logsigmoid(logits), dim=0) - log_n
        other = torch.logsumexp(nn.functional.logsigmoid(-logits), dim=0) - log_n
        return lens - other


def with_views(network: nn.Module, n: int) -> nn.Module:
    """``network`` itself for one view, else wrapped in :class:`AveragedViews`."""
    return network if check_tta(n) == 1 else AveragedViews(network, n)
