"""``lexactum features``: one PNG per convolutional layer, the image given as a file or as an ID."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from lexactum.cli import main
from lexactum.data import cutouts
from lexactum.errors import DataError, LexactumError
from lexactum.evaluation import evaluate, plots


def test_conv_activations_of_a_small_network(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 5, 3, stride=2), nn.Flatten(),
                          nn.LazyLinear(1))
    image = np.random.default_rng(0).random((1, 21, 21)).astype(np.float32)
    activations = evaluate.conv_activations(model, image)
    assert list(activations) == ["0", "2"]
    x = torch.from_numpy(image[None])
    with torch.no_grad():
        first = model[1](model[0](x))  # shown after the ReLU that follows it, as a Keras Conv2D(relu)
        second = model[2](first)  # nothing follows: as it is
    np.testing.assert_allclose(activations["0"], first[0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(activations["2"], second[0].numpy(), rtol=1e-6)
    paths = plots.plot_feature_maps(activations, image, tmp_path)
    assert [p.name for p in paths] == ["01_0.png", "02_2.png"]
    with pytest.raises(LexactumError, match="no convolutional layer"):
        evaluate.conv_activations(nn.Sequential(nn.Flatten()), image)


@pytest.mark.parametrize(("network", "lowest"), [("lens_flow", 0.0), ("cas_swinburne", 0.0), ("lastro_epfl", 0.0),
                                                 ("lens_finder", 0.0), ("cmu_deeplens", -1.0), ("wsi_net", -1.0)])
def test_seed_networks_show_their_convolutions_after_the_activation(network, lowest):
    # Every convolution of the seed's networks carries an activation (ReLU, or ELU in residual blocks).
    from lexactum.models import create_model

    torch.manual_seed(1)
    image = np.random.default_rng(1).normal(size=(1, 101, 101)).astype(np.float32)
    activations = evaluate.conv_activations(create_model(network, in_channels=1), image)
    assert min(float(a.min()) for a in activations.values()) >= lowest
    assert max(float(a.max()) for a in activations.values()) > 0


def test_features_from_r_band_file_and_from_id_agree(toy_model_file, make_dataset, tmp_path):
    from lexactum.data.layouts import ChallengeDataset

    root = make_dataset("ground", n=3, layout="train", seed=6)
    dataset = ChallengeDataset(root)
    k = 1
    r_band = dataset.band_paths[k][0]
    assert r_band.name.startswith("imageSDSS_R-")
    raw, survey, files = cutouts.read_single_object(str(r_band), 4)
    np.testing.assert_array_equal(raw, dataset.read(k))
    assert survey.name == "ground" and files == list(dataset.band_paths[k])

    model = toy_model_file(tmp_path / "ground.safetensors", 4, seed=2)
    assert main(["features", "--model", str(model), "--image", str(r_band), "--out", str(tmp_path / "a")]) == 0
    assert main(["features", "--model", str(model), "--image", str(dataset.ids[k]), "--dataset", str(root),
                 "--out", str(tmp_path / "b")]) == 0
    pngs = sorted(p.name for p in (tmp_path / "a").glob("*.png"))
    assert len(pngs) == 3  # lens_flow has three convolutional layers
    assert pngs == sorted(p.name for p in (tmp_path / "b").glob("*.png"))
    for name in pngs:
        assert (tmp_path / "a" / name).read_bytes()[:4] == b"\x89PNG"
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["files"] == [str(p) for p in dataset.band_paths[k]]


def test_features_space_image(toy_model_file, make_dataset, tmp_path):
    from lexactum.data.layouts import ChallengeDataset

    dataset = ChallengeDataset(make_dataset("space", n=2))
    model = toy_model_file(tmp_path / "space.safetensors", 1, seed=2)
    stale = tmp_path / "maps" / "07_block2.conv3.png"  # left by a deeper network drawn here before
    stale.parent.mkdir()
    stale.write_bytes(b"old picture")
    (stale.parent / "config.json").write_text(json.dumps({"command": "features", "pictures": [stale.name]}))
    users = tmp_path / "maps" / "08_my_own_plot.png"  # not in that run's record: the user's, kept
    users.write_bytes(b"user's picture")
    assert main(["features", "--model", str(model), "--image", str(dataset.band_paths[0][0]),
                 "--out", str(tmp_path / "maps")]) == 0
    assert len(list((tmp_path / "maps").glob("[0][1-3]_*.png"))) == 3 and not stale.exists()
    assert users.read_bytes() == b"user's picture"
    config = json.loads((tmp_path / "maps" / "config.json").read_text())
    assert config["pictures"] == ["01_features.1.png", "02_features.4.png", "03_features.7.png"]


def test_features_keeps_pictures_it_did_not_draw(toy_model_file, make_dataset, tmp_path):
    """A folder without an earlier run's record: every file in it is the user's and stays."""
    from lexactum.data.layouts import ChallengeDataset

    dataset = ChallengeDataset(make_dataset("space", n=2))
    model = toy_model_file(tmp_path / "space.safetensors", 1, seed=2)
    holiday = tmp_path / "maps" / "01_holiday.png"
    holiday.parent.mkdir()
    holiday.write_bytes(b"user's picture")
    assert main(["features", "--model", str(model), "--image", str(dataset.band_paths[0][0]),
                 "--out", str(tmp_path / "maps")]) == 0
    assert holiday.read_bytes() == b"user's picture"


def test_features_errors(toy_model_file, make_dataset, tmp_path, capsys):
    from lexactum.data.layouts import ChallengeDataset

    root = make_dataset("ground", n=2, layout="train")
    dataset = ChallengeDataset(root)
    missing_band = dataset.band_paths[0][3]
    missing_band.unlink()
    with pytest.raises(DataError, match="band U of object"):
        cutouts.read_single_object(str(dataset.band_paths[0][0]), 4)
    model = toy_model_file(tmp_path / "ground.safetensors", 4, seed=2)
    assert main(["features", "--model", str(model), "--image", "424242", "--dataset", str(root),
                 "--out", str(tmp_path / "x")]) == 2
    assert "no complete object with ID 424242" in capsys.readouterr().err
    assert main(["features", "--model", str(model), "--image", "nothing.fits", "--out", str(tmp_path / "y")]) == 2
    assert "--dataset" in capsys.readouterr().err
    image = str(dataset.band_paths[1][0])
    for count in ("0", "-2"):  # was a ZeroDivisionError traceback (0) and PNGs drawn without channels (-2)
        assert main(["features", "--model", str(model), "--image", image, "--out", str(tmp_path / "m"),
                     "--max-channels", count]) == 2
        assert f"--max-channels {count}" in capsys.readouterr().err and not (tmp_path / "m").exists()
    with pytest.raises(LexactumError, match="max_channels"):
        plots.plot_feature_maps({"conv": np.zeros((2, 5, 5))}, np.zeros((1, 5, 5)), tmp_path / "n", max_channels=0)
