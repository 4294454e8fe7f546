"""Neo4j faults through the real CLI: the server killed (SIGKILL) in the middle of a load,
no server at start, a wrong or missing password, and two loads of one dump at once. Each
failure is one ``kgrec: error:`` line; a cut-off load keeps a consistent graph and a re-run
completes it with exactly the counts of a clean load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from neo4j import Driver, GraphDatabase

from kgrec.kg.store.bulk import SCRIPTS

pytestmark = pytest.mark.neo4j

#: Enough events that the load is still running when the server is killed at a fifth of it.
USERS, PRODUCTS, EVENTS = 2_000, 5_000, 20_000
CLEAN = {"User": USERS, "Product": PRODUCTS, "PURCHASED": EVENTS}


def _dump(folder: Path, events: int = EVENTS, timestamps: bool = True) -> list[str]:
    """Synthetic products and purchase events (every event distinct; without timestamps up
    to 10,000 events: the (user, product) pairs repeat after lcm(USERS, PRODUCTS)); ``ingest``
    options."""
    folder.mkdir(parents=True, exist_ok=True)
    products, ev = folder / "products.csv", folder / "events.csv"
    if not ev.exists():
        products.write_text("id,title\n" + "".join(f"p{i},product {i}\n" for i in range(PRODUCTS)))
        ev.write_text(f"user,product,type{',timestamp' * timestamps}\n" + "".join(
            f"u{i % USERS},p{(i * 7919) % PRODUCTS},purchase{f',{i}' * timestamps}\n"
            for i in range(events)))
    return ["--products", str(products), "--events", str(ev)]


def _ingest(workdir: Path, uri: str, password_file: str, *extra: str,
            password: str | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KGREC_")}
    env |= {"KGREC_NEO4J_URI": uri, "KGREC_NEO4J_PASSWORD_FILE": password_file}
    if password is not None:
        env["KGREC_NEO4J_PASSWORD"] = password
    args = [sys.executable, "-m", "kgrec.cli", "ingest", *extra, "--store", "neo4j",
            "--reports-dir", str(workdir / "reports"), "--no-progress",
            "--set", "store.batch_size=1000"]
    return subprocess.Popen(args, cwd=workdir, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _driver(uri: str, password: str) -> Driver:
    return GraphDatabase.driver(uri, auth=("neo4j", password), notifications_min_severity="OFF")


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("kgrec: error: "), err
    return lines[0]


def _graph(uri: str, password: str) -> dict[str, int]:
    """Counts, and the relationships that break the schema or repeat a key."""
    with _driver(uri, password) as driver:
        def one(query: str) -> int:
            return driver.execute_query(query).records[0]["n"]

        return {
            "User": one("MATCH (n:User) RETURN count(n) AS n"),
            "Product": one("MATCH (n:Product) RETURN count(n) AS n"),
            "PURCHASED": one("MATCH ()-[r:PURCHASED]->() RETURN count(r) AS n"),
            "bad_ends": one("MATCH (a)-[r:PURCHASED]->(b) WHERE NOT a:User OR NOT b:Product "
                            "OR a.id IS NULL OR b.id IS NULL RETURN count(r) AS n"),
            "dup_rels": one("MATCH (a)-[r:PURCHASED]->(b) WITH a, b, r.timestamp AS t, "
                            "count(*) AS c WHERE c > 1 RETURN count(*) AS n"),
            "dup_nodes": one("MATCH (n) WITH labels(n) AS l, n.id AS id, count(*) AS c "
                             "WHERE c > 1 RETURN count(*) AS n"),
        }


def _clean(counts: dict[str, int]) -> bool:
    return counts == {**CLEAN, "bad_ends": 0, "dup_rels": 0, "dup_nodes": 0}


def _rel_count(uri: str, password: str) -> int:
    with _driver(uri, password) as driver:
        return driver.execute_query("MATCH ()-[r:PURCHASED]->() RETURN count(r) AS n"
                                    ).records[0]["n"]


def test_server_killed_mid_load_then_rerun_completes(neo4j_private, tmp_path: Path) -> None:
    server = neo4j_private()
    source = _dump(tmp_path / "dump")
    pw_file = str(server.run_dir / "password")
    # The driver retries a transaction cut off by the kill for retry_seconds, then fails.
    retry = ("--set", "neo4j.retry_seconds=2")
    run = _ingest(tmp_path, server.uri, pw_file, *source, *retry)
    deadline = time.monotonic() + 400
    while _rel_count(server.uri, server.password) < EVENTS // 5:
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline, "the load made no progress"
        time.sleep(0.3)
    os.kill(server.pid, signal.SIGKILL)
    killed = time.monotonic()
    out, err = run.communicate(timeout=120)
    assert run.returncode == 1, (out, err)
    line = _one_error_line(err)
    # Mid-batch: the store's message; between batches (a count read): the CLI's.
    assert "lost the connection to Neo4j while writing" in line or (
        f"cannot reach Neo4j at {server.uri}" in line), line
    assert time.monotonic() - killed < 20  # the retry time, not the driver's 30 s per batch
    # A first start killed while it dumped its class-data archive leaves the dump behind.
    archive = SCRIPTS / "lib" / "classes" / "neo4j-cds.jsa"
    assert archive.exists()  # made by `server.sh build`
    orphan = archive.with_name(f"{archive.name}.7687.12345")
    orphan.write_bytes(b"cut short")
    server.start()  # recovery replays the committed batches
    assert not orphan.exists()  # the archive is in place: left-over dumps go
    cut = _graph(server.uri, server.password)
    assert cut["bad_ends"] == cut["dup_rels"] == cut["dup_nodes"] == 0
    assert cut["User"] <= USERS and cut["Product"] <= PRODUCTS
    assert EVENTS // 5 <= cut["PURCHASED"] < EVENTS
    run = _ingest(tmp_path, server.uri, pw_file, *source)
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err
    assert _clean(_graph(server.uri, server.password))


@pytest.mark.parametrize("timestamps", [True, False], ids=["merge", "null-key"])
def test_two_loads_at_once_end_as_one_load(neo4j_uri: str, neo4j_password: str,
                                           neo4j_store, tmp_path: Path,
                                           timestamps: bool) -> None:
    """Into an emptied database (no constraint race left out: the store recreates them).
    Events without a timestamp take the check-then-create statement (MERGE cannot match a
    null key), which the source node's lock serialises."""
    with _driver(neo4j_uri, neo4j_password) as driver:
        for record in driver.execute_query("SHOW CONSTRAINTS YIELD name").records:
            driver.execute_query(f"DROP CONSTRAINT `{record['name']}`")
    events = EVENTS // 2
    source = _dump(tmp_path / "dump", events=events, timestamps=timestamps)
    runs = [_ingest(tmp_path, neo4j_uri, "", *source, password=neo4j_password)
            for _ in range(2)]
    for run in runs:
        out, err = run.communicate(timeout=600)
        assert run.returncode == 0, err
        assert "Traceback" not in err and "Deadlock" not in err and "Constraint" not in err
    counts = _graph(neo4j_uri, neo4j_password)
    assert counts == {"User": USERS, "Product": PRODUCTS, "PURCHASED": events,
                      "bad_ends": 0, "dup_rels": 0, "dup_nodes": 0}


