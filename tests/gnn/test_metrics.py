"""Ranking metrics against values computed by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from kgrec.gnn.metrics import (
    cold_start_items,
    draw_users,
    evaluate_ranking,
    format_table,
    long_tail_items,
)
from kgrec.gnn.split import Split


def _frame(pairs: list[tuple[int, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {"user": [u for u, _ in pairs], "product": [i for _, i in pairs], "weight": 1.0,
         "value": 1.0, "time": -1}
    ).astype({"user": "int64", "product": "int64"})


# 2 users x 6 products. Training: u0 {0, 2}, u1 {0, 1}; item counts 2, 1, 1, 0, 0, 0.
SPLIT = Split(_frame([(0, 0), (0, 2), (1, 0), (1, 1)]), _frame([(1, 3)]),
              _frame([(0, 3), (0, 5), (1, 4)]), 2, 6, "given")
SCORES = torch.tensor([[9.0, 0.0, 8.0, 7.0, 1.0, 2.0], [9.0, 8.0, 0.0, 5.0, 6.0, 7.0]])


def score(users: torch.Tensor) -> torch.Tensor:
    return SCORES[users]


def test_overall_metrics_match_hand_computation():
    # u0 ranks (train 0, 2 excluded) 3 > 5 > 4 > 1: both positives in the top 2.
    # u1 ranks (train 0, 1 and valid 3 excluded) 5 > 4 > 2: its positive 4 is second.
    out = evaluate_ranking(score, SPLIT, stage="test", k=2)["overall"]
    ndcg_u1 = (1 / math.log2(3)) / 1.0
    assert out["recall@2"] == pytest.approx(1.0)
    assert out["ndcg@2"] == pytest.approx((1.0 + ndcg_u1) / 2)
    assert out["hit@2"] == pytest.approx(1.0)
    assert out["mrr"] == pytest.approx((1.0 + 0.5) / 2)
    # AUC: u0's positives beat both negatives {1, 4}; u1's positive 4 beats 2 but not 5.
    assert out["auc"] == pytest.approx((1.0 + 0.5) / 2)
    assert out["coverage@2"] == pytest.approx(3 / 6)  # {3, 5, 4} recommended
    assert (out["users"], out["pairs"]) == (2, 3)
    k1 = evaluate_ranking(score, SPLIT, stage="test", k=1)["overall"]
    assert k1["recall@1"] == pytest.approx((0.5 + 0.0) / 2)
    assert k1["ndcg@1"] == pytest.approx(0.5)


def test_valid_stage_does_not_exclude_valid_items():
    # Stage valid: u1's truth is {3}; only training items are excluded: 5 > 4 > 3 > 2.
    out = evaluate_ranking(score, SPLIT, stage="valid", k=3)["overall"]
    assert out["users"] == 1
    assert out["recall@3"] == pytest.approx(1.0)
    assert out["ndcg@3"] == pytest.approx(1 / math.log2(4))
    assert out["mrr"] == pytest.approx(1 / 3)
    assert out["auc"] == pytest.approx(1 / 3)


def test_slices_and_candidates():
    tail = long_tail_items(SPLIT)
    # 80% of 4 interactions = 3.2: the head is items 0, 1, 2 (cumulative 2, 3, 4).
    assert tail.tolist() == [False, False, False, True, True, True]
    assert cold_start_items(SPLIT).tolist() == [False, False, False, True, True, True]
    # Restrict candidates to {1, 4, 5}: u0 ranks 5 > 4 > 1 (truth {5}), u1 ranks 5 > 4 (truth {4}).
    out = evaluate_ranking(score, SPLIT, stage="test", k=1,
                           candidates=torch.tensor([1, 4, 5]))["overall"]
    assert out["recall@1"] == pytest.approx(0.5)
    assert out["mrr"] == pytest.approx(0.5)
    assert out["auc"] == pytest.approx((1.0 + 0.0) / 2)
    assert out["coverage@1"] == pytest.approx(1 / 3)
    mask = torch.zeros(6, dtype=torch.bool)
    mask[[1, 4, 5]] = True
    assert evaluate_ranking(score, SPLIT, stage="test", k=1, candidates=mask)["overall"] == out


def test_long_tail_head_covers_eighty_percent():
    counts = [50, 30, 10, 5, 5, 0]  # cumulative 50, 80 -> the head is items 0 and 1
    pairs = [(u, i) for i, c in enumerate(counts) for u in range(c)]
    split = Split(_frame(pairs), _frame([]), _frame([]), 50, 6, "given")
    assert long_tail_items(split).tolist() == [False, False, True, True, True, True]
    assert cold_start_items(split).tolist() == [False] * 5 + [True]


def test_ties_count_half_in_auc_and_bad_shapes_are_errors():
    flat = torch.zeros(2, 6)
    out = evaluate_ranking(lambda u: flat[u], SPLIT, stage="test", k=2)["overall"]
    assert out["auc"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"score_fn returned shape \(2, 5\)"):
        evaluate_ranking(lambda u: torch.zeros(len(u), 5), SPLIT)
    with pytest.raises(ValueError, match="stage must be"):
        evaluate_ranking(score, SPLIT, stage="train")


def test_auc_can_be_skipped_without_changing_the_rest():
    full = evaluate_ranking(score, SPLIT, stage="test", k=2)["overall"]
    quick = evaluate_ranking(score, SPLIT, stage="test", k=2, auc=False)["overall"]
    assert "auc" not in quick
    assert quick == {name: value for name, value in full.items() if name != "auc"}


def test_empty_slice_gives_nan_metrics_and_prints_na():
    # Test pairs only on trained products (u0 -> 1, u1 -> 2): no cold-start pair at all.
    warm = Split(SPLIT.train, _frame([]), _frame([(0, 1), (1, 2)]), 2, 6, "given")
    out = evaluate_ranking(score, warm, stage="test", k=2)
    cold = out["cold_start"]
    assert (cold["users"], cold["pairs"]) == (0.0, 0.0)
    for name in ("recall@2", "ndcg@2", "hit@2", "mrr", "auc"):
        assert math.isnan(cold[name]), name
    # Coverage needs no slice user: u0's top 2 is {3, 5}, u1's {5, 4}: every cold product.
    assert cold["coverage@2"] == pytest.approx(1.0)
    # Both users miss (u0 ranks 3 > 5 > 4 > 1, u1 5 > 4 > 3 > 2): a real zero, not n/a.
    assert (out["overall"]["recall@2"], out["overall"]["users"]) == (0.0, 2.0)
    table = format_table({"mf": out}, k=2)
    lines = table.splitlines()
    assert lines[2] == f"{'mf':<12} {'overall':<16}" + f"{0.0:>12.4f}" * 4 + (
        f"{out['overall']['auc']:>12.4f}{out['overall']['coverage@2']:>12.4f}{2:>12}"
    )
    assert lines[4] == f"{'mf':<12} {'cold_start':<16}" + f"{'n/a':>12}" * 5 + (
        f"{1.0:>12.4f}{0:>12}"
    )
    assert "nan" not in table
    # A stage without any user: nothing ranked, so coverage is n/a too; AUC skipped stays out.
    empty = evaluate_ranking(score, warm, stage="valid", k=2, auc=False)["overall"]
    assert "auc" not in empty and empty["users"] == 0.0
    assert all(math.isnan(empty[n]) for n in ("recall@2", "ndcg@2", "hit@2", "mrr", "coverage@2"))
    row = format_table({"mf": {"overall": empty}}, k=2).splitlines()[2]
    assert row == f"{'mf':<12} {'overall':<16}" + f"{'n/a':>12}" * 6 + f"{0:>12}"


def test_ties_rank_at_the_mid_rank_never_in_the_targets_favour():
    # Constant scores. u0: candidates {1, 3, 4, 5} (0, 2 trained), positives 3 and 5, each
    # with 3 others tied: mid-rank 1.5 (position 2.5). u1: candidates {2, 4, 5}, positive 4
    # with 2 others tied: mid-rank 1.0 (position 2).
    flat = torch.zeros(2, 6)
    k2 = evaluate_ranking(lambda u: flat[u], SPLIT, stage="test", k=2)["overall"]
    assert k2["hit@2"] == pytest.approx(0.5)  # u1 only: 2.5 lies outside the top 2
    assert k2["ndcg@2"] == pytest.approx((0 + 1 / math.log2(3)) / 2)
    assert k2["mrr"] == pytest.approx((0 + 1 / 2) / 2)
    k3 = evaluate_ranking(lambda u: flat[u], SPLIT, stage="test", k=3)["overall"]
    ideal_u0 = 1 + 1 / math.log2(3)
    assert k3["ndcg@3"] == pytest.approx((2 / math.log2(3.5) / ideal_u0 + 1 / math.log2(3)) / 2)
    assert k3["recall@3"] == pytest.approx(1.0)
    assert k3["mrr"] == pytest.approx((1 / 2.5 + 1 / 2) / 2)


def test_without_ties_the_metrics_equal_pyg_link_prediction_metrics():
    from torch_geometric.metrics import LinkPredMRR, LinkPredNDCG, LinkPredRecall

    gen = torch.Generator().manual_seed(0)
    n_users, n_items, k = 40, 30, 5
    scores = torch.rand(n_users, n_items, generator=gen)
    test = [(u, i) for u in range(n_users) for i in range(n_items)
            if torch.rand(1, generator=gen) < 0.15]
    split = Split(_frame([]), _frame([]), _frame(test), n_users, n_items, "given")
    out = evaluate_ranking(lambda u: scores[u], split, stage="test", k=k, slices=("overall",))
    users = sorted({u for u, _ in test})
    row = {u: r for r, u in enumerate(users)}
    label = torch.tensor([[row[u] for u, _ in test], [i for _, i in test]])
    topk = scores[users].topk(k, dim=1).indices
    for name, metric in (("ndcg@5", LinkPredNDCG(k)), ("recall@5", LinkPredRecall(k)),
                         ("mrr", LinkPredMRR(k))):
        metric.update(topk, label)
        assert out["overall"][name] == pytest.approx(float(metric.compute()), abs=1e-6), name


def test_auc_equals_the_pairwise_count_with_ties_several_positives_and_exclusions():
    # 30 users x 40 products, scores on 5 levels (many ties), 1-6 test positives each and
    # 3 training products excluded: AUC against the brute-force pairwise count.
    gen = torch.Generator().manual_seed(3)
    users, items = 30, 40
    scores = torch.randint(0, 5, (users, items), generator=gen).float()
    train, test = [], []
    for u in range(users):
        picks = torch.randperm(items, generator=gen)[: 3 + 1 + u % 6].tolist()
        train += [(u, i) for i in picks[:3]]
        test += [(u, i) for i in picks[3:]]
    split = Split(_frame(train), _frame([]), _frame(test), users, items, "given")
    out = evaluate_ranking(lambda u: scores[u], split, stage="test", k=5)["overall"]
    expected = []
    for u in range(users):
        positives = [i for uu, i in test if uu == u]
        negatives = [i for i in range(items)
                     if i not in positives and (u, i) not in set(train)]
        pairs = [float(scores[u, p] > scores[u, n]) + 0.5 * float(scores[u, p] == scores[u, n])
                 for p in positives for n in negatives]
        expected.append(sum(pairs) / len(pairs))
    assert out["auc"] == pytest.approx(sum(expected) / users, abs=1e-12)


def _random_split(n_users: int = 300, n_items: int = 40, seed: int = 0) -> Split:
    """Each user: 3 training and 1-3 test products, drawn without repeats."""
    rng = torch.Generator().manual_seed(seed)
    train, test = [], []
    for u in range(n_users):
        items = torch.randperm(n_items, generator=rng)[: 3 + 1 + u % 3].tolist()
        train += [(u, i) for i in items[:3]]
        test += [(u, i) for i in items[3:]]
    return Split(_frame(train), _frame([]), _frame(test), n_users, n_items, "given")


def test_a_sampled_evaluation_ranks_the_drawn_users_and_reports_their_standard_errors():
    split = _random_split()
    table = torch.randn(300, 40, generator=torch.Generator().manual_seed(1))

    def random_score(users: torch.Tensor) -> torch.Tensor:
        return table[users]

    sampled = evaluate_ranking(random_score, split, k=5, sample_users=80, seed=7)["overall"]
    drawn, total = draw_users(torch.as_tensor(split.test["user"].to_numpy()), 80, seed=7)
    assert (sampled["users"], sampled["sampled_from"], total) == (80.0, 300.0, 300)
    # The same as a full evaluation of a split holding only the drawn users' test pairs.
    only = split.test[split.test["user"].isin(drawn.tolist())]
    sub = Split(split.train, split.valid, only, 300, 40, "given")
    full_of_drawn = evaluate_ranking(random_score, sub, k=5)["overall"]
    for name in ("recall@5", "ndcg@5", "hit@5", "mrr", "auc", "pairs"):
        assert sampled[name] == pytest.approx(full_of_drawn[name]), name
    assert "se:ndcg@5" not in full_of_drawn and "sampled_from" not in full_of_drawn
    # Standard error: per-user NDCG@5 (each user evaluated alone), sd / sqrt(n) times the
    # finite-population correction sqrt((N - n) / (N - 1)).
    per_user = torch.tensor([evaluate_ranking(
        random_score, Split(split.train, split.valid, only[only["user"] == u], 300, 40,
                            "given"), k=5, auc=False)["overall"]["ndcg@5"]
        for u in drawn.tolist()], dtype=torch.float64)
    expected = float(per_user.std()) / math.sqrt(80) * math.sqrt((300 - 80) / 299)
    assert sampled["se:ndcg@5"] == pytest.approx(expected)
    assert float(per_user.mean()) == pytest.approx(sampled["ndcg@5"])
    # Every user drawn, or a sample at least as large as the users: the exact evaluation.
    whole = evaluate_ranking(random_score, split, k=5)
    assert evaluate_ranking(random_score, split, k=5, sample_users=300) == whole
    assert whole["overall"]["users"] == 300.0
    # The table says which users it ranked.
    footer = format_table({"gat": {"overall": sampled}}, k=5).splitlines()[-1]
    assert footer == (f"Users: a seeded sample of 80 of 300 (train.eval_users); standard "
                      f"error of ndcg@5 overall {expected:.4f}-{expected:.4f}")


def test_the_report_shows_a_sampled_evaluation_with_its_standard_errors():
    from kgrec.report import _sample_note, metrics_frame

    split = _random_split()
    table = torch.randn(300, 40, generator=torch.Generator().manual_seed(1))
    sampled = evaluate_ranking(lambda u: table[u], split, k=5, sample_users=80, seed=7)
    row = metrics_frame({"gat": sampled}, k=5).iloc[0]
    overall = sampled["overall"]
    assert row["overall ndcg@5"] == f"{overall['ndcg@5']:.4f} ± {overall['se:ndcg@5']:.4f}"
    assert _sample_note({"gat": sampled}) == (
        " Ranked for a seeded sample of 80 of 300 test users (train.eval_users), the same "
        "users for every model; ± is the standard error.")
    whole = evaluate_ranking(lambda u: table[u], split, k=5)
    assert metrics_frame({"gat": whole}, k=5).iloc[0]["overall ndcg@5"] == (
        f"{whole['overall']['ndcg@5']:.4f}")
    assert _sample_note({"gat": whole}) == ""
