"""Scoring, timing and the evaluation outputs, on toy datasets and small networks (CPU)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from torch import nn

from lexactum.cli import main
from lexactum.errors import LexactumError
from lexactum.evaluation import evaluate, metrics


class MeanLogit(nn.Module):
    """logit = scale * mean pixel value: scores are known in closed form."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.dropout = nn.Dropout(0.9)

    def forward(self, x):
        return self.dropout(self.scale * x.mean(dim=(1, 2, 3)))


@pytest.fixture
def ground_model(tmp_path):
    from lexactum.models import create_model, load_model, save_model

    torch.manual_seed(0)
    path = save_model(create_model("lens_flow", in_channels=4), tmp_path / "models" / "ground_toy.safetensors")
    return load_model(path), path


def test_score_is_float64_sigmoid_in_eval_mode_for_arrays_and_loaders():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(37, 1, 8, 8)).astype(np.float32)
    model = MeanLogit(scale=40.0).train()  # dropout must be switched off by score()
    expected = 1.0 / (1.0 + np.exp(-40.0 * images.astype(np.float64).mean(axis=(1, 2, 3))))
    from_array = evaluate.score(model, images, device="cpu", batch_size=5)
    assert from_array.dtype == np.float64
    np.testing.assert_allclose(from_array, expected, rtol=1e-5)
    loader = [(torch.from_numpy(images[k:k + 10]), None, None) for k in range(0, 37, 10)]
    np.testing.assert_allclose(evaluate.score(model, loader, device="cpu"), from_array, rtol=1e-6)


def test_confident_scores_stay_distinct():
    """Logits 20 and 25 both round to 1.0 in float32; the ranking (and TPR0) needs them apart."""
    images = np.array([20.0, 25.0], dtype=np.float32).reshape(2, 1, 1, 1)
    scores = evaluate.score(MeanLogit(1.0), images, device="cpu")
    assert scores[0] < scores[1] < 1.0


def test_clock_times_every_image_after_a_warm_up():
    images = np.zeros((23, 1, 8, 8), dtype=np.float32)
    calls = []
    model = MeanLogit()
    model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    clock = evaluate.ScoringClock()
    evaluate.score(model, images, device="cpu", batch_size=10, clock=clock)
    assert calls == [10, 10, 10, 3]  # the first batch once more, untimed
    assert clock.images == 23 and clock.seconds > 0 and clock.per_image == clock.seconds / 23


def test_time_per_image_in_memory_and_from_files(make_dataset, ground_model):
    from lexactum.data.layouts import ChallengeDataset

    model, _ = ground_model
    dataset = ChallengeDataset(make_dataset("ground", n=6))
    images = np.zeros((6, 4, 101, 101), dtype=np.float32)
    timing = evaluate.time_per_image(model, images, source=dataset, device="cpu", batch_size=4)
    # Timings are measured, never compared with each other (that would make the test depend on machine load).
    assert 0 < timing["model_s_per_image"] < float("inf")
    assert 0 < timing["end_to_end_s_per_image"] < float("inf")
    without_files = evaluate.time_per_image(model, images, device="cpu", batch_size=4)
    assert without_files["end_to_end_s_per_image"] is None and without_files["model_s_per_image"] > 0