def test_no_server_at_start_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    started = time.monotonic()
    run = _ingest(tmp_path, f"bolt://127.0.0.1:{port}", "", *_dump(tmp_path / "d", 10),
                  "--set", "neo4j.wait_seconds=1", password="whatever-secret")
    out, err = run.communicate(timeout=120)
    assert time.monotonic() - started < 10  # waited 1 s for the server, not the default 10
    assert run.returncode == 1
    line = _one_error_line(err)
    assert f"Neo4j at bolt://127.0.0.1:{port} does not answer" in line
    assert "server.sh start" in line and "whatever-secret" not in out + err


@pytest.mark.parametrize(("password", "expected"), [
    ("not-the-password", "refused the credentials of user 'neo4j'"),
    ("", "needs a password"),
])
def test_wrong_or_missing_password_is_one_line(neo4j_uri: str, neo4j_password: str,
                                              password: str, expected: str,
                                              tmp_path: Path) -> None:
    if not neo4j_password:
        pytest.skip("the reused server runs without authentication")
    run = _ingest(tmp_path, neo4j_uri, "", *_dump(tmp_path / "d", 10), password=password)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 1
    line = _one_error_line(err)
    assert f"Neo4j at {neo4j_uri} {expected}" in line and "KGREC_NEO4J_PASSWORD" in line
    assert neo4j_password not in out + err


def test_unreadable_password_file_is_one_line(neo4j_uri: str, tmp_path: Path) -> None:
    run = _ingest(tmp_path, neo4j_uri, str(tmp_path / "nope"), *_dump(tmp_path / "d", 10))
    out, err = run.communicate(timeout=120)
    assert run.returncode == 1
    assert "cannot read neo4j.password_file" in _one_error_line(err)
