"""What every model is: :class:`EmbeddingModel` (user and product embeddings from one
propagation, dot-product scores), the inputs a builder gets (:class:`ModelInputs`) and the
sparse product they share.

Every model implements :meth:`EmbeddingModel.propagate` (user and product embeddings from
one propagation; :meth:`EmbeddingModel.embed` normalises them where the model scores by
cosine) and :meth:`EmbeddingModel.ego` (the layer-0 embeddings the regulariser acts on);
scores are dot products, so the embeddings are exactly what fusion receives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kgrec.gnn.graph import behaviour_edge_weights, bipartite_edge_index, normalized_adjacency
from kgrec.gnn.split import Split
from kgrec.kg.snapshot import GraphSnapshot
from kgrec.settings import TrainSettings

#: Standard deviation of the normal initialisation of every id embedding (LightGCN's paper
#: and official code). PyG's LightGCN default, xavier-uniform, has std 0.005 on Gowalla's 70k
#: nodes (0.027 on ml-100k): training stalls early (ml-100k test NDCG@20 0.097, not 0.135).
INIT_STD = 0.1


class SymmetricSpmm(torch.autograd.Function):
    """``adj @ x`` for a symmetric sparse CSR ``adj``: the backward pass reuses ``adj``
    (``adj^T = adj``) instead of transposing it on every call."""

    @staticmethod
    def forward(ctx, adj: Tensor, x: Tensor) -> Tensor:
        ctx.adj, ctx.dtype = adj, x.dtype
        return sparse_mm(adj, x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor]:
        return None, sparse_mm(ctx.adj, grad).to(ctx.dtype)


def sparse_mm(adj: Tensor, x: Tensor) -> Tensor:
    """``adj @ x`` in the adjacency's dtype (fp32): autocast would cast the sparse operand
    to bf16, which is memory-bound work anyway and loses precision in the sums."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        return torch.sparse.mm(adj, x.to(adj.dtype))


class EmbeddingModel(nn.Module):
    """Base class: ``embed() -> (users [U, d], products [I, d])``, scores are dot products.

    Models implement :meth:`propagate`; with ``cosine`` set (the softmax loss trains on
    cosine similarities), :meth:`embed` returns unit-length embeddings, so that dot products
    are the cosine scores the model was trained on, for ranking and for fusion alike.
    """

    num_users: int
    num_items: int
    trainable: bool = True
    cosine: bool = False

    def propagate(self) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def embed(self) -> tuple[Tensor, Tensor]:
        users, items = self.propagate()
        if not self.cosine:
            return users, items
        return nn.functional.normalize(users, dim=-1), nn.functional.normalize(items, dim=-1)

    def ego(self, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        """Layer-0 (free parameter) embeddings of the given users and products."""
        raise NotImplementedError

    def keyed_rows(self) -> dict[str, Tensor | list[str]]:
        """The parameters whose rows belong to graph nodes or relations, by state-dict name:
        each row's node as a row of the flattened node space (users, then products, then the
        other types; :func:`kgrec.gnn.graph.node_order`), or each row's relation name. A warm
        start (:mod:`kgrec.gnn.warm`) carries these row by row, matched on ids."""
        return {}

    def score(self, users: Tensor, cache: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Scores ``[B, num_items]`` of the given users (pass ``cache=self.embed()`` to
        reuse one propagation over many batches)."""
        user_emb, item_emb = cache if cache is not None else self.embed()
        return user_emb[users] @ item_emb.t()


class FrozenEmbeddings(EmbeddingModel):
    """Scores from exported embeddings (what :meth:`TrainResult.load` restores)."""

    trainable = False

    users: Tensor
    items: Tensor

    def __init__(self, users: Tensor, items: Tensor) -> None:
        super().__init__()
        self.num_users, self.num_items = users.shape[0], items.shape[0]
        self.register_buffer("users", users)
        self.register_buffer("items", items)

    def propagate(self) -> tuple[Tensor, Tensor]:
        return self.users, self.items


@dataclass
class ModelInputs:
    """What a model builder gets: the graph, the split whose training pairs it propagates
    over, the settings, the products' text vectors (or None) and each training pair's loss
    weight (None: the split's)."""

    snapshot: GraphSnapshot
    split: Split
    settings: TrainSettings
    product_features: Tensor | None = None
    train_weight: Tensor | None = None

    def adjacency(self) -> Tensor:
        """The normalised user-product adjacency of the training pairs (behaviour-weighted
        edges with a target behaviour)."""
        split = self.split
        return normalized_adjacency(bipartite_edge_index(split), split.num_users + split.num_items,
                                    behaviour_edge_weights(split))
