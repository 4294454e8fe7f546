"""Splits, weights, RecBole export, the leak-free training graph and the negative sampler."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from kgrec.errors import InputError
from kgrec.gnn.export import export_recbole
from kgrec.gnn.graph import INTERACTS, homogeneous_graph, training_graph
from kgrec.gnn.lightgcn_files import load_lightgcn_split
from kgrec.gnn.metrics import cold_start_items
from kgrec.gnn.pairs import interaction_table
from kgrec.gnn.sampling import NegativeSampler, negative_pool
from kgrec.gnn.split import Split, item_cold_start_split, make_split
from kgrec.kg import schema
from tests.gnn.conftest import tiny_snapshot


def _keys(frame: pd.DataFrame, num_items: int) -> set[int]:
    return set((frame["user"] * num_items + frame["product"]).tolist())


def test_temporal_split_puts_each_users_latest_pairs_in_test():
    # u0 has 10 pairs at times 100..109 (given in shuffled order), u1 has 20 at times 0..19.
    rng = np.random.default_rng(0)
    events = [(0, p, 100 + p, 4.0) for p in rng.permutation(10)]
    events += [(1, p, p, 3.0) for p in rng.permutation(20)]
    split = make_split(tiny_snapshot(events, 2, 20), kind="auto")
    assert split.kind == "temporal"
    # floor(0.1 * n) pairs per user in valid and in test.
    assert sorted(split.test.query("user == 0")["product"]) == [9]
    assert sorted(split.valid.query("user == 0")["product"]) == [8]
    assert sorted(split.test.query("user == 1")["product"]) == [18, 19]
    assert sorted(split.valid.query("user == 1")["product"]) == [16, 17]
    for user in (0, 1):
        times = {s: split.frame(s).loc[split.frame(s)["user"] == user, "time"] for s in
                 ("train", "valid", "test")}
        assert times["train"].max() < times["valid"].min()
        assert times["valid"].max() < times["test"].min()
    assert (len(split.train), len(split.valid), len(split.test)) == (24, 3, 3)


def test_random_split_is_seeded_disjoint_and_complete(ml100k_snapshot, ml100k_split):
    split = ml100k_split
    assert split.kind == "random"
    n = split.num_items
    tr, va, te = (_keys(split.frame(s), n) for s in ("train", "valid", "test"))
    assert not (tr & va) and not (tr & te) and not (va & te)
    pairs = interaction_table(ml100k_snapshot)
    assert len(pairs) == 100_000  # ml-100k has no repeated (user, item) pair
    assert tr | va | te == _keys(pairs, n)
    # Per user: floor(10%) to valid and to test (every ml-100k user has >= 20 ratings).
    sizes = pairs.groupby("user").size()
    assert split.test.groupby("user").size().equals((sizes * 0.1).astype(int))
    again = make_split(ml100k_snapshot, kind="random", seed=2020)
    assert again.test.equals(split.test)
    other = make_split(ml100k_snapshot, kind="random", seed=7)
    assert not other.test.equals(split.test)


def test_rating_and_event_weights():
    events = [(0, 0, 1, 5.0), (0, 1, 2, 1.0), (1, 0, 3, 2.5)]
    table = interaction_table(tiny_snapshot(events, 2, 2))
    assert table["weight"].round(3).tolist() == [1.0, 0.2, 0.5]
    halved = interaction_table(tiny_snapshot(events, 2, 2), {"rating": 0.5})
    assert halved["weight"].round(3).tolist() == [0.5, 0.1, 0.25]
    # A pair seen as a view and as a purchase keeps the purchase weight, and its latest time.
    snap = tiny_snapshot([(0, 0, 10, 1.0)], 1, 1, rel=schema.VIEWED)
    purchase = tiny_snapshot([(0, 0, 20, 1.0)], 1, 1, rel=schema.PURCHASED)
    et = ("user", "purchased", "product")
    for key in ("edge_index", "edge_time", "edge_value", "edge_weight"):
        snap.data[et][key] = purchase.data[et][key]
    table = interaction_table(snap)
    assert table[["weight", "time"]].values.tolist() == [[1.0, 20.0]]


def test_training_graph_holds_only_training_pairs(ml100k_snapshot, ml100k_split):
    graph = training_graph(ml100k_snapshot, ml100k_split)
    n = ml100k_split.num_items
    ei = graph[INTERACTS].edge_index
    in_graph = set((ei[0] * n + ei[1]).tolist())
    assert in_graph == _keys(ml100k_split.train, n)
    held = _keys(ml100k_split.valid, n) | _keys(ml100k_split.test, n)
    assert not in_graph & held
    # No interaction edge type of the snapshot survives; KG/category edges do, unchanged.
    assert ("user", "rated", "product") not in graph.edge_types
    kg = ("entity", "related", "entity")
    assert torch.equal(graph[kg].edge_index, ml100k_snapshot.data[kg].edge_index)
    # The flattened graph (both directions) carries no held-out pair either way round.
    flat = homogeneous_graph(graph, ml100k_snapshot.relations)
    u0, p0 = flat.offsets["user"], flat.offsets["product"]
    src, dst = flat.edge_index
    fwd = (src < p0) & (dst >= p0) & (dst < p0 + n)
    keys = set(((src[fwd] - u0) * n + (dst[fwd] - p0)).tolist())
    assert keys == _keys(ml100k_split.train, n)
    assert flat.edge_index.shape[1] == 2 * sum(
        graph[et].edge_index.shape[1] for et in graph.edge_types
    )
    assert len(flat.edge_types) == 2 * (3 + len(ml100k_snapshot.relations))


def test_negative_sampler_never_draws_training_positives_and_ignores_held_out(ml100k_split):
    split = ml100k_split
    pairs = split.pairs("train")
    sampler = NegativeSampler(pairs, split.num_items, torch.Generator().manual_seed(1))
    users = pairs[0].repeat(3)
    neg = sampler.sample(users)
    assert not sampler.is_positive(users, neg).any()
    assert sampler.is_positive(pairs[0], pairs[1]).all()
    assert len(sampler.keys) == len(split.train)
    # Held-out pairs are unknown to the sampler: it draws them like any unseen product ...
    held = torch.cat([split.pairs("valid"), split.pairs("test")], 1)
    assert not sampler.is_positive(held[0], held[1]).any()
    # ... and a split with other valid/test pairs but the same train draws the same negatives.
    other = Split(split.train, split.test, split.valid, split.num_users, split.num_items, "random")
    twin = NegativeSampler(other.pairs("train"), other.num_items, torch.Generator().manual_seed(1))
    assert torch.equal(twin.sample(users), neg)


def test_item_cold_start_split_holds_out_products_with_all_their_pairs(ml100k_snapshot):
    split = item_cold_start_split(ml100k_snapshot, frac=0.1, seed=3)
    held = set(split.valid["product"]) | set(split.test["product"])
    assert not held & set(split.train["product"])
    assert not set(split.valid["product"]) & set(split.test["product"])
    interacted = interaction_table(ml100k_snapshot)["product"].nunique()
    assert len(held) == round(0.1 * interacted)
    cold = cold_start_items(split)
    assert cold[torch.as_tensor(split.test["product"].to_numpy())].all()
    assert len(split.train) + len(split.valid) + len(split.test) == 100_000


def test_export_recbole_round_trip(tmp_path, ml100k_snapshot, ml100k_split):
    paths = export_recbole(ml100k_split, ml100k_snapshot, tmp_path, "ml")
    assert [p.name for p in paths] == ["ml.train.inter", "ml.valid.inter", "ml.test.inter"]
    header = paths[0].read_text().splitlines()[0]
    assert header == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    for path, stage in zip(paths, ("train", "valid", "test"), strict=True):
        back = pd.read_csv(path, sep="\t", dtype={"user_id:token": str, "item_id:token": str})
        frame = ml100k_split.frame(stage)
        assert len(back) == len(frame)
        users = ml100k_snapshot.id_maps["user"].index_of(back["user_id:token"])
        items = ml100k_snapshot.id_maps["product"].index_of(back["item_id:token"])
        assert (users == frame["user"].to_numpy()).all()
        assert (items == frame["product"].to_numpy()).all()
        assert (back["rating:float"].to_numpy() == frame["value"].to_numpy()).all()
        assert (back["timestamp:float"].to_numpy() == frame["time"].to_numpy()).all()


def test_load_lightgcn_split_reads_gowalla(shared_data):
    snapshot, split = load_lightgcn_split(shared_data / "gowalla")
    assert split.kind == "given"
    assert (split.num_users, split.num_items) == (29_858, 40_981)
    assert (len(split.train), len(split.valid), len(split.test)) == (810_128, 0, 217_242)
    assert not _keys(split.train, split.num_items) & _keys(split.test, split.num_items)
    assert snapshot.id_maps["product"].ids[:3] == ["0", "1", "2"]
    assert snapshot.data["user", "purchased", "product"].edge_index.shape[1] == 1_027_370


def test_load_lightgcn_split_names_bad_rows(tmp_path):
    (tmp_path / "train.txt").write_text("0 1 2\n1 x 3\n")
    (tmp_path / "test.txt").write_text("0 3\n")
    with pytest.raises(InputError, match=r"train.txt, row 2, field 'user/item'"):
        load_lightgcn_split(tmp_path)
    (tmp_path / "test.txt").unlink()
    with pytest.raises(InputError, match="missing LightGCN file test.txt"):
        load_lightgcn_split(tmp_path)


def test_split_arguments_are_checked(ml100k_snapshot):
    with pytest.raises(ValueError, match="sum to less than 1"):
        make_split(ml100k_snapshot, valid_ratio=0.5, test_ratio=0.5)
    with pytest.raises(ValueError, match="unknown split kind"):
        make_split(ml100k_snapshot, kind="weekly")


def test_negative_pool_excludes_products_without_training_pairs(ml100k_snapshot):
    split = item_cold_start_split(ml100k_snapshot, frac=0.1, seed=3)
    pool = negative_pool(split)
    held = torch.as_tensor(sorted(set(split.valid["product"]) | set(split.test["product"])))
    assert not torch.isin(pool, held).any()
    assert pool.numel() == int((split.item_counts() > 0).sum())
    pairs = split.pairs("train")
    sampler = NegativeSampler(pairs, split.num_items, torch.Generator().manual_seed(0), pool=pool)
    neg = sampler.sample(pairs[0])
    assert torch.isin(neg, pool).all() and not sampler.is_positive(pairs[0], neg).any()
    with pytest.raises(ValueError, match="empty negative pool"):
        NegativeSampler(pairs, split.num_items, pool=torch.zeros(0, dtype=torch.long))


# Users u0..u5 with 1, 2, 3, 5, 12 and 25 pairs; user u holds products 0..n-1 at times
# 10 * product (given in shuffled order), so the latest pair is the highest product.
SIZES = (1, 2, 3, 5, 12, 25)
# kind -> per-user (train, valid, test) counts.
KIND_COUNTS = {
    "temporal": [(1, 0, 0), (2, 0, 0), (1, 1, 1), (3, 1, 1), (10, 1, 1), (21, 2, 2)],
    "random": [(1, 0, 0), (2, 0, 0), (1, 1, 1), (3, 1, 1), (10, 1, 1), (21, 2, 2)],
    "temporal_ratio": [(1, 0, 0), (2, 0, 0), (3, 0, 0), (5, 0, 0), (10, 1, 1), (21, 2, 2)],
    "leave_one_out": [(1, 0, 0), (2, 0, 0), (1, 1, 1), (3, 1, 1), (10, 1, 1), (23, 1, 1)],
}


def _sized_snapshot():
    rng = np.random.default_rng(5)
    events = [(u, p, 10 * p, 1.0) for u, n in enumerate(SIZES) for p in rng.permutation(n)]
    return tiny_snapshot(events, len(SIZES), max(SIZES))


def _per_user(split: Split) -> list[tuple[int, int, int]]:
    counts = [split.frame(s).groupby("user").size() for s in ("train", "valid", "test")]
    return [tuple(int(c.get(u, 0)) for c in counts) for u in range(len(SIZES))]


@pytest.mark.parametrize("kind", list(KIND_COUNTS))
def test_split_kinds_give_exact_per_user_counts(kind):
    split = make_split(_sized_snapshot(), kind=kind)
    assert split.kind == kind
    assert _per_user(split) == KIND_COUNTS[kind]
    if kind == "random":
        return
    # Ordered kinds: test holds each user's latest pairs, valid the ones just before.
    for u, n in enumerate(SIZES):
        _, n_valid, n_test = KIND_COUNTS[kind][u]
        test = sorted(split.test.loc[split.test["user"] == u, "product"])
        valid = sorted(split.valid.loc[split.valid["user"] == u, "product"])
        assert test == list(range(n - n_test, n))
        assert valid == list(range(n - n_test - n_valid, n - n_test))


def test_auto_split_is_temporal_with_at_least_one_pair_per_stage():
    split = make_split(_sized_snapshot())
    assert (split.kind, _per_user(split)) == ("temporal", KIND_COUNTS["temporal"])


def test_min_one_rule_respects_a_zero_ratio_and_keeps_a_training_pair():
    snap = _sized_snapshot()
    no_valid = make_split(snap, kind="temporal", valid_ratio=0.0)
    assert [v for _, v, _ in _per_user(no_valid)] == [0] * len(SIZES)
    assert [t for _, _, t in _per_user(no_valid)] == [0, 0, 1, 1, 1, 2]
    # test_ratio 0.8 on 3 pairs: floor(2.4) = 2 to test, valid's minimum gives way to train.
    heavy = make_split(snap, kind="temporal", valid_ratio=0.1, test_ratio=0.8)
    assert _per_user(heavy)[2] == (1, 0, 2)
    assert _per_user(heavy)[3] == (1, 0, 4)


def test_temporal_ties_are_broken_by_product_row():
    # Three pairs at the same time: the highest product row is the "latest".
    split = make_split(tiny_snapshot([(0, p, 7, 1.0) for p in (2, 0, 1)], 1, 3), "temporal")
    assert (split.train["product"].tolist(), split.valid["product"].tolist(),
            split.test["product"].tolist()) == ([0], [1], [2])


def test_history_adds_validation_before_a_time_ordered_test_only():
    split = make_split(_sized_snapshot(), "temporal")
    assert split.history("valid") is split.train
    test_history = split.history("test")
    assert len(test_history) == len(split.train) + len(split.valid)
    assert set(map(tuple, test_history[["user", "product"]].to_numpy())) == set(
        map(tuple, split.train[["user", "product"]].to_numpy())) | set(
        map(tuple, split.valid[["user", "product"]].to_numpy()))
    assert not set(map(tuple, test_history[["user", "product"]].to_numpy())) & set(
        map(tuple, split.test[["user", "product"]].to_numpy()))  # never a test pair
    shuffled = make_split(_sized_snapshot(), "random")
    assert shuffled.history("test") is shuffled.train  # random valid pairs are not "before"
    with pytest.raises(ValueError, match="unknown stage"):
        split.history("future")


def test_ml100k_temporal_split_is_unchanged(ml100k_snapshot):
    # Every ml-100k user has >= 20 ratings: the at-least-one rule never applies.
    split = make_split(ml100k_snapshot, kind="temporal")
    assert (len(split.train), len(split.valid), len(split.test)) == (80_808, 9_596, 9_596)
    ratio = make_split(ml100k_snapshot, kind="temporal_ratio")
    for stage in ("train", "valid", "test"):
        assert split.frame(stage).equals(ratio.frame(stage))
    assert make_split(ml100k_snapshot).kind == "temporal"


@pytest.fixture(scope="module")
def scientific_snapshot(shared_data):
    from kgrec.kg.extract.scientific import read_scientific
    from kgrec.kg.snapshot import snapshot_from_tables

    return snapshot_from_tables(read_scientific(shared_data / "amazon-scientific"))


def test_scientific_split_evaluates_every_user_with_three_pairs(shared_data, scientific_snapshot):
    import json

    inter = json.loads((shared_data / "amazon-scientific" / "Scientific.inter.json").read_text())
    lengths = pd.Series({u: len(set(items)) for u, items in inter.items()})
    split = make_split(scientific_snapshot)
    assert split.kind == "temporal"  # list positions are the timestamps
    assert split.valid["user"].nunique() == split.test["user"].nunique() == (lengths >= 3).sum()
    assert (lengths >= 3).sum() == 8_317
    # max(1, floor(0.1 n)) per stage: 2 or more only for the users with >= 20 pairs.
    n_held = int(lengths.map(lambda n: max(1, n // 10)).sum())
    assert (len(split.train), len(split.valid), len(split.test)) == (
        58_492 - 2 * n_held, n_held, n_held) == (41_592, 8_450, 8_450)
    # RecBole's pure ratio split evaluates only the users with >= 10 pairs.
    ratio = make_split(scientific_snapshot, kind="temporal_ratio")
    assert ratio.test["user"].nunique() == ratio.valid["user"].nunique() == 1_099
    assert (lengths >= 10).sum() == 1_099
    assert (len(ratio.train), len(ratio.valid), len(ratio.test)) == (56_028, 1_232, 1_232)
    loo = make_split(scientific_snapshot, kind="leave_one_out")
    assert (len(loo.train), len(loo.valid), len(loo.test)) == (41_858, 8_317, 8_317)
