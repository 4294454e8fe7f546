"""The leak-free training graph and its flattened forms for message passing.

Built from ``split.train`` only (:class:`kgrec.gnn.split.Split`), so validation and test
pairs never reach propagation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch_geometric.data import HeteroData

from kgrec.gnn.split import Split
from kgrec.kg import schema
from kgrec.kg.snapshot import GraphSnapshot, edge_type

#: Edge type of the (training) user->product interactions in :func:`training_graph`.
INTERACTS = ("user", "interacts", "product")


def training_graph(snapshot: GraphSnapshot, split: Split) -> HeteroData:
    """The message-passing graph: training interactions plus every non-interaction edge.

    Holds ``INTERACTS`` (user -> product, ``edge_weight`` = loss weight) built from
    ``split.train`` only, so validation and test pairs can never leak into propagation,
    and the snapshot's category / brand / also-bought / knowledge-graph edges unchanged
    (``('entity', 'related', 'entity')`` keeps ``edge_relation``). No reverse edges: the
    encoders add them (see :func:`homogeneous_graph`).
    """
    graph = HeteroData()
    for nt, ids in snapshot.id_maps.items():
        graph[nt].num_nodes = len(ids)
    graph[INTERACTS].edge_index = split.pairs("train")
    graph[INTERACTS].edge_weight = torch.as_tensor(split.train["weight"].to_numpy("float32"))
    interaction_types = {edge_type(rel) for rel in schema.INTERACTIONS}
    for et in snapshot.data.edge_types:
        if et in interaction_types:
            continue
        graph[et].edge_index = snapshot.data[et].edge_index
        if "edge_relation" in snapshot.data[et]:
            graph[et].edge_relation = snapshot.data[et].edge_relation
    return graph


@dataclass
class HomogeneousGraph:
    """A heterogeneous graph flattened to one node space, both edge directions included.

    Args:
        edge_index: ``[2, E]`` in the global node space.
        edge_type: ``[E]`` relation id (reverse directions and KG relations get their own).
        node_type: ``[N]`` node type id, indexing ``node_types``.
        offsets: first global row of each node type.
        node_types, edge_types: names of the ids.
    """

    edge_index: torch.Tensor
    edge_type: torch.Tensor
    node_type: torch.Tensor
    offsets: dict[str, int]
    node_types: list[str]
    edge_types: list[str]

    @property
    def num_nodes(self) -> int:
        return int(self.node_type.numel())


def node_order(node_types: list[str]) -> list[str]:
    """The node types in the order of the flattened node space: users, products, the rest
    sorted by name."""
    return ["user", "product", *sorted(nt for nt in node_types if nt not in ("user", "product"))]


def homogeneous_graph(graph: HeteroData, relations: list[str] | None = None) -> HomogeneousGraph:
    """Flatten ``graph`` (from :func:`training_graph`) with users first, then products.

    Each edge type contributes both directions with distinct relation ids; ``RELATED``
    edges are further typed by their knowledge-graph relation (``relations`` names them).
    """
    order = node_order(graph.node_types)
    offsets, start, types = {}, 0, []
    for i, nt in enumerate(order):
        offsets[nt] = start
        n = int(graph[nt].num_nodes or 0)
        types.append(torch.full((n,), i, dtype=torch.long))
        start += n
    indices: list[torch.Tensor] = []
    rel_ids: list[torch.Tensor] = []
    names: list[str] = []
    for et in graph.edge_types:
        src, rel, dst = et
        ei = graph[et].edge_index
        glob = torch.stack([ei[0] + offsets[src], ei[1] + offsets[dst]])
        if "edge_relation" in graph[et]:
            codes = graph[et].edge_relation
            n_rel = int(codes.max()) + 1 if codes.numel() else 0
            labels = relations or [str(r) for r in range(n_rel)]
            local = [f"{rel}:{labels[r]}" for r in range(n_rel)]
        else:
            codes = torch.zeros(ei.shape[1], dtype=torch.long)
            local = [rel]
        base = len(names)
        names += local + [f"rev_{name}" for name in local]
        indices += [glob, glob.flip(0)]
        rel_ids += [codes + base, codes + base + len(local)]
    return HomogeneousGraph(
        edge_index=torch.cat(indices, 1) if indices else torch.zeros(2, 0, dtype=torch.long),
        edge_type=torch.cat(rel_ids) if rel_ids else torch.zeros(0, dtype=torch.long),
        node_type=torch.cat(types),
        offsets=offsets,
        node_types=order,
        edge_types=names,
    )


def normalized_adjacency(
    edge_index: torch.Tensor, num_nodes: int, edge_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Symmetrically normalised adjacency ``D^-1/2 A D^-1/2`` as a sparse CSR tensor.

    Built once per graph so that each propagation is one sparse-dense product
    (``adj @ x``) instead of a scatter over edges.
    """
    weight = torch.ones(edge_index.shape[1]) if edge_weight is None else edge_weight.float()
    deg = torch.zeros(num_nodes).index_add_(0, edge_index[0], weight)
    inv = deg.pow(-0.5)
    inv[torch.isinf(inv)] = 0
    values = inv[edge_index[0]] * weight * inv[edge_index[1]]
    adj = torch.sparse_coo_tensor(
        edge_index, values, (num_nodes, num_nodes), check_invariants=False
    ).coalesce()
    with warnings.catch_warnings():  # "sparse CSR support is in beta": known, and it works
        warnings.simplefilter("ignore", UserWarning)
        return adj.to_sparse_csr()


def bipartite_edge_index(split: Split) -> torch.Tensor:
    """Training user-item edges in LightGCN's node space (items after users), both directions."""
    pairs = split.pairs("train")
    fwd = torch.stack([pairs[0], pairs[1] + split.num_users])
    return torch.cat([fwd, fwd.flip(0)], 1)


def behaviour_edge_weights(split: Split) -> torch.Tensor | None:
    """Edge weights of propagation: with a target behaviour, each pair's loss weight (its
    heaviest behaviour's), both directions, so a view passes less than a purchase; None (all
    edges equal, LightGCN's) otherwise."""
    if split.target is None:
        return None
    weight = torch.as_tensor(split.train["weight"].to_numpy("float32", copy=True))
    return torch.cat([weight, weight])
