"""Small builders shared by the readers: categories, brands, and the final GraphTables."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from kgrec.kg import schema
from kgrec.kg.extract.parse import category_chain
from kgrec.kg.extract.validate import LINE, Rejects
from kgrec.kg.tables import GraphTables, typed_node_table, typed_rel_table


def categories(pairs: Iterable[tuple[str, list[str]]]) -> dict[str, pd.DataFrame]:
    """Category nodes, SUBCATEGORY_OF (child -> parent) and IN_CATEGORY (product -> leaf)
    from ``(product_id, path)`` pairs; a product may have several paths."""
    nodes: dict[str, tuple[str, int]] = {}
    parents: set[tuple[str, str]] = set()
    members: list[tuple[str, str]] = []
    for product, path in pairs:
        chain = category_chain(path)
        if not chain:
            continue
        for i, (cid, name, level) in enumerate(chain):
            nodes.setdefault(cid, (name, level))
            if i:
                parents.add((cid, chain[i - 1][0]))
        members.append((product, chain[-1][0]))
    node_frame = pd.DataFrame(
        [(cid, name, level) for cid, (name, level) in nodes.items()],
        columns=["id", "name", "level"],
    )
    return {
        schema.CATEGORY: node_frame,
        schema.SUBCATEGORY_OF: pd.DataFrame(sorted(parents), columns=["src", "dst"]),
        schema.IN_CATEGORY: pd.DataFrame(members, columns=["src", "dst"]).drop_duplicates(),
    }


def brands(products: pd.DataFrame, field: str = "brand") -> dict[str, pd.DataFrame]:
    """Brand nodes (id = name = the stripped brand text) and HAS_BRAND edges."""
    has = products[["id", field]].dropna()
    has = has[has[field].str.len() > 0]
    names = has[field].drop_duplicates()
    return {
        schema.BRAND: pd.DataFrame({"id": names, "name": names}),
        schema.HAS_BRAND: pd.DataFrame({"src": has["id"], "dst": has[field]}),
    }


def attributes_json(frame: pd.DataFrame, fields: Iterable[str]) -> pd.Series:
    """One JSON object per row with the non-empty values of ``fields`` (None when empty)."""
    fields = [f for f in fields if f in frame.columns and f != LINE]
    if not fields:
        return pd.Series(pd.NA, index=frame.index, dtype="string")

    def one(row: Mapping[str, Any]) -> str | None:
        data = {k: _plain(v) for k, v in row.items() if not _empty(v)}
        return json.dumps(data, ensure_ascii=False, sort_keys=True) if data else None

    return pd.Series(
        [one(r) for r in frame[fields].to_dict("records")], index=frame.index, dtype="string"
    )


def _empty(value: Any) -> bool:
    if isinstance(value, list | tuple | dict):
        return len(value) == 0
    if hasattr(value, "__len__") and not isinstance(value, str):
        return len(value) == 0
    return (
        value is None
        or value is pd.NA
        or (isinstance(value, float) and value != value)
        or (isinstance(value, str) and not value.strip())
    )


def _plain(value: Any) -> Any:
    """JSON-safe value (numpy scalars/arrays to Python)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def assemble(
    parts: Mapping[str, pd.DataFrame], rejects: Rejects, rows_read: Mapping[str, int],
    records_read: Mapping[str, int] | None = None,
) -> GraphTables:
    """Typed GraphTables from raw node/relationship frames (keyed by label or type).

    Derived rows (a category reached from two products) are de-duplicated here; source
    rows were de-duplicated (and reported) by the readers."""
    tables = GraphTables(rejects=rejects.frame(), rows_read=dict(rows_read),
                         records_read=dict(records_read or {}))
    for name, frame in parts.items():
        if name in schema.NODE_PROPERTIES:
            typed = typed_node_table(name, frame).drop_duplicates(schema.NODE_KEY)
            tables.nodes[name] = typed.reset_index(drop=True)
        else:
            spec = schema.rel_spec(name)
            typed = typed_rel_table(name, frame).drop_duplicates(["src", "dst", *spec.key])
            tables.rels[name] = typed.reset_index(drop=True)
    return tables
