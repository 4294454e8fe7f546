"""How OpenMP's idle threads wait: sleeping where other jobs keep the CPUs busy as kgrec is
imported, OpenMP's own default on a quiet machine, the user's choice always."""

from __future__ import annotations

import os
import subprocess
import sys

from kgrec.gnn.cpus import available_cpus, others_keep_cpus_busy

PROBE = "import os, kgrec; print(os.environ.get('OMP_WAIT_POLICY', 'default'))"


def _probe(env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


def test_half_the_cpus_taken_by_others_means_busy():
    assert [others_keep_cpus_busy(n, 2) for n in range(4)] == [False, True, True, True]
    assert [others_keep_cpus_busy(n, 16) for n in (0, 7, 8, 30)] == [False, False, True, True]
    assert others_keep_cpus_busy(1, 1) and not others_keep_cpus_busy(0, 1)


def test_sleeping_waits_while_other_processes_spin_and_the_users_choice_wins():
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    cpus = available_cpus()
    spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(max(1, cpus // 2) + 1)]
    try:
        assert _probe(env) == "PASSIVE"
        assert _probe({**env, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"
        assert _probe({**env, "GOMP_SPINCOUNT": "1000"}) == "default"
    finally:
        for proc in spin:
            proc.kill()
            proc.wait()
