"""kgrec.cli.main: every failure a user can cause is one ``kgrec: error:`` line and exit 1
(130 when interrupted); ``--debug`` adds the traceback."""

from __future__ import annotations

import argparse
import gzip
import logging

import pytest
from neo4j.exceptions import AuthError, ServiceUnavailable

from kgrec import cli
from kgrec.cli import error_message, main


@pytest.fixture(autouse=True)
def _no_local_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KGREC_CONFIG", raising=False)


def _ingest_missing(tmp_path) -> list[str]:
    return ["ingest", "--products", str(tmp_path / "nope.csv"), "--events",
            str(tmp_path / "nope.csv"), "--store-path", str(tmp_path / "store"), "--no-progress"]


def test_missing_input_file_is_one_line(tmp_path, capsys):
    assert main(_ingest_missing(tmp_path)) == 1
    err = capsys.readouterr().err
    assert err == f"kgrec: error: file {tmp_path / 'nope.csv'}: file does not exist\n"


def test_debug_shows_the_traceback(tmp_path, capsys):
    assert main(["--debug", *_ingest_missing(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "InputError" in err
    assert err.endswith(f"kgrec: error: file {tmp_path / 'nope.csv'}: file does not exist\n")


def test_unexpected_errors_are_one_line_too(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("bad\nthing")

    monkeypatch.setattr("kgrec.commands_config.run_show", boom)
    assert main(["config", "show"]) == 1
    err = capsys.readouterr().err
    assert err == ("kgrec: error: unexpected RuntimeError: bad thing (rerun with --debug for "
                   "the traceback)\n")


def test_interrupt_exits_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("kgrec.commands_config.run_show", interrupted)
    assert main(["config", "show"]) == 130
    assert capsys.readouterr().err == "kgrec: error: interrupted\n"


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--epochs", "many"])
    assert exit_.value.code == 2
    assert "kgrec train: error: argument --epochs: invalid int value: 'many'" in (
        capsys.readouterr().err
    )


ARGS = argparse.Namespace(config=None, set=["neo4j.uri=bolt://db.example:7999"])


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (FileNotFoundError(2, "No such file or directory", "data/x.csv"),
         "no such file or folder: data/x.csv; check the path"),
        (IsADirectoryError(21, "Is a directory", "data"), "data is a folder, a file was expected"),
        (PermissionError(13, "Permission denied", "/root/x"),
         "permission denied: /root/x; check its permissions or choose another path"),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
         "input is not valid utf-8 text (byte 0: invalid start byte); save the file as UTF-8"),
        (gzip.BadGzipFile("Not a gzipped file (b'ab')"),
         "corrupt or truncated compressed input (Not a gzipped file (b'ab')): check or "
         "download the file again"),
        (ValueError("unknown split kind 'x'"), "unknown split kind 'x'"),
        (ServiceUnavailable("refused"),
         "cannot reach Neo4j at bolt://db.example:7999: start it with "
         "`bash scripts/neo4j/server.sh start` or set neo4j.uri"),
        (AuthError("nope"),
         "Neo4j at bolt://db.example:7999 refused the credentials: set KGREC_NEO4J_PASSWORD "
         "or neo4j.password (or neo4j.password_file; the dev server keeps it in "
         ".neo4j/password)"),
    ],
)
def test_error_messages_name_problem_and_fix(exc, message):
    assert error_message(exc, ARGS) == message


def test_logging_goes_to_the_current_stderr(capsys):
    assert main(["--debug", "--set", "train.epochs=3", "config", "show"]) == 0
    err = capsys.readouterr().err
    assert "kgrec: DEBUG: kgrec.config: train.epochs = 3 (--set)" in err
    assert cli.log.level == logging.DEBUG
