"""Import of the seed's Keras ``.h5`` model files with h5py alone (no TensorFlow, no code from the file).

The seed saved its trained networks with ``model.save('models/<name>.h5')``. Such a file holds the
architecture as JSON (root attribute ``model_config``) and the weights as HDF5 datasets. We read the JSON as
plain data, recognise which of the six seed networks it describes from the layers alone (never from names,
which Keras numbers per session), build our PyTorch twin with ``create_model`` and copy the weights across,
converting Keras's channels-last layout to ours.

Recognition compares a *signature*: the layers in computation order, each with the settings that change
what it computes and where its inputs come from. The expected signatures are generated from
:func:`seed_keras_config`, the Keras configuration each seed network saves, written from the network's
layer list (:mod:`lexactum.models.layers`), the same list our PyTorch network is built from. For the
residual networks the order of ``config.layers`` is not the order of computation, so the graph
(``inbound_nodes``) decides: at each ``Add`` the shortcut is the shallower input.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lexactum.errors import ModelFileError
from lexactum.models.blocks import BN_EPSILON, BN_MOMENTUM, INPUT_SIZE
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
    flat_layers,
    output_size,
)
from lexactum.models.registry import BUILTIN_MODULES, get_entry

if TYPE_CHECKING:
    from torch import nn

#: The seed's networks, in the order the seed lists them (our built-in networks are exactly these).
SEED_NETWORKS = BUILTIN_MODULES

#: Keras activation names (built into Keras, no code needed); anything else is a custom object.
_KERAS_ACTIVATIONS = {
    "linear", "relu", "elu", "selu", "sigmoid", "hard_sigmoid", "softmax", "softplus", "softsign", "tanh",
    "swish", "silu", "gelu", "exponential",
}
#: Keras class names we read, with their older aliases.
_KIND = {
    "InputLayer": "Input",
    "Conv2D": "Conv2D", "Convolution2D": "Conv2D",
    "Dense": "Dense",
    "BatchNormalization": "BatchNormalization",
    "MaxPooling2D": "MaxPooling2D", "MaxPool2D": "MaxPooling2D",
    "AveragePooling2D": "AveragePooling2D", "AvgPool2D": "AveragePooling2D",
    "Flatten": "Flatten",
    "Dropout": "Dropout",
    "Activation": "Activation", "ELU": "Activation", "ReLU": "Activation",
    "Add": "Add",
}
_WEIGHT_ROLES = {
    "Conv2D": ("kernel", "bias"),
    "Dense": ("kernel", "bias"),
    "BatchNormalization": ("gamma", "beta", "moving_mean", "moving_variance"),
}


# --------------------------------------------------------------------------------------------------------
# The seed's networks as Keras would save them
# --------------------------------------------------------------------------------------------------------

class _KerasConfigBuilder:
    """Writes a Keras 2 ``model_config`` layer by layer, naming layers the way Keras does."""

    _PREFIX = {"Conv2D": "conv2d", "Dense": "dense", "BatchNormalization": "batch_normalization",
               "MaxPooling2D": "max_pooling2d", "AveragePooling2D": "average_pooling2d", "Flatten": "flatten",
               "Dropout": "dropout", "ELU": "elu", "ReLU": "re_lu", "Add": "add",
               "InputLayer": "input_1"}  # Keras numbers inputs from 1 (and a config has one)

    def __init__(self, in_channels: int, functional: bool):
        self.functional = functional
        self.flat = False  # after a Flatten: batch norms normalise axis 1, not the channels axis 3
        self.layers: list[dict] = []
        self._counts: dict[str, int] = {}
        self.input_shape = [None, INPUT_SIZE, INPUT_SIZE, in_channels]
        self.last = self._add("InputLayer", {"batch_input_shape": self.input_shape, "dtype": "float32",
                                             "sparse": False, "ragged": False}, [])

    def _add(self, class_name: str, config: dict, inputs: list[str] | None = None) -> str:
        prefix = self._PREFIX[class_name]
        count = self._counts.get(prefix, 0)
        self._counts[prefix] = count + 1
        name = prefix if count == 0 else f"{prefix}_{count}"
        config = {"name": name, "trainable": True, "dtype": "float32", **config}
        layer = {"class_name": class_name, "config": config}
        if self.functional:
            inputs = [self.last] if inputs is None else inputs
            layer["name"] = name
            layer["inbound_nodes"] = [[[i, 0, 0, {}] for i in inputs]] if inputs else []
        elif len(self.layers) == 1:  # Keras repeats the input shape in the first real layer
            config["batch_input_shape"] = self.input_shape
        self.layers.append(layer)
        self.last = name
        return name

    def write(self, layer) -> None:
        """Append the Keras layers of one entry of a network's layer list."""
        if isinstance(layer, Group):
            for inner in layer.layers:
                self.write(inner)
        elif isinstance(layer, Residual):
            self._residual_block(layer)
        else:
            self._add(*_keras_layer(layer, batch_norm_axis=1 if self.flat else 3))
            self.flat = self.flat or isinstance(layer, Flatten)

    def _residual_block(self, block: Residual) -> None:
        """The seed's block; like the seed's Keras files, the shortcut convolution is listed last."""
        block_input = self.last
        main = block.main()
        for layer in main[:block.BRANCH]:
            self.write(layer)
        activated = self.last
        for layer in main[block.BRANCH:]:
            self.write(layer)
        main_output = self.last
        shortcut = block.shortcut()
        if shortcut is not None:
            self.last = activated  # the shortcut reads the block's input after batch norm and ELU
            self.write(shortcut)
        self._add("Add", {}, [main_output, block_input if shortcut is None else self.last])

    def model_config(self) -> dict:
        if not self.functional:
            return {"class_name": "Sequential", "config": {"name": "sequential", "layers": self.layers}}
        return {"class_name": "Functional", "config": {
            "name": "model", "trainable": True, "layers": self.layers,
            "input_layers": [[self.layers[0]["name"], 0, 0]], "output_layers": [[self.last, 0, 0]]}}


