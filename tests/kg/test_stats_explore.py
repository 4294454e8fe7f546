"""graph_stats (hand-computed figures), explore.neighbourhood/paths/draw on a small graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kgrec.errors import MissingIdError
from kgrec.kg import schema
from kgrec.kg.draw import draw
from kgrec.kg.explore import explain, neighbourhood
from kgrec.kg.graph_sources import GraphIndex
from kgrec.kg.snapshot import GraphSnapshot, build_snapshot
from kgrec.kg.stats import degree_summary, graph_stats, head_size, plot_degrees
from kgrec.kg.store.local import LocalStore
from kgrec.kg.tables import GraphTables, typed_node_table, typed_rel_table

# Product interaction counts: p1 5, p2 3, p3 1, p4 1, p5 0 (10 in all).
EVENTS = [
    ("u1", "p1"),
    ("u2", "p1"),
    ("u3", "p1"),
    ("u4", "p1"),
    ("u1", "p1"),
    ("u1", "p2"),
    ("u2", "p2"),
    ("u3", "p2"),
    ("u4", "p3"),
    ("u4", "p4"),
]


def _tables() -> GraphTables:
    t = GraphTables()
    t.nodes[schema.USER] = typed_node_table(
        schema.USER, pd.DataFrame({"id": ["u1", "u2", "u3", "u4"]})
    )
    t.nodes[schema.PRODUCT] = typed_node_table(
        schema.PRODUCT,
        pd.DataFrame(
            {"id": ["p1", "p2", "p3", "p4", "p5"], "title": ["One", "Two", "Three", "Four", "Five"]}
        ),
    )
    t.nodes[schema.CATEGORY] = typed_node_table(
        schema.CATEGORY, pd.DataFrame({"id": ["Toys"], "name": ["Toys"], "level": [0]})
    )
    t.rels[schema.IN_CATEGORY] = typed_rel_table(
        schema.IN_CATEGORY, pd.DataFrame({"src": ["p3", "p5"], "dst": ["Toys", "Toys"]})
    )
    rated = pd.DataFrame(EVENTS[:4] + EVENTS[5:], columns=["src", "dst"])
    rated = rated.assign(timestamp=range(len(rated)), value=5.0, weight=1.0)
    t.rels[schema.RATED] = typed_rel_table(schema.RATED, rated)
    t.rels[schema.VIEWED] = typed_rel_table(
        schema.VIEWED,
        pd.DataFrame(
            {"src": ["u1"], "dst": ["p1"], "timestamp": [99], "value": [1.0], "weight": [0.25]}
        ),
    )
    return t


@pytest.fixture()
def snap(tmp_path: Path) -> GraphSnapshot:
    store = LocalStore(tmp_path)
    store.write(_tables(), progress=False)
    return build_snapshot(store, progress=False)


def test_head_size_and_degree_summary() -> None:
    deg = np.array([5, 3, 1, 1, 0])
    assert head_size(deg, 0.8) == 2  # 5 + 3 = 8 of 10
    assert head_size(deg, 0.81) == 3
    assert head_size(np.zeros(3, dtype=int)) == 0
    s = degree_summary(deg)
    assert (s["min"], s["max"], s["mean"], s["p50"]) == (0.0, 5.0, 2.0, 1.0)
    with pytest.raises(ValueError, match="head_share"):
        head_size(deg, 0.0)


def test_graph_stats_values(snap: GraphSnapshot, tmp_path: Path) -> None:
    st = graph_stats(snap)
    assert st.counts == {
        "User": 4,
        "Product": 5,
        "Category": 1,
        "VIEWED": 1,
        "RATED": 9,
        "IN_CATEGORY": 2,
    }
    assert st.interactions == 10
    assert st.product_degrees.tolist() == [5, 3, 1, 1, 0]
    assert st.user_degrees.tolist() == [3, 2, 2, 3]
    assert (st.head_products, st.long_tail_products, st.never_interacted) == (2, 3, 1)
    assert st.long_tail_share == pytest.approx(0.6)
    assert st.long_tail_interaction_share == pytest.approx(0.2)
    assert st.user_degree["mean"] == 2.5
    assert "long tail is 3 products (60.0% of the catalogue" in st.paragraph()
    out = plot_degrees(st, tmp_path / "deg.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_neighbourhood(snap: GraphSnapshot) -> None:
    one = neighbourhood(snap, schema.PRODUCT, "p3", hops=1)
    assert set(one.nodes) == {"Product:p3", "User:u4", "Category:Toys"}
    assert one.nodes["Product:p3"]["title"] == "Three"
    rated = one.get_edge_data("User:u4", "Product:p3")["RATED"]
    assert (rated["type"], rated["value"], rated["weight"]) == ("RATED", 5.0, 1.0)
    two = neighbourhood(snap, schema.PRODUCT, "p3", hops=2)
    assert set(two.nodes) == {
        "Product:p3",
        "User:u4",
        "Category:Toys",
        "Product:p1",
        "Product:p4",
        "Product:p5",
    }
    # Every edge among the kept nodes: u4 rated p1, p3, p4.
    assert sorted(b for _, b in two.out_edges("User:u4")) == [
        "Product:p1",
        "Product:p3",
        "Product:p4",
    ]
    with pytest.raises(MissingIdError):
        neighbourhood(snap, schema.PRODUCT, "nope")


def test_paths_explain_a_recommendation(snap: GraphSnapshot, tmp_path: Path) -> None:
    index = GraphIndex(snap)
    found = explain(index, "u4", "p5", max_hops=3)
    assert [e.nodes for e in found] == [["User:u4", "Product:p3", "Category:Toys", "Product:p5"]]
    assert found[0].rels == ["RATED", "IN_CATEGORY", "<IN_CATEGORY"]
    assert found[0].text == (
        "User:u4 -RATED-> Product:p3 ('Three') -IN_CATEGORY-> "
        "Category:Toys <-IN_CATEGORY- Product:p5 ('Five')"
    )
    assert explain(index, "u1", "p5", max_hops=3) == []  # u1 is 5 hops away
    via_users = explain(index, "u3", "p3", max_hops=3)
    assert {tuple(e.nodes[1:3]) for e in via_users} == {("Product:p1", "User:u4")}
    ax = draw(
        neighbourhood(index, schema.PRODUCT, "p3", hops=2),
        tmp_path / "n.png",
        highlight=["Product:p3"],
    )
    assert (tmp_path / "n.png").stat().st_size > 1000 and len(ax.collections) >= 2


def test_long_tail_mask_is_outside_the_head():
    from kgrec.kg.stats import long_tail_mask

    mask = long_tail_mask(np.array([5, 3, 1, 1, 0]), 0.8)
    assert mask.tolist() == [False, False, True, True, True]
    # Ties keep catalogue order; the head is the two products of degree 5.
    assert long_tail_mask(np.array([1, 5, 5, 0]), 0.5).tolist() == [True, False, False, True]
    assert long_tail_mask(np.zeros(3, dtype=int)).tolist() == [True, True, True]
