"""Recommenders in one code path: most-popular, MF-BPR, LightGCN, and GCN / GAT encoders
over the heterogeneous knowledge graph.

Every model implements :meth:`Recommender.embed` (user and product embeddings from one
propagation) and :meth:`Recommender.ego` (the layer-0 embeddings the regulariser acts on);
scores are dot products, so the embeddings are exactly what fusion receives.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv, LightGCN

from gnn.data import HomogeneousGraph, normalized_adjacency

MODEL_NAMES = ("pop", "mf", "lightgcn", "gcn", "gat")
#: Standard deviation of the normal initialisation of every id embedding (LightGCN's paper
#: and official code). PyG's LightGCN default, xavier-uniform, has std 0.005 on Gowalla's 70k
#: nodes (0.027 on ml-100k): training stalls early (ml-100k test NDCG@20 0.097, not 0.135).
INIT_STD = 0.1
#: Size of GAT's relation-type embedding (edge_attr); small keeps its per-edge projection cheap.
EDGE_DIM = 16


class SymmetricSpmm(torch.autograd.Function):
    """``adj @ x`` for a symmetric sparse CSR ``adj``: the backward pass reuses ``adj``
    (``adj^T = adj``) instead of transposing it on every call."""

    @staticmethod
    def forward(ctx, adj: Tensor, x: Tensor) -> Tensor:
        ctx.adj, ctx.dtype = adj, x.dtype
        return _sparse_mm(adj, x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor]:
        return None, _sparse_mm(ctx.adj, grad).to(ctx.dtype)


def _sparse_mm(adj: Tensor, x: Tensor) -> Tensor:
    """``adj @ x`` in the adjacency's dtype (fp32): autocast would cast the sparse operand
    to bf16, which is memory-bound work anyway and loses precision in the sums."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        return torch.sparse.mm(adj, x.to(adj.dtype))


