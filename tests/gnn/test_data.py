"""Splits, weights, RecBole export, the leak-free training graph and the negative sampler."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from gnn.data import (
    INTERACTS,
    NegativeSampler,
    Split,
    export_recbole,
    homogeneous_graph,
    interaction_table,
    item_cold_start_split,
    load_lightgcn_split,
    make_split,
    negative_pool,
    training_graph,
)
from gnn.metrics import cold_start_items
from kg import schema
from kg.errors import InputError
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
