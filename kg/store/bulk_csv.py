"""The input files of Neo4j's bulk importer (``neo4j-admin database import full``), written
part by part as a dump is streamed: per label and relationship type a header file and one
CSV file per part, ``id:ID(<Label>)`` id spaces, typed headers from :mod:`kgrec.kg.schema`.
Rows are deduplicated and checked as :class:`~kgrec.kg.store.neo4j.Neo4jStore` checks them,
so both load paths build the same graph; memory holds one part and 8 bytes per key
exported."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kgrec.errors import InputError, StoreError
from kgrec.kg import schema
from kgrec.kg.store.local import find_sorted, hash_ids, hash_keys
from kgrec.kg.tables import GraphTables, typed_node_table, typed_rel_table

#: pandas dtype of a schema property -> neo4j-admin import header type.
CSV_TYPES = {"string": "string", "Int64": "long", "Float64": "double"}
#: Rows formatted at a time: bounds the memory of the CSV export of a huge table.
CHUNK_ROWS = 500_000


@dataclass
class CsvFile:
    """One importer input: ``kind`` is ``nodes`` or ``relationships``; ``name`` the label/type;
    ``paths`` its header file, then one file per part with rows."""

    kind: str
    name: str
    paths: list[Path]
    rows: int


def _require_keys(frame: pd.DataFrame, columns: list[str], table: str) -> None:
    """Keys must be non-empty strings, as Neo4jStore requires."""
    for col in columns:
        bad = (frame[col].isna() | (frame[col] == "")).to_numpy().nonzero()[0]
        if len(bad):
            raise InputError(f"{table} table has an empty {col}", row=int(bad[0]), field=col)


def node_frame(label: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Typed node table, one row per key (the first wins, as in both stores)."""
    frame = typed_node_table(label, frame)
    _require_keys(frame, [schema.NODE_KEY], label)
    return frame.drop_duplicates(schema.NODE_KEY, keep="first")


