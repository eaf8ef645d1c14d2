"""load_model's message for weights that do not match: up to three names, then '...' (a mutation check found
the cut unpinned)."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import save_file

from lexactum.errors import ModelFileError
from lexactum.models import create_model, load_model


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
