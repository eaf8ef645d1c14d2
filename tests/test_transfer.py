"""lexactum transfer-check: the table is challenge_metrics of the written scores, the histograms are drawn, the real
samples are scored when present, a second call reuses the model, and bad input is one line before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lexactum import runs
from lexactum.cli import main
from lexactum.errors import LexactumError
from lexactum.evaluation.metrics import challenge_metrics
from lexactum.transfer import TransferSettings, transfer_check
from lexactum.transfer.report import METRICS

#: The real challenge samples (tests/conftest.py's ``samples`` fixture skips without them).
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "challenge_samples"

BOOTSTRAP = 50


def _tiny(out, **changes) -> TransferSettings:
    values = dict(survey="space", out=out, n_train=60, n_test=60, epochs=1, batch_size=16, bootstrap=BOOTSTRAP,
                  device="cpu", workers=1, progress=False, real=SAMPLES if SAMPLES.is_dir() else None)
    values.update(changes)
    return TransferSettings(**values)


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """One tiny check for the whole module (simulating and training once): (out folder, returned rows)."""
    out = tmp_path_factory.mktemp("transfer") / "check"
    return out, transfer_check(_tiny(out))


def _scores(path):
    rows = runs.read_csv(path)
    return np.array([int(r["label"]) for r in rows]), np.array([float(r["score"]) for r in rows])


def test_the_table_is_challenge_metrics_of_the_written_scores(checked):
    out, returned = checked
    table = runs.read_csv(out / "transfer.csv")
    assert [r["set"] for r in table][:2] == ["sim_A_test", "sim_B"]
    assert len(table) == len(returned)
    for row in table:
        labels, scores = _scores(out / f"scores-{row['set']}.csv")
        expected = challenge_metrics(labels, scores, bootstrap=BOOTSTRAP, seed=0)
        assert int(row["n"]) == expected["n"] == len(scores)
        assert int(row["lenses"]) == expected["n_lenses"]
        for m in METRICS:
            assert float(row[m]) == pytest.approx(expected[m], rel=1e-12)
            low, high = expected["intervals"][m]
            assert float(row[f"{m}_low"]) == pytest.approx(low, rel=1e-12)
            assert float(row[f"{m}_high"]) == pytest.approx(high, rel=1e-12)
    markdown = (out / "transfer.md").read_text()
    for row in table:
        assert f"| {row['set']} | {row['n']} | {row['lenses']} | {float(row['auc']):.3f} [" in markdown


def test_set_a_is_the_held_out_part_and_set_b_another_simulation(checked):
    out, _ = checked
    split = runs.read_split(out / "run")
    a_ids = {int(r["ID"]) for r in runs.read_csv(out / "scores-sim_A_test.csv")}
    assert a_ids == set(split["test"]["ids"]) and not a_ids & set(split["train"]["ids"])
    b = (out / "sim-B" / "classifications.csv").read_text()
    a = (out / "sim-A" / "classifications.csv").read_text()
    assert b.splitlines()[1] != a.splitlines()[1]  # another seed: other objects under the same IDs
    assert runs.read_json(out / "config.json")["settings"]["seed_b"] == 1


def test_the_non_lenses_of_each_simulated_set_are_scored_per_impostor_kind(checked):
    """impostors-by-kind.csv: for each kind its non-lenses' count and median score, and the AUC of the set's
    lenses against them alone, recomputed here from the scores and the sets' impostors.csv."""
    from lexactum.evaluation.metrics import auc
    from lexactum.simulate.writer import read_impostor_truth

    out, _ = checked
    table = runs.read_csv(out / "impostors-by-kind.csv")
    assert {r["set"] for r in table} == {"sim_A_test", "sim_B"}
    assert {r["kind"] for r in table} - {"(none)"}  # the tiny sets hold impostors too
    for name, folder in (("sim_A_test", "sim-A"), ("sim_B", "sim-B")):
        truth = read_impostor_truth(out / folder)
        rows = runs.read_csv(out / f"scores-{name}.csv")
        lenses = [float(r["score"]) for r in rows if r["label"] == "1"]
        for row in (r for r in table if r["set"] == name):
            chosen = [float(r["score"]) for r in rows if r["label"] == "0"
                      and (row["kind"] in truth[int(r["ID"])] or (row["kind"] == "(none)" and not truth[int(r["ID"])]))]
            assert int(row["n"]) == len(chosen) > 0
            assert float(row["median_score"]) == pytest.approx(np.median(chosen))
            expected = auc(np.r_[np.ones(len(lenses)), np.zeros(len(chosen))], np.r_[lenses, chosen])
            assert float(row["auc"]) == pytest.approx(expected)
    assert "## Non-lenses by impostor kind" in (out / "transfer.md").read_text()
    assert "impostors-by-kind.csv" in runs.read_json(out / "config.json")["outputs"]


