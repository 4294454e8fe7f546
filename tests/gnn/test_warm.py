"""Warm starts (:mod:`kgrec.gnn.warm`): a previous run's rows reach the rows of the same ids in
a grown, reordered graph; new rows keep their initialisation; training goes on from where the
previous run stopped."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from kgrec.errors import ModelError
from kgrec.gnn.models import build_model
from kgrec.gnn.result import TrainResult
from kgrec.gnn.train import train_model
from kgrec.gnn.warm import ROW_KEYS_FILE, WarmStart, node_keys, row_keys
from kgrec.ids import IdMap
from kgrec.settings import TrainSettings
from tests.gnn.conftest import random_graph

SETTINGS = {"dim": 8, "layers": 2, "epochs": 2, "batch_size": 64, "lr": 0.05,
            "text_features": False, "device": "cpu"}


def reversed_ids(snapshot):
    """``snapshot`` with its users and products in reverse id order (rows keep their edges)."""
    maps = dict(snapshot.id_maps)
    for nt in ("user", "product"):
        maps[nt] = IdMap(nt, list(reversed(maps[nt].ids)))
    return dataclasses.replace(snapshot, id_maps=maps)


@pytest.mark.parametrize("model", ["gat", "mf", "lightgcn"])
def test_each_row_reaches_the_row_of_its_id_and_new_rows_stay_fresh(tmp_path, model) -> None:
    old_snap, old_split = random_graph(12, 8, draws=60, seed=1)
    settings = TrainSettings(model=model, **SETTINGS)
    old = train_model(old_snap, old_split, settings, progress=False)
    old.save(tmp_path)
    new_snap, new_split = random_graph(15, 10, draws=80, seed=2)  # 3 users, 2 products more
    new_snap = reversed_ids(new_snap)
    new = build_model(new_snap, new_split, settings)
    fresh = {k: v.clone() for k, v in new.state_dict().items()}
    report = WarmStart.load(tmp_path).apply(new, row_keys(new, new_snap))

    old_keys, new_keys = row_keys(old.model, old_snap), row_keys(new, new_snap)
    old_state, new_state = old.model.state_dict(), new.state_dict()
    for name in old_keys:
        where = {key: row for row, key in enumerate(old_keys[name])}
        for row, key in enumerate(new_keys[name]):
            want = old_state[name][where[key]] if key in where else fresh[name][row]
            assert torch.equal(new_state[name][row], want), (name, key)
    tables = {"gat": "node.weight", "mf": "user.weight", "lightgcn": "lightgcn.embedding.weight"}
    hit, total = report.matched[tables[model]]
    assert (hit, total) == {"gat": (20, 25), "mf": (12, 15), "lightgcn": (20, 25)}[model]
    if model == "gat":  # the category and the relations (both directions of both) too
        assert report.matched["entity.weight"] == (1, 1)
        assert report.matched["rel_emb"] == (4, 4)
        assert "gate" in report.copied and report.fresh == []


def test_row_keys_name_each_node_by_type_and_id() -> None:
    snapshot, _ = random_graph(3, 2, draws=6, seed=1)
    assert list(node_keys(snapshot)) == ["user:u0", "user:u1", "user:u2", "product:p0",
                                         "product:p1", "category:c0"]


@pytest.fixture(scope="module")
def converged(ml100k_snapshot, ml100k_split):
    settings = TrainSettings(model="lightgcn", dim=32, epochs=16, eval_every=2, device="cpu")
    return train_model(ml100k_snapshot, ml100k_split, settings, progress=False), settings


@pytest.mark.slow  # trains ml-100k to 16 epochs first (module fixture)
def test_a_warm_start_begins_where_the_previous_run_ended(tmp_path, converged, ml100k_snapshot,
                                                           ml100k_split) -> None:
    previous, settings = converged
    previous.save(tmp_path)
    short = dataclasses.replace(settings, epochs=1, eval_every=1)
    cold = train_model(ml100k_snapshot, ml100k_split, short, progress=False)
    warm = train_model(ml100k_snapshot, ml100k_split, short, progress=False,
                       warm_start=WarmStart.load(tmp_path))
    best = max(h["valid"]["ndcg@20"] for h in previous.history if "valid" in h)
    first_warm, first_cold = (r.history[0]["valid"]["ndcg@20"] for r in (warm, cold))
    assert first_warm >= 0.95 * best > 1.2 * first_cold
    assert warm.applied["warm_start"]["matched"]["lightgcn.embedding.weight"] == [
        ml100k_split.num_users + ml100k_split.num_items] * 2
    assert "warm-started from" in warm.summary() and "warm_start" not in cold.applied


@pytest.mark.slow  # trains ml-100k to 16 epochs first (module fixture)
def test_a_run_without_row_keys_cannot_warm_start(tmp_path, converged) -> None:
    previous, _ = converged
    previous.save(tmp_path)
    (tmp_path / ROW_KEYS_FILE).unlink()
    with pytest.raises(ModelError, match="row_keys.parquet missing"):
        WarmStart.load(tmp_path)


@pytest.mark.slow  # trains ml-100k to 16 epochs first (module fixture)
def test_a_loaded_run_saved_again_keeps_its_parameters_and_row_keys(tmp_path, converged):
    """The fusion stage loads a run and saves it again: what a warm start reads must survive."""
    previous, _ = converged
    previous.save(tmp_path / "trained")
    TrainResult.load(tmp_path / "trained").save(tmp_path / "again")
    warm = WarmStart.load(tmp_path / "again")
    state = previous.model.state_dict()
    assert warm.state.keys() == state.keys()
    assert all(torch.equal(warm.state[k], state[k]) for k in state)
    assert list(warm.keys["lightgcn.embedding.weight"][:2]) == [
        f"user:{u}" for u in previous.user_embeddings.ids.ids[:2]]
