"""simulate_dataset: the challenge format, determinism over workers, resume, refusals, catalog truth."""

from __future__ import annotations

import filecmp
import json
import os

import numpy as np
import pytest

from lexactum.errors import LexactumError
from lexactum.simulate import simulate_dataset, writer
from lexactum.simulate.presets import get_preset


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def space_test(tmp_path_factory):
    root = tmp_path_factory.mktemp("space") / "sim"
    return simulate_dataset(root, "space", 10, layout="test", seed=3, workers=1, progress=False)


@pytest.fixture(scope="module")
def ground_train(tmp_path_factory):
    root = tmp_path_factory.mktemp("ground") / "sim"
    # randomisation off: test_catalog_quantities_recomputed_independently rebuilds the fields with the fixed PSF
    return simulate_dataset(root, "ground", 8, layout="train", seed=4, lens_fraction=0.5, workers=1, progress=False,
                            randomise=False)


@pytest.mark.parametrize("fixture", ["space_test", "ground_train"])
def test_two_workers_write_the_same_bytes(request, tmp_path, fixture):
    one = request.getfixturevalue(fixture)
    manifest = json.loads((one / writer.MANIFEST).read_text())
    two = simulate_dataset(tmp_path / "two", manifest["survey"], manifest["n"], layout=manifest["layout"],
                           seed=manifest["seed"], lens_fraction=manifest["lens_fraction"], workers=2, progress=False,
                           randomise=manifest.get("randomise", False))
    assert _files(one) == _files(two)
    _, mismatch, errors = filecmp.cmpfiles(one, two, _files(one), shallow=False)
    assert not mismatch and not errors


def test_layouts_and_file_names_follow_the_challenge(space_test, ground_train):
    assert (space_test / "euclidB_image_catalog.csv").is_file()
    assert (space_test / "Data_EuclidBig.0/Public/Band1/imageEUC_VIS-100009.fits").is_file()
    assert (ground_train / "classifications.csv").is_file()
    for band, name in enumerate(("R", "I", "G", "U"), start=1):
        assert (ground_train / f"Data.0/Public/Band{band}/imageSDSS_{name}-100007.fits").is_file()
    header = (ground_train / "classifications.csv").read_text().splitlines()[0]
    assert header == "ID,is_lens,Einstein_area,numb_pix_lensed_image,flux_lensed_image_in_sigma"
    lines = (space_test / "euclidB_image_catalog.csv").read_text().splitlines()
    assert lines[0].startswith("#") and "ID" in next(x for x in lines if not x.startswith("#")).split(",")


def test_headers_and_pixels_look_like_the_real_files(samples, space_test, ground_train):
    from astropy.io import fits

    real_dir = samples / "mariogeiger_lensfinder-euclid" / "samples"
    for ours, real in ((space_test / "Data_EuclidBig.0/Public/Band1/imageEUC_VIS-100000.fits",
                        next(real_dir.glob("space_based/lens/*.fits"))),
                       (ground_train / "Data.0/Public/Band3/imageSDSS_G-100001.fits",
                        next(real_dir.glob("ground_based/lens/Band3/*.fits")))):
        with fits.open(ours) as ours_hdul, fits.open(real) as real_hdul:
            assert len(ours_hdul) == len(real_hdul) == 1
            h_ours, h_real = ours_hdul[0].header, real_hdul[0].header
            keys = lambda h: [k for k in h if k not in ("COMMENT", "")]  # noqa: E731
            assert keys(h_ours) == keys(h_real)
            assert [h_ours.comments[k] for k in keys(h_ours)] == [h_real.comments[k] for k in keys(h_real)]
            for key in ("BITPIX", "NAXIS1", "NAXIS2", "CTYPE1", "CUNIT2", "NX", "NY"):
                assert h_ours[key] == h_real[key]
            for key in ("CDELT1", "CD2_2", "CRPIX1", "RANGE X"):
                assert h_ours[key] == pytest.approx(h_real[key], rel=1e-6)
            assert abs(h_ours["RA"]) < 0.01 and abs(h_ours["DEC"]) < 0.01
            data = ours_hdul[0].data
            assert data.dtype == np.dtype(">f4") and data.shape == (101, 101)