def test_the_histograms_are_a_drawn_picture(checked):
    import matplotlib.image

    out, _ = checked
    picture = matplotlib.image.imread(out / "histograms.png")
    assert picture.shape[0] > 200 and picture.shape[1] > 400
    assert picture[..., :3].std() > 0.05  # not a blank page
    colours = {tuple(np.round(p, 1)) for p in picture[..., :3].reshape(-1, 3)[::7]}
    assert len(colours) > 4  # lines of several colours, not only black on white


def test_the_real_samples_get_their_row(checked):
    if not SAMPLES.is_dir():
        pytest.skip("../shared/challenge_samples is not present")
    out, _ = checked
    row = next(r for r in runs.read_csv(out / "transfer.csv") if r["set"] == "real")
    labels, _ = _scores(out / "scores-real.csv")
    assert (int(row["n"]), int(row["lenses"])) == (8, 4) == (len(labels), int(labels.sum()))
    ids = {int(r["ID"]) for r in runs.read_csv(out / "scores-real.csv") if r["label"] == "1"}
    assert ids == {100002, 100003, 100008, 100010}  # the samples' lens/ folder, as the real key says


def test_a_second_call_reuses_the_simulations_and_the_model(checked, monkeypatch):
    import lexactum.training

    out, returned = checked
    model_bytes = (out / "model.safetensors").read_bytes()

    def no_training(config):
        raise AssertionError("trained again")

    monkeypatch.setattr(lexactum.training, "train", no_training)
    assert transfer_check(_tiny(out)) == returned
    assert (out / "model.safetensors").read_bytes() == model_bytes


def test_other_settings_in_a_used_folder_are_refused_and_nothing_changes(checked):
    out, _ = checked
    before = (out / "transfer.csv").read_bytes()
    with pytest.raises(LexactumError, match="n_train was 60, now 80.*--overwrite"):
        transfer_check(_tiny(out, n_train=80))
    assert (out / "transfer.csv").read_bytes() == before


def test_overwrite_with_other_set_b_settings_keeps_set_a_and_the_network(tmp_path, monkeypatch):
    """Comparing one trained network on several B settings should not retrain it each time; other epochs
    retrain it without simulating set A again."""
    import lexactum.training

    out = tmp_path / "check"
    transfer_check(_tiny(out, real=None))
    kept = {name: (out / name).read_bytes() for name in ("model.safetensors", "sim-A/classifications.csv")}
    b_before = (out / "sim-B" / "classifications.csv").read_bytes()
    import lexactum.simulate.writer as writer

    simulate, anew = writer.simulate_dataset, []

    def simulated(path, *args, **kwargs):  # the sets simulated anew (replacing the earlier one)
        if kwargs["overwrite"]:
            anew.append(Path(path).name)
        return simulate(path, *args, **kwargs)

    monkeypatch.setattr(writer, "simulate_dataset", simulated)
    trained = []

    def training(config):
        trained.append(config)
        raise LexactumError("training stopped here by the test")

    monkeypatch.setattr(lexactum.training, "train", training)
    transfer_check(_tiny(out, real=None, seed_b=2, overwrite=True))
    assert not trained and anew == ["sim-B"]
    assert {name: (out / name).read_bytes() for name in kept} == kept
    assert (out / "sim-B" / "classifications.csv").read_bytes() != b_before
    assert runs.read_json(out / "config.json")["settings"]["seed_b"] == 2
    with pytest.raises(LexactumError, match="stopped here by the test"):
        transfer_check(_tiny(out, real=None, seed_b=2, epochs=2, overwrite=True))
    assert len(trained) == 1 and trained[0].epochs == 2  # other epochs: trained again, on the same set A
    assert anew == ["sim-B"]  # set A is not simulated again


