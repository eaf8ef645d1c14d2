"""``lexactum augment-preview``: writes a PNG grid of originals above augmented copies."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from lexactum.cli import main
from lexactum.cli.augment import preview_layout
from lexactum.evaluation.plots import image_grid


def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG's header; fails if the file is not a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("survey, n, columns, rows", [("space", 4, 4, 2), ("ground", 11, 6, 4)])
def test_preview_writes_a_png_grid_with_two_rows_per_set(make_dataset, tmp_path, capsys, survey, n, columns, rows):
    dataset = make_dataset(survey, n=12, layout="train")
    out = tmp_path / "new" / "folder" / "grid.png"
    assert main(["augment-preview", str(dataset), "--out", str(out), "--n", str(n), "--seed", "3"]) == 0
    assert preview_layout(n) == (columns, rows // 2)
    # Same pixel size as the shared grid helper gives a titled grid of `rows` x `columns` images.
    reference = image_grid(np.zeros((rows * columns, 1, 101, 101)), tmp_path / "reference.png",
                           titles=["100000"] * (rows * columns), ncols=columns)
    width, height = png_size(out)
    assert (width, height) == png_size(reference)
    assert width / height == pytest.approx(columns / rows, rel=0.2)  # cells are about square
    assert [p.name for p in out.parent.iterdir()] == ["grid.png"]  # no temporary file left behind
    assert str(out) in capsys.readouterr().out


def test_same_seed_same_picture_other_seed_other_picture(make_dataset, tmp_path):
    dataset = make_dataset("space", n=3, layout="test")
    pictures = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        out = tmp_path / f"{name}.png"
        assert main(["augment-preview", str(dataset), "--out", str(out), "--n", "3", "--seed", str(seed)]) == 0
        pictures.append(out.read_bytes())
    assert pictures[0] == pictures[1] and pictures[0] != pictures[2]


@pytest.mark.parametrize("extra, message", [([], "does not exist"), (["--n", "0"], "--n 0")])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, extra, message):
    missing = tmp_path / "no_such_dataset"
    assert main(["augment-preview", str(missing), "--out", str(tmp_path / "x.png"), *extra]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err
    assert not (tmp_path / "x.png").exists()


def test_a_seed_torch_cannot_take_is_one_line(make_dataset, tmp_path, capsys):
    dataset = make_dataset(survey="space", n=3, layout="train")
    assert main(["augment-preview", str(dataset), "--out", str(tmp_path / "x.png"), "--seed", str(10**20)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"lexactum augment-preview: error: --seed {10**20}: out of range for torch's random generator"]
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("where", ["a folder", "under a file"])
def test_unwritable_out_exits_2_before_reading(make_dataset, tmp_path, capsys, where):
    dataset = make_dataset(survey="space", n=3, layout="train")
    (tmp_path / "plain").write_text("a file")
    out = tmp_path if where == "a folder" else tmp_path / "plain" / "grid.png"
    assert main(["augment-preview", str(dataset), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"--out {out}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]

