"""The CPUs a process may use, and how OpenMP's idle threads wait: no torch import here,
because the wait policy must be chosen before torch loads OpenMP (``kgrec/__init__.py``)."""

from __future__ import annotations

import os
from pathlib import Path


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask, bounded by a cgroup v2 CPU quota
    (a container limited to 2 CPUs on a 64-core host reports 64 in ``os.cpu_count()``)."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        count = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            count = min(count, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, count)


def others_keep_cpus_busy(other_runnable: int, cpus: int) -> bool:
    """Whether other runnable tasks would take at least half of ``cpus``."""
    return other_runnable >= max(1, cpus // 2)


def choose_openmp_waits() -> None:
    """Before torch loads OpenMP: how its idle threads wait for the next kernel.

    A training step runs hundreds of short kernels. On a quiet machine, OpenMP's default
    (spin briefly, then sleep) hands each one over at once: ml-100k steps with 2 threads,
    LightGCN 9 ms and GAT 40 ms, against 24 and 70 ms with sleeping waits. Where other jobs
    already run, a spinning thread that gets descheduled stalls every kernel, and sleeping
    waits win: GAT 71 ms against 122-224 ms with spinning ones, both cores kept busy by two
    other processes. So: sleeping waits (``OMP_WAIT_POLICY=PASSIVE``) when, as kgrec is
    imported, other runnable tasks would take at least half of :func:`available_cpus`. A
    value the user set wins. Only speed depends on this, never a result.
    """
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return
    try:
        with open("/proc/loadavg") as f:  # "1m 5m 15m runnable/total last-pid"
            runnable = int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return
    if others_keep_cpus_busy(runnable - 1, available_cpus()):  # ourselves excluded
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
