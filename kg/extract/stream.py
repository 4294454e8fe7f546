"""Streaming reads for ``kgrec ingest``: the generic events file in chunks, the rest whole.

:func:`stream_generic` yields GraphTables parts: first the products and declared users
(small, read whole), then one part per ``chunk_rows`` events, then the KG triples and links.
Each part carries its own rejects, with line numbers of the whole file, so a caller can
write the part to the store and append its rejects before the next chunk is read: memory
holds one chunk, the catalogue and two compact key sets (:class:`KeySet`), whatever the
number of events. The parts hold exactly what :func:`~kgrec.kg.extract.generic.read_generic`
returns at once: the same rows, the same rejects (a duplicate event in a later chunk is
rejected as if the file were read whole) and every user once.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from kgrec.errors import InputError
from kgrec.kg import schema
from kgrec.kg.extract import build
from kgrec.kg.extract import validate as v
from kgrec.kg.extract.generic import (
    ColumnMapping,
    event_tables,
    kg_table,
    link_table,
    load_mapping,
    product_tables,
    user_table,
)
from kgrec.kg.extract.io import GZIP_MAGIC, file_format, iter_records, read_records
from kgrec.kg.extract.sources import read_source
from kgrec.kg.store.local import find_sorted, hash_ids, hash_keys
from kgrec.kg.tables import GraphTables
from kgrec.settings import SourceSpec

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
    """A generic dump as parts (arguments as :func:`~kgrec.kg.extract.generic.read_generic`,
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


def stream_source(spec: SourceSpec, *, cache_dir: str, chunk_rows: int, progress: bool = True,
                  known_products: Callable[[], Iterable[str]] = tuple) -> Iterator[GraphTables]:
    """The parts of ``spec``: a generic dump streamed, any other source as one part."""
    if spec.kind != "generic" or not spec.events:
        yield read_source(spec, cache_dir=cache_dir, progress=progress,
                          known_products=known_products)
        return
    yield from stream_generic(
        spec.products or None, spec.events, users=spec.users or None, kg=spec.kg or None,
        links=spec.links or None, mapping=load_mapping(spec.mapping or None, spec.map),
        known_products=[] if spec.products else list(known_products()), chunk_rows=chunk_rows,
    )


def count_rows(spec: SourceSpec) -> int | None:
    """Rows of a generic dump's files for a progress total (Parquet: exact; text: lines,
    header left out); None for other sources (their size is known once read)."""
    if spec.kind != "generic":
        return None
    names = [spec.products, spec.users, spec.events, spec.kg, spec.links]
    return sum(_rows_in(Path(name).expanduser()) for name in names if name) or None


def _rows_in(path: Path) -> int:
    """Records of one file, roughly: lines of text, rows of Parquet; 0 when unreadable (the
    reader reports why)."""
    try:
        if file_format(path) == "parquet":
            return pq.ParquetFile(path).metadata.num_rows
        with path.open("rb") as raw:
            zipped = raw.read(2) == GZIP_MAGIC
        lines, last = 0, b"\n"
        with (gzip.open(path, "rb") if zipped else path.open("rb")) as fh:
            while block := fh.read(1 << 20):
                lines += block.count(b"\n")
                last = block[-1:]
    except (OSError, ValueError, InputError):
        return 0
    lines += last != b"\n"  # a last line without its newline
    return lines - (file_format(path) in ("csv", "tsv"))
