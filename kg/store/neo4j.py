"""Neo4jStore: the graph in a real Neo4j 5 server, behind :class:`kgrec.kg.store.base.GraphStore`.

Every write is a batched ``UNWIND $rows ... MERGE`` run in a managed transaction
(``session.execute_write``: the driver retries transient errors), so writes are idempotent and
incremental: re-writing the same tables creates nothing, new events append. A first load
CREATEs, which skips MERGE's look-up of existing elements, and stays safe when two loads run
at once: a node label's first load CREATEs under the key's uniqueness constraint, falling back
to MERGE when another writer got there first; a relationship type's batches take the type's
lock node in turn and CREATE only while the type holds nothing but this load's own
relationships (:class:`~kgrec.kg.store.neo4j_loads.RelLoad`), MERGE otherwise. A load cut off
(server killed) keeps its committed batches, and re-running it completes the graph without
duplicates. NA/NaN values are left out of the property maps (Neo4j has no null properties), and
read back as NA. Rows are shaped in :mod:`kgrec.kg.store.neo4j_rows`; :func:`connect
<kgrec.kg.store.neo4j_connect.connect>` opens a store on a server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
from neo4j import READ_ACCESS, Driver, ManagedTransaction, Query, Record, Session
from neo4j.exceptions import ConstraintError, Neo4jError, ServiceUnavailable, SessionExpired
from tqdm.auto import tqdm

from kgrec.errors import StoreError, UsageError
from kgrec.kg import cypher, schema
from kgrec.kg.store.neo4j_loads import RelLoad, RunAgain, retry
from kgrec.kg.store.neo4j_rows import (
    Row,
    check_not_null,
    group_by_src,
    node_rows,
    rel_rows,
    row_batches,
)
from kgrec.kg.tables import GraphTables, typed_node_table, typed_rel_table


class Neo4jStore:
    """The graph in Neo4j. The driver is passed in; the constructor does no I/O.

    Args:
        driver: an open ``neo4j.Driver``.
        database: database name (Community has one user database, ``"neo4j"``).
        batch_size: rows per ``UNWIND`` write transaction.
        owns_driver: close the driver in :meth:`close` (set by
            :func:`~kgrec.kg.store.neo4j_connect.connect`).
    """

    rewrites_recommendations = False

    def __init__(
        self,
        driver: Driver,
        database: str = "neo4j",
        batch_size: int = 5_000,
        *,
        owns_driver: bool = False,
    ) -> None:
        if batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
        self.driver = driver
        self.database = database
        self.batch_size = batch_size
        self.owns_driver = owns_driver
        self._constraints_done = False
        #: Batches per write path ("create", "merge") of each type in the last write().
        self.rel_paths: dict[str, dict[str, int]] = {}

    def _session(self, **config: Any) -> Session:
        # A label or property the graph does not hold yet is normal here (empty store, NA
        # columns): silence those "does not exist" notices, keep every other warning.
        return self.driver.session(
            database=self.database,
            notifications_disabled_classifications=["UNRECOGNIZED"],
            **config,
        )

    def _query(self, query: str, **params: Any) -> list[Record]:
        """Run one short auto-commit query and return all its records."""
        with self._session(default_access_mode=READ_ACCESS) as session:
            return list(session.run(query, params))

    def _query_bounded(self, query: str, seconds: float, what: str,
                       **params: Any) -> list[Record]:
        """:meth:`_query` stopped by the server after ``seconds``; a :class:`StoreError`
        naming ``what`` and the bound then."""
        with self._session(default_access_mode=READ_ACCESS) as session:
            try:
                return list(session.run(Query(query, timeout=seconds), params))
            except Neo4jError as exc:
                if "TimedOut" not in (exc.code or "") and "Terminated" not in (exc.code or ""):
                    raise
                raise StoreError(f"{what} ran over its bound of {seconds:g} s on Neo4j and "
                                 "was stopped; ask for fewer hops") from None

    # -- writes ---------------------------------------------------------------------------

    def ensure_constraints(self) -> None:
        """Create the uniqueness constraint of every node key (once; ``IF NOT EXISTS``)."""
        if self._constraints_done:
            return
        with self._session() as session:
            # Two loads creating the same constraint at once: one may fail; retry sees it.
            for query in [*map(cypher.create_constraint, schema.NODE_LABELS),
                          cypher.create_lock_constraint()]:
                retry(session.run, query)
            session.run("CALL db.awaitIndexes(300)").consume()
        self._constraints_done = True

    def write(self, tables: GraphTables, *, progress: bool = True) -> dict[str, int]:
        """Merge ``tables`` (nodes first, then relationships); returns newly created counts
        per label/type present in ``tables`` (all zero when the same tables are written again).
        """
        self._check_names(tables)
        self.ensure_constraints()
        self._check_endpoints(tables)
        created: dict[str, int] = {}
        for lab in schema.NODE_LABELS:
            frame = tables.nodes.get(lab)
            if frame is not None and len(frame):
                created[lab] = self._write_nodes(lab, frame, progress)
        for rel in schema.RELATIONSHIPS:
            frame = tables.rels.get(rel)
            if frame is not None and len(frame):
                created[rel] = self._write_rels(rel, frame, progress)
        return created

    @staticmethod
    def _check_names(tables: GraphTables) -> None:
        """Refuse tables this method would skip and keys it cannot write, before writing."""
        for lab, frame in tables.nodes.items():
            check_not_null(frame, [schema.NODE_KEY], schema.label(lab))
        for rel, frame in tables.rels.items():
            if schema.rel_type(rel) == schema.RECOMMENDED:
                raise StoreError("write RECOMMENDED rows with write_recommendations(), not write()")
            check_not_null(frame, ["src", "dst"], rel)

    def _check_endpoints(self, tables: GraphTables) -> None:
        """Fail before writing anything when a relationship names a node that is neither in
        ``tables`` nor in the store (the in-transaction check is only a safety net)."""
        for rel, frame in tables.rels.items():
            if not len(frame):
                continue
            spec = schema.rel_spec(rel)
            for end, lab in (("src", spec.src), ("dst", spec.dst)):
                given = tables.node(lab)[schema.NODE_KEY]
                ids = frame.loc[~frame[end].isin(given), end].dropna().unique().tolist()
                if not ids:
                    continue
                records = self._query(cypher.absent_nodes(lab), ids=[str(i) for i in ids])
                if records[0]["absent"]:
                    raise StoreError(
                        f"{rel}: {records[0]['absent']} relationship end(s) name a {lab} that does "
                        f"not exist, e.g. {end}={records[0]['example']!r}; load the nodes first"
                    )

    def _is_empty(self, count_query: str) -> bool:
        return self._query(count_query)[0]["n"] == 0

    def _write_nodes(self, label: str, frame: pd.DataFrame, progress: bool) -> int:
        rows = node_rows(label, frame)
        # First load of a label: CREATE. The uniqueness constraint guards the key, so when a
        # concurrent load created one of these nodes the batch fails with ConstraintError,
        # rolls back, and it and the rest are merged instead.
        query = [cypher.merge_nodes(label)]
        if self._is_empty(cypher.count_nodes(label)):
            query.insert(0, cypher.create_nodes(label))

        def work(tx: ManagedTransaction, batch: list[Row]) -> int:
            try:
                return tx.run(query[0], rows=batch).consume().counters.nodes_created
            except ConstraintError:
                if len(query) == 1:
                    raise
                query.pop(0)
                raise RunAgain from None

        return self._run_batches(work, rows, label, progress)

    def _write_rels(self, rel: str, frame: pd.DataFrame, progress: bool) -> int:
        spec = schema.rel_spec(rel)
        rows = rel_rows(rel, frame)
        # MERGE cannot match a null key property: rows with null keys take another statement.
        groups: dict[tuple[str, ...], list[Row]] = {}
        for row in rows:
            groups.setdefault(tuple(k for k in spec.key if row[k] is None), []).append(row)
        load = RelLoad(rel)
        total = 0
        for null_keys, group in groups.items():
            merge = (cypher.merge_rels_null_key(rel, null_keys) if null_keys
                     else cypher.merge_rels(rel))
            total += self._run_batches(self._rel_work(load, merge, not null_keys), group, rel,
                                       progress)
        self.rel_paths[rel] = dict(load.batches)
        return total

    def _rel_work(self, load: RelLoad, merge: str,
                  may_create: bool) -> Callable[[ManagedTransaction, list[Row]], int]:
        """One batch: take the type's lock, CREATE while the type holds only what this load
        created (a first load at full speed), MERGE otherwise."""
        def work(tx: ManagedTransaction, batch: list[Row]) -> int:
            tx.run(cypher.lock_rel_type(), type=schema.rel_type(load.rel)).consume()
            owner = load.owns(tx.run(cypher.count_rels(load.rel)).single(strict=True)["n"])
            create = may_create and owner
            result = tx.run(load.create if create else merge, rows=group_by_src(batch))
            if result.single(strict=True)["matched"] != len(batch):
                # Raising inside the transaction function rolls this batch back.
                self._raise_missing(tx, load.rel, batch)
            created = result.consume().counters.relationships_created
            load.wrote(created, create)
            return created

        return work

    @staticmethod
    def _raise_missing(tx: ManagedTransaction, rel: str, batch: list[Row]) -> None:
        spec = schema.rel_spec(rel)
        found = tx.run(cypher.missing_endpoints(rel), rows=batch).data()
        parts = []
        for rec in found:
            if not rec["src_found"]:
                parts.append(f"{spec.src} {rec['src']!r}")
            if not rec["dst_found"]:
                parts.append(f"{spec.dst} {rec['dst']!r}")
        raise StoreError(
            f"{rel}: relationships refer to nodes that are not in the store "
            f"(first missing: {', '.join(parts)}); write those nodes first. "
            "This batch was rolled back."
        )

    def _run_batches(
        self,
        work: Callable[[ManagedTransaction, list[Row]], int],
        rows: list[Row],
        desc: str,
        progress: bool,
    ) -> int:
        created = done = 0
        with (
            self._session() as session,
            tqdm(total=len(rows), desc=desc, unit="row", disable=not (progress and rows),
                 leave=False) as bar,
        ):
            for batch in row_batches(rows, self.batch_size):
                try:
                    created += retry(session.execute_write, work, batch)
                except (ServiceUnavailable, SessionExpired):
                    raise StoreError(
                        f"lost the connection to Neo4j while writing {desc} ({done:,} of "
                        f"{len(rows):,} rows committed); start the server again and rerun the "
                        "same command: the load resumes without duplicates"
                    ) from None
                done += len(batch)
                bar.update(len(batch))
        return created

    def write_recommendations(self, frame: pd.DataFrame, *, progress: bool = True) -> int:
        """Write ``RECOMMENDED`` edges; a user's old edges of the same ``model_version`` are
        replaced, so re-writing a version never duplicates. Returns the number written."""
        if not len(frame):
            return 0
        self.ensure_constraints()
        frame = typed_rel_table(schema.RECOMMENDED, frame)
        check_not_null(frame, ["src", "dst", "model_version"], schema.RECOMMENDED)
        rows = rel_rows(schema.RECOMMENDED, frame)  # deduplicated on (src, dst, model_version)
        # A user's rows stay in one transaction: delete-then-create must see all of them.
        by_user: dict[tuple[str, str], list[Row]] = {}
        for row in rows:
            by_user.setdefault((row["src"], row["model_version"]), []).append(row)
        chunks: list[list[Row]] = [[]]
        for group in by_user.values():
            if chunks[-1] and len(chunks[-1]) + len(group) > self.batch_size:
                chunks.append([])
            chunks[-1].extend(group)
        delete_q, create_q = cypher.delete_recommendations(), cypher.create_recommendations()

        def work(tx: ManagedTransaction, batch: list[Row]) -> int:
            users = list({(r["src"], r["model_version"]) for r in batch})
            tx.run(delete_q, users=[{"src": s, "model_version": v} for s, v in users]).consume()
            result = tx.run(create_q, rows=batch)
            if result.single(strict=True)["matched"] != len(batch):
                self._raise_missing(tx, schema.RECOMMENDED, batch)
            return result.consume().counters.relationships_created

        written = 0
        with (
            self._session() as session,
            tqdm(total=len(rows), desc="RECOMMENDED", unit="row", disable=not progress) as bar,
        ):
            for chunk in chunks:
                written += retry(session.execute_write, work, chunk)
                bar.update(len(chunk))
        return written

    # -- reads ----------------------------------------------------------------------------

    def iter_nodes(self, label: str, *, batch_size: int = 50_000) -> Iterator[pd.DataFrame]:
        """Nodes of ``label`` ordered by id, ``batch_size`` per frame (keyset pagination)."""
        if batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
        query, cols = cypher.read_nodes(label), schema.node_columns(label)
        after = ""
        while True:
            rows = self._query(query, after=after, limit=batch_size)[0]["rows"]
            if not rows:
                return
            yield typed_node_table(label, pd.DataFrame(rows, columns=cols))
            if len(rows) < batch_size:
                return
            after = rows[-1][0]

    def iter_rels(self, rel: str, *, batch_size: int = 50_000) -> Iterator[pd.DataFrame]:
        """Relationships of ``rel`` ordered by ``(src, dst, *key)``, about ``batch_size`` per
        frame: pages of source nodes (keyset on their id), the number of sources per page
        adapted to the degrees seen so far."""
        if batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
        query, cols = cypher.read_rels(rel), schema.rel_columns(rel)
        after, sources = "", max(1, batch_size // 64)
        while True:
            records = self._query(query, after=after, limit=sources)
            if not records:
                return
            rows = records[0]["rows"]
            if rows:
                yield typed_rel_table(rel, pd.DataFrame(rows, columns=cols))
            after = records[0]["last"]
            sources = max(1, min(batch_size, sources * batch_size // max(len(rows), 1)))

    def finish(self, *, progress: bool = True) -> None:
        """Nothing to complete: each write is in place when it returns."""

    def counts(self) -> dict[str, int]:
        """Nodes per label and relationships per type (from Neo4j's count store; zeros left out)."""
        out: dict[str, int] = {}
        queries = [(lab, cypher.count_nodes(lab)) for lab in schema.NODE_LABELS]
        rels = [*schema.RELATIONSHIPS, schema.RECOMMENDED]
        queries += [(rel, cypher.count_rels(rel)) for rel in rels]
        for name, query in queries:
            records = self._query(query)
            if records[0]["n"]:
                out[name] = int(records[0]["n"])
        return out

    # -- housekeeping ---------------------------------------------------------------------

    def recommendation_versions(self) -> list[str]:
        return sorted(r["version"] for r in self._query(cypher.recommendation_versions())
                      if r["version"] is not None)

    def delete_recommendation_versions(self, versions: list[str]) -> int:
        if not versions:
            return 0
        with self._session() as session:
            summary = session.run(cypher.delete_recommendation_versions(),
                                  versions=list(versions)).consume()
        return summary.counters.relationships_deleted

    def clear(self) -> None:
        """Delete every node and relationship (constraints stay). For tests and benchmarks."""
        with self._session() as session:
            session.run(cypher.delete_all()).consume()

    def close(self) -> None:
        if self.owns_driver:
            self.driver.close()

    def __enter__(self) -> Neo4jStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def explorer(self) -> Any:
        """Answers :mod:`kgrec.kg.explore`'s questions with bounded Cypher reads."""
        # graph_sources needs torch; ingest does not
        from kgrec.kg.graph_sources import Neo4jGraphSource

        return Neo4jGraphSource(self)

    def __repr__(self) -> str:
        return f"Neo4jStore(database={self.database!r}, batch_size={self.batch_size})"
