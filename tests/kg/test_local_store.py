"""LocalStore: idempotent merges, incremental loads, resume after a crash, ordered reads."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from kgrec.errors import StoreError
from kgrec.kg import schema
from kgrec.kg.snapshot import build_snapshot
from kgrec.kg.store.base import GraphStore
from kgrec.kg.store.local import LocalStore
from kgrec.kg.tables import GraphTables, typed_node_table, typed_rel_table


def small_tables(events: list[tuple[str, str, int, float]]) -> GraphTables:
    """Two users, three products, the given RATED events."""
    t = GraphTables()
    t.nodes[schema.USER] = typed_node_table(schema.USER, pd.DataFrame({"id": ["u2", "u1"]}))
    t.nodes[schema.PRODUCT] = typed_node_table(
        schema.PRODUCT,
        pd.DataFrame(
            {"id": ["p3", "p1", "p2"], "title": ["C", "A", None], "price": [3.0, None, 2.5]}
        ),
    )
    t.rels[schema.RATED] = typed_rel_table(
        schema.RATED,
        pd.DataFrame(events, columns=["src", "dst", "timestamp", "value"]).assign(weight=1.0),
    )
    return t


EVENTS = [("u2", "p1", 20, 4.0), ("u1", "p3", 10, 5.0), ("u1", "p1", 11, 3.0)]


def test_protocol_and_idempotent_write(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    assert isinstance(store, GraphStore)
    assert store.write(small_tables(EVENTS), progress=False) == {
        "User": 2,
        "Product": 3,
        "RATED": 3,
    }
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "s").rglob("*.parquet")}
    assert store.write(small_tables(EVENTS), progress=False) == {
        "User": 0,
        "Product": 0,
        "RATED": 0,
    }
    # Nothing changed, so no file was rewritten.
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "s").rglob("*.parquet")} == before
    assert store.counts() == {"User": 2, "Product": 3, "RATED": 3}


def test_reads_are_ordered_and_typed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.write(small_tables(EVENTS), progress=False)
    users = list(store.iter_nodes(schema.USER, batch_size=1))
    assert [len(b) for b in users] == [1, 1]
    assert [b["id"].iloc[0] for b in users] == ["u1", "u2"]
    products = pd.concat(store.iter_nodes(schema.PRODUCT))
    assert list(products["id"]) == ["p1", "p2", "p3"]
    assert list(products.columns) == schema.node_columns(schema.PRODUCT)
    assert str(products["price"].dtype) == "Float64" and pd.isna(products["price"].iloc[0])
    rated = pd.concat(store.iter_rels(schema.RATED, batch_size=2))
    assert list(zip(rated["src"], rated["dst"], rated["timestamp"], strict=True)) == [
        ("u1", "p1", 11),
        ("u1", "p3", 10),
        ("u2", "p1", 20),
    ]
    assert list(store.iter_rels(schema.ALSO_BOUGHT)) == []


def test_incremental_load_appends_and_updates(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.write(small_tables(EVENTS), progress=False)
    more = GraphTables()
    more.rels[schema.RATED] = typed_rel_table(
        schema.RATED,
        pd.DataFrame(
            {
                "src": ["u1", "u2"],
                "dst": ["p2", "p1"],
                "timestamp": [30, 20],
                "value": [2.0, 4.0],
                "weight": [0.4, 0.8],
            }
        ),
    )
    # p2 gets a title; NA values in the new row (price) keep the stored ones.
    more.nodes[schema.PRODUCT] = typed_node_table(
        schema.PRODUCT, pd.DataFrame({"id": ["p2"], "title": ["B"]})
    )
    assert store.write(more, progress=False) == {"Product": 0, "RATED": 1}
    assert store.counts()["RATED"] == 4
    products = pd.concat(store.iter_nodes(schema.PRODUCT)).set_index("id")
    assert products.loc["p2", "title"] == "B" and products.loc["p2", "price"] == 2.5
    rated = pd.concat(store.iter_rels(schema.RATED)).set_index(["src", "dst", "timestamp"])
    assert rated.loc[("u2", "p1", 20), "weight"] == 0.8  # same key: updated, not duplicated


def test_dangling_relationship_is_refused_before_writing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    bad = small_tables([*EVENTS, ("u9", "p1", 1, 1.0)])
    with pytest.raises(StoreError, match="u9"):
        store.write(bad, progress=False)
    assert store.counts() == {}


def test_resume_after_interruption(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tables = small_tables(EVENTS)
    clean = LocalStore(tmp_path / "clean")
    clean.write(tables, progress=False)
    store = LocalStore(tmp_path / "crash")
    real_save = LocalStore._save
    calls = {"n": 0}

    def crash_on_second(self: LocalStore, name: str, frame: pd.DataFrame) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated crash")
        real_save(self, name, frame)

    monkeypatch.setattr(LocalStore, "_save", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        store.write(tables, progress=False)
    assert store.counts() == {"User": 2}  # the first table landed whole, nothing else
    assert not list((tmp_path / "crash").rglob("*.tmp"))
    monkeypatch.setattr(LocalStore, "_save", real_save)
    assert store.write(tables, progress=False) == {"User": 0, "Product": 3, "RATED": 3}
    a, b = build_snapshot(store, progress=False), build_snapshot(clean, progress=False)
    assert a.id_maps == b.id_maps
    et = ("user", "rated", "product")
    assert torch.equal(a.data[et].edge_index, b.data[et].edge_index)


def test_recommendations_replace_per_model_version(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.write(small_tables(EVENTS), progress=False)

    def recs(version: str, rows: list[tuple[str, str, float]]) -> pd.DataFrame:
        frame = pd.DataFrame(rows, columns=["src", "dst", "score"])
        return frame.assign(rank=range(1, len(rows) + 1), model_version=version)

    assert store.write_recommendations(recs("v1", [("u1", "p2", 0.9), ("u1", "p1", 0.5)])) == 2
    assert store.write_recommendations(recs("v2", [("u1", "p3", 0.7)])) == 1
    assert store.write_recommendations(recs("v1", [("u1", "p3", 0.8)])) == 1
    stored = pd.concat(store.iter_rels(schema.RECOMMENDED))
    assert list(zip(stored["dst"], stored["model_version"], stored["score"], strict=True)) == [
        ("p3", "v1", 0.8),
        ("p3", "v2", 0.7),
    ]
    assert store.counts()["RECOMMENDED"] == 2
    with pytest.raises(StoreError, match="unknown Product 'p9'"):
        store.write_recommendations(recs("v1", [("u1", "p9", 0.1)]))


@pytest.mark.slow
def test_ml100k_snapshot_from_local_store(tmp_path: Path, ml100k_tables: GraphTables) -> None:
    store = LocalStore(tmp_path)
    created = store.write(ml100k_tables, progress=False)
    assert created == ml100k_tables.counts()
    assert store.write(ml100k_tables, progress=False) == dict.fromkeys(created, 0)
    snap = build_snapshot(store, progress=False)
    assert snap.data["user"].num_nodes == 943 and snap.data["product"].num_nodes == 1682
    rated = snap.data[("user", "rated", "product")]
    assert tuple(rated.edge_index.shape) == (2, 100_000)
    assert rated.edge_time.min().item() > 8e8 and rated.edge_value.max().item() == 5.0
    assert tuple(snap.data[("entity", "related", "entity")].edge_index.shape) == (2, 91_631)
    assert len(snap.relations) == 24
    # Ids map back: the first event of user "196" on movie "242" is in the graph.
    u = snap.id_maps["user"].index_of(["196"])[0]
    p = snap.id_maps["product"].index_of(["242"])[0]
    pairs = set(zip(rated.edge_index[0].tolist(), rated.edge_index[1].tolist(), strict=True))
    assert (u, p) in pairs
    assert snap.products["id"].tolist() == snap.id_maps["product"].ids
