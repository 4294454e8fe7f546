"""Ranking losses shared by the GNN trainer and the text tower."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def bpr_loss(pos: Tensor, neg: Tensor, weight: Tensor) -> Tensor:
    """Weighted BPR: ``sum w * -log sigmoid(pos - neg) / sum w``."""
    return (weight * nn.functional.softplus(neg - pos)).sum() / weight.sum().clamp(min=1e-12)


def softmax_loss(users: Tensor, positives: Tensor, candidates: Tensor, pos_items: Tensor,
                 cand_items: Tensor, temperature: float, weight: Tensor) -> Tensor:
    """Weighted sampled softmax (InfoNCE) of each user's positive against shared candidate
    products, on the scores the model ranks by (cosine when the embeddings are unit length)
    over ``temperature``; a candidate that is the row's own positive is left out.

    Args:
        users, positives: ``[B, d]`` the pairs' embeddings. candidates: ``[C, d]``.
        pos_items, cand_items: ``[B]`` and ``[C]`` product rows (to mask the positive).
    """
    pos = (users * positives).sum(-1, keepdim=True).float() / temperature
    logits = (users @ candidates.t()).float() / temperature
    logits = logits.masked_fill(pos_items.unsqueeze(1) == cand_items.unsqueeze(0), -torch.inf)
    rows = torch.logsumexp(torch.cat([pos, logits], 1), 1) - pos.squeeze(1)
    return (weight * rows).sum() / weight.sum().clamp(min=1e-12)
