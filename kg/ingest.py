"""Ingest: GraphTables -> a store, plus the rejects report and the run summary.

Resumable: stores merge idempotently, so re-running the same dump after an interruption
completes the load and adds nothing twice (see :class:`kgrec.kg.store.local.LocalStore`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

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
            f"The store now holds {totals or 'nothing'}."
        )


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def write_rejects(
    tables: GraphTables, reports_dir: str | Path, stamp: str | None = None
) -> Path | None:
    """Write the rejects table as CSV under ``reports_dir`` (None when there are none)."""
    if tables.rejects.empty:
        return None
    folder = Path(reports_dir).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"rejects-{stamp or _stamp()}.csv"
    tables.rejects.to_csv(path, index=False)
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
    start = time.perf_counter()
    stamp = _stamp()
    rejects_path = write_rejects(tables, reports_dir, stamp)
    created = store.write(tables, progress=progress)
    actions = tables.rejects["action"] if len(tables.rejects) else None
    summary = IngestSummary(
        rows_read=sum(tables.rows_read.values()),
        loaded=sum(tables.counts().values()),
        repaired=int((actions == REPAIRED).sum()) if actions is not None else 0,
        rejected=int((actions == REJECTED).sum()) if actions is not None else 0,
        created=dict(created),
        store_counts=store.counts(),
        elapsed_s=time.perf_counter() - start,
        rejects_path=rejects_path,
    )
    folder = Path(reports_dir).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    summary.summary_path = folder / f"ingest-{stamp}.json"
    summary.summary_path.write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    if echo:
        print(summary.paragraph())
    return summary
