"""LightGCN (He et al., 2020) on the user-product graph."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import LightGCN

from kgrec.gnn.models.base import INIT_STD, EmbeddingModel, ModelInputs, SymmetricSpmm


class LightGCNModel(EmbeddingModel):
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

    def keyed_rows(self) -> dict[str, Tensor | list[str]]:
        return {"lightgcn.embedding.weight": torch.arange(self.num_users + self.num_items)}


def build(inputs: ModelInputs) -> LightGCNModel:
    s, split = inputs.settings, inputs.split
    return LightGCNModel(split.num_users, split.num_items, inputs.adjacency(), s.dim, s.layers,
                         s.init_std or INIT_STD)
