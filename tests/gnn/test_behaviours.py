"""Behaviour weights fitted on validation for the target behaviour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kgrec.gnn.behaviours import candidate_weights, fit_behaviour_weights, reweighted
from kgrec.gnn.split import make_split
from kgrec.kg import schema
from kgrec.settings import TrainSettings
from tests.gnn.conftest import behaviour_snapshot

V, C, P = schema.VIEWED, schema.CARTED, schema.PURCHASED
USERS, ITEMS = 150, 60
SETTINGS = TrainSettings(model="lightgcn", dim=16, k=5, device="cpu", threads=1)


def shop(views_predict_purchases: bool, seed: int = 0):
    """Users fall in 6 taste groups of 10 products; they buy 5 of their group's products (one
    held out). Each views 6 products and carts 2 of them: the 5 bought and one more of their
    group, or 6 products drawn from the whole catalogue, which say nothing."""
    rng = np.random.default_rng(seed)
    events: dict[str, list[tuple[int, int, int]]] = {V: [], C: [], P: []}
    held = []
    for u in range(USERS):
        mine = (u % 6) * 10 + rng.permutation(10)
        bought = mine[:5]
        viewed = mine[:6] if views_predict_purchases else rng.permutation(ITEMS)[:6]
        events[V] += [(u, int(i), -1) for i in viewed]
        events[C] += [(u, int(i), -1) for i in viewed[:2]]
        events[P] += [(u, int(i), -1) for i in bought[:4]]
        held.append((u, int(bought[4])))
    return make_split(behaviour_snapshot(events, USERS, ITEMS), kind="given", target=P,
                      held_out=pd.DataFrame(held, columns=["user", "product"]))


def test_candidates_scale_the_defaults_capped_at_the_target():
    split = shop(True)
    assert candidate_weights(split, 0.0) == {V: 0.0, C: 0.0, P: 1.0}
    assert candidate_weights(split, 1.0) == {V: 0.25, C: 0.5, P: 1.0}
    assert candidate_weights(split, 4.0) == {V: 1.0, C: 1.0, P: 1.0}  # equal
    heavy = reweighted(split, {V: 1.0, C: 0.0, P: 1.0}).train.set_index(["user", "product"])
    only_viewed = heavy[heavy["rels"] == 1]
    assert len(only_viewed) and (only_viewed["weight"] == 1.0).all()
    assert reweighted(split, {V: 1.0, C: 0.0, P: 1.0}).valid.equals(split.valid)


@pytest.mark.parametrize("views_predict, chosen", [(True, "above zero"), (False, "zero")])
def test_the_view_weight_is_fitted_for_the_target(views_predict, chosen):
    split = shop(views_predict)
    fit = fit_behaviour_weights(behaviour_snapshot({P: [(0, 0, -1)]}, USERS, ITEMS), split,
                                SETTINGS, scales=(0.0, 1.0, 4.0), epochs=6)
    scores = {c["scale"]: c["valid_ndcg"] for c in fit.candidates}
    if chosen == "zero":
        assert fit.weights[V] == 0.0 and fit.weights[C] == 0.0
        assert scores[0.0] > 2 * scores[4.0]
    else:
        assert fit.weights[V] > 0
        assert max(scores[1.0], scores[4.0]) > 1.2 * scores[0.0]
    assert "behaviour weights" in fit.summary()
