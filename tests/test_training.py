"""Training: learning a toy signal, resuming exactly, the run folder, the model file, bad settings."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from lexactum import runs
from lexactum.errors import LexactumError
from lexactum.training import (
    LensFinderModule,
    TrainConfig,
    build_trainer,
    derive_seed,
    train,
    validation_auc,
)


def _config(tmp_path, dataset, **overrides) -> TrainConfig:
    settings = dict(dataset=dataset, epochs=1, batch_size=16, device="cpu", progress=False, bootstrap=0,
                    runs_root=tmp_path / "runs", models_dir=tmp_path / "models", cache_dir=tmp_path / "cache")
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short run on a toy set whose lenses carry an obvious ring (shared by the tests below)."""
    from lexactum.simulate.toy import write_toy_dataset  # what the make_dataset fixture calls, module-scoped

    tmp_path = tmp_path_factory.mktemp("trained")
    dataset = write_toy_dataset(tmp_path / "data", survey="space", n=160, layout="test", seed=3, signal=40.0)
    config = _config(tmp_path, dataset, epochs=2, batch_size=16, split=(0.5, 0.375, 0.125), seed=5)
    return config, train(config)


def test_training_learns_an_obvious_signal(trained):
    _, result = trained
    assert result.epochs_trained == 2
    assert [int(r["epoch"]) for r in result.history] == [1, 2]
    assert result.best_val_auc > 0.9
    assert float(result.history[-1]["val_auc"]) > 0.9
    assert result.metrics["auc"] > 0.8  # 20 test images: a loose bound


def test_training_switches_deterministic_mode_back_off(trained):
    # The CPU Trainer turns deterministic algorithms on for the run; left on, every later torch.empty
    # would fill its memory (slower, and it hangs in forked DataLoader workers).
    assert not torch.are_deterministic_algorithms_enabled()


def test_run_folder_holds_everything(trained):
    config, result = trained
    run_dir = result.run_dir
    assert run_dir.parent == config.runs_root
    assert run_dir.name.endswith("_space_lens_flow")
    for name in ("config.json", "split.json", "metrics.csv", "training_curves.png", "scores.csv",
                 "metrics.json", "roc.png", "last.ckpt", "best.ckpt"):
        assert (run_dir / name).is_file(), name
    # nothing hidden but the claim that kept other processes off the run while it trained
    assert not list(run_dir.glob("*.part*")) and [p.name for p in run_dir.glob(".*")] == [runs.CLAIM_FILE]

    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["config"]["network"] == "lens_flow" and saved["config"]["epochs"] == 2
    assert saved["config"]["split"] == [0.5, 0.375, 0.125]
    assert saved["device"] == "cpu" and saved["precision"] == "32-true"
    assert saved["versions"]["lexactum"]

    split = json.loads((run_dir / "split.json").read_text())
    parts = [set(split[name]["ids"]) for name in ("train", "val", "test")]
    assert [len(p) for p in parts] == [80, 60, 20]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == set(range(100_000, 100_160))

    scored = runs.read_csv(run_dir / "scores.csv")
    assert {int(r["ID"]) for r in scored} == parts[2]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n"] == 20 and math.isclose(metrics["auc"], result.metrics["auc"])


def test_model_file_reproduces_the_run_scores(trained):
    from lexactum.evaluation.evaluate import score
    from lexactum.models import load_model

    config, result = trained
    assert result.model_path == config.models_dir / "space_lens_flow_2epochs.safetensors"
    model = load_model(result.model_path, survey="space")
    meta = model.metadata
    assert (meta["network"], meta["survey"], meta["epochs"], meta["seed"]) == ("lens_flow", "space", 2, 5)
    assert meta["split"]["fractions"] == [0.5, 0.375, 0.125] and meta["split"]["n_test"] == 20
    assert math.isclose(meta["metrics"]["auc"], result.metrics["auc"])
    assert Path(meta["dataset"]) == Path(config.dataset).resolve() and meta["test_dataset"] is None

    from lexactum.data.cache import prepare

    prepared = prepare(config.dataset, cache_dir=config.cache_dir, progress=False)
    rows = runs.read_csv(result.run_dir / "scores.csv")
    position = {int(i): k for k, i in enumerate(prepared.ids)}
    index = np.array([position[int(r["ID"])] for r in rows])
    scores = score(model, np.asarray(prepared.images[np.sort(index)]), device="cpu")
    expected = np.array([float(r["score"]) for r in rows])[np.argsort(index)]
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-7)


