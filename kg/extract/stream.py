"""Streaming reads for ``kgrec ingest``: the generic events file in chunks, the rest whole.

:func:`stream_generic` yields GraphTables parts: first the products and declared users
(small, read whole), then one part per ``chunk_rows`` events, then the KG triples and links.
Each part carries its own rejects, with line numbers of the whole file, so a caller can
write the part to the store and append its rejects before the next chunk is read: memory
holds one chunk, the catalogue and two compact key sets (:class:`KeySet`), whatever the
number of events. The parts hold exactly what :func:`read_generic`
returns at once: the same rows, the same rejects (a duplicate event in a later chunk is
rejected as if the file were read whole) and every user once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd

from kgrec.errors import InputError
from kgrec.kg import schema
from kgrec.kg.extract import build
from kgrec.kg.extract import validate as v
from kgrec.kg.extract.generic import (
    KeySet,
    event_tables,
    kg_table,
    link_table,
    product_tables,
    user_table,
)
from kgrec.kg.extract.io import iter_records, read_records
from kgrec.kg.extract.mapping import ColumnMapping
from kgrec.kg.store.local import hash_ids
from kgrec.kg.tables import GraphTables


def stream_generic(
    products: str | Path | None,
    events: str | Path,
    *,
    users: str | Path | None = None,
    kg: str | Path | None = None,
    links: str | Path | None = None,
    mapping: ColumnMapping | None = None,
    known_products: Iterable[str] = (),
    chunk_rows: int = 100_000,
) -> Iterator[GraphTables]:
    """A generic dump as parts (arguments as :func:`read_generic`,
    plus ``chunk_rows``: events per part)."""
    mapping = mapping or ColumnMapping()
    rejects, read = v.Rejects(), {}

    def load(path: str | Path, section: str) -> tuple[pd.DataFrame, dict[str, str], str]:
        frame, read[str(path)] = read_records(path, rejects)
        return frame, mapping.resolve(section, frame, str(path)), str(path)

    parts: dict[str, pd.DataFrame] = {}
    if products is not None:
        parts = product_tables(*load(products, "product"), rejects, mapping.options)
    listed = parts[schema.PRODUCT]["id"] if parts else pd.Series([], dtype="string")
    known = pd.Index(pd.concat([listed, pd.Series(list(known_products), dtype="string")]))
    if products is None and not len(known):
        raise InputError("no products: give a products file or load the products first")
    if users is not None:
        parts[schema.USER] = user_table(*load(users, "user"), rejects)
    yield build.assemble(parts, rejects, read)
    seen_users = KeySet()
    if schema.USER in parts:
        seen_users.add(hash_ids(parts[schema.USER]["id"].drop_duplicates()))
    yield from _event_parts(events, mapping, known, seen_users, chunk_rows)
    rejects, read, parts = v.Rejects(), {}, {}
    entities: list[pd.Series] = []
    if kg is not None:
        parts[schema.RELATED] = kg_table(*load(kg, "kg"), rejects)
        entities += [parts[schema.RELATED]["src"], parts[schema.RELATED]["dst"]]
    if links is not None:
        parts[schema.LINKED_TO] = link_table(*load(links, "link"), rejects, known)
        entities.append(parts[schema.LINKED_TO]["dst"])
    if entities:
        parts[schema.ENTITY] = pd.DataFrame({"id": pd.concat(entities).drop_duplicates()})
    if parts or len(rejects):
        yield build.assemble(parts, rejects, read)


def _event_parts(events: str | Path, mapping: ColumnMapping, known: pd.Index,
                 seen_users: KeySet, chunk_rows: int) -> Iterator[GraphTables]:
    """One part per chunk of events: its relationships and the users not seen before."""
    file = str(events)
    options = {**mapping.options, "event_words": mapping.event_words}
    seen_events = KeySet()
    for frame, n, rejects in iter_records(events, chunk_rows):
        if not len(frame) and len(frame.columns) <= 1:  # JSON lines that all failed to parse
            yield build.assemble({}, rejects, {file: n})
            continue
        cols = mapping.resolve("event", frame, file)
        rels, _ = event_tables(frame, cols, file, rejects, known, options, seen=seen_events)
        ids = pd.concat([t["src"] for t in rels.values()] or [pd.Series([], dtype="string")])
        ids = ids.drop_duplicates()
        hashes = hash_ids(ids)
        new = seen_users.find(hashes) < 0
        seen_users.add(hashes[new])
        yield build.assemble({**rels, schema.USER: pd.DataFrame({"id": ids[new]})}, rejects,
                             {file: n})


def read_generic(
    products: str | Path | None,
    events: str | Path,
    *,
    users: str | Path | None = None,
    kg: str | Path | None = None,
    links: str | Path | None = None,
    mapping: ColumnMapping | None = None,
    known_products: Iterable[str] = (),
) -> GraphTables:
    """Read a generic dump into GraphTables.

    Args:
        products: products file (one row per product); None for an events-only dump whose
            products are already stored (pass their ids as ``known_products``).
        events: events file (user, product, type, timestamp, value).
        users: optional users file (id + attribute columns).
        kg: optional knowledge-graph triples (head, relation, tail).
        links: optional product -> entity link table (needed to attach ``kg`` to products).
        mapping: column mapping and options (defaults: :data:`.mapping.DEFAULT_COLUMNS`).
        known_products: ids of products already in the store; events and links on them
            are accepted (incremental loads).
    """
    # One implementation: the streamed read, with every event in one chunk.
    return GraphTables.concat(stream_generic(
        products, events, users=users, kg=kg, links=links, mapping=mapping,
        known_products=known_products, chunk_rows=WHOLE_FILE))


#: ``chunk_rows`` of a whole-file read.
WHOLE_FILE = 1 << 62
