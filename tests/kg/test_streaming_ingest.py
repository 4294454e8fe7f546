"""Streaming ingest: a chunked load equals a whole-file one (store, rejects, summary), re-runs
are idempotent, an interrupted load resumes, and the progress total is the rows read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from kgrec.config import Config
from kgrec.kg import schema
from kgrec.kg.extract.sources import count_rows
from kgrec.kg.extract.stream import read_generic, stream_generic
from kgrec.kg.ingest import IngestSummary, ingest, ingest_stream
from kgrec.kg.store.local import LocalStore
from kgrec.kg.tables import GraphTables
from kgrec.loading import ingest as api_ingest
from kgrec.settings import SourceSpec

ROWS, CHUNK = 5_500, 1_000


def dump(folder: Path, fmt: str) -> tuple[Path, Path]:
    """50 products and 5,500 events with bad rows on and around chunk borders (lines are
    rows + 1 in CSV, whose header is line 1)."""
    folder.mkdir(parents=True, exist_ok=True)
    products = pd.DataFrame({"item_id": [f"p{i}" for i in range(50)],
                             "title": [f"Product {i}" for i in range(50)]})
    products.to_csv(folder / "products.csv", index=False)
    rows = [{"user_id": f"u{i % 700}", "item_id": f"p{i % 50}", "event": "purchase",
             "timestamp": str(1_600_000_000 + i), "rating": ""} for i in range(ROWS)]
    rows[999] = dict(rows[3])  # duplicate of an event in the first chunk, next chunk
    rows[1000] = dict(rows[4], rating="3")  # conflicting duplicate, across the border
    rows[1998]["item_id"] = "p999"  # unknown product
    rows[1999]["user_id"] = ""  # missing user
    rows[2000]["timestamp"] = "yesterday"  # bad timestamp
    rows[2999]["event"] = "listen"  # unknown event word
    rows[3000] = dict(rows[2500])  # duplicate within the same chunk
    rows[4999] = {"user_id": "u1", "item_id": "p1", "event": "rating", "timestamp": "5",
                  "rating": ""}  # rating without a value
    rows[5000] = dict(rows[2001])  # duplicate of an event two chunks back
    frame = pd.DataFrame(rows)
    events = folder / f"events.{fmt}"
    if fmt == "csv":
        frame.to_csv(events, index=False)
        lines = events.read_text().splitlines(keepends=True)
        lines[3002] = "u1,p1,purchase\n"  # row 3001: wrong number of fields
        events.write_text("".join(lines))
    elif fmt == "jsonl":
        lines = [json.dumps(r) + "\n" for r in rows]
        lines[3001] = "{not json\n"  # row 3001: bad JSON
        events.write_text("".join(lines))
    else:
        frame.to_parquet(events, index=False)
    return folder / "products.csv", events


def load(products: Path, events: Path, store: Path, reports: Path,
         chunk_rows: int) -> IngestSummary:
    parts = stream_generic(products, events, chunk_rows=chunk_rows)
    return ingest_stream(parts, LocalStore(store), reports, progress=False)


def tables_of(path: Path) -> dict[str, pd.DataFrame]:
    """Every table of a store, sorted by key (parts may split it differently)."""
    store, out = LocalStore(path), {}
    for name in [*schema.NODE_LABELS, *schema.RELATIONSHIPS]:
        batches = list(store.iter_nodes(name) if name in schema.NODE_PROPERTIES
                       else store.iter_rels(name))
        if batches:
            frame = pd.concat(batches, ignore_index=True)
            out[name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return out


def same_tables(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)


def figures(summary: IngestSummary) -> dict:
    out = summary.to_dict()
    for key in ("elapsed_s", "rejects_path", "summary_path", "parts"):
        out.pop(key)
    return out


@pytest.mark.parametrize("fmt", ["csv", *(pytest.param(f, marks=pytest.mark.slow)
                                          for f in ("jsonl", "parquet"))])
def test_chunked_load_equals_whole_load(tmp_path: Path, fmt: str) -> None:
    products, events = dump(tmp_path / "in", fmt)
    whole = load(products, events, tmp_path / "one", tmp_path / "r1", 10**6)
    chunked = load(products, events, tmp_path / "many", tmp_path / "r2", CHUNK)
    assert len(chunked.parts) == 1 + -(-ROWS // CHUNK)  # products, then 6 event chunks
    same_tables(tables_of(tmp_path / "one"), tables_of(tmp_path / "many"))
    assert figures(chunked) == figures(whole)
    a, b = pd.read_csv(whole.rejects_path), pd.read_csv(chunked.rejects_path)
    pd.testing.assert_frame_equal(a, b)
    bad = {999, 1000, 1998, 1999, 2000, 2999, 3000, 3001, 4999, 5000}
    bad -= {3001} if fmt == "parquet" else set()  # no unparseable row in Parquet
    first = 2 if fmt == "csv" else 1  # line of row 0: the CSV header is line 1
    assert set(b.loc[b["file"] == str(events), "line"]) == {i + first for i in bad}
    # The streamed load also equals the whole-file reader + one write.
    tables = read_generic(products, events)
    single = ingest(tables, LocalStore(tmp_path / "old"), tmp_path / "r3", progress=False)
    same_tables(tables_of(tmp_path / "old"), tables_of(tmp_path / "many"))
    assert figures(single) == figures(chunked)
    pd.testing.assert_frame_equal(pd.read_csv(single.rejects_path), b)


def test_rerun_is_idempotent_and_adds_no_part(tmp_path: Path) -> None:
    products, events = dump(tmp_path / "in", "csv")
    first = load(products, events, tmp_path / "s", tmp_path / "r", CHUNK)
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "s").rglob("*.parquet")}
    again = load(products, events, tmp_path / "s", tmp_path / "r", CHUNK)
    assert sum(first.created.values()) > 0 and sum(again.created.values()) == 0
    assert again.store_counts == first.store_counts
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "s").rglob("*.parquet")} == files
    # A different chunking on the same store finds every key too.
    third = load(products, events, tmp_path / "s", tmp_path / "r", 777)
    assert sum(third.created.values()) == 0 and third.store_counts == first.store_counts


def test_interrupted_load_resumes(tmp_path: Path) -> None:
    products, events = dump(tmp_path / "in", "jsonl")
    load(products, events, tmp_path / "clean", tmp_path / "r", CHUNK)

    def crash_after(parts: Iterator[GraphTables], n: int) -> Iterator[GraphTables]:
        for i, part in enumerate(parts):
            if i == n:
                raise KeyboardInterrupt("simulated crash")
            yield part

    store = LocalStore(tmp_path / "crash")
    with pytest.raises(KeyboardInterrupt):
        ingest_stream(crash_after(stream_generic(products, events, chunk_rows=CHUNK), 3),
                      store, tmp_path / "r", progress=False)
    partial = store.counts()[schema.PURCHASED]
    assert 0 < partial < LocalStore(tmp_path / "clean").counts()[schema.PURCHASED]
    resumed = load(products, events, tmp_path / "crash", tmp_path / "r", CHUNK)
    assert resumed.created[schema.PURCHASED] == resumed.store_counts[schema.PURCHASED] - partial
    same_tables(tables_of(tmp_path / "crash"), tables_of(tmp_path / "clean"))


@pytest.mark.parametrize("fmt", ["csv", *(pytest.param(f, marks=pytest.mark.slow)
                                          for f in ("jsonl", "parquet"))])
def test_progress_total_and_run_time(tmp_path: Path, fmt: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    products, events = dump(tmp_path / "in", fmt)
    spec = SourceSpec(kind="generic", products=str(products), events=str(events))
    config = Config()
    config.source = spec
    config.store.path = str(tmp_path / "s")
    config.data.reports_dir = str(tmp_path / "r")
    config.data.chunk_rows = CHUNK
    config.data.max_reject_share = 1.0
    summary = api_ingest(config, progress=False)
    assert count_rows(spec) == summary.rows_read == 50 + ROWS
    assert [rows for rows, _ in summary.parts] == [50, *[CHUNK] * 5, ROWS - 5 * CHUNK]
    # The summary's time covers reading and validating, not only the writes.
    assert summary.elapsed_s >= sum(seconds for _, seconds in summary.parts) * 0.99


def test_store_of_the_one_file_layout_is_read_and_merged(tmp_path: Path) -> None:
    """A store written before the parts layout (``nodes/User.parquet``) keeps working."""
    (tmp_path / "nodes").mkdir()
    pd.DataFrame({"id": ["u1", "u2"], "attributes": [None, '{"a": 1}']}).to_parquet(
        tmp_path / "nodes" / "User.parquet", index=False)
    store = LocalStore(tmp_path)
    assert store.counts() == {schema.USER: 2}
    more = GraphTables(nodes={schema.USER: pd.DataFrame({"id": ["u2", "u3"]})})
    assert store.write(more, progress=False) == {schema.USER: 1}
    users = pd.concat(store.iter_nodes(schema.USER)).sort_values("id")
    assert list(users["id"]) == ["u1", "u2", "u3"] and users["attributes"].iloc[1] == '{"a": 1}'
