"""Re-engagement: what a user already viewed or carted, and has not bought, as a score term.

On shop data the next purchase is most often something the user looked at before (80% of
Tmall's held-out purchases were viewed in training), and no embedding model recovers a
user's own list as sharply as the list itself. So the final ranking adds it explicitly:
``s = a * s_gnn + (1 - a) * s_text + b * s_seen``, where ``s_seen(u, i)`` is the chance that
``u`` buys ``i`` given what ``u`` did with it: each non-target behaviour ``r`` of ``u`` on ``i``
counts at ``i``'s conversion rate ``c_r(i)`` (the share of the users who did ``r`` on ``i`` and
also bought it, shrunk toward ``r``'s overall rate by ``prior`` pseudo-events), combined as
``1 - prod_r (1 - c_r(i))`` and scaled so the largest is 1 (0 for products ``u`` never touched or
already bought). A product that most viewers buy outranks one that most viewers leave, which a
fixed per-behaviour weight cannot say (Tmall, held-out purchases, the term alone: HR@10 0.26
with fixed view and cart weights, 0.35 with conversion rates). ``b`` is fitted on validation
like alpha (:func:`fit_reengagement`; 0 when it does not help). The other terms are z-scored
per user, so ``b`` reads in their standard deviations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from kgrec.errors import UsageError
from kgrec.fusion.score import FusedScorer, candidate_score_fn
from kgrec.fusion.seen import SeenIndex
from kgrec.gnn.metrics import evaluate_ranking
from kgrec.gnn.pairs import REL_BITS, behaviours_in
from kgrec.gnn.split import Split
from kgrec.settings import SEEN_PRIOR

#: Re-engagement weights ``b`` the fit compares (in the blend's per-user standard deviations).
#: Up to 1024: where the term is worth more than any GNN difference (Tmall: validation NDCG
#: still climbs at 64), the fit must be able to let it order the user's seen products alone.
SEEN_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0)


def conversion_rates(product: np.ndarray, has: np.ndarray, bought: np.ndarray,
                     num_items: int, prior: float = SEEN_PRIOR) -> np.ndarray:
    """``[num_items]`` share of the pairs with a behaviour (``has``) that are also bought,
    per product, with ``prior`` pseudo-pairs at the behaviour's overall share."""
    done = np.bincount(product[has], minlength=num_items)
    converted = np.bincount(product[has & bought], minlength=num_items)
    overall = converted.sum() / max(done.sum(), 1)
    counts = done + prior
    return np.divide(converted + prior * overall, counts, out=np.zeros(num_items),
                     where=counts > 0)


class Reengagement:
    """``s_seen`` as a sparse ``[U, I]`` matrix (CSR rows, :class:`SeenIndex`), from pairs
    carrying ``rels`` bit masks.

    Args:
        pairs: ``user, product, rels`` rows (a split's ``train``, or every event's pairs):
            both the pairs scored and the conversion rates' counts.
        target: the predicted event type: pairs holding it get no term (they are bought).
        num_users, num_items: the matrix's shape.
        prior: pseudo-events of each conversion rate's shrinkage (:data:`SEEN_PRIOR`).
    """

    def __init__(self, pairs: pd.DataFrame, target: str, num_users: int, num_items: int,
                 prior: float = SEEN_PRIOR) -> None:
        rels = pairs["rels"].to_numpy("int64")
        product = pairs["product"].to_numpy("int64")
        bought = (rels & REL_BITS[target]) != 0
        missed = np.ones(len(pairs))
        for rel in (r for r in behaviours_in(rels) if r != target):
            has = (rels & REL_BITS[rel]) != 0
            rate = conversion_rates(product, has, bought, num_items, prior)
            missed[has] *= 1.0 - rate[product[has]]
        value = 1.0 - missed
        keep = (value > 0) & ~bought
        value = value[keep] / (value[keep].max(initial=0.0) or 1.0)
        self.num_items = num_items
        self.index = SeenIndex(torch.as_tensor(pairs["user"].to_numpy("int64")[keep]),
                               torch.as_tensor(product[keep]), num_users,
                               torch.as_tensor(value))

    @classmethod
    def of_split(cls, split: Split, prior: float = SEEN_PRIOR) -> Reengagement | None:
        """The term of ``split``'s training pairs; None without a target or any other
        behaviour that leads to it (nothing to re-engage with)."""
        if split.target is None or "rels" not in split.train:
            return None
        term = cls(split.train, split.target, split.num_users, split.num_items, prior)
        return term if term.pairs else None

    @property
    def pairs(self) -> int:
        return int(self.index.cols.numel())

    def scores(self, users: Tensor, items: Tensor | None = None) -> Tensor:
        """Dense ``[B, C]`` ``s_seen`` of ``users`` against ``items`` (default all)."""
        dense = self.index.dense(users.cpu().long(), self.num_items)
        return dense if items is None else dense[:, items.cpu()]


def fit_reengagement(scorer: FusedScorer, split: Split, *, k: int = 20,
                     candidates: Tensor | None = None, sample_users: int = 0, seed: int = 2020,
                     grid: Sequence[float] = SEEN_GRID) -> tuple[float, list[tuple[float, float]]]:
    """The ``b`` of ``grid`` whose ``scorer`` (its re-engagement term set) ranks validation
    best by NDCG@``k`` (ties: the smaller, so 0 unless the term helps), and the curve; the
    scorer is left at that ``b``. Each point is a full ranking of at most ``sample_users``
    seeded validation users (0: all): the cost is ``len(grid) x users x products``."""
    if scorer.seen is None:
        raise UsageError("the scorer has no re-engagement term to fit")
    valid = split.valid
    users = np.unique(valid["user"].to_numpy())
    if sample_users and len(users) > sample_users:
        users = np.random.default_rng(seed).choice(users, sample_users, replace=False)
        valid = valid[valid["user"].isin(users)]
    sampled = Split(split.train, valid, split.test.iloc[:0], split.num_users, split.num_items,
                    split.kind, split.seed, split.target)
    curve = []
    for weight in grid:
        scorer.seen_weight = float(weight)
        table = evaluate_ranking(candidate_score_fn(scorer, candidates), sampled, stage="valid",
                                 k=k, candidates=candidates, slices=("overall",), auc=False)
        curve.append((float(weight), float(table["overall"][f"ndcg@{k}"])))
    best = max(curve, key=lambda point: (point[1], -point[0]))
    scorer.seen_weight = best[0]
    return best[0], curve
