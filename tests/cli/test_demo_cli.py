"""`lexactum demo` on a tiny setting: simulate when absent, train, evaluate, and report every output."""

from __future__ import annotations

import json
from pathlib import Path

from lexactum.cli import main


def test_demo_simulates_trains_and_writes_every_result(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEXACTUM_CACHE_DIR", str(tmp_path / "cache"))
    data, run = tmp_path / "data" / "space", tmp_path / "run"
    argv = ["demo", "--data", str(data), "--n", "60", "--epochs", "1", "--batch-size", "16",
            "--split", "0.5,0.25,0.25", "--run-dir", str(run), "--models-dir", str(tmp_path / "models"),
            "--top", "4"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "simulating 60 space images" in out
    assert (data / "euclidB_image_catalog.csv").is_file()
    for name in ("roc.png", "metrics.json", "training_curves.png", "top_scored.png", "config.json",
                 "scores.csv", "split.json"):
        assert (run / name).is_file(), name
        assert str(run / name) in out or name in ("scores.csv", "split.json")
    model = tmp_path / "models" / "space_lens_flow_1epochs.safetensors"
    assert model.is_file() and str(model) in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert f"Test AUC {metrics['auc']:.4f}" in out
    assert (run / "top_scored.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_refuses_a_bad_size_before_writing_anything(tmp_path, capsys):
    assert main(["demo", "--n", "0", "--data", str(tmp_path / "x")]) == 2
    assert "--n must be a positive number" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_demo_twice_keeps_the_first_model(tmp_path, capsys, monkeypatch):
    """``make demo`` twice in one clone: the second model takes a free name, the first is not replaced."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEXACTUM_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["demo", "--data", str(tmp_path / "data"), "--n", "60", "--epochs", "1", "--batch-size", "16",
            "--split", "0.5,0.25,0.25", "--top", "4"]
    assert main(argv) == 0
    first = tmp_path / "models" / "space_lens_flow_1epochs.safetensors"
    before = first.read_bytes()
    capsys.readouterr()
    assert main(argv) == 0
    second = tmp_path / "models" / "space_lens_flow_1epochs-2.safetensors"
    out = capsys.readouterr().out
    assert f"will be saved as {Path('models') / second.name}" in out and str(Path("models") / second.name) in out
    assert first.read_bytes() == before and second.is_file()
    assert len(list((tmp_path / "runs").iterdir())) == 2
