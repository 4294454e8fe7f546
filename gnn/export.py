"""Export a split and its knowledge graph as a RecBole ``benchmark_filename`` dataset.

:func:`export_recbole_dataset` writes, into ``out_dir``:

- ``NAME.train.inter``, ``NAME.valid.inter``, ``NAME.test.inter``: the exact split
  (``user_id:token item_id:token rating:float timestamp:float``, the external ids as
  tokens; the same files as :func:`export_recbole`, which writes the split alone), to be
  read with ``benchmark_filename: [train, valid, test]``;
- ``NAME.kg``: ``head_id:token relation_id:token tail_id:token``, one row per
  non-interaction edge of the snapshot (``in_category``, ``subcategory_of``,
  ``has_brand``, ``also_bought``, ``also_viewed``, ``linked_to`` and the ``related``
  knowledge-graph edges, which keep their own relation name), in the snapshot's edge
  direction, duplicates dropped;
- ``NAME.link``: ``item_id:token entity_id:token`` for every product.

Entity tokens: a product linked (``LINKED_TO``) to exactly one entity that no other product
links to *is* that entity (its raw id; so MovieLens-100K's exported graph is RecBole's
original ``ml-100k.kg`` plus the genre edges, with the original ``.link``); every other
product is ``p:<id>`` (and keeps its links as ``linked_to`` triples). Other tokens:
``c:<id>`` categories, ``b:<id>`` brands, the raw id for knowledge-graph entities.

RecBole's knowledge-aware datasets drop the interactions of every item whose entity occurs
in no triple (``KnowledgeBasedDataset._filter_link``), which would silently change the
split. A product without any non-interaction edge therefore gets one ``(token, "self",
token)`` triple; :class:`RecBoleExport` counts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kgrec.errors import UsageError
from kgrec.gnn.split import STAGES, Split
from kgrec.kg import schema
from kgrec.kg.snapshot import GraphSnapshot, edge_type

KG_COLUMNS = ["head_id:token", "relation_id:token", "tail_id:token"]
LINK_COLUMNS = ["item_id:token", "entity_id:token"]
#: Relation of the triple given to products that would otherwise be absent from the graph.
SELF_RELATION = "self"
#: Token prefix per node type (knowledge-graph entities keep their raw ids).
PREFIX = {"product": "p:", "category": "c:", "brand": "b:", "entity": ""}
#: Strings that pandas (and so RecBole) reads as missing values: never valid as a token.
NA_STRINGS = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})  # fmt: skip


@dataclass
class RecBoleExport:
    """What :func:`export_recbole_dataset` wrote.

    Args:
        paths: ``{"train", "valid", "test", "kg", "link"}`` -> file.
        triples: rows of ``NAME.kg``; ``relations``: triples per relation name.
        linked_products: products whose entity is a knowledge-graph entity (raw id).
        self_loops: products that got the ``self`` triple (no other edge).
    """

    paths: dict[str, Path]
    triples: int
    relations: dict[str, int] = field(default_factory=dict)
    linked_products: int = 0
    self_loops: int = 0

    def summary(self) -> dict[str, object]:
        return {"triples": self.triples, "relations": len(self.relations),
                "triples_per_relation": self.relations,
                "linked_products": self.linked_products, "self_loops": self.self_loops}


def _check_tokens(tokens: np.ndarray, what: str) -> None:
    bad = [t for t in tokens if t in NA_STRINGS or "\t" in t or "\n" in t or "\r" in t]
    if bad:
        raise UsageError(
            f"{what} token {bad[0]!r} cannot be written to a RecBole atomic file "
            "(read back as a missing value, or it holds a tab or newline)"
        )


def product_entities(snapshot: GraphSnapshot) -> tuple[np.ndarray, np.ndarray]:
    """Entity token of every product row, and the mask of products that are their entity.

    A product is its linked entity when it links to exactly one entity and no other product
    links to that entity (RecBole's ``.link`` is one-to-one); otherwise it is ``p:<id>``.
    """
    ids = np.asarray(snapshot.id_maps["product"].ids, dtype=object)
    tokens = np.asarray([PREFIX["product"] + i for i in ids], dtype=object)
    linked = np.zeros(len(ids), dtype=bool)
    et = edge_type(schema.LINKED_TO)
    if et in snapshot.data.edge_types:
        src, dst = snapshot.data[et].edge_index.numpy()
        per_product = np.bincount(src, minlength=len(ids))
        per_entity = np.bincount(dst, minlength=len(snapshot.id_maps["entity"]))
        one = (per_product[src] == 1) & (per_entity[dst] == 1)
        entity_ids = np.asarray(snapshot.id_maps["entity"].ids, dtype=object)
        tokens[src[one]] = entity_ids[dst[one]]
        linked[src[one]] = True
    return tokens, linked


def knowledge_triples(snapshot: GraphSnapshot) -> tuple[pd.DataFrame, np.ndarray, int]:
    """``(head, relation, tail)`` tokens of every non-interaction edge, the product entity
    tokens, and the number of linked products (see :func:`product_entities`)."""
    product_tokens, linked = product_entities(snapshot)
    tokens: dict[str, np.ndarray] = {"product": product_tokens}
    for nt in ("category", "brand", "entity"):
        ids = snapshot.id_maps[nt].ids if nt in snapshot.id_maps else []
        tokens[nt] = np.asarray([PREFIX[nt] + i for i in ids], dtype=object)
    _check_tokens(np.concatenate(list(tokens.values())), "node")
    entity_set = set(tokens["entity"])
    clash = entity_set & (set(tokens["category"]) | set(tokens["brand"])
                          | set(product_tokens[~linked]))
    if clash:
        raise UsageError(f"knowledge-graph entity id {sorted(clash)[0]!r} collides with the "
                         "token of a product, category or brand")
    interactions = {edge_type(rel) for rel in schema.INTERACTIONS}
    linked_to = edge_type(schema.LINKED_TO)
    frames = []
    for et in snapshot.data.edge_types:
        if et in interactions:
            continue
        src_t, rel, dst_t = et
        src, dst = snapshot.data[et].edge_index.numpy()
        if et == linked_to:  # a product that is its entity needs no triple
            keep = ~linked[src]
            src, dst = src[keep], dst[keep]
        if "edge_relation" in snapshot.data[et]:
            codes = snapshot.data[et].edge_relation.numpy()
            relation = np.asarray(snapshot.relations, dtype=object)[codes]
        else:
            relation = np.full(len(src), rel, dtype=object)
        frames.append(pd.DataFrame({"head": tokens[src_t][src], "relation": relation,
                                    "tail": tokens[dst_t][dst]}))
    triples = (pd.concat(frames, ignore_index=True) if frames
               else pd.DataFrame({"head": [], "relation": [], "tail": []}, dtype=object))
    _check_tokens(triples["relation"].to_numpy(), "relation")
    return triples.drop_duplicates(ignore_index=True), product_tokens, int(linked.sum())


def export_recbole(
    split: Split, snapshot: GraphSnapshot, out_dir: str | Path, name: str
) -> list[Path]:
    """Write the exact split as RecBole atomic files ``name.{train,valid,test}.inter``.

    Users and items are written as their external ids (tokens), ``rating`` is the raw event
    value and ``timestamp`` the event time (-1 when unknown). Returns the written paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    users, items = snapshot.id_maps["user"], snapshot.id_maps["product"]
    paths = []
    for stage in STAGES:
        frame = split.frame(stage)
        table = pd.DataFrame(
            {
                "user_id:token": users.ids_of(frame["user"].to_numpy()),
                "item_id:token": items.ids_of(frame["product"].to_numpy()),
                "rating:float": frame["value"].to_numpy("float64"),
                "timestamp:float": frame["time"].to_numpy("float64"),
            }
        )
        path = out / f"{name}.{stage}.inter"
        table.to_csv(path, sep="\t", index=False)
        paths.append(path)
    return paths


def export_recbole_dataset(
    split: Split, snapshot: GraphSnapshot, out_dir: str | Path, name: str
) -> RecBoleExport:
    """Write ``split`` and the snapshot's knowledge graph as RecBole atomic files.

    Args:
        split: the split to export (rows index ``snapshot.id_maps``).
        snapshot: the graph the split was made from.
        out_dir: folder to write into (created); RecBole's ``data_path`` is its parent
            when the folder is named ``name``.
        name: dataset name, the stem of every file.

    Returns:
        :class:`RecBoleExport` with the paths and counts.
    """
    _check_tokens(np.asarray(snapshot.id_maps["user"].ids, dtype=object), "user")
    _check_tokens(np.asarray(snapshot.id_maps["product"].ids, dtype=object), "product")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    inter_paths = export_recbole(split, snapshot, out, name)
    triples, entity_tokens, linked = knowledge_triples(snapshot)
    in_graph = set(triples["head"]) | set(triples["tail"])
    isolated = np.asarray([t not in in_graph for t in entity_tokens], dtype=bool)
    if isolated.any():
        lone = entity_tokens[isolated]
        triples = pd.concat(
            [triples, pd.DataFrame({"head": lone, "relation": SELF_RELATION, "tail": lone})],
            ignore_index=True,
        )
    kg_path, link_path = out / f"{name}.kg", out / f"{name}.link"
    triples.set_axis(KG_COLUMNS, axis=1).to_csv(kg_path, sep="\t", index=False)
    pd.DataFrame(
        {LINK_COLUMNS[0]: snapshot.id_maps["product"].ids, LINK_COLUMNS[1]: entity_tokens}
    ).to_csv(link_path, sep="\t", index=False)
    paths = dict(zip(("train", "valid", "test"), inter_paths, strict=True))
    paths.update(kg=kg_path, link=link_path)
    counts = triples["relation"].value_counts()
    return RecBoleExport(
        paths=paths, triples=len(triples),
        relations={str(r): int(n) for r, n in counts.sort_index().items()},
        linked_products=linked, self_loops=int(isolated.sum()),
    )
