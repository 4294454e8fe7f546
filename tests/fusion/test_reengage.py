"""The re-engagement term: a user's own viewed and carted, not bought, products."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from kgrec.fusion.reengage import SEEN_GRID, Reengagement, fit_reengagement
from kgrec.fusion.score import FusedScorer
from kgrec.gnn.split import make_split
from kgrec.kg import schema

from tests.gnn.conftest import behaviour_snapshot

V, C, P = schema.VIEWED, schema.CARTED, schema.PURCHASED
USERS, ITEMS = 80, 60


def shop(views_predict_purchases: bool, seed: int = 0):
    """Each user views 8 products and carts 2 of them; they buy 3 products (2 in training,
    1 held out) among the viewed ones, or among the never-viewed ones."""
    rng = np.random.default_rng(seed)
    events: dict[str, list[tuple[int, int, int]]] = {V: [], C: [], P: []}
    held = []
    for u in range(USERS):
        items = rng.permutation(ITEMS)
        viewed, other = items[:8], items[8:]
        events[V] += [(u, int(i), -1) for i in viewed]
        events[C] += [(u, int(i), -1) for i in viewed[:2]]
        bought = viewed[2:5] if views_predict_purchases else other[:3]
        events[P] += [(u, int(i), -1) for i in bought[:2]]
        held.append((u, int(bought[2])))
    snapshot = behaviour_snapshot(events, USERS, ITEMS)
    return make_split(snapshot, kind="given", target=P,
                      held_out=pd.DataFrame(held, columns=["user", "product"]))


def noise_scorer(split, term) -> FusedScorer:
    gen = torch.Generator().manual_seed(1)
    users, items = torch.randn(USERS, 8, generator=gen), torch.randn(ITEMS, 8, generator=gen)
    return FusedScorer(users, items, torch.zeros(USERS, 1), torch.zeros(ITEMS, 1), alpha=1.0,
                       seen=term)


def test_the_term_holds_weighted_non_target_behaviours_of_unbought_pairs():
    split = shop(views_predict_purchases=True)
    term = Reengagement.of_split(split)
    dense = term.scores(torch.arange(USERS))
    train = split.train.set_index(["user", "product"])
    u = 0
    carted = [i for (uu, i), r in train["rels"].items() if uu == u and r & 2 and not r & 4]
    viewed_only = [i for (uu, i), r in train["rels"].items() if uu == u and r == 1]
    assert carted and viewed_only
    # Weights scaled so the heaviest non-target behaviour (cart 0.5) is 1; view 0.25 -> 0.5.
    assert dense[u, carted].tolist() == pytest.approx([1.0 + 0.5] * len(carted))
    assert dense[u, viewed_only].tolist() == pytest.approx([0.5] * len(viewed_only))
    bought = split.excluded("valid")
    rows, cols = (torch.as_tensor(bought[c].to_numpy("int64", copy=True))
                  for c in ("user", "product"))
    assert (dense[rows, cols] == 0).all()
    assert term.pairs == int((dense > 0).sum())


def test_the_weight_is_fitted_where_views_predict_purchases_and_zero_where_they_do_not():
    helps = shop(views_predict_purchases=True)
    weight, curve = fit_reengagement(noise_scorer(helps, Reengagement.of_split(helps)), helps,
                                     k=5)
    points = dict(curve)
    assert list(points) == list(SEEN_GRID)
    assert weight > 0 and points[weight] > 3 * points[0.0]
    useless = shop(views_predict_purchases=False)
    weight, curve = fit_reengagement(noise_scorer(useless, Reengagement.of_split(useless)),
                                     useless, k=5)
    assert weight == 0.0
    # Ties (a small b reorders no top 5) keep the smaller weight; a large b only hurts.
    assert max(ndcg for _, ndcg in curve[1:]) <= dict(curve)[0.0]
    assert dict(curve)[SEEN_GRID[-1]] < 0.5 * dict(curve)[0.0]


def test_the_scorer_adds_the_term_to_the_normalised_blend():
    split = shop(views_predict_purchases=True)
    term = Reengagement.of_split(split)
    scorer = noise_scorer(split, term)
    users = torch.arange(5)
    base = scorer.score(users)[0]
    g = scorer.components(users)[0]
    assert torch.allclose(base, (g - g.mean(1, keepdim=True)) / g.std(1, unbiased=False,
                                                                         keepdim=True), atol=1e-5)
    scorer.seen_weight = 2.0
    assert torch.allclose(scorer.score(users)[0], base + 2.0 * term.scores(users), atol=1e-5)
    assert Reengagement.of_split(make_split(behaviour_snapshot(
        {P: [(0, 0, -1), (0, 1, -1)]}, 1, 2), kind="random")) is None
