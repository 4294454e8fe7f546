"""kgrec: a knowledge-graph-fused recommender for e-commerce catalogues.

The Python API is :class:`kgrec.Recommender` (:mod:`kgrec.api`); the packages install as
``kgrec.kg`` (graph building and stores), ``kgrec.gnn`` (splits, GAT/GCN, training, metrics)
and ``kgrec.fusion`` (text embeddings, fusion and batch scoring).
"""

from __future__ import annotations

import os
from typing import Any

# Before torch loads OpenMP: threads that wait for work sleep instead of spinning, so a
# machine busy with other jobs does not stall every parallel kernel on a descheduled
# spinner (ml-100k LightGCN steps with 2 threads at load 3: 45 ms spinning, 25 ms passive).
# A value set by the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
