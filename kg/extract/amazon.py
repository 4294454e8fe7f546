"""Amazon Review Data (2018) -> GraphTables: ``meta_*.json.gz`` + ``*_5.json.gz`` reviews.

Metadata rows become ``Product`` nodes: ``title`` (HTML removed, reported as repaired),
``description`` and ``feature`` lists joined, ``brand`` -> ``Brand`` + ``HAS_BRAND`` ("by X"
cleaned), ``price`` "$25.00" -> 25.0 (unparsable -> empty, reported), ``category`` path ->
``Category`` nodes (id = the path so far joined by " > ", so ``["Gift Cards", "Gift Cards"]``
is a child of its namesake, not a self-loop) with ``SUBCATEGORY_OF`` and ``IN_CATEGORY`` to
the leaf. Amazon paths often continue with feature bullets or HTML after the real
categories: the path is cut at the first such element (reported). ``also_buy`` /
``also_view`` -> ``ALSO_BOUGHT`` / ``ALSO_VIEWED`` to products in the catalogue; targets
outside it are dropped and reported per source row. Other fields (``main_cat``, ``rank``,
``date``, ``details``, ``tech1/2``, ``fit``) go to ``attributes`` JSON; image URLs and the
``similar_item`` HTML table are not kept.

Reviews become ``RATED`` (value = ``overall``, timestamp = ``unixReviewTime``). A review
of a product without metadata creates a bare ``Product`` (id only) and is reported as
repaired: the interaction is real and the 5-core files are built from such reviews
(Magazine Subscriptions: 157 reviewed products, 151 with metadata), so dropping them would
lose real signal. Pass ``bare_products=False`` to reject those reviews instead.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kgrec.kg import schema
from kgrec.kg.extract import build
from kgrec.kg.extract import validate as v
from kgrec.kg.extract.generic import event_tables, merge_users, product_tables
from kgrec.kg.extract.io import read_records
from kgrec.kg.extract.mapping import DEFAULT_OPTIONS
from kgrec.kg.tables import GraphTables

PRODUCT_COLUMNS = {
    "id": "asin",
    "title": "title",
    "description": "description",
    "features": "feature",
    "brand": "brand",
    "category": "category",
    "price": "price",
}
REVIEW_COLUMNS = {
    "user": "reviewerID",
    "product": "asin",
    "timestamp": "unixReviewTime",
    "value": "overall",
}
#: Metadata fields not kept (image URLs, an HTML comparison table, the also_* lists that
#: become relationships).
DROPPED_FIELDS = ("image", "imageURL", "imageURLHighRes", "similar_item", "also_buy", "also_view")
LINKS = {"also_buy": schema.ALSO_BOUGHT, "also_view": schema.ALSO_VIEWED}


def read_amazon(
    meta: str | Path, reviews: str | Path | None = None, *, bare_products: bool = True
) -> GraphTables:
    """Read an Amazon 2018 category: metadata and (optionally) its reviews.

    Args:
        meta: ``meta_<Category>.json.gz`` (JSON lines, gzipped or not).
        reviews: ``<Category>_5.json.gz`` or the full reviews file.
        bare_products: reviews of products without metadata create bare Product nodes
            (reported as repaired); False rejects those reviews.
    """
    rejects = v.Rejects()
    read: dict[str, int] = {}
    frame, n = read_records(meta, rejects)
    read[str(meta)] = n
    frame = _ensure(frame, [*PRODUCT_COLUMNS.values(), *LINKS])
    kept = frame.drop(columns=[c for c in DROPPED_FIELDS if c in frame.columns and c not in LINKS])
    paths = kept["category"].map(lambda p: [str(x) for x in p] if isinstance(p, list) else [])
    parts = product_tables(
        kept.drop(columns=list(LINKS)),
        PRODUCT_COLUMNS,
        str(meta),
        rejects,
        DEFAULT_OPTIONS,
        paths=paths,
    )
    products = parts[schema.PRODUCT]
    catalogue = pd.Index(products["id"])
    # Only rows that became products carry links (duplicates and rejects do not).
    linked = frame.assign(asin=v.id_text(frame["asin"]))
    linked = linked[linked[v.LINE].isin(_lines_of(products, frame))]
    for field, rel in LINKS.items():
        parts[rel] = _links(linked, field, catalogue, str(meta), rejects)
    users = None
    if reviews is not None:
        events, n = read_records(reviews, rejects)
        read[str(reviews)] = n
        events = _ensure(events, list(REVIEW_COLUMNS.values()))
        rels, bare = event_tables(
            events,
            REVIEW_COLUMNS,
            str(reviews),
            rejects,
            catalogue,
            {**DEFAULT_OPTIONS, "event_type": "rating"},
            bare_products=bare_products,
        )
        parts.update(rels)
        if len(bare):
            parts[schema.PRODUCT] = pd.concat([products, pd.DataFrame({"id": bare})])
        users = _reviewers(events)
    parts[schema.USER] = merge_users(users, parts)
    return build.assemble(parts, rejects, read)


def _ensure(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Add absent columns as empty (a dump without e.g. ``also_view`` is still valid)."""
    missing = {c: [None] * len(frame) for c in columns if c not in frame.columns}
    return frame.assign(**missing) if missing else frame


def _lines_of(products: pd.DataFrame, frame: pd.DataFrame) -> pd.Index:
    """Source lines of the rows kept as products (first occurrence of each asin)."""
    asin = v.id_text(frame["asin"])
    first = frame.assign(asin=asin).drop_duplicates("asin", keep="first")
    return pd.Index(first.loc[first["asin"].isin(products["id"]), v.LINE])


def _links(
    frame: pd.DataFrame, field: str, catalogue: pd.Index, file: str, rejects: v.Rejects
) -> pd.DataFrame:
    """Product -> product links of one list field; targets outside the catalogue (or the
    product itself) are dropped and reported once per source row."""
    rows = []
    for asin, targets, line in zip(frame["asin"], frame[field], frame[v.LINE], strict=True):
        targets = [str(t) for t in targets] if isinstance(targets, list) else []
        inside = [t for t in dict.fromkeys(targets) if t in catalogue and t != asin]
        outside = [t for t in dict.fromkeys(targets) if t not in inside]
        if outside:
            rejects.add(
                file,
                int(line),
                field,
                f"{len(outside)} of {len(set(targets))} linked product(s) not in the "
                "catalogue: dropped",
                v.REPAIRED,
                " ".join(outside),
            )
        rows += [(asin, t) for t in inside]
    return pd.DataFrame(rows, columns=["src", "dst"])


def _reviewers(events: pd.DataFrame) -> pd.DataFrame:
    """User nodes with the first non-empty reviewer name as attributes."""
    ids = v.id_text(events["reviewerID"])
    names = events.get("reviewerName", pd.Series(pd.NA, index=events.index)).astype("string")
    frame = pd.DataFrame({"id": ids, "name": names.str.strip().replace("", pd.NA)})
    named = frame.dropna().drop_duplicates("id")  # first non-empty name in file order
    users = pd.DataFrame({"id": ids.dropna().unique()}).merge(named, on="id", how="left")
    return pd.DataFrame({"id": users["id"], "attributes": build.attributes_json(users, ["name"])})
