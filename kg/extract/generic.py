"""Generic catalogue dumps -> GraphTables: products, events, optional users, KG triples, links.

Files may be CSV, TSV, JSON lines (``.json``/``.jsonl``, also ``.gz``) or Parquet. Column
names are mapped per section by a :class:`kgrec.kg.extract.mapping.ColumnMapping`.

Product columns that are not mapped go into the product's ``attributes`` JSON, so no input
field is lost. Events on unknown products are rejected; unknown users get bare User nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from kgrec.kg import schema
from kgrec.kg.extract import build
from kgrec.kg.extract import validate as v
from kgrec.kg.extract.parse import (
    changed_text,
    clean_html,
    clean_text_column,
    event_types,
    event_value_range,
    event_weights,
    parse_number,
    parse_price,
    parse_timestamp,
)
from kgrec.kg.store.local import find_sorted, hash_keys


def _text(frame: pd.DataFrame, col: str | None) -> pd.Series:
    """Column as strings; list values joined by spaces; missing column -> all NA."""
    if col is None:
        return pd.Series(pd.NA, index=frame.index, dtype="object")
    return frame[col].map(_join)


def _join(value: Any) -> Any:
    if isinstance(value, list | tuple) or hasattr(value, "tolist") and not isinstance(value, str):
        items = [str(x) for x in (value.tolist() if hasattr(value, "tolist") else value)]
        return " ".join(x for x in items if x.strip()) or None
    return value


def product_tables(
    frame: pd.DataFrame,
    cols: Mapping[str, str],
    file: str,
    rejects: v.Rejects,
    options: Mapping[str, Any],
    *,
    paths: pd.Series | None = None,
) -> dict[str, pd.DataFrame]:
    """Product nodes (+ categories and brands) from raw product rows.

    Args:
        frame: raw rows with ``_line``.
        cols: field -> column (see :meth:`.mapping.ColumnMapping.resolve`).
        file: source file for the report.
        rejects: collector.
        options: reader options (``category_separator``).
        paths: category path per row as lists (overrides the category column).
    """
    key = cols["id"]
    frame = v.require(v.id_columns(frame, [key], file, rejects), [key], file, rejects)
    frame = v.dedupe(frame, [key], file, rejects)
    frame = frame.assign(_id=frame[key])
    work = pd.DataFrame({"_id": frame["_id"], v.LINE: frame[v.LINE]}, index=frame.index)
    for name in ("title", "description", "features"):
        work[name] = _text(frame, cols.get(name))
    out = pd.DataFrame({"id": frame["_id"]}, index=frame.index)
    for name in ("title", "description", "features"):
        out[name] = clean_text_column(work, name, file, rejects)
    out["brand"] = brand_column(frame, cols.get("brand"), file, rejects)
    out["price"] = (
        parse_price(frame, cols["price"], file, rejects)
        if "price" in cols
        else pd.Series(pd.NA, index=frame.index, dtype="Float64")
    )
    if paths is None:
        paths = _paths(frame, cols.get("category"), options["category_separator"])
    paths = paths.loc[frame.index]
    paths = clean_paths(frame, paths, cols.get("category", "category"), file, rejects)
    out["category_path"] = paths.map(lambda p: " > ".join(p) if p else None)
    rest = [c for c in frame.columns if c not in (*cols.values(), "_id", v.LINE)]
    out["attributes"] = build.attributes_json(frame, rest)
    parts = {schema.PRODUCT: out}
    parts.update(build.categories(zip(out["id"], paths, strict=True)))
    parts.update(build.brands(out))
    return parts


def _paths(frame: pd.DataFrame, col: str | None, sep: str) -> pd.Series:
    if col is None:
        return pd.Series([[] for _ in range(len(frame))], index=frame.index, dtype="object")

    def one(value: Any) -> list[str]:
        if isinstance(value, str):
            return [p.strip() for p in value.split(sep)] if value.strip() else []
        if value is None or (not hasattr(value, "__len__") and pd.isna(value)):
            return []
        return [str(p) for p in value]

    return frame[col].map(one)


def _bad_category(raw: str) -> bool:
    """Amazon paths carry feature bullets and HTML after the real categories."""
    text = raw.strip()
    return not text or "<" in text or ">" in text or text.endswith(".") or len(text) > 50


def clean_paths(
    frame: pd.DataFrame, paths: pd.Series, field: str, file: str, rejects: v.Rejects
) -> pd.Series:
    """Category paths cut at the first element that is not a category name (HTML, a
    sentence, over 50 characters); each cut is reported as a repair."""
    out = []
    for line, path in zip(frame[v.LINE], paths, strict=True):
        cut = next((i for i, p in enumerate(path) if _bad_category(p)), len(path))
        kept = [clean_html(p) or "" for p in path[:cut]]
        if cut < len(path):
            rejects.add(
                file,
                int(line),
                field,
                f"category path cut after {cut} level(s): non-category element(s) dropped",
                v.REPAIRED,
                " | ".join(path[cut:]),
            )
        out.append(kept)
    return pd.Series(out, index=paths.index, dtype="object")


def brand_column(frame: pd.DataFrame, col: str | None, file: str, rejects: v.Rejects) -> pd.Series:
    """Brand names, HTML and a leading "by " removed (reported as a repair)."""
    if col is None:
        return pd.Series(pd.NA, index=frame.index, dtype="string")
    raw = frame[col]
    cleaned = raw.map(clean_html).astype("string")
    by = cleaned.str.match(r"(?i)^by\s").fillna(False)
    cleaned = cleaned.where(~by, cleaned.str.replace(r"(?i)^by\s+", "", regex=True))
    changed = changed_text(raw, cleaned)
    rejects.add_many(
        file, frame.loc[changed, v.LINE], col, "brand text cleaned", v.REPAIRED, raw[changed]
    )
    return cleaned


def event_tables(
    frame: pd.DataFrame,
    cols: Mapping[str, str],
    file: str,
    rejects: v.Rejects,
    products: pd.Index,
    options: Mapping[str, Any],
    *,
    bare_products: bool = False,
    seen: KeySet | None = None,
) -> tuple[dict[str, pd.DataFrame], pd.Index]:
    """Interaction relationships (one table per event type) from raw event rows.

    Args:
        frame: raw rows with ``_line``; ``cols``: field -> column; ``file``: the source
            file for the ``rejects`` report; ``products``: known product ids.
        options: ``event_type`` (when there is no type column) and ``rating_scale``.
        bare_products: events on unknown products create bare Product nodes (reported as
            repairs) instead of being rejected.
        seen: the event keys of earlier chunks (streaming ingest, :mod:`.stream`).

    Returns:
        ``{rel_type: table}`` plus the ids of bare products created.
    """
    frame = v.id_columns(frame, [cols["user"], cols["product"]], file, rejects)
    frame = v.require(frame, [cols["user"], cols["product"]], file, rejects)
    frame = frame.assign(user=frame[cols["user"]], product=frame[cols["product"]])
    frame = _event_products(frame, cols["product"], file, rejects, products, bare_products)
    if "type" in cols:
        frame, types = event_types(frame, cols["type"], file, rejects,
                                     words=options.get("event_words"))
    else:
        types = pd.Series(schema.event_type(str(options["event_type"])), index=frame.index)
    frame, value, types = _event_values(frame, types, cols.get("value"), file, rejects,
                                        float(options.get("rating_scale", 5.0)))
    if "timestamp" in cols:
        frame, ts = parse_timestamp(frame, cols["timestamp"], file, rejects)
    else:
        ts = pd.Series(pd.NA, index=frame.index, dtype="Int64")
    table = pd.DataFrame(
        {
            "src": frame["user"],
            "dst": frame["product"],
            "timestamp": ts,
            "value": value.loc[frame.index].fillna(1.0).astype("Float64"),
            "rel": types.loc[frame.index].astype("string"),
            v.LINE: frame[v.LINE],
        }
    )
    names = {"src": cols["user"], "value": cols.get("value", "value")}
    table = v.dedupe(table, ["src", "dst", "timestamp", "rel"], file, rejects, ["value"], names)
    if seen is not None:  # streaming: events of earlier chunks count as earlier rows
        table = seen.dedupe(table, file, rejects, names)
    scale = float(options.get("rating_scale", 5.0))
    table["weight"] = event_weights(table["rel"], table["value"], rating_scale=scale)
    out = {str(rel): group.drop(columns=["rel", v.LINE]) for rel, group in table.groupby("rel")}
    # Bare products only for events that made it through every check.
    bare = pd.Index(table.loc[~v.member(table["dst"], products), "dst"].unique())
    return out, bare


def _event_products(frame: pd.DataFrame, column: str, file: str, rejects: v.Rejects,
                    products: pd.Index, bare_products: bool) -> pd.DataFrame:
    """Events on unknown products: rejected, or kept as bare products (reported repairs)."""
    if not bare_products:
        return v.known(frame, column, products, file, rejects, "product")
    unknown = ~v.member(frame["product"], products)
    rejects.add_many(file, frame.loc[unknown, v.LINE], column,
                     "product has no metadata: bare Product node created", v.REPAIRED,
                     frame.loc[unknown, "product"])
    return frame


def _event_values(frame: pd.DataFrame, types: pd.Series, column: str | None, file: str,
                  rejects: v.Rejects, rating_scale: float
                  ) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """The events' values (1.0 where there is none): a rating without a value or out of the
    scale is rejected; returns the kept rows, their values and their types."""
    rated = types.eq(schema.RATED)
    if column is None:
        if rated.any():  # ratings without any value column: each one is a rejected row
            rejects.add_many(file, frame.loc[rated, v.LINE], "value", "rating without a value",
                             v.REJECTED, pd.Series(pd.NA, index=frame.index[rated]))
            frame, types = frame[~rated], types[~rated]
        return frame, pd.Series(1.0, index=frame.index), types
    frame, value = parse_number(frame, column, file, rejects, required=False)
    types = types.loc[frame.index]
    missing = value.isna() & rated.loc[frame.index]
    rejects.add_many(file, frame.loc[missing, v.LINE], column, "rating without a value",
                     v.REJECTED, frame.loc[missing, column])
    frame, value, types = frame[~missing], value[~missing], types[~missing]
    ok = event_value_range(frame, value, types.eq(schema.RATED), rating_scale, column, file,
                             rejects)
    return frame[ok], value[ok], types[ok]


def merge_users(declared: pd.DataFrame | None, rels: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Declared users plus bare users for ids that only occur in events."""
    seen = [t["src"] for name, t in rels.items() if name in schema.INTERACTIONS]
    ids = pd.concat(seen).drop_duplicates() if seen else pd.Series([], dtype="string")
    bare = pd.DataFrame({"id": ids})
    if declared is None:
        return bare
    return pd.concat([declared, bare[~bare["id"].isin(declared["id"])]], ignore_index=True)


