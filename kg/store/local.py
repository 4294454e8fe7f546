"""LocalStore: the embedded default graph store (no server), Parquet parts per table.

Layout: ``<path>/nodes/<Label>/part-NNNNNN.parquet`` and ``<path>/rels/<TYPE>/part-...``:
every write adds at most one part per table (its new keys, sorted by key) and rewrites only
the older parts holding keys it updates. Parts never share a key, so a table is the plain
union of its parts and appending a chunk costs the chunk, not the whole table (streaming
ingest). Each part carries ``_key``, a 64-bit hash of the row's key, so finding which keys
are stored reads one integer column per part. (A store of the older one-file-per-table
layout, ``<Label>.parquet``, is read as one part.)

Merge semantics (the same as the Neo4j store's ``MERGE ... SET``): a node or relationship
is identified by its key; a new key is created, an existing one gets the new row's
non-missing property values (missing values keep what is stored). Writing the same tables
twice therefore creates nothing and changes nothing.

Crash safety: every part is written to a temporary file and moved into place with
``os.replace``, node tables before relationship tables, so an interrupted load leaves
complete parts only and re-running it completes the load without duplicates.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from kgrec.errors import StoreError, UsageError
from kgrec.files import atomic_write
from kgrec.kg import schema
from kgrec.kg.tables import (
    GraphTables,
    empty_node_table,
    empty_rel_table,
    typed_node_table,
    typed_rel_table,
)

#: Stand-in for a missing key value while merging (pandas cannot align on NA keys).
_NA_KEY = -(2**62)


class LocalStore:
    """The embedded store. Implements :class:`kgrec.kg.store.base.GraphStore`.

    Args:
        path: folder of the store (created on first write).
    """

    rewrites_recommendations = True

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        #: Part file -> (its stat token, its sorted key hashes): an append then looks keys
        #: up in memory (8 bytes per stored row) instead of re-reading every part, so its
        #: cost stays flat as the store grows. A rewritten file has a new token.
        self._keys: dict[Path, tuple[tuple[int, int, int], np.ndarray]] = {}

    def __repr__(self) -> str:
        return f"LocalStore({str(self.path)!r})"

    # -- files ---------------------------------------------------------------------------
    def _folder(self, name: str) -> Path:
        if name in schema.NODE_PROPERTIES:
            return self.path / "nodes" / name
        return self.path / "rels" / schema.rel_type(name)

    def _parts(self, name: str) -> list[Path]:
        """The table's part files, oldest first (a legacy single file counts as one)."""
        folder = self._folder(name)
        legacy = folder.with_suffix(".parquet")
        parts = sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []
        return [legacy, *parts] if legacy.exists() else parts

    def _typed(self, name: str, frame: pd.DataFrame) -> pd.DataFrame:
        if name in schema.NODE_PROPERTIES:
            return typed_node_table(name, frame)
        return typed_rel_table(name, frame)

    def _empty(self, name: str) -> pd.DataFrame:
        if name in schema.NODE_PROPERTIES:
            return empty_node_table(name)
        return empty_rel_table(name)

    def _read_part(self, name: str, file: Path) -> pd.DataFrame:
        return self._typed(name, pd.read_parquet(file))

    def _load(self, name: str) -> pd.DataFrame:
        """The whole table (small tables only: recommendations)."""
        frames = [self._read_part(name, f) for f in self._parts(name)]
        return pd.concat(frames, ignore_index=True) if frames else self._empty(name)

    def _part_keys(self, name: str, file: Path) -> np.ndarray:
        """The sorted key hashes of one part (computed for a legacy file without ``_key``)."""
        stat = file.stat()
        token = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        cached = self._keys.get(file)
        if cached is not None and cached[0] == token:
            return cached[1]
        if KEY_HASH in pq.ParquetFile(file).schema_arrow.names:
            keys = pq.read_table(file, columns=[KEY_HASH])[KEY_HASH].to_numpy()
        else:
            keys = hash_keys(self._read_part(name, file), schema.row_key(name))
        keys = np.sort(keys)
        self._keys[file] = (token, keys)
        return keys

    def _save(self, name: str, frame: pd.DataFrame, file: Path | None = None) -> None:
        """Write ``frame`` (with its key hashes) to ``file``, or to a new part."""
        if file is None:
            file = self._next_part(name)
        file.parent.mkdir(parents=True, exist_ok=True)
        # Atomic, and a full disk names the part file (pyarrow's error names none).
        keyed = frame.assign(**{KEY_HASH: hash_keys(frame, schema.row_key(name))})
        atomic_write(file, lambda tmp: keyed.to_parquet(tmp, index=False))

    def _next_part(self, name: str) -> Path:
        parts = [p for p in self._parts(name) if p.name.startswith("part-")]
        number = int(parts[-1].stem.removeprefix("part-")) + 1 if parts else 0
        return self._folder(name) / f"part-{number:06d}.parquet"

    def _locate(self, name: str, parts: list[Path], hashes: np.ndarray) -> np.ndarray:
        """Index into ``parts`` of the part holding each key hash; -1 where none does."""
        where = np.full(len(hashes), -1)
        for i, file in enumerate(parts if len(hashes) else []):
            keys = self._part_keys(name, file)
            where[find_sorted(hashes, keys) >= 0] = i
        return where

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
        for rel, frame in tables.rels.items():
            if not len(frame):
                continue
            spec = schema.rel_spec(rel)
            for end, label in (("src", spec.src), ("dst", spec.dst)):
                outside = ~_member(frame[end], tables.node(label)[schema.NODE_KEY])
                ids = pd.Series(frame.loc[outside, end].unique(), dtype="string")
                stored = self._locate(label, self._parts(label), hash_ids(ids)) >= 0
                missing = frame.loc[outside & _member(frame[end], ids[~stored]), end]
                if len(missing):
                    raise StoreError(
                        f"{rel}: {len(missing)} relationship(s) name a {label} that does not "
                        f"exist, e.g. {end}={missing.iloc[0]!r}; load the nodes first"
                    )

    def _merge(self, name: str, frame: pd.DataFrame) -> int:
        """Update the parts holding keys of ``frame``; its new keys become a new part."""
        key = schema.row_key(name)
        new = self._typed(name, frame).drop_duplicates(key, keep="first")
        parts = self._parts(name)
        where = self._locate(name, parts, hash_keys(new, key))
        props = [c for c in new.columns if c not in key]
        for i in np.unique(where[where >= 0]):
            update = new[where == i]
            if props and update[props].notna().any(axis=None):  # all-missing rows change nothing
                self._update_part(name, parts[i], update, key)
        fresh = new[where < 0]
        if len(fresh):
            self._save(name, fresh.sort_values(key, kind="stable").reset_index(drop=True))
        return len(fresh)

    def _update_part(self, name: str, file: Path, update: pd.DataFrame, key: list[str]) -> None:
        old = self._read_part(name, file)
        merged = self._indexed(update, key).combine_first(self._indexed(old, key))
        merged = self._restore(name, merged, key)
        if not merged.equals(old):  # nothing changed: leave the file alone
            self._save(name, merged, file)

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
            ids = pd.Series(recs[end].unique(), dtype="string")
            stored = self._locate(label, self._parts(label), hash_ids(ids)) >= 0
            missing = recs.loc[_member(recs[end], ids[~stored]), end]
            if len(missing):
                raise StoreError(f"RECOMMENDED: unknown {label} {missing.iloc[0]!r}")
        old = self._load(schema.RECOMMENDED)
        replaced = old.set_index(["model_version", "src"]).index.isin(
            recs.set_index(["model_version", "src"]).index
        )
        out = pd.concat([old[~replaced], recs], ignore_index=True)
        out = out.sort_values(["src", "dst", "model_version"], kind="stable")
        self._rewrite_recommendations(out.reset_index(drop=True))
        return len(recs)

    def _rewrite_recommendations(self, table: pd.DataFrame) -> None:
        """Replace the whole RECOMMENDED table with ``table``, as one part."""
        parts = self._parts(schema.RECOMMENDED)
        self._save(schema.RECOMMENDED, table, parts[0] if parts else None)
        for extra in parts[1:]:
            extra.unlink()

    def recommendation_versions(self) -> list[str]:
        frames = [pq.read_table(f, columns=["model_version"]).to_pandas()
                  for f in self._parts(schema.RECOMMENDED)]
        return sorted({str(v) for f in frames for v in f["model_version"].dropna().unique()})

    def delete_recommendation_versions(self, versions: list[str]) -> int:
        old = self._load(schema.RECOMMENDED)
        gone = old["model_version"].isin(versions).to_numpy(bool)
        if gone.any():
            self._rewrite_recommendations(old[~gone].reset_index(drop=True))
        return int(gone.sum())

    # -- reads ---------------------------------------------------------------------------
    def iter_nodes(self, label: str, *, batch_size: int = 50_000) -> Iterator[pd.DataFrame]:
        """Nodes of ``label`` in batches of ``batch_size``, part by part, each ordered by id."""
        return self._iter(schema.label(label), batch_size)

    def iter_rels(self, rel: str, *, batch_size: int = 50_000) -> Iterator[pd.DataFrame]:
        """Relationships of type ``rel`` in batches, part by part, each ordered by
        (src, dst, *key)."""
        return self._iter(schema.rel_type(rel), batch_size)

    def _iter(self, name: str, batch_size: int) -> Iterator[pd.DataFrame]:
        if batch_size < 1:
            raise UsageError(f"batch_size must be positive, got {batch_size}")
        for file in self._parts(name):
            for batch in pq.ParquetFile(file).iter_batches(batch_size=batch_size):
                yield self._typed(name, batch.to_pandas())

    def finish(self, *, progress: bool = True) -> None:
        """Nothing to complete: each write is in place when it returns."""

    def counts(self) -> dict[str, int]:
        """Rows per label and relationship type (zero counts left out)."""
        out: dict[str, int] = {}
        for name in [*schema.NODE_LABELS, *schema.RELATIONSHIPS, schema.RECOMMENDED]:
            rows = sum(pq.ParquetFile(f).metadata.num_rows for f in self._parts(name))
            if rows:
                out[name] = rows
        return out

    def clear(self) -> None:
        """Delete every table (tests and benchmarks)."""
        for name in [*schema.NODE_LABELS, *schema.RELATIONSHIPS, schema.RECOMMENDED]:
            for file in self._parts(name):
                file.unlink()

    def close(self) -> None:
        """Nothing is held open between calls."""


