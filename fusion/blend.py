"""Per-user normalisation and the alpha blend of GNN and text scores (:class:`Blend`).

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
#: The text side of a blend that reads the GNN alone (alpha 1: no separate text score).
GNN_ONLY = "none"


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


@dataclass(frozen=True)
class Blend:
    """One ranking's blend ``s = a * norm(s_gnn) + (1 - a) * norm(s_text)``: the value the
    fusion fit produces and the scorer, the fit's evaluator, ``search`` and ``similar`` use.

    Args:
        alpha: the GNN weight ``a``, a number or one per product (``[N]``); checked to lie in
            [0, 1] here, where a blend is made, and nowhere else.
        normalise: the per-user normaliser of both sources (:data:`NORMALISATIONS`).
        text: the text side it reads (``"profile"``, ``"tower"``, ``"query"`` ...; ``"none"``:
            the GNN alone).
    """

    alpha: float | Tensor = 1.0
    normalise: str = "zscore"
    text: str = GNN_ONLY

    def __post_init__(self) -> None:
        check_normalise(self.normalise)
        alpha = self.alpha
        if isinstance(alpha, Tensor):
            if ((alpha < 0) | (alpha > 1)).any():
                raise UsageError("alpha values must lie in [0, 1]")
            object.__setattr__(self, "alpha", alpha.float())
        elif not 0.0 <= float(alpha) <= 1.0:
            raise UsageError(f"alpha must lie in [0, 1], got {alpha}")
        else:
            object.__setattr__(self, "alpha", float(alpha))

    @property
    def one_source(self) -> bool:
        """A constant alpha of 0 or 1: one source alone, ranked on its raw scale."""
        return isinstance(self.alpha, float) and self.alpha in (0.0, 1.0)

    def to(self, device: torch.device) -> Blend:
        """The blend with a per-product alpha on ``device``."""
        if not isinstance(self.alpha, Tensor):
            return self
        return Blend(self.alpha.to(device), self.normalise, self.text)

    def alpha_at(self, items: Tensor | None) -> float | Tensor:
        """``alpha`` of the product columns ``items`` (None: every product)."""
        if isinstance(self.alpha, Tensor) and items is not None:
            return self.alpha[items.to(self.alpha.device)]
        return self.alpha

    def mix(self, gnn: Tensor, text: Tensor, alpha: float | Tensor | None = None) -> Tensor:
        """``a * gnn + (1 - a) * text`` of already normalised scores (``alpha``: this blend's
        weights as the caller lays them over its columns; default :attr:`alpha`, whose
        per-product tensor broadcasts over the last axis)."""
        a = self.alpha if alpha is None else alpha
        return a * gnn + (1 - a) * text

    def combine(self, gnn: Tensor, text: Tensor, items: Tensor | None = None, *,
                stats: UserStats | None = None, raw_single: bool = True) -> Tensor:
        """Fused ``[B, C]`` scores from raw GNN and text scores over the product columns
        ``items`` (None: every product): each source normalised per row (or by ``stats``, the
        rows' statistics over the whole candidate set, when ``C`` is a slice of it), then
        mixed. With ``raw_single`` a one-source blend is that source's raw scores."""
        alpha = self.alpha_at(items)
        if raw_single and self.one_source:
            return (gnn if self.alpha == 1.0 else text).clone()
        if stats is None:
            g, t = normalise(gnn, self.normalise), normalise(text, self.normalise)
        else:
            g, t = stats.apply(gnn, "gnn"), stats.apply(text, "text")
        return self.mix(g, t, alpha)


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
