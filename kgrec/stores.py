"""Opening the configured graph store: the one place that picks LocalStore or Neo4jStore."""

from __future__ import annotations

from kgrec.config import Config
from kgrec.errors import ConfigError
from kgrec.kg.store.base import GraphStore
from kgrec.kg.store.local import LocalStore
from kgrec.settings import BACKENDS

__all__ = ["BACKENDS", "open_store"]


def open_store(config: Config, backend: str | None = None) -> GraphStore:
    """The store named by ``backend`` (default ``config.store.backend``).

    Args:
        config: settings; ``store.path`` for the local store, ``[neo4j]`` for the server.
        backend: ``"local"`` or ``"neo4j"``; overrides the config.
    """
    name = (backend or config.store.backend).lower()
    if name == "local":
        return LocalStore(config.store.path)
    if name == "neo4j":
        # Imported lazily: the embedded default must work without the neo4j driver in use.
        from kgrec.kg.store.neo4j_connect import connect

        return connect(config.neo4j, batch_size=config.store.batch_size)
    raise ConfigError(f"unknown store backend {name!r}; known: {', '.join(BACKENDS)}")
