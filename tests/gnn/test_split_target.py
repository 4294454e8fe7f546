"""Splits with a target behaviour: given held-out pairs, per-behaviour exclusion, no leaks."""

from __future__ import annotations

import pandas as pd
import pytest

from kgrec.errors import ModelError
from kgrec.gnn.pairs import REL_BITS, target_behaviour
from kgrec.gnn.split import Split, make_split
from kgrec.kg import schema
from tests.gnn.conftest import behaviour_snapshot, tiny_snapshot

V, C, P = schema.VIEWED, schema.CARTED, schema.PURCHASED

# 3 users x 8 products, no times (-1). u0 bought 0, 1, 2 and viewed 0, 3, 5; u1 bought 4,
# carted 4, 6 and viewed 6, 7; u2 bought 1, 5 and viewed 1.
UNTIMED = {
    P: [(0, 0, -1), (0, 1, -1), (0, 2, -1), (1, 4, -1), (2, 1, -1), (2, 5, -1)],
    C: [(1, 4, -1), (1, 6, -1)],
    V: [(0, 0, -1), (0, 3, -1), (0, 5, -1), (1, 6, -1), (1, 7, -1), (2, 1, -1)],
}
HELD = pd.DataFrame({"user": [0, 1, 2], "product": [5, 6, 3]})


def given() -> Split:
    return make_split(behaviour_snapshot(UNTIMED, 3, 8), kind="given", target=P, held_out=HELD)


def _pairs(frame: pd.DataFrame) -> list[tuple[int, int]]:
    return sorted(zip(frame["user"].tolist(), frame["product"].tolist(), strict=True))


def test_given_split_tests_exactly_the_held_out_pairs_and_validates_on_the_target():
    split = given()
    assert (split.kind, split.target) == ("given", P)
    assert _pairs(split.test) == [(0, 5), (1, 6), (2, 3)]
    # One purchase of each user with two or more (u0, u2) goes to valid; u1 has one.
    valid = _pairs(split.valid)
    assert [u for u, _ in valid] == [0, 2]
    assert all((u, i, -1) in UNTIMED[P] for u, i in valid)
    # Training keeps every behaviour; a held-out purchase that was also viewed stays a view.
    train = split.train.set_index(["user", "product"])
    for user, item in valid:
        viewed = (user, item, -1) in UNTIMED[V]
        assert ((user, item) in train.index) == viewed
        if viewed:
            assert train.loc[(user, item), "rels"] == REL_BITS[V]
    assert train.loc[(1, 4), "rels"] == REL_BITS[P] | REL_BITS[C]
    assert train.loc[(1, 4), "weight"] == 1.0  # the purchase outweighs the cart
    assert train.loc[(1, 7), "weight"] == pytest.approx(schema.DEFAULT_EVENT_WEIGHTS[V])
    assert make_split(behaviour_snapshot(UNTIMED, 3, 8), kind="given", target=P,
                      held_out=HELD).valid.equals(split.valid)  # seeded


def test_a_ranking_leaves_out_only_the_target_behaviours_training_pairs():
    split = given()
    valid = set(_pairs(split.valid))
    bought = {(u, i) for u, i, _ in UNTIMED[P]}
    assert set(_pairs(split.excluded("valid"))) == bought - valid
    assert set(_pairs(split.excluded("test"))) == bought
    # u0's viewed 5 (held-out purchase) and u1's carted 6 can still be recommended.
    assert (0, 5) not in set(_pairs(split.excluded("test")))


def test_time_ordered_splits_drop_other_behaviours_after_the_held_out_purchase():
    timed = {P: [(0, 0, 10), (0, 1, 20), (0, 2, 30)],
             V: [(0, 0, 5), (0, 3, 15), (0, 2, 25), (0, 4, 35)]}
    split = make_split(behaviour_snapshot(timed, 1, 5), kind="leave_one_out", target=P)
    assert (_pairs(split.valid), _pairs(split.test)) == ([(0, 1)], [(0, 2)])
    # The view of 4 at 35 and the purchase-time-later view at 25 both come after the first
    # held-out purchase (20): they would leak the future into training.
    assert _pairs(split.train) == [(0, 0), (0, 3)]


def test_leave_one_out_holds_out_each_users_last_event_by_time():
    events = [(0, 3, 30, 4.0), (0, 1, 10, 4.0), (0, 0, 40, 4.0), (0, 2, 20, 4.0)]
    split = make_split(tiny_snapshot(events, 1, 4), kind="leave_one_out")
    assert (_pairs(split.test), _pairs(split.valid)) == ([(0, 0)], [(0, 3)])
    assert split.target is None and _pairs(split.excluded("test")) == [(0, 1), (0, 2), (0, 3)]


def test_the_target_is_purchase_when_there_are_several_behaviours():
    assert target_behaviour(behaviour_snapshot(UNTIMED, 3, 8)) == P
    assert target_behaviour(behaviour_snapshot(UNTIMED, 3, 8), "cart") == C
    assert target_behaviour(behaviour_snapshot(UNTIMED, 3, 8), "") is None
    assert target_behaviour(tiny_snapshot([(0, 0, 1, 4.0)], 1, 1)) is None  # ratings only
    with pytest.raises(ModelError, match="RATED has no events"):
        target_behaviour(behaviour_snapshot(UNTIMED, 3, 8), "rating")


def test_a_split_with_a_target_saves_and_loads_it(tmp_path):
    split = given()
    split.save(tmp_path)
    again = Split.load(tmp_path)
    assert again.target == P and again.excluded("test").equals(split.excluded("test"))


def test_reweighted_training_pairs_never_see_their_held_out_purchase():
    # u0's valid purchase was also viewed: in training it is a view, and a weight recomputed
    # from the event weights must say so (the snapshot still holds the purchase).
    from kgrec.gnn.train import train_weights

    events = {**UNTIMED, V: UNTIMED[V] + [(0, 1, -1), (0, 2, -1), (2, 5, -1)]}  # all viewed
    snapshot = behaviour_snapshot(events, 3, 8)
    split = make_split(snapshot, kind="given", target=P, held_out=HELD)
    weights = train_weights(snapshot, split, {"view": 0.0, "cart": 0.3}).numpy()
    train = split.train.assign(w=weights).set_index(["user", "product"])["w"]
    assert len(split.valid) == 2
    for user, item in _pairs(split.valid):
        assert train[(user, item)] == 0.0
    assert train[(1, 4)] == 1.0 and train[(1, 6)] == pytest.approx(0.3)
    assert train[(0, 3)] == 0.0
