"""Serving a loaded run: ``recommend`` (products per user), ``audience`` (users per product),
``search`` (a query re-ordered by taste) and ``similar`` (products near a product), each a
function of a :class:`~kgrec.runfolder.Run` that makes its :class:`~kgrec.fusion.blend.Blend`
once (:func:`fused_scorer`: the run's fitted one for the job, or a constant GNN weight
``alpha``). Built from the fusion layer's parts: candidates, the seen index, the exact
chunked top-k and the output frames.
``kgrec.Recommender`` and the Spark scorer (:mod:`kgrec.spark`) call these.

Cost: a ranking is ``O(users x candidates x d)`` multiply-adds, chunk by chunk; memory holds
one chunk of scores (``score.chunk_size`` rows) and the top-k, never users x products.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from kgrec.errors import InputError
from kgrec.fusion.blend import Blend
from kgrec.fusion.candidates import ITEM_SETS, item_degree, select_items
from kgrec.fusion.fit import job_scorer
from kgrec.fusion.output import topk_frame
from kgrec.fusion.score import FusedScorer
from kgrec.fusion.seen import SeenIndex
from kgrec.fusion.topk import chunked_topk
from kgrec.gnn.device import resolve_device
from kgrec.ids import IdMap
from kgrec.kg.explore import Explanation
from kgrec.kg.explore import explain as explain_paths
from kgrec.runfolder import Run, text_encoder

#: What ``exclude_seen`` accepts besides True (every interaction) and False (none).
#: Each names the stage whose ranking leaves those pairs out (:meth:`Split.excluded`).
EXCLUDE_STAGES = {"train": "valid", "train+valid": "test"}
#: Spaces :func:`similar` measures nearness in.
SIMILAR_SPACES = ("graph", "text", "fused")


def job_of(items: object) -> str:
    """The fitted fusion job that ranks ``items``: long-tail and cold-start candidates
    use the blend fitted on tail candidates."""
    return "tail" if isinstance(items, str) and items in ("long-tail", "cold-start") else "full"


def seen_pairs(run: Run, exclude_seen: bool | str = True) -> Tensor:
    """``[2, E]`` (user, product) rows never recommended: every snapshot interaction
    (True: serving; with a target behaviour only its events, unless
    ``score.unseen_only``), the split's ``"train"`` or ``"train+valid"`` pairs (a ranking that
    can be evaluated on validation / test), or none (False)."""
    if exclude_seen is True:
        frame = run.interactions
        if run.split.target is not None and not run.config.score.unseen_only:
            # a viewed product may still be bought
            frame = frame[frame["rel"] == run.split.target]
        pairs = np.stack([frame["user"].to_numpy("int64"), frame["product"].to_numpy("int64")])
        return torch.as_tensor(pairs).reshape(2, -1)
    if exclude_seen is False:
        return torch.zeros(2, 0, dtype=torch.long)
    if exclude_seen not in EXCLUDE_STAGES:
        raise InputError(f"exclude_seen must be True, False or one of "
                         f"{', '.join(EXCLUDE_STAGES)}, got {exclude_seen!r}")
    frame = run.split.excluded(EXCLUDE_STAGES[exclude_seen])
    return torch.as_tensor(frame[["user", "product"]].to_numpy("int64").T.copy())


def popularity(run: Run, pairs: Tensor) -> Tensor:
    """Events per product in ``pairs`` (what long-tail and the blend weight read)."""
    return item_degree(pairs, len(run.products))


def candidate_rows(run: Run, items: str | Path | Sequence[str], degree: Tensor) -> Tensor:
    """Product rows for ``items``: a name of :data:`ITEM_SETS`, a file of product ids
    (a :class:`~pathlib.Path`: one per line, or CSV/Parquet with ``product_id``) or ids."""
    if isinstance(items, Path):
        return select_items(str(items), run.products, degree)
    if isinstance(items, str):
        if items not in ITEM_SETS:
            raise InputError(f"items must be one of {', '.join(ITEM_SETS)} or a list of "
                             f"product ids, got {items!r}")
        return select_items(items, run.products, degree)
    return torch.as_tensor(run.rows(run.products, items, "product"), dtype=torch.long)


def fused_scorer(run: Run, job: str = "full", degree: Tensor | None = None,
                 alpha: float | None = None) -> FusedScorer:
    """The :class:`FusedScorer` of a fitted job (``"full"`` or ``"tail"``); the GNN
    alone before the run is fused; ``alpha``: a constant GNN weight instead of the fitted
    one (0: text only, 1: GNN only)."""
    device = resolve_device(run.config.train.device)
    sources = run.sources(degree)
    if run.fusion is None:
        return sources.scorer(Blend(1.0, run.config.fusion.normalise), device=device)
    fit = run.fusion.fit
    seen = run.seen_now if fit.jobs[job].seen_weight else None
    return job_scorer(sources, fit, job, normalise_method=run.fusion.normalise, seen=seen,
                      alpha=alpha, device=device)


def _scoring(run: Run, items: str | Path | Sequence[str], exclude_seen: bool | str,
             alpha: float | None) -> tuple[Tensor, Tensor, FusedScorer]:
    """(pairs never recommended, candidate products, scorer) of a ranking over ``items``;
    popularity (long tail, blend weight) counts the excluded pairs, or every interaction
    when nothing is excluded."""
    seen = seen_pairs(run, exclude_seen)
    degree = popularity(run, seen if len(seen[0]) else seen_pairs(run, True))
    cand = candidate_rows(run, items, degree)
    if not len(cand):
        what = f"{items!r}" if isinstance(items, str | Path) else "the list given"
        raise InputError(f"no products to score: items is {what}, which selects none; "
                         "give at least one product id", field="items")
    return seen, cand, fused_scorer(run, job_of(items), degree, alpha)


def recommend(run: Run, users: Sequence[str] | None = None,
              items: str | Path | Sequence[str] = "all", k: int | None = None, *,
              exclude_seen: bool | str = True, alpha: float | None = None,
              progress: bool = False) -> pd.DataFrame:
    """Top-``k`` products per user: columns user_id, product_id, rank, score (fused),
    score_gnn, score_text and title. ``users``: ids (default all); ``items``: "all",
    "long-tail", "cold-start" (scored with the fusion fitted on tail candidates), a
    file or product ids (:func:`candidate_rows`); ``exclude_seen``: see :func:`seen_pairs`;
    ``alpha``: see :func:`fused_scorer`."""
    k = run.top_k(k)
    seen, cand, scorer = _scoring(run, items, exclude_seen, alpha)
    rows = run.user_rows(users)
    top = chunked_topk(scorer.chunk_scorer(cand), rows, k, columns=cand,
                       num_columns=len(run.products),
                       seen=SeenIndex.from_edges(seen, len(run.users)),
                       chunk_size=run.config.score.chunk_size, progress=progress,
                       desc="score users", components=scorer.pair_components)
    return run.titled(topk_frame(top, rows, run.users, run.products, per="user"),
                      candidates=len(cand))


def audience(run: Run, items: str | Path | Sequence[str], k: int | None = None, *,
             exclude_seen: bool | str = True, alpha: float | None = None,
             progress: bool = False) -> pd.DataFrame:
    """Top-``k`` users per product (who to show a long-tail product to): columns
    product_id, user_id, rank, scores and title."""
    k = run.top_k(k)
    seen, cand, scorer = _scoring(run, items, exclude_seen, alpha)
    users = torch.arange(len(run.users))
    stats = scorer.user_stats(users, cand, chunk_size=run.config.score.chunk_size)
    top = chunked_topk(lambda r: scorer.score_items(r, users, stats), cand, k,
                       columns=users, num_columns=len(run.users),
                       seen=SeenIndex.from_edges(seen, len(run.products), transpose=True),
                       chunk_size=run.config.score.chunk_size, progress=progress,
                       desc="score products")
    return run.titled(topk_frame(top, cand, run.products, run.users, per="item"),
                      candidates=len(users))


def search(run: Run, user: str, query: str, k: int | None = None, *,
           alpha: float | None = None, exclude_seen: bool | str = True) -> pd.DataFrame:
    """Personalised semantic search: products ranked for ``user`` by
    ``alpha * z(GNN score) + (1 - alpha) * z(similarity to the query text)`` (default
    ``fusion.search_alpha``: the query leads, taste re-orders). Columns as
    :func:`recommend`, score_text being the query similarity."""
    config = run.config
    k = config.fusion.search_top_k if k is None else k
    blend = Blend(config.fusion.search_alpha if alpha is None else alpha,
                  config.fusion.normalise, "query")
    row = int(run.user_rows([user])[0])
    encoder = text_encoder(config)
    scorer = FusedScorer(run.gnn_users[[row]], run.gnn_items, encoder.encode([query]),
                         run.raw_text, blend=blend)
    seen = seen_pairs(run, exclude_seen)
    mine = seen[1][seen[0] == row]
    one = torch.zeros(1, dtype=torch.long)
    top = chunked_topk(scorer.chunk_scorer(), one, run.top_k(k),
                       num_columns=len(run.products),
                       seen=SeenIndex.from_edges(torch.stack([torch.zeros_like(mine), mine]),
                                                 1),
                       progress=False, components=scorer.pair_components)
    return run.titled(topk_frame(top, one, IdMap("user", [user]), run.products))


def explain(run: Run, user: str, product: str, max_hops: int = 3,
            limit: int = 5) -> list[Explanation]:
    """The typed paths linking ``user`` to ``product`` in the graph (why the product
    relates to the user), the most telling first (:func:`kgrec.kg.explore.explain`)."""
    return explain_paths(run.graph_index, str(user), str(product), max_hops=max_hops,
                   limit=limit)


def similar(run: Run, product: str, k: int = 10, space: str = "fused",
            max_hops: int = 4) -> pd.DataFrame:
    """The ``k`` products nearest to ``product`` by cosine of the GNN embeddings
    (``"graph"``), of the MiniLM text vectors (``"text"``) or by the fitted blend of the
    two (``"fused"``: ``a * z(graph) + (1 - a) * z(text)`` with the full ranking's
    ``a`` for this product), beside their hop distance in the graph (``graph_hops``,
    empty beyond ``max_hops``)."""
    if space not in SIMILAR_SPACES:
        raise InputError(f"space must be one of {', '.join(SIMILAR_SPACES)}, got {space!r}")
    row = int(run.rows(run.products, [product], "product")[0])

    def cosine(vectors: Tensor) -> Tensor:
        x = torch.nn.functional.normalize(vectors.float(), dim=1)
        return x @ x[row]

    sims = {}
    if space in ("graph", "fused"):
        sims["graph"] = cosine(run.gnn_items)
    if space in ("text", "fused"):
        sims["text"] = cosine(run.raw_text)
    score = sims["graph" if space == "graph" else "text"]
    if space == "fused":  # z-scored over every other product, as a user's scores are
        others = torch.arange(len(run.products)) != row
        blend = Blend(alpha_of(run, row), "zscore", "text")
        score = torch.full((len(run.products),), -torch.inf)
        score[others] = blend.combine(sims["graph"][None, others], sims["text"][None, others],
                                      raw_single=False)[0]
    score = score.clone()
    score[row] = -torch.inf
    top = torch.topk(score, min(k, len(run.products) - 1))
    index = run.graph_index
    hops = index.distances(index.index("Product", product), max_hops)
    ids = run.products.ids_of(top.indices.numpy())
    frame = pd.DataFrame({
        "rank": np.arange(1, len(ids) + 1), "product_id": ids.astype(str),
        "similarity": top.values.numpy().astype("float64"),
        "graph_hops": pd.array([None if not np.isfinite(h) else int(h) for h in
                                (hops[index.index("Product", i)] for i in ids)],
                               dtype="Int64"),
        **{f"{n}_cosine": v[top.indices].numpy().astype("float64") for n, v in sims.items()},
    })
    frame.insert(2, "title", frame["product_id"].map(run.titles).fillna(""))
    return frame


def alpha_of(run: Run, row: int) -> float:
    """The full ranking's fitted GNN weight for one product (0.5 before the run is fused)."""
    if run.fusion is None:
        return 0.5
    alpha = run.fusion.fit.jobs["full"].blend(run.sources()).alpha
    return alpha if isinstance(alpha, float) else float(alpha[row])


def history_titles(run: Run, user: str, n: int = 5) -> list[str]:
    """Titles of the ``n`` latest products ``user`` interacted with (latest first):
    what to read the user's recommendations against."""
    row = int(run.rows(run.users, [user], "user")[0])
    events = run.interactions
    mine = events[events["user"] == row].sort_values("time", kind="stable")
    ids = run.products.ids_of(mine["product"].to_numpy()[::-1][:n])
    return [str(run.titles.get(i, i)) for i in ids]
