"""Fitting and evaluating fusions on a split: text side, alpha fits, evaluation helpers.

Used by ``kgrec fuse``, the quality benchmark and the tests. The evaluation itself is
``gnn.metrics.evaluate_ranking`` (the same code that evaluates the GNN), fed score
functions that normalise per user over the candidate products only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from fusion.score import (
    ALPHA_GRID,
    AlphaFit,
    FusedScorer,
    TowerResult,
    fit_alpha,
    item_degree,
    popularity_alpha,
    train_text_tower,
)
from fusion.text import user_profiles
from gnn.data import Split
from gnn.metrics import evaluate_ranking

ScoreFn = Callable[[Tensor], Tensor]
#: Text sides: the raw MiniLM profile similarity, or a text tower trained on the interactions.
TEXT_SIDES = ("profile", "tower")
POPULARITY_PIVOTS: tuple[float, ...] = (5.0, 20.0)


def candidate_score_fn(scorer: FusedScorer, candidates: Tensor | None = None) -> ScoreFn:
    """``users -> [B, num_items]`` fused scores, normalised per user over ``candidates``
    (default: all products); non-candidates get ``-inf``."""
    if candidates is None:
        return scorer
    cand = torch.as_tensor(candidates)
    if cand.dtype == torch.bool:
        cand = torch.nonzero(cand).flatten()

    def score(users: Tensor) -> Tensor:
        out = torch.full((len(users), scorer.num_items), -torch.inf)
        out[:, cand] = scorer.score(users, cand)[0].cpu()
        return out

    return score


@dataclass
class TextSide:
    """Text-side vectors for a :class:`FusedScorer`: users ``[U, d]``, items ``[N, d]``."""

    kind: str
    users: Tensor
    items: Tensor
    tower: TowerResult | None = None


def build_text_side(
    kind: str,
    split: Split,
    item_text: Tensor,
    *,
    tower_epochs: int = 20,
    tower_dim: int = 64,
    seed: int = 2020,
    device: str = "cpu",
    progress: bool = False,
) -> TextSide:
    """The text side of the fusion, from training interactions only.

    Args:
        kind: ``"profile"`` (cosine of the user's recency/strength-weighted text profile
            and the product text) or ``"tower"`` (BPR-trained projection, see
            :class:`fusion.score.TextTower`).
        split: Only ``split.train`` is used.
        item_text: ``[num_items, d]`` frozen product text vectors.
        tower_epochs, tower_dim, seed, device: Text-tower training settings.
        progress: Show progress bars.
    """
    if kind == "profile":
        users = user_profiles(split.train, item_text, split.num_users)
        return TextSide(kind, users, item_text.float())
    if kind == "tower":
        tower = train_text_tower(
            split.pairs("train"), item_text, split.num_users, dim=tower_dim,
            epochs=tower_epochs, seed=seed, device=device, progress=progress,
        )
        return TextSide(kind, tower.user_vectors, tower.item_vectors, tower)
    raise ValueError(f"text side must be one of {', '.join(TEXT_SIDES)}, got {kind!r}")


@dataclass
class FusionFit:
    """A fitted fusion: constant alpha (curve) and popularity-aware alpha (curve)."""

    alpha: AlphaFit
    popularity: AlphaFit
    pivot: float
    metric: str
    curve_popularity: list[tuple[float, float, float]] = field(default_factory=list)


def evaluate(
    score_fn: ScoreFn, split: Split, *, stage: str = "test", k: int = 20,
    candidates: Tensor | None = None, slices: tuple[str, ...] = ("overall", "long_tail",
                                                                   "cold_start"),
) -> dict[str, dict[str, float]]:
    """``gnn.metrics.evaluate_ranking`` (kept as the one evaluation of every model)."""
    return evaluate_ranking(score_fn, split, stage=stage, k=k, candidates=candidates,
                            slices=slices)


def fit_fusion(
    gnn_users: Tensor,
    gnn_items: Tensor,
    text: TextSide,
    split: Split,
    *,
    normalise: str = "zscore",
    k: int = 20,
    grid: Sequence[float] = ALPHA_GRID,
    pivots: Sequence[float] = POPULARITY_PIVOTS,
    candidates: Tensor | None = None,
    progress: bool = False,
) -> FusionFit:
    """Fit the constant alpha and the popularity-aware (alpha_head, pivot) on ``split.valid``
    by NDCG@k (over ``candidates`` when given)."""
    if not len(split.valid):
        raise ValueError("fitting alpha needs a split with validation pairs")
    metric = f"ndcg@{k}"
    degree = item_degree(split.pairs("train"), split.num_items)

    def run(alpha: float | Tensor) -> float:
        scorer = FusedScorer(gnn_users, gnn_items, text.users, text.items, alpha=alpha,
                             normalise=normalise)
        result = evaluate(candidate_score_fn(scorer, candidates), split, stage="valid", k=k,
                          candidates=candidates, slices=("overall",))
        return result["overall"][metric]

    constant = fit_alpha(run, grid, progress=progress)
    curve_pop: list[tuple[float, float, float]] = []
    best_pivot, best = pivots[0], (-1.0, 0.0)
    def run_popularity(pivot: float) -> Callable[[float], float]:
        return lambda a: run(popularity_alpha(degree, a, pivot))

    for pivot in pivots:
        fit = fit_alpha(run_popularity(pivot), grid, progress=progress)
        curve_pop += [(a, pivot, m) for a, m in fit.curve]
        if fit.best_metric > best[0]:
            best, best_pivot = (fit.best_metric, fit.best), pivot
    pop_curve = [(a, m) for a, p, m in curve_pop if p == best_pivot]
    popularity = AlphaFit(best[1], best[0], pop_curve)
    return FusionFit(constant, popularity, best_pivot, metric, curve_pop)
