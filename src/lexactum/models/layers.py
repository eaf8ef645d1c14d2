"""The one description of each network: a list of Keras-style layers (no torch here).

A network is written once, as the seed's Keras program built it, layer by layer. Two things follow from
that list: our PyTorch module (:class:`lexactum.models.blocks.KerasNetwork` builds it) and the Keras model
configuration the seed's ``.h5`` files hold (:func:`lexactum.models.keras_h5.seed_keras_config` writes
it), which the importer uses to recognise a file and to pair its weights with our modules.

Names (``name=``, :class:`Group`) do not exist in Keras: they are the attribute names of the PyTorch
module, which fix the keys of saved model files, so they must not change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

#: Activations a layer may apply. Only the network's output layer has the sigmoid (our networks output
#: logits; the sigmoid is applied at scoring time).
ACTIVATIONS = ("linear", "relu", "elu", "sigmoid")
PADDINGS = ("same", "valid")


def _check_choice(what: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}: choose one of {', '.join(choices)}")


@dataclass(frozen=True)
class Conv:
    """A Keras ``Conv2D``: the convolution, then its own activation."""

    filters: int
    kernel: int
    activation: str = "linear"
    padding: str = "same"
    stride: int = 1
    name: str | None = None

    def __post_init__(self):
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("padding", self.padding, PADDINGS)


@dataclass(frozen=True)
class Dense:
    """A Keras ``Dense`` layer and its activation."""

    units: int
    activation: str = "linear"
    name: str | None = None

    def __post_init__(self):
        _check_choice("activation", self.activation, ACTIVATIONS)


@dataclass(frozen=True)
class Pool:
    """A Keras ``MaxPooling2D`` (or ``AveragePooling2D``) with stride = size and no padding."""

    size: int
    average: bool = False
    name: str | None = None


@dataclass(frozen=True)
class BatchNorm:
    """A Keras ``BatchNormalization()`` over the channels (of an image, or of a dense layer's output)."""

    name: str | None = None


@dataclass(frozen=True)
class Dropout:
    rate: float
    name: str | None = None


@dataclass(frozen=True)
class Flatten:
    name: str | None = None


@dataclass(frozen=True)
class Activation:
    """An activation on its own (the seed's ``ELU()`` / ``ReLU()`` layers)."""

    function: str
    name: str | None = None

    def __post_init__(self):
        _check_choice("activation layer", self.function, ("relu", "elu"))


@dataclass(frozen=True)
class Residual:
    """The seed's pre-activation bottleneck block (CMU DeepLens as the seed wrote it).

    Its input has ``in_filters`` channels when it downsamples (first block of a group) and ``out_filters``
    otherwise (the identity shortcut needs equal channels). ELU follows every convolution and every batch
    normalisation. The shortcut reads the block's input after the first :attr:`BRANCH` layers of
    :meth:`main` (batch norm, ELU): a stride-2 1x1 convolution when the block downsamples, else the input.
    """

    in_filters: int
    out_filters: int
    downsample: bool
    name: str | None = None

    BRANCH: ClassVar[int] = 2

    @property
    def input_channels(self) -> int:
        return self.in_filters if self.downsample else self.out_filters

    def main(self) -> tuple:
        stride = 2 if self.downsample else 1
        return (
            BatchNorm(name="bn0"), Activation("elu"),
            Conv(self.in_filters, 1, "elu", stride=stride, name="conv1"), BatchNorm(name="bn1"), Activation("elu"),
            Conv(self.in_filters, 3, "elu", name="conv2"), BatchNorm(name="bn2"), Activation("elu"),
            Conv(self.out_filters, 1, "elu", name="conv3"),
        )

    def shortcut(self) -> Conv | None:
        return Conv(self.out_filters, 1, "elu", stride=2, name="shortcut") if self.downsample else None


@dataclass(frozen=True)
class Group:
    """Layers kept together as one ``nn.Sequential`` named ``name`` (e.g. ``features``, ``classifier``)."""

    name: str
    layers: tuple


def output_size(size: int, window: int, stride: int, padding: str) -> int:
    """Keras's output length along one axis of a convolution or pooling."""
    return math.ceil(size / stride) if padding == "same" else (size - window) // stride + 1


def output_shape(layer, shape: tuple) -> tuple:
    """The (C, H, W) or (features,) shape after ``layer`` for an input of ``shape``.

    H and W may be None (unknown: a residual block built on its own); they stay None.
    """
    def spatial(window: int, stride: int, padding: str) -> tuple:
        return tuple(None if n is None else output_size(n, window, stride, padding) for n in shape[1:])

    if isinstance(layer, Group):
        for inner in layer.layers:
            shape = output_shape(inner, shape)
        return shape
    if isinstance(layer, Conv | Pool | Residual) and len(shape) != 3:
        raise ValueError(f"{layer} needs an image input, gets shape {shape}")
    if isinstance(layer, Conv):
        return (layer.filters, *spatial(layer.kernel, layer.stride, layer.padding))
    if isinstance(layer, Pool):
        return (shape[0], *spatial(layer.size, layer.size, "valid"))
    if isinstance(layer, Residual):
        if shape[0] != layer.input_channels:
            raise ValueError(f"{layer} takes {layer.input_channels} channels, gets {shape[0]}")
        return (layer.out_filters, *spatial(1, 2 if layer.downsample else 1, "same"))
    if isinstance(layer, Flatten):
        return (math.prod(shape),)
    if isinstance(layer, Dense):
        if len(shape) != 1:
            raise ValueError(f"{layer} needs a flat input (a Flatten before it), gets shape {shape}")
        return (layer.units,)
    return shape


def flat_layers(layers: tuple) -> list:
    """The layers with groups opened (residual blocks stay whole)."""
    return [inner for layer in layers
            for inner in (flat_layers(layer.layers) if isinstance(layer, Group) else [layer])]


def check_network(layers: tuple) -> None:
    """A network's list must end in the seed's output layer, ``Dense(1, 'sigmoid')``, the only sigmoid."""
    flat = flat_layers(layers)
    last = flat[-1] if flat else None
    if not (isinstance(last, Dense) and last.units == 1 and last.activation == "sigmoid"):
        raise ValueError(f"a network must end in Dense(1, 'sigmoid'), not {last}")
    if any(getattr(layer, "activation", None) == "sigmoid" for layer in flat[:-1]):
        raise ValueError("only the output layer may apply the sigmoid")
