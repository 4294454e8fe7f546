"""Bad input to the generic reader (the one ``kgrec ingest --products/--events`` uses): one
table, one case per kind of damage. Every case ends in exactly the rows loaded plus the
rejects report, or in ONE InputError line naming the file and the line (never a traceback,
never garbage stored). What is already covered in test_readers.py (too many CSV fields,
unparsable price "cheap", conflicting duplicates, unknown event words ...) is not repeated.
"""

from __future__ import annotations

import gzip
import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kgrec.errors import InputError
from kgrec.kg import schema
from kgrec.kg.extract.mapping import load_mapping
from kgrec.kg.extract.stream import read_generic
from kgrec.kg.tables import GraphTables

PRODUCTS = "id,title\np1,Mug\np2,Plate\n"
EVENTS = "user,product\nu1,p1\n"
#: Content of a file: text (written as UTF-8, line ends untouched), bytes, or a frame
#: (written as Parquet).
Content = str | bytes | pd.DataFrame


@dataclass
class Case:
    id: str
    products: tuple[str, Content] = ("p.csv", PRODUCTS)
    events: tuple[str, Content] = ("e.csv", EVENTS)
    #: Every report row: (file, line, field, reason, action).
    rejects: list[tuple[str, int, str, str, str]] = field(default_factory=list)
    #: What was loaded: ``view(tables)`` must equal ``want``.
    view: Callable[[GraphTables], Any] | None = None
    want: Any = None
    #: Regex of the one error line instead (then nothing is loaded).
    error: str | None = None
    mapping: list[str] = field(default_factory=list)


def _ids(t: GraphTables) -> list[str]:
    return t.node(schema.PRODUCT)["id"].tolist()


def _column(name: str) -> Callable[[GraphTables], dict[str, Any]]:
    def view(t: GraphTables) -> dict[str, Any]:
        products = t.node(schema.PRODUCT)
        return {i: (None if pd.isna(x) else x) for i, x in zip(products["id"], products[name],
                                                               strict=True)}
    return view


def _events(t: GraphTables) -> list[tuple]:
    rows = []
    for rel in schema.INTERACTIONS:
        if rel in t.rels:
            r = t.rel(rel)
            rows += [(rel, s, d, None if pd.isna(ts) else int(ts), float(v))
                     for s, d, ts, v in zip(r["src"], r["dst"], r["timestamp"], r["value"],
                                            strict=True)]
    return sorted(rows)


def _users(t: GraphTables) -> list[str]:
    return sorted(t.node(schema.USER)["id"])


def _buy(product: str) -> tuple[str, str]:
    return "e.csv", f"user,product\nu1,{product}\n"


def _jsonl(*records: object) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


R, P = "rejected", "repaired"
MEGA = "x" * (1 << 20)
NFC, NFD = unicodedata.normalize("NFC", "Café"), unicodedata.normalize("NFD", "Café")
UNICODE = {"c1": "东京タワー 모형", "c2": "Party 🎉👩‍👩‍👧 pack", "c3": "עברית ثم العربية",
           "c4": "Zoë ́combining e\u0301"}

