"""The per-behaviour list reader (one ``user<TAB>item item ...`` file per behaviour)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgrec.errors import InputError
from kgrec.kg import schema
from kgrec.kg.extract.lists import behaviour_files, held_out_pairs, read_lists
from kgrec.kg.extract.sources import read_source
from kgrec.kg.ingest import ingest
from kgrec.kg.snapshot import build_snapshot
from kgrec.kg.store.local import LocalStore
from kgrec.settings import SourceSpec


def write_lists(folder: Path) -> Path:
    """3 users x 5 items: 7 views (one more line without items, one duplicate), 3 carts, 4
    purchases."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "view_train.txt").write_text("0\t0\t1\t2\n1\t2\t3\t3\n2\n2\t4\t0\n")
    (folder / "cart_train.txt").write_text("0\t1\n1\t3\t2\n")
    (folder / "buy_train.txt").write_text("0\t1\t0\n1\t3\n2\t4\n")
    (folder / "buy_test.txt").write_text("0\t2\n1\t4\n2\t0\n")
    (folder / "notes.txt").write_text("not a behaviour file\n")
    return folder


def test_each_file_is_one_behaviour_and_bad_lines_are_reported(tmp_path: Path) -> None:
    folder = write_lists(tmp_path / "tmall")
    assert {p.name: rel for p, rel in behaviour_files(folder).items()} == {
        "buy_train.txt": "PURCHASED", "cart_train.txt": "CARTED", "view_train.txt": "VIEWED"}
    tables = read_lists(folder)
    assert {rel: len(t) for rel, t in tables.rels.items()} == {
        "VIEWED": 7, "CARTED": 3, "PURCHASED": 4}
    assert sorted(tables.rels["CARTED"][["src", "dst"]].itertuples(index=False)) == [
        ("0", "1"), ("1", "2"), ("1", "3")]
    assert len(tables.nodes["User"]) == 3 and len(tables.nodes["Product"]) == 5
    rejects = tables.rejects.set_index("line")
    view = str(folder / "view_train.txt")
    assert set(tables.rejects["file"]) == {view}
    assert "duplicate" in rejects.loc[2, "reason"]  # item 3 twice on user 1's line
    assert rejects.loc[3, "field"] == "product"  # user 2's line without items
    assert tables.records_read[view] == 9 and tables.rows_read[view] == 4


def test_mapping_names_the_files_and_held_out_pairs_are_read(tmp_path: Path) -> None:
    folder = write_lists(tmp_path / "tmall")
    (folder / "clicks.txt").write_text("0\t3\n")
    tables = read_lists(folder, ["clicks.txt=view", "buy_train.txt=purchase"])
    assert {rel: len(t) for rel, t in tables.rels.items()} == {"VIEWED": 1, "PURCHASED": 4}
    held = held_out_pairs(folder, schema.PURCHASED)
    assert held.values.tolist() == [["0", "2"], ["1", "4"], ["2", "0"]]
    with pytest.raises(InputError, match="held-out file of CARTED"):
        held_out_pairs(folder, schema.CARTED)
    with pytest.raises(InputError, match="expected file=behaviour"):
        read_lists(folder, ["clicks.txt"])
    with pytest.raises(InputError, match="unknown event type 'wish'"):
        read_lists(folder, ["clicks.txt=wish"])


def test_typed_events_keep_their_counts_in_the_embedded_store(tmp_path: Path) -> None:
    folder = write_lists(tmp_path / "tmall")
    tables = read_source(SourceSpec(kind="lists", path=str(folder)), cache_dir=str(tmp_path))
    store = LocalStore(tmp_path / "store")
    summary = ingest(tables, store, tmp_path / "reports", progress=False)
    assert (summary.loaded, summary.rejected) == (3 + 5 + 14, 2)
    counts = store.counts()
    assert (counts["VIEWED"], counts["CARTED"], counts["PURCHASED"]) == (7, 3, 4)
    events = build_snapshot(store, progress=False).interactions()
    assert events["rel"].value_counts().to_dict() == {"VIEWED": 7, "PURCHASED": 4, "CARTED": 3}


@pytest.mark.neo4j
def test_typed_events_keep_their_counts_in_neo4j(tmp_path: Path, neo4j_store) -> None:
    tables = read_lists(write_lists(tmp_path / "tmall"))
    neo4j_store.write(tables, progress=False)
    counts = neo4j_store.counts()
    assert (counts["VIEWED"], counts["CARTED"], counts["PURCHASED"]) == (7, 3, 4)
    events = build_snapshot(neo4j_store, progress=False).interactions()
    assert events["rel"].value_counts().to_dict() == {"VIEWED": 7, "PURCHASED": 4, "CARTED": 3}


def test_kgrec_ingest_reads_a_lists_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    from kgrec.cli import main

    folder = write_lists(tmp_path / "tmall")
    store = ["--store", "local", "--store-path", str(tmp_path / "store")]
    code = main(["ingest", "--lists", str(folder), "--behaviour", "view_train.txt=view",
                 "--behaviour", "buy_train.txt=buy", "--reports-dir", str(tmp_path / "rep"),
                 "--no-progress", *store])
    assert code == 0
    counts = LocalStore(tmp_path / "store").counts()
    assert (counts["VIEWED"], counts.get("CARTED", 0), counts["PURCHASED"]) == (7, 0, 4)
    assert "2 rejected" in capsys.readouterr().out