def _member(values: pd.Series | pd.Index, ids: object) -> np.ndarray:
    """Boolean mask: which ``values`` are among ``ids``. Hash lookup on object arrays:
    ``Series.isin`` on Arrow-backed strings loops in Python (seconds per 100k rows)."""
    pool = pd.Index(pd.unique(np.asarray(ids, dtype=object)))
    return pool.get_indexer(np.asarray(values, dtype=object)) >= 0


#: Column of every part file: a 64-bit hash of the row's key (dropped on reads).
KEY_HASH = "_key"


def hash_keys(frame: pd.DataFrame, key: list[str]) -> np.ndarray:
    """One uint64 per row from its key columns (stable across runs and processes). Two
    keys of one table colliding is about a 1 in 10**7 chance at 2 million rows."""
    out = np.zeros(len(frame), dtype=np.uint64)
    for col in key:
        values = frame[col]
        if pd.api.types.is_integer_dtype(values):
            raw = values.fillna(_NA_KEY).to_numpy("int64")
        else:
            raw = values.astype("string").fillna("\x00").to_numpy(object)
        out = out * np.uint64(1_000_003) ^ pd.util.hash_array(raw)
    return out


def find_sorted(hashes: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Position of each hash in ``sorted_keys`` (binary search, no re-hashing of the keys);
    -1 where it is absent."""
    if not len(sorted_keys):
        return np.full(len(hashes), -1)
    pos = np.searchsorted(sorted_keys, hashes).clip(max=len(sorted_keys) - 1)
    return np.where(sorted_keys[pos] == hashes, pos, -1)


def hash_ids(ids: pd.Series) -> np.ndarray:
    """:func:`hash_keys` of node ids (as strings, the type every store keeps them in)."""
    return hash_keys(pd.DataFrame({schema.NODE_KEY: ids.astype("string")}), [schema.NODE_KEY])
