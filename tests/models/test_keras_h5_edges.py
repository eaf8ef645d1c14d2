"""Edges of the Keras .h5 import found by the mutation check (issue 13): the configuration we generate is the one
Keras saved, messages naming where a file differs, Keras 3's registered names, settings left at Keras's defaults,
batch-norm momentum at its bounds, layers that differ only in a setting, weight names without a layer prefix, and
HDF5 errors on one line."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from lexactum.errors import ModelFileError
from lexactum.models.keras_h5 import load_keras_model, seed_keras_config

FIXTURES = {"lens_flow_c1": ("lens_flow", 1), "lens_flow_c4": ("lens_flow", 4), "wsi_net_c1": ("wsi_net", 1),
            "lastro_epfl_c1": ("lastro_epfl", 1)}  # file stem -> (network, bands), from keras_fixtures/README.md


@pytest.fixture
def copy_of(keras_fixtures, tmp_path):
    """``copy_of(stem, edit=None)``: a writable copy of a fixture, its model_config passed through ``edit``."""

    def make(stem, edit=None):
        path = tmp_path / f"{stem}.h5"
        shutil.copyfile(keras_fixtures / f"{stem}.h5", path)
        if edit is not None:
            with h5py.File(path, "r+") as handle:
                config = json.loads(handle.attrs["model_config"])
                edit(config)
                handle.attrs["model_config"] = json.dumps(config)
        return path

    return make


def _assert_predicts_like_keras(path, keras_fixtures):
    """The imported model reproduces the scores Keras gave for the fixture's inputs."""
    reference = np.load(keras_fixtures / f"{path.stem}.npz")
    with torch.no_grad():
        logits = load_keras_model(path)(torch.from_numpy(reference["inputs"].transpose(0, 3, 1, 2).copy()))
    np.testing.assert_allclose(torch.sigmoid(logits).double().numpy(), reference["expected"], rtol=0, atol=1e-5)


#: Keras's default of each setting we read (a file may leave a setting out, or Keras may, at its default).
KERAS_DEFAULTS = {
    "Conv2D": {"strides": [1, 1], "padding": "valid", "data_format": "channels_last", "dilation_rate": [1, 1],
               "groups": 1, "activation": "linear", "use_bias": True},
    "Dense": {"activation": "linear", "use_bias": True},
    "BatchNormalization": {"momentum": 0.99, "epsilon": 1e-3, "center": True, "scale": True},
    "MaxPooling2D": {"pool_size": [2, 2], "padding": "valid", "data_format": "channels_last"},
    "AveragePooling2D": {"pool_size": [2, 2], "padding": "valid", "data_format": "channels_last"},
    "Flatten": {"data_format": "channels_last"},
    "ELU": {"alpha": 1.0},
    "ReLU": {"max_value": None, "negative_slope": 0.0, "threshold": 0.0},
}


def _batch_norms(config):
    return [layer["config"] for layer in config["config"]["layers"] if layer["class_name"] == "BatchNormalization"]


# ---- the configuration we write for each seed network ---------------------------------------------------------

@pytest.mark.parametrize("stem", sorted(FIXTURES))
def test_seed_keras_config_is_what_keras_saved(keras_fixtures, stem):
    """Every setting ``seed_keras_config`` writes (batch-norm momentum, graph, input and output layers) is the one
    Keras 2.15 saved in the fixture, up to the session's layer numbering; the synthetic files of the other tests
    stand for real ones only so far."""
    network, bands = FIXTURES[stem]
    with h5py.File(keras_fixtures / f"{stem}.h5", "r") as handle:
        saved = json.loads(handle.attrs["model_config"])
    ours = seed_keras_config(network, bands)
    assert (ours["class_name"], len(ours["config"]["layers"])) == (saved["class_name"], len(saved["config"]["layers"]))
    rename = {theirs["config"]["name"]: mine["config"]["name"]
              for theirs, mine in zip(saved["config"]["layers"], ours["config"]["layers"], strict=True)}
    for theirs, mine in zip(saved["config"]["layers"], ours["config"]["layers"], strict=True):
        assert theirs["class_name"] == mine["class_name"]
        settings = {key: value for key, value in mine["config"].items() if key != "name"}
        if mine["class_name"] == "InputLayer":  # the one key Keras leaves out, which nothing reads
            settings.pop("trainable")
        assert {key: theirs["config"].get(key) for key in settings} == settings, mine["config"]["name"]
        calls = [[[rename[entry[0]], *entry[1:]] for entry in node] for node in theirs.get("inbound_nodes", [])]
        assert calls == mine.get("inbound_nodes", [])
    for key in ("input_layers", "output_layers"):
        assert [[rename[name], *rest] for name, *rest in saved["config"].get(key, [])] == ours["config"].get(key, [])


