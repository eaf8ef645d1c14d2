"""Impostors among the non-lenses: drawn at their rates, only on non-lenses, rendered, artefacts in place."""

from __future__ import annotations

import copy
import hashlib
from dataclasses import replace

import numpy as np
import pytest

from lexactum.simulate import impostors, scene
from lexactum.simulate.presets import PRESETS
from lexactum.simulate.writer import simulate_dataset

DRAWS = 3000


def _non_lens(physics, seed=0):
    return scene.draw_field(physics, np.random.default_rng(seed), is_lens=False)


def _plain_and_forced(physics, kind, seed):
    """The same non-lens field without impostors and with exactly one impostor of ``kind``."""
    rng = np.random.default_rng(seed)
    plain = scene.draw_field(physics, rng, is_lens=False)
    plain.components = plain.components[:1]
    plain.artefacts, plain.masks = [], []
    forced = copy.deepcopy(plain)
    out = impostors.Dressing(kinds=[kind])
    centre = plain.kwargs_lens[0]
    impostors.DRAWERS[kind](physics, rng, forced, centre["center_x"], centre["center_y"], out)
    forced.components += out.components
    forced.artefacts += out.painted
    return plain, forced, out


def _render(physics, fld):
    return scene.render_field(physics, fld, np.random.default_rng(1)).astype(np.float64)


@pytest.mark.parametrize("survey, scale", [("space", 1.0), ("ground", 1.0), ("space", 4.0)])
def test_each_kind_appears_at_its_rate(survey, scale):
    physics = replace(PRESETS[survey], impostor_scale=scale)
    rates = impostors.rates_for(physics)
    fld, rng = _non_lens(physics), np.random.default_rng(7)
    counts = dict.fromkeys(rates.kinds(), 0)
    dressed = 0
    for _ in range(DRAWS):
        kinds = impostors.draw(physics, rng, fld).kinds
        dressed += bool(kinds)
        for kind in kinds:
            counts[kind] += 1
    for kind, count in counts.items():
        p = getattr(rates, kind)
        assert abs(count - DRAWS * p) <= 4.5 * np.sqrt(DRAWS * p * (1 - p)) + 1, (kind, count, p)
    assert rates == impostors.RATES[survey].scaled(scale)
    share = rates.any_share()
    if scale == 1.0:
        assert 0.1 <= share <= 0.2  # about one non-lens in seven (docs/impostors.md)
    assert abs(dressed - DRAWS * share) <= 4.5 * np.sqrt(DRAWS * share * (1 - share))


def test_lenses_are_never_dressed_and_their_fields_are_unchanged(monkeypatch):
    physics = replace(PRESETS["ground"], randomise=True)  # impostors come with randomised populations
    seeds = range(40)
    lenses = [scene.draw_field(physics, np.random.default_rng(s), is_lens=True) for s in seeds]
    non_lenses = [scene.draw_field(physics, np.random.default_rng(s), is_lens=False) for s in seeds]
    monkeypatch.setattr(impostors, "dress", lambda physics, rng, fld: [])
    plain_lenses = [scene.draw_field(physics, np.random.default_rng(s), is_lens=True) for s in seeds]
    plain_non_lenses = [scene.draw_field(physics, np.random.default_rng(s), is_lens=False) for s in seeds]
    assert all(not f.artefacts for f in lenses)
    assert [f.components for f in lenses] == [f.components for f in plain_lenses]
    dressed = [bool(f.artefacts) or f.components != plain.components
               for f, plain in zip(non_lenses, plain_non_lenses, strict=True)]
    assert 0 < sum(dressed) < len(dressed)
    for f, plain in zip(non_lenses, plain_non_lenses, strict=True):  # impostors add, the galaxy may lend light
        kept = f.components[:len(plain.components)]
        assert [c.kwargs for c in kept] == [c.kwargs for c in plain.components]
        assert kept[1:] == plain.components[1:]
        assert all(0 < a <= b for a, b in zip(kept[0].flux, plain.components[0].flux, strict=True))


@pytest.mark.parametrize("kind", ["spiral", "ring", "edge_on"])
def test_disks_and_rings_take_their_light_from_the_central_galaxy(kind):
    """The central galaxies are calibrated on the real total fluxes: a disk or ring keeps the first band's total."""
    physics = PRESETS["ground"]
    for seed in range(5):
        rng = np.random.default_rng(seed)
        fld = scene.draw_field(physics, rng, is_lens=False)
        fld.components, fld.artefacts = fld.components[:1], []
        before = fld.components[0].flux[0]
        out = impostors.Dressing(kinds=[kind])
        impostors.DRAWERS[kind](physics, rng, fld, fld.kwargs_lens[0]["center_x"], fld.kwargs_lens[0]["center_y"], out)
        added = sum(c.flux[0] for c in out.components) + sum(p.flux[0] for p in out.painted)
        assert 0 < out.central_share < 1
        assert before * out.central_share + added == pytest.approx(before, rel=1e-9)


@pytest.mark.parametrize("survey", ["space", "ground"])
def test_each_kind_renders_finite_and_visible(survey):
    physics = PRESETS[survey]
    rates = impostors.rates_for(physics)
    for i, kind in enumerate(k for k in rates.kinds() if getattr(rates, k) > 0):
        plain, forced, _ = _plain_and_forced(physics, kind, seed=10 + i)
        image = _render(physics, forced)
        assert np.isfinite(image).all()
        diff = (image - _render(physics, plain)) / np.asarray(physics.noise_sigma)[:, None, None]
        assert np.sqrt((diff**2).sum(axis=(1, 2))).max() > 5, kind  # detectable: matched-filter S/N above 5


