"""Issue 24, items 1 and 2, through a real ingest into both stores: ids come back verbatim
(surrounding spaces kept, -0.0 read as "0" and reported, non-scalar ids rejected naming the
field), and a timestamp past pandas' range (the year 3000) or a year-9999 epoch in seconds
is one rejected row, not an aborted ingest nor a 1978 date."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from kgrec.cli import main
from kgrec.kg import schema
from kgrec.kg.extract.mapping import load_mapping
from kgrec.kg.extract.stream import read_generic
from kgrec.kg.ingest import ingest
from kgrec.kg.store.local import LocalStore

PRODUCTS = 'id,title\n lead,Lead\ntrail ,Trail\nlead,Plain\n" both ",Both\n5,Five\n'
EVENTS = [
    {"user": " lead", "product": " lead", "ts": 1700000000},
    {"user": "u1", "product": "trail ", "ts": "3000-01-01T00:00:00Z"},
    {"user": "u1", "product": "lead", "ts": 253402300800},
    {"user": -0.0, "product": 5, "ts": "2023-11-14T22:13:20Z"},
    {"user": True, "product": 5, "ts": 1},
    {"user": [1], "product": 5, "ts": 1},
    {"user": {"a": 1}, "product": 5, "ts": 1},
    {"user": "u2", "product": " both ", "ts": 1700000000123},
]
STORED_PRODUCTS = [" both ", " lead", "5", "lead", "trail "]
STORED_EVENTS = [(" lead", " lead", 1700000000), ("0", "5", 1700000000),
                 ("u2", " both ", 1700000000)]
REPORT = [(2, "ts", "timestamp out of range (1970 to 2100)", "rejected"),
          (3, "ts", "timestamp out of range (1970 to 2100; a number under 13 digits is read "
           "as seconds)", "rejected"),
          (4, "user", 'id -0.0 read as "0"', "repaired"),
          (5, "user", "id is a boolean (true/false), not an id", "rejected"),
          (6, "user", "id is an array, not an id", "rejected"),
          (7, "user", "id is an object, not an id", "rejected")]


def _files(folder: Path) -> tuple[Path, Path]:
    products, events = folder / "p.csv", folder / "e.jsonl"
    products.write_text(PRODUCTS)
    events.write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    return products, events


def _check(store, tables) -> None:
    nodes = pd.concat(list(store.iter_nodes(schema.PRODUCT)), ignore_index=True)
    assert sorted(nodes["id"]) == STORED_PRODUCTS
    users = pd.concat(list(store.iter_nodes(schema.USER)), ignore_index=True)
    assert sorted(users["id"]) == [" lead", "0", "u2"]
    rels = pd.concat(list(store.iter_rels(schema.PURCHASED)), ignore_index=True)
    assert sorted(zip(rels["src"], rels["dst"], rels["timestamp"].astype(int),
                      strict=True)) == STORED_EVENTS
    report = tables.rejects[tables.rejects["file"].str.endswith("e.jsonl")]
    assert [tuple(r) for r in report[["line", "field", "reason", "action"]].itertuples(
        index=False)] == REPORT


def _tables(tmp_path: Path):
    products, events = _files(tmp_path)
    return read_generic(products, events, mapping=load_mapping(overrides=["event.timestamp=ts"]))


def test_ids_and_times_on_the_embedded_store(tmp_path) -> None:
    tables = _tables(tmp_path)
    store = LocalStore(tmp_path / "store")
    ingest(tables, store, tmp_path / "reports", progress=False)
    _check(store, tables)


@pytest.mark.neo4j
def test_ids_and_times_on_neo4j(tmp_path, neo4j_store) -> None:
    tables = _tables(tmp_path)
    ingest(tables, neo4j_store, tmp_path / "reports", progress=False)
    _check(neo4j_store, tables)


def test_cli_ingest_of_a_year_3000_timestamp_ends_well(tmp_path, capsys) -> None:
    """Was: ``kgrec: error: Out of bounds nanosecond timestamp``, exit 1, products written."""
    products, _ = _files(tmp_path)
    events = tmp_path / "e.csv"
    events.write_text("user,product,ts\nu1,lead,1700000000\nu2,lead,3000-01-01T00:00:00Z\n"
                      "u3,5,1700000000\nu4,5,1700003600\n")
    assert main(["ingest", "--products", str(products), "--events", str(events), "--map",
                 "event.timestamp=ts", "--store-path", str(tmp_path / "store"),
                 "--reports-dir", str(tmp_path / "rep"), "--no-progress"]) == 0
    assert "kgrec: error" not in capsys.readouterr().err
    [report] = (tmp_path / "rep").glob("rejects-*.csv")
    rows = pd.read_csv(report, keep_default_na=False)
    assert rows[["file", "line", "field", "reason", "value"]].values.tolist() == [
        [str(events), 3, "ts", "timestamp out of range (1970 to 2100)",
         "3000-01-01T00:00:00Z"]]
    users = pd.concat(list(LocalStore(tmp_path / "store").iter_nodes(schema.USER)))
    assert sorted(users["id"]) == ["u1", "u3", "u4"]
