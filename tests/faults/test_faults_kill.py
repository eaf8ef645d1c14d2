"""kill -9 at a random point of ``dataset prepare``, ``train``, ``simulate`` and ``predict``, then the same
command again: the result equals an uninterrupted run's, and no process of the killed command survives it.

Right after the kill, whatever carries a final name must already be complete (equal to the reference); a
temporary may remain until the rerun, which must leave none.
"""

from __future__ import annotations

import csv
import filecmp
import json

import pytest
from faultkit import (
    SIMULATE_ARGS,
    TRAIN_ARGS,
    Started,
    assert_succeeded,
    files_under,
    prepare_started,
    run_cli,
    simulate_started,
    temporaries,
    train_started,
)

pytestmark = pytest.mark.faults


def _cache_equal(built, reference, context):
    assert filecmp.cmp(built / "images.f32", reference / "images.f32", shallow=False), context
    index, expected = (json.loads((p / "index.json").read_text()) for p in (built, reference))
    index.pop("created")
    expected.pop("created")
    assert index == expected, context


def _killed(argv, tmp_path, fault_rng, reference, span, progress=None, since="the start"):
    """Start ``argv``, wait for ``progress`` when given, then SIGKILL it after a delay drawn in ``span`` (as
    fractions of the time the uninterrupted ``reference`` worked from there); returns the run and the line
    that replays the draw, which every assertion message carries."""
    rng, seed = fault_rng
    run = Started(argv, tmp_path / "logs")
    if progress is not None:
        run.wait_for(progress)
    delay = rng.uniform(*span) * reference.seconds
    context = (f"{seed}: {run.kill_after(delay)} (drawn delay {delay:.2f} s after {since}; "
               f"the uninterrupted run worked {reference.seconds:.2f} s from there)")
    print(context)
    return run, context


def test_prepare_killed_then_rerun_builds_the_same_cache(prepare_dataset, prepare_reference, tmp_path, fault_rng):
    cache = tmp_path / "cache"
    argv = ["dataset", "prepare", prepare_dataset, "--workers", "2", "--cache-dir", cache]
    run, context = _killed(argv, tmp_path, fault_rng, prepare_reference, (0.05, 0.9),
                           lambda: prepare_started(cache), "the cache's temp folder appeared")
    (reference,) = [p for p in (prepare_reference.folder / "cache").iterdir() if not p.name.startswith(".")]
    built = cache / reference.name
    if built.exists():  # a cache under its final name is a finished one
        _cache_equal(built, reference, f"{context}; right after the kill")

    assert_succeeded(run_cli(argv), context)
    assert temporaries(cache) == [], context
    _cache_equal(built, reference, context)
    run.assert_nothing_left_behind()


def _tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def _metrics_rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


def test_train_killed_then_resumed_ends_with_the_same_weights(train_dataset, train_reference, tmp_path, fault_rng):
    import torch

    run_dir = tmp_path / "run"
    reference = train_reference.folder
    cache = reference / "cache"  # built by the reference run: the killed one only reads it
    first = tmp_path / "first.safetensors"
    argv = ["train", "--dataset", train_dataset, *TRAIN_ARGS, "--run-dir", run_dir, "--model-out", first,
            "--cache-dir", cache]
    # epochs 2 and 3, the scoring of the test part
    run, context = _killed(argv, tmp_path, fault_rng, train_reference, (0.0, 0.9),
                           lambda: train_started(run_dir), "the first last.ckpt")
    for checkpoint in run_dir.glob("*.ckpt"):  # whole, whenever the kill came
        torch.load(checkpoint, map_location="cpu", weights_only=False)

    # a fresh --model-out: the killed run may have finished and written its own
    resumed = tmp_path / "resumed.safetensors"
    assert_succeeded(run_cli(["train", "--resume", run_dir, "--model-out", resumed, "--cache-dir", cache]), context)
    assert temporaries(tmp_path) == [], context
    assert _metrics_rows(run_dir) == _metrics_rows(reference / "run"), context
    model = resumed if resumed.is_file() else first
    got, expected = _tensors(model), _tensors(reference / "model.safetensors")
    assert sorted(got) == sorted(expected), context
    different = [name for name in expected if not torch.equal(got[name], expected[name])]
    assert different == [], f"{context}; tensors not bit-identical to the uninterrupted run: {different}"
    run.assert_nothing_left_behind()


def test_simulate_killed_then_rerun_writes_the_same_bytes(simulate_reference, tmp_path, fault_rng):
    out = tmp_path / "sim"
    argv = ["simulate", *SIMULATE_ARGS, "--workers", "2", "--out", out]
    run, context = _killed(argv, tmp_path, fault_rng, simulate_reference, (0.0, 0.9),
                           lambda: simulate_started(out), "the first FITS file")
    expected = files_under(simulate_reference.folder / "out")
    partial = files_under(out)
    assert [name for name in partial if partial[name] != expected.get(name)] == [], \
        f"{context}; files under their final name but not complete right after the kill"

    assert_succeeded(run_cli(argv), context)
    assert temporaries(out) == [], context
    got = files_under(out)
    assert sorted(got) == sorted(expected), context
    different = [name for name in expected if got[name] != expected[name]]
    assert different == [], f"{context}; files differ from the uninterrupted run: {different[:10]}"
    run.assert_nothing_left_behind()


def test_predict_killed_then_rerun_writes_the_same_bytes(prepare_dataset, toy_model, predict_reference, tmp_path,
                                                         fault_rng):
    out = tmp_path / "out"
    argv = ["predict", "--model", toy_model, "--out", out, "--device", "cpu", prepare_dataset]
    # nothing to watch: the imports come first
    run, context = _killed(argv, tmp_path, fault_rng, predict_reference, (0.4, 1.0))
    reference = predict_reference.folder / "out"
    names = ("scores.csv", "submission.txt")
    for name in names:
        if (out / name).exists():
            assert (out / name).read_bytes() == (reference / name).read_bytes(), \
                f"{context}; {name} exists right after the kill but is not complete"

    assert_succeeded(run_cli(argv), context)
    assert temporaries(out) == [], context
    for name in names:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), f"{context}; {name} differs"
    run.assert_nothing_left_behind()