class Recommender(nn.Module):
    """Base class: ``embed() -> (users [U, d], products [I, d])``, scores are dot products."""

    num_users: int
    num_items: int
    trainable: bool = True

    def embed(self) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def ego(self, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        """Layer-0 (free parameter) embeddings of the given users and products."""
        raise NotImplementedError

    def score(self, users: Tensor, cache: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Scores ``[B, num_items]`` of the given users (pass ``cache=self.embed()`` to
        reuse one propagation over many batches)."""
        user_emb, item_emb = cache if cache is not None else self.embed()
        return user_emb[users] @ item_emb.t()


class PopModel(Recommender):
    """Most popular: every user gets products ranked by weighted training interactions.

    Args:
        item_weight: ``[num_items]`` summed training weight per product.
        num_users: number of users.
    """

    trainable = False
    popularity: Tensor

    def __init__(self, item_weight: Tensor, num_users: int) -> None:
        super().__init__()
        self.num_users, self.num_items = num_users, int(item_weight.numel())
        self.register_buffer("popularity", item_weight.float().view(-1, 1))

    def embed(self) -> tuple[Tensor, Tensor]:
        users = torch.ones(self.num_users, 1, device=self.popularity.device)
        return users, self.popularity


class MFModel(Recommender):
    """Matrix factorisation trained with BPR (Rendle et al., 2009).

    Args:
        num_users, num_items: table sizes.
        dim: embedding size.
    """

    def __init__(self, num_users: int, num_items: int, dim: int = 64) -> None:
        super().__init__()
        self.num_users, self.num_items = num_users, num_items
        self.user = nn.Embedding(num_users, dim)
        self.item = nn.Embedding(num_items, dim)
        nn.init.normal_(self.user.weight, std=INIT_STD)
        nn.init.normal_(self.item.weight, std=INIT_STD)

    def embed(self) -> tuple[Tensor, Tensor]:
        return self.user.weight, self.item.weight

    def ego(self, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        return self.user(users), self.item(items)


class LightGCNModel(Recommender):
    """PyG's :class:`~torch_geometric.nn.models.LightGCN` on the user-item graph.

    Propagation runs on a pre-normalised symmetric CSR adjacency (one sparse-dense product
    per layer); PyG's layer-mean combination (``alpha = 1/(L+1)``) is kept.

    Args:
        num_users, num_items: sizes; items follow users in the node space.
        adj: normalised ``[U+I, U+I]`` CSR adjacency of training interactions.
        dim: embedding size (default 64).
        layers: propagation layers (default 3).
    """

    adj: Tensor

    def __init__(self, num_users: int, num_items: int, adj: Tensor, dim: int = 64,
                 layers: int = 3) -> None:
        super().__init__()
        self.num_users, self.num_items = num_users, num_items
        self.lightgcn = LightGCN(num_users + num_items, dim, layers, normalize=False)
        nn.init.normal_(self.lightgcn.embedding.weight, std=INIT_STD)
        self.register_buffer("adj", adj, persistent=False)

    def embed(self) -> tuple[Tensor, Tensor]:
        x = self.lightgcn.embedding.weight
        out = x * self.lightgcn.alpha[0]
        for i in range(self.lightgcn.num_layers):
            x = SymmetricSpmm.apply(self.adj, x)
            out = out + x * self.lightgcn.alpha[i + 1]
        return out[: self.num_users], out[self.num_users :]

    def ego(self, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        weight = self.lightgcn.embedding.weight
        return weight[users], weight[items + self.num_users]


def receptive_edges(graph: HomogeneousGraph, layers: int) -> Tensor:
    """Bool mask of the edges whose target lies within ``layers - 1`` hops of a user or
    product: the only messages that can reach a user or product embedding in ``layers``
    rounds."""
    near = graph.node_type < 2  # users and products (homogeneous_graph puts them first)
    src, dst = graph.edge_index
    for _ in range(max(layers - 1, 0)):
        grown = near.clone()
        grown[dst[near[src]]] = True
        near = grown
    return near[dst]


class KGEncoder(Recommender):
    """GCN or GAT encoder over the flattened heterogeneous graph.

    Every node (users, products, categories, brands, entities) has a learnable id
    embedding; products may add a projection of input features (e.g. text embeddings). No
    shared node-type vector: added to every product it acts as a global popularity bias
    that BPR fits first and that swamps personalisation (measured: -25% NDCG@20).
    GCN propagates over the symmetric normalised adjacency of all relations (the graph's
    structure carries the types); GAT feeds a relation embedding (reverse directions and
    each KG relation distinct) as ``edge_attr`` into its attention. Layer outputs are
    averaged (LightGCN-style), which keeps the id embeddings' signal and trains stably.

    Args:
        graph: the flattened training graph (:func:`gnn.data.homogeneous_graph`).
        num_users, num_items: users and products come first in the node space.
        conv: ``"gcn"`` or ``"gat"``.
        dim: embedding size; layers: number of convolutions; heads: GAT heads.
        product_features: optional ``[num_items, F]`` tensor aligned to the product id map.
    """

    features: Tensor | None
    feature_proj: nn.Linear | None
    adj: Tensor
    edge_index: Tensor
    edge_type: Tensor
    rel_emb: nn.Embedding

    def __init__(
        self,
        graph: HomogeneousGraph,
        num_users: int,
        num_items: int,
        conv: str = "gcn",
        dim: int = 64,
        layers: int = 2,
        heads: int = 1,
        product_features: Tensor | None = None,
    ) -> None:
        super().__init__()
        if conv not in ("gcn", "gat"):
            raise ValueError(f"conv must be 'gcn' or 'gat', got {conv!r}")
        if graph.offsets["user"] != 0 or graph.offsets["product"] != num_users:
            raise ValueError("graph must hold users first, then products (homogeneous_graph)")
        self.num_users, self.num_items, self.conv_kind = num_users, num_items, conv
        self.node = nn.Embedding(graph.num_nodes, dim)
        nn.init.normal_(self.node.weight, std=INIT_STD)
        num_rel = max(len(graph.edge_types), 1)
        if product_features is not None:
            if product_features.shape[0] != num_items:
                raise ValueError(
                    f"product_features has {product_features.shape[0]} rows, expected {num_items}"
                )
            self.register_buffer("features", product_features.float(), persistent=False)
            self.feature_proj = nn.Linear(product_features.shape[1], dim)
        else:
            self.features, self.feature_proj = None, None
        if conv == "gcn":
            # Symmetric normalised adjacency of the whole typed graph, built once.
            adj = normalized_adjacency(graph.edge_index, graph.num_nodes)
            self.register_buffer("adj", adj, persistent=False)
            self.convs = nn.ModuleList(
                GCNConv(dim, dim, add_self_loops=False, normalize=False, bias=False)
                for _ in range(layers)
            )
        else:
            # Messages into nodes farther than layers-1 hops from users/products can never
            # reach an output embedding: drop them (every kept target keeps all its incoming
            # edges, so its attention softmax is exact).
            keep = receptive_edges(graph, layers)
            self.register_buffer("edge_index", graph.edge_index[:, keep], persistent=False)
            self.register_buffer("edge_type", graph.edge_type[keep], persistent=False)
            self.rel_emb = nn.Embedding(num_rel, EDGE_DIM)
            self.convs = nn.ModuleList(
                GATConv(dim, dim, heads=heads, concat=False, edge_dim=EDGE_DIM,
                        add_self_loops=False, bias=False)
                for _ in range(layers)
            )

        # Identity-initialised transforms: training starts from plain (LightGCN-like)
        # propagation over the knowledge graph and learns the mixing from there.
        for layer in self.convs:
            nn.init.eye_(cast(Any, layer).lin.weight)

    def inputs(self) -> Tensor:
        """Layer-0 node states: id embeddings (+ projected product features)."""
        x = self.node.weight
        if self.feature_proj is not None:
            start = self.num_users
            proj = self.feature_proj(self.features)
            x = torch.cat([x[:start], x[start : start + self.num_items] + proj,
                           x[start + self.num_items :]])
        return x

    def embed(self) -> tuple[Tensor, Tensor]:
        x = self.inputs()
        outs = [x]
        if self.conv_kind == "gcn":
            for conv in self.convs:
                # GCNConv(normalize=False) on the pre-normalised adjacency is A_hat @ (x W);
                # its weights are used with the symmetric sparse product (a test checks
                # equality with conv(x, edge_index, edge_weight)).
                x = SymmetricSpmm.apply(self.adj, cast(Any, conv).lin(x))
                outs.append(x)
        else:
            attr = self.rel_emb(self.edge_type)
            for conv in self.convs:
                x = conv(x, self.edge_index, attr)
                outs.append(x)
        out = torch.stack(outs).mean(0)
        return out[: self.num_users], out[self.num_users : self.num_users + self.num_items]

    def ego(self, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        return self.node.weight[users], self.node.weight[items + self.num_users]
