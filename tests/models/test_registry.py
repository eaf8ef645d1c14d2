"""The model registry and ``lexactum models``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from lexactum.cli import main
from lexactum.errors import LexactumError
from lexactum.models import create_model, list_models, register_model, registry

SEED_NETWORKS = set(registry.BUILTIN_MODULES)  # the one list of the built-in networks' names


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made in a test vanish after it."""
    list_models()  # built-ins first, so the copy holds them
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_list_models_gives_the_seed_networks_sorted():
    names = list_models()
    assert set(names) == SEED_NETWORKS
    assert names == sorted(names)


@pytest.mark.parametrize("lookup", [create_model, registry.get_entry])
def test_unknown_name_lists_the_valid_ones(lookup):
    with pytest.raises(LexactumError) as caught:
        lookup("alexnet")
    message = str(caught.value)
    assert "'alexnet'" in message and "\n" not in message
    assert all(name in message for name in SEED_NETWORKS)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "4", True, None])
def test_bad_band_count_is_refused(bad):
    with pytest.raises(LexactumError, match="in_channels"):
        create_model("lens_flow", in_channels=bad)


def test_numpy_integer_band_count_is_accepted():
    np = pytest.importorskip("numpy")
    model = create_model("lens_flow", in_channels=np.int64(4))
    assert model.in_channels == 4 and type(model.in_channels) is int


def test_register_a_class_and_a_factory(scratch_registry):
    @register_model("tiny_test_net", reference="test")
    class Tiny(nn.Module):
        def __init__(self, in_channels=1, width=3):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, width, 3)

    @register_model("tiny_factory")
    def tiny_factory(in_channels=1):
        return nn.Sequential(nn.Conv2d(in_channels, 2, 1))

    assert {"tiny_test_net", "tiny_factory"} <= set(list_models())
    model = create_model("tiny_test_net", in_channels=4, width=5)
    assert isinstance(model, Tiny) and model.conv.in_channels == 4 and model.conv.out_channels == 5
    assert model.name == "tiny_test_net" and model.in_channels == 4
    built = create_model("tiny_factory", in_channels=2)
    assert built.name == "tiny_factory" and built[0].in_channels == 2
    assert registry.get_entry("tiny_test_net").reference == "test"


def test_a_taken_name_is_refused(scratch_registry):
    with pytest.raises(LexactumError, match="lens_flow.*already registered"):
        @register_model("lens_flow")
        def other(in_channels=1):
            return nn.Identity()


def test_importing_the_package_does_not_load_torch():
    code = "import sys, lexactum.models as m; print('torch' in sys.modules, len(m.registry._REGISTRY))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = result.stdout.split()
    assert out == ["False", "0"]


def test_models_command_json(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["name"] for row in rows} == SEED_NETWORKS
    for row in rows:
        for bands, key in ((1, "parameters_1_band"), (4, "parameters_4_bands")):
            with torch.device("meta"):
                model = create_model(row["name"], in_channels=bands)
            assert row[key] == sum(p.numel() for p in model.parameters())
        assert row["reference"]


def test_models_command_table(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[0] == "network" and len(lines) == 1 + len(SEED_NETWORKS)
    lens_flow = next(line for line in lines if line.startswith("lens_flow "))
    assert "98,862" in lens_flow and "100,062" in lens_flow and "Pourrahmani" in lens_flow
