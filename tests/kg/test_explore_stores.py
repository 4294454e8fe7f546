"""Exploring the same graph on the embedded store and on Neo4j gives the same answers:
neighbourhoods (nodes, properties, edges, cuts), explanation paths and their scores."""

from __future__ import annotations

import networkx as nx
import pandas as pd
import pytest

from kgrec.errors import MissingIdError
from kgrec.kg import cypher, graph_sources, schema
from kgrec.kg.draw import browser_cypher, draw, draw_interactive
from kgrec.kg.explore import explain, neighbourhood, path_score
from kgrec.kg.graph_sources import NodeRef, graph_source
from kgrec.kg.snapshot import build_snapshot
from kgrec.kg.store.local import LocalStore
from kgrec.kg.tables import GraphTables, typed_node_table, typed_rel_table

HOSTILE_PRODUCT = "p'}) DETACH DELETE n //"
HOSTILE_USER = 'u"`x`\\ RETURN 1'
THEMES = 10


def _tables(themed_tables) -> GraphTables:
    """The themed catalogue plus a category per theme and a user and a product with
    hostile ids (quotes, backticks, Cypher fragments)."""
    t = GraphTables()
    products = themed_tables.nodes[schema.PRODUCT]
    extra = typed_node_table(schema.PRODUCT, pd.DataFrame(
        {"id": [HOSTILE_PRODUCT], "title": ["a quoted 'product'"]}))
    t.nodes[schema.PRODUCT] = pd.concat([products, extra], ignore_index=True)
    t.nodes[schema.USER] = pd.concat([themed_tables.nodes[schema.USER], typed_node_table(
        schema.USER, pd.DataFrame({"id": [HOSTILE_USER]}))], ignore_index=True)
    t.nodes[schema.CATEGORY] = typed_node_table(schema.CATEGORY, pd.DataFrame(
        {"id": [f"theme{i}" for i in range(THEMES)], "name": [f"theme {i}" for i in
                                                             range(THEMES)], "level": 0}))
    ids = products["id"].tolist()
    t.rels[schema.IN_CATEGORY] = typed_rel_table(schema.IN_CATEGORY, pd.DataFrame(
        {"src": ids + [HOSTILE_PRODUCT], "dst": [f"theme{int(i[1:]) % THEMES}" for i in ids]
         + ["theme0"]}))
    rated = themed_tables.rels[schema.RATED]
    hostile = typed_rel_table(schema.RATED, pd.DataFrame(
        {"src": [HOSTILE_USER, HOSTILE_USER], "dst": [HOSTILE_PRODUCT, "p10"],
         "timestamp": [5, 6], "value": [4.0, 3.0], "weight": [0.8, 0.6]}))
    t.rels[schema.RATED] = pd.concat([rated, hostile], ignore_index=True)
    return t


@pytest.fixture(scope="module")
def neo4j_explored(themed_tables, neo4j_driver):
    """The graph in an emptied Neo4j database, loaded once for this module's reads."""
    from kgrec.kg.store.neo4j import Neo4jStore

    store = Neo4jStore(neo4j_driver)
    store.clear()
    store.write(_tables(themed_tables), progress=False)
    return store


@pytest.fixture(scope="module")
def stores(themed_tables, tmp_path_factory, neo4j_explored):
    local = LocalStore(tmp_path_factory.mktemp("explore") / "store")
    local.write(_tables(themed_tables), progress=False)
    return {"local": graph_source(build_snapshot(local, progress=False)),
            "neo4j": graph_source(neo4j_explored)}


def _same(a: nx.MultiDiGraph, b: nx.MultiDiGraph) -> None:
    assert dict(a.nodes(data=True)) == dict(b.nodes(data=True))
    assert sorted(a.edges(keys=True, data=True)) == sorted(b.edges(keys=True, data=True))
    assert a.graph == b.graph


