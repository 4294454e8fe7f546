"""Bulk first load into Neo4j: Neo4j's own importer instead of Bolt transactions.

``GraphTables``, part by part as a dump is streamed -> the importer's CSV files
(:mod:`kgrec.kg.store.bulk_csv`) -> at :meth:`BulkStore.finish`,
``scripts/neo4j/bulk_import.sh`` writes the store files of a STOPPED, EMPTY database ->
``scripts/neo4j/server.sh start`` serves it -> the uniqueness constraints of
:class:`~kgrec.kg.store.neo4j.Neo4jStore` are created and the counts checked through the
driver. The importer skips the transaction layer, so it is the fast path for a very large
first dump; every later load goes through Neo4jStore (Bolt ``MERGE``), which seeks on those
constraints. Rows are deduplicated and checked as Neo4jStore does, so both paths build the
same graph.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pandas as pd

from kgrec.errors import StoreError
from kgrec.kg.store.bulk_csv import CsvExport, CsvFile, import_args
from kgrec.kg.store.neo4j import Neo4jStore
from kgrec.kg.store.neo4j_connect import connect
from kgrec.kg.tables import GraphTables
from kgrec.settings import Neo4jConfig

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts" / "neo4j"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
T = TypeVar("T")


def bolt_address(uri: str) -> tuple[str, int]:
    """(host, port) of a bolt:// or neo4j:// URI (port 7687 by default)."""
    parts = urlsplit(uri)
    return parts.hostname or "127.0.0.1", parts.port or 7687


def default_home(port: int) -> Path:
    """The data folder ``server.sh`` uses for ``port``: $NEO4J_HOME, else
    ``$NEO4J_RUN_DIR/data-<port>`` (run dir default ``<repo>/.neo4j``)."""
    if os.environ.get("NEO4J_HOME"):
        return Path(os.environ["NEO4J_HOME"])
    return Path(os.environ.get("NEO4J_RUN_DIR", SCRIPTS.parents[1] / ".neo4j")) / f"data-{port}"


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def check_target(home: Path, database: str, uri: str) -> None:
    """Refuse (one line) anything but a stopped server over an empty database folder."""
    host, port = bolt_address(uri)
    if host not in LOCAL_HOSTS:
        raise StoreError(f"--bulk writes the database files itself: neo4j.uri must be a server "
                         f"on this machine (127.0.0.1), not {uri}")
    if _answers(host, port):
        raise StoreError(f"--bulk needs a stopped server, but {uri} answers: stop it "
                         "(`bash scripts/neo4j/server.sh stop`) or use a fresh NEO4J_HOME and "
                         "a free port")
    for sub in ("databases", "transactions"):
        folder = home / "data" / sub / database
        if folder.is_dir() and any(folder.iterdir()):
            raise StoreError(f"--bulk needs an empty database, but {folder} holds one: use a "
                             "fresh NEO4J_HOME (or load into this one without --bulk)")


def _tail(text: str, lines: int = 25) -> str:
    kept = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(".")]
    return "\n".join(kept[-lines:])


