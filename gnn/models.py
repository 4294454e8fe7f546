"""Recommenders in one code path: most-popular, MF-BPR and LightGCN (the knowledge-graph
GAT / GCN live in :mod:`kgrec.gnn.kgat`).

Every model implements :meth:`Recommender.propagate` (user and product embeddings from one
propagation; :meth:`Recommender.embed` normalises them where the model scores by cosine)
and :meth:`Recommender.ego` (the layer-0 embeddings the regulariser acts on); scores are
dot products, so the embeddings are exactly what fusion receives.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import LightGCN

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


class Recommender(nn.Module):
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

    def propagate(self) -> tuple[Tensor, Tensor]:
        users = torch.ones(self.num_users, 1, device=self.popularity.device)
        return users, self.popularity


class MFModel(Recommender):
    """Matrix factorisation trained with BPR (Rendle et al., 2009).

    Args:
        num_users, num_items: table sizes.
        dim: embedding size.
        init_std: standard deviation of the normal initialisation; None (default) is
            xavier-normal per table, ``sqrt(2 / (rows + dim))``, as RecBole's BPR: a
            catalogue's size sets the scale (measured: std 0.03 is best on ml-100k, 0.003 on
            Amazon Scientific, whose tables are 5-9x larger).
    """

    def __init__(self, num_users: int, num_items: int, dim: int = 64,
                 init_std: float | None = None) -> None:
        super().__init__()
        self.num_users, self.num_items = num_users, num_items
        self.user = nn.Embedding(num_users, dim)
        self.item = nn.Embedding(num_items, dim)
        for table in (self.user, self.item):
            if init_std is None:  # RecBole's BPR: std sqrt(2 / (rows + dim)), per table
                nn.init.xavier_normal_(table.weight)
            else:
                nn.init.normal_(table.weight, std=init_std)

    def propagate(self) -> tuple[Tensor, Tensor]:
        return self.user.weight, self.item.weight

    def ego(self, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        return self.user.weight.index_select(0, users), self.item.weight.index_select(0, items)


class LightGCNModel(Recommender):
    """PyG's :class:`~torch_geometric.nn.models.LightGCN` on the user-item graph.

    Propagation runs on a pre-normalised symmetric CSR adjacency (one sparse-dense product
    per layer); PyG's layer-mean combination (``alpha = 1/(L+1)``) is kept.

    Args:
        num_users, num_items: sizes; items follow users in the node space.
        adj: normalised ``[U+I, U+I]`` CSR adjacency of training interactions.
        dim: embedding size (default 64).
        layers: propagation layers (default 3).
        init_std: standard deviation of the normal initialisation (default :data:`INIT_STD`).
    """

    adj: Tensor

    def __init__(self, num_users: int, num_items: int, adj: Tensor, dim: int = 64,
                 layers: int = 3, init_std: float = INIT_STD) -> None:
        super().__init__()
        self.num_users, self.num_items = num_users, num_items
        self.lightgcn = LightGCN(num_users + num_items, dim, layers, normalize=False)
        nn.init.normal_(self.lightgcn.embedding.weight, std=init_std)
        self.register_buffer("adj", adj, persistent=False)

    def propagate(self) -> tuple[Tensor, Tensor]:
        x = self.lightgcn.embedding.weight
        out = x * self.lightgcn.alpha[0]
        for i in range(self.lightgcn.num_layers):
            x = SymmetricSpmm.apply(self.adj, x)
            out = out + x * self.lightgcn.alpha[i + 1]
        return out[: self.num_users], out[self.num_users :]

    def ego(self, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        weight = self.lightgcn.embedding.weight
        return weight.index_select(0, users), weight.index_select(0, items + self.num_users)
