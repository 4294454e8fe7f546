"""Ingest: GraphTables -> a store, plus the rejects report and the run summary.

Streaming: :func:`ingest_stream` writes parts (chunks of a large events file, see
:mod:`kgrec.kg.extract.stream`) one at a time, appending each part's rejects to the report
and adding its figures to the summary, so memory holds one part whatever the input size.

Resumable: stores merge idempotently, so re-running the same dump after an interruption
completes the load and adds nothing twice (see :class:`kgrec.kg.store.local.LocalStore`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tqdm.auto import tqdm

from kgrec.files import atomic_write, naming, write_text
from kgrec.kg import schema
from kgrec.kg.extract.parse import UNKNOWN_EVENT
from kgrec.kg.extract.validate import REJECTED, REPAIRED
from kgrec.kg.store.base import GraphStore
from kgrec.kg.tables import GraphTables


@dataclass
class IngestSummary:
    """What one ingest run read, loaded, repaired, rejected and created."""

    rows_read: int
    #: Nodes and relationships handed to the store (after validation).
    loaded: int
    repaired: int
    rejected: int
    #: Newly created nodes/relationships per label/type (0 for a re-run of the same dump).
    created: dict[str, int] = field(default_factory=dict)
    #: Totals in the store after the run.
    store_counts: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    rejects_path: Path | None = None
    summary_path: Path | None = None
    #: Rejected rows per reason, and the unknown event words with their counts.
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    unknown_event_words: dict[str, int] = field(default_factory=dict)
    #: Source file -> [rows (or records) read, rows (or records) rejected].
    files: dict[str, list[int]] = field(default_factory=dict)
    #: Knowledge-graph entities loaded, and the share of them a product reaches (through
    #: LINKED_TO, then RELATED edges); None without entities.
    entities: int = 0
    linked_share: float | None = None
    #: [rows read, seconds to read, validate and write] per part, in order (the throughput
    #: of a streamed run over time).
    parts: list[list[float]] = field(default_factory=list)

    def reject_problems(self, max_share: float) -> list[str]:
        """One line per file that lost every row, or more than ``max_share`` of them."""
        out = []
        for file, (read, rejected) in self.files.items():
            if read and (rejected == read or rejected / read > max_share):
                out.append(f"{file}: {rejected:,} of {read:,} rows rejected ({rejected / read:.0%}"
                           f", more than the {max_share:.0%} allowed by data.max_reject_share)")
        return out

    def to_dict(self) -> dict:
        """JSON-safe figures (paths as strings)."""
        out = asdict(self)
        for key in ("rejects_path", "summary_path"):
            out[key] = str(out[key]) if out[key] else None
        return out

    def paragraph(self) -> str:
        """The one-paragraph summary printed at the end of a run."""
        made = sum(self.created.values())
        detail = ", ".join(f"{n:,} {name}" for name, n in self.created.items() if n) or "nothing"
        where = f"; rejects report: {self.rejects_path}" if self.rejects_path else ""
        totals = ", ".join(f"{n:,} {name}" for name, n in self.store_counts.items())
        return (
            f"Ingest finished in {self.elapsed_s:.1f}s: read {self.rows_read:,} source rows, "
            f"loaded {self.loaded:,} nodes/relationships ({self.repaired:,} rows repaired, "
            f"{self.rejected:,} rejected{where}). Newly created: {made:,} ({detail}). "
            f"The store now holds {totals or 'nothing'}." + self._details()
        )

    def _details(self) -> str:
        """Why rows were rejected, the event words nothing maps, the KG's reach."""
        out = ""
        if self.linked_share is not None:
            out += (f" Knowledge graph: {self.linked_share:.1%} of its {self.entities:,} "
                    "entities are reachable from a product.")
            if self.linked_share < LINKED_WARNING:
                out += (" Warning: the knowledge graph can hardly matter to the models; "
                        "give a links file (--links, product -> entity) or KG heads that are "
                        "linked entities.")
        if self.rejected_by_reason:
            out += " Rejected by reason: " + ", ".join(
                f"{reason} {n:,}" for reason, n in self.rejected_by_reason.items()) + "."
        if self.unknown_event_words:
            from kgrec.kg.schema import EVENT_ALIASES, INTERACTIONS

            words = ", ".join(f"{w!r} ({n:,})" for w, n in self.unknown_event_words.items())
            known = ", ".join(sorted({*EVENT_ALIASES, *(t.lower() for t in INTERACTIONS)}))
            out += (f" Unknown event words: {words}; known: {known}. Map a word with "
                    "--map event.WORD=TYPE (or [event] WORD = \"TYPE\" in the mapping file).")
        return out


#: Below this share of reachable entities the summary warns that the KG cannot matter.
LINKED_WARNING = 0.01


def linked_share(tables: GraphTables) -> tuple[int, float | None]:
    """(entities loaded, share of them reachable from a product: the LINKED_TO targets and
    everything connected to them by RELATED edges); None when no entity was loaded."""
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    from kgrec.kg import schema

    entities = tables.nodes.get(schema.ENTITY)
    if entities is None or not len(entities):
        return 0, None
    ids = pd.Index(entities[schema.NODE_KEY].astype(str).unique())
    related = tables.rels.get(schema.RELATED, pd.DataFrame(columns=["src", "dst"]))
    src, dst = (ids.get_indexer(related[end].astype(str)) for end in ("src", "dst"))
    ok = (src >= 0) & (dst >= 0)
    graph = sp.coo_matrix((np.ones(ok.sum()), (src[ok], dst[ok])), shape=(len(ids), len(ids)))
    _, component = connected_components(graph, directed=False)
    links = tables.rels.get(schema.LINKED_TO, pd.DataFrame(columns=["dst"]))
    linked = ids.get_indexer(links["dst"].astype(str))
    reached = np.isin(component, component[linked[linked >= 0]])
    return len(ids), float(reached.mean())


