"""benchmarks/eval_recommendations.py: the independent Recall/NDCG of a recommendations file."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "eval_recommendations", REPO / "benchmarks" / "eval_recommendations.py"
)
assert _spec is not None and _spec.loader is not None
er = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(er)


def _recs(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "product_id", "rank"])


def _pairs(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "product_id"])


#: a: test {x, y}, hits at ranks 1 and 3; b: test {w}, hit at rank 2; c: three test items and
#: no recommendations (counts as 0); d: recommendations but no test pair (ignored).
RECS = _recs([("a", "x", 1), ("a", "z", 2), ("a", "y", 3), ("b", "q", 1), ("b", "w", 2),
              ("d", "x", 1)])
TEST = _pairs([("a", "x"), ("a", "y"), ("b", "w"), ("c", "v"), ("c", "t"), ("c", "s")])


def test_hand_computed_three_users() -> None:
    res = er.evaluate(RECS, TEST, k=20)
    # a: recall 2/2; DCG 1/log2(2) + 1/log2(4) = 1.5, IDCG 1 + 1/log2(3) -> 0.919721
    # b: recall 1/1; DCG 1/log2(3) = 0.630930, IDCG 1; c: 0 and 0.
    assert res["recall@20"] == pytest.approx((1 + 1 + 0) / 3)
    assert res["ndcg@20"] == pytest.approx((0.919721 + 0.630930) / 3, abs=1e-6)
    assert res["ndcg@20"] == pytest.approx(
        (1.5 / (1 + 1 / math.log2(3)) + 1 / math.log2(3)) / 3, rel=1e-12)
    assert res["users"] == 3
    assert res["users_without_recommendations"] == 1
    assert res["test_pairs"] == 6 and res["hits"] == 3


def test_cutoff_one_and_recall_denominator() -> None:
    res = er.evaluate(RECS, TEST, k=1)
    # a: rank 1 hits; recall 1/|T_a| = 1/2 (not 1/min(2, 1)); IDCG over min(2, 1) = 1 -> 1.
    assert res["recall@1"] == pytest.approx(0.5 / 3)
    assert res["ndcg@1"] == pytest.approx(1 / 3)


def test_rejects_duplicates_and_bad_ranks(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    _recs([("a", "x", 1), ("a", "x", 2)]).to_csv(path, index=False)
    with pytest.raises(ValueError, match="duplicate user_id/product_id"):
        er.read_recommendations(path)
    _recs([("a", "x", 0)]).to_csv(path, index=False)
    with pytest.raises(ValueError, match="ranks start at 1"):
        er.read_recommendations(path)


def test_agrees_with_kgrec_evaluate_ranking() -> None:
    from kgrec.gnn.metrics import evaluate_ranking
    from kgrec.gnn.split import Split

    rng = np.random.default_rng(7)
    n_users, n_items, k = 40, 60, 20
    stages: dict[str, list[tuple[int, int]]] = {"train": [], "valid": [], "test": []}
    for u in range(n_users):
        items = rng.permutation(n_items)[: rng.integers(3, 30)]
        n_test = rng.integers(1, max(2, len(items) // 3))
        stages["test"] += [(u, int(i)) for i in items[:n_test]]
        stages["valid"] += [(u, int(i)) for i in items[n_test : n_test + 1]]
        stages["train"] += [(u, int(i)) for i in items[n_test + 1 :]]
    frames = {s: pd.DataFrame(p, columns=["user", "product"]).assign(
        weight=1.0, value=1.0, time=-1) for s, p in stages.items()}
    split = Split(frames["train"], frames["valid"], frames["test"], n_users, n_items, "given")
    scores = torch.from_numpy(rng.standard_normal((n_users, n_items)).astype("float32"))
    ref = evaluate_ranking(lambda u: scores[u], split, stage="test", k=k,
                           slices=("overall",), auc=False)["overall"]
    masked = scores.clone()
    for s in ("train", "valid"):
        rows, cols = frames[s]["user"].to_numpy(copy=True), frames[s]["product"].to_numpy(copy=True)
        masked[torch.from_numpy(rows), torch.from_numpy(cols)] = -float("inf")
    top = masked.topk(k, dim=1).indices.numpy()
    recs = _recs([(f"u{u}", f"p{i}", r + 1) for u in range(n_users)
                  for r, i in enumerate(top[u])])
    test = _pairs([(f"u{u}", f"p{i}") for u, i in stages["test"]])
    ours = er.evaluate(recs, test, k=k)
    assert ours["users"] == ref["users"] == n_users
    assert ours[f"recall@{k}"] == pytest.approx(ref[f"recall@{k}"], abs=1e-6)
    assert ours[f"ndcg@{k}"] == pytest.approx(ref[f"ndcg@{k}"], abs=1e-6)
    assert ours["hits"] > 0


def test_cli_reads_files_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recs_path, test_path = tmp_path / "recs.parquet", tmp_path / "d.test.inter"
    RECS.to_parquet(recs_path, index=False)
    TEST.rename(columns={"user_id": "user_id:token", "product_id": "item_id:token"}).assign(
        **{"rating:float": 1.0}).to_csv(test_path, sep="\t", index=False)
    train_path = tmp_path / "d.train.inter"
    pd.DataFrame({"user_id:token": ["a"], "item_id:token": ["z"]}).to_csv(
        train_path, sep="\t", index=False)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"m": {"overall": {"recall@20": 2 / 3, "ndcg@20": 0.516884}}}))
    assert er.main([str(recs_path), str(test_path), "--check", f"{good}:m.overall",
                    "--seen", str(train_path), "--json", str(tmp_path / "out.json")]) == 0
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["recall@20"] == pytest.approx(2 / 3)
    assert out["seen_in_recommendations"] == 1  # (a, z) is a training pair
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"recall@20": 0.6, "ndcg@20": 0.516884}))
    assert er.main([str(recs_path), str(test_path), "--check", str(bad)]) == 1
    assert "MISMATCH" in capsys.readouterr().out
