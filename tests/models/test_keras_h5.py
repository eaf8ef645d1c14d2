"""Import of the seed's Keras .h5 files: the real fixtures, synthetic files of all six networks checked
against an independent numpy forward pass, and every way a file can be refused."""

from __future__ import annotations

import hashlib
import json
import shutil

import h5py
import numpy as np
import pytest
import torch
from network_spec import SPEC_KERAS_TOTALS
from numpy.lib.stride_tricks import sliding_window_view

from lexactum.errors import ModelFileError
from lexactum.models.keras_h5 import SEED_NETWORKS, convert_keras_file, load_keras_model, seed_keras_config

FIXTURES = {  # file stem -> (network, bands), from keras_fixtures/README.md
    "lens_flow_c1": ("lens_flow", 1),
    "lens_flow_c4": ("lens_flow", 4),
    "wsi_net_c1": ("wsi_net", 1),
    "lastro_epfl_c1": ("lastro_epfl", 1),
}
WEIGHT_ROLES = {"Conv2D": ("kernel", "bias"), "Dense": ("kernel", "bias"),
                "BatchNormalization": ("gamma", "beta", "moving_mean", "moving_variance")}


# ---- an independent numpy implementation of the Keras layers (channels-last, float64) ------------------

def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _windows(x, size, strides, padding, value=0.0):
    if padding == "same":
        pads = [_same_padding(x.shape[axis], size[axis - 1], strides[axis - 1]) for axis in (1, 2)]
        x = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=value)
    return sliding_window_view(x, tuple(size), axis=(1, 2))[:, ::strides[0], ::strides[1]]  # N,H,W,C,kh,kw


def _activate(x, name, alpha=1.0):
    if name == "relu":
        return np.maximum(x, 0)
    if name == "elu":
        return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))
    if name == "sigmoid":
        return 1 / (1 + np.exp(-x))
    assert name == "linear", name
    return x


def _random_weights(rng, kind, config, x):
    """Weights of one layer with spreads that keep activations of order 1 (so outputs are not saturated).

    Batch-norm statistics are near those of the layer's input ``x``, as after training.
    """
    in_channels = x.shape[-1]
    if kind == "Conv2D":
        kh, kw = config["kernel_size"]
        shape = (kh, kw, in_channels, config["filters"])
        return {"kernel": rng.normal(0, (kh * kw * in_channels) ** -0.5, shape),
                "bias": rng.normal(0, 0.1, config["filters"])}
    if kind == "Dense":
        return {"kernel": rng.normal(0, in_channels ** -0.5, (in_channels, config["units"])),
                "bias": rng.normal(0, 0.1, config["units"])}
    axes = tuple(range(x.ndim - 1))
    return {"gamma": rng.uniform(0.5, 1.5, in_channels), "beta": rng.normal(0, 0.2, in_channels),
            "moving_mean": x.mean(axis=axes) + rng.normal(0, 0.1, in_channels) * x.std(axis=axes),
            "moving_variance": x.var(axis=axes) * rng.uniform(0.5, 2.0, in_channels) + 1e-3}


