"""kgrec: a knowledge-graph-fused recommender for e-commerce catalogues.

The Python API is :class:`kgrec.Recommender` (:mod:`kgrec.api`); the packages install as
``kgrec.kg`` (graph building and stores), ``kgrec.gnn`` (splits, GAT/GCN, training, metrics)
and ``kgrec.fusion`` (text embeddings, fusion and batch scoring).
"""

from __future__ import annotations

import os
from typing import Any


def _openmp_waits() -> None:
    """Before torch loads OpenMP: how its idle threads wait for the next kernel.

    A training step runs hundreds of short kernels. On a quiet machine, OpenMP's default
    (spin briefly, then sleep) hands each one over at once: ml-100k steps with 2 threads,
    LightGCN 9 ms and GAT 40 ms, against 24 and 70 ms with sleeping waits. Where other jobs
    already run, a spinning thread that gets descheduled stalls every kernel, and sleeping
    waits win: GAT 71 ms against 122-224 ms with spinning ones, both cores kept busy by two
    other processes. So: sleeping waits (``OMP_WAIT_POLICY=PASSIVE``) when, as kgrec is
    imported, at least half as many other tasks are runnable as there are CPUs. A value the
    user set wins. Only speed depends on this, never a result.
    """
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return
    try:
        cpus = len(os.sched_getaffinity(0))
        with open("/proc/loadavg") as f:  # "1m 5m 15m runnable/total last-pid"
            runnable = int(f.read().split()[3].split("/")[0])
    except (AttributeError, OSError, ValueError, IndexError):
        return
    if others_keep_cpus_busy(runnable - 1, cpus):  # ourselves excluded
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def others_keep_cpus_busy(other_runnable: int, cpus: int) -> bool:
    """Whether other runnable tasks would take at least half of ``cpus``."""
    return other_runnable >= max(1, cpus // 2)


_openmp_waits()

__all__ = ["Recommender", "Config", "load_config", "ingest", "open_store"]


def __getattr__(name: str) -> Any:
    # Lazy, so `kgrec --help` does not pay for importing torch.
    if name in ("Recommender", "ingest"):
        from kgrec import api

        return getattr(api, name)
    if name == "open_store":
        from kgrec.stores import open_store

        return open_store
    if name in ("Config", "load_config"):
        from kgrec import config

        return getattr(config, name)
    raise AttributeError(f"module 'kgrec' has no attribute {name!r}")