def read_scores(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_evaluate_model_writes_scores_metrics_and_roc(make_dataset, ground_model, tmp_path, capsys):
    from lexactum.data.layouts import ChallengeDataset
    from lexactum.data.normalise import normalise

    model, _ = ground_model
    dataset = ChallengeDataset(make_dataset("ground", n=14, layout="train", seed=3))
    result = evaluate.evaluate_model(model, dataset, out_dir=tmp_path / "ev", device="cpu", batch_size=4,
                                     bootstrap=50)
    rows = read_scores(tmp_path / "ev" / "scores.csv")
    assert list(rows[0]) == ["ID", "label", "score"]
    assert [int(r["ID"]) for r in rows] == dataset.ids.tolist()
    assert [int(r["label"]) for r in rows] == dataset.labels.tolist()
    scores = np.array([float(r["score"]) for r in rows])
    # Same numbers as scoring the normalised images directly.
    images = normalise(np.stack([dataset.read(i) for i in range(len(dataset))]), "zscale",
                       dataset.survey.mask_value)
    np.testing.assert_allclose(scores, evaluate.score(model, images, "cpu", 4), rtol=1e-5)
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert saved["auc"] == pytest.approx(metrics.auc(dataset.labels, scores))
    assert saved["tpr0"] == pytest.approx(metrics.tpr_at_fp(dataset.labels, scores, 0))
    assert saved["n"] == 14 and saved["intervals"]["n_resamples"] == 50
    assert saved["model_s_per_image"] > 0 and saved["end_to_end_s_per_image"] > 0
    assert saved["device"].startswith("CPU") and saved["model"]["network"] == "lens_flow"
    assert result["auc"] == saved["auc"]
    assert (tmp_path / "ev" / "roc.png").read_bytes()[:4] == b"\x89PNG"
    assert "TPR10" in capsys.readouterr().out


def test_evaluate_subset_and_prepared_data_agree_with_files(make_dataset, ground_model, tmp_path):
    from lexactum.data.cache import prepare
    from lexactum.data.layouts import ChallengeDataset

    model, _ = ground_model
    dataset = ChallengeDataset(make_dataset("ground", n=10, layout="train", seed=5))
    subset = np.array([7, 2, 5, 0, 9, 3])
    from_files = evaluate.evaluate_model(model, dataset, indices=subset, out_dir=tmp_path / "files",
                                         device="cpu", batch_size=3, bootstrap=0, verbose=False)
    prepared = prepare(dataset, "zscale", cache_dir=tmp_path / "cache", workers=1, progress=False)
    from_cache = evaluate.evaluate_model(model, prepared, indices=subset, out_dir=tmp_path / "cache_ev",
                                         device="cpu", batch_size=3, bootstrap=0, verbose=False,
                                         end_to_end_images=2)
    files_rows = read_scores(tmp_path / "files" / "scores.csv")
    cache_rows = read_scores(tmp_path / "cache_ev" / "scores.csv")
    assert [int(r["ID"]) for r in files_rows] == dataset.ids[subset].tolist()
    assert [r["ID"] for r in files_rows] == [r["ID"] for r in cache_rows]
    np.testing.assert_allclose([float(r["score"]) for r in files_rows],
                               [float(r["score"]) for r in cache_rows], rtol=1e-5)
    assert from_files["n"] == from_cache["n"] == 6
    assert from_cache["timed_images"] == 2 and from_cache["end_to_end_s_per_image"] > 0


def test_evaluate_refuses_unlabelled_objects(make_dataset, ground_model, tmp_path):
    from lexactum.data.layouts import ChallengeDataset

    root = make_dataset("ground", n=4)
    (root / "kidsB_image_catalog.csv").unlink()
    dataset = ChallengeDataset(root, require_labels=False)
    with pytest.raises(LexactumError, match="no label"):
        evaluate.evaluate_model(ground_model[0], dataset, out_dir=tmp_path / "x", device="cpu")


@pytest.mark.parametrize("indices", [[-1, 0, 1], [0, 1, 1], [0, 9]])
def test_evaluate_refuses_positions_outside_the_data_or_repeated(make_dataset, ground_model, tmp_path, indices):
    from lexactum.data.layouts import ChallengeDataset

    dataset = ChallengeDataset(make_dataset("ground", n=6))
    with pytest.raises(LexactumError, match=r"distinct and in \[0, 6\)"):
        evaluate.evaluate_model(ground_model[0], dataset, indices, out_dir=tmp_path / "x", device="cpu")
    assert not (tmp_path / "x").exists()


def test_evaluate_cli(make_dataset, ground_model, tmp_path, monkeypatch, capsys):
    from lexactum.data.layouts import ChallengeDataset
    from lexactum.models import create_model, save_model

    _, model_path = ground_model
    root = make_dataset("ground", n=12, layout="test", seed=1)
    dataset = ChallengeDataset(root)
    split = tmp_path / "run" / "split.json"
    split.parent.mkdir()
    test_ids = dataset.ids[[1, 4, 6, 8, 10, 11]].tolist()
    split.write_text(json.dumps({"train": {"ids": [1]}, "test": {"n": 6, "ids": test_ids}}))
    monkeypatch.chdir(tmp_path)  # the bare model name is looked up in ./models
    rc = main(["evaluate", "--model", model_path.name, "--dataset", str(root), "--out", "ev",
               "--ids-file", str(split.parent), "--bootstrap", "20", "--batch-size", "4", "--device", "cpu"])
    assert rc == 0
    out = tmp_path / "ev"
    assert {"scores.csv", "metrics.json", "roc.png", "config.json"} <= {p.name for p in out.iterdir()}
    assert [int(r["ID"]) for r in read_scores(out / "scores.csv")] == test_ids
    config = json.loads((out / "config.json").read_text())
    assert config["n_objects"] == 6 and config["survey"] == "ground" and config["bootstrap"] == 20

    # Bad values fail before the scoring pass and leave no output folder behind.
    for option, value in (("--batch-size", "0"), ("--bootstrap", "-1")):
        rc = main(["evaluate", "--model", model_path.name, "--dataset", str(root), "--out", "early", option, value])
        err = capsys.readouterr().err
        assert rc == 2 and option in err and value in err and not (tmp_path / "early").exists()
    with pytest.raises(LexactumError, match="bootstrap"):
        evaluate.evaluate_model(ground_model[0], dataset, out_dir=tmp_path / "never", bootstrap=-5)
    assert not (tmp_path / "never").exists()

    # A selection of lenses only fails before scoring, and the earlier results in "ev" stay as they were.
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    lens_ids = tmp_path / "lenses.txt"
    lens_ids.write_text("\n".join(str(i) for i in dataset.ids[dataset.labels == 1]) + "\n")
    rc = main(["evaluate", "--model", model_path.name, "--dataset", str(root), "--out", "ev",
               "--ids-file", str(lens_ids)])
    assert rc == 2 and "need both lenses and non-lenses" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    space_model = save_model(create_model("lens_flow", in_channels=1), tmp_path / "space.safetensors")
    rc = main(["evaluate", "--model", str(space_model), "--dataset", str(root), "--out", "bad"])
    assert rc == 2
    assert "space" in capsys.readouterr().err


def test_evaluate_cli_with_a_seed_keras_file(make_dataset, keras_fixtures, tmp_path, monkeypatch, capsys):
    """Issue 5: `lexactum evaluate --model X.h5` evaluates exactly as with our own model files."""
    import shutil

    from lexactum.data.layouts import ChallengeDataset
    from lexactum.models import load_model

    (tmp_path / "models").mkdir()
    shutil.copyfile(keras_fixtures / "lens_flow_c4.h5", tmp_path / "models" / "ground_lens_flow_9epochs.h5")
    shutil.copyfile(keras_fixtures / "lens_flow_c1.h5", tmp_path / "space_flow.h5")
    root = make_dataset("ground", n=12, layout="test", seed=2)
    monkeypatch.chdir(tmp_path)
    rc = main(["evaluate", "--model", "ground_lens_flow_9epochs.h5", "--dataset", str(root), "--out", "ev",
               "--bootstrap", "0", "--batch-size", "5", "--device", "cpu"])
    assert rc == 0
    written = {int(r["ID"]): float(r["score"]) for r in read_scores(tmp_path / "ev" / "scores.csv")}
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert saved["model"]["network"] == "lens_flow" and saved["model"]["survey"] == "ground"
    dataset = ChallengeDataset(root)
    model = load_model(tmp_path / "models" / "ground_lens_flow_9epochs.h5")
    expected, _ = evaluate.score_files(model, dataset, device="cpu")
    np.testing.assert_allclose([written[int(i)] for i in dataset.ids], expected, rtol=0, atol=1e-6)

    rc = main(["evaluate", "--model", "space_flow.h5", "--dataset", str(root), "--out", "bad"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "space_flow.h5" in err[0] and "ground" in err[0], err


# ------------------------------------------------------------------------------------ faults and bad input
def _contents(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def earlier_evaluation(make_dataset, ground_model, tmp_path):
    """(dataset root, model path, output folder of a finished evaluation)."""
    _, model_path = ground_model
    root = make_dataset("ground", n=12, layout="test", seed=1)
    out = tmp_path / "ev"
    assert main(["evaluate", "--model", str(model_path), "--dataset", str(root), "--out", str(out),
                 "--bootstrap", "10", "--device", "cpu"]) == 0
    return root, model_path, out


def test_evaluate_refuses_nan_scores_naming_the_model(earlier_evaluation, tmp_path, capsys):
    from lexactum.models import create_model, save_model

    root, _, out = earlier_evaluation
    before = _contents(out)
    broken = create_model("lens_flow", in_channels=4)
    with torch.no_grad():
        for parameter in broken.parameters():
            parameter.fill_(float("nan"))
    broken_path = save_model(broken, tmp_path / "diverged.safetensors")
    capsys.readouterr()
    assert main(["evaluate", "--model", str(broken_path), "--dataset", str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{broken_path} gave 12 non-finite score(s)" in err and len(err.strip().splitlines()) == 1
    assert _contents(out) == before


def test_evaluate_allow_nonfinite_scores_the_rest(earlier_evaluation, monkeypatch, capsys):
    root, model_path, out = earlier_evaluation
    real_score_files = evaluate.score_files

    def one_nan(*args, **kwargs):
        scores, timing = real_score_files(*args, **kwargs)
        scores[2] = np.nan
        return scores, timing

    monkeypatch.setattr(evaluate, "score_files", one_nan)
    argv = ["evaluate", "--model", str(model_path), "--dataset", str(root), "--out", str(out), "--bootstrap", "0"]
    assert main(argv) == 2 and "--allow-nonfinite" in capsys.readouterr().err
    assert main([*argv, "--allow-nonfinite"]) == 0
    assert "left out 1 object(s) (1 non-finite score)" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["n"] == 11
    assert len(read_scores(out / "scores.csv")) == 11
    with open(out / "left_out.csv", newline="") as fh:
        assert [r["reason"] for r in csv.DictReader(fh)] == ["non-finite score (nan)"]


def test_bootstrap_is_capped_before_any_work(earlier_evaluation, tmp_path, capsys):
    root, model_path, _ = earlier_evaluation
    rc = main(["evaluate", "--model", str(model_path), "--dataset", str(root), "--out", str(tmp_path / "big"),
               "--bootstrap", str(metrics.MAX_BOOTSTRAP + 1)])
    assert rc == 2 and not (tmp_path / "big").exists()
    assert f"--bootstrap {metrics.MAX_BOOTSTRAP + 1}: must be a whole number of resamples from 0 (no intervals) " \
           f"to {metrics.MAX_BOOTSTRAP:,}" in capsys.readouterr().err
    with pytest.raises(LexactumError, match=r"^bootstrap 200000: must"):  # a numpy count reads as a number
        metrics.check_bootstrap(np.int64(200_000))
    assert metrics.check_bootstrap(np.int64(metrics.MAX_BOOTSTRAP)) == metrics.MAX_BOOTSTRAP
    from lexactum.training import TrainConfig  # training's test metrics: the same bound

    with pytest.raises(LexactumError, match=f"^bootstrap {metrics.MAX_BOOTSTRAP + 1}: must"):
        TrainConfig(dataset=str(root), bootstrap=metrics.MAX_BOOTSTRAP + 1).validate()
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert f"at most {metrics.MAX_BOOTSTRAP:,})" in " ".join(capsys.readouterr().out.split())


def test_evaluate_lists_the_objects_it_left_out(make_dataset, ground_model, tmp_path, capsys):
    import shutil

    from lexactum.data.layouts import ChallengeDataset

    _, model_path = ground_model
    root = make_dataset("ground", n=10, layout="test", seed=1)
    dataset = ChallengeDataset(root)
    ids = dataset.ids.tolist()
    dataset.band_paths[1][3].unlink()  # a band file missing
    for path in dataset.band_paths[3]:  # a catalog row without images
        path.unlink()
    for path in dataset.band_paths[5]:  # images without a catalog row
        shutil.copy(path, path.with_name(path.name.replace(str(ids[5]), "199999")))
    assert main(["evaluate", "--model", str(model_path), "--dataset", str(root), "--out", str(tmp_path / "ev"),
                 "--bootstrap", "0"]) == 0
    assert ("left out 3 object(s) (1 band file missing, 1 catalog row without image files, 1 no catalog row): "
            f"listed in {tmp_path / 'ev' / 'left_out.csv'}") in capsys.readouterr().out
    with open(tmp_path / "ev" / "left_out.csv", newline="") as fh:
        left = [(int(r["ID"]), r["reason"]) for r in csv.DictReader(fh)]
    assert left == [(ids[1], "band file missing"), (ids[3], "catalog row without image files"),
                    (199999, "no catalog row (no label)")]
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["n"] == 8


def test_a_plot_that_cannot_be_written_keeps_every_earlier_output(earlier_evaluation, tmp_path, monkeypatch,
                                                                  capsys):
    """Disk full while drawing roc.png (the last file): scores.csv and metrics.json of the earlier run stay."""
    import errno

    from matplotlib.figure import Figure

    from lexactum.models import create_model, save_model

    root, _, out = earlier_evaluation
    before = _contents(out)
    torch.manual_seed(5)
    other = save_model(create_model("lens_flow", in_channels=4), tmp_path / "other.safetensors")

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full)
    assert main(["evaluate", "--model", str(other), "--dataset", str(root), "--out", str(out),
                 "--bootstrap", "0"]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {out / 'roc.png'}: no space left on device" in err and "Traceback" not in err
    assert _contents(out) == before


def test_evaluate_on_a_full_disk_is_one_line(earlier_evaluation, small_disk, capsys):
    root, model_path, _ = earlier_evaluation
    disk = small_disk("64k")
    disk.fill()
    capsys.readouterr()
    assert main(["evaluate", "--model", str(model_path), "--dataset", str(root), "--out", str(disk.root / "ev"),
                 "--bootstrap", "0"]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {disk.root / 'ev'}/" in err and "no space left on device" in err
    assert len(err.strip().splitlines()) == 1 and list((disk.root / "ev").iterdir()) == []
