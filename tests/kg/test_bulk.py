"""Bulk first load (kgrec.kg.store.bulk): neo4j-admin import into a private server gives the
same graph as the Bolt loader (Neo4jStore) on MovieLens-100K + its KG (the first 5,000
relationships of each type and the nodes they need)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from kgrec.errors import InputError, StoreError
from kgrec.kg import cypher, schema
from kgrec.kg.store.bulk import SCRIPTS, BulkStore, check_target, server_settings
from kgrec.kg.store.bulk_csv import CsvExport, export_csv
from kgrec.kg.store.neo4j import Neo4jStore
from kgrec.kg.tables import GraphTables, typed_node_table, typed_rel_table
from kgrec.settings import Neo4jConfig

#: Products whose values stress the CSV export: quotes, commas, a line break, an empty
#: string, NA, unicode, an infinite price.
ODD_PRODUCTS = pd.DataFrame({
    "id": ["odd-1", "odd-2", "odd-3"],
    "title": ['say "hi", then, go', "two\nlines", ""],
    "description": ["ünïcode ✓ ; semi", None, "back\\slash"],
    "price": [1.25, None, float("inf")],
})


def _free_port(start: int = 7897) -> int:
    for port in range(start, start + 100):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError("no free port for the bulk-import test server")


def _with_odd_products(tables: GraphTables, rows: int) -> GraphTables:
    """The first ``rows`` relationships of each type (the Bolt load of all 196k took 20 s of
    the test and adds no case), the knowledge-graph entities they touch, every other node
    and the odd products."""
    rels = {rel: frame.head(rows) for rel, frame in tables.rels.items()}
    ends = pd.concat([frame[end] for frame in rels.values() for end in ("src", "dst")])
    entities = tables.node(schema.ENTITY)
    products = pd.concat([tables.node(schema.PRODUCT),
                          typed_node_table(schema.PRODUCT, ODD_PRODUCTS)], ignore_index=True)
    return GraphTables(nodes={**tables.nodes, schema.PRODUCT: products,
                              schema.ENTITY: entities[entities["id"].isin(ends)]}, rels=rels)


def _sample(store: Neo4jStore, counts: dict[str, int]) -> dict[str, pd.DataFrame]:
    """The first page (in key order) of every non-empty label and type, all properties."""
    out = {lab: next(store.iter_nodes(lab, batch_size=5_000))
           for lab in schema.NODE_LABELS if counts.get(lab)}
    out.update({rel: next(store.iter_rels(rel, batch_size=5_000))
                for rel in schema.RELATIONSHIPS if counts.get(rel)})
    return out


def test_export_headers_and_quoting(tmp_path: Path) -> None:
    tables = GraphTables(
        nodes={schema.PRODUCT: typed_node_table(schema.PRODUCT, ODD_PRODUCTS),
               schema.USER: typed_node_table(schema.USER, pd.DataFrame({"id": ["u", "u"]}))},
        rels={schema.RATED: typed_rel_table(schema.RATED, pd.DataFrame(
            {"src": ["u"], "dst": ["odd-1"], "timestamp": [5], "value": [None]}))},
    )
    files, multiline = export_csv(tables, tmp_path)
    assert multiline  # "two\nlines"
    assert {(f.kind, f.name, f.rows) for f in files} == {
        ("nodes", "Product", 3), ("nodes", "User", 1), ("relationships", "RATED", 1)}
    product = [(tmp_path / "nodes-Product-header.csv").read_text(),
               *(tmp_path / "nodes-Product-00001.csv").read_text().split("\n")]
    assert product[0] == ("id:ID(Product),title:string,description:string,features:string,"
                          "brand:string,category_path:string,price:double,attributes:string\n")
    assert product[1] == '"odd-1","say ""hi"", then, go","ünïcode ✓ ; semi",,,,1.25,'
    assert (tmp_path / "relationships-RATED-header.csv").read_text() == (
        ":START_ID(User),:END_ID(Product),timestamp:long,value:double,weight:double\n")
    assert (tmp_path / "relationships-RATED-00001.csv").read_text() == '"u","odd-1",5,,\n'


def _parts(tables: GraphTables, n: int) -> list[GraphTables]:
    """``tables`` cut into ``n`` parts: every node table whole in the first, each
    relationship table in ``n`` slices, the first slice repeated in the last part (a row
    an earlier part exported)."""
    parts = []
    for i in range(n):
        rels = {rel: f.iloc[i * len(f) // n: (i + 1) * len(f) // n]
                for rel, f in tables.rels.items()}
        if i == n - 1:
            rels = {rel: pd.concat([f, tables.rels[rel].iloc[: len(tables.rels[rel]) // n]])
                    for rel, f in rels.items()}
        parts.append(GraphTables(nodes=tables.nodes if i == 0 else {}, rels=rels))
    return parts


def _rows(files, kind: str, name: str) -> list[str]:
    file = next(f for f in files if (f.kind, f.name) == (kind, name))
    return [line for path in file.paths[1:] for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_an_export_in_parts_writes_the_rows_of_the_whole_once(ml100k_tables: GraphTables,
                                                            tmp_path: Path) -> None:
    whole, _ = export_csv(ml100k_tables, tmp_path / "whole")
    export = CsvExport(tmp_path / "parts")
    added = [export.add(part) for part in _parts(ml100k_tables, 3)]
    parts = list(export.files.values())
    rated = ml100k_tables.rel(schema.RATED)
    assert [a[schema.RATED] for a in added] == [len(rated) // 3, len(rated) // 3,
                                                 len(rated) - 2 * (len(rated) // 3)]
    assert {(f.name, f.rows) for f in parts} == {(f.name, f.rows) for f in whole}
    assert len(next(f for f in parts if f.name == schema.RATED).paths) == 1 + 3
    for f in whole:
        assert _rows(parts, f.kind, f.name) == _rows(whole, f.kind, f.name), f.name
    users = typed_node_table(schema.USER, pd.DataFrame({"id": ["new"]}))
    late = typed_rel_table(schema.RATED, pd.DataFrame({"src": ["new"], "dst": ["nowhere"]}))
    with pytest.raises(StoreError, match="name a Product that is not in the tables"):
        export.add(GraphTables(nodes={schema.USER: users}, rels={schema.RATED: late}))


def test_export_refuses_dangling_ends_and_empty_keys(tmp_path: Path) -> None:
    users = typed_node_table(schema.USER, pd.DataFrame({"id": ["u"]}))
    rated = typed_rel_table(schema.RATED, pd.DataFrame({"src": ["u"], "dst": ["nowhere"]}))
    with pytest.raises(StoreError, match="name a Product that is not in the tables"):
        export_csv(GraphTables(nodes={schema.USER: users}, rels={schema.RATED: rated}), tmp_path)
    blank = typed_node_table(schema.USER, pd.DataFrame({"id": ["u", ""]}))
    with pytest.raises(InputError, match="empty id"):
        export_csv(GraphTables(nodes={schema.USER: blank}), tmp_path)


def test_refuses_running_or_non_empty_target(tmp_path: Path) -> None:
    with socket.socket() as listener:  # something answers on the port
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        uri = f"bolt://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(StoreError, match="needs a stopped server"):
            check_target(tmp_path, "neo4j", uri)
    free = f"bolt://127.0.0.1:{_free_port()}"
    check_target(tmp_path, "neo4j", free)  # empty folder: fine
    (tmp_path / "data" / "databases" / "neo4j").mkdir(parents=True)
    (tmp_path / "data" / "databases" / "neo4j" / "neostore").touch()
    with pytest.raises(StoreError, match="needs an empty database"):
        check_target(tmp_path, "neo4j", free)
    with pytest.raises(StoreError, match="on this machine"):
        check_target(tmp_path, "neo4j", "bolt://db.example.com:7687")


def test_server_settings_find_server_sh_password(tmp_path: Path) -> None:
    plain = Neo4jConfig(uri="bolt://127.0.0.1:7687")
    env = {"NEO4J_RUN_DIR": str(tmp_path)}
    assert server_settings(plain, env) is plain  # no password file: no authentication
    (tmp_path / "password").write_text("s3cret\n")
    assert server_settings(plain, env).password_file == str(tmp_path / "password")
    assert server_settings(plain, {**env, "NEO4J_AUTH": "off"}) is plain
    assert server_settings(plain, {**env, "NEO4J_PASSWORD": "pw"}).password == "pw"
    given = Neo4jConfig(password="mine")
    assert server_settings(given, env) is given


@pytest.mark.neo4j
def test_bulk_import_equals_bolt_load(ml100k_tables: GraphTables, neo4j_store: Neo4jStore,
                                      tmp_path: Path) -> None:
    tables = _with_odd_products(ml100k_tables, rows=5_000)
    counts = tables.counts()
    assert counts[schema.RATED] == 5_000 and len(tables.rels) == len(ml100k_tables.rels)
    assert 1_000 < counts[schema.ENTITY] < len(ml100k_tables.node(schema.ENTITY))
    port = _free_port()
    env = {"NEO4J_RUN_DIR": str(tmp_path / "run"), "NEO4J_AUTH": "off"}
    bulk = BulkStore(Neo4jConfig(uri=f"bolt://127.0.0.1:{port}"), tmp_path / "home", env=env)
    try:
        created: dict[str, int] = {}
        for part in _parts(tables, 3):  # as a streamed dump comes: the import runs at finish
            for name, rows in bulk.write(part, progress=False).items():
                created[name] = created.get(name, 0) + rows
        assert bulk.store is None
        bulk.finish(progress=False)
        bolt_created = neo4j_store.write(tables, progress=False)
        assert created == bulk.imported == bolt_created == tables.counts()
        assert bulk.counts() == neo4j_store.counts()
        assert bulk.store is not None
        bulk_graph, bolt_graph = (_sample(s, created) for s in (bulk.store, neo4j_store))
        for name, frame in bolt_graph.items():  # thousands of rows each, every property
            pd.testing.assert_frame_equal(bulk_graph[name], frame, obj=name)
        odd = bulk_graph[schema.PRODUCT].set_index("id").loc[["odd-1", "odd-2", "odd-3"]]
        assert odd["title"].tolist() == ['say "hi", then, go', "two\nlines", ""]
        assert odd["price"].tolist()[::2] == [1.25, float("inf")] and pd.isna(odd["price"].iloc[1])

        constraints = bulk.store._query("SHOW CONSTRAINTS YIELD name RETURN collect(name) AS c")
        # One uniqueness constraint per node label, and the one of the write locks' nodes.
        assert sorted(constraints[0]["c"]) == sorted(
            [cypher.constraint_name(lab) for lab in schema.NODE_LABELS] + ["kgrec_load_lock"])
        # A later Bolt load merges into the imported graph: the same events add nothing.
        rated = tables.rel(schema.RATED).head(1000)
        again = GraphTables(rels={schema.RATED: rated})
        assert bulk.store.write(again, progress=False) == {schema.RATED: 0}
        with pytest.raises(StoreError, match="loads an empty database once"):
            bulk.write(tables, progress=False)
    finally:
        bulk.close()
        subprocess.run(["bash", str(SCRIPTS / "server.sh"), "stop"], capture_output=True,
                       env={**os.environ, **env, "NEO4J_HOME": str(tmp_path / "home"),
                            "NEO4J_PORT": str(port)}, check=False)