@pytest.mark.parametrize("name", ["space", "ground"])
def test_fluxes_are_in_the_real_files_units(samples, name):
    """Median total flux per band of 80 fields within a factor 2.5 of the real sample files' (6-8 files)."""
    from astropy.io import fits

    from lexactum.simulate import scene

    physics = get_preset(name)
    rng = np.random.default_rng(0)
    totals = np.array([scene.noise_free_bands(physics, scene.draw_field(physics, rng, bool(rng.integers(2))))
                       .sum(axis=(1, 2)) for _ in range(80)])
    real_dir = samples / "mariogeiger_lensfinder-euclid" / "samples"
    for band in range(physics.n_bands):
        pattern = "space_based/*/*.fits" if name == "space" else f"ground_based/*/Band{band + 1}/*.fits"
        real = [(d := fits.getdata(p).astype(np.float64))[d != 100.0].sum() for p in real_dir.glob(pattern)]
        assert len(real) >= 6
        ratio = np.median(totals[:, band]) / np.median(real)
        assert 1 / 2.5 < ratio < 2.5, (physics.bands[band], ratio)


def test_catalog_quantities_recomputed_independently(ground_train):
    """Rebuild the noise-free lensed source of a few lenses with lenstronomy's ImageModel and re-count."""
    import pandas as pd
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    from lexactum.simulate import scene

    physics = get_preset("ground")
    key = pd.read_csv(ground_train / "classifications.csv")
    lenses = key[key.is_lens == 1]
    assert len(lenses) >= 2
    pix = physics.pixel_scale
    data = ImageData(np.zeros((101, 101)), ra_at_xy_0=-50 * pix, dec_at_xy_0=-50 * pix,
                     transform_pix2angle=np.diag([pix, pix]))
    psf = PSF(psf_type="GAUSSIAN", fwhm=physics.psf_fwhm[0], pixel_size=pix, truncation=5)
    for _, row in lenses.iterrows():
        index = int(row.ID) - 100_000
        rng = np.random.default_rng(np.random.SeedSequence([4, index]))
        assert rng.random() < 0.5  # the label draw
        fld = scene.draw_field(physics, rng, is_lens=True)
        sources = [c for c in fld.components if c.lensed]
        light = LightModel([c.model for c in sources])
        kwargs = []
        for c in sources:  # lenstronomy's amp that gives the component its flux
            unit_flux = LightModel([c.model]).total_flux([dict(c.kwargs, amp=1.0)], norm=True)[0]
            kwargs.append(dict(c.kwargs, amp=c.flux[0] / unit_flux))
        model = ImageModel(data, psf, LensModel(["SIE", "SHEAR"]), light,
                           kwargs_numerics={"supersampling_factor": scene.SUPERSAMPLING})
        image = model.image(fld.kwargs_lens, kwargs, lens_light_add=False)
        in_sigma = image / fld.noise_sigma[0]
        bright = in_sigma > 1
        assert abs(int(bright.sum()) - row.numb_pix_lensed_image) <= max(2, 0.02 * row.numb_pix_lensed_image)
        assert in_sigma[bright].sum() == pytest.approx(row.flux_lensed_image_in_sigma, rel=0.02, abs=3)
        assert row.Einstein_area == pytest.approx(np.pi * (fld.theta_e / 206264.806) ** 2, rel=1e-5)


def test_challenge_dataset_reads_both_layouts(space_test, ground_train):
    pytest.importorskip("lexactum.data.layouts")
    import pandas as pd

    from lexactum.data.layouts import ChallengeDataset

    space = ChallengeDataset(space_test)
    assert space.survey.name == "space" and space.layout == "test" and len(space) == 10
    truth = pd.read_csv(space_test / "euclidB_image_catalog.csv", comment="#")
    assert space.labels.tolist() == (1 - truth.no_source).tolist()
    ground = ChallengeDataset(ground_train)
    assert ground.survey.name == "ground" and ground.layout == "train" and len(ground) == 8
    image = ground.read(0)
    assert image.shape == (4, 101, 101) and image.dtype == np.float32


def test_a_killed_run_resumes_to_the_same_bytes(tmp_path, space_test):
    out = tmp_path / "resumed"
    simulate_dataset(out, "space", 10, seed=3, workers=1, progress=False)
    # a kill: the catalog is not written yet, two objects are missing, the journal ends mid-line
    (out / "euclidB_image_catalog.csv").unlink()
    for i in (2, 7):
        next(out.rglob(f"*-{100_000 + i}.fits")).unlink()
    journal = out / writer.ROWS_JOURNAL
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[:8]) + "\n" + lines[8][:20])
    kept = out / "Data_EuclidBig.0/Public/Band1/imageEUC_VIS-100001.fits"
    before = kept.stat().st_mtime_ns
    os.utime(kept, ns=(before - 10**9, before - 10**9))
    simulate_dataset(out, "space", 10, seed=3, workers=1, progress=False)
    assert kept.stat().st_mtime_ns == before - 10**9  # not rewritten
    _, mismatch, errors = filecmp.cmpfiles(space_test, out, _files(space_test), shallow=False)
    assert not mismatch and not errors