def test_resumed_run_ends_with_the_same_weights(make_dataset, tmp_path):
    from safetensors.torch import load_file

    dataset = make_dataset(n=64, seed=11)
    # One thread for both: otherwise each run takes the idle cores, which the load of the moment decides.
    common = dict(epochs=2, batch_size=16, split=(0.5, 0.25, 0.25), seed=2, augment=True, threads=1)
    straight = train(_config(tmp_path, dataset, run_dir=tmp_path / "straight",
                             model_out=tmp_path / "straight.safetensors", **common))
    first = _config(tmp_path, dataset, run_dir=tmp_path / "resumed", model_out=tmp_path / "one.safetensors",
                    **{**common, "epochs": 1})
    train(first)
    resumed = train(TrainConfig.from_run(tmp_path / "resumed", epochs=2,
                                         model_out=tmp_path / "resumed.safetensors"))

    after_one = load_file(tmp_path / "one.safetensors")
    expected = load_file(straight.model_path)
    got = load_file(resumed.model_path)
    assert set(got) == set(expected)
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    assert any(not torch.equal(after_one[k], expected[k]) for k in expected)  # epoch 2 did change them
    assert [int(r["epoch"]) for r in resumed.history] == [1, 2]
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in straight.history]
    saved = runs.read_config(tmp_path / "resumed")
    assert saved["config"]["epochs"] == 2 and len(saved["resumed"]) == 1


def test_early_stopping_keeps_the_best_epoch(make_dataset, tmp_path):
    from lightning.pytorch.callbacks import EarlyStopping
    from safetensors.torch import load_file

    trainer = build_trainer(tmp_path / "t", epochs=5, device="cpu", patience=3, progress=False)
    stoppers = [cb for cb in trainer.callbacks if isinstance(cb, EarlyStopping)]
    assert len(stoppers) == 1 and (stoppers[0].monitor, stoppers[0].patience, stoppers[0].mode) == ("val_auc", 3, "max")

    dataset = make_dataset(n=48, seed=5)
    result = train(_config(tmp_path, dataset, epochs=2, patience=3, augment=False, split=(0.5, 0.25, 0.25),
                           run_dir=tmp_path / "run", model_out=tmp_path / "m.safetensors"))
    best = torch.load(result.run_dir / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    saved = load_file(result.model_path)
    for key, value in saved.items():
        assert torch.equal(value, best[f"network.{key}"]), key


def test_separate_test_dataset_is_scored_whole(make_dataset, tmp_path):
    training_set = make_dataset(n=40, layout="train", seed=6)
    test_set = make_dataset(n=30, layout="test", seed=7)
    result = train(_config(tmp_path, training_set, test_dataset=test_set, augment=False, run_dir=tmp_path / "run"))
    split = json.loads((result.run_dir / "split.json").read_text())
    assert (split["train"]["n"], split["val"]["n"], split["test"]["n"]) == (38, 2, 30)
    assert split["test"]["ids"] == list(range(100_000, 100_030))
    assert result.metrics["n"] == 30 and split["fractions"] == [0.95, 0.05, 0.0]
    assert json.loads((result.run_dir / "config.json").read_text())["config"]["test_dataset"] == str(test_set)
    with pytest.raises(LexactumError, match="has a test part"):
        train(_config(tmp_path, training_set, test_dataset=test_set, split=(0.5, 0.25, 0.25)))


def test_augmentation_only_touches_training_batches(tmp_path):
    from lightning.pytorch.trainer.states import RunningStage

    module = LensFinderModule("lens_flow", 1, augment=True, seed=0)
    trainer = build_trainer(tmp_path, epochs=1, device="cpu", progress=False)
    module.trainer = trainer
    images = torch.rand(4, 1, 101, 101)

    def fresh_batch():  # the loader gathers a new batch every time; training augments it in place
        return images.clone(), torch.ones(4), torch.arange(4)

    trainer.state.stage = RunningStage.VALIDATING
    assert torch.equal(module.on_after_batch_transfer(fresh_batch(), 0)[0], images)
    trainer.state.stage = RunningStage.TRAINING
    module.on_train_epoch_start()
    first = module.on_after_batch_transfer(fresh_batch(), 0)[0]
    module.on_train_epoch_start()
    again = module.on_after_batch_transfer(fresh_batch(), 0)[0]
    assert not torch.equal(first, images)
    assert torch.equal(first, again)  # seeded by (seed, epoch) only


def test_validation_auc_matches_sklearn_and_guards_one_class():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 50)
    scores = rng.random(50)
    assert math.isclose(validation_auc(labels, scores), roc_auc_score(labels, scores))
    with pytest.warns(UserWarning, match="AUC undefined"):
        assert math.isnan(validation_auc(np.ones(5, int), scores[:5]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(validation_auc(np.zeros(5, int), scores[:5], warn=False))


def test_derive_seed_depends_on_every_key():
    assert derive_seed(0, 1) == derive_seed(0, 1)
    assert len({derive_seed(0, 1), derive_seed(0, 2), derive_seed(1, 1), derive_seed(0, 1, 1)}) == 4
    assert all(0 <= derive_seed(s, e) < 2**63 for s in range(3) for e in range(3))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"epochs": 0}, "epochs must be a positive"),
    ({"epochs": 1.5}, "epochs must be a positive"),
    ({"batch_size": -8}, "batch_size must be a positive"),
    ({"split": (0.5, 0.2, 0.2)}, "sum to 1"),
    ({"split": (0.5, 0.0, 0.5)}, "validation part"),
    ({"split": (0.9, 0.1)}, "no test part"),
    ({"network": "alexnet"}, "unknown network 'alexnet'"),
    ({"patience": 0}, "patience"),
    ({"seed": -1}, "seed"),
    ({"threads": 0}, "threads must be a positive"),
])
def test_bad_settings_fail_before_any_work(tmp_path, overrides, message):
    config = _config(tmp_path, tmp_path / "missing", **overrides)
    with pytest.raises(LexactumError, match=message):
        train(config)
    assert not (tmp_path / "runs").exists()


