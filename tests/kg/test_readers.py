"""Generic readers: CSV, JSON lines (gz) and Parquet with a column mapping; broken rows."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from kgrec.errors import ConfigError, InputError
from kgrec.kg import schema
from kgrec.kg.extract.mapping import load_mapping
from kgrec.kg.extract.parse import clean_html
from kgrec.kg.extract.stream import read_generic


def _rows(t: pd.DataFrame) -> list[tuple]:
    return [
        (Path(f).name, int(line), field, reason, action, value)
        for f, line, field, reason, action, value in t[
            ["file", "line", "field", "reason", "action", "value"]
        ].itertuples(index=False)
    ]


def test_csv_products_and_events_with_broken_rows(tmp_path: Path) -> None:
    (tmp_path / "products.csv").write_text(
        "item_id,name,brand,category,price,colour\n"
        "p1,Red &amp; Blue <b>Mug</b>,ACME,Kitchen > Mugs,$12.50,red\n"
        "p2,Plate,ACME,Kitchen,$1,000.00,white\n"  # unquoted comma: one field too many
        "p3,Bowl,,Kitchen > Bowls,cheap,\n"
        ",Nameless,,,,\n"
        "p1,Red Mug v2,ACME,Kitchen > Mugs,$12.50,red\n",
        encoding="utf-8",
    )
    (tmp_path / "events.csv").write_text(
        "user,item_id,event,ts,value\n"
        "u1,p1,purchase,1700000000,\n"
        "u1,p3,view,2023-11-14T22:13:20Z,\n"
        "u2,p1,rating,1700000100,4\n"
        "u2,p9,view,1700000200,\n"
        "u2,p3,teleport,1700000300,\n"
        "u3,p1,rating,1700000400,\n"
        "u3,p1,cart,yesterday,\n"
        "u3,p1,,1700000500,\n"
        "u1,p1,purchase,1700000000,\n",
        encoding="utf-8",
    )
    mapping = load_mapping(overrides=["product.title=name", "event.timestamp=ts"])
    t = read_generic(tmp_path / "products.csv", tmp_path / "events.csv", mapping=mapping)
    assert _rows(t.rejects) == [
        (
            "products.csv",
            2,
            "title",
            "HTML removed from text",
            "repaired",
            "Red &amp; Blue <b>Mug</b>",
        ),
        (
            "products.csv",
            3,
            "",
            "expected 6 fields, found 7",
            "rejected",
            "p2,Plate,ACME,Kitchen,$1,000.00,white",
        ),
        ("products.csv", 4, "price", "unparsable price: set to empty", "repaired", "cheap"),
        ("products.csv", 5, "item_id", "missing item_id", "rejected", ""),
        (
            "products.csv",
            6,
            "name",
            "duplicate item_id with conflicting name (first kept, line 2)",
            "rejected",
            "Red Mug v2",
        ),
        ("events.csv", 5, "item_id", "unknown product", "rejected", "p9"),
        ("events.csv", 6, "event", "unknown event type", "rejected", "teleport"),
        ("events.csv", 7, "value", "rating without a value", "rejected", ""),
        ("events.csv", 8, "ts", "unparsable timestamp", "rejected", "yesterday"),
        ("events.csv", 9, "event", "missing event type", "rejected", ""),
        ("events.csv", 10, "user", "duplicate of line 2", "rejected", "u1"),
    ]
    products = t.node(schema.PRODUCT).set_index("id")
    assert list(products.index) == ["p1", "p3"]
    assert products.loc["p1", "title"] == "Red & Blue Mug"
    assert products.loc["p1", "price"] == 12.5 and pd.isna(products.loc["p3", "price"])
    assert products.loc["p1", "category_path"] == "Kitchen > Mugs"
    assert products.loc["p1", "attributes"] == '{"colour": "red"}'
    assert sorted(t.node(schema.CATEGORY)["id"]) == ["Kitchen", "Kitchen > Bowls", "Kitchen > Mugs"]
    assert sorted(
        zip(t.rel(schema.SUBCATEGORY_OF)["src"], t.rel(schema.SUBCATEGORY_OF)["dst"], strict=True)
    ) == [("Kitchen > Bowls", "Kitchen"), ("Kitchen > Mugs", "Kitchen")]
    assert list(t.rel(schema.HAS_BRAND)["dst"]) == ["ACME"]
    bought = t.rel(schema.PURCHASED)
    assert list(
        zip(bought["src"], bought["dst"], bought["timestamp"], bought["weight"], strict=True)
    ) == [("u1", "p1", 1700000000, 1.0)]
    viewed = t.rel(schema.VIEWED)
    assert list(viewed["timestamp"]) == [1700000000] and list(viewed["weight"]) == [0.25]
    rated = t.rel(schema.RATED)
    assert list(rated["value"]) == [4.0] and list(rated["weight"]) == [pytest.approx(0.8)]
    assert sorted(t.node(schema.USER)["id"]) == ["u1", "u2"]
    assert t.rows_read == {str(tmp_path / "products.csv"): 5, str(tmp_path / "events.csv"): 9}


def test_jsonl_gz_and_parquet_with_kg(tmp_path: Path) -> None:
    lines = [
        json.dumps({"sku": "a", "title": "Alpha", "category": ["Books", "SF"]}),
        "{not json",
        json.dumps({"sku": "b", "title": "Beta", "category": ["Books"]}),
    ]
    with gzip.open(tmp_path / "p.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    pd.DataFrame({"customer_id": ["c1", "c1"], "sku": ["a", "b"], "quantity": [2, 1]}).to_parquet(
        tmp_path / "e.parquet"
    )
    pd.DataFrame({"id": ["c1"], "age": [33]}).to_parquet(tmp_path / "u.parquet")
    (tmp_path / "kg.tsv").write_text("head\trelation\ttail\nQ1\tauthor\tQ2\nQ1\t\tQ3\n")
    (tmp_path / "links.csv").write_text("sku,entity\na,Q1\nzz,Q2\n")
    t = read_generic(
        tmp_path / "p.jsonl.gz",
        tmp_path / "e.parquet",
        users=tmp_path / "u.parquet",
        kg=tmp_path / "kg.tsv",
        links=tmp_path / "links.csv",
    )
    assert _rows(t.rejects) == [
        (
            "p.jsonl.gz",
            2,
            "",
            "bad JSON: Expecting property name enclosed in double quotes at column 2",
            "rejected",
            "{not json",
        ),
        ("kg.tsv", 3, "relation", "missing relation", "rejected", ""),
        ("links.csv", 3, "sku", "unknown product", "rejected", "zz"),
    ]
    assert t.node(schema.PRODUCT).set_index("id").loc["a", "category_path"] == "Books > SF"
    bought = t.rel(schema.PURCHASED)
    assert list(zip(bought["dst"], bought["value"], strict=True)) == [("a", 2.0), ("b", 1.0)]
    assert t.node(schema.USER)["attributes"].tolist() == ['{"age": 33}']
    assert t.counts()[schema.RELATED] == 1 and t.counts()[schema.LINKED_TO] == 1
    assert sorted(t.node(schema.ENTITY)["id"]) == ["Q1", "Q2"]


def test_mapping_file_and_errors(tmp_path: Path) -> None:
    (tmp_path / "m.toml").write_text('[product]\nid = "code"\n[options]\nevent_type = "view"\n')
    mapping = load_mapping(tmp_path / "m.toml", ["event.product=code"])
    assert mapping.columns == {"product": {"id": "code"}, "event": {"product": "code"}}
    assert mapping.options["event_type"] == "view"
    (tmp_path / "p.csv").write_text("code,title\nx,X\n")
    (tmp_path / "e.csv").write_text("user,code\nu,x\n")
    t = read_generic(tmp_path / "p.csv", tmp_path / "e.csv", mapping=mapping)
    assert list(t.rel(schema.VIEWED)["dst"]) == ["x"]
    with pytest.raises(ConfigError, match="unknown field"):
        load_mapping(overrides=["product.colour=c"])
    with pytest.raises(InputError, match=r"file .*p\.csv, row 1, field 'product\.id'"):
        read_generic(tmp_path / "p.csv", tmp_path / "e.csv")
    with pytest.raises(InputError, match="does not exist"):
        read_generic(tmp_path / "nope.csv", tmp_path / "e.csv")


def test_clean_html() -> None:
    assert clean_html(" Maggiano&#39;s Gift Card") == "Maggiano's Gift Card"
    assert clean_html('<span class="a-size-medium a-color-secondary"') is None
    assert clean_html("<script>x=1</script><p>Tea &amp; <i>cake</i></p>") == "Tea & cake"
