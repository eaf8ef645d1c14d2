"""Thumbnails (grey for space, colour for ground), saliency maps (captum) and their overlays."""

from __future__ import annotations

import io

import numpy as np
import pytest

from lexactum.data.surveys import get_survey
from lexactum.inspection.pictures import overlay, png_bytes, thumbnails
from lexactum.simulate.toy import toy_images


def images(survey, n=2, seed=0):
    return toy_images(survey, n, np.array([1, 0] * n)[:n], np.random.default_rng(seed))


def decoded(data: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(data))


@pytest.mark.parametrize(("survey", "mode"), [("space", "L"), ("ground", "RGB")])
def test_thumbnails_are_not_blank_and_have_the_survey_mode(survey, mode):
    thumbs = thumbnails(images(survey), get_survey(survey))
    for thumb in thumbs:
        picture = decoded(png_bytes(thumb))
        assert picture.mode == mode and picture.size == (101, 101)
        assert np.asarray(picture).std() > 0


def test_ground_composite_ignores_masked_pixels_and_nan():
    raw = images("ground", 1)
    clean = thumbnails(raw, get_survey("ground"))[0]
    spoiled = raw.copy()
    spoiled[0, :, 10:14, 10:14] = 100.0  # masked
    spoiled[0, :, 50, 50] = np.nan
    thumb = thumbnails(spoiled, get_survey("ground"))[0]
    patch = np.s_[101 - 14:101 - 10, 10:14]  # rows are flipped: FITS origin at the bottom
    # a masked patch is drawn as sky (black), not as the bright spot 100.0 would be as a flux
    assert thumb[patch].max() == 0 and clean[patch].max() > 0
    assert thumb.std() > 0
    bright = raw.copy()
    bright[0, :, 10:14, 10:14] = 100.0 * raw.max()
    assert thumbnails(bright, get_survey("ground"))[0][patch].mean() > 100


def test_thumbnails_show_row_zero_at_the_bottom():
    raw = np.zeros((1, 1, 101, 101), dtype=np.float32)
    raw[0, 0] = np.random.default_rng(0).normal(size=(101, 101))
    raw[0, 0, :5] += 100  # bright first rows
    thumb = thumbnails(raw, get_survey("space"))[0]
    assert thumb[-5:].mean() > thumb[:5].mean()


def test_overlay_colours_only_where_there_is_heat():
    thumb = thumbnails(images("space", 1), get_survey("space"))[0]
    heat = np.zeros((101, 101), dtype=np.float32)
    heat[:30] = 1.0  # the top rows of the image as the network sees it = the bottom rows of the picture
    shown = overlay(thumb, heat)
    assert shown.shape == (101, 101, 3)
    grey = np.repeat(thumb[..., None], 3, axis=2)
    assert np.array_equal(shown[:71], grey[:71])
    assert not np.array_equal(shown[71:], grey[71:])
    assert decoded(png_bytes(shown, palette=True)).convert("RGB").size == (101, 101)


def test_grad_cam_maps_differ_between_images_and_fit_the_cutout():
    import torch

    from lexactum.data.normalise import normalise
    from lexactum.inspection.saliency import grad_cam, heat
    from lexactum.models import create_model

    torch.manual_seed(0)
    network = create_model("lens_flow", in_channels=4)
    batch = normalise(images("ground", 2, seed=5))
    maps = grad_cam(network, batch)
    assert maps.shape == (2, 101, 101) and np.isfinite(maps).all()
    assert not np.allclose(maps[0], maps[1])
    assert maps.std(axis=(1, 2)).min() > 0  # not a constant map
    alone = grad_cam(network, batch[1:])  # each image's map is its own, not the batch's
    np.testing.assert_allclose(alone[0], maps[1], rtol=1e-4, atol=1e-6)
    shown = heat(maps)
    assert shown.min() >= 0 and shown.max() <= 1


def test_occlusion_map_fits_the_cutout():
    import torch

    from lexactum.data.normalise import normalise
    from lexactum.inspection.saliency import occlusion
    from lexactum.models import create_model

    torch.manual_seed(0)
    network = create_model("lens_flow", in_channels=1)
    maps = occlusion(network, normalise(images("space", 2, seed=1)))
    assert maps.shape == (2, 101, 101) and not np.allclose(maps[0], maps[1])


def test_heat_of_a_map_without_positive_values_is_zero():
    from lexactum.inspection.saliency import heat

    shown = heat(np.stack([-np.ones((4, 4)), np.arange(16.0).reshape(4, 4)]))
    assert (shown[0] == 0).all() and shown[1].max() == 1.0
