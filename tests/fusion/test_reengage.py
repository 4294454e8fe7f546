"""The re-engagement term: a user's own viewed and carted, not bought, products."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from kgrec.fusion.blend import Blend
from kgrec.fusion.reengage import SEEN_GRID, Reengagement, conversion_rates, fit_reengagement
from kgrec.fusion.score import FusedScorer
from kgrec.gnn.pairs import REL_BITS
from kgrec.gnn.split import make_split
from kgrec.kg import schema
from tests.gnn.conftest import behaviour_snapshot

V, C, P = schema.VIEWED, schema.CARTED, schema.PURCHASED
USERS, ITEMS = 80, 60


def shop(held_out_viewed: bool, seed: int = 0):
    """Each user views 8 products, carts 2 of them and buys 2 others of them (training), then
    buys 2 more (held out, the last by time): among the viewed ones, or among the rest."""
    rng = np.random.default_rng(seed)
    events: dict[str, list[tuple[int, int, int]]] = {V: [], C: [], P: []}
    for u in range(USERS):
        items = rng.permutation(ITEMS)
        viewed = items[:8]
        events[V] += [(u, int(i), t) for t, i in enumerate(viewed)]
        events[C] += [(u, int(i), 8 + t) for t, i in enumerate(viewed[:2])]
        held = viewed[4:6] if held_out_viewed else items[8:10]
        events[P] += [(u, int(i), 10 + t) for t, i in enumerate([*viewed[2:4], *held])]
    return make_split(behaviour_snapshot(events, USERS, ITEMS), kind="leave_one_out", target=P)


def noise_scorer(split, term) -> FusedScorer:
    gen = torch.Generator().manual_seed(1)
    users, items = torch.randn(USERS, 8, generator=gen), torch.randn(ITEMS, 8, generator=gen)
    return FusedScorer(users, items, torch.zeros(USERS, 1), torch.zeros(ITEMS, 1), blend=Blend(1.0),
                       seen=term)


def test_the_term_is_each_products_conversion_rate_of_the_users_unbought_behaviours():
    view, cart, buy = REL_BITS[V], REL_BITS[C], REL_BITS[P]
    # Product 0: 4 viewers, 3 bought (one carted it); product 1: 2 viewers, 1 bought, user 0
    # carted it and did not buy.
    pairs = pd.DataFrame([(0, 0, view), (1, 0, view | buy), (2, 0, view | cart | buy),
                          (3, 0, view | buy), (0, 1, view | cart), (1, 1, view | buy)],
                         columns=["user", "product", "rels"])
    term = Reengagement(pairs, P, num_users=4, num_items=2, prior=3.0)
    # Overall: views 4 of 6 bought, carts 1 of 2. Shrunk rates with 3 pseudo-events:
    view0, view1 = (3 + 3 * 4 / 6) / (4 + 3), (1 + 3 * 4 / 6) / (2 + 3)  # 5/7, 3/5
    cart1 = (0 + 3 * 1 / 2) / (1 + 3)  # 0.375
    unbought = {(0, 0): view0, (0, 1): 1 - (1 - view1) * (1 - cart1)}  # 0.714, 0.75
    top = max(unbought.values())
    dense = term.scores(torch.arange(4))
    assert dense[0].tolist() == pytest.approx([unbought[0, 0] / top, 1.0])
    assert dense[1:].abs().sum() == 0  # bought pairs get no term
    assert term.pairs == 2
    rates = conversion_rates(np.array([0, 0, 1]), np.array([True, True, True]),
                             np.array([True, False, False]), 3, prior=0.0)
    assert rates.tolist() == [0.5, 0.0, 0.0]  # product 2: never viewed, no rate


def test_views_that_never_lead_to_a_purchase_give_no_term():
    snapshot = behaviour_snapshot({V: [(0, 0, 0), (1, 1, 0)], P: [(0, 1, 1), (1, 0, 1)]}, 2, 2)
    assert Reengagement.of_split(make_split(snapshot, kind="random", target=P)) is None


def test_the_weight_is_fitted_where_viewed_products_are_bought_and_zero_where_they_are_not():
    helps = shop(held_out_viewed=True)
    weight, curve = fit_reengagement(noise_scorer(helps, Reengagement.of_split(helps)), helps,
                                     k=5)
    points = dict(curve)
    assert list(points) == list(SEEN_GRID)
    assert weight > 0 and points[weight] > 3 * points[0.0]
    misleads = shop(held_out_viewed=False)
    term = Reengagement.of_split(misleads)
    assert term is not None and term.pairs == USERS * 6  # viewed, not bought in training
    weight, curve = fit_reengagement(noise_scorer(misleads, term), misleads, k=5)
    assert weight == 0.0
    # A large b puts the user's viewed products first, above the unviewed validation purchase.
    assert dict(curve)[SEEN_GRID[-1]] < 0.5 * dict(curve)[0.0]


def test_the_scorer_adds_the_term_to_the_normalised_blend():
    split = shop(held_out_viewed=True)
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
