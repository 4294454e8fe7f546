"""``scripts/neo4j/server.sh`` on a pid file whose server was killed but not yet reaped.

A SIGKILLed server stays a zombie until init reaps it, which some inits do seconds later; the
script used ``kill -0`` (true for a zombie), so a ``start`` right after a kill answered
"already running" and started nothing (CI: the killed-mid-load test's restart was refused).
A child of this test that is killed and never waited for is exactly such a zombie.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SERVER_SH, server_env


@pytest.fixture
def zombie() -> Iterator[int]:
    child = subprocess.Popen(["sleep", "300"])
    os.kill(child.pid, signal.SIGKILL)
    for _ in range(100):  # the kernel marks it a zombie once the signal is delivered
        if Path(f"/proc/{child.pid}/stat").read_text().rsplit(") ", 1)[1].startswith("Z"):
            break
        os.sched_yield()
    yield child.pid
    child.wait()


def test_a_killed_unreaped_server_counts_as_stopped(zombie: int, tmp_path: Path) -> None:
    port = 7  # never probed as a server of ours: status stops at the pid
    env = server_env(tmp_path, port)
    (tmp_path / f"neo4j-{port}.pid").write_text(f"{zombie}\n")
    status = subprocess.run(["bash", str(SERVER_SH), "status"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert (status.returncode, status.stdout.strip()) == (3, f"neo4j: not running on port {port}")
    stopped = subprocess.run(["bash", str(SERVER_SH), "stop"], env=env, capture_output=True,
                             text=True, timeout=60)
    assert stopped.stdout.strip() == f"neo4j: not running on port {port}"
    assert not (tmp_path / f"neo4j-{port}.pid").exists()