# ---- messages naming where a file differs ---------------------------------------------------------------------

def test_a_model_cut_short_names_where_it_ends(copy_of):
    """The message gives the last layer the file has and the one the seed network has next (a sequential layer
    reading the one before it needs no 'reading' part)."""
    path = copy_of("lens_flow_c1", lambda config: config["config"]["layers"].pop())
    with pytest.raises(ModelFileError) as error:
        load_keras_model(path)
    assert str(error.value) == (
        f"{path}: not one of the seed networks (cas_swinburne, lastro_epfl, cmu_deeplens, wsi_net, lens_flow, "
        "lens_finder): the model ends after layer 10 where lens_flow continues with "
        "Dense(units=1, activation=sigmoid, use_bias=True) (closest: lens_flow)")


# ---- Keras 3's module and registered_name -----------------------------------------------------------------------

def test_registered_name_equal_to_the_class_is_accepted(copy_of, keras_fixtures):
    """A Keras 3 layer may carry its class name as registered_name: that is a built-in layer, not a custom one."""

    def registered(config):
        for layer in config["config"]["layers"]:
            layer.update(module="keras.layers", registered_name=layer["class_name"])

    _assert_predicts_like_keras(copy_of("lens_flow_c1", registered), keras_fixtures)


@pytest.mark.parametrize(("module", "registered", "shown"), [
    ("keras.layers", "my_package>Conv2D", "my_package>Conv2D"),
    ("keras.layers", "Addons>Conv2D", "Addons>Conv2D"),  # sorts before the class name
    ("my_package.layers", None, "my_package.layers"),
])
def test_a_registered_custom_layer_is_refused(copy_of, module, registered, shown):
    def custom(config):
        config["config"]["layers"][2].update(module=module, registered_name=registered)

    path = copy_of("lens_flow_c1", custom)
    with pytest.raises(ModelFileError, match=f"{path}: layer '.*' is a custom object \\({shown}\\): refused"):
        load_keras_model(path)


# ---- settings and their defaults ------------------------------------------------------------------------------------

@pytest.mark.parametrize("stem", sorted(FIXTURES))
def test_settings_at_keras_defaults_may_be_left_out(copy_of, keras_fixtures, stem):
    """A file without the settings that are at Keras's defaults (pooling strides equal to the pool size
    included) is the same model: we read each missing setting as Keras would."""

    def strip(config):
        for layer in config["config"]["layers"]:
            settings = layer["config"]
            defaults = KERAS_DEFAULTS.get(layer["class_name"], {})
            if "pool_size" in settings and settings.get("strides") == settings["pool_size"]:
                del settings["strides"]
            for key in [key for key, value in defaults.items() if key in settings and settings[key] == value]:
                del settings[key]

    path = copy_of(stem, strip)
    with h5py.File(path, "r") as handle:
        stripped = json.dumps(json.loads(handle.attrs["model_config"]))
    assert '"strides": [1, 1]' not in stripped and '"momentum": 0.99' not in stripped  # the test removes them
    _assert_predicts_like_keras(path, keras_fixtures)
    norms = [m for m in load_keras_model(path).modules() if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d)]
    assert all(m.eps == 1e-3 and m.momentum == pytest.approx(0.01) for m in norms)


@pytest.mark.parametrize(("stem", "kind", "change", "shown"), [
    ("wsi_net_c1", "ELU", {"class_name": "ReLU", "config": {}}, "activation=relu"),
    ("wsi_net_c1", "ELU", {"config": {"alpha": 0.5}}, "activation=elu(alpha=0.5)"),
    ("wsi_net_c1", "ReLU", {"config": {"max_value": 6.0}}, "activation=relu(max_value=6.0"),
    ("lens_flow_c1", "Conv2D", {"config": {"dilation_rate": [2, 2]}}, "dilation=2x2"),
])
def test_a_layer_differing_in_one_setting_is_refused(copy_of, stem, kind, change, shown):
    """Activation layers of another kind or setting, and dilated convolutions, compute something else."""

    def edit(config):
        layer = next(layer for layer in config["config"]["layers"] if layer["class_name"] == kind)
        layer["class_name"] = change.get("class_name", kind)
        layer["config"].update(change["config"])

    path = copy_of(stem, edit)
    with pytest.raises(ModelFileError, match=r"not one of the seed networks .* is (Activation|Conv2D)\(") as error:
        load_keras_model(path)
    assert shown in str(error.value) and f"closest: {stem[:-3]}" in str(error.value)