def keras_reference(model_config, weights, inputs, rng=None):
    """Evaluate a Keras model_config on channels-last ``inputs``: returns the output layer's pre-activation.

    Weights missing from ``weights`` are drawn from ``rng`` (as float32) and added to it.
    """
    layers = model_config["config"]["layers"]
    functional = model_config["class_name"] != "Sequential"
    names = [layer["config"]["name"] for layer in layers]
    by_name = dict(zip(names, layers, strict=True))
    parents = {}
    for position, layer in enumerate(layers):
        if functional:
            nodes = layer["inbound_nodes"]
            parents[names[position]] = [entry[0] for entry in nodes[0]] if nodes else []
        else:
            parents[names[position]] = [names[position - 1]] if position else []
    output = names[-1]
    values = {}

    def value(name):
        if name not in values:
            values[name] = compute(name, [value(p) for p in parents[name]])
        return values[name]

    def compute(name, xs):
        layer = by_name[name]
        kind, config = layer["class_name"], layer["config"]
        x = xs[0] if xs else inputs
        if kind in WEIGHT_ROLES and name not in weights:
            drawn = _random_weights(rng, kind, config, x)
            weights[name] = {role: array.astype(np.float32) for role, array in drawn.items()}
        w = {role: array.astype(np.float64) for role, array in weights.get(name, {}).items()}
        if kind == "InputLayer":
            return inputs
        if kind == "Conv2D":
            win = _windows(x, config["kernel_size"], config["strides"], config["padding"])
            z = np.tensordot(win, w["kernel"], axes=([3, 4, 5], [2, 0, 1])) + w["bias"]
            return _activate(z, config["activation"])
        if kind == "Dense":
            z = x @ w["kernel"] + w["bias"]
            return z if name == output else _activate(z, config["activation"])
        if kind == "BatchNormalization":
            scale = w["gamma"] / np.sqrt(w["moving_variance"] + config["epsilon"])
            return (x - w["moving_mean"]) * scale + w["beta"]
        if kind in ("MaxPooling2D", "AveragePooling2D"):
            win = _windows(x, config["pool_size"], config["strides"], config["padding"])
            return win.max(axis=(-2, -1)) if kind == "MaxPooling2D" else win.mean(axis=(-2, -1))
        if kind == "Flatten":
            return x.reshape(len(x), -1)
        if kind == "Dropout":
            return x
        if kind == "ELU":
            return _activate(x, "elu", config["alpha"])
        if kind == "ReLU":
            return _activate(x, "relu")
        if kind == "Add":
            return sum(xs)
        raise AssertionError(f"reference has no {kind}")

    return value(output)[:, 0]


# ---- writing .h5 files laid out like the real fixtures ---------------------------------------------------

def write_keras_h5(path, model_config, weights, keras_version="2.15.0"):
    """A Keras 2 ``model.save`` file: root attrs, model_weights/<layer>/<layer>/<role>:0 and weight_names."""
    layers = model_config["config"]["layers"]
    functional = model_config["class_name"] != "Sequential"
    layer_names = [layer["config"]["name"] for layer in layers
                   if functional or layer["class_name"] != "InputLayer"]
    with h5py.File(path, "w") as handle:
        handle.attrs["backend"] = "tensorflow"
        handle.attrs["keras_version"] = keras_version
        handle.attrs["model_config"] = json.dumps(model_config)
        group = handle.create_group("model_weights")
        group.attrs["backend"] = "tensorflow"
        group.attrs["keras_version"] = keras_version
        group.attrs["layer_names"] = layer_names
        for layer_name in [*layer_names, "top_level_model_weights"]:
            layer_group = group.create_group(layer_name)
            arrays = weights.get(layer_name, {})
            if not arrays:
                layer_group.attrs["weight_names"] = np.array([], dtype=np.float64)
                continue
            weight_names = [f"{layer_name}/{role}:0" for role in arrays]
            layer_group.attrs["weight_names"] = weight_names
            for weight_name, array in zip(weight_names, arrays.values(), strict=True):
                layer_group.create_dataset(weight_name, data=array)


def _renamed(model_config, suffix):
    """The same model with every layer renamed, as another Keras session would number them."""
    model_config = json.loads(json.dumps(model_config))
    body = model_config["config"]
    new = {layer["config"]["name"]: f"{layer['config']['name']}_{suffix}" for layer in body["layers"]}
    for layer in body["layers"]:
        layer["config"]["name"] = new[layer["config"]["name"]]
        if "name" in layer:
            layer["name"] = new[layer["name"]]
        for node in layer.get("inbound_nodes", []):
            for entry in node:
                entry[0] = new[entry[0]]
    for entry in body.get("input_layers", []) + body.get("output_layers", []):
        entry[0] = new[entry[0]]
    return model_config


def _test_images(rng, count, bands):
    """Noise plus a bright blob at a different place in each image, so that where things are matters."""
    rows, cols = np.mgrid[:101, :101]
    images = rng.uniform(0, 0.3, (count, 101, 101, bands))
    for image in images:
        row, col, width = rng.uniform(20, 80), rng.uniform(20, 80), rng.uniform(3, 15)
        blob = np.exp(-((rows - row) ** 2 + (cols - col) ** 2) / (2 * width**2))
        image += blob[..., None] * rng.uniform(0.3, 1.0, bands)
    return images.astype(np.float32)


def _predict(model, inputs_last):
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(inputs_last.transpose(0, 3, 1, 2)))).double().numpy()


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.fixture
def fixture_copy(keras_fixtures, tmp_path):
    """``fixture_copy(stem)``: a writable copy of a fixture .h5 in tmp_path."""

    def make(stem):
        target = tmp_path / f"{stem}.h5"
        shutil.copyfile(keras_fixtures / f"{stem}.h5", target)
        return target

    return make


