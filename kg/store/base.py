"""The protocol both graph stores (Neo4j and the embedded default) implement."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import pandas as pd

from kgrec.kg.tables import GraphTables


@runtime_checkable
class GraphStore(Protocol):
    """A place the graph lives in. Constructors do no I/O beyond opening what they are given.

    Reads return schema-typed tables (see :mod:`kgrec.kg.tables`), in a deterministic order:
    nodes by ``id``, relationships by ``(src, dst, *key)``, so that two stores holding the
    same graph yield identical snapshots.
    """

    #: Whether each ``write_recommendations`` call rewrites the whole ``RECOMMENDED`` table
    #: (the embedded store): callers then pass every row in one call, since one call per
    #: batch would make the write grow with the square of the recommendations.
    rewrites_recommendations: bool

    def write(self, tables: GraphTables, *, progress: bool = True) -> dict[str, int]:
        """Merge ``tables`` into the store (idempotent); returns how many nodes and
        relationships of each label/type were newly created."""
        ...

    def iter_nodes(self, label: str, *, batch_size: int = 50_000) -> Iterator[pd.DataFrame]:
        """Stream the nodes of ``label`` in batches, ordered by id."""
        ...

    def iter_rels(self, rel: str, *, batch_size: int = 50_000) -> Iterator[pd.DataFrame]:
        """Stream the relationships of type ``rel`` in batches, ordered by (src, dst, key)."""
        ...

    def finish(self, *, progress: bool = True) -> None:
        """Complete a load written in parts (a bulk import runs here; the other stores have
        written each part when :meth:`write` returned)."""
        ...

    def counts(self) -> dict[str, int]:
        """Number of nodes per label and relationships per type (zero counts left out)."""
        ...

    def write_recommendations(self, frame: pd.DataFrame, *, progress: bool = True) -> int:
        """Merge ``RECOMMENDED`` relationships (columns of ``schema.rel_columns('RECOMMENDED')``),
        idempotent per ``model_version``; returns the number written."""
        ...

    def recommendation_versions(self) -> list[str]:
        """The ``model_version`` values of the stored ``RECOMMENDED`` relationships."""
        ...

    def delete_recommendation_versions(self, versions: list[str]) -> int:
        """Delete the ``RECOMMENDED`` relationships of ``versions``; returns how many."""
        ...

    def close(self) -> None:
        ...