@pytest.mark.parametrize("momentum", [0.0, 1.0])
def test_batch_norm_momentum_at_its_bounds_is_accepted(copy_of, keras_fixtures, momentum):
    """Keras momentum 1 (statistics frozen) and 0 are valid; ours is 1 - Keras's."""
    path = copy_of("wsi_net_c1", lambda config: [bn.update(momentum=momentum) for bn in _batch_norms(config)])
    _assert_predicts_like_keras(path, keras_fixtures)
    norms = [m for m in load_keras_model(path).modules() if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d)]
    assert norms and {m.momentum for m in norms} == {1.0 - momentum}


@pytest.mark.parametrize("momentum", [1.5, -0.5])
def test_batch_norm_momentum_outside_0_1_is_refused(copy_of, momentum):
    path = copy_of("wsi_net_c1", lambda config: _batch_norms(config)[0].update(momentum=momentum))
    with pytest.raises(ModelFileError, match=f"momentum {momentum}: need epsilon > 0, momentum in \\[0, 1\\]"):
        load_keras_model(path)


# ---- the layer graph ------------------------------------------------------------------------------------------

def test_layers_off_the_path_from_input_to_output_are_refused_naming_them(copy_of):
    """Two layers reading each other, apart from the model: each is read by another, so neither is an output."""

    def add_loop(config):
        for name, reads in (("loop_a", "loop_b"), ("loop_b", "loop_a")):
            config["config"]["layers"].append({"class_name": "Dropout", "name": name, "inbound_nodes": [
                [[reads, 0, 0, {}]]], "config": {"name": name, "rate": 0.1}})

    path = copy_of("wsi_net_c1", add_loop)
    with pytest.raises(ModelFileError) as error:
        load_keras_model(path)
    assert str(error.value) == f"{path}: layers ['loop_a', 'loop_b'] are not on the path from input to output"


def test_an_add_whose_inputs_have_equal_depth_is_refused(copy_of):
    """The shortcut is told from the main branch by depth only: a shortcut convolution moved to the end of the
    main branch makes them equally deep, which no seed network is."""
    path = copy_of("wsi_net_c1", lambda config: next(
        layer for layer in config["config"]["layers"] if layer["name"] == "conv2d_13").update(
        inbound_nodes=[[["elu_5", 0, 0, {}]]]))
    with pytest.raises(ModelFileError) as error:
        load_keras_model(path)
    assert str(error.value) == (f"{path}: Add layer 'add_1' has inputs of equal depth: cannot tell the shortcut "
                                "from the main branch")


@pytest.mark.parametrize("layers", [[], {"conv2d": {}}, "conv2d"])
def test_a_config_without_a_list_of_layers_is_refused(copy_of, layers):
    path = copy_of("lens_flow_c1", lambda config: config["config"].update(layers=layers))
    with pytest.raises(ModelFileError) as error:
        load_keras_model(path)
    assert str(error.value) == f"{path}: model_config lists no layers"


# ---- weight names ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", ["", "sequential/conv/"])
def test_weight_names_are_matched_by_their_last_part(copy_of, keras_fixtures, prefix):
    """A weight is found by the last part of its name (``kernel:0``), with no layer prefix or a longer one."""
    path = copy_of("lens_flow_c1")
    with h5py.File(path, "r+") as handle:
        for group in handle["model_weights"].values():
            old_names = [str(n) for n in group.attrs.get("weight_names", [])]
            new_names = [prefix + old.rsplit("/", 1)[-1] for old in old_names]
            for old, new in zip(old_names, new_names, strict=True):
                group.move(old, new)
            if old_names:
                group.attrs["weight_names"] = new_names
    _assert_predicts_like_keras(path, keras_fixtures)


# ---- HDF5 errors -------------------------------------------------------------------------------------------------

def test_an_hdf5_error_of_several_lines_is_reported_by_its_first(monkeypatch, tmp_path):
    """Errors are one line: of an HDF5 message over several lines, the first (what went wrong) is kept."""

    def refuse(*args, **kwargs):
        raise OSError("Unable to open file (file signature not found)\nHDF5-DIAG: error detected in H5F.c")

    path = tmp_path / "model.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n")
    monkeypatch.setattr(h5py, "File", refuse)
    with pytest.raises(ModelFileError) as error:
        load_keras_model(path)
    assert str(error.value) == (f"{path}: not a readable HDF5 file (corrupt or truncated?): "
                                "Unable to open file (file signature not found)")