def test_a_resumed_run_removes_the_temporary_files_of_a_kill(tmp_path, space_test):
    from lexactum.data.layouts import ChallengeDataset

    out = tmp_path / "killed"
    simulate_dataset(out, "space", 10, seed=3, workers=1, progress=False)
    (out / "euclidB_image_catalog.csv").unlink()
    band = out / "Data_EuclidBig.0/Public/Band1"
    (band / "imageEUC_VIS-100002.fits").unlink()
    half = band / ".imageEUC_VIS-100002.0123abcd.part.fits"  # atomic_path's name, cut by a kill
    half.write_bytes((space_test / "Data_EuclidBig.0/Public/Band1/imageEUC_VIS-100002.fits").read_bytes()[:5000])
    (band / "imageEUC_VIS-100007.fits.part").write_bytes(b"SIMPLE")  # an earlier version's name
    (out / ".euclidB_image_catalog.89abcdef.part.csv").write_text("# cut\nID,no")
    (out / "notes.part.txt").write_text("the user's")
    before = ChallengeDataset(out, "space", require_labels=False)  # temporaries are never taken for images
    assert 100_002 not in before.ids.tolist() and len(before) == 9 and len(before.incomplete) == 0
    simulate_dataset(out, "space", 10, seed=3, workers=1, progress=False)
    assert _files(out) == sorted(_files(space_test) + ["notes.part.txt"])
    _, mismatch, errors = filecmp.cmpfiles(space_test, out, _files(space_test), shallow=False)
    assert not mismatch and not errors


def test_a_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "Band1" / "imageEUC_VIS-100000.fits"
    with pytest.raises(TypeError):
        writer.write_fits_image(path, np.zeros((101, 101)), "not bytes")
    assert list(path.parent.iterdir()) == []


def test_an_out_that_cannot_be_created_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(LexactumError, match=r"sim: not a folder \(.*file is not a folder\)") as info:
        simulate_dataset(tmp_path / "file" / "sim", "space", 2, workers=1, progress=False)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_other_parameters_or_foreign_folders_are_refused(tmp_path, space_test):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(space_test, out)
    with pytest.raises(LexactumError, match=r"holds a simulation with other parameters: seed 3 \(now 4\)"):
        simulate_dataset(out, "space", 10, seed=4, workers=1, progress=False)
    assert _files(out) == _files(space_test)
    simulate_dataset(out, "space", 6, seed=4, workers=1, progress=False, overwrite=True)
    assert len(list(out.rglob("*.fits"))) == 6
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(LexactumError, match="is not empty and is not a simulation"):
        simulate_dataset(foreign, "space", 2, progress=False)
    assert _files(foreign) == ["notes.txt"]
    # Overwriting replaces only a simulation of ours: a real challenge set in --out is never deleted.
    (foreign / "Data.0").mkdir()
    (foreign / "Data.0" / "image.fits").write_bytes(b"real data")
    (foreign / "classifications.csv").write_text("ID,is_lens\n100000,1\n")
    with pytest.raises(LexactumError, match="not a simulation by lexactum") as info:
        simulate_dataset(foreign, "space", 2, progress=False, overwrite=True)
    assert "--overwrite" not in str(info.value)
    assert _files(foreign) == sorted(["notes.txt", "Data.0/image.fits", "classifications.csv"])


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 0}, "--n must be a positive number"),
    ({"n": -3}, "--n must be a positive number"),
    ({"survey": "hubble"}, "unknown survey 'hubble'"),
    ({"lens_fraction": 1.5}, r"lens fraction must lie in \[0, 1\]"),
    ({"lens_fraction": -0.1}, r"lens fraction must lie in \[0, 1\]"),
    ({"layout": "both"}, "unknown layout 'both'"),
    ({"workers": 0}, "--workers must be at least 1"),
    ({"min_lensed_flux": -1.0}, "minimum lensed flux must be a finite number of sigma >= 0"),
    ({"per_folder": 0}, "objects per folder must be a positive integer, got 0"),
    ({"impostors": -0.5, "layout": "train"}, r"--impostors must be a factor from 0 to [0-9.]+ \(the largest"),
    ({"impostors": 1e3, "layout": "train"}, "--impostors must be a factor from 0 to"),
    ({"impostors": float("nan"), "layout": "train"}, "--impostors must be a factor from 0 to"),
    ({"impostors": 0.5, "layout": "train", "randomise": False}, "--impostors applies to randomised datasets only"),
    ({"impostors": 0.5}, "--impostors applies to randomised datasets only"),
])
def test_bad_input_is_refused_before_writing(tmp_path, kwargs, message):
    args = {"survey": "space", "n": 4} | kwargs
    with pytest.raises(LexactumError, match=message) as info:
        simulate_dataset(tmp_path / "out", args.pop("survey"), args.pop("n"), progress=False, **args)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_lens_fraction_is_respected(tmp_path):
    out = simulate_dataset(tmp_path / "all", "space", 4, lens_fraction=1.0, workers=1, progress=False)
    lines = [x for x in (out / "euclidB_image_catalog.csv").read_text().splitlines() if not x.startswith("#")]
    assert [x.split(",")[1] for x in lines[1:]] == ["0"] * 4  # no_source = 0: all lenses


