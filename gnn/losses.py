"""Ranking losses shared by the GNN trainer and the text tower."""

from __future__ import annotations

from torch import Tensor, nn


def bpr_loss(pos: Tensor, neg: Tensor, weight: Tensor) -> Tensor:
    """Weighted BPR: ``sum w * -log sigmoid(pos - neg) / sum w``."""
    return (weight * nn.functional.softplus(neg - pos)).sum() / weight.sum().clamp(min=1e-12)
