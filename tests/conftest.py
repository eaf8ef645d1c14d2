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
    from lexactum.training.trainer import _torch_flags_restored

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


# ---------------------------------------------------------------------------------- full and read-only disks
def _mount(*argv: str) -> None:
    """Run ``mount``/``umount``; skip the test (with the reason) where this machine refuses mounting."""
    import shutil
    import subprocess

    if shutil.which(argv[0]) is None:
        pytest.skip(f"no {argv[0]} command on this machine")
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"'{' '.join(argv)}' refused here: {done.stderr.strip() or done.returncode}")


class SmallDisk:
    """A folder on its own small tmpfs: ``fill()`` takes every free byte (a disk full), ``free()`` gives it back."""

    def __init__(self, root: Path):
        self.root = root
        self.filler = root / ".filler"

    def fill(self, leave: int = 0) -> None:
        """Take every free byte but about ``leave`` (so that a run can write a little, then finds it full)."""
        import errno
        import os

        with open(self.filler, "ab", buffering=0) as fh:
            for size in (1 << 16, 1 << 12, 1 << 9, 1):
                try:
                    while True:
                        fh.write(b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
        if leave:
            os.truncate(self.filler, max(0, self.filler.stat().st_size - leave))

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def small_disk(tmp_path):
    """Factory: ``small_disk(size="1m") -> SmallDisk`` mounted under ``tmp_path`` (needs root; skips otherwise,
    with the reason: each such test has a simulated-ENOSPC twin that runs everywhere)."""
    import subprocess

    mounted = []

    def make(size: str = "1m") -> SmallDisk:
        root = tmp_path / f"disk{len(mounted)}"
        root.mkdir()
        _mount("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(root))
        mounted.append(root)
        return SmallDisk(root)

    yield make
    for root in reversed(mounted):
        subprocess.run(["umount", "-l", str(root)], capture_output=True)


@pytest.fixture
def read_only(tmp_path):
    """Factory: ``read_only(folder)`` makes an existing folder read-only for the rest of the test (a read-only
    bind mount: chmod does not stop root); skips where mounting is refused."""
    import subprocess

    mounted = []

    def make(folder: Path) -> Path:
        _mount("mount", "--bind", str(folder), str(folder))
        mounted.append(folder)
        _mount("mount", "-o", "remount,bind,ro", str(folder))
        probe = folder / ".probe"
        try:
            probe.touch()
        except OSError:
            return folder
        probe.unlink()
        pytest.skip(f"{folder} is still writable after a read-only remount")

    yield make
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