def _rewrite_config(path, edit):
    with h5py.File(path, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        edit(config)
        handle.attrs["model_config"] = json.dumps(config)


def _layer(config, name):
    return next(layer for layer in config["config"]["layers"] if layer["config"]["name"] == name)


# ---- the real fixtures -----------------------------------------------------------------------------------

@pytest.mark.parametrize("stem", sorted(FIXTURES))
def test_fixture_reproduces_keras_outputs(keras_fixtures, stem):
    network, bands = FIXTURES[stem]
    model = load_keras_model(keras_fixtures / f"{stem}.h5")
    reference = np.load(keras_fixtures / f"{stem}.npz")
    scores = _sigmoid(_predict(model, reference["inputs"]))
    np.testing.assert_allclose(scores, reference["expected"], rtol=0, atol=1e-5)
    assert not model.training
    assert model.metadata == {
        "network": network, "survey": {1: "space", 4: "ground"}[bands], "in_channels": bands,
        "input_size": 101, "source": str(keras_fixtures / f"{stem}.h5"), "keras_version": "2.15.0",
        "normalisation": "zscale",
    }


def test_fixture_comparison_detects_a_wrong_flatten_order(fixture_copy, keras_fixtures):
    """Negative control: dense rows taken in channels-first order (the classic import bug) are caught."""
    path = fixture_copy("lens_flow_c4")
    with h5py.File(path, "r+") as handle:
        kernel = handle["model_weights/dense_4/dense_4/kernel:0"]
        kernel[...] = kernel[...].reshape(36, 4, 4, 128).transpose(1, 2, 0, 3).reshape(576, 128)
    reference = np.load(keras_fixtures / "lens_flow_c4.npz")
    scores = _sigmoid(_predict(load_keras_model(path), reference["inputs"]))
    assert np.abs(scores - reference["expected"]).max() > 1e-4


def test_functional_layers_in_any_listed_order(fixture_copy, keras_fixtures):
    """The listed order of a Functional model means nothing: shuffled, the graph still decides."""
    path = fixture_copy("wsi_net_c1")
    _rewrite_config(path, lambda config: np.random.default_rng(3).shuffle(config["config"]["layers"]))
    reference = np.load(keras_fixtures / "wsi_net_c1.npz")
    scores = _sigmoid(_predict(load_keras_model(path), reference["inputs"]))
    np.testing.assert_allclose(scores, reference["expected"], rtol=0, atol=1e-5)


def test_older_keras_layouts(fixture_copy, keras_fixtures):
    """Keras 2.0-2.2 files: class 'Model', axis -1, a bare layer list for Sequential, names as bytes."""
    wsi = fixture_copy("wsi_net_c1")
    flow = fixture_copy("lens_flow_c4")

    def as_model(config):
        config["class_name"] = "Model"
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "BatchNormalization":
                layer["config"]["axis"] = -1

    def as_bare_list(config):
        layers = [layer for layer in config["config"]["layers"] if layer["class_name"] != "InputLayer"]
        config["config"] = layers

    _rewrite_config(wsi, as_model)
    _rewrite_config(flow, as_bare_list)
    for path in (wsi, flow):
        with h5py.File(path, "r+") as handle:
            handle.attrs["keras_version"] = np.bytes_("2.2.4")
            for group in handle["model_weights"].values():
                names = [n.encode() for n in group.attrs["weight_names"]]
                if names:
                    group.attrs["weight_names"] = np.array(names, dtype="S")
        reference = np.load(keras_fixtures / f"{path.stem}.npz")
        model = load_keras_model(path)
        np.testing.assert_allclose(_sigmoid(_predict(model, reference["inputs"])), reference["expected"], atol=1e-5)
        assert model.metadata["keras_version"] == "2.2.4"


def test_keras3_layout(fixture_copy, keras_fixtures):
    """Keras 3 writes layer calls as ``{"args": [...keras_history...]}``, dtypes as policies, ``batch_shape``
    and weight paths without ``:0``; a residual network (Add layers) needs the calls to be read right."""
    path = fixture_copy("wsi_net_c1")

    def call_of(node):
        tensors = [{"class_name": "__keras_tensor__",
                    "config": {"shape": None, "dtype": "float32", "keras_history": [name, index, tensor]}}
                   for name, index, tensor, _ in node]
        return {"args": [tensors] if len(tensors) > 1 else tensors, "kwargs": {}}

    def as_keras3(config):
        for layer in config["config"]["layers"]:
            layer.update(module="keras.layers", registered_name=None)
            layer["inbound_nodes"] = [call_of(node) for node in layer["inbound_nodes"]]
            settings = layer["config"]
            settings["dtype"] = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
                                 "registered_name": None}
            if layer["class_name"] == "InputLayer":
                settings["batch_shape"] = settings.pop("batch_input_shape")
            if layer["class_name"] == "BatchNormalization":
                settings["axis"] = -1

    _rewrite_config(path, as_keras3)
    with h5py.File(path, "r+") as handle:
        handle.attrs["keras_version"] = "3.6.0"
        for group in handle["model_weights"].values():
            old_names = [str(n) for n in group.attrs.get("weight_names", [])]
            for old in old_names:
                group.move(old, old.split(":")[0])
            if old_names:
                group.attrs["weight_names"] = [old.split(":")[0] for old in old_names]
        assert "add" in handle["model_weights"]  # the fixture is residual: Add layers are read from the calls
    reference = np.load(keras_fixtures / "wsi_net_c1.npz")
    model = load_keras_model(path)
    assert model.metadata["keras_version"] == "3.6.0"
    np.testing.assert_allclose(_sigmoid(_predict(model, reference["inputs"])), reference["expected"], atol=1e-5)


