"""``lexactum simulate``: options, report, one-line errors, light imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lexactum.cli import main


def test_simulate_writes_a_dataset_and_a_report(tmp_path, capsys):
    out = tmp_path / "sim"
    code = main(["simulate", "--survey", "ground", "--n", "6", "--out", str(out), "--layout", "train",
                 "--seed", "2", "--lens-fraction", "0.5", "--workers", "1", "--report", "--report-lenses", "12"])
    assert code == 0
    text = capsys.readouterr().out
    assert f"wrote 6 ground objects (train layout, randomised) to {out}" in text
    assert "Einstein radius (\") simulated" in text and "KS" in text
    assert (out / "classifications.csv").is_file()
    png = out / "simulation-report.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, message", [
    (["--n", "0"], "--n must be a positive number of objects, got 0"),
    (["--survey", "hubble"], "unknown survey 'hubble'"),
    (["--lens-fraction", "2"], "lens fraction must lie in [0, 1], got 2.0"),
    (["--impostors", "40", "--layout", "train"], "--impostors must be a factor from 0 to 33.33 (the largest"),
    (["--impostors", "2"], "--impostors applies to randomised datasets only"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "sim"
    args = {"--survey": "space", "--n": "3", "--out": str(out)}
    args.update(dict(zip(argv[::2], argv[1::2], strict=True)))
    code = main(["simulate"] + [x for pair in args.items() for x in pair])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and message in err and err.startswith("lexactum simulate: error:")
    assert not out.exists()


def test_a_simulation_its_disk_cannot_hold_is_refused_at_once(tmp_path, capsys, monkeypatch):
    import shutil

    out = tmp_path / "sim"
    free = 2 * 46080  # space: one FITS file of 46080 bytes per object
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - free, free))
    code = main(["simulate", "--survey", "space", "--n", "3", "--out", str(out), "--workers", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"lexactum simulate: error: no space left on {tmp_path} for 3 objects: need "
                                 "138.2 kB, 92.2 kB free (free some space, or choose another --out or a smaller --n)"]
    assert not out.exists()


def test_a_bad_real_key_is_refused_before_simulating(tmp_path, capsys):
    out = tmp_path / "sim"
    key = tmp_path / "key.csv"
    key.write_text("a,b\n1,2\n")
    code = main(["simulate", "--survey", "space", "--n", "2", "--out", str(out), "--workers", "1", "--report",
                 "--real-key", str(key)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "key.csv: not a training key" in err
    assert not out.exists()


def test_another_dataset_in_out_is_refused_without_overwrite(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", "--survey", "space", "--n", "2", "--out", str(out), "--workers", "1"]) == 0
    before = sorted(p.name for p in out.rglob("*"))
    assert main(["simulate", "--survey", "space", "--n", "3", "--out", str(out), "--workers", "1"]) == 2
    assert "holds a simulation with other parameters: n 2 (now 3)" in capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*")) == before
    assert main(["simulate", "--survey", "space", "--n", "3", "--out", str(out), "--workers", "1",
                 "--overwrite"]) == 0
    assert len(list(out.rglob("*.fits"))) == 3


def test_the_module_imports_nothing_heavy():
    code = ("import sys, lexactum.cli.simulate; "
            "print(sorted(m for m in ('numpy', 'torch', 'lightning', 'matplotlib', 'astropy', 'lenstronomy') "
            "if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_help_text(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "lexactum simulate --survey space --n 4000" in text and "--lens-fraction" in text
