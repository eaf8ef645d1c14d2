"""PyTorch layers that behave like the seed's Keras layers, and the networks built from a layer list.

Keras differs from PyTorch's defaults in three places that change results: 'same' padding with an even
kernel (or a stride) is asymmetric, batch normalisation uses epsilon 1e-3 and momentum 0.99, and kernels
start Glorot-uniform with zero biases. Everything here is channels-first.

:class:`KerasNetwork` turns a network's layer list (:mod:`lexactum.models.layers`, the one description
the Keras importer reads as well) into modules, registered in the order Keras computes the layers.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from lexactum.errors import LexactumError
from lexactum.models.layers import (
    Activation,
    BatchNorm,
    Conv,
    Dense,
    Dropout,
    Flatten,
    Group,
    Pool,
    Residual,
    check_network,
    output_shape,
)

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


# --------------------------------------------------------------------------------------------------------
# Networks from a layer list
# --------------------------------------------------------------------------------------------------------

#: Activation modules (inside an ``nn.Sequential``) and functions (after a named layer). "linear" has
#: none; nor has "sigmoid", which only the output layer has: our networks output logits.
_ACTIVATION_MODULES = {"linear": None, "sigmoid": None, "relu": nn.ReLU, "elu": nn.ELU}
_ACTIVATION_FUNCTIONS = {"linear": None, "sigmoid": None, "relu": F.relu, "elu": F.elu}


def _module(layer, shape: tuple) -> nn.Module:
    """The PyTorch module of one layer (without its activation) for an input of ``shape`` (C, H, W)."""
    if isinstance(layer, Conv):
        return KerasConv2d(shape[0], layer.filters, layer.kernel, stride=layer.stride, padding=layer.padding)
    if isinstance(layer, Dense):
        return nn.Linear(shape[0], layer.units)
    if isinstance(layer, Pool):
        return (nn.AvgPool2d if layer.average else nn.MaxPool2d)(layer.size)
    if isinstance(layer, BatchNorm):
        return batch_norm_2d(shape[0]) if len(shape) == 3 else batch_norm_1d(shape[0])
    if isinstance(layer, Dropout):
        return nn.Dropout(layer.rate)
    if isinstance(layer, Flatten):
        return nn.Flatten()
    if isinstance(layer, Activation):
        return _ACTIVATION_MODULES[layer.function]()
    if isinstance(layer, Residual):
        return ResidualBlock(layer.in_filters, layer.out_filters, layer.downsample)
    if isinstance(layer, Group):
        return _sequential(layer.layers, shape)
    raise TypeError(f"not a layer of lexactum.models.layers: {layer!r}")


def _sequential(layers: tuple, shape: tuple) -> nn.Sequential:
    """A group of layers as an ``nn.Sequential``, each layer's activation a module after it."""
    modules = []
    for layer in layers:
        if getattr(layer, "name", None) is not None:
            raise ValueError(f"{layer}: layers inside a Group are numbered, not named")
        modules.append(_module(layer, shape))
        activation = _ACTIVATION_MODULES[getattr(layer, "activation", "linear")]
        if activation is not None:
            modules.append(activation())
        shape = output_shape(layer, shape)
    return nn.Sequential(*modules)


def _add_layers(owner: nn.Module, layers: tuple, shape: tuple) -> tuple[list, tuple]:
    """Register the modules of ``layers`` on ``owner`` in order; the steps :func:`_run` takes, the output shape.

    A named layer becomes the module ``owner.<name>`` (its activation applied as a function after it); an
    unnamed Flatten or Activation is only a function.
    """
    steps = []
    for layer in layers:
        if layer.name is not None:
            owner.add_module(layer.name, _module(layer, shape))
            steps.append((layer.name, _ACTIVATION_FUNCTIONS[getattr(layer, "activation", "linear")]))
        elif isinstance(layer, Flatten):
            steps.append((None, functools.partial(torch.flatten, start_dim=1)))
        elif isinstance(layer, Activation):
            steps.append((None, _ACTIVATION_FUNCTIONS[layer.function]))
        else:
            raise ValueError(f"{layer} needs a name: it becomes a module of the network")
        shape = output_shape(layer, shape)
    return steps, shape


def _run(owner: nn.Module, steps: list, x: torch.Tensor) -> torch.Tensor:
    for name, function in steps:
        if name is not None:
            x = owner.get_submodule(name)(x)
        if function is not None:
            x = function(x)
    return x


class ResidualBlock(nn.Module):
    """The seed's residual block, :class:`lexactum.models.layers.Residual`: modules ``bn0``, ``shortcut``
    (``None`` without downsampling), ``conv1``, ``bn1``, ``conv2``, ``bn2``, ``conv3``, in Keras's order of
    computation (the shortcut reads the block's input after ``bn0`` and its ELU)."""

    def __init__(self, in_filters: int, out_filters: int, downsample: bool):
        super().__init__()
        self.downsample = bool(downsample)
        block = Residual(in_filters, out_filters, self.downsample)
        main, shortcut = block.main(), block.shortcut()
        self._head, shape = _add_layers(self, main[:block.BRANCH], (block.input_channels, None, None))
        self._shortcut = None if shortcut is None else _add_layers(self, (shortcut,), shape)[0]
        if shortcut is None:
            self.shortcut = None
        self._tail, _ = _add_layers(self, main[block.BRANCH:], shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = _run(self, self._head, x)
        shortcut = x if self._shortcut is None else _run(self, self._shortcut, activated)
        return _run(self, self._tail, activated) + shortcut


class KerasNetwork(nn.Module):
    """A network built from its layer list ``LAYERS``: ``(N, C, 101, 101)`` images -> ``(N,)`` logits.

    Modules are registered in the order Keras computes the layers, so the Conv2d / Linear / BatchNorm
    modules of ``modules()`` come in the order of the layers with weights of the seed's ``.h5`` files: the
    Keras importer pairs them so. Subclasses set ``LAYERS`` (checked when the class is defined).
    """

    LAYERS: tuple = ()
    #: The activation each top-level convolution applies in ``forward`` (a Keras Conv2D's own): feature
    #: maps show it. Derived from ``LAYERS``.
    ACTIVATION_AFTER: dict[str, str] = {}
    name = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        check_network(cls.LAYERS)
        cls.ACTIVATION_AFTER = {layer.name: layer.activation for layer in cls.LAYERS
                                if isinstance(layer, Conv) and layer.activation != "linear"}

    def __init__(self, in_channels: int = 1):
        super().__init__()
        self.in_channels = in_channels
        self._steps, _ = _add_layers(self, self.LAYERS, (in_channels, INPUT_SIZE, INPUT_SIZE))
        glorot_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.name)
        return _run(self, self._steps, x).squeeze(1)
