"""Fixtures of the gnn tests: the real MovieLens-100K snapshot (built once) and tiny graphs."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest
import torch
from torch_geometric.data import HeteroData

from kgrec.gnn.split import Split, make_split
from kgrec.ids import IdMap
from kgrec.kg import schema
from kgrec.kg.snapshot import GraphSnapshot, edge_type, node_type
from kgrec.kg.tables import empty_node_table


@pytest.fixture(scope="session")
def ml100k_split(ml100k_snapshot: GraphSnapshot) -> Split:
    return make_split(ml100k_snapshot, kind="random", seed=2020)


def tiny_snapshot(events: list[tuple[int, int, int, float]], num_users: int, num_items: int,
                  rel: str = schema.RATED) -> GraphSnapshot:
    """A snapshot with users u0.., products p0.., one category c0 holding every product,
    and ``events`` (user, product, time, value) of type ``rel``."""
    data = HeteroData()
    sizes = {"user": num_users, "product": num_items, "category": 1}
    id_maps = {}
    for label in schema.NODE_LABELS:
        nt = node_type(label)
        n = sizes.get(nt, 0)
        id_maps[nt] = IdMap(nt, [f"{nt[0]}{i}" for i in range(n)])
        data[nt].num_nodes = n
    frame = pd.DataFrame(events, columns=["user", "product", "time", "value"])
    store = data[edge_type(rel)]
    store.edge_index = torch.as_tensor(frame[["user", "product"]].to_numpy().T.copy())
    store.edge_time = torch.as_tensor(frame["time"].to_numpy().copy())
    store.edge_value = torch.as_tensor(frame["value"].to_numpy("float32"))
    store.edge_weight = torch.ones(len(frame))
    data[edge_type(schema.IN_CATEGORY)].edge_index = torch.stack(
        [torch.arange(num_items), torch.zeros(num_items, dtype=torch.long)]
    )
    products = pd.concat(
        [empty_node_table(schema.PRODUCT), pd.DataFrame({"id": id_maps["product"].ids})]
    ).astype(empty_node_table(schema.PRODUCT).dtypes.to_dict()).reset_index(drop=True)
    return GraphSnapshot(data, id_maps, products, [])


def behaviour_snapshot(events: dict[str, list[tuple[int, int, int]]], num_users: int,
                       num_items: int) -> GraphSnapshot:
    """:func:`tiny_snapshot` with several behaviours: ``{rel: [(user, product, time)]}``."""
    rels = list(events)
    snapshot = tiny_snapshot([(*e, 1.0) for e in events[rels[0]]], num_users, num_items,
                             rel=rels[0])
    for rel in rels[1:]:
        frame = pd.DataFrame(events[rel], columns=["user", "product", "time"])
        store = snapshot.data[edge_type(rel)]
        store.edge_index = torch.as_tensor(frame[["user", "product"]].to_numpy().T.copy())
        store.edge_time = torch.as_tensor(frame["time"].to_numpy().copy())
        store.edge_value = torch.ones(len(frame))
        store.edge_weight = torch.ones(len(frame))
    return snapshot


def random_graph(num_users: int, num_items: int, draws: int, seed: int
                 ) -> tuple[GraphSnapshot, Split]:
    """A snapshot of ``draws`` random (user, product) events (duplicates dropped) and the
    split that trains on all of them."""
    gen = torch.Generator().manual_seed(seed)
    users, items = (torch.randint(0, m, (draws,), generator=gen).tolist()
                    for m in (num_users, num_items))
    pairs = set(zip(users, items, strict=True))
    events = [(u, i, t, 4.0) for t, (u, i) in enumerate(sorted(pairs))]
    snapshot = tiny_snapshot(events, num_users=num_users, num_items=num_items)
    frame = pd.DataFrame(events, columns=["user", "product", "time", "value"]).assign(weight=1.0)
    return snapshot, Split(frame, frame.iloc[:0], frame.iloc[:0], num_users, num_items, "given")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: on the shared 2-core machine, two spinning OpenMP threads per
    process under load run several times slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
