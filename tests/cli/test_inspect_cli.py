"""``lexactum inspect`` on the command line: the report, and every bad input as one line with nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lexactum.cli import main


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A labelled space evaluation by a toy lens_flow, and a ground dataset (the other survey)."""
    import torch

    from lexactum.models import create_model, save_model
    from lexactum.simulate.toy import write_toy_dataset

    root = tmp_path_factory.mktemp("inspect_cli")
    dataset = write_toy_dataset(root / "space", survey="space", n=12, layout="test", seed=1)
    write_toy_dataset(root / "ground", survey="ground", n=4, layout="test", seed=1)
    write_toy_dataset(root / "other_space", survey="space", n=12, layout="test", seed=9)  # same IDs, other labels
    torch.manual_seed(0)
    model = save_model(create_model("lens_flow", in_channels=1), root / "space.safetensors")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEXACTUM_NO_PROGRESS", "1")
        assert main(["evaluate", "--model", str(model), "--dataset", str(dataset), "--out", str(root / "ev"),
                     "--bootstrap", "0", "--device", "cpu"]) == 0
    return root


@pytest.fixture
def ev(evaluated, tmp_path):
    return Path(shutil.copytree(evaluated / "ev", tmp_path / "ev"))


def test_inspect_writes_a_report(ev, tmp_path, capsys):
    assert main(["inspect", str(ev), "--out", str(tmp_path / "report"), "--top", "3", "--random", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"report in {tmp_path / 'report'}:") and "index.html" in out
    assert (tmp_path / "report" / "data.js").is_file()


def rewrite_scores(ev: Path, edit) -> None:
    lines = (ev / "scores.csv").read_text().splitlines()
    (ev / "scores.csv").write_text("".join(line + "\n" for line in edit(lines)))


def swap_label(lines):
    head, first, *rest = lines
    object_id, label, score = first.split(",")
    return [head, f"{object_id},{1 - int(label)},{score}", *rest]


def set_config(ev: Path, **changes) -> None:
    config = json.loads((ev / "config.json").read_text())
    config.update(changes)
    (ev / "config.json").write_text(json.dumps(config))


BAD_SCORES = {
    "empty file": (lambda ev: (ev / "scores.csv").write_text(""), "scores.csv: empty score file"),
    "header only": (lambda ev: rewrite_scores(ev, lambda lines: lines[:1]), "empty score file (a header and no rows)"),
    "unknown ID": (lambda ev: rewrite_scores(ev, lambda lines: [*lines[:3], "999999,0,0.5", *lines[4:]]),
                   "scores.csv, line 4: ID 999999 is not in the dataset"),
    "text ID": (lambda ev: rewrite_scores(ev, lambda lines: [*lines, "cutout_7,0,0.5"]),
                "line 14: ID cutout_7 is not in the dataset"),
    "bad score": (lambda ev: rewrite_scores(ev, lambda lines: [*lines[:2], lines[2].rsplit(",", 1)[0] + ",high",
                                                               *lines[3:]]),
                  "scores.csv, line 3: score 'high' is not a number"),
    "NaN score": (lambda ev: rewrite_scores(ev, lambda lines: [*lines[:2], lines[2].rsplit(",", 1)[0] + ",nan",
                                                               *lines[3:]]),
                  "line 3: score 'nan' is not a finite number"),
    "bad label": (lambda ev: rewrite_scores(ev, lambda lines: [lines[0], "100000,2,0.5", *lines[2:]]),
                  "line 2: label '2' is not 0"),
    "duplicate": (lambda ev: rewrite_scores(ev, lambda lines: [*lines, lines[1]]),
                  "line 14: ID 100000 is scored twice (also on line 2)"),
    "short row": (lambda ev: rewrite_scores(ev, lambda lines: [*lines, "100001,0"]), "line 14: 2 fields"),
    "no score column": (lambda ev: rewrite_scores(ev, lambda lines: ["ID,label,value", *lines[1:]]),
                        "line 1: expected the columns ID and score"),
    "label differs from the catalog": (lambda ev: rewrite_scores(ev, swap_label),
                                       "line 2: ID 100000 has label"),
    "no scores": (lambda ev: (ev / "scores.csv").unlink(), "scores.csv: score file not found"),
    "dataset moved": (lambda ev: set_config(ev, dataset=str(ev.parent / "gone")),
                      "which is not there any more; give its new place with --dataset"),
    "model gone": (lambda ev: set_config(ev, models=[str(ev.parent / "gone.safetensors")]),
                   "gone.safetensors (named in"),
    "unknown kind": (lambda ev: set_config(ev, command="train"), "unknown kind of folder"),
    "no config": (lambda ev: (ev / "config.json").unlink(), "no config.json, so not a training run folder"),
}


@pytest.mark.parametrize("case", list(BAD_SCORES))
def test_bad_input_is_one_line_and_writes_nothing(ev, tmp_path, capsys, case):
    spoil, message = BAD_SCORES[case]
    spoil(ev)
    assert main(["inspect", str(ev), "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lexactum inspect: error:") and message in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ev"]  # no report, no temporary folder


def test_model_gone_suggests_no_saliency(ev, tmp_path, capsys):
    set_config(ev, models=[str(ev.parent / "gone.safetensors")])
    assert main(["inspect", str(ev), "--out", str(tmp_path / "report")]) == 2
    assert "--no-saliency" in capsys.readouterr().err
    assert main(["inspect", str(ev), "--out", str(tmp_path / "report"), "--no-saliency", "--top", "2"]) == 0


@pytest.mark.parametrize(("other", "message"), [
    ("ground", "holds ground images, but the scores in"),
    ("other_space", "has label"),
])
def test_another_dataset_is_refused(ev, evaluated, tmp_path, capsys, other, message):
    assert main(["inspect", str(ev), "--out", str(tmp_path / "report"), "--dataset", str(evaluated / other)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "report").exists()


def test_dataset_option_finds_a_moved_dataset(ev, evaluated, tmp_path):
    moved = Path(shutil.copytree(evaluated / "space", tmp_path / "moved"))
    set_config(ev, dataset=str(tmp_path / "gone"))
    assert main(["inspect", str(ev), "--out", str(tmp_path / "report"), "--dataset", str(moved), "--top",
                 "2"]) == 0


@pytest.mark.parametrize(("path", "message"), [
    ("missing", "missing: does not exist"),
    ("a_file", "is a file; give a training run folder"),
    ("empty", "no config.json"),
])
def test_unknown_path_kinds(tmp_path, capsys, path, message):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "empty").mkdir()
    assert main(["inspect", str(tmp_path / path), "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.mark.parametrize(("argv", "message"), [
    (["--top", "0"], "--top"),
    (["--random", "-1"], "--random must be 0 or more"),
])
def test_bad_numbers(ev, tmp_path, capsys, argv, message):
    assert main(["inspect", str(ev), "--out", str(tmp_path / "report"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_existing_report_needs_overwrite(ev, tmp_path, capsys):
    argv = ["inspect", str(ev), "--out", str(tmp_path / "report"), "--top", "1", "--no-saliency"]
    assert main(argv) == 0
    assert main(argv) == 2
    assert "already exists: use --overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