def test_min_lensed_flux_redraws_faint_lenses_only(tmp_path):
    import pandas as pd

    plain = simulate_dataset(tmp_path / "plain", "space", 8, layout="train", lens_fraction=1.0, workers=1,
                             progress=False)
    bright = simulate_dataset(tmp_path / "bright", "space", 8, layout="train", lens_fraction=1.0, workers=1,
                              progress=False, min_lensed_flux=500.0)
    plain_key = pd.read_csv(plain / "classifications.csv")
    bright_key = pd.read_csv(bright / "classifications.csv")
    assert (bright_key.flux_lensed_image_in_sigma >= 500).all()
    kept = plain_key.flux_lensed_image_in_sigma >= 500  # bright enough at the first draw: the same object
    assert 0 < kept.sum() < len(kept)
    assert np.allclose(plain_key[kept].Einstein_area, bright_key[kept].Einstein_area)


def test_objects_are_split_into_folders_of_ten_thousand_like_the_challenge(tmp_path):
    from lexactum.data.layouts import ChallengeDataset
    from lexactum.data.surveys import GROUND, SPACE

    assert writer.OBJECTS_PER_FOLDER == 10_000
    assert writer.object_folder(SPACE, "test", 9_999) == "Data_EuclidBig.0"
    assert writer.object_folder(GROUND, "test", 10_000) == "Data_KiDS_Big.1"
    assert writer.object_folder(GROUND, "train", 19_999) == "Data.1"
    out = simulate_dataset(tmp_path / "split", "space", 5, layout="train", seed=1, workers=1, progress=False,
                           per_folder=2)
    assert sorted(p.name for p in out.glob("Data.*")) == ["Data.0", "Data.1", "Data.2"]
    assert (out / "Data.2/Public/Band1/imageEUC_VIS-100004.fits").is_file()
    assert len(ChallengeDataset(out)) == 5


# ---------------------------------------------------------------------------------- faults while writing
def test_disk_full_is_one_line_and_a_rerun_resumes_to_the_same_bytes(small_disk, space_test, capsys, monkeypatch):
    from lexactum.cli import main
    from lexactum.simulate import writer

    # a disk that fills while the simulation runs (e.g. by another program): the check before the start,
    # which refuses a simulation that cannot fit at all, found room
    monkeypatch.setattr(writer, "_check_space", lambda *args: None)
    disk = small_disk("1m")
    disk.fill(leave=200_000)  # room for a few of the ten 44 kB images
    out = disk.root / "sim"
    argv = ["simulate", "--survey", "space", "--n", "10", "--seed", "3", "--workers", "1", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lexactum simulate: error: cannot write {out}/") and "no space left on device" in err
    assert len(err.strip().splitlines()) == 1
    assert 0 < len(list(out.rglob("*.fits"))) < 10 and not list(out.rglob(".*.part*"))  # no temporary left
    disk.free()
    assert main(argv) == 0
    assert _files(out) == _files(space_test)
    _, mismatch, errors = filecmp.cmpfiles(space_test, out, _files(space_test), shallow=False)
    assert not mismatch and not errors


def test_disk_full_simulated_then_resumed(tmp_path, space_test, monkeypatch):
    """The same where mounting a small disk is refused: the sixth file's sync finds the disk full."""
    import errno

    real_fsync, calls = os.fsync, []

    def full_after_five(fd):
        calls.append(fd)
        if len(calls) > 6:  # the manifest, then five images
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_after_five)
    out = tmp_path / "sim"
    with pytest.raises(LexactumError, match=r"^cannot write .*imageEUC_VIS-100005\.fits: no space left on device"):
        simulate_dataset(out, "space", 10, seed=3, workers=1, progress=False)
    monkeypatch.undo()
    assert len(list(out.rglob("*.fits"))) == 5 and not list(out.rglob(".*.part*"))
    simulate_dataset(out, "space", 10, seed=3, workers=1, progress=False)
    _, mismatch, errors = filecmp.cmpfiles(space_test, out, _files(space_test), shallow=False)
    assert not mismatch and not errors and _files(out) == _files(space_test)


