"""Neo4jStore against the real Neo4j 5.26 server (started by the session fixture)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import torch

from kgrec.errors import InputError, SchemaError, StoreError
from kgrec.kg import schema
from kgrec.kg.extract.amazon import read_amazon
from kgrec.kg.snapshot import build_snapshot
from kgrec.kg.store.base import GraphStore
from kgrec.kg.store.local import LocalStore
from kgrec.kg.store.neo4j import Neo4jStore
from kgrec.kg.store.neo4j_connect import connect
from kgrec.kg.store.neo4j_rows import group_by_src, rel_rows
from kgrec.kg.tables import GraphTables, typed_node_table, typed_rel_table
from kgrec.settings import Neo4jConfig

pytestmark = pytest.mark.neo4j


def _tables(nodes: dict[str, dict], rels: dict[str, dict]) -> GraphTables:
    return GraphTables(
        nodes={lab: typed_node_table(lab, pd.DataFrame(cols)) for lab, cols in nodes.items()},
        rels={rel: typed_rel_table(rel, pd.DataFrame(cols)) for rel, cols in rels.items()},
    )


def small_graph() -> GraphTables:
    """Every label, NA in every kind of column, a user with events split over batches."""
    return _tables(
        {
            "User": {"id": ["u1", "u2", "u3"], "attributes": ['{"age": 30}', None, "ü"]},
            "Product": {
                "id": ["p1", "p2", "p3", "p4"],
                "title": ["Gift card", None, "Carte cadeau", ""],
                "price": [25.0, float("nan"), None, 0.5],
                "category_path": ["Gift Cards", None, None, None],
            },
            "Category": {"id": ["Gift Cards", "Gift Cards > Cards"], "level": [0, None]},
            "Brand": {"id": ["Amazon"], "name": ["Amazon"]},
            "Entity": {"id": ["m.1", "m.2"], "name": [None, "Film"]},
        },
        {
            "RATED": {
                "src": ["u1", "u1", "u1", "u2", "u3"],
                "dst": ["p1", "p1", "p2", "p3", "p1"],
                "timestamp": [100, 200, 150, 300, 50],
                "value": [5.0, 4.0, None, 1.0, float("nan")],
                "weight": [1.0, 0.8, 0.5, 0.2, 1.0],
            },
            "PURCHASED": {"src": ["u2"], "dst": ["p4"], "timestamp": [400]},
            "IN_CATEGORY": {"src": ["p1", "p2"], "dst": ["Gift Cards > Cards", "Gift Cards"]},
            "SUBCATEGORY_OF": {"src": ["Gift Cards > Cards"], "dst": ["Gift Cards"]},
            "HAS_BRAND": {"src": ["p1"], "dst": ["Amazon"]},
            "ALSO_BOUGHT": {"src": ["p1", "p2"], "dst": ["p2", "p1"]},
            "LINKED_TO": {"src": ["p1"], "dst": ["m.1"]},
            "RELATED": {
                "src": ["m.1", "m.1"],
                "dst": ["m.2", "m.2"],
                "relation": ["film.director", "film.writer"],
            },
        },
    )


def read_all(store: GraphStore, batch_size: int = 50_000) -> dict[str, pd.DataFrame]:
    out = {}
    for lab in schema.NODE_LABELS:
        frames = list(store.iter_nodes(lab, batch_size=batch_size))
        out[lab] = pd.concat(frames, ignore_index=True) if frames else None
    for rel in [*schema.RELATIONSHIPS, schema.RECOMMENDED]:
        frames = list(store.iter_rels(rel, batch_size=batch_size))
        out[rel] = pd.concat(frames, ignore_index=True) if frames else None
    return out


def expected(tables: GraphTables, name: str) -> pd.DataFrame:
    if name in schema.NODE_PROPERTIES:
        frame, key = tables.nodes[name], [schema.NODE_KEY]
    else:
        frame, key = tables.rels[name], ["src", "dst", *schema.rel_spec(name).key]
    return frame.sort_values(key, kind="stable").reset_index(drop=True)


def test_write_read_roundtrip_keeps_values_types_and_nulls(neo4j_store: Neo4jStore) -> None:
    tables = small_graph()
    created = neo4j_store.write(tables, progress=False)
    assert created == {
        "User": 3, "Product": 4, "Category": 2, "Brand": 1, "Entity": 2,
        "RATED": 5, "PURCHASED": 1, "IN_CATEGORY": 2, "SUBCATEGORY_OF": 1, "HAS_BRAND": 1,
        "ALSO_BOUGHT": 2, "LINKED_TO": 1, "RELATED": 2,
    }  # fmt: skip
    assert neo4j_store.counts() == created
    got = read_all(neo4j_store, batch_size=2)
    for name in [*tables.nodes, *tables.rels]:
        pd.testing.assert_frame_equal(got[name], expected(tables, name), check_exact=True)
    products = got["Product"].set_index("id")
    assert products.loc["p4", "title"] == ""  # empty string stays a string, not NA
    assert products["price"].isna().tolist() == [False, True, True, False]
    assert got["RATED"]["value"].isna().tolist() == [False, False, True, False, True]
    assert got["VIEWED"] is None and got["RECOMMENDED"] is None


def test_second_write_creates_nothing_and_changes_nothing(neo4j_store_factory) -> None:
    tables = small_graph()
    first = neo4j_store_factory(batch_size=2)
    first.write(tables, progress=False)
    before = read_all(first)
    # The first load of each type CREATEs (5 RATED rows in batches of 2: 3 batches).
    assert first.rel_paths["RATED"] == {"create": 3, "merge": 0}
    # A fresh instance (no cached state) takes the MERGE path since the types now exist.
    second = neo4j_store_factory(batch_size=3)
    again = second.write(tables, progress=False)
    assert set(again) == {*tables.nodes, *tables.rels} and set(again.values()) == {0}
    assert second.rel_paths["RATED"] == {"create": 0, "merge": 2}
    assert first.counts()["RATED"] == 5
    after = read_all(first)
    for name, frame in before.items():
        if frame is None:
            assert after[name] is None
        else:
            pd.testing.assert_frame_equal(after[name], frame)


def test_two_first_loads_at_once_create_one_graph(neo4j_store_factory) -> None:
    """Two stores write the same new events at once: whoever holds the type's lock while it
    holds only its own relationships CREATEs, the other MERGEs; one load's graph results."""
    users, products, events = 300, 400, 12_000
    nodes = {"User": {"id": [f"u{i}" for i in range(users)]},
             "Product": {"id": [f"p{i}" for i in range(products)]}}
    tables = _tables({}, {"RATED": {"src": [f"u{i % users}" for i in range(events)],
                                    "dst": [f"p{(i * 7) % products}" for i in range(events)],
                                    "timestamp": list(range(events)), "value": [1.0] * events}})
    stores = [neo4j_store_factory(batch_size=500) for _ in range(2)]
    # The nodes first: both loads then start on the empty type at the same moment, which
    # without the type's lock lets both see it empty and both CREATE the same rows.
    stores[0].write(_tables(nodes, {}), progress=False)
    with ThreadPoolExecutor(2) as pool:
        created = list(pool.map(lambda store: store.write(tables, progress=False), stores))
    assert sum(c["RATED"] for c in created) == events
    assert stores[0].counts()["RATED"] == events
    paths = [store.rel_paths["RATED"] for store in stores]
    assert sum(p["create"] for p in paths) >= 1
    assert all(p["create"] + p["merge"] == events // 500 for p in paths)
    with stores[0].driver.session(database=stores[0].database) as session:
        repeated = session.run("MATCH (a)-[r:RATED]->(b) WITH a, b, r.timestamp AS t, "
                               "count(*) AS c WHERE c > 1 RETURN count(*) AS n").single()["n"]
    assert repeated == 0


def test_incremental_load_appends_events_and_updates_properties(neo4j_store: Neo4jStore) -> None:
    neo4j_store.write(small_graph(), progress=False)
    more = _tables(
        {
            "User": {"id": ["u4"]},
            # p2 gains a title; p1's title is NA here so the stored one is kept.
            "Product": {"id": ["p1", "p2"], "title": [None, "Now titled"], "price": [30.0, None]},
        },
        {
            "RATED": {
                "src": ["u1", "u4", "u4"],
                "dst": ["p1", "p2", "p2"],  # (u1, p1, 100) exists; u4's second row is a duplicate
                "timestamp": [100, 500, 500],
                "value": [3.0, 2.0, 4.0],
            }
        },
    )
    assert neo4j_store.write(more, progress=False) == {"User": 1, "Product": 0, "RATED": 1}
    counts = neo4j_store.counts()
    assert (counts["User"], counts["Product"], counts["RATED"]) == (4, 4, 6)
    products = pd.concat(neo4j_store.iter_nodes("Product")).set_index("id")
    assert products.loc["p1", "title"] == "Gift card" and products.loc["p1", "price"] == 30.0
    assert products.loc["p2", "title"] == "Now titled" and pd.isna(products.loc["p2", "price"])
    rated = pd.concat(neo4j_store.iter_rels("RATED")).set_index(["src", "dst", "timestamp"])
    assert rated.loc[("u1", "p1", 100), "value"] == 3.0  # non-null new value overwrites
    assert rated.loc[("u1", "p1", 100), "weight"] == 1.0  # NA keeps the stored value
    assert rated.loc[("u4", "p2", 500), "value"] == 2.0  # first of duplicated rows wins


def test_null_merge_keys_are_written_once(neo4j_store: Neo4jStore) -> None:
    base = _tables({"User": {"id": ["u1"]}, "Product": {"id": ["p1", "p2"]}}, {})
    neo4j_store.write(base, progress=False)
    events = _tables(
        {},
        {
            "VIEWED": {
                "src": ["u1", "u1", "u1", "u1"],
                "dst": ["p1", "p1", "p2", "p1"],
                "timestamp": [None, None, None, 7],
                "value": [1.0, 2.0, None, 3.0],
            }
        },
    )
    # First load (CREATE path) dedupes the repeated null-key row in Python.
    assert neo4j_store.write(events, progress=False) == {"VIEWED": 3}
    # Re-run: the null-key rows go through the OPTIONAL MATCH ... IS NULL statement.
    assert neo4j_store.write(events, progress=False) == {"VIEWED": 0}
    viewed = pd.concat(neo4j_store.iter_rels("VIEWED"))
    assert viewed["dst"].tolist() == ["p1", "p1", "p2"]
    assert viewed["timestamp"].isna().tolist() == [False, True, True]  # nulls sort last
    assert viewed["timestamp"].iloc[0] == 7
    assert viewed["value"].tolist()[:2] == [3.0, 1.0]
    new = _tables({}, {"VIEWED": {"src": ["u1"], "dst": ["p2"], "timestamp": [None]}})
    new.rels["VIEWED"]["weight"] = pd.array([0.25], dtype="Float64")
    assert neo4j_store.write(new, progress=False) == {"VIEWED": 0}
    viewed = pd.concat(neo4j_store.iter_rels("VIEWED"))
    assert viewed["weight"].tolist()[2] == 0.25


def test_missing_end_nodes_fail_before_anything_is_written(neo4j_store: Neo4jStore) -> None:
    neo4j_store.write(small_graph(), progress=False)
    bad = _tables(
        {"User": {"id": ["u9"]}},
        {"RATED": {"src": ["u9", "u1"], "dst": ["p1", "nope"], "timestamp": [1, 2]}},
    )
    with pytest.raises(StoreError, match="RATED: 1 relationship end.*Product.*'nope'"):
        neo4j_store.write(bad, progress=False)
    assert neo4j_store.counts()["User"] == 3 and neo4j_store.counts()["RATED"] == 5
    nulls = _tables({"User": {"id": ["u5", None]}}, {})
    with pytest.raises(InputError, match="row 1.*field 'id'"):
        neo4j_store.write(nulls, progress=False)
    empty = _tables({}, {"RATED": {"src": ["u1", "u1"], "dst": ["p1", ""], "timestamp": [1, 2]}})
    with pytest.raises(InputError, match="row 1.*field 'dst'"):
        neo4j_store.write(empty, progress=False)
    recs = GraphTables(rels={"RECOMMENDED": typed_rel_table("RECOMMENDED", pd.DataFrame(
        {"src": ["u1"], "dst": ["p1"], "model_version": ["v"]}))})
    with pytest.raises(StoreError, match="write_recommendations"):
        neo4j_store.write(recs, progress=False)
    with pytest.raises(SchemaError):
        neo4j_store.write(GraphTables(nodes={"Person": pd.DataFrame({"id": ["x"]})}))
    assert neo4j_store.counts()["User"] == 3


def test_recommendations_replace_per_model_version(neo4j_store: Neo4jStore) -> None:
    neo4j_store.write(small_graph(), progress=False)

    def recs(user: str, items: list[str], version: str) -> pd.DataFrame:
        n = len(items)
        return pd.DataFrame({
            "src": [user] * n, "dst": items, "score": [1.0 - i / 10 for i in range(n)],
            "score_gnn": [0.5] * n, "score_text": [None] * n, "rank": list(range(1, n + 1)),
            "model_version": [version] * n, "created_at": [1_700_000_000] * n,
        })  # fmt: skip

    v1 = pd.concat([recs("u1", ["p1", "p2", "p3"], "v1"), recs("u2", ["p4"], "v1")])
    assert neo4j_store.write_recommendations(v1, progress=False) == 4
    assert neo4j_store.write_recommendations(v1, progress=False) == 4
    assert neo4j_store.counts()["RECOMMENDED"] == 4
    # New v1 list for u1 replaces u1's old v1 list only; a v2 list sits beside it.
    assert neo4j_store.write_recommendations(recs("u1", ["p4", "p2"], "v1"), progress=False) == 2
    assert neo4j_store.write_recommendations(recs("u1", ["p3"], "v2"), progress=False) == 1
    got = pd.concat(neo4j_store.iter_rels("RECOMMENDED"))
    assert got[["src", "dst", "model_version"]].values.tolist() == [
        ["u1", "p2", "v1"], ["u1", "p3", "v2"], ["u1", "p4", "v1"], ["u2", "p4", "v1"],
    ]  # fmt: skip
    assert got["rank"].tolist() == [2, 1, 1, 1] and got["score_text"].isna().all()
    with pytest.raises(StoreError, match="Product 'zzz'"):
        neo4j_store.write_recommendations(recs("u2", ["zzz"], "v3"), progress=False)
    assert neo4j_store.counts()["RECOMMENDED"] == 4


def test_grouped_rows_keep_every_relationship() -> None:
    frame = pd.DataFrame(
        {"src": ["b", "a", "b", "a"], "dst": ["x", "y", "y", "x"], "timestamp": [1, 2, 3, 4]}
    )
    rows = rel_rows("RATED", frame)
    assert [r["src"] for r in rows] == ["a", "a", "b", "b"]
    groups = group_by_src(rows[:3])
    assert [(g["src"], [r["dst"] for r in g["rels"]]) for g in groups] == [
        ("a", ["y", "x"]), ("b", ["x"]),
    ]  # fmt: skip
    assert rows[0] == {"src": "a", "dst": "y", "timestamp": 2, "value": None, "weight": None}


def test_connect_from_settings_and_errors_hide_the_password(neo4j_uri: str,
                                                           neo4j_password: str) -> None:
    with connect(Neo4jConfig(neo4j_uri, password=neo4j_password), batch_size=123) as store:
        assert store.batch_size == 123 and store.owns_driver
        assert isinstance(store, GraphStore)
    bad = Neo4jConfig("bolt://127.0.0.1:1", password="hunter2-secret", wait_seconds=0.5)
    with pytest.raises(StoreError, match="bolt://127.0.0.1:1 does not answer") as err:
        connect(bad)
    assert "hunter2" not in str(err.value)


def test_snapshots_of_local_and_neo4j_stores_are_identical(
    neo4j_store: Neo4jStore, shared_data: Path, tmp_path: Path
) -> None:
    folder = shared_data / "amazon-2018"
    tables = read_amazon(folder / "meta_Gift_Cards.json.gz", folder / "Gift_Cards_5.json.gz")
    local = LocalStore(tmp_path / "store")
    assert local.write(tables, progress=False) == neo4j_store.write(tables, progress=False)
    assert local.counts() == neo4j_store.counts()
    a = build_snapshot(local, batch_size=500, progress=False)
    b = build_snapshot(neo4j_store, batch_size=500, progress=False)
    assert a.id_maps == b.id_maps
    assert len(a.id_maps["user"]) == 458 and len(a.id_maps["product"]) >= 148
    assert set(a.data.edge_types) == set(b.data.edge_types)
    assert ("user", "rated", "product") in a.data.edge_types
    assert a.data["user", "rated", "product"].edge_index.shape == (2, 2972 - _dup_reviews(tables))
    for et in a.data.edge_types:
        for attr in ("edge_index", "edge_time", "edge_value", "edge_weight", "edge_relation"):
            if attr in a.data[et]:
                assert torch.equal(a.data[et][attr], b.data[et][attr]), (et, attr)
    pd.testing.assert_frame_equal(a.products, b.products, check_exact=True)
    assert a.relations == b.relations


def _dup_reviews(tables: GraphTables) -> int:
    """Review rows the adapter rejected (the 5-core file has 2,972 lines)."""
    rejected = tables.rejects[
        tables.rejects["file"].astype(str).str.endswith("Gift_Cards_5.json.gz")
        & (tables.rejects["action"] == "rejected")
    ]
    return int(rejected["line"].nunique())


def test_ml100k_snapshots_match_including_the_knowledge_graph(
    neo4j_store: Neo4jStore, ml100k_tables: GraphTables, tmp_path: Path
) -> None:
    local = LocalStore(tmp_path / "store")
    local.write(ml100k_tables, progress=False)
    neo4j_store.write(ml100k_tables, progress=False)
    assert neo4j_store.counts() == local.counts()
    assert neo4j_store.counts()["RELATED"] == 91_631 and neo4j_store.counts()["RATED"] == 100_000
    a = build_snapshot(local, progress=False)
    b = build_snapshot(neo4j_store, batch_size=20_000, progress=False)
    assert a.id_maps == b.id_maps and a.relations == b.relations
    # 24 distinct relation names in the real ml-100k.kg (not the 26 sometimes quoted).
    assert b.relations == sorted(set(ml100k_tables.rels["RELATED"]["relation"]))
    assert len(b.relations) == 24
    related = ("entity", "related", "entity")
    assert b.data[related].edge_relation.shape == (91_631,)
    for et in a.data.edge_types:
        for attr in a.data[et].keys():  # noqa: SIM118 - HeteroData storage, not a dict
            assert torch.equal(a.data[et][attr], b.data[et][attr]), (et, attr)
    pd.testing.assert_frame_equal(a.products, b.products, check_exact=True)
