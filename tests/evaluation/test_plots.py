"""Plots write real, non-blank PNG files of the expected size, atomically."""

from __future__ import annotations

import numpy as np
import pytest

from lexactum.errors import LexactumError
from lexactum.evaluation import plots


def read_png(path):
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(path)


def assert_drawn(path, min_width=300):
    pixels = read_png(path)
    assert pixels.shape[1] >= min_width
    assert pixels[..., :3].std() > 0.02  # not a blank canvas
    assert not list(path.parent.glob(".*.part*"))  # no temporary left behind


def test_plot_roc(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    scores = rng.random(400) * 0.7 + 0.3 * labels
    path = plots.plot_roc(labels, scores, tmp_path / "out" / "roc.png", title="toy")
    assert path == tmp_path / "out" / "roc.png"
    pixels = read_png(path)
    assert pixels.shape[1] > 1.8 * pixels.shape[0]  # two panels side by side
    assert_drawn(path)


def test_plot_roc_rejects_bad_scores(tmp_path):
    with pytest.raises(LexactumError, match="NaN"):
        plots.plot_roc([0, 1], [0.1, np.nan], tmp_path / "roc.png")
    assert not (tmp_path / "roc.png").exists()


def test_training_curves_from_rows_and_csv(tmp_path):
    rows = [{"epoch": e, "train_loss": 1 / (e + 1), "val_loss": 1.2 / (e + 1), "val_auc": 0.5 + e / 20}
            for e in range(6)]
    assert_drawn(plots.plot_training_curves(rows, tmp_path / "rows.png"))
    # Lightning's CSV logger: step rows and epoch rows interleaved, empty cells in between.
    csv_path = tmp_path / "metrics.csv"
    lines = ["epoch,step,train_loss,val_loss,val_auc"]
    for e in range(4):
        lines.append(f"{e},{e * 10},{1 / (e + 1)},,")
        lines.append(f"{e},{e * 10 + 9},,{1.1 / (e + 1)},{0.6 + e / 10}")
    csv_path.write_text("\n".join(lines) + "\n")
    assert_drawn(plots.plot_training_curves(csv_path, tmp_path / "csv.png"))


def test_training_curves_errors(tmp_path):
    with pytest.raises(LexactumError, match="epoch"):
        plots.plot_training_curves([{"step": 1, "loss": 0.3}], tmp_path / "x.png")
    with pytest.raises(LexactumError, match="no loss or AUC"):
        plots.plot_training_curves([{"epoch": 1, "lr": 0.3}], tmp_path / "x.png")
    with pytest.raises(LexactumError, match="missing.csv"):
        plots.plot_training_curves(tmp_path / "missing.csv", tmp_path / "x.png")


@pytest.mark.parametrize("channels", [1, 4])
def test_image_grid(tmp_path, channels):
    rng = np.random.default_rng(1)
    images = rng.random((10, channels, 101, 101)).astype(np.float32)
    path = plots.image_grid(images, tmp_path / "grid.png", titles=[f"ID {i}" for i in range(10)], ncols=5)
    assert_drawn(path)


def test_ground_composite_uses_i_r_g_as_red_green_blue():
    image = np.zeros((4, 5, 5), dtype=np.float32)
    image[0], image[1], image[2], image[3] = 0.2, 0.9, 0.5, 0.7  # R, I, G, U
    shown, cmap = plots._display(image)
    assert cmap is None
    np.testing.assert_allclose(shown[0, 0], [0.9, 0.2, 0.5])


def test_feature_maps_one_png_per_layer(tmp_path):
    rng = np.random.default_rng(2)
    activations = {"features.0": rng.random((8, 50, 50)), "features.3/conv": rng.random((70, 12, 12))}
    paths = plots.plot_feature_maps(activations, rng.random((1, 101, 101)), tmp_path / "maps")
    assert [p.name for p in paths] == ["01_features.0.png", "02_features.3_conv.png"]
    for path in paths:
        assert_drawn(path, min_width=200)
    with pytest.raises(LexactumError, match="features.9"):
        plots.plot_feature_maps({"features.9": np.zeros((3, 3))}, np.zeros((1, 5, 5)), tmp_path)


def test_channel_mosaic_places_stretched_tiles():
    maps = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
    maps[4] = 7.0  # a flat channel
    mosaic = plots.channel_mosaic(maps, gap=1)
    assert mosaic.shape == (2 * 2 + 1, 3 * 3 + 2)  # 5 channels -> 3 columns, 2 rows
    expected_first = (maps[0] - maps[0].min()) / np.ptp(maps[0])
    np.testing.assert_allclose(mosaic[0:2, 0:3], expected_first[::-1])
    np.testing.assert_allclose(mosaic[3:5, 4:7], 0.5)  # channel 4: second row, second column
    assert np.isnan(mosaic[2]).all() and np.isnan(mosaic[:, 3]).all()  # gaps
    assert np.isnan(mosaic[3:5, 8:11]).all()  # no sixth channel


def test_image_grid_draws_row_zero_at_the_bottom(tmp_path):
    """FITS convention: the first image row is the bottom one, as imshow(origin='lower') shows it."""
    image = np.zeros((1, 1, 101, 101), dtype=np.float32)
    image[0, 0, :20, :] = 1.0
    pixels = read_png(plots.image_grid(image, tmp_path / "one.png"))
    brightness = pixels[..., :3].mean(axis=(1, 2))
    bright_rows = np.flatnonzero(brightness > 0.5)
    inner = bright_rows[(bright_rows > 5) & (bright_rows < len(brightness) - 5)]  # ignore white margins
    assert inner.min() > 0.6 * len(brightness)
