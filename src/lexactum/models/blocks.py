"""Layers that behave like the seed's Keras layers, so that networks match it and its weights map on.

Keras differs from PyTorch's defaults in three places that change results: 'same' padding with an even
kernel (or a stride) is asymmetric, batch normalisation uses epsilon 1e-3 and momentum 0.99, and kernels
start Glorot-uniform with zero biases. Everything here is channels-first.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lexactum.errors import LexactumError

#: Height and width of a challenge cutout; the dense layers of every network are sized for it.
INPUT_SIZE = 101
BN_EPSILON = 1e-3
#: PyTorch's momentum is the weight of the new batch: Keras's 0.99 moving average is 0.01 here.
BN_MOMENTUM = 0.01


def keras_same_padding(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """Keras/TensorFlow 'same' padding (before, after) along one axis: the odd pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class KerasConv2d(nn.Conv2d):
    """Conv2d with Keras padding: ``'valid'`` (none) or ``'same'`` (asymmetric where Keras is)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: str = "same"):
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', not {padding!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0)
        self.keras_padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.keras_padding == "valid":
            return super().forward(x)
        top, bottom = keras_same_padding(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = keras_same_padding(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
        if top == bottom and left == right:  # symmetric: let the convolution pad, no copy
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", keras_padding={self.keras_padding!r}"


def same_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> KerasConv2d:
    """A Keras ``Conv2D(..., padding='same')``."""
    return KerasConv2d(in_channels, out_channels, kernel_size, stride=stride, padding="same")


def valid_conv(in_channels: int, out_channels: int, kernel_size: int) -> KerasConv2d:
    """A Keras ``Conv2D(..., padding='valid')``."""
    return KerasConv2d(in_channels, out_channels, kernel_size, padding="valid")


def batch_norm_2d(channels: int) -> nn.BatchNorm2d:
    """A Keras ``BatchNormalization()`` over the channels of an image tensor."""
    return nn.BatchNorm2d(channels, eps=BN_EPSILON, momentum=BN_MOMENTUM)


def batch_norm_1d(features: int) -> nn.BatchNorm1d:
    """A Keras ``BatchNormalization()`` after a dense layer."""
    return nn.BatchNorm1d(features, eps=BN_EPSILON, momentum=BN_MOMENTUM)


def glorot_init_(module: nn.Module) -> nn.Module:
    """Keras's starting weights: Glorot-uniform kernels and zero biases for every Conv2d and Linear."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


def check_input(x: torch.Tensor, in_channels: int, network: str) -> None:
    """Refuse images of the wrong shape with a clear message instead of a matrix-size error deep inside."""
    if x.ndim != 4 or x.shape[1] != in_channels or tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
        raise LexactumError(
            f"{network} expects images of shape (N, {in_channels}, {INPUT_SIZE}, {INPUT_SIZE}), "
            f"got {tuple(x.shape)}"
        )


class SequentialNetwork(nn.Module):
    """A Keras ``Sequential`` network: ``features`` (convolutions) then ``classifier`` (dense layers).

    Layers are registered in the order Keras computes them, so the Conv2d / Linear / BatchNorm modules of
    ``modules()`` come in the same order as the layers of the seed's ``.h5`` files.
    """

    name = ""

    def __init__(self, in_channels: int, features: nn.Sequential, classifier: nn.Sequential):
        super().__init__()
        self.in_channels = in_channels
        self.features = features
        self.classifier = classifier
        glorot_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.name)
        return self.classifier(self.features(x)).squeeze(1)


class ResidualBlock(nn.Module):
    """The seed's pre-activation bottleneck block (CMU DeepLens as the seed wrote it).

    Its input has ``in_filters`` channels when it downsamples (first block of a group) and ``out_filters``
    otherwise (the identity shortcut needs equal channels). ELU follows every convolution and every batch
    normalisation, as in the seed.
    """

    def __init__(self, in_filters: int, out_filters: int, downsample: bool):
        super().__init__()
        self.downsample = bool(downsample)
        block_input = in_filters if self.downsample else out_filters
        stride = 2 if self.downsample else 1
        self.bn0 = batch_norm_2d(block_input)
        self.shortcut = same_conv(block_input, out_filters, 1, stride=2) if self.downsample else None
        self.conv1 = same_conv(block_input, in_filters, 1, stride=stride)
        self.bn1 = batch_norm_2d(in_filters)
        self.conv2 = same_conv(in_filters, in_filters, 3)
        self.bn2 = batch_norm_2d(in_filters)
        self.conv3 = same_conv(in_filters, out_filters, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.elu(self.bn0(x))
        shortcut = F.elu(self.shortcut(activated)) if self.downsample else x
        main = F.elu(self.conv1(activated))
        main = F.elu(self.bn1(main))
        main = F.elu(self.conv2(main))
        main = F.elu(self.bn2(main))
        main = F.elu(self.conv3(main))
        return main + shortcut