@pytest.mark.neo4j
def test_neighbourhoods_are_identical_on_both_stores(stores) -> None:
    graphs = {name: neighbourhood(src, schema.PRODUCT, "p00", hops=2)
              for name, src in stores.items()}
    _same(graphs["local"], graphs["neo4j"])
    g = graphs["local"]
    assert g.nodes["Product:p00"] == {"label": "Product", "id": "p00", "hops": 0,
                                      "title": "waterproof hiking boots model 0",
                                      "category_path": None, "brand": None, "price": None}
    # hop 1: its category and its raters; hop 2: their other products, theme-0 products.
    assert {n for n, d in g.nodes(data="hops") if d == 1} >= {"Category:theme0"}
    assert "Product:p10" in g and g.nodes["Product:p10"]["hops"] == 2
    rated = next(iter(g.in_edges("Product:p00", keys=True, data=True)))
    assert rated[2] == "RATED" and set(rated[3]) == {"type", "timestamp", "value", "weight"}
    assert g.graph["cut"] == [] and not g.graph["truncated"]


@pytest.mark.neo4j
def test_limits_are_respected_and_reported_identically(stores) -> None:
    graphs = {name: neighbourhood(src, schema.PRODUCT, "p00", hops=3, limit=12, max_edges=15)
              for name, src in stores.items()}
    _same(graphs["local"], graphs["neo4j"])
    g = graphs["local"]
    assert g.number_of_nodes() == 12 and g.number_of_edges() == 15
    assert g.graph["truncated"]
    assert g.graph["cut"][0].startswith("hop 2: more than")
    assert g.graph["cut"][-1] == ("edges: more than 15 among the kept nodes; kept the first 15")
    only_categories = {name: neighbourhood(src, schema.PRODUCT, "p00", hops=2,
                                           rel_types=["IN_CATEGORY"])
                       for name, src in stores.items()}
    _same(only_categories["local"], only_categories["neo4j"])
    assert sorted(only_categories["local"]) == sorted(
        ["Category:theme0", "Product:p00", "Product:p10", "Product:p20", "Product:p30",
         f"Product:{HOSTILE_PRODUCT}"])


@pytest.mark.neo4j
def test_explanations_are_identical_and_ranked_by_their_score(stores) -> None:
    found = {name: explain(src, "u00", "p20", max_hops=3, limit=4)
             for name, src in stores.items()}
    assert [(e.nodes, e.rels, e.text) for e in found["local"]] == [
        (e.nodes, e.rels, e.text) for e in found["neo4j"]]
    assert [e.score for e in found["local"]] == pytest.approx([e.score for e in found["neo4j"]])
    best = found["local"]
    assert len(best) == 4 and all(e.nodes[0] == "User:u00" for e in best)
    assert [e.score for e in best] == sorted((e.score for e in best), reverse=True)
    degree = stores["local"].degrees([NodeRef.parse(k) for k in best[0].nodes[1:-1]],
                                     list(schema.RELATIONSHIPS))
    assert best[0].score == pytest.approx(path_score(best[0].nodes, degree))


@pytest.mark.neo4j
def test_unknown_nodes_and_hostile_ids(stores, neo4j_explored) -> None:
    neo4j_store = neo4j_explored
    before = neo4j_store.counts()
    for src in stores.values():
        with pytest.raises(MissingIdError, match="unknown Product 'nope'"):
            neighbourhood(src, schema.PRODUCT, "nope")
        with pytest.raises(MissingIdError, match="unknown User"):
            explain(src, "x' OR 1=1 //", "p00")
    graphs = {name: neighbourhood(src, schema.PRODUCT, HOSTILE_PRODUCT, hops=1)
              for name, src in stores.items()}
    _same(graphs["local"], graphs["neo4j"])
    assert sorted(graphs["local"]) == sorted(
        [f"Product:{HOSTILE_PRODUCT}", f"User:{HOSTILE_USER}", "Category:theme0"])
    paths = {name: explain(src, HOSTILE_USER, HOSTILE_PRODUCT) for name, src in stores.items()}
    assert paths["local"][0].nodes == paths["neo4j"][0].nodes == [
        f"User:{HOSTILE_USER}", f"Product:{HOSTILE_PRODUCT}"]
    # The Browser query escapes the id and draws the same nodes.
    query = browser_cypher(graphs["neo4j"])
    records = neo4j_store._query(query)
    drawn = {f"{next(iter(node.labels))}:{node['id']}" for r in records
             for node in r["path"].nodes}
    assert drawn == set(graphs["neo4j"])
    assert neo4j_store.counts() == before  # nothing written, nothing deleted