def _file_losses(tables: GraphTables, rejected, file: str) -> list[int]:
    """[read, rejected] of one file: in lines, or in records where a line holds several."""
    mine = rejected[rejected["file"] == file]
    if file in tables.records_read:
        return [int(tables.records_read[file]), len(mine)]
    return [int(tables.rows_read[file]), int(mine["line"].nunique())]


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def write_rejects(
    tables: GraphTables, reports_dir: str | Path, stamp: str | None = None
) -> Path | None:
    """Append the rejects table to ``rejects-<stamp>.csv`` under ``reports_dir`` (one
    header, written by the first part with rejects); None when there are none."""
    if tables.rejects.empty:
        return None
    folder = Path(reports_dir).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"rejects-{stamp or _stamp()}.csv"
    if path.exists():  # a later part of a streamed run
        with naming(path):
            tables.rejects.to_csv(path, index=False, mode="a", header=False)
    else:
        atomic_write(path, lambda tmp: tables.rejects.to_csv(tmp, index=False))
    return path


def ingest(
    tables: GraphTables,
    store: GraphStore,
    reports_dir: str | Path,
    *,
    progress: bool = True,
    echo: bool = False,
) -> IngestSummary:
    """Write ``tables`` into ``store`` and the rejects report into ``reports_dir``.

    Args:
        tables: validated tables from a reader/adapter.
        store: target store (LocalStore or Neo4jStore).
        reports_dir: folder of the rejects report (CSV) and the run summary (JSON).
        progress: show progress bars.
        echo: print the summary paragraph.
    """
    return ingest_stream([tables], store, reports_dir, progress=progress, echo=echo)


def ingest_stream(
    parts: Iterable[GraphTables],
    store: GraphStore,
    reports_dir: str | Path,
    *,
    total_rows: int | None = None,
    started: float | None = None,
    progress: bool = True,
    echo: bool = False,
) -> IngestSummary:
    """Write each part into ``store`` as it comes (see :func:`ingest`).

    Args:
        parts: validated tables, e.g. :func:`kgrec.kg.extract.sources.stream_source`.
        total_rows: source rows expected (the progress bar's total; None: unknown).
        started: ``time.perf_counter()`` at the start of the run (default: now), so the
            summary's time includes what the caller did first.
    """
    start = time.perf_counter() if started is None else started
    stamp = _stamp()
    summary = IngestSummary(rows_read=0, loaded=0, repaired=0, rejected=0)
    bar = tqdm(total=total_rows, desc="ingest", unit="rows", unit_scale=True,
               disable=not progress)
    clock = time.perf_counter()
    for tables in parts:
        summary.rejects_path = write_rejects(tables, reports_dir, stamp) or summary.rejects_path
        _tally(summary, tables, store.write(tables, progress=False))
        if schema.ENTITY in tables.nodes:  # the KG comes in one part
            summary.entities, summary.linked_share = linked_share(tables)
        rows = sum(tables.rows_read.values())
        bar.total = max(bar.total or 0, bar.n + rows)  # a file larger than counted
        bar.update(rows)
        summary.parts.append([rows, round(time.perf_counter() - clock, 4)])
        clock = time.perf_counter()
    bar.close()
    store.finish(progress=progress)
    summary.rejected_by_reason = _by_count(summary.rejected_by_reason)
    summary.unknown_event_words = _by_count(summary.unknown_event_words)
    summary.store_counts = store.counts()
    summary.elapsed_s = time.perf_counter() - start
    folder = Path(reports_dir).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    summary.summary_path = folder / f"ingest-{stamp}.json"
    write_text(summary.summary_path, json.dumps(summary.to_dict(), indent=2) + "\n")
    if echo:
        print(summary.paragraph())
    return summary


def _tally(summary: IngestSummary, tables: GraphTables, created: dict[str, int]) -> None:
    """Add one part's figures to ``summary``."""
    actions = tables.rejects["action"]
    rejected = tables.rejects[actions == REJECTED]
    summary.rows_read += sum(tables.rows_read.values())
    summary.loaded += sum(tables.counts().values())
    summary.repaired += int((actions == REPAIRED).sum())
    summary.rejected += len(rejected)
    _add(summary.created, created)
    _add(summary.rejected_by_reason, rejected["reason"].value_counts().to_dict())
    words = rejected.loc[rejected["reason"] == UNKNOWN_EVENT, "value"].astype(str)
    _add(summary.unknown_event_words, words.value_counts().to_dict())
    for file in tables.rows_read:
        read, lost = _file_losses(tables, rejected, file)
        before = summary.files.get(file, [0, 0])
        summary.files[file] = [before[0] + read, before[1] + lost]


def _add(total: dict[str, int], more: dict) -> None:
    for key, n in more.items():
        total[str(key)] = total.get(str(key), 0) + int(n)


def _by_count(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: -item[1]))