def test_a_read_only_out_is_one_line(tmp_path, space_test, read_only):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(space_test, out)
    read_only(out)
    with pytest.raises(LexactumError, match=rf"^--out {out}: cannot write in {out} \(read-only or no permission\)"):
        simulate_dataset(out, "space", 10, seed=3, workers=1, progress=False)
    _, mismatch, errors = filecmp.cmpfiles(space_test, out, _files(space_test), shallow=False)
    assert not mismatch and not errors


def test_overwrite_removes_only_the_earlier_simulation(tmp_path, space_test):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(space_test, out)
    users = ["Data.notes.txt", "my_image_catalog.csv", "Data_EuclidBig.old/keep.txt", "README"]
    for name in users:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("the user's")
    simulate_dataset(out, "space", 2, seed=4, workers=1, progress=False, overwrite=True)
    assert all((out / name).read_text() == "the user's" for name in users)
    assert len(list(out.rglob("*.fits"))) == 2


def test_numpy_numbers_read_as_plain_numbers(tmp_path):
    with pytest.raises(LexactumError, match=r"got -1$"):
        simulate_dataset(tmp_path / "out", "space", np.int64(-1), progress=False)


def test_a_full_disk_while_recording_an_object_is_one_line_and_resumes(tmp_path, monkeypatch):
    import builtins
    import errno

    class FillsUp:
        """The journal's file, on a disk that fills up after two rows."""

        def __init__(self, real):
            self.real, self.rows = real, 0

        def write(self, text):
            if text.startswith("{"):
                self.rows += 1
                if self.rows > 2:
                    raise OSError(errno.ENOSPC, "No space left on device")
            return self.real.write(text)

        def __getattr__(self, name):
            return getattr(self.real, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.real.close()

    def opens(path, *args, **kwargs):
        real = builtins.open(path, *args, **kwargs)
        return FillsUp(real) if str(path).endswith(writer.ROWS_JOURNAL) else real

    monkeypatch.setattr(writer, "open", opens, raising=False)
    out = tmp_path / "sim"
    with pytest.raises(LexactumError, match=rf"^cannot write {out / writer.ROWS_JOURNAL}: no space left on device"):
        simulate_dataset(out, "space", 4, seed=5, workers=1, progress=False)
    monkeypatch.undo()
    simulate_dataset(out, "space", 4, seed=5, workers=1, progress=False)
    clean = simulate_dataset(tmp_path / "clean", "space", 4, seed=5, workers=1, progress=False)
    _, mismatch, errors = filecmp.cmpfiles(clean, out, _files(clean), shallow=False)
    assert not mismatch and not errors and _files(out) == _files(clean)


def test_the_impostor_factor_scales_what_is_drawn_and_a_resume_keeps_it(tmp_path):
    """``impostors=0`` writes plain non-lenses; another factor or an older manifest (rates unrecorded) is
    other parameters, never resumed into a mix of rates."""
    from lexactum.simulate.impostors import RATES
    from lexactum.simulate.writer import read_impostor_truth

    none = simulate_dataset(tmp_path / "none", "space", 40, layout="train", lens_fraction=0.0, workers=1,
                            progress=False, impostors=0.0)
    often = simulate_dataset(tmp_path / "often", "space", 40, layout="train", lens_fraction=0.0, workers=1,
                             progress=False, impostors=4.0)
    assert not any(read_impostor_truth(none).values())
    assert sum(map(bool, read_impostor_truth(often).values())) >= 8  # 45 % of 40 expected
    with pytest.raises(LexactumError, match=r"other parameters: impostor_scale 0\.0 \(now 1\.0\); pass"):
        simulate_dataset(none, "space", 40, layout="train", lens_fraction=0.0, workers=1, progress=False)
    manifest = json.loads((often / writer.MANIFEST).read_text())
    rates = RATES["space"].scaled(4.0)
    assert manifest["impostor_rates"] == {kind: getattr(rates, kind) for kind in rates.kinds()}
    for key in ("impostor_scale", "impostor_rates"):  # as a version before the factor existed wrote it
        del manifest[key]
    (often / writer.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(LexactumError, match=r"other parameters: impostor_rates None \(now \{'spiral': 0\.03, "):
        simulate_dataset(often, "space", 40, layout="train", lens_fraction=0.0, workers=1, progress=False)