def test_a_set_simulated_by_another_simulator_version_is_refused_then_redone_with_overwrite(tmp_path, monkeypatch):
    """A set whose manifest differs from what this simulator writes (another version's impostor rates) is never
    resumed or reused: refused naming the set and the parameter; --overwrite simulates it again, and a new set
    A also trains the network again."""
    import json

    import lexactum.simulate.writer as writer
    import lexactum.training

    out = tmp_path / "check"
    transfer_check(_tiny(out, real=None))
    manifest = out / "sim-A" / writer.MANIFEST
    made = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(dict(made, impostor_rates=None)))  # as a version before the rates were kept
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(LexactumError, match=r"sim-A was simulated by another version of the simulator "
                                            r"\(impostor_rates was None, now \{'spiral'.*--overwrite"):
        transfer_check(_tiny(out, real=None))
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    simulate, anew, trained = writer.simulate_dataset, [], []

    def simulated(path, *args, **kwargs):
        if kwargs["overwrite"]:
            anew.append(Path(path).name)
        return simulate(path, *args, **kwargs)

    def training(config):
        trained.append(config)
        raise LexactumError("training stopped here by the test")

    monkeypatch.setattr(writer, "simulate_dataset", simulated)
    monkeypatch.setattr(lexactum.training, "train", training)
    with pytest.raises(LexactumError, match="stopped here by the test"):
        transfer_check(_tiny(out, real=None, overwrite=True))
    assert anew == ["sim-A"] and len(trained) == 1
    assert json.loads(manifest.read_text())["impostor_rates"] == made["impostor_rates"]


def test_each_sets_settings_go_to_its_simulation(tmp_path, monkeypatch):
    """--setting-a randomise=false trains on the fixed simulator while B stays randomised, and the reverse."""
    import functools

    import lexactum.simulate.writer as writer
    import lexactum.training

    calls = []

    @functools.wraps(writer.simulate_dataset)  # its signature: the settings are checked against it
    def simulated(out, survey, n, **kwargs):
        calls.append((Path(out).name, kwargs))
        if Path(out).name == "sim-A":
            raise LexactumError("simulation stopped here by the test")

    monkeypatch.setattr(writer, "simulate_dataset", simulated)
    monkeypatch.setattr(lexactum.training, "train", lambda config: None)
    settings = _tiny(tmp_path / "out", real=None, settings_a={"randomise": False},
                     settings_b={"min_lensed_flux": 300.0})
    with pytest.raises(LexactumError, match="stopped here"):
        transfer_check(settings)
    assert calls[0][0] == "sim-A" and calls[0][1]["randomise"] is False and calls[0][1]["seed"] == 0
    assert "min_lensed_flux" not in calls[0][1]
    from lexactum.transfer import run

    run._simulate(settings, "sim-B", 60, 1, settings.settings_b)
    assert calls[1][0] == "sim-B" and calls[1][1]["min_lensed_flux"] == 300.0 and "randomise" not in calls[1][1]


def _fits(path, value=1.0):
    from astropy.io import fits

    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(np.random.default_rng(0).normal(value, 1, (101, 101)).astype(np.float32)).writeto(path)


