"""Amazon 2018 adapter on the real files in ../shared/data/amazon-2018 (counts from the files)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from kgrec.kg import schema
from kgrec.kg.extract.amazon import read_amazon
from kgrec.kg.tables import GraphTables


def _lines(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture(scope="module")
def gift(shared_data: Path) -> tuple[GraphTables, list[dict], list[dict]]:
    folder = shared_data / "amazon-2018"
    meta, reviews = folder / "meta_Gift_Cards.json.gz", folder / "Gift_Cards_5.json.gz"
    return read_amazon(meta, reviews), _lines(meta), _lines(reviews)


def test_gift_cards_counts_match_the_files(
    gift: tuple[GraphTables, list[dict], list[dict]],
) -> None:
    t, meta, reviews = gift
    assert (len(meta), len(reviews)) == (1547, 2972)
    assert sorted(t.rows_read.values()) == [len(meta), len(reviews)]
    assert len(t.node(schema.PRODUCT)) == len({m["asin"] for m in meta}) == 1547
    # The 5-core figures of the data README.
    assert len(t.node(schema.USER)) == len({r["reviewerID"] for r in reviews}) == 458
    first = reviews[0]
    users = t.node(schema.USER).set_index("id")
    assert users.loc[first["reviewerID"], "attributes"] == json.dumps(
        {"name": first["reviewerName"]}
    )
    rated = t.rel(schema.RATED)
    assert rated["dst"].nunique() == len({r["asin"] for r in reviews}) == 148
    keys = {(r["reviewerID"], r["asin"], r["unixReviewTime"]) for r in reviews}
    assert len(rated) == len(keys)
    review_rejects = t.rejects[t.rejects["file"].str.endswith("Gift_Cards_5.json.gz")]
    assert len(rated) + len(review_rejects) == len(reviews)
    assert set(review_rejects["reason"].str.extract(r"^(duplicate)", expand=False)) == {"duplicate"}
    catalogue = set(t.node(schema.PRODUCT)["id"])
    for rel, field in ((schema.ALSO_BOUGHT, "also_buy"), (schema.ALSO_VIEWED, "also_view")):
        links = t.rel(rel)
        assert set(links["dst"]) <= catalogue
        expected = {(m["asin"], x) for m in meta for x in m[field] if x in catalogue}
        assert set(zip(links["src"], links["dst"], strict=True)) == expected


def test_gift_cards_values_and_repairs(gift: tuple[GraphTables, list[dict], list[dict]]) -> None:
    t, meta, _ = gift
    products = t.node(schema.PRODUCT).set_index("id")
    line = next(i for i, m in enumerate(meta, 1) if m["title"] == " Maggiano&#39;s Gift Card")
    asin = meta[line - 1]["asin"]
    assert products.loc[asin, "title"] == "Maggiano's Gift Card"
    rep = t.rejects.set_index(["line", "field"])
    assert rep.loc[(line, "title"), "action"] == "repaired"
    priced = next(m for m in meta if m["price"] == "$25.00")
    assert products.loc[priced["asin"], "price"] == 25.0
    junk = [i for i, m in enumerate(meta, 1) if m["price"] and not m["price"].startswith("$")]
    assert len(junk) == 4
    assert all(rep.loc[(i, "price"), "reason"] == "unparsable price: set to empty" for i in junk)
    assert products.loc[[meta[i - 1]["asin"] for i in junk], "price"].isna().all()
    cats = t.node(schema.CATEGORY).set_index("id")
    assert cats.loc["Gift Cards > Gift Cards", ["name", "level"]].tolist() == ["Gift Cards", 1]
    sub = set(
        zip(t.rel(schema.SUBCATEGORY_OF)["src"], t.rel(schema.SUBCATEGORY_OF)["dst"], strict=True)
    )
    assert sub == {
        ("Gift Cards > Gift Cards", "Gift Cards"),
        ("Gift Cards > Gift Card Accessories", "Gift Cards"),
    }
    # Feature bullets after the real path were cut off and reported.
    bullets = [i for i, m in enumerate(meta, 1) if len(m["category"]) > 2]
    assert all(rep.loc[(i, "category"), "action"] == "repaired" for i in bullets)
    assert products["category_path"].dropna().str.count(">").max() == 1
    brands = t.rel(schema.HAS_BRAND).set_index("src")["dst"]
    by = next(m["asin"] for m in meta if m["brand"].startswith("by\n"))
    assert brands[by] == "Microsoft" or not brands[by].lower().startswith("by")


def test_magazine_duplicates_and_bare_products(shared_data: Path) -> None:
    folder = shared_data / "amazon-2018"
    meta_path = folder / "meta_Magazine_Subscriptions.json.gz"
    reviews_path = folder / "Magazine_Subscriptions_5.json.gz"
    meta, reviews = _lines(meta_path), _lines(reviews_path)
    t = read_amazon(meta_path, reviews_path)
    with_meta = {m["asin"] for m in meta}
    reviewed = {r["asin"] for r in reviews}
    assert (len(reviewed), len(reviewed & with_meta)) == (157, 151)
    assert len(t.node(schema.PRODUCT)) == len(with_meta | reviewed)
    assert len(t.node(schema.USER)) == len({r["reviewerID"] for r in reviews}) == 348
    rej = t.rejects
    dups = rej[rej["file"].str.endswith(meta_path.name) & (rej["field"] == "asin")]
    assert len(dups) == len(meta) - len(with_meta) == 1065
    assert dups["reason"].str.startswith("duplicate of line").all()
    bare = rej[rej["reason"] == "product has no metadata: bare Product node created"]
    assert len(bare) == sum(r["asin"] not in with_meta for r in reviews) == 64
    products = t.node(schema.PRODUCT).set_index("id")
    assert products.loc[sorted(reviewed - with_meta), "title"].isna().all()
    keys = {(r["reviewerID"], r["asin"], r["unixReviewTime"]) for r in reviews}
    assert len(t.rel(schema.RATED)) == len(keys)


def test_reject_reviews_without_metadata(shared_data: Path) -> None:
    folder = shared_data / "amazon-2018"
    t = read_amazon(
        folder / "meta_Magazine_Subscriptions.json.gz",
        folder / "Magazine_Subscriptions_5.json.gz",
        bare_products=False,
    )
    unknown = t.rejects[t.rejects["reason"] == "unknown product"]
    assert len(unknown) == 64 and (unknown["action"] == "rejected").all()
    assert t.rel(schema.RATED)["dst"].nunique() == 151
