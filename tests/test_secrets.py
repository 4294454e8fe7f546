"""The Neo4j password never leaks: not in any output of the CLI (debug logging included), not
in the files a run writes, not in the server's log or command line; the generated password
file is readable by its owner only."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from kgrec.cli import main

pytestmark = pytest.mark.neo4j


def _dump(folder: Path) -> list[str]:
    (folder / "p.csv").write_text("id,title\na,Alpha\nb,Beta\n")
    (folder / "e.csv").write_text("user,product,type,timestamp\nu1,a,view,1\nu1,b,purchase,2\n"
                                  "u2,zzz,view,3\nu2,a,bogus,4\n")
    return ["--products", str(folder / "p.csv"), "--events", str(folder / "e.csv")]


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def test_the_password_appears_in_no_output_file_or_command_line(
    neo4j_server, neo4j_store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    password = neo4j_server.password
    if not password:
        pytest.skip("the reused server runs without authentication")
    monkeypatch.chdir(tmp_path)
    for var in [v for v in os.environ if v.startswith("KGREC_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("KGREC_NEO4J_URI", neo4j_server.uri)
    monkeypatch.setenv("KGREC_NEO4J_PASSWORD", password)
    caplog.set_level(logging.DEBUG)
    source = _dump(tmp_path)
    runs = {
        "ingest": ["ingest", *source, "--store", "neo4j", "--reports-dir", "reports"],
        "debug ingest": ["--debug", "ingest", *source, "--store", "neo4j", "--reports-dir",
                         "reports"],
        "stats": ["graph", "stats", "--store", "neo4j", "--json", "stats.json",
                  "--no-progress"],
        "snapshot": ["graph", "snapshot", "snap", "--store", "neo4j", "--no-progress"],
        "config": ["config", "show"],
        "config json": ["config", "show", "--json"],
        "no server": ["--debug", "ingest", *source, "--store", "neo4j", "--set",
                      "neo4j.uri=bolt://127.0.0.1:1", "--set", "neo4j.wait_seconds=0"],
    }
    output = {}
    for name, argv in runs.items():
        code = main(argv)
        captured = capsys.readouterr()
        assert code == (1 if name == "no server" else 0), (name, captured.err)
        output[name] = f"{captured.out}\n{captured.err}"
    output["log records"] = caplog.text
    assert "neo4j.password" in output["config"] and "***" in output["config"]
    assert "does not answer" in output["no server"]
    assert len(_files(tmp_path)) >= 4  # reports, summaries, stats, snapshot
    for path in _files(tmp_path):
        assert password.encode() not in path.read_bytes(), path
    for name, text in output.items():
        assert password not in text, name
    if neo4j_server.run_dir is not None:  # the server's own logs and command line
        pw_file = neo4j_server.run_dir / "password"
        assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600
        run_dir = neo4j_server.run_dir
        for path in [*run_dir.glob("*.log"), *run_dir.glob("*.pid"), *run_dir.rglob("logs/*")]:
            assert password.encode() not in path.read_bytes(), path
        cmdline = Path(f"/proc/{neo4j_server.pid}/cmdline").read_bytes()
        assert b"Launcher" in cmdline and password.encode() not in cmdline