@pytest.mark.parametrize("layout, message", [
    ({}, "no complete space images (imageEUC_VIS-<ID>.fits) under this folder"),
    ({"x/imageEUC_VIS-100001.fits": 1}, "has no label (no catalog with is_lens"),
    ({"lens/imageEUC_VIS-100001.fits": 1, "lens/imageEUC_VIS-100002.fits": 1}, "images are all lenses"),
])
def test_a_bad_real_folder_is_one_line_before_any_work(tmp_path, capsys, layout, message):
    real = tmp_path / "real"
    real.mkdir()
    for name in layout:
        _fits(real / name)
    out = tmp_path / "out"
    code = main(["transfer-check", "--survey", "space", "--n-train", "60", "--n-test", "60", "--epochs", "1",
                 "--real", str(real), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("lexactum transfer-check: error: --real") and err.count("\n") == 1 and message in err
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["--n-test", "10"], "--n-test 10 is too small: with 70% lenses it holds about 3.0 of the rarer class"),
    (["--n-train", "0"], "--n-train must be a positive whole number, got 0"),
    (["--seed-b", "0"], "--seed-b 0 equals --seed-a"),
    (["--setting-b", "wobble=2"], "--setting-b wobble: not a setting of this simulator"),
    (["--setting-b", "wobble"], "--setting-b 'wobble': expected KEY=VALUE"),
    (["--setting-a", "wobble=2"], "--setting-a wobble: not a setting of this simulator"),
    (["--setting-a", "=1"], "--setting-a '=1': expected KEY=VALUE"),
    (["--setting-b", "impostors=99"], "--setting-b: --impostors must be a factor from 0 to"),
    (["--setting-b", 'impostors="many"'], "--setting-b: --impostors must be a factor from 0 to 33.33"),
    (["--setting-a", "lens_fraction=true"], "--setting-a: lens fraction must lie in [0, 1], got True"),
    (["--setting-a", "randomise=false", "--setting-a", "impostors=0.5"],
     "--setting-a: --impostors applies to randomised datasets only"),
    (["--bootstrap", "-1"], "--bootstrap -1: must be a whole number of resamples"),
])
def test_bad_settings_are_one_line_before_any_work(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    code = main(["transfer-check", "--survey", "space", "--n-train", "60", "--n-test", "60", "--epochs", "1",
                 "--out", str(out), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("lexactum transfer-check: error:") and err.count("\n") == 1 and message in err
    assert not out.exists()


def test_real_labels_come_from_a_catalog_when_the_folder_has_one(make_dataset):
    from lexactum.data import ChallengeDataset
    from lexactum.transfer.real import read_real

    root = make_dataset("space", n=12, layout="train")
    real = read_real(root, "space")
    data = ChallengeDataset(root, survey="space")
    assert list(real.ids) == list(data.ids) and list(real.labels) == list(data.labels)
    assert real.images.shape == (12, 1, 101, 101)


def test_a_check_killed_after_training_resumes_its_run_without_training_again(checked, monkeypatch):
    import lexactum.training

    out, returned = checked
    (out / "config.json").unlink()  # as if killed before the outputs were written
    (out / "model.safetensors").unlink()
    resumed = []
    real_train = lexactum.training.train

    def recording(config):
        resumed.append(config.resume)
        return real_train(config)

    monkeypatch.setattr(lexactum.training, "train", recording)
    rows = transfer_check(_tiny(out))
    assert resumed == [True]
    assert runs.read_json(out / "run" / "config.json")["config"]["epochs"] == 1
    assert [r["set"] for r in rows] == [r["set"] for r in returned]
    assert rows[0] == returned[0]  # the same model scored the same held-out objects


def test_a_run_killed_before_its_first_checkpoint_starts_afresh(tmp_path):
    from lexactum.transfer.run import _training_config

    out = tmp_path / "check"
    runs.write_json(out / "run" / "config.json", {"config": {"dataset": str(tmp_path / "sim-A")}})
    config = _training_config(_tiny(out), tmp_path / "sim-A")
    assert not config.resume and not (out / "run").exists()
    assert config.split[2] == pytest.approx(0.5) and config.run_dir == str(out / "run")


def test_kinds_with_few_non_lenses_are_marked_and_the_note_says_how_to_get_more():
    from lexactum.transfer.report import FEW, PLAIN, markdown_impostors

    rows = [{"set": "sim_B", "kind": PLAIN, "n": 5, "auc": 0.8, "median_score": 0.4},
            {"set": "sim_B", "kind": "ring", "n": FEW - 1, "auc": 0.6, "median_score": 0.7},
            {"set": "sim_B", "kind": "spiral", "n": FEW, "auc": None, "median_score": 0.5}]
    text = markdown_impostors(rows)
    assert f"| sim_B | ring | {FEW - 1}* | 0.600 | 0.700 |" in text
    assert f"| sim_B | spiral | {FEW} | - | 0.500 |" in text and "| sim_B | (none) | 5 |" in text
    assert "--setting-b impostors=4" in text
    assert "impostors=4" not in markdown_impostors([rows[0], rows[2]])
