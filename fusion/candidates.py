"""Candidate products: which products a scoring run ranks (all, the long tail, cold-start
products or a file of product ids), chosen by their training events per product.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from kgrec.errors import InputError
from kgrec.ids import IdMap
from kgrec.kg.stats import long_tail_mask

#: Product sets ``items`` accepts by name (besides a file or a list of product ids).
ITEM_SETS = ("all", "long-tail", "cold-start")


def item_degree(edges: Tensor, num_items: int) -> Tensor:
    """Training events per item from ``[2, E]`` (user, item) edges."""
    return torch.bincount(edges[1].long(), minlength=num_items)


def select_items(
    spec: str, product_ids: IdMap, degree: Tensor, *, tail_share: float = 0.8
) -> Tensor:
    """Candidate product indices for ``--items``.

    Args:
        spec: ``"long-tail"`` (the least popular products holding ``1 - tail_share`` of the
            training events ... i.e. everything outside the head that makes up ``tail_share``
            of events, cold products included), ``"cold-start"`` (no training events),
            ``"all"``, or a path to a file of product ids (one per line, or a CSV/Parquet with
            a ``product_id`` or ``id`` column).
        product_ids: Product id map.
        degree: ``[N]`` training events per product.
        tail_share: Share of training events held by the head (0.8: Pareto's 80/20).
    """
    if spec == "all":
        return torch.arange(len(product_ids))
    if spec == "cold-start":
        return torch.nonzero(degree == 0).flatten()
    if spec == "long-tail":
        return long_tail(degree, tail_share)
    return _items_from_file(Path(spec), product_ids)


def long_tail(degree: Tensor, head_share: float = 0.8) -> Tensor:
    """Indices of the long-tail products (see :func:`kgrec.kg.stats.long_tail_mask`)."""
    return torch.from_numpy(np.flatnonzero(long_tail_mask(degree.cpu().numpy(), head_share)))


def _items_from_file(path: Path, product_ids: IdMap) -> Tensor:
    if not path.is_file():
        raise InputError(
            "not 'long-tail', 'cold-start', 'all' nor an existing file of product ids",
            file=str(path), field="--items",
        )
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix == ".csv":
        frame = pd.read_csv(path, dtype=str)
    else:
        lines = [x.strip() for x in path.read_text().splitlines()]
        frame = pd.DataFrame({"product_id": [x for x in lines if x]})
    column = next((c for c in ("product_id", "id") if c in frame), None)
    if column is None:
        raise InputError("needs a 'product_id' or 'id' column", file=str(path), field="product_id")
    ids = frame[column].astype(str).tolist()
    known = [i in product_ids for i in ids]
    if not all(known):
        row = known.index(False)
        raise InputError(
            f"unknown product id {ids[row]!r}", file=str(path), row=row + 1, field=column
        )
    return torch.as_tensor(product_ids.index_of(ids), dtype=torch.long).unique()
