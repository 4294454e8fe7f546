"""kgrec ingest / graph stats / graph snapshot through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kgrec.cli import main
from kgrec.kg.snapshot import GraphSnapshot


def test_ingest_stats_snapshot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "items.csv").write_text("item_id,title,price\na,Alpha,$2.00\nb,Beta,\nc,Gamma,x\n")
    (tmp_path / "ev.jsonl").write_text(
        '{"uid": "u1", "item_id": "a", "event": "purchase", "ts": 10}\n'
        '{"uid": "u2", "item_id": "a", "event": "view", "ts": 11}\n'
        '{"uid": "u2", "item_id": "zzz", "event": "view", "ts": 12}\n'
    )
    store = ["--store", "local", "--store-path", str(tmp_path / "store")]
    code = main(
        [
            "ingest",
            "--products",
            str(tmp_path / "items.csv"),
            "--events",
            str(tmp_path / "ev.jsonl"),
            "--map",
            "event.user=uid",
            "--map",
            "event.timestamp=ts",
            "--reports-dir",
            str(tmp_path / "rep"),
            "--no-progress",
            *store,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "read 6 source rows, loaded 7 nodes/relationships (1 rows repaired, 1 rejected" in out
    report = next((tmp_path / "rep").glob("rejects-*.csv")).read_text().splitlines()
    assert len(report) == 3 and "unknown product" in report[2] and "ev.jsonl,3," in report[2]

    code = main(["graph", "stats", "--json", str(tmp_path / "s.json"), "--no-progress", *store])
    assert code == 0
    figures = json.loads((tmp_path / "s.json").read_text())
    assert figures["counts"] == {"User": 2, "Product": 3, "VIEWED": 1, "PURCHASED": 1}
    assert (figures["never_interacted"], figures["head_products"]) == (2, 1)
    assert "User" in capsys.readouterr().out

    # An events-only dump appends to the products already stored.
    (tmp_path / "more.csv").write_text("uid,item_id,event,ts\nu3,c,cart,20\nu3,nope,cart,21\n")
    code = main(
        [
            "ingest",
            "--events",
            str(tmp_path / "more.csv"),
            "--map",
            "event.user=uid",
            "--map",
            "event.timestamp=ts",
            "--reports-dir",
            str(tmp_path / "rep"),
            "--no-progress",
            *store,
        ]
    )
    assert code == 0
    assert "Newly created: 2 (1 User, 1 CARTED)" in capsys.readouterr().out

    assert main(["graph", "snapshot", str(tmp_path / "snap"), "--no-progress", *store]) == 0
    snap = GraphSnapshot.load(tmp_path / "snap")
    assert snap.id_maps["product"].ids == ["a", "b", "c"]
    assert snap.products["price"].tolist()[0] == 2.0


def test_bad_source_options_fail_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", "--store-path", str(tmp_path)]) == 1
    assert "give exactly one source" in capsys.readouterr().err
    assert (
        main(
            [
                "ingest",
                "--products",
                str(tmp_path / "nope.csv"),
                "--events",
                "x.csv",
                "--store-path",
                str(tmp_path),
            ]
        )
        == 1
    )
    assert "does not exist" in capsys.readouterr().err
