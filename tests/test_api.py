"""kgrec.Recommender: fit -> fuse -> recommend / audience / explain / evaluate -> save -> load."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import kgrec
from kgrec.config import Config
from kgrec.errors import InputError, ModelError
from kgrec.gnn.split import make_split
from kgrec.kg.snapshot import snapshot_from_tables

TRAIN = {"epochs": 8, "dim": 16, "eval_every": 2, "device": "cpu"}


@pytest.fixture(scope="module")
def snapshot(themed_tables):
    return snapshot_from_tables(themed_tables)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Config:
    config = Config()
    config.fusion.cache_dir = str(tmp_path_factory.mktemp("text-cache"))
    config.fusion.tower_epochs = 3
    return config


@pytest.fixture(scope="module")
def fused(snapshot, config):
    return kgrec.Recommender.fit(snapshot, config, model="mf", progress=False,
                                 **TRAIN).fuse(progress=False)


def _pairs(frame: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(frame["user_id"], frame["product_id"], strict=True))


def _interactions(snapshot) -> set[tuple[str, str]]:
    events = snapshot.interactions()
    users = snapshot.id_maps["user"].ids_of(events["user"].to_numpy())
    items = snapshot.id_maps["product"].ids_of(events["product"].to_numpy())
    return set(zip(users, items, strict=True))


def test_recommend_gives_titled_top_k_per_user(fused, snapshot) -> None:
    frame = fused.recommend(["u00", "u01"], k=5)
    assert list(frame.columns) == ["user_id", "product_id", "rank", "score", "score_gnn",
                                   "score_text", "title"]
    assert frame.groupby("user_id")["rank"].apply(list).to_dict() == {
        "u00": [1, 2, 3, 4, 5], "u01": [1, 2, 3, 4, 5]}
    titles = snapshot.products.set_index("id")["title"]
    assert (frame["title"] == frame["product_id"].map(titles)).all()
    assert frame.groupby("user_id")["score"].apply(lambda s: s.is_monotonic_decreasing).all()


def test_recommend_never_returns_a_seen_item(snapshot, config) -> None:
    """Over random splits: serving excludes every interaction, evaluation its split's pairs."""
    seen_all = _interactions(snapshot)
    for seed in (1, 2, 3):
        split = make_split(snapshot, kind="random", seed=seed)
        rec = kgrec.Recommender.fit(snapshot, config, model="pop", split=split, progress=False)
        assert not _pairs(rec.recommend(k=15)) & seen_all
        users, items = rec.users, rec.products
        train = {(users.ids[u], items.ids[i]) for u, i in split.pairs("train").T.tolist()}
        evaluable = _pairs(rec.recommend(k=15, exclude_seen="train"))
        assert not evaluable & train
        # The held-out pairs stay rankable: some are recommended back.
        held = {(users.ids[u], items.ids[i]) for u, i in split.pairs("test").T.tolist()}
        assert evaluable & held


def test_candidates_users_and_k_are_checked(fused) -> None:
    tail = fused.recommend(["u03"], items="long-tail", k=3)
    degree = fused.item_degree(fused.seen_pairs(True))
    tail_ids = set(fused.products.ids_of(fused.candidates("long-tail", degree).numpy()))
    assert set(tail["product_id"]) <= tail_ids and len(tail_ids) < len(fused.products)
    listed = fused.recommend(["u03"], items=["p36", "p37", "p38"], k=10)
    assert sorted(listed["product_id"]) == ["p36", "p37", "p38"]  # never-rated products
    with pytest.raises(InputError, match="unknown user id.*'nobody'"):
        fused.recommend(["nobody"])
    with pytest.raises(InputError, match="k must be .* at least 1, got 0"):
        fused.recommend(["u03"], k=0)
    with pytest.raises(InputError, match="items must be one of"):
        fused.recommend(["u03"], items="longtail")


def test_empty_items_true_k_and_negative_explain_limit_are_refused(fused) -> None:
    """Issue 24, item 5: each a clear error, not a raw RuntimeError or a silent guess."""
    with pytest.raises(InputError, match=r"^field 'items': no products to score: items is "
                                         r"the list given, which selects none"):
        fused.recommend(["u03"], items=[])
    with pytest.raises(InputError, match="no products to score"):
        fused.audience(items=[])
    for k in (True, False, 2.0):
        with pytest.raises(InputError, match=rf"k must be a whole number of at least 1, "
                                             rf"got {k!r}"):
            fused.recommend(["u03"], k=k)
    assert len(fused.recommend(["u03"], k=2)) == 2
    for limit in (-1, 0):
        with pytest.raises(ValueError, match=f"limit must be a whole number of at least 1, "
                                             f"got {limit}"):
            fused.explain("u00", "p20", limit=limit)


