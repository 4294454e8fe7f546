"""Property tests of the generic reader on generated hostile rows.

Invariants, per data record (a CSV record, which may span lines, or a JSON line):

1. Accounted for: every record is either loaded (one Product node, or one interaction
   relationship) or has exactly one ``rejected`` report row at its first line; never
   both, never neither. Loaded products are exactly the ids of the records not rejected;
   loaded events are exactly the (user, product) pairs of the events not rejected.
2. Repairs are loaded: a ``repaired`` row names a record that was loaded (repairs change a
   value, never drop the record).
3. No garbage stored: values, weights and prices are finite, prices in [0, MAX_PRICE],
   timestamps in [0, MAX_TIMESTAMP).
4. Idempotent: reading the same input twice gives equal tables and reports, and
   ingesting it twice into a LocalStore leaves the same counts and tables as once.
5. Ids verbatim: every id of a file comes back from the store as written (surrounding
   spaces kept; a number as its text, a whole float as its integer), or the rejects
   report names its line and field; -0.0 is read as "0" and reported as repaired.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kgrec.kg import schema
from kgrec.kg.extract.parse import MAX_PRICE, MAX_TIMESTAMP
from kgrec.kg.extract.stream import read_generic
from kgrec.kg.extract.validate import REJECTED, REPAIRED
from kgrec.kg.ingest import ingest
from kgrec.kg.store.local import LocalStore
from kgrec.kg.tables import GraphTables

pytestmark = pytest.mark.slow  # property searches over many inputs: the full suite only

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Hostile text: markup, entities, quotes, separators, every line end, Unicode of all
# kinds (not NUL: a NUL byte makes the whole file an error, tested in test_bad_input).
FRAGMENTS = ["<b>", "</b>", "<script>x()</script>", "&amp;", "&", "<", ">", '"', "'", ",",
             "\t", "\r\n", "\r", "\n", " ", "by ", "é", "e\u0301", "东京", "🎉", "עברית",
             "\u200f", "\u00a0"]
hostile = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS),
              st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                      max_size=8)),
    max_size=5,
).map("".join)
ids = st.one_of(st.sampled_from(["p0", "p1", "p2", " p1 ", "", "  "]), hostile)
users = st.one_of(st.sampled_from(["u0", "u1", " u1", ""]), hostile)
prices = st.one_of(st.sampled_from(["", "12.5", "$1,299.00", "-5", "1e12", "abc", "inf", "0"]),
                   st.floats().map(str), hostile)
words = st.one_of(st.sampled_from(["view", "purchase", "rating", "cart", " VIEW ", "", "zap"]),
                  hostile)
values = st.one_of(st.sampled_from(["", "4", "5.0", "-1", "inf", "-inf", "nan", "1e400", " 3 "]),
                   st.floats().map(str), hostile)
stamps = st.one_of(st.sampled_from(["", "1700000000", "1700000000000", "2023-11-14",
                                    "2023-11-14T22:13:20Z", "1800-01-01", "-5", "1e400"]),
                   st.integers(-(10**13), 10**17).map(str), hostile)
product_rows = st.lists(st.tuples(ids, hostile, hostile, prices), max_size=12)
event_rows = st.lists(st.tuples(users, ids, words, values, stamps), max_size=15)
# JSON events: ids of mixed types (1, "1" and 1.0 are one id; None is missing).
json_ids = st.one_of(ids, st.integers(0, 3), st.sampled_from([1.0, 2.0, -0.0]), st.none())
json_events = st.lists(st.tuples(json_ids, json_ids, words, st.one_of(values, st.floats()),
                                 stamps), max_size=15)
# csv.writer quotes a field holding "\r" only when "\r" is in its line terminator, so
# "\n" line ends go with every field quoted.
dialects = st.sampled_from([("\n", csv.QUOTE_ALL), ("\r\n", csv.QUOTE_MINIMAL)])

PRODUCT_HEADER = ["id", "title", "brand", "price"]
EVENT_HEADER = ["user", "product", "type", "value", "ts"]
_BREAK = re.compile(r"\r\n|\r|\n")


def _write_csv(path: Path, header: list[str], rows: list[tuple],
               dialect: tuple[str, int] = ("\r\n", csv.QUOTE_MINIMAL)) -> list[int]:
    """Write ``rows`` as CSV; returns the first line of each record (line ends inside
    quoted fields count, as in the reader)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=dialect[0], quoting=dialect[1])  # type: ignore[call-overload]
    writer.writerow(header)
    starts = []
    for row in rows:
        starts.append(len(_BREAK.findall(buf.getvalue())) + 1)
        writer.writerow(row)
    path.write_text(buf.getvalue(), encoding="utf-8", newline="")
    return starts