# ---- synthetic files of every network, checked against the numpy reference --------------------------------

@pytest.mark.parametrize("bands", [1, 4])
@pytest.mark.parametrize("network", SEED_NETWORKS)
def test_synthetic_network_matches_numpy_reference(tmp_path, network, bands):
    """Every network, space (1 band) and ground (4 bands), against the numpy reference."""
    rng = np.random.default_rng(sum(map(ord, network)) + bands)
    model_config = _renamed(seed_keras_config(network, bands), "7")
    inputs = _test_images(rng, 2, bands)
    weights = {}
    logits_ref = keras_reference(model_config, weights, inputs.astype(np.float64), rng)
    n_parameters = sum(array.size for arrays in weights.values() for array in arrays.values())
    assert n_parameters == SPEC_KERAS_TOTALS[network][bands == 4]

    path = tmp_path / f"{network}_{bands}.h5"
    write_keras_h5(path, model_config, weights)
    model = load_keras_model(path)
    assert (model.metadata["network"], model.metadata["in_channels"]) == (network, bands)
    logits = _predict(model, inputs)
    assert np.ptp(logits_ref) > 1e-3, "the test images must give clearly different outputs"
    np.testing.assert_allclose(logits, logits_ref, rtol=0, atol=1e-4 * max(1.0, np.abs(logits_ref).max()))
    np.testing.assert_allclose(_sigmoid(logits), _sigmoid(logits_ref), rtol=0, atol=1e-5)


@pytest.mark.parametrize("network", SEED_NETWORKS)
def test_every_parameter_is_imported_from_exactly_one_keras_array(tmp_path, network):
    """The importer pairs the file's arrays with our modules so that each weight and batch-norm statistic
    of the network is filled, from one array, and no array is used twice or left out."""
    rng = np.random.default_rng(0)
    model_config = seed_keras_config(network, 1)
    weights = {}
    keras_reference(model_config, weights, _test_images(rng, 1, 1).astype(np.float64), rng)  # draws them all
    arrays = [(layer, role) for layer, roles in weights.items() for role in roles]
    for number, (layer, role) in enumerate(arrays):  # each array holds its number (+0.5: no default value)
        weights[layer][role] = np.full_like(weights[layer][role], number + 0.5)
    path = tmp_path / "numbered.h5"
    write_keras_h5(path, model_config, weights)
    sources = []
    for key, tensor in load_keras_model(path).state_dict().items():
        if not key.endswith("num_batches_tracked"):
            values = torch.unique(tensor)
            assert len(values) == 1, f"{key} is not filled from one array"
            sources.append(float(values[0]) - 0.5)
    assert sorted(sources) == list(range(len(arrays)))


def test_unknown_seed_network_name():
    with pytest.raises(ModelFileError, match="unknown seed network 'resnet'"):
        seed_keras_config("resnet", 1)


