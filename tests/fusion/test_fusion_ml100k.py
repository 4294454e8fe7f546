"""End to end on MovieLens-100K (real data from the recbole wheel, real MiniLM): the fused
model beats raw text, and the text tower makes item cold start clearly non-zero."""

from __future__ import annotations

import pytest
import torch

from fusion.fit import build_text_side, candidate_score_fn, evaluate, fit_fusion
from fusion.score import FusedScorer, item_degree, popularity_alpha
from fusion.text import product_text
from gnn.data import item_cold_start_split, make_split
from gnn.train import TrainSettings, train_model
from kg.snapshot import GraphSnapshot

pytestmark = pytest.mark.slow
GRID = (0.0, 0.5, 0.7, 0.9, 1.0)


@pytest.fixture(scope="module")
def ml100k(ml100k_snapshot) -> GraphSnapshot:
    return ml100k_snapshot


@pytest.fixture(scope="module")
def item_text(ml100k, text_encoder) -> torch.Tensor:
    return text_encoder.encode(product_text(ml100k.products))


def _gnn(snapshot, split):
    # A few MF epochs: enough collaborative signal, seconds on a CPU.
    settings = TrainSettings(model="mf", epochs=8, lr=1e-2, eval_every=100, seed=7,
                             device="cpu")
    result = train_model(snapshot, split, settings, progress=False)
    return result.user_embeddings.tensor, result.product_embeddings.tensor


def test_fused_tower_beats_text_and_matches_gnn(ml100k, item_text) -> None:
    split = make_split(ml100k)
    gu, gi = _gnn(ml100k, split)
    profile = build_text_side("profile", split, item_text)
    tower = build_text_side("tower", split, item_text, tower_epochs=10)
    fit = fit_fusion(gu, gi, tower, split, grid=GRID, pivots=(20.0,))

    def ndcg(users, items, alpha) -> float:
        scorer = FusedScorer(gu, gi, users, items, alpha=alpha)
        return evaluate(scorer, split, slices=("overall",))["overall"]["ndcg@20"]

    text_only = ndcg(profile.users, profile.items, 0.0)
    gnn_only = ndcg(tower.users, tower.items, 1.0)
    fused = ndcg(tower.users, tower.items, fit.alpha.best)
    assert 0.0 < fit.alpha.best < 1.0
    assert fused > 2 * text_only
    assert fused >= gnn_only - 0.005  # fitted on valid: never clearly below the GNN on test
    assert len(fit.alpha.curve) == len(GRID)


def test_item_cold_start_is_clearly_above_zero(ml100k, item_text) -> None:
    split = item_cold_start_split(ml100k)
    gu, gi = _gnn(ml100k, split)
    tower = build_text_side("tower", split, item_text, tower_epochs=10)
    cold = torch.nonzero(item_degree(split.pairs("train"), split.num_items) == 0).flatten()

    def ndcg(alpha) -> float:
        fn = candidate_score_fn(FusedScorer(gu, gi, tower.users, tower.items, alpha=alpha))
        return evaluate(fn, split, slices=("overall",))["overall"]["ndcg@20"]

    gnn_only = ndcg(1.0)
    pop = ndcg(popularity_alpha(item_degree(split.pairs("train"), split.num_items), 0.7, 20.0))
    assert len(cold) >= 0.1 * split.num_items * 0.9
    assert gnn_only < 0.01  # a collaborative model cannot rank products it never saw
    assert pop > 0.03 and pop > 5 * max(gnn_only, 1e-3)
