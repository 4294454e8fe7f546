"""Batch scoring (fusion.topk, seen, candidates, output): chunked exact top-k, exclusions,
per-item mode, Parquet, store write-back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from kgrec.errors import InputError
from kgrec.fusion.blend import Blend
from kgrec.fusion.candidates import long_tail, select_items
from kgrec.fusion.output import (
    prune_versions,
    topk_frame,
    user_batches,
    write_back,
    write_parquet,
)
from kgrec.fusion.score import FusedScorer
from kgrec.fusion.seen import SeenIndex
from kgrec.fusion.topk import MEMBERS, MatmulScorer, chunked_topk, dot_scorer, grouped_topk
from kgrec.ids import IdMap
from kgrec.kg import schema
from kgrec.kg.store.local import LocalStore
from kgrec.kg.tables import GraphTables, typed_node_table

U, N = 37, 120


@pytest.fixture
def scorer() -> FusedScorer:
    gen = torch.Generator().manual_seed(0)
    return FusedScorer(
        torch.randn(U, 8, generator=gen), torch.randn(N, 8, generator=gen),
        torch.randn(U, 5, generator=gen), torch.randn(N, 5, generator=gen),
        blend=Blend(0.6, "zscore"),
    )


@pytest.fixture
def edges() -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    pairs = torch.stack([torch.randint(0, U, (500,), generator=gen),
                         torch.randint(0, N, (500,), generator=gen)])
    return torch.unique(pairs, dim=1)


def brute_force(scores: torch.Tensor, edges: torch.Tensor, k: int, transpose: bool = False):
    full = scores.clone()
    r, c = (edges[1], edges[0]) if transpose else (edges[0], edges[1])
    full[r, c] = -torch.inf
    return full.topk(k, dim=1)


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_chunked_topk_equals_brute_force_and_excludes_seen(scorer, edges, chunk) -> None:
    users = torch.arange(U)
    top = chunked_topk(scorer.score, users, 10, num_columns=N, seen=SeenIndex.from_edges(edges, U),
                       chunk_size=chunk, progress=False)
    fused, g, t = scorer.score(users)
    vals, idx = brute_force(fused, edges, 10)
    assert torch.equal(top.index, idx)
    torch.testing.assert_close(top.score, vals)
    torch.testing.assert_close(top.score_gnn, g.gather(1, idx))
    torch.testing.assert_close(top.score_text, t.gather(1, idx))
    seen = set(map(tuple, edges.T.tolist()))
    assert not any((u, int(i)) in seen for u in range(U) for i in top.index[u])


def test_one_matmul_scorer_gives_the_same_top_k(scorer, edges) -> None:
    cols = torch.arange(0, N, 2)
    seen = SeenIndex.from_edges(edges, U)
    fast = chunked_topk(scorer.chunk_scorer(cols), torch.arange(U), 6, columns=cols,
                        num_columns=N, seen=seen, chunk_size=8, progress=False,
                        components=scorer.pair_components)
    slow = chunked_topk(lambda r: scorer.score(r, cols), torch.arange(U), 6, columns=cols,
                        num_columns=N, seen=seen, chunk_size=8, progress=False)
    assert torch.equal(fast.index, slow.index)
    for a, b in ((fast.score, slow.score), (fast.score_gnn, slow.score_gnn),
                 (fast.score_text, slow.score_text)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_matmul_path_with_grouped_topk_equals_brute_force() -> None:
    gen = torch.Generator().manual_seed(4)
    users, items = torch.randn(50, 16, generator=gen), torch.randn(5003, 16, generator=gen)
    pairs = torch.stack([torch.randint(0, 50, (3000,), generator=gen),
                         torch.randint(0, 5003, (3000,), generator=gen)]).unique(dim=1)
    cols = torch.arange(1, 5003, 1)  # 5002 candidates: not a multiple of the group width
    top = chunked_topk(dot_scorer(users, items, cols), torch.arange(50), 10, columns=cols,
                       num_columns=5003, seen=SeenIndex.from_edges(pairs, 50), chunk_size=16,
                       progress=False)
    full = users @ items.T
    full[:, 0] = -torch.inf  # not a candidate
    vals, idx = brute_force(full, pairs, 10)
    assert torch.equal(top.index, idx)
    torch.testing.assert_close(top.score, vals)
    torch.testing.assert_close(top.score_gnn, vals)
    assert torch.isnan(top.score_text).all()
    v, i = grouped_topk(full[:, :4992], 7, 32)
    ref = full[:, :4992].topk(7, dim=1)
    assert torch.equal(i, ref.indices) and torch.equal(v, ref.values)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize(
    ("item_block", "device"),
    [(48, "cpu"), (1024, "cpu"), (None, "cpu"), pytest.param(None, "cuda", marks=CUDA)],
)
def test_streamed_matmul_topk_equals_brute_force(item_block, device) -> None:
    """Many blocks (a partial last one), seen pairs in every block, and a user who has
    seen all but 3 candidates: only those 3 come back, then padding."""
    gen = torch.Generator().manual_seed(7)
    users, items = torch.randn(20, 12, generator=gen), torch.randn(3001, 12, generator=gen)
    seen_rows = torch.randint(0, 20, (4000,), generator=gen)
    seen_cols = torch.randint(0, 3001, (4000,), generator=gen)
    kept = torch.tensor([5, 1500, 2999])
    mask = torch.ones(3001, dtype=torch.bool)
    mask[kept] = False
    everything = torch.nonzero(mask).flatten()
    pairs = torch.stack([torch.cat([seen_rows, torch.zeros(len(everything), dtype=torch.long)]),
                         torch.cat([seen_cols, everything])]).unique(dim=1)
    on = users.to(device), items.to(device)
    scorer = MatmulScorer(lambda rows: on[0][rows.to(device)], on[1], item_block=item_block)
    assert scorer.num_columns >= 16 * MEMBERS * 9  # the grouped path, not the fallback
    top = chunked_topk(scorer, torch.arange(20), 9, num_columns=3001,
                       seen=SeenIndex.from_edges(pairs, 20), chunk_size=6, progress=False)
    vals, idx = brute_force(users @ items.T, pairs, 9)
    assert torch.equal(top.index[1:], idx[1:])
    torch.testing.assert_close(top.score[1:], vals[1:])
    assert sorted(top.index[0, :3].tolist()) == kept.tolist()
    assert top.index[0, 3:].tolist() == [-1] * 6
    assert torch.isinf(top.score[0, 3:]).all()


def test_candidate_columns_and_padding(scorer, edges) -> None:
    cols = torch.arange(0, N, 10)  # 12 candidates
    users = torch.tensor([3, 5])
    top = chunked_topk(lambda r: scorer.score(r, cols), users, 15, columns=cols, num_columns=N,
                       seen=SeenIndex.from_edges(edges, U), chunk_size=1, progress=False)
    assert top.index.shape == (2, 15)
    for row, u in enumerate(users.tolist()):
        valid = top.index[row][top.index[row] >= 0]
        assert set(valid.tolist()) <= set(cols.tolist())
        unseen = [c for c in cols.tolist() if (u, c) not in set(map(tuple, edges.T.tolist()))]
        assert sorted(valid.tolist()) == sorted(unseen)  # all unseen candidates, then padding
        assert torch.isinf(top.score[row][len(valid):]).all()
    # Normalisation is over the candidates: the fused scores equal those of the sub-matrix.
    fused_sub = scorer.score(users, cols)[0]
    first = top.index[0, 0]
    torch.testing.assert_close(top.score[0, 0], fused_sub[0, (cols == first).nonzero()[0, 0]])


def test_per_item_mode_equals_transposed_brute_force(scorer, edges) -> None:
    items = torch.arange(0, N, 3)
    users = torch.arange(U)
    stats = scorer.user_stats(users, items, chunk_size=5)
    top = chunked_topk(lambda r: scorer.score_items(r, users, stats), items, 4, columns=users,
                       num_columns=U, seen=SeenIndex.from_edges(edges, N, transpose=True),
                       chunk_size=6, progress=False)
    fused_user_major = scorer.score(users, items)[0]  # [U, C]
    full = torch.full((N, U), -torch.inf)
    full[items] = fused_user_major.T
    vals, idx = brute_force(full, edges, 4, transpose=True)
    assert torch.equal(top.index, idx[items])
    torch.testing.assert_close(top.score, vals[items], atol=1e-5, rtol=1e-5)


def test_topk_frame_and_parquet(tmp_path, scorer, edges) -> None:
    users = torch.tensor([0, 2])
    top = chunked_topk(scorer.score, users, 3, num_columns=N, seen=SeenIndex.from_edges(edges, U),
                       progress=False)
    uid = IdMap("user", [f"u{i}" for i in range(U)])
    pid = IdMap("product", [f"p{i}" for i in range(N)])
    frame = topk_frame(top, users, uid, pid)
    path = write_parquet(frame, tmp_path / "out" / "scores.parquet")
    back = pd.read_parquet(path)
    assert list(back.columns) == ["user_id", "product_id", "rank", "score", "score_gnn",
                                  "score_text", "per"]
    assert back["user_id"].tolist() == ["u0"] * 3 + ["u2"] * 3
    assert back["rank"].tolist() == [1, 2, 3, 1, 2, 3]
    assert back["product_id"].tolist() == [f"p{i}" for i in top.index.flatten().tolist()]
    np.testing.assert_allclose(back["score"], top.score.flatten().numpy(), rtol=1e-6)
    assert (back.groupby("user_id")["score"].diff().dropna() <= 0).all()


def test_select_items(tmp_path) -> None:
    pid = IdMap("product", [f"p{i}" for i in range(6)])
    degree = torch.tensor([50, 30, 10, 5, 5, 0])  # total 100: head = p0, p1 (80%)
    assert select_items("long-tail", pid, degree).tolist() == [2, 3, 4, 5]
    assert select_items("cold-start", pid, degree).tolist() == [5]
    assert select_items("all", pid, degree).tolist() == list(range(6))
    (tmp_path / "ids.txt").write_text("p4\np1\n\n")
    assert select_items(str(tmp_path / "ids.txt"), pid, degree).tolist() == [1, 4]
    (tmp_path / "bad.csv").write_text("product_id\np1\nnope\n")
    with pytest.raises(InputError, match=r"bad.csv, row 2, field 'product_id'.*'nope'"):
        select_items(str(tmp_path / "bad.csv"), pid, degree)
    with pytest.raises(InputError, match="--items"):
        select_items("most-popular", pid, degree)


def test_long_tail_matches_gnn_definition() -> None:
    from kgrec.gnn.metrics import long_tail_items
    from kgrec.gnn.split import Split

    gen = torch.Generator().manual_seed(3)
    items = (torch.rand(2000, generator=gen) ** 3 * 50).long()  # skewed popularity
    train = pd.DataFrame({"user": np.arange(2000) % 97, "product": items.numpy(),
                          "weight": 1.0, "value": 1.0, "time": -1})
    split = Split(train, train.iloc[:0], train.iloc[:0], 97, 60, "given")
    ours = long_tail(split.item_counts())
    assert ours.tolist() == torch.nonzero(long_tail_items(split)).flatten().tolist()


def test_user_batches_never_split_a_user() -> None:
    users = np.array(["a", "a", "a", "b", "c", "c", "d"])
    assert user_batches(users, 2) == [(0, 3), (3, 6), (6, 7)]
    assert user_batches(users, 100) == [(0, 7)]


def _store_with_graph(path) -> LocalStore:
    store = LocalStore(path)
    tables = GraphTables()
    tables.nodes[schema.USER] = typed_node_table(schema.USER, pd.DataFrame({"id": ["u0", "u1"]}))
    tables.nodes[schema.PRODUCT] = typed_node_table(
        schema.PRODUCT, pd.DataFrame({"id": ["p0", "p1", "p2"], "title": ["a", "b", "c"]})
    )
    store.write(tables, progress=False)
    return store


def test_write_back_is_idempotent_per_model_version(tmp_path) -> None:
    store = _store_with_graph(tmp_path / "store")
    frame = pd.DataFrame({
        "user_id": ["u0", "u0", "u1", "u1"], "product_id": ["p0", "p1", "p1", "p2"],
        "rank": [1, 2, 1, 2], "score": [0.9, 0.5, 0.8, 0.1],
        "score_gnn": [1.0, 0.2, 0.7, 0.0], "score_text": [0.3, 0.6, 0.9, 0.2],
    })
    assert write_back(store, frame, model_version="v1", batch_size=1, progress=False) == 4
    assert write_back(store, frame, model_version="v1", batch_size=3, progress=False) == 4
    assert store.counts()[schema.RECOMMENDED] == 4  # rerun: replaced, not added
    write_back(store, frame.iloc[:2], model_version="v2", progress=False)
    stored = pd.concat(store.iter_rels(schema.RECOMMENDED))
    assert len(stored) == 6
    v1 = stored[stored["model_version"] == "v1"].sort_values(["src", "rank"])
    assert v1["dst"].tolist() == ["p0", "p1", "p1", "p2"]
    assert v1["score"].tolist() == [0.9, 0.5, 0.8, 0.1]
    assert v1["score_text"].tolist() == [0.3, 0.6, 0.9, 0.2]
    assert v1["created_at"].notna().all()


def _versions_frame() -> pd.DataFrame:
    return pd.DataFrame({"user_id": ["u0"], "product_id": ["p0"], "rank": [1], "score": [0.9],
                         "score_gnn": [0.4], "score_text": [0.1]})


def _prune_keeps_the_newest_of_the_family(store) -> None:
    for version in ("gat-fusion-100", "gat-fusion-300", "gat-fusion-200", "mf-fusion-50", "v1"):
        write_back(store, _versions_frame(), model_version=version, progress=False)
    assert prune_versions(store, "gat-fusion-300", keep=2) == ["gat-fusion-100"]
    assert store.recommendation_versions() == ["gat-fusion-200", "gat-fusion-300",
                                                "mf-fusion-50", "v1"]
    assert prune_versions(store, "gat-fusion-300", keep=1) == ["gat-fusion-200"]
    assert prune_versions(store, "v1", keep=1) == []  # not <family>-<number>: left alone
    assert store.counts()[schema.RECOMMENDED] == 3


def test_a_run_keeps_the_newest_versions_of_its_recommendations(tmp_path) -> None:
    _prune_keeps_the_newest_of_the_family(_store_with_graph(tmp_path / "store"))


def test_the_embedded_store_is_written_in_one_call(tmp_path, monkeypatch) -> None:
    """Each call rewrites its RECOMMENDED table: a call per batch would grow with the square
    of the recommendations (166k on Scientific: 34 rewrites, 10 s of a 11 s score stage)."""
    store = _store_with_graph(tmp_path / "store")
    calls = []
    write = store.write_recommendations
    monkeypatch.setattr(store, "write_recommendations",
                        lambda frame, **kw: calls.append(len(frame)) or write(frame, **kw))
    frame = pd.DataFrame({"user_id": ["u0", "u0", "u1"], "product_id": ["p0", "p1", "p2"],
                          "rank": [1, 2, 1], "score": [0.9, 0.5, 0.8],
                          "score_gnn": [0.4, 0.3, 0.2], "score_text": [0.1, 0.2, 0.3]})
    assert write_back(store, frame, model_version="v1", batch_size=1, progress=False) == 3
    assert calls == [3]


@pytest.mark.neo4j
def test_neo4j_keeps_the_newest_versions_of_its_recommendations(neo4j_store) -> None:
    tables = GraphTables()
    tables.nodes[schema.USER] = typed_node_table(schema.USER, pd.DataFrame({"id": ["u0"]}))
    tables.nodes[schema.PRODUCT] = typed_node_table(
        schema.PRODUCT, pd.DataFrame({"id": ["p0"], "title": ["a"]}))
    neo4j_store.write(tables, progress=False)
    _prune_keeps_the_newest_of_the_family(neo4j_store)


@pytest.mark.neo4j
def test_write_back_to_neo4j_is_idempotent(neo4j_store) -> None:
    tables = GraphTables()
    tables.nodes[schema.USER] = typed_node_table(schema.USER, pd.DataFrame({"id": ["u0", "u1"]}))
    tables.nodes[schema.PRODUCT] = typed_node_table(
        schema.PRODUCT, pd.DataFrame({"id": ["p0", "p1", "p2"], "title": ["a", "b", "c"]})
    )
    neo4j_store.write(tables, progress=False)
    frame = pd.DataFrame({
        "user_id": ["u0", "u0", "u1", "u1", "u1"], "product_id": ["p0", "p1", "p0", "p1", "p2"],
        "rank": [1, 2, 1, 2, 3], "score": [0.9, 0.5, 0.8, 0.3, 0.1],
        "score_gnn": [1.0, 0.2, 0.7, 0.1, 0.0], "score_text": [0.3, 0.6, 0.9, 0.5, 0.2],
    })
    # batch_size=2 would split u1's three rows; write_back keeps a user in one batch.
    assert write_back(neo4j_store, frame, model_version="v1", batch_size=2, progress=False) == 5
    assert write_back(neo4j_store, frame, model_version="v1", batch_size=2, progress=False) == 5
    assert neo4j_store.counts()[schema.RECOMMENDED] == 5
    stored = pd.concat(neo4j_store.iter_rels(schema.RECOMMENDED))
    u1 = stored[stored["src"] == "u1"].sort_values("rank")
    assert u1["dst"].tolist() == ["p0", "p1", "p2"]
    assert u1["score_gnn"].tolist() == [0.7, 0.1, 0.0]


def test_seen_index_rejects_transposed_or_swapped_edges() -> None:
    edges = torch.tensor([[0, 0, 1, 2], [5, 7, 5, 9]])  # users 0..2, items up to 9
    seen = SeenIndex.from_edges(edges, 3)
    pos, cols = seen.pairs(torch.tensor([0, 2]))
    assert pos.tolist() == [0, 0, 1] and cols.tolist() == [5, 7, 9]
    with pytest.raises(ValueError, match=r"edges must be \[2, E\].*got \[4, 2\] \(transpose"):
        SeenIndex.from_edges(edges.T, 3)
    with pytest.raises(ValueError, match="are users and items swapped"):
        SeenIndex.from_edges(edges.flip(0), 3)
