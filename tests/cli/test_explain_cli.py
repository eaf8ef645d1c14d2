"""``lexactum explain``: one picture per ID (cutout, Grad-CAM, occlusion), bad IDs and surveys refused."""

from __future__ import annotations

import numpy as np
import pytest

from lexactum.cli import main


@pytest.fixture
def space(make_dataset, toy_model_file, tmp_path):
    return make_dataset("space", n=6, layout="test", seed=3), toy_model_file(tmp_path / "m.safetensors", 1, seed=1)


def test_explain_writes_one_picture_per_id(space, tmp_path, capsys):
    from PIL import Image

    dataset, model = space
    out = tmp_path / "why"
    assert main(["explain", "--model", str(model), "--dataset", str(dataset), "--id", "100001", "--id", "100004",
                 "--out", str(out)]) == 0
    assert "wrote 2 picture(s)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["100001.png", "100004.png"]
    pictures = []
    for name in ("100001.png", "100004.png"):
        with Image.open(out / name) as image:
            assert image.width > 2.5 * image.height  # three panels side by side
            pictures.append(np.asarray(image.convert("RGB"), dtype=np.int16))
    assert not np.array_equal(pictures[0], pictures[1])


@pytest.mark.parametrize(("ids", "message"), [
    (["100001", "5"], "--id 5: not in the dataset"),
    (["abc"], "--id abc: not in the dataset"),
    ([" "], "an ID may not be empty"),
])
def test_ids_not_in_the_dataset(space, tmp_path, capsys, ids, message):
    dataset, model = space
    argv = ["explain", "--model", str(model), "--dataset", str(dataset), "--out", str(tmp_path / "why")]
    for object_id in ids:
        argv += ["--id", object_id]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lexactum explain: error:") and message in err[0], err
    assert not (tmp_path / "why").exists()


def test_dataset_of_the_other_survey(space, make_dataset, tmp_path, capsys):
    _, model = space
    ground = make_dataset("ground", n=3, layout="test")
    assert main(["explain", "--model", str(model), "--dataset", str(ground), "--id", "100000", "--out",
                 str(tmp_path / "why")]) == 2
    assert "holds ground images, but" in capsys.readouterr().err


def test_existing_picture_needs_overwrite(space, tmp_path, capsys):
    dataset, model = space
    argv = ["explain", "--model", str(model), "--dataset", str(dataset), "--id", "100002", "--out",
            str(tmp_path / "why")]
    assert main(argv) == 0
    before = (tmp_path / "why" / "100002.png").read_bytes()
    (tmp_path / "why" / "100002.png").write_bytes(b"mine")
    assert main(argv) == 2
    assert "already exists: use --overwrite" in capsys.readouterr().err
    assert (tmp_path / "why" / "100002.png").read_bytes() == b"mine"
    assert main([*argv, "--overwrite"]) == 0
    assert (tmp_path / "why" / "100002.png").read_bytes()[:8] == before[:8]
