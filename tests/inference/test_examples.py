"""The Slurm example for prediction stays a valid command: its ``lexactum predict`` line parses with our parser."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from lexactum.cli import build_parser

#: Values of the script's count variables; every other variable stands for a path.
COUNTS = {"NODES": "4", "GPUS_PER_NODE": "4"}
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "slurm_predict.sh"


def commands(script: str, name: str) -> list[list[str]]:
    """Every ``lexactum NAME ...`` command of a shell script (continuation lines joined, variables given a value)."""
    joined = re.sub(r"\\\n", " ", script)
    found = []
    for line in joined.splitlines():
        if line.lstrip().startswith("#"):
            continue
        match = re.search(rf"\blexactum {name}\b(.*)", line)
        if match:
            text = re.sub(r"\$\{?(\w+)\}?", lambda m: COUNTS.get(m.group(1), f"/x/{m.group(1)}"), match.group(1))
            found.append([name, *shlex.split(text)])
    return found


def test_the_slurm_prediction_example_parses_and_is_valid_bash():
    script = EXAMPLE.read_text()
    assert subprocess.run(["bash", "-n", str(EXAMPLE)]).returncode == 0
    found = commands(script, "predict")
    assert len(found) == 1
    args = build_parser().parse_args(found[0])
    assert args.command == "predict" and len(args.model) == 2 and args.tta == 8 and args.parquet
    assert args.devices == 4 and args.num_nodes == 4 and args.accelerator == "gpu"
    tasks = int(re.search(r"--ntasks-per-node=(\d+)", script).group(1))
    assert tasks == args.devices  # one Slurm task per device, as Lightning expects under srun