CASES = [
    # --- malformed records -------------------------------------------------------------
    Case("json-malformed-lines",
         events=("e.jsonl", _jsonl({"user": "u1", "product": "p1"}, '{"user": "u2", "product"',
                                   "[1, 2]", '{"user": "u3", "product": "p1",}',
                                   '{"user": "\\ud800", "product": "p1"}', "")),
         rejects=[("e.jsonl", 2, "", "bad JSON: Expecting ':' delimiter at column 25", R),
                  ("e.jsonl", 3, "", "bad JSON: not an object", R),
                  ("e.jsonl", 4, "", "bad JSON: Expecting property name enclosed in double "
                   "quotes at column 32", R),
                  ("e.jsonl", 5, "", "bad JSON: \\u escape of a lone surrogate (not Unicode "
                   "text)", R)],
         view=_events, want=[("PURCHASED", "u1", "p1", None, 1.0)]),
    Case("json-no-valid-line", events=("e.jsonl", "{oops\n[]\n"),
         error=r"file .*e\.jsonl, row 1: no line holds a JSON object; the first: bad JSON"),
    Case("csv-too-few-fields", products=("p.csv", "id,title,brand\np1,Mug,ACME\np2,Plate\n"),
         rejects=[("p.csv", 3, "", "expected 3 fields, found 2", R)], view=_ids, want=["p1"]),
    Case("csv-stray-quote", products=("p.csv", 'id,title\np1,Mug\np2,"12" plate"\np3,Bowl\n'),
         rejects=[("p.csv", 3, "", "bad CSV quoting: ',' expected after '\"'", R)],
         view=_ids, want=["p1", "p3"]),
    Case("csv-unclosed-quote-swallows-rest",
         products=("p.csv", 'id,title\np1,Mug\np2,"Plate\np3,Bowl\np4,Cup\n'),
         rejects=[("p.csv", 3, "", "bad CSV quoting: unclosed quote (record runs over lines "
                   "3-5)", R)], view=_ids, want=["p1"]),
    Case("csv-quoted-multiline-field-is-fine",
         products=("p.csv", 'id,title\np1,"Mug\nwith lid"\np2,",Plate"\n'),
         events=("e.csv", "user,product\nu1,p1\nu1,p9\n"),
         rejects=[("e.csv", 3, "product", "unknown product", R)],
         view=_column("title"), want={"p1": "Mug with lid", "p2": ",Plate"}),
    Case("csv-duplicate-column", products=("p.csv", "id,title,title\np1,A,B\n"),
         error=r"file .*p\.csv, row 1, field 'title': duplicate column name in the header"),
    Case("csv-reserved-line-column", products=("p.csv", "id,_line\np1,7\n"),
         error=r"file .*p\.csv, row 1, field '_line': column name '_line' is reserved"),
    # --- encodings and what a file really is --------------------------------------------
    Case("latin1-csv", products=("p.csv", "id,title\np1,Mug\np2,Caf\xe9\n".encode("latin-1")),
         error=r"^file .*p\.csv, row 3: not UTF-8 text \(byte 0xe9\): save the file as UTF-8 "
               r"\(it may be Latin-1/Windows-1252\) or it is not a text file$"),
    Case("latin1-jsonl", events=("e.jsonl", '{"user": "J\xfcrgen", "product": "p1"}\n'.encode(
        "latin-1")), error=r"file .*e\.jsonl, row 1: not UTF-8 text \(byte 0xfc\)"),
    Case("utf16-with-bom", products=("p.csv", "id,title\np1,Mug\np2,Tasse à thé\n".encode(
        "utf-16")), view=_column("title"), want={"p1": "Mug", "p2": "Tasse à thé"}),
    Case("utf16-without-bom", products=("p.csv", "id,title\np1,Mug\n".encode("utf-16-le")),
         error=r"file .*p\.csv, row 1: NUL byte: a binary file, or UTF-16 text without a "
               r"byte-order mark \(save it as UTF-8\)"),
    Case("utf8-bom", products=("p.csv", "\ufeffid,title\np1,Mug\n".encode()),
         view=_column("title"), want={"p1": "Mug"}),
    Case("gzip-named-csv", products=("p.csv", gzip.compress(PRODUCTS.encode())),
         view=_ids, want=["p1", "p2"]),
    Case("gzip-damaged", products=("p.csv.gz", gzip.compress(PRODUCTS.encode() * 50)[:-30]),
         error=r"file .*p\.csv\.gz, row \d+: damaged gzip data"),
    Case("parquet-named-csv", products=("p.csv", b"PAR1" + bytes(64)),
         error=r"file .*p\.csv, row 1: this is a Parquet file: name it \.parquet"),
    Case("csv-named-parquet", products=("p.parquet", PRODUCTS),
         error=r"file .*p\.parquet: not a Parquet file \("),
    Case("binary-garbage-csv", products=("p.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
         error=r"file .*p\.csv, row 1: not UTF-8 text \(byte 0x89\)"),
    Case("binary-garbage-jsonl", events=("e.jsonl", bytes(range(128, 256))),
         error=r"file .*e\.jsonl, row 1: not UTF-8 text \(byte 0x80\)"),
    Case("unknown-extension", events=("e.xlsx", b"PK\x03\x04"),
         error=r"file .*e\.xlsx: unknown file format"),
    Case("empty-csv", products=("p.csv", b""), error=r"file .*p\.csv, row 1: empty file"),
    Case("empty-jsonl", events=("e.jsonl", b""),
         error=r"file .*e\.jsonl, row 1: empty file \(no JSON records\)"),
    Case("header-only-csv", events=("e.csv", "user,product\n"), view=_events, want=[]),
    Case("blank-lines-only-after-header", events=("e.csv", "user,product\n\n\r\n\n"),
         view=_events, want=[]),
    # --- ids ----------------------------------------------------------------------------
    Case("missing-and-blank-ids",
         events=("e.jsonl", _jsonl({"user": "u1", "product": "p1"}, {"user": "", "product": "p1"},
                                   {"user": "  ", "product": "p1"}, {"user": None, "product": "p2"},
                                   {"product": "p2"}, {"user": "u2"})),
         rejects=[("e.jsonl", 2, "user", "missing user", R),
                  ("e.jsonl", 3, "user", "missing user", R),
                  ("e.jsonl", 4, "user", "missing user", R),
                  ("e.jsonl", 5, "user", "missing user", R),
                  ("e.jsonl", 6, "product", "missing product", R)],
         view=_users, want=["u1"]),
    Case("ids-int-vs-text",  # 1 and "1" are one id (first kept), "01" another
         products=("p.jsonl", _jsonl({"id": 1, "title": "One"}, {"id": "1", "title": "One"},
                                     {"id": "01", "title": "Zero one"}, {"title": "no id"},
                                     {"id": 2.0, "title": "Two"})),
         events=("e.jsonl", _jsonl({"user": 7, "product": 1}, {"user": "7", "product": "01"},
                                   {"user": 7.0, "product": 2})),
         rejects=[("p.jsonl", 2, "id", "duplicate of line 1", R),
                  ("p.jsonl", 4, "id", "missing id", R)],
         view=_events, want=[("PURCHASED", "7", "01", None, 1.0),
                             ("PURCHASED", "7", "1", None, 1.0),
                             ("PURCHASED", "7", "2", None, 1.0)]),
    Case("ids-surrounding-spaces-kept-verbatim",  # " lead" is not "lead"
         products=("p.csv", 'id,title\n lead,A\ntrail ,B\nlead,C\n" both ",D\n'),
         events=("e.csv", 'user,product\n u1, lead\nu1 ,trail \nu1,lead\n'),
         view=_events, want=[("PURCHASED", " u1", " lead", None, 1.0),
                             ("PURCHASED", "u1", "lead", None, 1.0),
                             ("PURCHASED", "u1 ", "trail ", None, 1.0)]),
    Case("ids-json-not-scalar-rejected-minus-zero-reported",
         products=("p.jsonl", _jsonl({"id": -0.0, "title": "Zero"}, {"id": True, "title": "T"},
                                     {"id": [1], "title": "L"}, {"id": {"a": 1}, "title": "O"},
                                     {"id": 5, "title": "Five"})),
         events=("e.jsonl", _jsonl({"user": "u", "product": 5}, {"user": False, "product": 5},
                                   {"user": "u", "product": [5]}, {"user": -0.0, "product": 0},
                                   {"user": 1e999, "product": 5})),
         rejects=[("p.jsonl", 1, "id", 'id -0.0 read as "0"', P),
                  ("p.jsonl", 2, "id", "id is a boolean (true/false), not an id", R),
                  ("p.jsonl", 3, "id", "id is an array, not an id", R),
                  ("p.jsonl", 4, "id", "id is an object, not an id", R),
                  ("e.jsonl", 2, "user", "id is a boolean (true/false), not an id", R),
                  ("e.jsonl", 3, "product", "id is an array, not an id", R),
                  ("e.jsonl", 4, "user", 'id -0.0 read as "0"', P),
                  ("e.jsonl", 5, "user", "id is not a finite number", R)],
         view=_events, want=[("PURCHASED", "0", "0", None, 1.0),
                             ("PURCHASED", "u", "5", None, 1.0)]),
    Case("parquet-int-ids-with-gaps",
         products=("p.parquet", pd.DataFrame({"id": [1, None, 3], "title": ["A", "B", "C"]})),
         events=("e.parquet", pd.DataFrame({"user": [10, 11], "product": [1, 3]})),
         rejects=[("p.parquet", 2, "id", "missing id", R)], view=_ids, want=["1", "3"]),
    Case("duplicate-product-identical", products=("p.csv", "id,title\np1,Mug\np2,Cup\np1,Mug\n"),
         rejects=[("p.csv", 4, "id", "duplicate of line 2", R)], view=_ids, want=["p1", "p2"]),
    Case("events-unknown-user-and-product",  # users are optional: bare User, not reported
         events=("e.csv", "user,product\nu1,p1\nnew-user,p2\nu1,p404\n"),
         rejects=[("e.csv", 4, "product", "unknown product", R)],
         view=_users, want=["new-user", "u1"]),
    # --- numbers ------------------------------------------------------------------------
    Case("ratings-nan-inf",
         events=("e.csv", "user,product,type,value\nu1,p1,rating,4\nu2,p1,rating,inf\n"
                          "u3,p1,rating,-inf\nu4,p1,rating,1e400\nu5,p1,rating,nan\n"
                          "u6,p1,rating,NaN\nu7,p1,rating,four\nu8,p1,view,Infinity\n"),
         rejects=[("e.csv", 3, "value", "value is not a finite number", R),
                  ("e.csv", 4, "value", "value is not a finite number", R),
                  ("e.csv", 5, "value", "value is not a finite number", R),
                  ("e.csv", 6, "value", "unparsable value", R),
                  ("e.csv", 7, "value", "unparsable value", R),
                  ("e.csv", 8, "value", "unparsable value", R),
                  ("e.csv", 9, "value", "value is not a finite number", R)],
         view=_events, want=[("RATED", "u1", "p1", None, 4.0)]),
    Case("ratings-out-of-range-and-negative-counts",
         events=("e.csv", "user,product,type,value\nu1,p1,rating,5\nu2,p1,rating,50\n"
                          "u3,p1,rating,-1\nu4,p1,cart,-2\nu5,p1,cart,3\nu6,p1,rating,0\n"),
         rejects=[("e.csv", 3, "value", "rating out of range (0 to 5, options.rating_scale)",
                   R),
                  ("e.csv", 4, "value", "rating out of range (0 to 5, options.rating_scale)",
                   R),
                  ("e.csv", 5, "value", "negative value", R)],
         view=_events, want=[("CARTED", "u5", "p1", None, 3.0),
                             ("RATED", "u1", "p1", None, 5.0),
                             ("RATED", "u6", "p1", None, 0.0)]),
    Case("ratings-json-nan-infinity-literals",
         events=("e.jsonl", '{"user": "u1", "product": "p1", "rating": 5}\n'
                            '{"user": "u2", "product": "p1", "rating": Infinity}\n'
                            '{"user": "u3", "product": "p1", "rating": NaN}\n'),
         mapping=["options.event_type=rating"],
         rejects=[("e.jsonl", 2, "rating", "rating is not a finite number", R),
                  ("e.jsonl", 3, "rating", "rating without a value", R)],
         view=_events, want=[("RATED", "u1", "p1", None, 5.0)]),
    Case("timestamps-formats-and-range",
         events=("e.csv", "user,product,ts\n"
                          "s,p1,1700000000\nms,p1,1700000000123\niso,p1,2023-11-14T22:13:20Z\n"
                          "off,p1,2023-11-15T00:13:20+02:00\nday,p1,2023-11-14\n"
                          "us,p1,11/14/2023\ny1800,p1,1800-01-01\ny2200,p1,2200-01-01T00:00:00Z\n"
                          "neg,p1,-5\nmicro,p1,1700000000000000\nbig,p1,1e400\nzero,p1,0\n"),
         mapping=["event.timestamp=ts"],
         rejects=[("e.csv", 7, "ts", "unparsable timestamp", R),
                  ("e.csv", 8, "ts", "timestamp out of range (1970 to 2100)", R),
                  ("e.csv", 9, "ts", "timestamp out of range (1970 to 2100)", R),
                  ("e.csv", 10, "ts", "timestamp out of range (1970 to 2100)", R),
                  ("e.csv", 11, "ts", "timestamp out of range (1970 to 2100)", R),
                  ("e.csv", 12, "ts", "timestamp out of range (1970 to 2100)", R)],
         view=_events, want=sorted([("PURCHASED", u, "p1", ts, 1.0) for u, ts in (
             ("s", 1700000000), ("ms", 1700000000), ("iso", 1700000000), ("off", 1700000000),
             ("day", 1699920000), ("zero", 0))])),
    Case("timestamps-past-pandas-range-and-unit-guess",  # one bad row, not a failed ingest
         events=("e.csv", "user,product,ts\nok,p1,1700000000\ny3000,p1,3000-01-01T00:00:00Z\n"
                          "y9999s,p1,253402300800\nmax,p1,9999-12-31T23:59:59Z\n"
                          "ms13,p1,1000000000000\n"),
         mapping=["event.timestamp=ts"],
         rejects=[("e.csv", 3, "ts", "timestamp out of range (1970 to 2100)", R),
                  ("e.csv", 4, "ts", "timestamp out of range (1970 to 2100; a number under "
                   "13 digits is read as seconds)", R),
                  ("e.csv", 5, "ts", "timestamp out of range (1970 to 2100)", R)],
         view=_events, want=[("PURCHASED", "ms13", "p1", 1000000000, 1.0),
                             ("PURCHASED", "ok", "p1", 1700000000, 1.0)]),
    Case("prices-odd-values",
         events=_buy("a"),
         products=("p.csv", 'id,price\na,-5\nb,1e12\nc,"$1,299.00"\nd,abc\ne,0\nf,12.5\n'
                            'g,1.5e2\nh, $ 7 \ni,\nj,inf\n'),
         rejects=[("p.csv", 2, "price", "price out of range (0 to 10,000,000): set to empty", P),
                  ("p.csv", 3, "price", "price out of range (0 to 10,000,000): set to empty", P),
                  ("p.csv", 5, "price", "unparsable price: set to empty", P),
                  ("p.csv", 11, "price", "unparsable price: set to empty", P)],
         view=_column("price"), want={"a": None, "b": None, "c": 1299.0, "d": None, "e": 0.0,
                                      "f": 12.5, "g": 150.0, "h": 7.0, "i": None, "j": None}),
    # --- text ---------------------------------------------------------------------------
    Case("text-one-megabyte", products=("p.csv", f"id,description\np1,{MEGA}\n"),
         view=lambda t: len(t.node(schema.PRODUCT)["description"][0]), want=1 << 20),
    Case("text-html-and-script", events=_buy("a"),
         products=("p.jsonl", _jsonl(
             {"id": "a", "title": "<script>alert(1)</script>Nice <b>mug</b>"},
             {"id": "b", "title": "<img src=x onerror=alert(1)>"},
             {"id": "c", "title": "5 < 6 apples, x<3"}, {"id": "d", "title": "R&amp;D kit"})),
         rejects=[("p.jsonl", 1, "title", "HTML removed from text", P),
                  ("p.jsonl", 2, "title", "text was only HTML markup: set to empty", P),
                  ("p.jsonl", 4, "title", "HTML removed from text", P)],
         view=_column("title"), want={"a": "Nice mug", "b": None, "c": "5 < 6 apples, x<3",
                                      "d": "R&D kit"}),
    Case("text-crlf-and-cr-not-a-repair",  # whitespace normalised, not reported
         products=("p.csv", 'id,title,brand\r\np1,"Tom & Jerry\r\nDVD",ACME\r\n'
                            'p2,"Mac\rline ends",AT&T\r\np3,Tabs\tand  spaces ,  B & Q \r\n'),
         view=_column("title"), want={"p1": "Tom & Jerry DVD", "p2": "Mac line ends",
                                      "p3": "Tabs and spaces"}),
    Case("brands-ampersand-unchanged-not-reported", events=_buy("a"),
         products=("p.csv", "id,brand\na,Black & Decker\nb,AT&T\nc,by ACME\nd,Procter &amp; "
                            "Gamble\ne,<b>Bosch</b>\n"),
         rejects=[("p.csv", 4, "brand", "brand text cleaned", P),
                  ("p.csv", 5, "brand", "brand text cleaned", P),
                  ("p.csv", 6, "brand", "brand text cleaned", P)],
         view=_column("brand"), want={"a": "Black & Decker", "b": "AT&T", "c": "ACME",
                                      "d": "Procter & Gamble", "e": "Bosch"}),
    Case("unicode-verbatim", events=_buy("c1"),  # CJK, emoji, RTL, combining: no NFC
         products=("p.jsonl", _jsonl(*({"id": k, "title": v} for k, v in UNICODE.items()),
                                     {"id": NFC, "title": "nfc"}, {"id": NFD, "title": "nfd"})),
         view=_column("title"), want={**UNICODE, NFC: "nfc", NFD: "nfd"}),
]


def _write(folder: Path, name: str, content: Content) -> Path:
    path = folder / name
    if isinstance(content, pd.DataFrame):
        content.to_parquet(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path) -> None:
    products = _write(tmp_path, *case.products)
    events = _write(tmp_path, *case.events)
    mapping = load_mapping(overrides=case.mapping)
    if case.error:
        with pytest.raises(InputError, match=case.error) as info:
            read_generic(products, events, mapping=mapping)
        assert "\n" not in str(info.value) and "Traceback" not in str(info.value)
        return
    t = read_generic(products, events, mapping=mapping)
    got = [(Path(f).name, int(line), fld, why, act) for f, line, fld, why, act in
           t.rejects[["file", "line", "field", "reason", "action"]].itertuples(index=False)]
    assert got == case.rejects
    if case.view is not None:
        assert case.view(t) == case.want


def test_a_field_over_the_size_limit_is_named_as_such(tmp_path: Path) -> None:
    """The reject of an over-long field (a 2 GB line; here the limit is lowered to 10
    characters) says so, not "bad CSV quoting"; the other rows are loaded."""
    import csv

    products = _write(tmp_path, "p.csv", f"id,title\np1,Mug\np2,{'x' * 50}\np3,Cup\n")
    events = _write(tmp_path, "e.csv", EVENTS)
    old = csv.field_size_limit(10)
    try:
        t = read_generic(products, events)
    finally:
        csv.field_size_limit(old)
    got = t.rejects[["line", "field", "reason", "action"]].values.tolist()
    assert got == [[3, "", "field over the size limit (10 characters)", R]]
    assert _ids(t) == ["p1", "p3"]
