"""Shared fixtures: small generated datasets in the challenge format and the real shared samples."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
SAMPLES = SHARED / "challenge_samples"
KERAS_FIXTURES = SHARED / "keras_fixtures"


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    """No progress bars and no GUI backend in tests; a test that wants the bar removes the variable."""
    monkeypatch.setenv("LEXACTUM_NO_PROGRESS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def torch_flags_kept():
    """A Trainer a test builds switches torch's deterministic mode on for the whole process; switch it back
    (as training itself does) so that no test sees another's setting (in deterministic mode a forked child
    hangs in OpenMP)."""
    import sys

    if "torch" not in sys.modules:  # a test that never imported torch changed nothing
        yield
        return
    from lexactum.training import _torch_flags_restored

    with _torch_flags_restored():
        yield


@pytest.fixture
def toy_model_file():
    """Factory: ``toy_model_file(path, in_channels, seed=0) -> Path`` of a freshly initialised lens_flow."""
    import torch

    from lexactum.models import create_model, save_model

    def make(path, in_channels: int, seed: int = 0):
        torch.manual_seed(seed)
        return save_model(create_model("lens_flow", in_channels=in_channels), path)

    return make


@pytest.fixture
def make_dataset(tmp_path_factory):
    """Factory: ``make_dataset(survey="space", n=40, layout="test", **kw) -> Path`` of a toy dataset."""
    from lexactum.simulate.toy import write_toy_dataset

    def make(survey: str = "space", n: int = 40, layout: str = "test", **kwargs) -> Path:
        root = tmp_path_factory.mktemp(f"{survey}_{layout}")
        return write_toy_dataset(root, survey=survey, n=n, layout=layout, **kwargs)

    return make


@pytest.fixture
def samples() -> Path:
    """The real challenge sample files (skips when ../shared is absent)."""
    if not SAMPLES.is_dir():
        pytest.skip("../shared/challenge_samples is not present")
    return SAMPLES


@pytest.fixture
def keras_fixtures() -> Path:
    if not KERAS_FIXTURES.is_dir():
        pytest.skip("../shared/keras_fixtures is not present")
    return KERAS_FIXTURES
