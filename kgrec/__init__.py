"""kgrec: a knowledge-graph-fused recommender for e-commerce catalogues.

The Python API is :class:`kgrec.Recommender` (:mod:`kgrec.api`); the packages install as
``kgrec.kg`` (graph building and stores), ``kgrec.gnn`` (splits, GAT/GCN, training, metrics)
and ``kgrec.fusion`` (text embeddings, fusion and batch scoring).
"""

from __future__ import annotations

from typing import Any

from kgrec.gnn.cpus import choose_openmp_waits  # torch-free

choose_openmp_waits()  # before anything imports torch

__all__ = ["Recommender", "Config", "load_config", "ingest", "open_store"]


def __getattr__(name: str) -> Any:
    # Lazy, so `kgrec --help` does not pay for importing torch.
    if name == "Recommender":
        from kgrec.api import Recommender

        return Recommender
    if name == "ingest":
        from kgrec.loading import ingest

        return ingest
    if name == "open_store":
        from kgrec.stores import open_store

        return open_store
    if name in ("Config", "load_config"):
        from kgrec import config

        return getattr(config, name)
    raise AttributeError(f"module 'kgrec' has no attribute {name!r}")
