"""Rows for Neo4j writes: tables as Bolt-ready maps (NA -> None), grouped by source, batched."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pandas as pd

from kgrec.errors import InputError
from kgrec.kg import schema
from kgrec.kg.tables import typed_node_table, typed_rel_table

Row = dict[str, Any]


def _clean(value: Any) -> Any:
    """NA/NaN -> None; numpy scalars -> Python scalars (what Bolt can carry)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def _column(frame: pd.DataFrame, name: str) -> list[Any]:
    values = frame[name].tolist()  # Python scalars; NA stays NA
    if not frame[name].hasnans:
        return values
    return [_clean(v) for v in values]


def check_not_null(frame: pd.DataFrame, columns: list[str], table: str) -> None:
    """Keys must be present; an empty string is refused too (reads page on ``id > ""``)."""
    for col in columns:
        bad = (frame[col].isna() | (frame[col] == "")).to_numpy().nonzero()[0]
        if len(bad):
            raise InputError(f"{table} table has an empty {col}", row=int(bad[0]), field=col)


def node_rows(label: str, frame: pd.DataFrame) -> list[Row]:
    """``{id, <property>...}`` maps for :func:`kgrec.kg.cypher.merge_nodes` (NA -> None)."""
    frame = typed_node_table(label, frame)
    check_not_null(frame, [schema.NODE_KEY], label)
    # First row of a duplicated key wins, as in LocalStore (MERGE alone would let the last win).
    frame = frame.drop_duplicates(schema.NODE_KEY, keep="first")
    return _records(frame)


def rel_rows(rel: str, frame: pd.DataFrame) -> list[Row]:
    """``{src, dst, <property>...}`` maps sorted by ``src``, for :func:`group_by_src` (NA: None)."""
    spec = schema.rel_spec(rel)
    frame = typed_rel_table(rel, frame)
    check_not_null(frame, ["src", "dst"], rel)
    frame = frame.drop_duplicates(["src", "dst", *spec.key], keep="first")
    # Sorted by source so that a batch groups into few source nodes.
    return _records(frame.sort_values("src", kind="stable"))


def _records(frame: pd.DataFrame) -> list[Row]:
    cols = list(frame.columns)
    values = [_column(frame, c) for c in cols]
    return [dict(zip(cols, row, strict=True)) for row in zip(*values, strict=True)]


def group_by_src(rows: list[Row]) -> list[Row]:
    """Flat relationship rows -> ``{src, rels}`` maps, the shape :mod:`kgrec.kg.cypher` writes
    take."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(row["src"], []).append(row)
    return [{"src": src, "rels": rels} for src, rels in groups.items()]


def row_batches(rows: list[Row], size: int) -> Iterator[list[Row]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