def _write_jsonl(path: Path, rows: list[tuple]) -> list[int]:
    text = "".join(json.dumps(dict(zip(EVENT_HEADER, r, strict=True)), ensure_ascii=False) + "\n"
                   for r in rows)
    path.write_text(text, encoding="utf-8")
    return list(range(1, len(rows) + 1))


def _id(value: Any) -> str | None:
    """The id the reader makes of a raw value, verbatim (None: missing or blank)."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value) if str(value).strip() else None


def _minus_zero(value: Any) -> bool:
    return isinstance(value, float) and value == 0 and math.copysign(1, value) < 0


def _report(t: GraphTables, file: Path) -> tuple[Counter, set[int]]:
    """(rejected rows per line, repaired lines) of one file."""
    mine = t.rejects[t.rejects["file"] == str(file)]
    rejected = Counter(int(x) for x in mine.loc[mine["action"] == REJECTED, "line"])
    return rejected, {int(x) for x in mine.loc[mine["action"] == REPAIRED, "line"]}


def _check_accounted(t: GraphTables, products: Path, p_starts: list[int], p_rows: list[tuple],
                     events: Path, e_starts: list[int], e_rows: list[tuple]) -> None:
    rejected, repaired = _report(t, products)
    assert set(rejected) <= set(p_starts) and max(rejected.values(), default=1) == 1
    kept = [_id(r[0]) for s, r in zip(p_starts, p_rows, strict=True) if s not in rejected]
    assert sorted(t.node(schema.PRODUCT)["id"]) == sorted(kept)  # ids unique: dups rejected
    assert repaired <= set(p_starts) - set(rejected)
    rejected, repaired = _report(t, events)
    assert set(rejected) <= set(e_starts) and max(rejected.values(), default=1) == 1
    # The only repair of an event: an id -0.0 read as "0" (of a loaded event).
    assert repaired <= {s for s, r in zip(e_starts, e_rows, strict=True)
                        if (_minus_zero(r[0]) or _minus_zero(r[1])) and s not in rejected}
    kept_pairs = Counter((_id(r[0]), _id(r[1])) for s, r in zip(e_starts, e_rows, strict=True)
                         if s not in rejected)
    loaded = Counter()
    for rel in schema.INTERACTIONS:
        if rel in t.rels:
            loaded.update(zip(t.rel(rel)["src"], t.rel(rel)["dst"], strict=True))
    assert loaded == kept_pairs


def _check_no_garbage(t: GraphTables) -> None:
    price = t.node(schema.PRODUCT)["price"].dropna()
    assert price.between(0, MAX_PRICE).all()
    for rel in schema.INTERACTIONS:
        if rel in t.rels:
            r = t.rel(rel)
            assert all(math.isfinite(x) for x in [*r["value"], *r["weight"]])
            ts = r["timestamp"].dropna()
            assert ((ts >= 0) & (ts < MAX_TIMESTAMP)).all()


@SETTINGS
@given(p_rows=product_rows, dialect=dialects,
       events=st.one_of(event_rows.map(lambda r: ("e.csv", r)),
                        json_events.filter(bool).map(lambda r: ("e.jsonl", r))))
def test_rows_loaded_xor_rejected(p_rows: list[tuple], dialect: tuple[str, int],
                                  events: tuple[str, list[tuple]]) -> None:
    name, e_rows = events
    with tempfile.TemporaryDirectory() as tmp:
        products, e_path = Path(tmp, "p.csv"), Path(tmp, name)
        p_starts = _write_csv(products, PRODUCT_HEADER, p_rows, dialect)
        e_starts = (_write_csv(e_path, EVENT_HEADER, e_rows, dialect) if name == "e.csv"
                    else _write_jsonl(e_path, e_rows))  # (an empty one: test_bad_input)
        t = read_generic(products, e_path)
        _check_accounted(t, products, p_starts, p_rows, e_path, e_starts, e_rows)
        _check_no_garbage(t)


def _stored(store: LocalStore) -> dict[str, pd.DataFrame]:
    out = {}
    for name in store.counts():
        batches = list(store.iter_nodes(name) if name in schema.NODE_PROPERTIES
                       else store.iter_rels(name))
        out[name] = pd.concat(batches, ignore_index=True)
    return out


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p_rows=product_rows, e_rows=event_rows)
def test_reading_and_ingesting_twice_is_idempotent(p_rows: list[tuple],
                                                   e_rows: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        products, events = Path(tmp, "p.csv"), Path(tmp, "e.csv")
        _write_csv(products, PRODUCT_HEADER, p_rows)
        _write_csv(events, EVENT_HEADER, e_rows)
        first, second = read_generic(products, events), read_generic(products, events)
        pd.testing.assert_frame_equal(first.rejects, second.rejects)
        assert first.nodes.keys() == second.nodes.keys() and first.rels.keys() == second.rels.keys()
        for name in first.nodes:
            pd.testing.assert_frame_equal(first.nodes[name], second.nodes[name])
        for name in first.rels:
            pd.testing.assert_frame_equal(first.rels[name], second.rels[name])
        store = LocalStore(Path(tmp, "store"))
        ingest(first, store, Path(tmp, "reports"), progress=False)
        once, once_counts = _stored(store), store.counts()
        ingest(second, store, Path(tmp, "reports"), progress=False)
        assert store.counts() == once_counts == {k: v for k, v in first.counts().items() if v}
        again = _stored(store)
        assert once.keys() == again.keys()
        for name in once:
            pd.testing.assert_frame_equal(once[name], again[name])


# Ids of every JSON kind: text with surrounding spaces, numbers (whole floats, -0.0,
# fractions), and values that are no ids (booleans, arrays, objects, infinity).
any_ids = st.one_of(
    ids, users, st.sampled_from([" lead", "trail ", " both ", "\tx\t", "-0", "0", "1"]),
    st.integers(-5, 5), st.integers(2**53, 2**64),
    st.sampled_from([1.0, -0.0, 0.0, 2.5, 1e20, float("inf"), True, False, [1], [], {"a": 1},
                     {}, None]))
id_products = st.lists(any_ids, min_size=1, max_size=8)
id_events = st.lists(st.tuples(any_ids, any_ids), min_size=1, max_size=10)


def _want(value: Any) -> str | None:
    """The stored text of an id (None: the row must be rejected)."""
    if isinstance(value, bool | list | dict) or value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return _id(value)


def _check_ids_round_trip(p_ids: list[Any], e_ids: list[tuple[Any, Any]], store) -> None:
    """Invariant 5 for one input, through ``store`` (emptied by the caller)."""
    with tempfile.TemporaryDirectory() as tmp:
        products, events = Path(tmp, "p.jsonl"), Path(tmp, "e.jsonl")
        products.write_text("".join(json.dumps({"id": x, "title": "t"}) + "\n" for x in p_ids))
        events.write_text("".join(json.dumps({"user": u, "product": p}) + "\n"
                                  for u, p in e_ids))
        t = read_generic(products, events)
        store = store if store is not None else LocalStore(Path(tmp, "store"))
        ingest(t, store, Path(tmp, "reports"), progress=False)
        stored = {label: {i for batch in store.iter_nodes(label) for i in batch["id"]}
                  for label in (schema.PRODUCT, schema.USER)}
        report = t.rejects
        for file, rows, fields in ((products, [(x,) for x in p_ids], ("id",)),
                                   (events, e_ids, ("user", "product"))):
            mine = report[report["file"] == str(file)]
            rejected = set(mine.loc[mine["action"] == REJECTED, "line"].astype(int))
            for line, row in enumerate(rows, start=1):
                bad = [n for n, x in zip(fields, row, strict=True) if _want(x) is None]
                if bad:  # not an id, or blank: the row is rejected once, naming such a field
                    named = mine[(mine["line"] == line) & (mine["action"] == REJECTED)]
                    assert len(named) == 1 and named["field"].iloc[0] in bad, (file.name, line,
                                                                               row)
                if line in rejected:  # named by the report
                    continue
                for name, value in zip(fields, row, strict=True):
                    label = schema.USER if name == "user" else schema.PRODUCT
                    assert _want(value) in stored[label], (file.name, line, name, value)
                    if _minus_zero(value):  # -0.0 -> "0", reported
                        named = mine[(mine["line"] == line) & (mine["field"] == name)]
                        assert named[["reason", "action"]].values.tolist() == [
                            ['id -0.0 read as "0"', REPAIRED]]


@SETTINGS
@given(p_ids=id_products, e_ids=id_events)
def test_every_id_comes_back_verbatim_or_is_reported(p_ids: list[Any],
                                                     e_ids: list[tuple[Any, Any]]) -> None:
    _check_ids_round_trip(p_ids, e_ids, None)


@pytest.mark.neo4j
def test_every_id_comes_back_verbatim_or_is_reported_on_neo4j(neo4j_driver) -> None:
    from kgrec.kg.store.neo4j import Neo4jStore

    store = Neo4jStore(neo4j_driver)

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(p_ids=id_products, e_ids=id_events)
    def check(p_ids: list[Any], e_ids: list[tuple[Any, Any]]) -> None:
        store.clear()
        _check_ids_round_trip(p_ids, e_ids, store)

    check()