def test_drawings(themed_tables, tmp_path) -> None:
    local = LocalStore(tmp_path / "store")
    local.write(_tables(themed_tables), progress=False)
    g = neighbourhood(local, schema.PRODUCT, "p00", hops=2)
    ax = draw(g, tmp_path / "n.png", highlight=["Product:p00"], max_nodes=25)
    assert (tmp_path / "n.png").stat().st_size > 5_000
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["Category", "Product", "User"]
    html = draw_interactive(g, tmp_path / "n.html")
    assert html.startswith("<html>") and "vis-network" in html
    assert html.count('"id": "') >= g.number_of_nodes() and "waterproof hiking boots" in html


@pytest.mark.neo4j
@pytest.mark.parametrize("bad, why", [
    ({"limit": -1}, "limit must be a whole number of at least 1, got -1"),
    ({"limit": 0}, "limit must be a whole number of at least 1, got 0"),
    ({"limit": True}, "limit must be a whole number of at least 1, got True"),
    ({"max_paths": 0}, "max_paths must be a whole number of at least 1, got 0"),
    ({"max_hops": 0}, "max_hops must be a whole number of at least 1 and at most 4"),
    ({"max_hops": 5}, r"max_hops must be a whole number of at least 1 and at most 4 "
                      r"\(MAX_EXPLAIN_HOPS: .*\), got 5"),
    ({"max_hops": 6}, "max_hops must be a whole number of at least 1 and at most 4"),
    ({"max_hops": 8}, "max_hops must be a whole number of at least 1 and at most 4"),
    ({"max_hops": 50}, "max_hops must be a whole number of at least 1 and at most 4"),
])
def test_explain_refuses_unbounded_arguments_on_both_stores(stores, bad, why) -> None:
    for src in stores.values():
        with pytest.raises(ValueError, match=why):
            explain(src, "u00", "p20", **bad)


@pytest.mark.neo4j
def test_explain_work_is_bounded_on_both_stores(stores, neo4j_explored, monkeypatch) -> None:
    import time

    from kgrec.errors import StoreError

    # The most hops allowed answer quickly, the same on both stores below the path cap.
    timed = {}
    for name, src in stores.items():
        start = time.perf_counter()
        timed[name] = explain(src, "u00", "p20", max_hops=4, limit=3, max_paths=10**9)
        assert time.perf_counter() - start < 20
    assert [e.nodes for e in timed["local"]] == [e.nodes for e in timed["neo4j"]]
    assert len(timed["local"]) == 3 and all(e.hops <= 4 for e in timed["local"])
    # The embedded store stops after EXPLAIN_STEPS path extensions and says so.
    monkeypatch.setattr(graph_sources, "EXPLAIN_STEPS", 40)
    cut = explain(stores["local"], "u00", "p20", max_hops=4, limit=2, max_paths=10**9)
    assert len(cut) == 2
    assert cut[0].text.endswith("paths found within the search bound of 40 steps)")
    # Neo4j stops the path query after EXPLAIN_SECONDS (the server checks its transactions
    # every 2 s, so the query is made slow): one StoreError naming the bound.
    slow = ("UNWIND range(1, 2000000000) AS x WITH count(x) AS n "
            "RETURN [$user, $product] AS keys LIMIT $cap")
    monkeypatch.setattr(cypher, "explore_paths", lambda hops: slow)
    monkeypatch.setattr(graph_sources, "EXPLAIN_SECONDS", 0.5)
    start = time.perf_counter()
    with pytest.raises(StoreError, match=r"^explaining User:u00 -> Product:p20 within 4 hops "
                                         r"ran over its bound of 0.5 s on Neo4j and was stopped"):
        explain(stores["neo4j"], "u00", "p20", max_hops=4)
    assert time.perf_counter() - start < 15
