"""Read-only folders (a read-only bind mount: chmod does not stop root): one line, exit 2, nothing changed."""

from __future__ import annotations

import shutil

import pytest
from faultkit import READ_ONLY, TRAIN_ARGS, assert_one_line_error, run_cli, snapshot, temporaries

pytestmark = pytest.mark.faults


def test_predict_into_a_read_only_output_folder(small_dataset, toy_model, predict_reference, tmp_path, read_only):
    out = tmp_path / "out"
    shutil.copytree(predict_reference.folder / "out", out)  # an earlier prediction
    before = snapshot(out)
    read_only(out)
    proc = run_cli(["predict", "--model", toy_model, "--out", out, "--device", "cpu", "--overwrite", small_dataset])
    assert_one_line_error(proc, "predict", [out], READ_ONLY)
    assert snapshot(out) == before


def test_resume_into_a_read_only_run_folder(train_reference, tmp_path, read_only):
    run_dir = tmp_path / "run"
    shutil.copytree(train_reference.folder / "run", run_dir)
    before = snapshot(run_dir)
    read_only(run_dir)
    model = tmp_path / "model.safetensors"
    proc = run_cli(["train", "--resume", run_dir, "--epochs", "4", "--model-out", model, "--cache-dir",
                    train_reference.folder / "cache"])
    assert_one_line_error(proc, "train", [run_dir], READ_ONLY)
    assert snapshot(run_dir) == before and not model.exists()


def test_model_out_in_a_read_only_folder(small_dataset, toy_model, tmp_path, read_only):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(toy_model, models / "other.safetensors")
    before = snapshot(models)
    read_only(models)
    run_dir = tmp_path / "run"
    proc = run_cli(["train", "--dataset", small_dataset, *TRAIN_ARGS, "--epochs", "1", "--run-dir", run_dir,
                    "--model-out", models / "new.safetensors", "--cache-dir", tmp_path / "cache"])
    assert_one_line_error(proc, "train", [models], READ_ONLY)
    assert snapshot(models) == before and temporaries(run_dir) == []


def test_prepare_into_a_read_only_cache_folder(small_dataset, tmp_path, read_only):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "keep.txt").write_text("someone else's file\n")
    before = snapshot(cache)
    read_only(cache)
    proc = run_cli(["dataset", "prepare", small_dataset, "--workers", "1", "--cache-dir", cache])
    assert_one_line_error(proc, "dataset", [cache], READ_ONLY)
    assert snapshot(cache) == before


def test_simulate_into_a_read_only_folder(tmp_path, read_only):
    out = tmp_path / "sim"
    out.mkdir()
    before = snapshot(out)
    read_only(out)
    proc = run_cli(["simulate", "--survey", "space", "--n", "3", "--workers", "1", "--out", out])
    assert_one_line_error(proc, "simulate", [out], READ_ONLY)
    assert snapshot(out) == before
