"""Most popular: the baseline every model must beat."""

from __future__ import annotations

import torch
from torch import Tensor

from kgrec.gnn.models.base import EmbeddingModel, ModelInputs


class PopModel(EmbeddingModel):
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


def build(inputs: ModelInputs) -> PopModel:
    """Popularity by the training pairs' loss weights."""
    split, weight = inputs.split, inputs.train_weight
    if weight is None:
        weight = torch.as_tensor(split.train["weight"].to_numpy("float32", copy=True))
    items = torch.as_tensor(split.train["product"].to_numpy("int64", copy=True))
    return PopModel(torch.zeros(split.num_items).index_add_(0, items, weight.float()),
                    split.num_users)