def test_audience_ranks_users_per_product(fused, snapshot) -> None:
    frame = fused.audience(["p36", "p01"], k=4)
    assert frame.groupby("product_id")["rank"].apply(list).to_dict() == {
        "p01": [1, 2, 3, 4], "p36": [1, 2, 3, 4]}
    assert not _pairs(frame) & _interactions(snapshot)


def test_history_titles_are_the_latest_first(fused, themed_tables) -> None:
    events = themed_tables.rels["RATED"]
    mine = events[events["src"] == "u04"].sort_values("timestamp")["dst"].tolist()
    titles = fused.snapshot.products.set_index("id")["title"]
    assert fused.history_titles("u04", 3) == [titles[p] for p in mine[::-1][:3]]


def test_explain_walks_from_user_to_product(fused) -> None:
    paths = fused.explain("u00", "p00", max_hops=3)
    assert paths, "u00 and p00 share co-raters"
    assert all(p.nodes[0] == "User:u00" and p.nodes[-1] == "Product:p00" for p in paths)
    assert [p.hops for p in paths] == sorted(p.hops for p in paths)


def test_fused_rows_evaluate_and_text_helps_the_taste_by_theme(fused) -> None:
    table = fused.evaluate("test", k=10)
    assert set(table) == {"mf", "mf+fusion", "text:profile", "text:tower"}
    for rows in table.values():
        assert 0.0 <= rows["overall"]["ndcg@10"] <= 1.0
    # Taste follows the text here, so the text profile alone beats a barely trained MF.
    assert table["text:profile"]["overall"]["ndcg@10"] > table["mf"]["overall"]["ndcg@10"]
    assert fused.fusion.fit.jobs["full"].valid_metric >= fused.fusion.fit.jobs["full"].gnn_only


def test_save_load_round_trip_gives_identical_recommendations(fused, config, tmp_path) -> None:
    fused.save(tmp_path / "run")
    loaded = kgrec.Recommender.load(tmp_path / "run", config=config)
    for items in ("all", "long-tail"):
        pd.testing.assert_frame_equal(loaded.recommend(items=items, k=5),
                                      fused.recommend(items=items, k=5))
    pd.testing.assert_frame_equal(loaded.audience("long-tail", k=3),
                                  fused.audience("long-tail", k=3))
    assert torch.equal(loaded.fusion.confidence, fused.fusion.confidence)
    assert loaded.fusion.fit.jobs["tail"].to_dict() == fused.fusion.fit.jobs["tail"].to_dict()


def test_load_without_snapshot_says_what_is_missing(fused, tmp_path) -> None:
    fused.result.save(tmp_path / "bare")
    fused.split.save(tmp_path / "bare")
    with pytest.raises(ModelError, match="holds no snapshot/"):
        kgrec.Recommender.load(tmp_path / "bare")
    rec = kgrec.Recommender.load(tmp_path / "bare", snapshot=fused.snapshot)
    assert rec.fusion is None and len(rec.recommend(["u00"], k=2)) == 2


def test_similar_products_by_text_graph_and_blend(fused) -> None:
    text = fused.similar("p00", k=3, space="text")
    # Same theme ("waterproof hiking boots model N") is nearest in text space.
    assert sorted(text["product_id"]) == ["p10", "p20", "p30"]
    assert list(text.columns) == ["rank", "product_id", "title", "similarity", "graph_hops",
                                  "text_cosine"]
    assert text["similarity"].is_monotonic_decreasing and (text["similarity"] <= 1.0).all()
    blended = fused.similar("p00", k=5, space="fused")
    assert {"graph_cosine", "text_cosine"} <= set(blended.columns)
    assert "p00" not in set(blended["product_id"]) and len(blended) == 5
    hops = fused.similar("p00", k=39, space="graph")["graph_hops"]
    assert hops.dropna().between(1, 4).all() and hops.notna().sum() > 0
    with pytest.raises(InputError, match="space must be one of graph, text, fused"):
        fused.similar("p00", space="words")
