"""The ingest summary says how much of the knowledge graph a product can reach, and warns
when a KG was loaded that no product links to (it could not matter to the models)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgrec.kg.extract import read_generic
from kgrec.kg.ingest import ingest, linked_share
from kgrec.kg.store.local import LocalStore


@pytest.fixture()
def dump(tmp_path: Path) -> Path:
    (tmp_path / "items.csv").write_text("item_id,title\na,Alpha\nb,Beta\n")
    (tmp_path / "events.csv").write_text("user,item_id,type\nu1,a,view\nu2,b,view\n")
    # Two KG components: Q1-Q2-Q3 and Q8-Q9.
    (tmp_path / "kg.tsv").write_text(
        "head\trelation\ttail\nQ1\tauthor\tQ2\nQ2\tgenre\tQ3\nQ8\tgenre\tQ9\n")
    (tmp_path / "links.csv").write_text("item_id,entity\na,Q1\n")
    return tmp_path


def _read(dump: Path, links: bool):
    return read_generic(dump / "items.csv", dump / "events.csv", kg=dump / "kg.tsv",
                        links=dump / "links.csv" if links else None)


def test_share_of_entities_reachable_from_a_product(dump) -> None:
    assert linked_share(_read(dump, links=True)) == (5, pytest.approx(3 / 5))
    summary = ingest(_read(dump, links=True), LocalStore(dump / "store"), dump / "rep",
                     progress=False)
    assert "Knowledge graph: 60.0% of its 5 entities are reachable from a product." in \
        summary.paragraph()
    assert "Warning" not in summary.paragraph()


def test_a_kg_no_product_links_to_is_warned_about(dump) -> None:
    summary = ingest(_read(dump, links=False), LocalStore(dump / "store"), dump / "rep",
                     progress=False)
    assert (summary.entities, summary.linked_share) == (5, 0.0)
    assert "0.0% of its 5 entities are reachable from a product. Warning: the knowledge " \
        "graph can hardly matter" in summary.paragraph()
    assert "--links" in summary.paragraph()


def test_no_kg_says_nothing(dump) -> None:
    tables = read_generic(dump / "items.csv", dump / "events.csv")
    assert linked_share(tables) == (0, None)
    assert "Knowledge graph" not in ingest(tables, LocalStore(dump / "store"), dump / "rep",
                                           progress=False).paragraph()
