"""Per-user normalisation and the alpha blend of GNN and text scores.

``s = a * norm(s_gnn) + (1 - a) * norm(s_text)`` where ``norm`` works per user over the
candidate items, because raw dot products of the two sources live on unrelated scales (and
differ in scale from user to user). ``a`` is a number, or one number per item (see
:mod:`kgrec.fusion.alpha`: products with few training events or much text lean on text).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from kgrec.errors import UsageError

NORMALISATIONS = ("zscore", "rank", "none")


def check_normalise(method: str) -> str:
    if method not in NORMALISATIONS:
        raise UsageError(f"normalise must be one of {', '.join(NORMALISATIONS)}, got {method!r}")
    return method


def zscore(scores: Tensor) -> Tensor:
    """Per-row z-score: ``(x - mean) / std`` over the row (std 0 -> 1)."""
    mean = scores.mean(dim=1, keepdim=True)
    std = scores.std(dim=1, unbiased=False, keepdim=True)
    return (scores - mean) / torch.where(std > 0, std, torch.ones_like(std))


def rank_percentile(scores: Tensor, reference: Tensor | None = None) -> Tensor:
    """Per-row percentile rank in ``(0, 1]``: the share of the row's reference values <= x.

    Args:
        scores: ``[B, C]`` values to convert.
        reference: ``[B, Q]`` sorted reference values per row (default: the sorted row itself,
            which gives exact ranks; a quantile sketch gives ranks to within ``1/Q``).
    """
    ref = torch.sort(scores, dim=1).values if reference is None else reference
    # A relative tolerance: the same (user, item) score computed in matmuls of different
    # shapes (user-major vs item-major) may differ in the last bits.
    probe = scores + 1e-5 * (scores.abs() + 1e-3)
    pos = torch.searchsorted(ref.contiguous(), probe.contiguous(), right=True)
    return pos.to(scores.dtype) / ref.shape[1]


def normalise(scores: Tensor, method: str) -> Tensor:
    """Normalise each row (one user's scores over the candidate items) by ``method``."""
    method = check_normalise(method)
    if method == "zscore":
        return zscore(scores)
    if method == "rank":
        return rank_percentile(scores)
    return scores


def blend(gnn: Tensor, text: Tensor, alpha: float | Tensor) -> Tensor:
    """``alpha * gnn + (1 - alpha) * text``; a tensor ``alpha`` broadcasts over the last axis
    (one weight per item column)."""
    if isinstance(alpha, Tensor):
        if ((alpha < 0) | (alpha > 1)).any():
            raise UsageError("alpha values must lie in [0, 1]")
    elif not 0.0 <= alpha <= 1.0:
        raise UsageError(f"alpha must lie in [0, 1], got {alpha}")
    return alpha * gnn + (1 - alpha) * text


@dataclass
class UserStats:
    """Per-user normalisation statistics over the candidate items, for scoring item-major
    (``--per item``), where one chunk holds few items but all users.

    ``gnn``/``text`` hold ``[U, 2]`` (mean, std) for z-scores or ``[U, Q]`` sorted quantiles
    for ranks.
    """

    method: str
    gnn: Tensor
    text: Tensor

    def apply(self, scores: Tensor, which: str) -> Tensor:
        """Normalise ``[U, C]`` raw scores (rows = the users these stats were built for)."""
        stats = self.gnn if which == "gnn" else self.text
        if self.method == "zscore":
            std = stats[:, 1:2]
            return (scores - stats[:, 0:1]) / torch.where(std > 0, std, torch.ones_like(std))
        if self.method == "rank":
            return rank_percentile(scores, stats)
        return scores


def row_stats(x: Tensor, method: str, sketch: int) -> Tensor:
    if method == "zscore":
        return torch.stack([x.mean(dim=1), x.std(dim=1, unbiased=False)], dim=1)
    if method == "rank":
        ordered = torch.sort(x, dim=1).values
        if ordered.shape[1] <= sketch:
            return ordered
        pos = torch.linspace(0, ordered.shape[1] - 1, sketch, device=x.device).round().long()
        return ordered[:, pos]
    return torch.zeros(x.shape[0], 0, device=x.device)
