"""ingest(): summary figures, rejects report, idempotent re-runs, incremental loads, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from kgrec.kg import schema
from kgrec.kg.extract.amazon import read_amazon
from kgrec.kg.extract.stream import read_generic
from kgrec.kg.ingest import ingest
from kgrec.kg.store.local import LocalStore
from kgrec.kg.tables import GraphTables


@pytest.fixture(scope="module")
def gift_tables(shared_data: Path) -> GraphTables:
    folder = shared_data / "amazon-2018"
    return read_amazon(folder / "meta_Gift_Cards.json.gz", folder / "Gift_Cards_5.json.gz")


def test_ingest_summary_and_rejects_report(tmp_path: Path, gift_tables: GraphTables) -> None:
    store = LocalStore(tmp_path / "store")
    summary = ingest(gift_tables, store, tmp_path / "reports", progress=False)
    actions = gift_tables.rejects["action"].value_counts()
    assert summary.rows_read == 1547 + 2972
    assert summary.loaded == sum(gift_tables.counts().values())
    assert (summary.repaired, summary.rejected) == (actions["repaired"], actions["rejected"])
    assert summary.rejected == 3  # three duplicate reviews
    assert summary.created == gift_tables.counts()
    assert summary.store_counts == store.counts()
    assert summary.store_counts[schema.RATED] == 2969
    report = pd.read_csv(summary.rejects_path, keep_default_na=False)
    assert len(report) == len(gift_tables.rejects)
    assert list(report.columns) == ["file", "line", "field", "reason", "action", "value"]
    assert report["line"].tolist() == gift_tables.rejects["line"].tolist()
    text = summary.paragraph()
    assert "read 4,519 source rows" in text and "3 rejected" in text
    assert str(summary.rejects_path) in text
    saved = json.loads(summary.summary_path.read_text())
    assert saved["created"] == summary.created and saved["rejected"] == 3

    again = ingest(gift_tables, store, tmp_path / "reports", progress=False)
    assert sum(again.created.values()) == 0
    assert again.store_counts == summary.store_counts
    assert "Newly created: 0 (nothing)" in again.paragraph()


def test_incremental_events_append(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("id,title\na,A\nb,B\n")
    (tmp_path / "e1.csv").write_text("user,product,type,timestamp\nu1,a,view,1\nu1,b,purchase,2\n")
    (tmp_path / "e2.csv").write_text("user,product,type,timestamp\nu1,b,purchase,2\nu2,a,cart,3\n")
    store = LocalStore(tmp_path / "s")
    first = ingest(
        read_generic(tmp_path / "p.csv", tmp_path / "e1.csv"), store, tmp_path, progress=False
    )
    assert first.created == {"Product": 2, "User": 1, "PURCHASED": 1, "VIEWED": 1}
    second = ingest(
        read_generic(tmp_path / "p.csv", tmp_path / "e2.csv"), store, tmp_path, progress=False
    )
    assert second.created == {"Product": 0, "User": 1, "CARTED": 1, "PURCHASED": 0}
    assert store.counts() == {"User": 2, "Product": 2, "VIEWED": 1, "CARTED": 1, "PURCHASED": 1}
    assert second.rejects_path is None  # nothing to report


def test_resume_after_interrupted_ingest(
    tmp_path: Path, gift_tables: GraphTables, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = LocalStore(tmp_path / "clean")
    ingest(gift_tables, clean, tmp_path / "r", progress=False)
    store = LocalStore(tmp_path / "crash")
    real_save, saved = LocalStore._save, []

    def crash_after_four(self: LocalStore, name: str, frame: pd.DataFrame) -> None:
        if len(saved) == 4:
            raise KeyboardInterrupt("simulated crash")
        saved.append(name)
        real_save(self, name, frame)

    monkeypatch.setattr(LocalStore, "_save", crash_after_four)
    with pytest.raises(KeyboardInterrupt):
        ingest(gift_tables, store, tmp_path / "r", progress=False)
    assert set(store.counts()) == set(saved) and len(saved) == 4
    monkeypatch.setattr(LocalStore, "_save", real_save)
    resumed = ingest(gift_tables, store, tmp_path / "r", progress=False)
    assert all(resumed.created[name] == 0 for name in saved)
    assert sum(resumed.created.values()) == sum(gift_tables.counts().values()) - sum(
        gift_tables.counts()[name] for name in saved
    )
    assert store.counts() == clean.counts()
    for rel in (schema.RATED, schema.ALSO_BOUGHT):
        assert pd.concat(store.iter_rels(rel)).equals(pd.concat(clean.iter_rels(rel)))