def rel_frame(rel: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Typed relationship table, one row per (src, dst, *key) (the first wins)."""
    if schema.rel_type(rel) == schema.RECOMMENDED:
        raise StoreError("RECOMMENDED edges are written by scoring, not by a bulk import")
    frame = typed_rel_table(rel, frame)
    _require_keys(frame, ["src", "dst"], rel)
    return frame.drop_duplicates(schema.row_key(rel), keep="first")


def _csv_values(series: pd.Series, dtype: str) -> pd.Series:
    """CSV fields: strings quoted (quotes doubled), so ``""`` stays an empty string; NA an
    empty unquoted field, which the importer leaves out (Neo4j has no null properties)."""
    if dtype == "string":
        out = '"' + series.str.replace('"', '""', regex=False) + '"'
    else:
        out = series.astype("string")
        if dtype == "Float64":  # Java's parseDouble spells these differently
            out = out.replace({"inf": "Infinity", "-inf": "-Infinity", "nan": "NaN"})
    return out.fillna("")


def _lines(frame: pd.DataFrame, dtypes: list[str]) -> Iterator[str]:
    for start in range(0, len(frame), CHUNK_ROWS):
        part = frame.iloc[start : start + CHUNK_ROWS]
        cols = [_csv_values(part[c], t) for c, t in zip(part.columns, dtypes, strict=True)]
        joined = cols[0].str.cat(cols[1:], sep=",") if len(cols) > 1 else cols[0]
        yield "\n".join(joined.tolist()) + "\n"


def _write(path: Path, frame: pd.DataFrame, dtypes: list[str]) -> bool:
    """Write one CSV part (no header); True when a string holds a line break (the importer
    must be told)."""
    with path.open("w", encoding="utf-8", newline="") as out:
        for chunk in _lines(frame, dtypes):
            out.write(chunk)
    strings = [frame[c] for c, t in zip(frame.columns, dtypes, strict=True) if t == "string"]
    return any(s.str.contains("[\r\n]", regex=True).any() for s in strings)


def node_header(label: str) -> tuple[list[str], list[str]]:
    """(CSV header, dtypes) of a node file: ``id:ID(<Label>)`` then ``prop:type``."""
    props = schema.NODE_PROPERTIES[schema.label(label)]
    header = [f"{schema.NODE_KEY}:ID({label})", *(f"{p}:{CSV_TYPES[t]}" for p, t in props)]
    return header, ["string", *(t for _, t in props)]


def rel_header(rel: str) -> tuple[list[str], list[str]]:
    """(CSV header, dtypes) of a relationship file: start/end ids in their label's id space."""
    spec = schema.rel_spec(rel)
    header = [f":START_ID({spec.src})", f":END_ID({spec.dst})",
              *(f"{p}:{CSV_TYPES[t]}" for p, t in spec.properties)]
    return header, ["string", "string", *(t for _, t in spec.properties)]


class CsvExport:
    """The importer's input, written one part of the load at a time.

    Nodes and relationships an earlier part exported are left out (the first wins, as in
    both stores), and every relationship end is checked against the nodes exported so far:
    the database starts empty, so an end must come in the same load. Memory: one part, and
    8 bytes per node and relationship key exported (sorted hashes, :func:`hash_keys`).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.files: dict[tuple[str, str], CsvFile] = {}
        self.keys: dict[tuple[str, str], np.ndarray] = {}
        self.multiline = False

    def add(self, tables: GraphTables) -> dict[str, int]:
        """Export one part; returns its new nodes and relationships per label / type."""
        nodes = {lab: self._new("nodes", lab, node_frame(lab, f))
                 for lab, f in tables.nodes.items() if len(f)}
        rels = {}
        for rel, frame in tables.rels.items():
            if len(frame):
                frame = rel_frame(rel, frame)
                self._check_ends(rel, frame)
                rels[rel] = self._new("relationships", rel, frame)
        created = {}
        for kind, frames, header_of in (("nodes", nodes, node_header),
                                        ("relationships", rels, rel_header)):
            for name, frame in frames.items():
                if len(frame):
                    self._append(kind, name, frame, header_of(name))
                    created[name] = len(frame)
        return created

    def _new(self, kind: str, name: str, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``frame`` whose key no earlier part exported; their keys recorded."""
        hashes = hash_keys(frame, schema.row_key(name))
        seen = self.keys.get((kind, name), np.empty(0, dtype=np.uint64))
        new = find_sorted(hashes, seen) < 0
        # A stable sort of integers is a radix sort: linear, where np.union1d's unique
        # hashing made the export of 5M events take 354 s.
        self.keys[kind, name] = np.sort(np.concatenate([seen, hashes[new]]), kind="stable")
        return frame[new]

    def _check_ends(self, rel: str, frame: pd.DataFrame) -> None:
        spec = schema.rel_spec(rel)
        for end, lab in (("src", spec.src), ("dst", spec.dst)):
            known = self.keys.get(("nodes", lab), np.empty(0, dtype=np.uint64))
            missing = frame.loc[find_sorted(hash_ids(frame[end]), known) < 0, end]
            if len(missing):
                raise StoreError(
                    f"{rel}: {missing.nunique():,} relationship end(s) name a {lab} that is not "
                    f"in the tables, e.g. {end}={missing.iloc[0]!r}; a bulk import starts from "
                    "an empty database, so every node must be in the same load"
                )

    def _append(self, kind: str, name: str, frame: pd.DataFrame,
                header: tuple[list[str], list[str]]) -> None:
        columns, dtypes = header
        file = self.files.get((kind, name))
        if file is None:
            head = self.folder / f"{kind}-{name}-header.csv"
            head.write_text(",".join(columns) + "\n", encoding="utf-8")
            file = self.files[kind, name] = CsvFile(kind, name, [head], 0)
        path = self.folder / f"{kind}-{name}-{len(file.paths):05d}.csv"
        self.multiline |= _write(path, frame, dtypes)
        file.paths.append(path)
        file.rows += len(frame)


def export_csv(tables: GraphTables, folder: Path) -> tuple[list[CsvFile], bool]:
    """Write the importer's CSV files of one whole load into ``folder``; returns them and
    whether any field spans lines (``--multiline-fields``, slower, is then needed)."""
    export = CsvExport(folder)
    export.add(tables)
    return list(export.files.values()), export.multiline


def import_args(files: list[CsvFile], multiline: bool, report: Path) -> list[str]:
    """The importer options for ``files`` (labels and types named per file)."""
    args = [f"--{f.kind}={f.name}={','.join(map(str, f.paths))}" for f in files]
    args.append(f"--report-file={report}")
    return args + ["--multiline-fields=true"] * multiline
