"""fusion.pools: the fit's sampled, pooled validation NDCG against the evaluator of every model,
on hand-made cases, on MovieLens-100K (real MiniLM) and on a catalogue too large for a dense
users x products matrix."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
import torch

from kgrec.fusion.alpha import AlphaFunction
from kgrec.fusion.blend import Blend
from kgrec.fusion.fit import Sources, build_text_side, fit_job, job_candidates
from kgrec.fusion.pools import BlendPools
from kgrec.fusion.score import FusedScorer, candidate_score_fn
from kgrec.fusion.text import product_text, text_confidence
from kgrec.gnn.metrics import draw_users, evaluate_ranking, stage_pairs
from kgrec.gnn.split import Split, make_split
from kgrec.gnn.train import train_model
from kgrec.settings import TrainSettings


def _split(train: list[tuple[int, int]], valid: list[tuple[int, int]], users: int,
           items: int) -> Split:
    def frame(pairs: list[tuple[int, int]]) -> pd.DataFrame:
        return pd.DataFrame({"user": [u for u, _ in pairs], "product": [i for _, i in pairs],
                             "weight": 1.0, "value": 1.0, "time": -1})

    return Split(frame(train), frame(valid), frame([]), users, items, "random")


def test_hand_made_pool_ndcg_and_certificate() -> None:
    # One user, 5 products; product 0 is a training product (excluded), 3 the validation one.
    split = _split([(0, 0)], [(0, 3)], users=1, items=5)
    g_items = torch.tensor([[9.0], [4.0], [3.0], [2.0], [1.0]])  # gnn order 1 2 3 4
    t_items = torch.tensor([[0.0], [0.0], [1.0], [5.0], [2.0]])  # text order 3 4 2 1
    sources = {"g": (torch.ones(1, 1), g_items), "t": (torch.ones(1, 1), t_items)}
    pools = BlendPools(sources, split, k=1, pool=1, normalise_method="none")
    # Pool = gnn's best unexcluded (1) and text's best (3).
    assert sorted(pools.cols[0].tolist()) == [1, 3]
    # k=1: text alone ranks the positive first (NDCG 1); the GNN alone does not (0).
    assert pools.ndcg("t") == 1.0 and pools.ndcg("g") == 0.0
    # alpha 0.5: 1 scores 2.0, 3 scores 3.5; outside, 2 scores 2.0 and 4 1.5, <= the bound
    # 0.5 * 3 + 0.5 * 2 = 2.5 (thresholds: the best left out, gnn 3 and text 2): exact.
    ndcg, exact = pools.per_user("g", Blend(0.5, "none", "t"))
    assert ndcg.tolist() == [1.0] and exact.tolist() == [True]
    # With k=2 the 2nd pooled score (2.0) is below that bound: not certified exact.
    assert BlendPools(sources, split, k=2, pool=1, normalise_method="none").per_user(
        "g", Blend(0.5, "none", "t"))[1].tolist() == [False]


def test_user_sample_is_seeded_and_counts_the_stage() -> None:
    split = _split([(u, 0) for u in range(50)], [(u, 1 + u % 3) for u in range(50)], 50, 4)
    def sample_stage_users(mask: torch.Tensor, size: int) -> tuple[torch.Tensor, int]:
        return draw_users(stage_pairs(split, "valid", mask)[0], size, seed=3)

    mask = torch.ones(4, dtype=torch.bool)
    a, total = sample_stage_users(mask, 10)
    b, _ = sample_stage_users(mask, 10)
    assert total == 50 and a.numel() == 10 and torch.equal(a, b)
    assert torch.equal(a, torch.sort(a).values)
    assert sample_stage_users(mask, 0)[0].numel() == 50
    only_item_1 = torch.tensor([False, True, False, False])
    assert sample_stage_users(only_item_1, 0)[1] == 17  # u % 3 == 0


@pytest.fixture(scope="module")
def ml100k_sources(ml100k_snapshot, text_encoder):
    split = make_split(ml100k_snapshot)
    settings = TrainSettings(model="mf", epochs=8, lr=1e-2, eval_every=100, seed=7,
                             device="cpu")
    result = train_model(ml100k_snapshot, split, settings, progress=False)
    text = text_encoder.encode(product_text(ml100k_snapshot.products))
    side = build_text_side("profile", split, text)
    return split, result.user_embeddings.tensor, result.product_embeddings.tensor, side, \
        text_confidence(ml100k_snapshot.products)


@pytest.mark.slow
@pytest.mark.parametrize("job", ["full", "tail"])
def test_pooled_ndcg_equals_the_full_evaluation_on_ml100k(ml100k_sources, job) -> None:
    split, gu, gi, side, conf = ml100k_sources
    valid_side = side.at_stage(split, "valid")
    candidates = job_candidates(job, split)
    sources = {"gnn": (gu, gi), "text": (valid_side.users, valid_side.items)}
    exhaustive = BlendPools(sources, split, candidates=candidates, pool=0)
    pooled = BlendPools(sources, split, candidates=candidates, pool=200)
    item_alpha = AlphaFunction(0.8, 0.3, 10.0, True).values(split.item_counts(), conf)
    assert pooled.cols.shape[0] == exhaustive.cols.shape[0] > 500
    assert pooled.cols.shape[1] <= 400 < exhaustive.cols.shape[1]
    for alpha in (1.0, 0.5, 0.8, item_alpha):
        scorer = FusedScorer(gu, gi, valid_side.users, valid_side.items, blend=Blend(alpha))
        full = evaluate_ranking(candidate_score_fn(scorer, candidates), split, stage="valid",
                                candidates=candidates, slices=("overall",),
                                auc=False)["overall"]["ndcg@20"]
        blend = Blend(alpha, text="text")
        assert exhaustive.ndcg("gnn", blend) == pytest.approx(full, abs=1e-6)
        report = pooled.report("gnn", blend)
        assert report["exact_share"] > 0.95
        assert pooled.ndcg("gnn", blend) == pytest.approx(full, abs=1e-3)


@pytest.mark.slow
def test_sampled_pooled_fit_picks_the_exhaustive_alpha_on_ml100k(ml100k_sources) -> None:
    split, gu, gi, side, conf = ml100k_sources
    degree = split.item_counts()
    grid = tuple(round(0.1 * i, 1) for i in range(11))

    def fit(**sampling):
        return fit_job("full", Sources(gu, gi, {"profile": side}, degree, conf), split,
                       grid=grid, pivots=(10.0, 100.0), **sampling)

    exhaustive, pooled, sampled = (fit(sample_users=0, pool=0), fit(pool=200),
                                   fit(sample_users=600, pool=200))
    assert exhaustive.validation["exact_share"] == 1.0
    assert exhaustive.validation["sampling_error"] == 0.0
    # Every user fits in the default sample: the pool alone, and it changes nothing.
    assert pooled.validation["fit_users"] == exhaustive.validation["fit_users"] == 943
    assert pooled.validation["exact_share"] > 0.95
    assert pooled.alpha == exhaustive.alpha and pooled.text_side == exhaustive.text_side
    assert pooled.valid_metric == pytest.approx(exhaustive.valid_metric, abs=1e-4)
    # 600 of 943 users: the best constant within a grid step, and the chosen function within
    # two sampling errors of the exhaustive optimum when scored on every user.
    assert sampled.validation["fit_users"] == 600
    assert sampled.validation["stage_users"] == 943
    error = sampled.validation["sampling_error"]
    assert 0 < error < 0.01
    constant = {name: f.by_side["profile"].best_constant[0] for name, f in
                (("sampled", sampled), ("exhaustive", exhaustive))}
    assert abs(constant["sampled"] - constant["exhaustive"]) <= 0.1 + 1e-9
    everyone = BlendPools({"gnn": (gu, gi), "profile": (side.at_stage(split, "valid").users,
                                                        side.items)}, split, pool=0)
    chosen = everyone.ndcg("gnn", Blend(sampled.alpha.values(degree, conf), text="profile"))
    assert exhaustive.valid_metric - 2 * error <= chosen <= exhaustive.valid_metric + 1e-6


MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    import numpy as np, pandas as pd, torch
    from kgrec.fusion.blend import Blend
    from kgrec.fusion.pools import BlendPools
    from kgrec.gnn.split import Split

    users, items, dim = 40_000, 50_000, 32
    rng = np.random.default_rng(0)
    def frame(n):
        return pd.DataFrame({"user": np.repeat(np.arange(users), n),
                             "product": rng.integers(0, items, users * n), "weight": 1.0,
                             "value": 1.0, "time": -1})
    split = Split(frame(3), frame(1), frame(0), users, items, "random")
    gen = torch.Generator().manual_seed(0)
    sources = {name: (torch.randn(users, dim, generator=gen), torch.randn(items, dim,
                                                                          generator=gen))
               for name in ("gnn", "text")}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pools = BlendPools(sources, split, sample_users=3_000, pool=200, block_elements=1 << 22)
    ndcg = pools.ndcg("gnn", Blend(0.5, text="text"))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    json.dump({"growth_mb": (after - before) / 1024, "users": pools.users.numel(),
               "stage_users": pools.total_users, "width": pools.cols.shape[1],
               "ndcg": ndcg}, sys.stdout)
""")


@pytest.mark.slow
def test_fit_memory_stays_bounded_where_the_dense_matrix_would_not_fit() -> None:
    # 40k validation users x 50k products: 8 GB per dense float32 score matrix.
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], capture_output=True,
                         text=True, check=True)
    result = json.loads(out.stdout)
    assert result["stage_users"] == 40_000 and result["users"] == 3_000
    assert 200 <= result["width"] <= 400
    assert 0.0 <= result["ndcg"] < 0.01 and not math.isnan(result["ndcg"])  # random vectors
    # Blocks of 4M scores (16 MB per source), pools of 3,000 x <= 400: far below 300 MB.
    assert result["growth_mb"] < 300
