"""The fusion fit's view of validation: a sample of users, each with a candidate pool scored once.

Fitting alpha evaluates a few hundred blends. Re-ranking every validation user against every
product for each blend costs (blends) x (users) x (products) and holds a users x products
matrix per source. :class:`BlendPools` instead

1. samples at most ``sample_users`` validation users (seeded; all of them when there are
   fewer), so the cost stops growing with the catalogue's user count;
2. scores them block by block, once per source (the GNN and each text side): a block holds
   ``block_elements`` scores per source, never a users x products matrix;
3. keeps for each user a *pool*: the union of every source's top ``pool`` products (after
   removing the user's training products), with each source's normalised score on them.
   Each blend then ranks the pools only.

**How exact the pool is.** In each source, a product outside the pool scores at most that
source's best product left out of the pool (its *threshold*), so its fused score is at most
``max(a * thr_gnn + (1 - a) * thr_text)`` over the blend's alpha range. When the K-th best
pooled fused score reaches that bound, no outside product can enter the top K and the user's
NDCG@K equals the full ranking's (ties aside); :meth:`BlendPools.report` gives the share of
users for which that holds. Otherwise the error goes either way (an outside positive counts as
a miss, an outside negative that would outrank a pooled positive is missed). ``pool=0`` pools
every candidate: the exhaustive fit, exact by construction. On ml-100k a pool of 200 per
source made every validation user exact at every alpha tried (50: 13% at alpha 0.5).

Cost: scoring is ``O(n * N * d)`` per source for ``n`` sampled users and ``N`` candidate
products, memory ``O(block_elements)`` while scoring and ``O(n * pool * sources)`` after; each
blend then costs ``O(n * pool * sources)``, independent of ``N`` and of the user count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor
from tqdm.auto import tqdm

from kgrec.errors import UsageError
from kgrec.fusion.blend import GNN_ONLY, Blend, normalise
from kgrec.gnn.metrics import candidate_mask, draw_users, rows_of, sampling_error, stage_pairs
from kgrec.gnn.split import Split
from kgrec.settings import FIT_POOL, FIT_USERS

#: Scores held per source while one user block is scored (16 MB of float32; a block's
#: temporaries take a few times that per source).
BLOCK_ELEMENTS = 1 << 22


class BlendPools:
    """Pooled scores of sampled ``stage`` users, for the NDCG@K of many blends (module doc).

    Args:
        sources: name -> ``(users [U, d], items [N, d])`` vectors; a source's raw score is
            their dot product, normalised per user over the candidates.
        split, stage, k: what is evaluated.
        candidates: bool mask of the ranked products (None: all).
        normalise_method: per-user normalisation, as :class:`kgrec.fusion.score.FusedScorer`.
        sample_users: users sampled (0: all); ``seed`` draws them.
        pool: products per source in a user's pool (0: every candidate).
        block_elements: scores per source per user block.
        progress: show a progress bar over the blocks.
    """

    def __init__(self, sources: Mapping[str, tuple[Tensor, Tensor]], split: Split, *,
                 stage: str = "valid", k: int = 20, candidates: Tensor | None = None,
                 normalise_method: str = "zscore", sample_users: int = FIT_USERS,
                 pool: int = FIT_POOL, seed: int = 2020, block_elements: int = BLOCK_ELEMENTS,
                 progress: bool = False) -> None:
        if not sources:
            raise UsageError("BlendPools needs at least one score source")
        if pool < 0 or sample_users < 0:
            raise UsageError(f"pool and sample_users must be >= 0, got {pool}, {sample_users}")
        mask = candidate_mask(candidates, split.num_items)
        self.columns = torch.nonzero(mask).flatten()  # candidate column -> product row
        self.k = min(k, self.columns.numel())
        pairs = stage_pairs(split, stage, mask)
        self.users, self.total_users = draw_users(pairs[0], sample_users, seed)
        self.names = list(sources)
        n_cols = self.columns.numel()
        self.pool = n_cols if pool == 0 else min(pool, n_cols)
        # Results are written into arrays allocated once: small per-block tensors kept
        # between the large transient score blocks would fragment the heap and make the
        # process grow block after block.
        width = n_cols if self.pool >= n_cols else self.pool * len(self.names)
        n = self.users.numel()
        self.cols = torch.full((n, width), -1, dtype=torch.long)  # pooled candidate columns
        self.valid = torch.zeros((n, width), dtype=torch.bool)  # rankable (not padding)
        self.label = torch.zeros((n, width), dtype=torch.bool)  # validation positive
        self.n_pos = torch.zeros(n, dtype=torch.long)
        self.normalise = normalise_method
        self.scores = {name: torch.zeros((n, width)) for name in self.names}
        self.thresholds = {name: torch.zeros(n) for name in self.names}
        used = self._score_blocks(sources, split.num_items, pairs, normalise_method,
                                  max(1, block_elements // max(n_cols, 1)), progress)
        self.cols, self.valid, self.label = (x[:, :used].clone()
                                             for x in (self.cols, self.valid, self.label))
        self.scores = {name: x[:, :used].clone() for name, x in self.scores.items()}
        # NDCG@K's discounts and each user's ideal DCG (as PyG's LinkPredNDCG: pairs, <= K).
        self.discount = 1.0 / torch.arange(2, self.k + 2, dtype=torch.float64).log2()
        ideal = torch.cat([torch.zeros(1, dtype=torch.float64), self.discount.cumsum(0)])
        self.ideal_dcg = ideal[self.n_pos.clamp(max=self.k)]

    # ---- building ------------------------------------------------------------------------

    def _score_blocks(self, sources, num_items, pairs, method, rows, progress) -> int:
        """Score the sampled users block by block into the pools; returns the widest pool."""
        gt_users, gt_items, ex_users, ex_items = pairs
        col_of = torch.full((num_items,), -1, dtype=torch.long)
        col_of[self.columns] = torch.arange(self.columns.numel())
        items = {name: vecs.float()[self.columns] for name, (_, vecs) in sources.items()}
        used = 0
        for start in tqdm(range(0, self.users.numel(), rows), desc="fusion fit: score users",
                          unit="block", disable=not progress, leave=False):
            batch = self.users[start : start + rows]
            shape = (batch.numel(), self.columns.numel())
            excluded = torch.zeros(shape, dtype=torch.bool)
            positive = torch.zeros(shape, dtype=torch.bool)
            r, i = rows_of(ex_users, batch, ex_items)
            on = col_of[i] >= 0
            excluded[r[on], col_of[i[on]]] = True
            r, i = rows_of(gt_users, batch, gt_items)
            positive[r, col_of[i]] = True
            # Pairs, not distinct products: the evaluator's ideal DCG counts pairs.
            self.n_pos[start : start + rows] = torch.bincount(r, minlength=batch.numel())
            full = {name: normalise(sources[name][0][batch].float() @ items[name].T, method)
                    for name in self.names}
            used = max(used, self._pool_block(slice(start, start + rows), full, excluded,
                                              positive))
        return used

    def _pool_block(self, rows: slice, full: dict[str, Tensor], excluded: Tensor,
                    positive: Tensor) -> int:
        """Write one block's pools (the union of each source's top ``pool``) into ``rows``;
        returns the block's widest pool."""
        n_rows, n_cols = excluded.shape
        if self.pool >= n_cols:  # every candidate pooled: nothing left outside
            for name in full:
                self.thresholds[name][rows] = -math.inf
            cols = torch.arange(n_cols).expand(n_rows, -1)
        else:
            tops = []
            for name, scores in full.items():
                # The best product left out bounds everything outside the pool.
                top = scores.masked_fill(excluded, -math.inf).topk(self.pool + 1, dim=1)
                self.thresholds[name][rows] = top.values[:, -1]
                tops.append(top.indices[:, :-1])
            cols = _unique_rows(torch.cat(tops, 1))
        width, safe = cols.shape[1], cols.clamp(min=0)
        self.cols[rows, :width] = cols
        self.valid[rows, :width] = (cols >= 0) & ~excluded.gather(1, safe)
        self.label[rows, :width] = (cols >= 0) & positive.gather(1, safe)
        for name, scores in full.items():
            self.scores[name][rows, :width] = scores.gather(1, safe)
        return width

    # ---- evaluating ----------------------------------------------------------------------

    def _fused(self, gnn: str, blend: Blend | None) -> tuple[Tensor, Tensor]:
        """Pooled fused scores (excluded and padding at -inf) and the per-user outside bound."""
        g, thr = self.scores[gnn], self.thresholds[gnn]
        if blend is not None and blend.normalise != self.normalise:
            raise UsageError(f"the pools hold {self.normalise} scores, the blend normalises by "
                             f"{blend.normalise}")
        if blend is None or blend.text == GNN_ONLY or (blend.one_source and blend.alpha == 1.0):
            fused, bound = g.clone(), thr
        elif blend.one_source:  # alpha 0: the text side alone
            fused, bound = self.scores[blend.text].clone(), self.thresholds[blend.text]
        else:
            alpha = blend.alpha
            t, thr_t = self.scores[blend.text], self.thresholds[blend.text]
            a: float | Tensor
            if isinstance(alpha, Tensor):
                on_candidates = alpha[self.columns]
                a = on_candidates[self.cols.clamp(min=0)]
                lo, hi = float(on_candidates.min()), float(on_candidates.max())
            else:
                a = lo = hi = alpha
            fused = blend.mix(g, t, a)
            bound = torch.maximum(blend.mix(thr, thr_t, lo), blend.mix(thr, thr_t, hi))
        return fused.masked_fill_(~self.valid, -math.inf), bound

    def per_user(self, gnn: str, blend: Blend | None = None) -> tuple[Tensor, Tensor]:
        """(NDCG@K of each sampled user, whether the pool makes it exact) for ``blend`` of
        the source ``gnn`` and the source ``blend.text`` (None: ``gnn`` alone)."""
        fused, bound = self._fused(gnn, blend)
        top = fused.topk(self.k, dim=1)
        hits = self.label.gather(1, top.indices) & torch.isfinite(top.values)
        ndcg = (hits.double() * self.discount).sum(1) / self.ideal_dcg
        return ndcg, top.values[:, -1] >= bound

    def ndcg(self, gnn: str, blend: Blend | None = None) -> float:
        """Mean NDCG@K over the sampled users (the validation metric the fit maximises)."""
        return float(self.per_user(gnn, blend)[0].mean()) if self.users.numel() else 0.0

    def report(self, gnn: str, blend: Blend | None = None) -> dict[str, float]:
        """How far a blend's fitted metric can be trusted: the users it was fitted on, its
        sampling error (standard error of the mean over the sample, with the finite-population
        correction: 0 when every user is in it) and the share of users the pool makes exact."""
        ndcg, exact = self.per_user(gnn, blend)
        n, total = self.users.numel(), self.total_users
        error = sampling_error(float(ndcg.std()) if n > 1 else 0.0, n, total)
        return {"fit_users": float(n), "stage_users": float(total), "sampling_error": error,
                "exact_share": float(exact.float().mean()) if n else 1.0, "pool": float(self.pool)}


def _unique_rows(index: Tensor) -> Tensor:
    """Each row's distinct non-negative values, left-aligned and padded with -1."""
    ordered = index.sort(dim=1, descending=True).values
    repeat = torch.zeros_like(ordered, dtype=torch.bool)
    repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    ordered = ordered.masked_fill(repeat, -1).sort(dim=1, descending=True).values
    width = int((ordered >= 0).sum(1).max()) if ordered.numel() else 0
    return ordered[:, :width]
