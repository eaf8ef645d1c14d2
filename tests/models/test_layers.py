"""Layer lists: one description per network, from which both the PyTorch module and the Keras config follow."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lexactum.models import create_model, list_models, register_model, registry
from lexactum.models.blocks import KerasNetwork
from lexactum.models.keras_h5 import seed_keras_config
from lexactum.models.layers import Activation, BatchNorm, Conv, Dense, Dropout, Flatten, Group, Pool, Residual
from lexactum.models.lens_flow import LensFlow


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made in a test vanish after it."""
    list_models()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def _keras_layers(config):
    return [(layer["class_name"], layer["config"]) for layer in config["config"]["layers"]]


def test_changing_the_layer_list_changes_network_and_keras_config(monkeypatch):
    """The importer has no second description of a network: edit the list and both sides follow."""
    features, classifier = LensFlow.LAYERS
    edited = Group("classifier", (Flatten(), Dense(64, "elu"), Dropout(0.3), Dense(1, "sigmoid")))
    monkeypatch.setattr(LensFlow, "LAYERS", (features, edited))
    model = create_model("lens_flow")
    assert [type(m) for m in model.classifier] == [nn.Flatten, nn.Linear, nn.ELU, nn.Dropout, nn.Linear]
    assert (model.classifier[1].out_features, model.classifier[3].p) == (64, 0.3)
    keras = _keras_layers(seed_keras_config("lens_flow", 1))
    dense = [config for kind, config in keras if kind == "Dense"]
    assert [(c["units"], c["activation"]) for c in dense] == [(64, "elu"), (1, "sigmoid")]
    assert [c["rate"] for kind, c in keras if kind == "Dropout"] == [0.3]


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Conv(8, 3, "gelu"), "unknown activation 'gelu': choose one of linear, relu, elu, sigmoid"),
    (lambda: Conv(8, 3, padding="full"), "unknown padding 'full': choose one of same, valid"),
    (lambda: Dense(8, "swish"), "unknown activation 'swish'"),
    (lambda: Activation("sigmoid"), "unknown activation layer 'sigmoid': choose one of relu, elu"),
])
def test_unknown_names_in_a_layer_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(("layers", "message"), [
    ((Conv(8, 3, name="conv"), Flatten(), Dense(1, name="fc")), r"must end in Dense\(1, 'sigmoid'\)"),
    ((Flatten(), Dense(4, "sigmoid", name="a"), Dense(1, "sigmoid", name="fc")), "only the output layer"),
])
def test_a_network_must_end_in_the_seed_output_layer(layers, message):
    with pytest.raises(ValueError, match=message):
        type("Broken", (KerasNetwork,), {"LAYERS": layers})


@pytest.mark.parametrize(("layers", "message"), [
    ((Conv(8, 3), Flatten(), Dense(1, "sigmoid", name="fc")), "needs a name"),
    ((Group("g", (Conv(8, 3, name="c"),)), Flatten(), Dense(1, "sigmoid", name="fc")), "numbered, not named"),
    ((Conv(8, 3, name="c"), Residual(16, 32, False, name="r"), Flatten(), Dense(1, "sigmoid", name="fc")),
     "takes 32 channels, gets 8"),
    ((Conv(8, 3, name="c"), Dense(1, "sigmoid", name="fc")), "needs a flat input"),
])
def test_inconsistent_layer_lists_are_refused_when_built(layers, message):
    network = type("Inconsistent", (KerasNetwork,), {"LAYERS": layers})
    with pytest.raises(ValueError, match=message):
        network(in_channels=1)


def test_a_new_network_from_a_layer_list(scratch_registry):
    """A registered layer list is a working network: shapes follow, activations are shown to feature maps."""

    @register_model("tiny_layers_net")
    class Tiny(KerasNetwork):
        LAYERS = (
            Conv(16, 5, "elu", stride=2, name="stem"),  # 101 -> 51
            Residual(16, 32, downsample=True, name="block"),  # -> 26
            Pool(2, average=True, name="pool"),  # -> 13
            Flatten(),
            Dense(5, "relu", name="hidden"), BatchNorm(name="norm"), Activation("elu"),
            Dense(1, "sigmoid", name="out"),
        )

    torch.manual_seed(0)
    model = create_model("tiny_layers_net", in_channels=3).eval()
    assert model.block.shortcut is not None and model.hidden.in_features == 32 * 13 * 13
    assert isinstance(model.norm, nn.BatchNorm1d) and Tiny.ACTIVATION_AFTER == {"stem": "elu"}
    with torch.no_grad():
        model.out.bias.fill_(10.0)
        logits = model(torch.rand(4, 3, 101, 101))
    assert logits.shape == (4,) and (logits > 5).all(), "logits, not sigmoid outputs"