def _keras_layer(layer, batch_norm_axis: int) -> tuple[str, dict]:
    """The Keras class and settings, as Keras 2 saves them, of one layer of a network's layer list."""
    if isinstance(layer, Conv):
        return "Conv2D", {
            "filters": layer.filters, "kernel_size": [layer.kernel] * 2, "strides": [layer.stride] * 2,
            "padding": layer.padding, "data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1,
            "activation": layer.activation, "use_bias": True}
    if isinstance(layer, Dense):
        return "Dense", {"units": layer.units, "activation": layer.activation, "use_bias": True}
    if isinstance(layer, BatchNorm):
        return "BatchNormalization", {"axis": [batch_norm_axis], "momentum": 1 - BN_MOMENTUM, "epsilon": BN_EPSILON,
                                      "center": True, "scale": True}
    if isinstance(layer, Pool):
        return "AveragePooling2D" if layer.average else "MaxPooling2D", {
            "pool_size": [layer.size] * 2, "padding": "valid", "strides": [layer.size] * 2,
            "data_format": "channels_last"}
    if isinstance(layer, Dropout):
        return "Dropout", {"rate": layer.rate, "noise_shape": None, "seed": None}
    if isinstance(layer, Flatten):
        return "Flatten", {"data_format": "channels_last"}
    if isinstance(layer, Activation):
        return {"elu": ("ELU", {"alpha": 1.0}),
                "relu": ("ReLU", {"max_value": None, "negative_slope": 0.0, "threshold": 0.0})}[layer.function]
    raise TypeError(f"not a layer of lexactum.models.layers: {layer!r}")


def seed_keras_config(network: str, in_channels: int) -> dict:
    """The ``model_config`` the seed's Keras program saves for ``network``, written from its layer list.

    Used to recognise files and, in tests, to write synthetic ``.h5`` files for every network.
    """
    if network not in SEED_NETWORKS:
        raise ModelFileError(f"unknown seed network {network!r}: choose one of {', '.join(SEED_NETWORKS)}")
    layers = get_entry(network).builder.LAYERS
    builder = _KerasConfigBuilder(in_channels, functional=any(isinstance(x, Residual) for x in flat_layers(layers)))
    for layer in layers:
        builder.write(layer)
    return builder.model_config()


