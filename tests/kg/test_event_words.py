"""Event words the schema does not know: listed with counts, mappable with
``--map event.WORD=TYPE``, and an ingest that loses most of a file fails after loading
what was valid. A rating without any value column is a rejected row, not an abort."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgrec.cli import main
from kgrec.kg.store.local import LocalStore


@pytest.fixture()
def dump(tmp_path: Path) -> Path:
    (tmp_path / "items.csv").write_text("item_id,title\na,Alpha\nb,Beta\n")
    rows = ["user,item_id,type,ts"] + [f"u{i},{'ab'[i % 2]},listen,{i}" for i in range(6)]
    rows += ["u9,a,purchase,99", "u9,b,play,98"]
    (tmp_path / "events.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def _ingest(dump: Path, *extra: str) -> int:
    return main(["ingest", "--products", str(dump / "items.csv"), "--events",
                 str(dump / "events.csv"), "--map", "event.timestamp=ts", "--reports-dir",
                 str(dump / "rep"), "--store-path", str(dump / "store"), "--no-progress",
                 *extra])


def test_unknown_words_are_listed_and_a_file_that_loses_most_rows_fails(dump, capsys) -> None:
    assert _ingest(dump) == 1
    captured = capsys.readouterr()
    assert "Rejected by reason: unknown event type 7." in captured.out
    assert "Unknown event words: 'listen' (6), 'play' (1); known: add_to_cart, addtocart, " \
        "buy, cart, carted" in captured.out
    assert "--map event.WORD=TYPE" in captured.out
    error = captured.err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("kgrec: error: ")
    assert "events.csv: 7 of 8 rows rejected (88%, more than the 50% allowed by " \
        "data.max_reject_share)" in error[0]
    assert LocalStore(dump / "store").counts()["PURCHASED"] == 1  # the valid row is loaded


def test_mapped_words_load_and_a_bad_mapping_names_the_key(dump, capsys) -> None:
    assert _ingest(dump, "--map", "event.listen=view", "--map", "event.play=view") == 0
    assert LocalStore(dump / "store").counts()["VIEWED"] == 7
    assert "Unknown event words" not in capsys.readouterr().out
    assert _ingest(dump, "--map", "event.listen=stream") == 1
    err = capsys.readouterr().err
    assert "mapping 'event.listen=stream'" in err and "unknown event type 'stream'" in err


def test_ratings_without_a_value_column_are_rejected_rows(tmp_path, capsys) -> None:
    (tmp_path / "items.csv").write_text("item_id,title\na,Alpha\n")
    (tmp_path / "events.csv").write_text(
        "user,item_id,type\nu1,a,rating\nu2,a,purchase\nu3,a,purchase\n")
    code = main(["ingest", "--products", str(tmp_path / "items.csv"), "--events",
                 str(tmp_path / "events.csv"), "--reports-dir", str(tmp_path / "rep"),
                 "--store-path", str(tmp_path / "store"), "--no-progress"])
    assert code == 0
    assert "Rejected by reason: rating without a value 1." in capsys.readouterr().out
    report = next((tmp_path / "rep").glob("rejects-*.csv")).read_text()
    assert "events.csv,2,value,rating without a value,rejected" in report
    assert LocalStore(tmp_path / "store").counts()["PURCHASED"] == 2


def test_a_file_that_loses_every_row_fails_whatever_the_share(dump, capsys) -> None:
    (dump / "events.csv").write_text("user,item_id,type,ts\nu1,a,listen,1\nu2,b,listen,2\n")
    assert _ingest(dump, "--set", "data.max_reject_share=1") == 1
    assert "2 of 2 rows rejected (100%" in capsys.readouterr().err