def user_table(
    frame: pd.DataFrame, cols: Mapping[str, str], file: str, rejects: v.Rejects
) -> pd.DataFrame:
    """User nodes: the id plus every other column as ``attributes`` JSON."""
    key = cols["id"]
    frame = v.require(v.id_columns(frame, [key], file, rejects), [key], file, rejects)
    frame = v.dedupe(frame, [key], file, rejects)
    rest = [c for c in frame.columns if c not in (key, v.LINE)]
    return pd.DataFrame({"id": frame[key], "attributes": build.attributes_json(frame, rest)})


def kg_table(
    frame: pd.DataFrame, cols: Mapping[str, str], file: str, rejects: v.Rejects
) -> pd.DataFrame:
    """RELATED relationships from (head, relation, tail) triples."""
    names = [cols["head"], cols["relation"], cols["tail"]]
    work = v.require(v.id_columns(frame, names, file, rejects), names, file, rejects)
    work = v.dedupe(work, names, file, rejects)
    return pd.DataFrame({"src": work[names[0]], "dst": work[names[2]], "relation": work[names[1]]})


def link_table(
    frame: pd.DataFrame,
    cols: Mapping[str, str],
    file: str,
    rejects: v.Rejects,
    products: pd.Index,
) -> pd.DataFrame:
    """LINKED_TO relationships (product -> entity); unknown products are rejected."""
    names = [cols["product"], cols["entity"]]
    work = v.require(v.id_columns(frame, names, file, rejects), names, file, rejects)
    work = v.known(work, names[0], products, file, rejects, "product")
    work = v.dedupe(work, names, file, rejects)
    return pd.DataFrame({"src": work[names[0]], "dst": work[names[1]]})


