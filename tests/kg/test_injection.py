"""Hostile text in every id, name, category and KG relation name is stored verbatim by both
stores and never changes a query: every write and read path (write, iter_nodes/iter_rels,
counts, write_recommendations, the explore reads and the Browser query) round-trips it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from kgrec.kg import cypher, schema
from kgrec.kg.draw import browser_cypher
from kgrec.kg.explore import explain, neighbourhood
from kgrec.kg.graph_sources import graph_source
from kgrec.kg.snapshot import build_snapshot
from kgrec.kg.store.local import LocalStore
from kgrec.kg.tables import GraphTables, typed_node_table, typed_rel_table

HOSTILE = [
    "it's", 'say "hi"', "back`tick`", "``", "{braces}", "}]->()<-[r]-({",
    "MATCH (n) DETACH DELETE n", "x'}) DETACH DELETE n //", "// comment", "/* c */",
    "$param", "$rows", "line\nbreak\r\n", "tab\there", "back\\slash\\", "\\u0027",
    "'; MATCH (n) DETACH DELETE n; //", "RETURN 1 UNION MATCH (n) DETACH DELETE n",
    "CREATE (:User {id: 'evil'})", "Product:p1", ":User", "`) SET n.x = 1 //",
    "CALL db.clearQueryCaches()", "ü 𝄞 \u200b", " spaced ",
]
N = len(HOSTILE)


def hostile_tables() -> GraphTables:
    """Users, products, categories and entities whose ids and texts are the hostile strings,
    linked i -> i (RELATED i -> i+1 with relation name i)."""
    t = GraphTables()
    text = list(reversed(HOSTILE))

    def node(label: str, **cols: list[str]) -> None:
        t.nodes[label] = typed_node_table(label, pd.DataFrame({"id": HOSTILE, **cols}))

    def rel(name: str, dst: list[str], **cols: list) -> None:
        t.rels[name] = typed_rel_table(name, pd.DataFrame({"src": HOSTILE, "dst": dst, **cols}))

    node(schema.USER, attributes=text)
    node(schema.PRODUCT, title=text, description=HOSTILE, category_path=text, brand=HOSTILE)
    node(schema.CATEGORY, name=text)
    node(schema.ENTITY, name=text)
    rel(schema.RATED, HOSTILE, timestamp=list(range(N)), value=[4.0] * N, weight=[1.0] * N)
    rel(schema.IN_CATEGORY, HOSTILE)
    rel(schema.LINKED_TO, HOSTILE)
    rel(schema.RELATED, HOSTILE[1:] + HOSTILE[:1], relation=HOSTILE)
    return t


def recommendations() -> pd.DataFrame:
    return pd.DataFrame({"src": HOSTILE, "dst": HOSTILE[::-1], "score": 0.5, "score_gnn": 0.1,
                         "score_text": 0.2, "rank": 1, "model_version": HOSTILE,
                         "created_at": 7})


def _rows(frame: pd.DataFrame) -> list[tuple]:
    return sorted(tuple(None if pd.isna(v) else v for v in row)
                  for row in frame.itertuples(index=False))


def _read(store, name: str) -> pd.DataFrame:
    frames = list(store.iter_nodes(name, batch_size=7) if name in schema.NODE_LABELS
                  else store.iter_rels(name, batch_size=7))
    return pd.concat(frames, ignore_index=True)


def _check_store(store) -> None:
    tables = hostile_tables()
    created = store.write(tables, progress=False)
    assert created == {name: N for name in [*tables.nodes, *tables.rels]}
    assert store.write(tables, progress=False) == dict.fromkeys(created, 0)  # MERGE by value
    assert store.write_recommendations(recommendations(), progress=False) == N
    assert store.write_recommendations(recommendations(), progress=False) == N  # replaced
    assert store.counts() == {**created, schema.RECOMMENDED: N}
    for name, frame in [*tables.nodes.items(), *tables.rels.items()]:
        assert _rows(_read(store, name)) == _rows(frame), name
    want = typed_rel_table(schema.RECOMMENDED, recommendations())
    assert _rows(_read(store, schema.RECOMMENDED)) == _rows(want)


def _explore(source) -> dict[str, object]:
    """What the explore reads answer for every hostile id."""
    out: dict[str, object] = {}
    for h in HOSTILE:
        g = neighbourhood(source, schema.PRODUCT, h, hops=2)
        assert g.nodes[f"Product:{h}"]["id"] == h and g.nodes[f"Product:{h}"]["title"] == (
            HOSTILE[N - 1 - HOSTILE.index(h)])
        assert f"User:{h}" in g and f"Category:{h}" in g and f"Entity:{h}" in g
        out[h] = (dict(g.nodes(data=True)), sorted(g.edges(keys=True, data=True)))
        paths = explain(source, h, h, max_hops=1)
        assert [e.nodes for e in paths] == [[f"User:{h}", f"Product:{h}"]]
        out[h + "/explain"] = [(e.nodes, e.rels, e.text) for e in paths]
    return out


def test_local_store_keeps_hostile_text_verbatim(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    _check_store(store)
    _explore(graph_source(build_snapshot(store, progress=False)))


@pytest.mark.neo4j
def test_neo4j_store_keeps_hostile_text_verbatim(neo4j_store, neo4j_driver,
                                                 tmp_path: Path) -> None:
    _check_store(neo4j_store)
    counts = neo4j_store.counts()
    local = LocalStore(tmp_path / "store")
    local.write(hostile_tables(), progress=False)
    on_local = _explore(graph_source(build_snapshot(local, progress=False)))
    assert _explore(graph_source(neo4j_store)) == on_local  # same answers, value for value
    assert neo4j_store.counts() == counts  # no read changed the graph
    with neo4j_driver.session() as session:
        # Relation names of the KG file stay a property: types and labels are the schema's.
        types = {r["t"] for r in session.run("CALL db.relationshipTypes() YIELD "
                                             "relationshipType AS t")}
        labels = {r["l"] for r in session.run("CALL db.labels() YIELD label AS l")}
        assert types <= {*schema.RELATIONSHIPS, schema.RECOMMENDED}
        # The schema's labels, and the lock nodes relationship writes take (one per type).
        assert labels <= {*schema.NODE_LABELS, cypher.LOAD_LOCK}
        keys = {r["k"] for r in session.run("CALL db.propertyKeys() YIELD propertyKey AS k")}
        assert not keys & set(HOSTILE)
        for h in HOSTILE:  # the pasted Browser query finds the node, literal and all
            query = browser_cypher(neighbourhood(neo4j_store, schema.PRODUCT, h, hops=1))
            query = query.replace("RETURN path", "RETURN DISTINCT nodes(path)[0].id AS id")
            assert session.run(query).value() == [h], query