def test_a_bad_column_or_row_is_one_line_of_one_band():
    physics = PRESETS["ground"]
    for seed in range(6):
        plain, forced, out = _plain_and_forced(physics, "bad_column", seed)
        params = out.painted[0].params
        changed = np.argwhere(_render(physics, forced) != _render(physics, plain))
        assert set(changed[:, 0]) == {params["band"]}
        along = 2 if params["axis"] == "column" else 1
        assert set(changed[:, along]) == {params["index"]}
        assert len(changed) == scene.IMAGE_SIZE


def test_cosmic_rays_are_sharp_and_where_drawn():
    physics = PRESETS["space"]
    plain, forced, out = _plain_and_forced(physics, "cosmic_rays", 3)
    changed = np.flatnonzero((_render(physics, forced) != _render(physics, plain))[0])
    drawn = np.unique(np.concatenate([p.params["pixels"] for p in out.painted]))
    assert set(changed) == set(drawn)
    assert all(len(p.params["pixels"]) <= 21 for p in out.painted)  # tracks of at most 10 pixels, no PSF


def test_diffraction_spikes_run_through_their_star():
    physics = PRESETS["space"]
    for seed in range(4):
        plain, forced, out = _plain_and_forced(physics, "diffraction_spikes", seed)
        diff = _render(physics, forced)[0] - _render(physics, plain)[0]
        star, lines = out.components[0].kwargs, out.components[1:]
        centre = (scene.IMAGE_SIZE - 1) / 2
        for line in lines:
            length = line.kwargs["length"]
            angle = -np.radians(line.kwargs["angle"])
            for side in (-1, 1):  # along the spike, a third of its length out, against the same radius off it
                on = _pixel(star, side * length / 3, angle, physics.pixel_scale, centre)
                off = _pixel(star, side * length / 3, angle + np.pi / (2 * len(lines)), physics.pixel_scale, centre)
                if _inside(on) and _inside(off):
                    assert diff[on] > diff[off] + 3 * physics.noise_sigma[0]


def _pixel(star, r, angle, scale, centre):
    x, y = star["center_x"] + r * np.cos(angle), star["center_y"] + r * np.sin(angle)
    return int(round(y / scale + centre)), int(round(x / scale + centre))


def _inside(pixel):
    return all(0 <= p < scene.IMAGE_SIZE for p in pixel)


def _digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.suffix in {".fits", ".csv"}}


#: Impostors four times as often as by default (the first rates): small datasets hold several.
OFTEN = 4.0


def test_impostor_datasets_are_byte_identical_for_one_or_two_workers(tmp_path, monkeypatch):
    physics = replace(PRESETS["space"], randomise=True, impostor_scale=OFTEN)
    n, seed = 6, 5
    kinds, dress = [], impostors.dress
    monkeypatch.setattr(impostors, "dress", lambda physics, rng, fld: kinds.extend(dress(physics, rng, fld)))
    for index in range(n):  # the writer's draws for a dataset of non-lenses
        rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
        scene.draw_field(physics, rng, is_lens=rng.random() < 0.0)
    monkeypatch.undo()
    assert kinds  # the dataset below holds impostors
    one = simulate_dataset(tmp_path / "one", "space", n, seed=seed, lens_fraction=0.0, workers=1, progress=False,
                           randomise=True, impostors=OFTEN)
    two = simulate_dataset(tmp_path / "two", "space", n, seed=seed, lens_fraction=0.0, workers=2, progress=False,
                           randomise=True, impostors=OFTEN)
    assert _digest(one) == _digest(two)


def test_a_survey_without_rates_is_one_clear_error():
    from lexactum.errors import LexactumError

    physics = replace(PRESETS["space"], name="elsewhere", randomise=True)
    with pytest.raises(LexactumError, match="no impostor rates for survey 'elsewhere'"):
        scene.draw_field(physics, np.random.default_rng(0), is_lens=False)


def test_a_randomised_dataset_lists_the_impostors_of_each_object(tmp_path):
    """impostors.csv says which kinds each non-lens was dressed with (as the writer drew them), none for
    lenses; a dataset without randomisation has no such file (and its bytes stay those of before)."""
    from lexactum.simulate.writer import IMPOSTOR_TRUTH, read_impostor_truth

    physics = replace(PRESETS["space"], randomise=True, impostor_scale=OFTEN)
    n, seed, fraction = 24, 3, 0.25
    out = simulate_dataset(tmp_path / "r", "space", n, layout="train", seed=seed, lens_fraction=fraction,
                           workers=1, progress=False, impostors=OFTEN)
    truth = read_impostor_truth(out)
    expected = {}
    for index in range(n):  # the writer's draws: the lens coin, then the field
        rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
        is_lens = rng.random() < fraction
        fld = scene.draw_field(physics, rng, is_lens=is_lens)
        expected[100_000 + index] = () if is_lens else tuple(fld.impostor_kinds)
    assert truth == expected
    assert any(truth.values()) and any(not kinds for kinds in truth.values())
    fixed = simulate_dataset(tmp_path / "f", "space", 4, layout="train", seed=seed, workers=1, progress=False,
                             randomise=False)
    assert read_impostor_truth(fixed) is None and not (fixed / IMPOSTOR_TRUTH).exists()


def test_an_unreadable_impostor_truth_is_one_line_naming_it(tmp_path):
    from lexactum.errors import DataError
    from lexactum.simulate.writer import IMPOSTOR_TRUTH, read_impostor_truth

    (tmp_path / IMPOSTOR_TRUTH).write_text("ID,kinds\n1,ring\n")
    with pytest.raises(DataError, match="impostors.csv: not an impostor truth file"):
        read_impostor_truth(tmp_path)
