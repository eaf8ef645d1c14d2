"""Model files' refusals that a mutation check found unpinned: load_model's message for weights that do not
match (up to three names, then '...'), a file's impossible band count, a network saved under a survey with
fewer bands."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import save_file

from lexactum.errors import ModelFileError
from lexactum.models import create_model, load_model, save_model


@pytest.mark.parametrize("n_missing", [3, 4])
def test_missing_and_unexpected_weights_are_named_three_at_most(tmp_path, n_missing):
    weights = create_model("lens_flow").state_dict()
    gone = sorted(weights)[:n_missing]
    tensors = {k: v for k, v in weights.items() if k not in gone}
    tensors.update({f"extra.{k}": torch.zeros(1) for k in range(n_missing)})
    path = tmp_path / "m.safetensors"
    save_file(tensors, str(path), metadata={"network": json.dumps("lens_flow"), "in_channels": json.dumps(1),
                                            "input_size": json.dumps(101)})
    more = " ..." if n_missing > 3 else ""
    expected = (f"{path} does not match network lens_flow: missing {', '.join(gone[:3])}{more}; "
                f"unexpected extra.0, extra.1, extra.2{more} weights")
    with pytest.raises(ModelFileError, match=f"^{re.escape(expected)}$"):
        load_model(path)


@pytest.mark.parametrize("in_channels", [0, "four"])
def test_a_file_declaring_an_impossible_band_count_is_refused_naming_it(tmp_path, in_channels):
    """An in_channels no network can have is a ModelFileError naming the file (one clear line), not the
    registry's bare error without the file."""
    path = tmp_path / "m.safetensors"
    save_file(create_model("lens_flow").state_dict(), str(path),
              metadata={"network": json.dumps("lens_flow"), "in_channels": json.dumps(in_channels)})
    expected = f"{path}: in_channels must be a positive whole number of bands, not {in_channels!r}"
    with pytest.raises(ModelFileError, match=f"^{re.escape(expected)}$"):
        load_model(path)


def test_a_network_with_more_bands_than_its_survey_is_not_saved_as_its_model(tmp_path):
    """A 4-band network saved as a space (1-band) model would be a file no space run can use: refused, and
    nothing is written (the 1-band-as-ground case is in test_files.py)."""
    with pytest.raises(ModelFileError, match=r"4-band network is not a space model \(1 bands\)"):
        save_model(create_model("lens_flow", in_channels=4), tmp_path / "m.safetensors", {"survey": "space"})
    assert not any(tmp_path.iterdir())
