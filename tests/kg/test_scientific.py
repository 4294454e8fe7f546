"""Amazon Scientific adapter on the real files in ../shared/data/amazon-scientific (counts
computed from the JSON files here), on small broken folders, and through ``kgrec ingest``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from kgrec.cli import main
from kgrec.errors import InputError
from kgrec.kg import schema
from kgrec.kg.extract.scientific import read_scientific
from kgrec.kg.snapshot import GraphSnapshot, snapshot_from_tables
from kgrec.kg.tables import GraphTables

Raw = tuple[dict[str, dict[str, str]], dict[str, list[int]]]


@pytest.fixture(scope="module")
def folder(shared_data: Path) -> Path:
    return shared_data / "amazon-scientific"


@pytest.fixture(scope="module")
def raw(folder: Path) -> Raw:
    items = json.loads((folder / "Scientific.item.json").read_text(encoding="utf-8"))
    inter = json.loads((folder / "Scientific.inter.json").read_text(encoding="utf-8"))
    return items, inter


@pytest.fixture(scope="module")
def tables(folder: Path) -> GraphTables:
    return read_scientific(folder)


def _paths(items: dict[str, dict[str, str]]) -> dict[str, list[str]]:
    """Category path per item, computed independently of the reader: split on commas
    without a following space, cut before the first element that is a sentence or HTML."""
    out = {}
    for key, item in items.items():
        names = re.split(r",(?! )", item["categories"]) if item["categories"].strip() else []
        cut = next(
            (i for i, n in enumerate(names) if len(n) > 50 or n.endswith(".") or "<" in n),
            len(names),
        )
        if names[:cut]:
            out[key] = names[:cut]
    return out


def test_counts_match_the_files(tables: GraphTables, raw: Raw) -> None:
    items, inter = raw
    assert (len(items), len(inter)) == (4344, 8317)
    events = sum(len(lst) for lst in inter.values())
    repeats = sum(len(lst) - len(set(lst)) for lst in inter.values())
    assert (events, repeats) == (58_492, 0)
    assert len(tables.node(schema.PRODUCT)) == 4344
    assert len(tables.node(schema.USER)) == 8317
    assert len(tables.rel(schema.PURCHASED)) == events - repeats == 58_492
    paths = _paths(items)
    prefixes = {tuple(p[: i + 1]) for p in paths.values() for i in range(len(p))}
    assert len(tables.node(schema.CATEGORY)) == len(prefixes) == 917
    assert len(tables.rel(schema.SUBCATEGORY_OF)) == len(prefixes) - 1  # one root
    assert len(tables.rel(schema.IN_CATEGORY)) == len(paths) == 4213
    brands = {i["brand"].strip() for i in items.values()} - {""}
    assert len(tables.node(schema.BRAND)) == len(brands) == 1546
    branded = sum(1 for i in items.values() if i["brand"].strip())
    assert len(tables.rel(schema.HAS_BRAND)) == branded == 4332
    read = {Path(f).name: n for f, n in tables.rows_read.items()}
    assert read == {"Scientific.item.json": 4344, "Scientific.inter.json": 8317}
    # Nothing rejected: only repairs (HTML in text, one category path cut).
    assert set(tables.rejects["action"]) == {"repaired"}


def test_category_tree_and_product_values(tables: GraphTables, raw: Raw) -> None:
    items, _ = raw
    paths = _paths(items)
    cats = tables.node(schema.CATEGORY).set_index("id")
    assert cats["level"].max() + 1 == max(len(p) for p in paths.values()) == 11
    depth = pd.Series([len(p) for p in paths.values()]).value_counts().to_dict()
    assert depth == {4: 2171, 5: 1142, 3: 660, 6: 132, 2: 106, 8: 1, 11: 1}
    assert cats.loc["Industrial & Scientific", ["name", "level"]].tolist() == [
        "Industrial & Scientific",
        0,
    ]
    # A name holding ", " stays one category, not two levels.
    tapes = "Industrial & Scientific > Tapes, Adhesives & Sealants"
    assert cats.loc[tapes, ["name", "level"]].tolist() == ["Tapes, Adhesives & Sealants", 1]
    sub = tables.rel(schema.SUBCATEGORY_OF)
    assert set(sub.loc[sub["src"] == tapes, "dst"]) == {"Industrial & Scientific"}
    products = tables.node(schema.PRODUCT).set_index("id")
    assert products.loc["1", "title"] == items["1"]["title"]
    assert products.loc["1", "brand"] == "Stanley"
    assert products.loc["1", "category_path"] == (
        "Industrial & Scientific > Fasteners > Collated Fasteners > Staples"
    )
    leaf = tables.rel(schema.IN_CATEGORY).set_index("src").loc["1", "dst"]
    assert leaf == products.loc["1", "category_path"]
    # HTML tags in descriptions are removed and reported, the entry number as the line.
    rep = tables.rejects
    html = rep[(rep["field"] == "description") & (rep["reason"] == "HTML removed from text")]
    tag = re.compile(r"<[A-Za-z/!?][^>]*>")  # "< 1.50mm ... >" is text, not a tag
    tagged = [n for n, (k, i) in enumerate(items.items(), 1) if tag.search(i["description"])]
    assert len(tagged) == 5 and set(tagged) <= set(html["line"])
    assert "for < 1.50mm (0.060)" in products.loc[list(items)[331], "description"]
    for line in tagged:
        key = list(items)[line - 1]
        assert not tag.search(products.loc[key, "description"])
    cut = rep[rep["field"] == "categories"]
    assert cut["reason"].tolist() == [
        "category path cut after 11 level(s): non-category element(s) dropped"
    ]


def test_timestamps_are_list_positions(tables: GraphTables, raw: Raw) -> None:
    _, inter = raw
    events = tables.rel(schema.PURCHASED).sort_values(["src", "timestamp"], kind="stable")
    one = events[events["src"] == "3"]
    assert one["timestamp"].tolist() == list(range(len(inter["3"]))) == list(range(19))
    assert one["dst"].tolist() == [str(i) for i in inter["3"]]
    # Every user: positions 0..n-1 in list order, value 1, the purchase weight.
    expected = pd.DataFrame(
        [(u, str(i), pos) for u, lst in inter.items() for pos, i in enumerate(lst)],
        columns=["src", "dst", "timestamp"],
    ).sort_values(["src", "timestamp"], kind="stable")
    got = events[["src", "dst", "timestamp"]].astype({"timestamp": "int64"})
    assert got.to_numpy().tolist() == expected.to_numpy().tolist()
    assert set(events["value"]) == {1.0} and set(events["weight"]) == {1.0}


def test_snapshot_node_counts(tables: GraphTables) -> None:
    snap: GraphSnapshot = snapshot_from_tables(tables)
    sizes = {name: len(ids) for name, ids in snap.id_maps.items()}
    assert sizes == {"user": 8317, "product": 4344, "category": 917, "brand": 1546, "entity": 0}
    purchased = snap.data["user", "purchased", "product"]
    assert purchased.edge_index.shape == (2, 58_492)
    assert (int(purchased.edge_time.min()), int(purchased.edge_time.max())) == (0, 77)


def _write(folder: Path, items: object, inter: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Scientific.item.json").write_text(json.dumps(items))
    (folder / "Scientific.inter.json").write_text(json.dumps(inter))
    return folder


def _small(tmp_path: Path) -> Path:
    items = {
        "a": {"title": "Alpha <b>tape</b>", "description": "", "brand": "Acme",
              "categories": "Top,Tapes, Glues & Co,Duct"},
        "b": {"title": "", "description": "no title", "brand": "", "categories": ""},
        "c": "not an object",
    }
    inter = {"u1": ["a", "zzz", "b"], "u2": [], "u3": "a", "u4": [None, "a"]}
    return _write(tmp_path / "sci", items, inter)


def test_bad_entries_go_to_the_rejects_report(tmp_path: Path) -> None:
    t = read_scientific(_small(tmp_path))
    rep = t.rejects.assign(file=t.rejects["file"].str.rsplit("/", n=1).str[-1])
    rows = set(rep[["file", "line", "field", "reason", "action", "value"]].itertuples(index=False))
    item, inter = "Scientific.item.json", "Scientific.inter.json"
    assert rows == {
        (item, 1, "title", "HTML removed from text", "repaired", "Alpha <b>tape</b>"),
        (item, 2, "title", "missing title: Product kept without one", "repaired", "b"),
        (item, 3, "", "bad JSON: item entry is not an object", "rejected", "c"),
        (inter, 1, "items[1]", "unknown product", "rejected", "zzz"),
        (inter, 2, "items", "user without interactions", "rejected", "u2"),
        (inter, 3, "", "bad JSON: user entry is not a list of item ids", "rejected", "u3"),
        (inter, 4, "items[0]", "bad item id", "rejected", "null"),
    }
    events = t.rel(schema.PURCHASED)
    # Positions are those of the file: the rejected entry leaves a gap.
    assert events[["src", "dst", "timestamp"]].values.tolist() == [
        ["u1", "a", 0], ["u1", "b", 2], ["u4", "a", 1],
    ]
    assert sorted(t.node(schema.USER)["id"]) == ["u1", "u4"]
    assert sorted(t.node(schema.CATEGORY)["id"]) == [
        "Top", "Top > Tapes, Glues & Co", "Top > Tapes, Glues & Co > Duct",
    ]
    products = t.node(schema.PRODUCT).set_index("id")
    assert products.loc["a", "title"] == "Alpha tape"
    assert products.loc["a", "category_path"] == "Top > Tapes, Glues & Co > Duct"
    assert pd.isna(products.loc["b", "title"]) and len(products) == 2


def test_missing_files_and_bad_json_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="Scientific folder does not exist"):
        read_scientific(tmp_path / "nope")
    folder = _small(tmp_path)
    (folder / "Scientific.inter.json").unlink()
    with pytest.raises(InputError, match=r"Scientific\.inter\.json: file does not exist"):
        read_scientific(folder)
    (folder / "Scientific.inter.json").write_text('{"u1": ["a"]}')
    (folder / "Scientific.item.json").write_text('{\n  "a": {"title": "x"},\n  "b": {\n}')
    with pytest.raises(InputError, match=r"Scientific\.item\.json, row 4: bad JSON"):
        read_scientific(folder)
    (folder / "Scientific.item.json").write_text('[{"title": "x"}]')
    with pytest.raises(InputError, match="expected one object"):
        read_scientific(folder)


def test_kgrec_ingest_scientific(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _small(tmp_path)
    store = ["--store", "local", "--store-path", str(tmp_path / "store")]
    args = ["ingest", "--scientific", str(folder), "--reports-dir", str(tmp_path / "rep")]
    # The fixture loses most of its interaction records on purpose: the valid ones are
    # loaded, and the run fails saying how many (counted in records, not user lines).
    assert main([*args, "--no-progress", *store]) == 1
    out, err = capsys.readouterr()
    assert "Scientific.inter.json: 4 of 6 rows rejected (67%, more than the 50%" in err
    # 3 item + 4 user entries read; 2 products, 3 categories, 1 brand, 2 users, then
    # 3 PURCHASED, 2 SUBCATEGORY_OF, 1 IN_CATEGORY, 1 HAS_BRAND loaded; 2 repairs, 5 rejects.
    assert "read 7 source rows, loaded 15 nodes/relationships (2 rows repaired, 5 rejected" in out
    assert "3 PURCHASED, 1 IN_CATEGORY, 2 SUBCATEGORY_OF, 1 HAS_BRAND" in out
    with pytest.raises(SystemExit):
        main(["ingest", "--help"])
    assert "--scientific FOLDER" in capsys.readouterr().out
    assert main(["ingest", "--scientific", str(folder), "--recbole", "x", *store]) == 1
    assert "--scientific, --lists or --products/--events" in capsys.readouterr().err