# ---- refusals ---------------------------------------------------------------------------------------------

def test_missing_weight_names_the_layer(fixture_copy):
    path = fixture_copy("lens_flow_c1")
    with h5py.File(path, "r+") as handle:
        del handle["model_weights/conv2d_4/conv2d_4/bias:0"]
    with pytest.raises(ModelFileError, match=r"bias:0.*'conv2d_4' is missing"):
        load_keras_model(path)


def test_missing_weight_listed_nowhere_names_the_layer(fixture_copy):
    path = fixture_copy("lens_flow_c1")
    with h5py.File(path, "r+") as handle:
        group = handle["model_weights/conv2d_5"]
        group.attrs["weight_names"] = ["conv2d_5/kernel:0"]
    with pytest.raises(ModelFileError, match="'bias' of layer 'conv2d_5' is missing"):
        load_keras_model(path)


def test_missing_layer_group_names_the_layer(fixture_copy):
    path = fixture_copy("lens_flow_c1")
    with h5py.File(path, "r+") as handle:
        del handle["model_weights/dense_3"]
    with pytest.raises(ModelFileError, match="no weights for layer 'dense_3'"):
        load_keras_model(path)


def test_weight_of_wrong_shape_is_refused(fixture_copy):
    path = fixture_copy("lens_flow_c1")
    with h5py.File(path, "r+") as handle:
        del handle["model_weights/dense_2/dense_2/bias:0"]
        handle["model_weights/dense_2/dense_2"].create_dataset("bias:0", data=np.zeros(127, np.float32))
    with pytest.raises(ModelFileError, match=r"'bias' of layer 'dense_2' has shape \(127,\), expected \(128,\)"):
        load_keras_model(path)


@pytest.mark.parametrize(("stem", "layer", "key", "value", "shown"), [
    ("lens_flow_c1", "conv2d_4", "filters", 26, "filters=26"),
    ("wsi_net_c1", "conv2d_17", "kernel_size", [3, 3], "kernel=3x3"),
    ("lastro_epfl_c1", "dropout_6", "rate", 0.3, "rate=0.3"),
])
def test_changed_layer_is_refused_naming_it(fixture_copy, stem, layer, key, value, shown):
    path = fixture_copy(stem)
    _rewrite_config(path, lambda config: _layer(config, layer)["config"].update({key: value}))
    network = FIXTURES[stem][0]
    with pytest.raises(ModelFileError) as error:
        load_keras_model(path)
    message = str(error.value)
    assert f"({layer}) is " in message and shown in message and f"closest: {network}" in message
    assert "\n" not in message