#: Key of an event across chunks (what :func:`event_tables` de-duplicates on).
EVENT_KEY = ["src", "dst", "timestamp", "rel"]


class KeySet:
    """Keys seen earlier in a run as sorted 64-bit hashes, each with the line and value of
    its first row: 24 bytes per key instead of the rows themselves."""

    def __init__(self) -> None:
        self.hashes = np.empty(0, dtype=np.uint64)
        self.lines = np.empty(0, dtype=np.int64)
        self.values = np.empty(0, dtype=np.float64)

    def find(self, hashes: np.ndarray) -> np.ndarray:
        """Position of each hash in the set; -1 where it is new."""
        return find_sorted(hashes, self.hashes)

    def add(self, hashes: np.ndarray, lines: np.ndarray | None = None,
            values: np.ndarray | None = None) -> None:
        """Insert new, distinct hashes (with their first lines and values where given)."""
        order = np.argsort(hashes, kind="stable")
        at = np.searchsorted(self.hashes, hashes[order])
        zeros = np.zeros(len(hashes))
        for name, extra in (("lines", lines), ("values", values)):
            old = getattr(self, name)
            given = zeros if extra is None else np.asarray(extra)
            setattr(self, name, np.insert(old, at, given[order].astype(old.dtype)))
        self.hashes = np.insert(self.hashes, at, hashes[order])

    def dedupe(self, table: pd.DataFrame, file: str, rejects: v.Rejects,
               names: dict[str, str]) -> pd.DataFrame:
        """Reject the events of ``table`` (already de-duplicated within itself) whose key an
        earlier chunk had, with the report rows a whole-file read gives (through
        :func:`validate.dedupe` on each first row rebuilt from its key, line and value)."""
        hashes = hash_keys(table, EVENT_KEY)
        pos = self.find(hashes)
        seen = pos >= 0
        if seen.any():
            firsts = table[seen].assign(
                value=pd.array(self.values[pos[seen]], dtype="Float64"),
                **{v.LINE: self.lines[pos[seen]]})
            both = pd.concat([firsts, table], ignore_index=True)
            table = v.dedupe(both, EVENT_KEY, file, rejects, ["value"], names).iloc[len(firsts):]
        self.add(hashes[~seen], table[v.LINE].to_numpy("int64"),
                 table["value"].to_numpy("float64", na_value=np.nan))
        return table
