"""Worker processes die with the command that started them: nothing is left behind after a kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux only)")

#: A pool of two workers that each mark that they started, then wait for a long time.
POOL_DRIVER = """
import os, sys, time
from lexactum import processes

def task(_):
    open(os.path.join(sys.argv[3], f"started-{os.getpid()}"), "w").close()
    time.sleep(600)

if __name__ == "__main__":
    kind, method = sys.argv[1], sys.argv[2]
    if kind == "pool":
        pool = processes.pool(2, method)
        pool.map_async(task, range(2), chunksize=1)
    else:
        pool = processes.executor(2, method)
        futures = [pool.submit(task, i) for i in range(2)]
    time.sleep(600)
"""

#: ``lexactum dataset prepare`` whose work units wait for a long time once their worker marked its start.
PREPARE_DRIVER = """
import os, sys, time
from lexactum.data import cache

def slow_chunk(task):
    open(os.path.join(os.environ["STARTED"], f"started-{os.getpid()}"), "w").close()
    time.sleep(600)

if __name__ == "__main__":
    import prepare_driver
    cache._prepare_chunk = prepare_driver.slow_chunk  # by module name: the workers import it too
    cache.CHUNK_OBJECTS = 1
    from lexactum.cli import main
    sys.exit(main(sys.argv[1:]))
"""


def _tagged(tag: str) -> list[int]:
    """Process IDs whose environment holds ``LEXACTUM_TEST_TAG=tag`` (the command and all it started)."""
    marker = f"LEXACTUM_TEST_TAG={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:  # ended meanwhile
                continue
    return found


def _kill_once_started(argv: list[str], started: Path, env: dict) -> list[int]:
    """Run ``argv``, kill -9 it once two workers have started, and return the tagged processes left after
    they had a few seconds to go (those are then killed, so that a failing test leaves nothing either)."""
    tag = uuid.uuid4().hex
    started.mkdir()
    proc = subprocess.Popen(argv, env=dict(env, LEXACTUM_TEST_TAG=tag, STARTED=str(started)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(list(started.iterdir())) < 2:
            assert proc.poll() is None, f"the command ended (status {proc.returncode}) before its workers started"
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.05)
        assert len(_tagged(tag)) >= 3  # the command and its workers at least
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while (left := _tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left


@pytest.mark.parametrize("kind, method", [("executor", "forkserver"), ("pool", "fork"), ("pool", "spawn")])
def test_workers_die_with_their_parent(tmp_path, kind, method):
    script = tmp_path / "pool_driver.py"
    script.write_text(POOL_DRIVER)
    left = _kill_once_started([sys.executable, str(script), kind, method, str(tmp_path / "started")],
                              tmp_path / "started", dict(os.environ))
    assert left == [], "processes left after kill -9"


def test_killed_prepare_leaves_no_process(make_dataset, tmp_path):
    """kill -9 of ``dataset prepare --workers 2``: the workers, the forkserver and the resource tracker go."""
    root = make_dataset(survey="space", n=6, layout="train")
    (tmp_path / "prepare_driver.py").write_text(PREPARE_DRIVER)
    argv = [sys.executable, str(tmp_path / "prepare_driver.py"), "dataset", "prepare", str(root),
            "--cache-dir", str(tmp_path / "cache"), "--workers", "2"]
    left = _kill_once_started(argv, tmp_path / "started", dict(os.environ))
    assert left == [], "processes left after kill -9"