def run_import(files: list[CsvFile], multiline: bool, home: Path, database: str,
               env: dict[str, str]) -> None:
    """Run ``bulk_import.sh`` (its long progress output: ``<home>/bulk-import/import.log``)."""
    work = home / "bulk-import"
    log = work / "import.log"
    args = import_args(files, multiline, work / "import.report")
    with log.open("w") as out:
        done = subprocess.run(["bash", str(SCRIPTS / "bulk_import.sh"), database, *args],
                              env={**env, "NEO4J_HOME": str(home)}, stdout=out,
                              stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        raise StoreError(f"neo4j-admin import failed (exit {done.returncode}); {log}:\n"
                         + _tail(log.read_text(errors="replace")))


def start_server(home: Path, port: int, env: dict[str, str]) -> None:
    """``server.sh start`` on ``home`` (it stays running, as after a plain start)."""
    done = subprocess.run(["bash", str(SCRIPTS / "server.sh"), "start"], capture_output=True,
                          text=True, check=False,
                          env={**env, "NEO4J_HOME": str(home), "NEO4J_PORT": str(port)})
    if done.returncode:
        raise StoreError(f"the imported database did not start:\n{done.stdout}{done.stderr}")


def server_settings(settings: Neo4jConfig, env: dict[str, str]) -> Neo4jConfig:
    """How to log in to the server ``server.sh`` just started: ``settings``, unless they name
    no password while server.sh set one (its auth default), from NEO4J_PASSWORD or from the
    password file it writes."""
    configured = settings.password or settings.password_file
    if configured or env.get("NEO4J_AUTH") == "off":
        return settings
    if env.get("NEO4J_PASSWORD"):
        return dataclasses.replace(settings, password=env["NEO4J_PASSWORD"])
    run_dir = env.get("NEO4J_RUN_DIR") or str(SCRIPTS.parents[1] / ".neo4j")
    file = env.get("NEO4J_PASSWORD_FILE") or f"{run_dir}/password"
    if not Path(file).is_file():  # a server without authentication
        return settings
    return dataclasses.replace(settings, password_file=file)


class BulkStore:
    """A :class:`~kgrec.kg.store.base.GraphStore` whose :meth:`write` calls export the parts of
    one first load and whose :meth:`finish` bulk-imports them into an empty, stopped
    database, then starts the server on it; reads (and recommendation writes) go to the
    started server through a :class:`Neo4jStore`.

    Args:
        settings: connection settings (uri on this machine, user, password, database).
        home: the server's data folder (default: :func:`default_home` of the uri's port).
        env: extra environment for the scripts (e.g. ``NEO4J_RUN_DIR``, ``NEO4J_AUTH``).
        batch_size: rows per write of the Neo4jStore used after the import.
    """

    rewrites_recommendations = False

    def __init__(self, settings: Neo4jConfig, home: str | Path | None = None, *,
                 env: dict[str, str] | None = None, batch_size: int = 5_000) -> None:
        self.settings = settings
        self.port = bolt_address(settings.uri)[1]
        self.home = Path(home or default_home(self.port)).expanduser().resolve()
        self.env = dict(env or {})
        self.batch_size = batch_size
        #: Seconds per stage of the write: export, import, start, constraints, verify.
        self.timings: dict[str, float] = {}
        self.store: Neo4jStore | None = None
        self.export: CsvExport | None = None
        #: Nodes and relationships per label / type the import created (after finish).
        self.imported: dict[str, int] = {}

    def check(self) -> None:
        """Fail early (before reading a large dump) unless the target is stopped and empty."""
        check_target(self.home, self.settings.database, self.settings.uri)

    def write(self, tables: GraphTables, *, progress: bool = True) -> dict[str, int]:
        """Export ``tables``, one part of the first load, to the importer's CSV files (the
        import runs at :meth:`finish`); returns the nodes and relationships per label / type
        this part adds."""
        if self.store is not None:
            raise StoreError("a bulk import loads an empty database once; load more without "
                             "--bulk (Bolt MERGE)")
        if self.export is None:
            self.check()
            self.export = CsvExport(self.home / "bulk-import" / "csv")
        return self._stage("export", False, self.export.add, tables)

    def finish(self, *, progress: bool = True) -> None:
        """Import every exported part into the stopped, empty database, start the server on
        it, create the uniqueness constraints and check the counts (:attr:`imported`)."""
        if self.export is None:
            return
        env = {**os.environ, **self.env}
        files = list(self.export.files.values())
        self._stage("import", progress, run_import, files, self.export.multiline, self.home,
                    self.settings.database, env)
        shutil.rmtree(self.export.folder)  # as large as the dump; the store holds it now
        self.export = None
        self._stage("start", progress, start_server, self.home, self.port, env)
        # The server it just started: wait up to 60 s for it, whatever neo4j.wait_seconds says.
        settings = dataclasses.replace(server_settings(self.settings, env), wait_seconds=60.0)
        self.store = connect(settings, batch_size=self.batch_size)
        self._stage("constraints", progress, self.store.ensure_constraints)
        self.imported = {f.name: f.rows for f in files}
        self._stage("verify", progress, self._verify, self.imported)

    def _stage(self, name: str, progress: bool, fn: Callable[..., T], *args: Any) -> T:
        """Run one stage; its seconds add up in :attr:`timings` (the export runs per part)."""
        start = time.perf_counter()
        out = fn(*args)
        seconds = self.timings.get(f"{name}_s", 0.0) + time.perf_counter() - start
        self.timings[f"{name}_s"] = round(seconds, 3)
        if progress:
            print(f"bulk: {name} done in {self.timings[f'{name}_s']:.1f}s", file=sys.stderr)
        return out

    def _verify(self, expected: dict[str, int]) -> None:
        got = self._open().counts()
        if got != expected:
            raise StoreError(f"bulk import counts differ from the tables: server {got}, "
                             f"tables {expected}")

    def _open(self) -> Neo4jStore:
        if self.store is None:
            raise StoreError("nothing imported yet: call write() first")
        return self.store

    def iter_nodes(self, label: str, *, batch_size: int = 50_000) -> Iterator[pd.DataFrame]:
        return self._open().iter_nodes(label, batch_size=batch_size)

    def iter_rels(self, rel: str, *, batch_size: int = 50_000) -> Iterator[pd.DataFrame]:
        return self._open().iter_rels(rel, batch_size=batch_size)

    def counts(self) -> dict[str, int]:
        return self._open().counts()

    def write_recommendations(self, frame: pd.DataFrame, *, progress: bool = True) -> int:
        return self._open().write_recommendations(frame, progress=progress)

    def recommendation_versions(self) -> list[str]:
        return self._open().recommendation_versions()

    def delete_recommendation_versions(self, versions: list[str]) -> int:
        return self._open().delete_recommendation_versions(versions)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