def test_dataset_too_small_and_bad_folders(make_dataset, tmp_path):
    small = make_dataset(n=10)
    with pytest.raises(LexactumError, match="too small"):
        train(_config(tmp_path, small))  # 1% of 10 objects: no validation image
    with pytest.raises(LexactumError, match="does not exist"):
        train(_config(tmp_path, tmp_path / "nowhere"))
    with pytest.raises(LexactumError, match="not a run folder"):
        train(_config(tmp_path, small, split=(0.4, 0.3, 0.3), resume=True, run_dir=tmp_path))
    (tmp_path / "config.json").write_text("{}")  # a run folder whose first epoch never ended
    with pytest.raises(LexactumError, match="no last.ckpt"):
        train(_config(tmp_path, small, split=(0.4, 0.3, 0.3), resume=True, run_dir=tmp_path))
    assert not (tmp_path / "runs").exists()


def test_resume_trains_with_the_thread_count_of_its_run(tmp_path):
    # Sums split over another number of threads round differently: the resumed epochs must use the same.
    settings = {"dataset": str(tmp_path), "network": "lens_flow", "epochs": 1, "threads": None}
    runs.write_config(tmp_path, {"config": settings, "device": "cpu", "torch_threads": 2})
    assert TrainConfig.from_run(tmp_path).threads == 2
    assert TrainConfig.from_run(tmp_path, threads=1).threads == 1  # asked for explicitly
    runs.write_config(tmp_path, {"config": settings, "device": "cuda:0", "torch_threads": 16})
    assert TrainConfig.from_run(tmp_path).threads is None  # a GPU run's thread count is no guide


def test_resume_refuses_a_different_run(tmp_path):
    runs.write_config(tmp_path, {"config": {"dataset": str(tmp_path), "network": "lens_flow", "epochs": 1,
                                            "split": [0.19, 0.01, 0.8], "seed": 0}})
    with pytest.raises(LexactumError, match="network was 'lens_flow'"):
        TrainConfig.from_run(tmp_path, network="wsi_net")
    config = TrainConfig.from_run(tmp_path, epochs=5, network="lens_flow", split=(0.19, 0.01, 0.8))
    assert config.resume and config.epochs == 5 and config.split == (0.19, 0.01, 0.8)
    assert config.threads is None  # the run recorded no thread count: the idle cores, as for a new run
    (tmp_path / "empty").mkdir()
    with pytest.raises(LexactumError, match="not a run folder"):
        TrainConfig.from_run(tmp_path / "empty")