# --------------------------------------------------------------------------------------------------------
# Reading a model_config as data: layers, graph, computation order, signature
# --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KerasLayer:
    """One layer of a Keras model config: its name, canonical kind, settings and the layers it reads."""

    name: str
    kind: str
    params: tuple
    inputs: tuple[str, ...]
    config: dict


def _pair(value, what: str, layer: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    raise ModelFileError(f"layer {layer!r}: {what} {value!r} is not two integers")


def _activation(value, layer: str) -> str:
    if not isinstance(value, str) or value not in _KERAS_ACTIVATIONS:
        raise ModelFileError(f"layer {layer!r} uses activation {value!r}, which is not built into Keras: "
                             "custom objects are refused")
    return value


def _params(kind: str, class_name: str, config: dict, name: str) -> tuple:
    """The settings of a layer that change what it computes, as sorted ``(key, value)`` pairs."""
    get = config.get
    if kind == "Conv2D":
        params = {"filters": get("filters"), "kernel": _pair(get("kernel_size"), "kernel_size", name),
                  "strides": _pair(get("strides", 1), "strides", name), "padding": get("padding", "valid"),
                  "activation": _activation(get("activation", "linear"), name),
                  "use_bias": bool(get("use_bias", True))}
        if _pair(get("dilation_rate", 1), "dilation_rate", name) != (1, 1):
            params["dilation"] = _pair(get("dilation_rate"), "dilation_rate", name)
        if get("groups", 1) != 1:
            params["groups"] = get("groups")
    elif kind == "Dense":
        params = {"units": get("units"), "activation": _activation(get("activation", "linear"), name),
                  "use_bias": bool(get("use_bias", True))}
    elif kind == "BatchNormalization":
        axis = get("axis", -1)
        params = {"axis": axis[0] if isinstance(axis, list) and len(axis) == 1 else axis}  # see signature()
        if not get("center", True) or not get("scale", True):
            params.update(center=bool(get("center", True)), scale=bool(get("scale", True)))
    elif kind in ("MaxPooling2D", "AveragePooling2D"):
        pool = _pair(get("pool_size", 2), "pool_size", name)
        strides = get("strides")
        params = {"pool": pool, "strides": pool if strides is None else _pair(strides, "strides", name),
                  "padding": get("padding", "valid")}
    elif kind == "Dropout":
        params = {"rate": float(get("rate", 0.0))}
    elif kind == "Activation":
        if class_name == "ELU":
            alpha = float(get("alpha", 1.0))
            activation = "elu" if alpha == 1.0 else f"elu(alpha={alpha})"
        elif class_name == "ReLU":
            plain = get("max_value") is None and not get("negative_slope") and not get("threshold")
            activation = "relu" if plain else (f"relu(max_value={get('max_value')}, negative_slope="
                                               f"{get('negative_slope')}, threshold={get('threshold')})")
        else:
            activation = _activation(get("activation"), name)
        params = {"activation": activation}
    else:
        params = {}
    data_format = get("data_format")
    if data_format not in (None, "channels_last"):
        params["data_format"] = data_format
    return _frozen(params)


def _frozen(value):
    """JSON data made hashable (signatures are compared and matched as sequences)."""
    if isinstance(value, dict):
        return tuple((str(k), _frozen(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


def _inbound_names(nodes, name: str) -> tuple[str, ...]:
    """Names of the layers a Functional layer reads (Keras 2 lists, or Keras 3 ``keras_history``)."""
    if not nodes:
        return ()
    if not isinstance(nodes, list):
        raise ModelFileError(f"layer {name!r}: inbound_nodes {nodes!r} is not a list of layer calls")
    if len(nodes) > 1:
        raise ModelFileError(f"layer {name!r} is called more than once (shared layers are not in the seed)")
    found: list[str] = []

    def walk(item):
        if isinstance(item, dict):
            if "keras_history" in item:
                found.append(item["keras_history"][0])
            else:
                for value in item.values():
                    walk(value)
        elif isinstance(item, list) and item:
            if isinstance(item[0], str):
                found.append(item[0])
            else:
                for value in item:
                    walk(value)

    walk(nodes[0])
    return tuple(found)


def parse_model_config(model_config: dict, source: str = "model_config") -> tuple[list[KerasLayer], tuple]:
    """The layers of a Keras ``model_config`` (plain data, nothing executed) and its batch input shape."""
    try:
        class_name = model_config["class_name"]
        config = model_config["config"]
    except (KeyError, TypeError):
        raise ModelFileError(f"{source}: model_config has no class_name/config: not a Keras model") from None
    if class_name not in ("Sequential", "Functional", "Model"):
        raise ModelFileError(f"{source}: model class {class_name!r} is not a Keras Sequential or Functional "
                             "model (custom models are refused)")
    raw_layers = config if isinstance(config, list) else config.get("layers")  # Keras < 2.2.3: a bare list
    if not isinstance(raw_layers, list) or not raw_layers:
        raise ModelFileError(f"{source}: model_config lists no layers")
    layers: list[KerasLayer] = []
    input_shape = None
    previous = None
    for position, raw in enumerate(raw_layers):
        if not isinstance(raw, dict) or not isinstance(raw.get("config"), dict):
            raise ModelFileError(f"{source}: layer {position} of model_config is malformed")
        layer_class = raw.get("class_name")
        layer_config = raw["config"]
        name = str(raw.get("name") or layer_config.get("name") or f"layer_{position}")
        if layer_class == "Lambda":
            raise ModelFileError(f"{source}: layer {name!r} is a Lambda layer, which holds Python code: refused")
        module = raw.get("module")
        registered = raw.get("registered_name")
        if (module and not str(module).startswith("keras")) or (registered and registered != layer_class):
            raise ModelFileError(f"{source}: layer {name!r} is a custom object ({registered or module}): refused")
        if layer_class not in _KIND:
            raise ModelFileError(f"{source}: layer {name!r} is a {layer_class}, which no seed network uses "
                                 "(custom or unsupported layer): refused")
        kind = _KIND[layer_class]
        shape = layer_config.get("batch_input_shape") or layer_config.get("batch_shape")
        if shape is not None and input_shape is None:
            input_shape = tuple(shape)
        if class_name == "Sequential":
            if kind == "Input" and layers:
                raise ModelFileError(f"{source}: InputLayer {name!r} in the middle of a Sequential model")
            inputs = () if previous is None else (previous,)
            if previous is None and kind != "Input":  # older Keras: no InputLayer, the first layer has the shape
                layers.append(KerasLayer("input", "Input", (), (), {}))
                inputs = ("input",)
        try:
            if class_name != "Sequential":
                inputs = _inbound_names(raw.get("inbound_nodes"), name)
            params = _params(kind, layer_class, layer_config, name)
        except ModelFileError as exc:  # the helpers name the layer; the file is named here
            raise ModelFileError(f"{source}: {exc}") from None
        except (TypeError, ValueError) as exc:  # e.g. a rate of "abc" in a tampered file
            raise ModelFileError(f"{source}: layer {name!r} has a setting that is not a number ({exc})") from None
        layers.append(KerasLayer(name, kind, params, inputs, layer_config))
        previous = name
    if input_shape is None:
        raise ModelFileError(f"{source}: model_config gives no input shape (batch_input_shape)")
    return layers, input_shape


def computation_order(layers: list[KerasLayer], source: str = "model_config") -> list[KerasLayer]:
    """The layers in a canonical order of computation, whatever order the file lists them in.

    A depth-first walk back from the single output; at an ``Add`` the shallower input (the shortcut) is
    walked first, so a residual block reads: batchnorm, activation, shortcut, then the main branch, as in
    :class:`lexactum.models.blocks.ResidualBlock`.
    """
    by_name = {layer.name: layer for layer in layers}
    if len(by_name) != len(layers):
        raise ModelFileError(f"{source}: model_config has two layers with the same name")
    consumed = set()
    for layer in layers:
        for parent in layer.inputs:
            if parent not in by_name:
                raise ModelFileError(f"{source}: layer {layer.name!r} reads {parent!r}, which is not a layer")
            consumed.add(parent)
    for layer in layers:
        if not layer.inputs and layer.kind != "Input":
            raise ModelFileError(f"{source}: layer {layer.name!r} reads no other layer (no inbound_nodes)")
    outputs = [layer.name for layer in layers if layer.name not in consumed]
    inputs = [layer.name for layer in layers if layer.kind == "Input"]
    if len(outputs) != 1 or len(inputs) != 1:
        raise ModelFileError(f"{source}: the model has {len(inputs)} inputs and {len(outputs)} outputs "
                             "(the seed's networks have one of each)")
    depth: dict[str, int] = {}
    for name in _topological(by_name, outputs[0], source, lambda n: by_name[n].inputs):
        parents = by_name[name].inputs
        depth[name] = 1 + max((depth[p] for p in parents), default=-1)

    def ordered_parents(name: str) -> tuple[str, ...]:
        parents = by_name[name].inputs
        if by_name[name].kind == "Add":
            depths = [depth[p] for p in parents]
            if len(set(depths)) != len(depths):
                raise ModelFileError(f"{source}: Add layer {name!r} has inputs of equal depth: cannot tell "
                                     "the shortcut from the main branch")
            parents = tuple(sorted(parents, key=depth.__getitem__))
        return parents

    order = _topological(by_name, outputs[0], source, ordered_parents)
    if len(order) != len(layers):
        unused = sorted(set(by_name) - set(order))
        raise ModelFileError(f"{source}: layers {unused} are not on the path from input to output")
    return [by_name[name] for name in order]


def _topological(by_name: dict, output: str, source: str, parents_of) -> list[str]:
    """Post-order depth-first walk from ``output`` (iterative: deep residual networks have ~200 layers)."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the path being walked, 2 = done
    stack = [(output, iter(parents_of(output)))]
    state[output] = 1
    while stack:
        name, parents = stack[-1]
        parent = next(parents, None)
        if parent is None:
            stack.pop()
            state[name] = 2
            order.append(name)
        elif state.get(parent) == 1:
            raise ModelFileError(f"{source}: the layer graph has a cycle through {parent!r}")
        elif parent not in state:
            state[parent] = 1
            stack.append((parent, iter(parents_of(parent))))
    return order


@dataclass(frozen=True)
class SignatureEntry:
    """What one layer computes and which earlier layers (as offsets back) it reads."""

    kind: str
    params: tuple
    reads: tuple[int, ...]

    def describe(self) -> str:
        settings = ", ".join(f"{k}={_show(v)}" for k, v in self.params)
        reads = "" if self.reads in ((), (1,)) else f" reading {', '.join(f'-{r}' for r in self.reads)}"
        return f"{self.kind}({settings}){reads}"


def _show(value) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def signature(ordered: list[KerasLayer]) -> list[SignatureEntry]:
    """The canonical description of a model: one entry per layer in computation order.

    A batch normalisation's axis is recorded as ``channels`` when it is the last axis of its input
    (Keras writes -1, 3 or [3] for images and 1 or [1] after a dense layer, depending on the version).
    """
    index = {layer.name: i for i, layer in enumerate(ordered)}
    rank: dict[str, int] = {}  # tensor rank, batch included
    entries = []
    for i, layer in enumerate(ordered):
        rank[layer.name] = 4 if not layer.inputs else 2 if layer.kind == "Flatten" else rank[layer.inputs[0]]
        params = layer.params
        if layer.kind == "BatchNormalization":
            axis = dict(params)["axis"]
            last = isinstance(axis, int) and axis % rank[layer.name] == rank[layer.name] - 1
            params = tuple((k, "channels" if k == "axis" and last else v) for k, v in params)
        entries.append(SignatureEntry(layer.kind, params, tuple(i - index[p] for p in layer.inputs)))
    return entries


@functools.cache
def _expected_signatures() -> dict[str, list[SignatureEntry]]:
    result = {}
    for network in SEED_NETWORKS:
        layers, _ = parse_model_config(seed_keras_config(network, 1), network)
        result[network] = signature(computation_order(layers, network))
    return result


def identify_network(ordered: list[KerasLayer], source: str = "model_config") -> str:
    """Which seed network the layers describe; otherwise an error naming the first layer that differs."""
    found = signature(ordered)
    expected = _expected_signatures()
    for network, entries in expected.items():
        if entries == found:
            return network
    closest = max(expected, key=lambda n: SequenceMatcher(None, expected[n], found, autojunk=False).ratio())
    entries = expected[closest]
    index = next(i for i in range(max(len(entries), len(found)))
                 if i >= len(entries) or i >= len(found) or entries[i] != found[i])
    if index >= len(found):
        detail = f"the model ends after layer {index - 1} where {closest} continues with {entries[index].describe()}"
    elif index >= len(entries):
        detail = (f"layer {index} ({ordered[index].name}) is {found[index].describe()} where {closest} "
                  "has already ended")
    else:
        detail = (f"layer {index} ({ordered[index].name}) is {found[index].describe()} where {closest} "
                  f"has {entries[index].describe()}")
    raise ModelFileError(f"{source}: not one of the seed networks ({', '.join(SEED_NETWORKS)}): {detail} "
                         f"(closest: {closest})")


def infer_shapes(ordered: list[KerasLayer], input_shape: tuple) -> dict[str, tuple]:
    """Output shape (without batch) of every layer, in Keras's channels-last order.

    Only for layers :func:`identify_network` has recognised, on the 101x101 input ``load_keras_model`` checks:
    their shapes are then those of a seed network, never empty or mismatched, so nothing is checked here.
    """
    shapes: dict[str, tuple] = {}
    for layer in ordered:
        params = dict(layer.params)
        shape = shapes[layer.inputs[0]] if layer.inputs else tuple(input_shape[1:])
        if layer.kind in ("Conv2D", "MaxPooling2D", "AveragePooling2D"):
            window = params["kernel"] if layer.kind == "Conv2D" else params["pool"]
            size = [output_size(n, k, s, params["padding"])
                    for n, k, s in zip(shape[:2], window, params["strides"], strict=True)]
            shape = (*size, params["filters"] if layer.kind == "Conv2D" else shape[2])
        elif layer.kind == "Flatten":
            shape = (math.prod(shape),)
        elif layer.kind == "Dense":
            shape = (*shape[:-1], params["units"])
        shapes[layer.name] = shape
    return shapes


# --------------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------------

def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _layer_weights(weights_root, layer: KerasLayer, source: str) -> dict[str, Any]:
    """The arrays of one layer by role (kernel, bias, gamma...), found through its ``weight_names``."""
    import numpy as np

    if layer.name not in weights_root:
        raise ModelFileError(f"{source}: no weights for layer {layer.name!r} in the file")
    group = weights_root[layer.name]
    names = [_text(n) for n in group.attrs.get("weight_names", [])]
    arrays = {}
    for weight_name in names:
        role = weight_name.rpartition("/")[2].partition(":")[0]
        if weight_name not in group:
            raise ModelFileError(f"{source}: weight {weight_name!r} of layer {layer.name!r} is missing")
        try:
            arrays[role] = np.asarray(group[weight_name], dtype=np.float32)
        except (TypeError, ValueError, AttributeError):
            raise ModelFileError(f"{source}: weight {weight_name!r} of layer {layer.name!r} is not an array "
                                 "of numbers") from None
    for role in _WEIGHT_ROLES[layer.kind]:
        if role == "bias" and not dict(layer.params).get("use_bias", True):
            continue
        if role not in arrays:
            raise ModelFileError(f"{source}: weight {role!r} of layer {layer.name!r} is missing")
    return arrays


def _torch_layers(model: nn.Module) -> list[nn.Module]:
    """Our Conv2d / Linear / BatchNorm modules in Keras's computation order.

    A :class:`~lexactum.models.blocks.KerasNetwork` registers its modules in that order (in a residual
    block the shortcut right after the first batch norm and ELU, as :func:`computation_order` walks it).
    """
    from torch import nn

    return [module for module in model.modules()
            if isinstance(module, nn.Conv2d | nn.Linear | nn.BatchNorm1d | nn.BatchNorm2d)]


def _check_shape(array, expected: tuple, layer: KerasLayer, role: str, source: str) -> None:
    if tuple(array.shape) != tuple(expected):
        raise ModelFileError(f"{source}: weight {role!r} of layer {layer.name!r} has shape {tuple(array.shape)}, "
                             f"expected {tuple(expected)}")


def _flatten_input(layer: KerasLayer, ordered: list[KerasLayer], shapes: dict) -> tuple | None:
    """The (H, W, C) image a Dense layer sees flattened, if a Flatten feeds it (through dropouts)."""
    by_name = {other.name: other for other in ordered}
    parent = by_name[layer.inputs[0]]
    while parent.kind in ("Dropout", "Activation"):
        parent = by_name[parent.inputs[0]]
    return shapes[parent.inputs[0]] if parent.kind == "Flatten" else None


def _copy_weights(target: nn.Module, layer: KerasLayer, arrays: dict, flatten_input: tuple | None,
                  source: str) -> None:
    """Copy one Keras layer's arrays into ``target``, converting to channels-first layouts."""
    import numpy as np
    import torch
    from torch import nn

    def put(tensor: torch.Tensor, array) -> None:
        tensor.copy_(torch.from_numpy(np.ascontiguousarray(array)))

    if layer.kind == "Conv2D":
        if not isinstance(target, nn.Conv2d):
            raise ModelFileError(f"{source}: layer {layer.name!r} (Conv2D) does not match our {type(target).__name__}")
        out_channels, in_channels, kh, kw = target.weight.shape
        _check_shape(arrays["kernel"], (kh, kw, in_channels, out_channels), layer, "kernel", source)
        put(target.weight, arrays["kernel"].transpose(3, 2, 0, 1))
    elif layer.kind == "Dense":
        if not isinstance(target, nn.Linear):
            raise ModelFileError(f"{source}: layer {layer.name!r} (Dense) does not match our {type(target).__name__}")
        kernel = arrays["kernel"]
        _check_shape(kernel, (target.in_features, target.out_features), layer, "kernel", source)
        if flatten_input is not None and len(flatten_input) == 3:  # rows in (H, W, C) order -> (C, H, W)
            height, width, channels = flatten_input
            kernel = kernel.reshape(height, width, channels, -1).transpose(2, 0, 1, 3).reshape(kernel.shape)
        put(target.weight, kernel.T)
    else:
        if not isinstance(target, nn.BatchNorm1d | nn.BatchNorm2d):
            raise ModelFileError(f"{source}: layer {layer.name!r} (BatchNormalization) does not match our "
                                 f"{type(target).__name__}")
        for role, tensor in (("gamma", target.weight), ("beta", target.bias),
                             ("moving_mean", target.running_mean), ("moving_variance", target.running_var)):
            _check_shape(arrays[role], tuple(tensor.shape), layer, role, source)
            put(tensor, arrays[role])
        try:  # Keras's epsilon, whatever ours defaults to; the momentum in case training continues
            epsilon, momentum = float(layer.config.get("epsilon", 1e-3)), float(layer.config.get("momentum", 0.99))
        except (TypeError, ValueError):
            epsilon = momentum = math.nan
        if not (epsilon > 0 and math.isfinite(epsilon) and 0 <= momentum <= 1):
            raise ModelFileError(f"{source}: layer {layer.name!r} has epsilon {layer.config.get('epsilon')!r} and "
                                 f"momentum {layer.config.get('momentum')!r}: need epsilon > 0, momentum in [0, 1]")
        target.eps, target.momentum = epsilon, 1.0 - momentum
        return
    if target.bias is not None:
        if "bias" not in arrays:
            raise ModelFileError(f"{source}: weight 'bias' of layer {layer.name!r} is missing")
        _check_shape(arrays["bias"], tuple(target.bias.shape), layer, "bias", source)
        put(target.bias, arrays["bias"])


# --------------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------------

def _open_h5(path: Path):
    import h5py

    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ModelFileError(f"{path}: not a readable HDF5 file (corrupt or truncated?): "
                             f"{str(exc).splitlines()[0]}") from None


def read_model_config(handle, source: str) -> dict:
    """The ``model_config`` root attribute as JSON data."""
    if "model_config" not in handle.attrs:
        raise ModelFileError(f"{source}: no model_config attribute: not a Keras model file "
                             "(a weights-only file cannot be imported)")
    try:
        return json.loads(_text(handle.attrs["model_config"]))
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{source}: model_config is not valid JSON ({exc})") from None


def load_keras_model(path: str | os.PathLike) -> nn.Module:
    """The seed network saved in a Keras ``.h5`` file, as our PyTorch network in eval mode.

    The network outputs logits (the Keras sigmoid is applied at scoring time) and carries ``.metadata``:
    network, survey, in_channels, input_size, source, keras_version, normalisation.
    """
    import torch

    from lexactum.data.surveys import SURVEYS
    from lexactum.models import create_model

    path = Path(path)
    source = str(path)
    with _open_h5(path) as handle:
        try:
            model_config = read_model_config(handle, source)
            layers, input_shape = parse_model_config(model_config, source)
            ordered = computation_order(layers, source)
            whole = all(type(n) is int for n in input_shape[1:])  # 101.0 would reach create_model unnamed
            if len(input_shape) != 4 or not whole or tuple(input_shape[1:3]) != (INPUT_SIZE, INPUT_SIZE):
                raise ModelFileError(f"{source}: input shape {tuple(input_shape[1:])} is not "
                                     f"{INPUT_SIZE}x{INPUT_SIZE}xC (the challenge's cutouts)")
            in_channels = input_shape[3]
            surveys = [survey.name for survey in SURVEYS.values() if survey.n_bands == in_channels]
            if not surveys:
                raise ModelFileError(f"{source}: the model takes {in_channels!r} bands; the seed's networks "
                                     "take 1 (space) or 4 (ground)")
            network = identify_network(ordered, source)
            shapes = infer_shapes(ordered, input_shape)
            keras_version = _text(handle.attrs.get("keras_version", "unknown"))
            weights_root = handle["model_weights"] if "model_weights" in handle else handle
            model = create_model(network, in_channels)
            targets = _torch_layers(model)
            weighted = [layer for layer in ordered if layer.kind in _WEIGHT_ROLES]
            if len(targets) != len(weighted):
                raise ModelFileError(f"{source}: {network} has {len(weighted)} layers with weights in the file "
                                     f"but {len(targets)} in our network")
            with torch.no_grad():
                for layer, target in zip(weighted, targets, strict=True):
                    arrays = _layer_weights(weights_root, layer, source)
                    _copy_weights(target, layer, arrays, _flatten_input(layer, ordered, shapes), source)
        except OSError as exc:  # h5py reports unreadable (truncated) data only when it is read
            raise ModelFileError(f"{source}: the file is corrupt or truncated ({str(exc).splitlines()[0]})") from None
    model.eval()
    model.metadata = {
        "network": network,
        "survey": surveys[0],
        "in_channels": in_channels,
        "input_size": INPUT_SIZE,
        "source": source,
        "keras_version": keras_version,
        "normalisation": "zscale",
    }
    return model


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks (seed model files reach hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert_keras_file(source: str | os.PathLike, out: str | os.PathLike | None = None, *,
                       overwrite: bool = False) -> Path:
    """Write the seed's ``.h5`` model as our model file (default: same place, ``.safetensors`` suffix)."""
    from lexactum.models.files import save_model

    source = Path(source)
    if source.suffix.lower() == ".safetensors":  # else: "not a readable HDF5 file (corrupt?)", or the default
        raise ModelFileError(f"{source}: already a .safetensors model file (convert reads the seed's Keras "
                             ".h5 files); use it as it is")  # output name would be the input itself
    out = source.with_suffix(".safetensors") if out is None else Path(out)
    if out.suffix.lower() == ".h5":
        raise ModelFileError(f"{out}: the output is a safetensors file and must not end in .h5")
    if out.exists() and not overwrite:
        raise ModelFileError(f"{out}: already exists (pass --overwrite to replace it)")
    model = load_keras_model(source)
    metadata = {**model.metadata, "source": str(source), "source_sha256": file_sha256(source),
                "converted_from": "keras_h5"}
    save_model(model, out, metadata)
    return out
