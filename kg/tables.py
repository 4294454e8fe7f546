"""GraphTables: the validated, typed tables every input format is turned into."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from kgrec.kg import schema

REJECT_COLUMNS = ["file", "line", "field", "reason", "action", "value"]


def empty_node_table(label: str) -> pd.DataFrame:
    """An empty, correctly typed node table for ``label``."""
    return typed_node_table(label, pd.DataFrame(columns=schema.node_columns(label)))


def empty_rel_table(rel: str) -> pd.DataFrame:
    """An empty, correctly typed relationship table for ``rel``."""
    return typed_rel_table(rel, pd.DataFrame(columns=schema.rel_columns(rel)))


def typed_node_table(label: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Select and cast the schema columns of a node table (missing properties become NA)."""
    out = pd.DataFrame({schema.NODE_KEY: frame[schema.NODE_KEY].astype("string")})
    for prop, dtype in schema.NODE_PROPERTIES[schema.label(label)]:
        out[prop] = frame[prop].astype(dtype) if prop in frame else pd.Series(
            pd.NA, index=frame.index, dtype=dtype
        )
    return out.reset_index(drop=True)


def typed_rel_table(rel: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Select and cast the schema columns of a relationship table."""
    out = pd.DataFrame(
        {"src": frame["src"].astype("string"), "dst": frame["dst"].astype("string")}
    )
    for prop, dtype in schema.rel_spec(rel).properties:
        out[prop] = frame[prop].astype(dtype) if prop in frame else pd.Series(
            pd.NA, index=frame.index, dtype=dtype
        )
    return out.reset_index(drop=True)


@dataclass
class GraphTables:
    """One typed table per node label and relationship type, plus the rejects report.

    Node tables have the columns :func:`kgrec.kg.schema.node_columns`; relationship tables
    :func:`kgrec.kg.schema.rel_columns`. ``rejects`` has :data:`REJECT_COLUMNS`, one row per
    rejected or repaired input row (``action`` is ``"rejected"`` or ``"repaired"``).
    """

    nodes: dict[str, pd.DataFrame] = field(default_factory=dict)
    rels: dict[str, pd.DataFrame] = field(default_factory=dict)
    rejects: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REJECT_COLUMNS))
    #: Rows read per source file (for the run summary).
    rows_read: dict[str, int] = field(default_factory=dict)
    #: Records per source file where a line holds several (a user's list of items); the
    #: rejected share of such a file is counted in records, not lines.
    records_read: dict[str, int] = field(default_factory=dict)

    def node(self, label: str) -> pd.DataFrame:
        return self.nodes.get(label, empty_node_table(label))

    def rel(self, rel: str) -> pd.DataFrame:
        return self.rels.get(rel, empty_rel_table(rel))

    def counts(self) -> dict[str, int]:
        """Rows per node label and relationship type (non-empty ones only)."""
        out = {name: len(t) for name, t in self.nodes.items() if len(t)}
        out.update({name: len(t) for name, t in self.rels.items() if len(t)})
        return out

    @classmethod
    def concat(cls, parts: Iterable[GraphTables]) -> GraphTables:
        """One GraphTables from parts that never repeat a row (e.g. a streamed read's)."""
        parts = list(parts)
        out = cls()
        for attr in ("nodes", "rels"):
            names = dict.fromkeys(n for p in parts for n in getattr(p, attr))
            for name in names:
                frames = [getattr(p, attr)[name] for p in parts if name in getattr(p, attr)]
                getattr(out, attr)[name] = pd.concat(frames, ignore_index=True)
        rejects = [p.rejects for p in parts if len(p.rejects)]
        if rejects:
            out.rejects = pd.concat(rejects, ignore_index=True)
        for attr in ("rows_read", "records_read"):
            for p in parts:
                for file, n in getattr(p, attr).items():
                    getattr(out, attr)[file] = getattr(out, attr).get(file, 0) + n
        return out

