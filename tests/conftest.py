"""Shared fixtures: small generated datasets in the challenge format and the real shared samples."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
SAMPLES = SHARED / "challenge_samples"
KERAS_FIXTURES = SHARED / "keras_fixtures"


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
