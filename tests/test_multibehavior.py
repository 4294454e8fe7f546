"""Views, carts and purchases end to end through the public API: a lists dump, the given
split, the GNN on every behaviour, the fitted re-engagement term, every objective evaluated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import kgrec
from kgrec.config import Config
from kgrec.kg.extract.sources import read_source
from kgrec.kg.snapshot import snapshot_from_tables

USERS, ITEMS = 120, 50


def write_shop(folder: Path, seed: int = 0) -> Path:
    """Each user views 10 random products and carts 4 of them; they buy 3 of the carted ones
    (2 in training, 1 held out); a fifth viewed product is their held-out cart."""
    rng = np.random.default_rng(seed)
    lines: dict[str, list[str]] = {n: [] for n in ("view_train", "cart_train", "buy_train",
                                                   "buy_test", "cart_test")}
    for u in range(USERS):
        viewed = rng.permutation(ITEMS)[:10]
        lines["view_train"].append("\t".join(map(str, [u, *viewed])))
        lines["cart_train"].append("\t".join(map(str, [u, *viewed[:4]])))
        lines["buy_train"].append("\t".join(map(str, [u, *viewed[:2]])))
        lines["buy_test"].append(f"{u}\t{viewed[2]}")
        lines["cart_test"].append(f"{u}\t{viewed[4]}")
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in lines.items():
        (folder / f"{name}.txt").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    folder = write_shop(tmp_path_factory.mktemp("shop"))
    config = Config()
    config.source.kind, config.source.path = "lists", str(folder)
    config.train.split, config.train.k = "given", 5
    tables = read_source(config.source, cache_dir=str(tmp_path_factory.mktemp("cache")))
    snapshot = snapshot_from_tables(tables)
    rec = kgrec.Recommender.fit(snapshot, config, model="lightgcn", epochs=6, dim=16,
                                eval_every=2, device="cpu", progress=False)
    return rec.fuse(progress=False)


def test_the_given_split_tests_the_held_out_purchases(shop) -> None:
    split = shop.split
    assert (split.kind, split.target, len(split.test)) == ("given", "PURCHASED", USERS)
    assert len(split.valid) == USERS  # one of the two training purchases each


def test_re_engagement_is_fitted_and_lifts_the_ranking_on_every_objective(shop) -> None:
    job = shop.fusion.fit.jobs["full"]
    assert job.seen_weight > 0
    assert dict(job.seen_curve)[job.seen_weight] > 2 * dict(job.seen_curve)[0.0]
    rows = shop.evaluate(k=5)
    gnn, fused = rows["lightgcn"], rows["lightgcn+fusion"]
    assert set(gnn) >= {"overall", "objective:CARTED"} and "objective:VIEWED" not in gnn
    for key in ("overall", "objective:CARTED"):
        assert fused[key]["ndcg@5"] > 1.5 * gnn[key]["ndcg@5"]
        assert fused[key]["users"] == USERS


def test_serving_recommends_viewed_products_unless_told_not_to(shop) -> None:
    frame = shop.recommend(["0", "1"], k=5)
    events = shop.snapshot.interactions()
    bought = set(zip(events.loc[events["rel"] == "PURCHASED", "user"],
                     events.loc[events["rel"] == "PURCHASED", "product"], strict=True))
    rows = shop.users.index_of(frame["user_id"]), shop.products.index_of(frame["product_id"])
    pairs = set(zip(*rows, strict=True))
    assert not pairs & bought
    viewed = set(zip(events.loc[events["rel"] == "VIEWED", "user"],
                     events.loc[events["rel"] == "VIEWED", "product"], strict=True))
    assert pairs & viewed  # the re-engagement term brings viewed products back
    shop.config.score.unseen_only = True
    try:
        assert not set(map(tuple, shop.seen_pairs().T.tolist())) ^ (
            {(int(u), int(i)) for u, i in zip(events["user"], events["product"], strict=True)})
    finally:
        shop.config.score.unseen_only = False