@pytest.mark.parametrize(("stem", "kind", "key", "value", "message"), [
    ("lens_flow_c1", "Dropout", "rate", "abc", "has a setting that is not a number"),
    ("wsi_net_c1", "BatchNormalization", "epsilon", -1e-3, "need epsilon > 0"),
    ("wsi_net_c1", "BatchNormalization", "momentum", "x", "need epsilon > 0, momentum in \\[0, 1\\]"),
    ("wsi_net_c1", "Add", "inbound_nodes", "abc", "is not a list of layer calls"),
])
def test_tampered_settings_are_refused_naming_the_file(fixture_copy, stem, kind, key, value, message):
    path = fixture_copy(stem)

    def tamper(config):
        layer = next(layer for layer in config["config"]["layers"] if layer["class_name"] == kind)
        (layer if key == "inbound_nodes" else layer["config"])[key] = value

    _rewrite_config(path, tamper)
    with pytest.raises(ModelFileError, match=message) as info:
        load_keras_model(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_rewired_shortcut_is_refused(fixture_copy):
    """Same layers, different graph: the downsampling shortcut reading the block's input instead."""
    path = fixture_copy("wsi_net_c1")
    _rewrite_config(path, lambda config: _layer(config, "conv2d_13").update(
        inbound_nodes=[[["add", 0, 0, {}]]]))
    with pytest.raises(ModelFileError, match="not one of the seed networks.*closest: wsi_net"):
        load_keras_model(path)


def test_missing_layer_in_config_is_refused(fixture_copy):
    path = fixture_copy("lens_flow_c1")
    _rewrite_config(path, lambda config: config["config"]["layers"].pop(3))  # the first max-pool
    with pytest.raises(ModelFileError, match=r"layer 3 \(conv2d_4\) is Conv2D.*where lens_flow .*MaxPooling2D"):
        load_keras_model(path)


@pytest.mark.parametrize(("edit", "pattern"), [
    (lambda layers: layers.insert(2, {"class_name": "Lambda", "config": {
        "name": "lambda", "function": ["4wEAAAAAAAAA", None, None], "function_type": "lambda"}}),
     "'lambda' is a Lambda layer.*refused"),
    (lambda layers: layers.insert(2, {"class_name": "MyScaling", "config": {"name": "my_scaling"}}),
     "'my_scaling' is a MyScaling.*refused"),
    (lambda layers: layers[2]["config"].update(activation="my_activation"),
     "activation 'my_activation'.*custom objects are refused"),
    (lambda layers: layers[2]["config"].update(activation={"class_name": "Swishy", "config": {}}),
     "custom objects are refused"),
])
def test_code_and_custom_objects_are_refused(fixture_copy, edit, pattern):
    path = fixture_copy("lens_flow_c1")
    _rewrite_config(path, lambda config: edit(config["config"]["layers"]))
    with pytest.raises(ModelFileError, match=pattern):
        load_keras_model(path)


def test_band_count_and_size_are_checked(fixture_copy):
    path = fixture_copy("lens_flow_c1")

    def shape(value):
        def edit(config):
            for layer in config["config"]["layers"][:2]:
                layer["config"]["batch_input_shape"] = value
        return edit

    _rewrite_config(path, shape([None, 101, 101, 3]))
    with pytest.raises(ModelFileError, match="takes 3 bands"):
        load_keras_model(path)
    _rewrite_config(path, shape([None, 64, 64, 1]))
    with pytest.raises(ModelFileError, match=r"input shape \(64, 64, 1\) is not 101x101xC"):
        load_keras_model(path)
    _rewrite_config(path, shape([None, 101.0, 101.0, 1.0]))  # a hand-edited file: sizes must be whole numbers
    with pytest.raises(ModelFileError, match=rf"{path.name}: input shape \(101.0, 101.0, 1.0\) is not 101x101xC"):
        load_keras_model(path)


def test_not_hdf5_is_refused(tmp_path):
    path = tmp_path / "model.h5"
    path.write_text("this is not a model\n")
    with pytest.raises(ModelFileError, match=f"{path}: not a readable HDF5 file"):
        load_keras_model(path)


@pytest.mark.parametrize("fraction", [0.5, 0.98])
def test_truncated_file_is_refused(keras_fixtures, tmp_path, fraction):
    data = (keras_fixtures / "lens_flow_c1.h5").read_bytes()
    path = tmp_path / "truncated.h5"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ModelFileError, match=str(path)):
        load_keras_model(path)


def test_missing_file_and_weights_only_file_are_refused(fixture_copy, tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        load_keras_model(tmp_path / "absent.h5")
    path = fixture_copy("lens_flow_c1")
    with h5py.File(path, "r+") as handle:
        del handle.attrs["model_config"]
    with pytest.raises(ModelFileError, match="no model_config"):
        load_keras_model(path)


# ---- conversion to our model file -------------------------------------------------------------------------

def test_converted_file_predicts_like_the_h5(fixture_copy, keras_fixtures, tmp_path):
    from lexactum.models import files

    source = fixture_copy("lens_flow_c4")
    out = convert_keras_file(source)
    assert out == source.with_suffix(".safetensors")
    inputs = np.load(keras_fixtures / "lens_flow_c4.npz")["inputs"]
    converted = files.load_model(out)
    np.testing.assert_array_equal(_predict(converted, inputs), _predict(load_keras_model(source), inputs))
    metadata = converted.metadata
    assert metadata["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert (metadata["source"], metadata["keras_version"]) == (str(source), "2.15.0")
    assert (metadata["network"], metadata["survey"], metadata["in_channels"]) == ("lens_flow", "ground", 4)
    with pytest.raises(ModelFileError, match="already exists"):
        convert_keras_file(source)
    assert convert_keras_file(source, tmp_path / "other.safetensors", overwrite=False).is_file()
    with pytest.raises(ModelFileError, match="must not end in .h5"):
        convert_keras_file(source, tmp_path / "copy.h5")
    via_load_model = files.load_model(source, survey="ground")  # .h5 paths are handed to load_keras_model
    np.testing.assert_array_equal(_predict(via_load_model, inputs), _predict(converted, inputs))

