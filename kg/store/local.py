"""LocalStore: the embedded default graph store (no server), one Parquet file per table.

Layout: ``<path>/nodes/<Label>.parquet`` and ``<path>/rels/<TYPE>.parquet``, each kept
sorted by its key (nodes by ``id``, relationships by ``(src, dst, *key)``).

Merge semantics (the same as the Neo4j store's ``MERGE ... SET``): a node or relationship
is identified by its key; a new key is created, an existing one gets the new row's
non-missing property values (missing values keep what is stored). Writing the same tables
twice therefore creates nothing and changes nothing.

Crash safety: every table is written to a temporary file and moved into place with
``os.replace``, node tables before relationship tables, so an interrupted load leaves
complete files only and re-running it completes the load without duplicates.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from kgrec.kg import schema
from kgrec.kg.errors import StoreError
from kgrec.kg.tables import (
    GraphTables,
    empty_node_table,
    empty_rel_table,
    typed_node_table,
    typed_rel_table,
)
from tqdm.auto import tqdm

#: Stand-in for a missing key value while merging (pandas cannot align on NA keys).
_NA_KEY = -(2**62)


class LocalStore:
    """The embedded store. Implements :class:`kgrec.kg.store.base.GraphStore`.

    Args:
        path: folder of the store (created on first write).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.path)!r})"

    # -- files ---------------------------------------------------------------------------
    def _file(self, name: str) -> Path:
        if name in schema.NODE_PROPERTIES:
            return self.path / "nodes" / f"{name}.parquet"
        return self.path / "rels" / f"{schema.rel_type(name)}.parquet"

    def _typed(self, name: str, frame: pd.DataFrame) -> pd.DataFrame:
        if name in schema.NODE_PROPERTIES:
            return typed_node_table(name, frame)
        return typed_rel_table(name, frame)

    def _empty(self, name: str) -> pd.DataFrame:
        if name in schema.NODE_PROPERTIES:
            return empty_node_table(name)
        return empty_rel_table(name)

    def _load(self, name: str) -> pd.DataFrame:
        file = self._file(name)
        if not file.exists():
            return self._empty(name)
        return self._typed(name, pd.read_parquet(file))

    def _save(self, name: str, frame: pd.DataFrame) -> None:
        file = self._file(name)
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.stem}.", suffix=".tmp")
        os.close(fd)
        try:
            frame.to_parquet(tmp, index=False)
            os.replace(tmp, file)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @staticmethod
    def _key(name: str) -> list[str]:
        if name in schema.NODE_PROPERTIES:
            return [schema.NODE_KEY]
        return ["src", "dst", *schema.rel_spec(name).key]

    # -- writes --------------------------------------------------------------------------
    def write(self, tables: GraphTables, *, progress: bool = True) -> dict[str, int]:
        """Merge ``tables`` into the store; returns newly created nodes/relationships per
        label/type (every label/type in ``tables`` is listed, zeros included).

        Raises:
            StoreError: a relationship names a node that is neither stored nor in ``tables``
                (checked before anything is written).
        """
        self._check_endpoints(tables)
        todo = [(n, f) for n, f in tables.nodes.items() if len(f)]
        todo += [(n, f) for n, f in tables.rels.items() if len(f)]
        created: dict[str, int] = {}
        for name, frame in tqdm(
            todo, desc=f"write {self.path.name}", unit="table", disable=not progress, leave=False
        ):
            created[name] = self._merge(name, frame)
        return created

    def _check_endpoints(self, tables: GraphTables) -> None:
        ids: dict[str, pd.Index] = {}

        def known(label: str) -> pd.Index:
            if label not in ids:
                stored = self._load(label)[schema.NODE_KEY]
                ids[label] = pd.Index(pd.concat([stored, tables.node(label)[schema.NODE_KEY]]))
            return ids[label]

        for rel, frame in tables.rels.items():
            if not len(frame):
                continue
            spec = schema.rel_spec(rel)
            for end, label in (("src", spec.src), ("dst", spec.dst)):
                missing = frame.loc[~_member(frame[end], known(label)), end]
                if len(missing):
                    raise StoreError(
                        f"{rel}: {len(missing)} relationship(s) name a {label} that does not "
                        f"exist, e.g. {end}={missing.iloc[0]!r}; load the nodes first"
                    )

    def _merge(self, name: str, frame: pd.DataFrame) -> int:
        key = self._key(name)
        new = self._typed(name, frame).drop_duplicates(key, keep="first")
        old = self._load(name)
        new_i, old_i = self._indexed(new, key), self._indexed(old, key)
        created = int((~new_i.index.isin(old_i.index)).sum())
        merged = new_i.combine_first(old_i) if len(old_i) else new_i
        merged = self._restore(name, merged, key)
        if created == 0 and merged.equals(old):
            return 0  # nothing new, nothing changed: leave the file alone
        self._save(name, merged)
        return created

    @staticmethod
    def _indexed(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
        out = frame.copy()
        for col in key:
            if str(out[col].dtype) == "Int64":
                out[col] = out[col].fillna(_NA_KEY).astype("int64")
        return out.set_index(key)

    def _restore(self, name: str, merged: pd.DataFrame, key: list[str]) -> pd.DataFrame:
        out = merged.reset_index()
        for col in key:
            if pd.api.types.is_integer_dtype(out[col]):
                out[col] = out[col].astype("Int64").mask(out[col] == _NA_KEY)
        out = self._typed(name, out)
        return out.sort_values(key, kind="stable").reset_index(drop=True)

    def write_recommendations(self, frame: pd.DataFrame, *, progress: bool = True) -> int:
        """Store ``RECOMMENDED`` rows; for each model_version, the users in ``frame`` lose
        their old recommendations of that version first (so re-runs replace, not add)."""
        recs = typed_rel_table(schema.RECOMMENDED, frame)
        recs = recs.drop_duplicates(["src", "dst", "model_version"], keep="first")
        if recs["model_version"].isna().any():
            raise StoreError("RECOMMENDED rows need a model_version")
        for end, label in (("src", schema.USER), ("dst", schema.PRODUCT)):
            stored = self._load(label)[schema.NODE_KEY]
            missing = recs.loc[~_member(recs[end], stored), end]
            if len(missing):
                raise StoreError(f"RECOMMENDED: unknown {label} {missing.iloc[0]!r}")
        old = self._load(schema.RECOMMENDED)
        replaced = old.set_index(["model_version", "src"]).index.isin(
            recs.set_index(["model_version", "src"]).index
        )
        out = pd.concat([old[~replaced], recs], ignore_index=True)
        out = out.sort_values(["src", "dst", "model_version"], kind="stable")
        self._save(schema.RECOMMENDED, out.reset_index(drop=True))
        return len(recs)

    # -- reads ---------------------------------------------------------------------------
    def iter_nodes(self, label: str, *, batch_size: int = 50_000) -> Iterator[pd.DataFrame]:
        """Nodes of ``label`` in batches of ``batch_size``, ordered by id."""
        return self._iter(schema.label(label), batch_size)

    def iter_rels(self, rel: str, *, batch_size: int = 50_000) -> Iterator[pd.DataFrame]:
        """Relationships of type ``rel`` in batches, ordered by (src, dst, *key)."""
        return self._iter(schema.rel_type(rel), batch_size)

    def _iter(self, name: str, batch_size: int) -> Iterator[pd.DataFrame]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        file = self._file(name)
        if not file.exists():
            return
        for batch in pq.ParquetFile(file).iter_batches(batch_size=batch_size):
            yield self._typed(name, batch.to_pandas())

    def counts(self) -> dict[str, int]:
        """Rows per label and relationship type (zero counts left out)."""
        out: dict[str, int] = {}
        names = [*schema.NODE_LABELS, *schema.RELATIONSHIPS, schema.RECOMMENDED]
        for name in names:
            file = self._file(name)
            if file.exists():
                rows = pq.ParquetFile(file).metadata.num_rows
                if rows:
                    out[name] = rows
        return out

    def clear(self) -> None:
        """Delete every table (tests and benchmarks)."""
        for name in [*schema.NODE_LABELS, *schema.RELATIONSHIPS, schema.RECOMMENDED]:
            self._file(name).unlink(missing_ok=True)

    def close(self) -> None:
        """Nothing is held open between calls."""


def _member(values: pd.Series | pd.Index, ids: object) -> np.ndarray:
    """Boolean mask: which ``values`` are among ``ids``. Hash lookup on object arrays:
    ``Series.isin`` on Arrow-backed strings loops in Python (seconds per 100k rows)."""
    pool = pd.Index(pd.unique(np.asarray(ids, dtype=object)))
    return pool.get_indexer(np.asarray(values, dtype=object)) >= 0
