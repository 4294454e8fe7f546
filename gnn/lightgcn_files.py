"""LightGCN-format split files (``train.txt``, ``test.txt``: ``user item item ...`` per
line), as the LightGCN paper's datasets (Gowalla, Yelp2018, Amazon-Book) ship them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import HeteroData

from kgrec.errors import InputError
from kgrec.gnn.split import Split
from kgrec.ids import IdMap
from kgrec.kg import schema
from kgrec.kg.snapshot import GraphSnapshot, edge_type, node_type
from kgrec.kg.tables import empty_node_table


def _read_lightgcn_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    with path.open() as fh:
        for row, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            try:
                ids = np.asarray(parts, dtype=np.int64)
            except ValueError as exc:
                raise InputError(f"not an integer id: {exc}", file=str(path), row=row,
                                 field="user/item") from exc
            if (ids < 0).any():
                raise InputError("negative id", file=str(path), row=row, field="user/item")
            users.append(np.full(len(ids) - 1, ids[0]))
            items.append(ids[1:])
    if not users:
        raise InputError("no interactions", file=str(path))
    return np.concatenate(users), np.concatenate(items)


def load_lightgcn_split(folder: str | Path) -> tuple[GraphSnapshot, Split]:
    """Read a LightGCN-format folder (``train.txt``, ``test.txt``: ``user item item ...``).

    Returns a snapshot holding every pair (as ``PURCHASED`` events without time) and the
    fixed ``"given"`` split; ids are the 0-based numbers as strings, in numeric order. The
    split has no validation pairs (the paper's protocol).
    """
    folder = Path(folder)
    for name in ("train.txt", "test.txt"):
        if not (folder / name).exists():
            raise InputError(f"missing LightGCN file {name}", file=str(folder / name))
    tr_u, tr_i = _read_lightgcn_file(folder / "train.txt")
    te_u, te_i = _read_lightgcn_file(folder / "test.txt")
    num_users = int(max(tr_u.max(), te_u.max())) + 1
    num_items = int(max(tr_i.max(), te_i.max())) + 1
    data = HeteroData()
    id_maps = {}
    for label in schema.NODE_LABELS:
        nt = node_type(label)
        n = {"user": num_users, "product": num_items}.get(nt, 0)
        id_maps[nt] = IdMap(nt, map(str, range(n)))
        data[nt].num_nodes = n
    store = data[edge_type(schema.PURCHASED)]
    store.edge_index = torch.as_tensor(np.stack([np.r_[tr_u, te_u], np.r_[tr_i, te_i]]))
    n = store.edge_index.shape[1]
    store.edge_time = torch.full((n,), -1, dtype=torch.long)
    store.edge_value = torch.ones(n)
    store.edge_weight = torch.ones(n)
    products = empty_node_table(schema.PRODUCT)
    products = pd.concat(
        [products, pd.DataFrame({schema.NODE_KEY: id_maps["product"].ids})], ignore_index=True
    ).astype(products.dtypes.to_dict())
    snapshot = GraphSnapshot(data, id_maps, products, [])

    def frame(u: np.ndarray, i: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(
            {"user": u, "product": i, "weight": 1.0, "value": 1.0, "time": np.int64(-1)}
        ).drop_duplicates(["user", "product"], ignore_index=True)

    empty = frame(np.zeros(0, np.int64), np.zeros(0, np.int64))
    split = Split(frame(tr_u, tr_i), empty, frame(te_u, te_i), num_users, num_items, "given")
    return snapshot, split
