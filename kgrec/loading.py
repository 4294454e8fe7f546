"""Loading a catalogue into the configured store: :func:`ingest` (Bolt or the embedded store,
streamed, idempotent, resumable) and :func:`bulk_ingest` (Neo4j's own importer for a first
load). Imports no torch: ``kgrec ingest`` starts in about a second.
"""

from __future__ import annotations

import time
from pathlib import Path

from kgrec.config import Config
from kgrec.errors import InputError
from kgrec.kg.extract.sources import count_rows, stream_source
from kgrec.kg.ingest import IngestSummary, ingest_stream
from kgrec.kg.store.bulk import BulkStore
from kgrec.stores import open_store


def ingest(config: Config, *, reports_dir: str | Path | None = None,
           progress: bool = True, echo: bool = False):
    """Read the catalogue of ``config.source`` and merge it into the configured store
    (idempotent: a re-run adds nothing). Rejected rows go to the rejects report in
    ``reports_dir`` (default ``data.reports_dir``); ``echo`` prints the summary. A generic
    dump's events are read and written ``data.chunk_rows`` at a time. Returns the
    :class:`~kgrec.kg.ingest.IngestSummary`; raises :class:`InputError` (after loading what
    was valid) when a file lost more than ``data.max_reject_share`` of its rows."""
    started = time.perf_counter()  # the summary times the whole run: read, validate, write
    store = open_store(config)
    try:
        def known() -> list[str]:
            return [i for batch in store.iter_nodes("Product") for i in batch["id"]]

        parts = stream_source(config.source, cache_dir=config.data.cache_dir,
                              chunk_rows=config.data.chunk_rows, progress=progress,
                              known_products=known)
        summary = ingest_stream(parts, store, reports_dir or config.data.reports_dir,
                                total_rows=count_rows(config.source), started=started,
                                progress=progress)
    finally:
        store.close()
    if echo:
        print(summary.paragraph())
    return _checked(summary, config)


def bulk_ingest(config: Config, *, home: str | Path | None = None,
                reports_dir: str | Path | None = None, progress: bool = True,
                echo: bool = False, env: dict[str, str] | None = None):
    """First load of a (very large) dump into Neo4j with Neo4j's own bulk importer: the
    server of ``config.neo4j.uri`` must be stopped and its data folder ``home`` (default
    $NEO4J_HOME or server.sh's ``.neo4j/data-<port>``) empty. The import is followed by a
    start of the server (left running), the uniqueness constraints and a count check (see
    :mod:`kgrec.kg.store.bulk`); later loads use :func:`ingest`. A generic dump's events are
    exported ``data.chunk_rows`` at a time, so memory holds one chunk, not the dump. ``env``
    adds environment for the scripts (e.g. ``NEO4J_RUN_DIR``). Returns the ingest summary."""
    store = BulkStore(config.neo4j, home, env=env, batch_size=config.store.batch_size)
    try:
        store.check()  # before reading what may be a very large dump
        parts = stream_source(config.source, cache_dir=config.data.cache_dir,
                              chunk_rows=config.data.chunk_rows, progress=progress)
        summary = ingest_stream(parts, store, reports_dir or config.data.reports_dir,
                                total_rows=count_rows(config.source), progress=progress)
    finally:
        store.close()
    if echo:
        print(summary.paragraph())
        stages = ", ".join(f"{name} {s:.1f}s" for name, s in store.timings.items())
        print(f"Bulk import into {store.home} ({stages}); Neo4j runs at {config.neo4j.uri}.")
    return _checked(summary, config)


def _checked(summary: IngestSummary, config: Config) -> IngestSummary:
    """``summary``, unless a file lost more than ``data.max_reject_share`` of its rows: then
    an :class:`InputError` naming the files and the rejects report (the valid rows are in)."""
    problems = summary.reject_problems(config.data.max_reject_share)
    if problems:
        raise InputError("; ".join(problems) + f"; see {summary.rejects_path}")
    return summary
