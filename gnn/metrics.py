"""Full-ranking evaluation shared by every model (and by fusion).

Every user with at least one ``stage`` pair is scored against all products (or the given
candidates) with their training products excluded (and validation products when
``stage="test"``). Recall/NDCG/Hit/MRR@K read each held-out product's mid-rank: the products
scoring above it plus half of those tied with it, so a tie never favours the target (a
constant score ranks every product at the middle, not first). PyG's link-prediction metrics
rank ties by index, hence this own count; without ties both agree. AUC and coverage come from
the same scores.

With ``sample_users``, a seeded sample of the users holding ``stage`` pairs is ranked instead
of all of them (the cost is users x products); each mean then carries its standard error
(``se:ndcg@K`` ..., :func:`sampling_error`) and ``sampled_from``, the users
sampled from. Coverage@K then counts the sample's top K only, so it reads lower than a full
ranking's.

Slices: ``overall``; ``long_tail`` (ground-truth pairs whose product lies outside the head
covering 80% of training interactions); ``cold_start`` (products without training
interactions). A user counts in a slice only if the slice holds one of their pairs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from kgrec.errors import UsageError
from kgrec.gnn.split import Split
from kgrec.kg.stats import long_tail_mask

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
SLICES = ("overall", "long_tail", "cold_start")


def long_tail_items(split: Split, head_share: float = 0.8) -> torch.Tensor:
    """Bool mask of long-tail products: outside the most popular head that covers
    ``head_share`` of the training interactions (cold-start products included)."""
    return torch.from_numpy(long_tail_mask(split.item_counts().numpy(), head_share))


def cold_start_items(split: Split) -> torch.Tensor:
    """Bool mask of products with no training interaction."""
    return split.item_counts() == 0


def candidate_mask(candidates: torch.Tensor | None, num_items: int) -> torch.Tensor:
    """Bool ``[num_items]`` mask of ``candidates`` (a mask or an index; None: every product)."""
    if candidates is None:
        return torch.ones(num_items, dtype=torch.bool)
    candidates = torch.as_tensor(candidates)
    if candidates.dtype == torch.bool:
        if candidates.numel() != num_items:
            raise UsageError(
                f"candidate mask has {candidates.numel()} entries, expected {num_items}"
            )
        return candidates
    mask = torch.zeros(num_items, dtype=torch.bool)
    mask[candidates.long()] = True
    return mask


def draw_users(stage_users: torch.Tensor, size: int, seed: int) -> tuple[torch.Tensor, int]:
    """(sorted seeded sample of at most ``size`` of the distinct ``stage_users``, how many
    distinct users there are); ``size=0`` takes them all."""
    users = torch.unique(stage_users)
    total = users.numel()
    if size and total > size:
        order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
        users = torch.sort(users[order[:size]]).values
    return users, total


def sampling_error(sd: float, n: int, total: int) -> float:
    """Standard error of a mean over ``n`` of ``total`` users drawn without replacement,
    from the sample's standard deviation ``sd``: ``sd / sqrt(n)`` times the finite-population
    correction ``sqrt((total - n) / (total - 1))`` (0 when every user is in the sample)."""
    if n < 1:
        return math.nan
    return sd / math.sqrt(n) * math.sqrt(max(0.0, (total - n) / max(total - 1, 1)))


class _SliceState:
    """Accumulates one slice's metrics over user batches."""

    def __init__(self, k: int, slice_items: torch.Tensor, auc: bool = True) -> None:
        self.k = k
        self.auc = auc
        self.sums = dict.fromkeys((f"recall@{k}", f"ndcg@{k}", f"hit@{k}", "mrr"), 0.0)
        #: Sums of squared per-user values, for the standard errors of a sampled evaluation.
        self.squares = dict.fromkeys(self.sums, 0.0)
        #: Ideal DCG of a user with n positives (n capped at k): the discounts' cumsum.
        self.idcg = torch.cat([torch.zeros(1, dtype=torch.float64),
                               (1.0 / torch.log2(torch.arange(k, dtype=torch.float64) + 2))
                               .cumsum(0)])
        self.slice_items = slice_items
        self.recommended = torch.zeros_like(slice_items)
        self.auc_sum = 0.0
        self.users = 0
        self.pairs = 0
        #: Users ranked in any batch (coverage counts their top K, slice users or not).
        self.ranked = 0

    def update(self, topk: torch.Tensor, rows: torch.Tensor, ranks: torch.Tensor,
               auc: torch.Tensor) -> None:
        """One batch: its top-K (coverage) and its positives' rows and mid-ranks (0-based)."""
        self.recommended[topk.flatten()] = True
        n_rows = topk.shape[0]
        self.ranked += int(n_rows)
        if not rows.numel():
            return
        count = torch.bincount(rows, minlength=n_rows)
        has = count > 0
        hit = ranks <= self.k - 1  # 1-based position rank + 1 within the top K

        def per_user(values: torch.Tensor) -> torch.Tensor:
            return torch.zeros(n_rows, dtype=torch.float64).index_add_(0, rows, values.double())

        hits = per_user(hit)
        dcg = per_user(hit / torch.log2(ranks.double() + 2))
        best = torch.zeros(n_rows, dtype=torch.float64).scatter_reduce_(
            0, rows, hit / (ranks.double() + 1), "amax")
        k = self.k
        for name, values in ((f"recall@{k}", hits[has] / count[has]),
                             (f"ndcg@{k}", dcg[has] / self.idcg[count[has].clamp(max=k)]),
                             (f"hit@{k}", (hits[has] > 0).double()), ("mrr", best[has])):
            self.sums[name] += float(values.sum())
            self.squares[name] += float((values * values).sum())
        # Per-user AUC = mean over that user's positives, then averaged over users.
        self.auc_sum += float((per_user(auc)[has] / count[has]).sum())
        self.users += int(has.sum())
        self.pairs += int(rows.numel())

    def result(self, sampled_from: int = 0) -> dict[str, float]:
        """The slice's metrics (with their standard errors when the users ranked are a
        sample of ``sampled_from``). A slice without users (cold_start when no held-out pair is on
        a cold product) has nothing to average: its ranking metrics are NaN, never 0, so a
        table cannot show a missing slice as a model that scored zero. Coverage stays
        defined while any user was ranked (the share of the slice's products in their top
        K); NaN when none was, or the slice holds no product."""
        empty = self.users == 0
        out = {name: math.nan if empty else total / self.users for name, total in self.sums.items()}
        if self.auc:
            out["auc"] = math.nan if empty else self.auc_sum / self.users
        n_items = int(self.slice_items.sum())
        hit_items = int((self.recommended & self.slice_items).sum())
        covered = n_items and self.ranked
        out[f"coverage@{self.k}"] = hit_items / n_items if covered else math.nan
        out["users"] = float(self.users)
        out["pairs"] = float(self.pairs)
        if sampled_from:
            out["sampled_from"] = float(sampled_from)
            out.update(self._standard_errors(sampled_from))
        return out

    def _standard_errors(self, sampled_from: int) -> dict[str, float]:
        """``se:<metric>`` of each mean, the ranked users being a sample of ``sampled_from``
        (:func:`sampling_error`; the slice's users are that same share of its own)."""
        n = self.users
        if n < 2:
            return {f"se:{name}": math.nan for name in self.sums}
        population = round(n * sampled_from / self.ranked)
        return {f"se:{name}": sampling_error(
                    math.sqrt(max(0.0, (self.squares[name] - total * total / n) / (n - 1))),
                    n, population)
                for name, total in self.sums.items()}


def mid_ranks(scores: torch.Tensor, rows: torch.Tensor, items: torch.Tensor,
              kth: torch.Tensor | None, block_elements: int = 1 << 22) -> torch.Tensor:
    """0-based mid-rank of each positive (row, item) in its row of ``scores``: the entries
    above it plus half the others tied with it. ``kth`` is each row's K-th best score: a
    positive below it ranks K or worse (returned as +inf), so only the rest are counted
    (None: every positive is), in blocks of about ``block_elements`` scores. Cost: the
    counted positives x the products."""
    pos = scores[rows, items]
    ranks = torch.full((rows.numel(),), float("inf"), dtype=torch.float64)
    near = (torch.nonzero(pos >= kth[rows]).flatten() if kth is not None
            else torch.arange(rows.numel(), device=pos.device))
    step = max(1, block_elements // max(scores.shape[1], 1))
    for start in range(0, near.numel(), step):
        at = near[start : start + step]
        row_scores, s = scores[rows[at]], pos[at].unsqueeze(1)
        above = (row_scores > s).sum(1)
        tied = (row_scores == s).sum(1) - 1
        ranks[at.cpu()] = (above + 0.5 * tied).double().cpu()
    return ranks


def _pair_auc(pos_scores: torch.Tensor, rows: torch.Tensor, ranks: torch.Tensor,
              n_valid: torch.Tensor) -> torch.Tensor:
    """AUC of each positive (its score, its row): the share of the row's valid (finite)
    negatives it outscores (ties count half), from its mid-rank among all products
    (:func:`mid_ranks` with no ``kth``) less the row's other positives above or tied with
    it. No sort: the cost is the positives x the products, plus each row's positives
    squared."""
    # The row's positives side by side, [P, M] (M: most positives of one row), to count them.
    n_rows = n_valid.numel()
    pos_count = torch.bincount(rows, minlength=n_rows)
    order = torch.argsort(rows, stable=True)
    r_sorted = rows[order]
    starts = torch.zeros(n_rows + 1, dtype=torch.long)
    starts[1:] = torch.bincount(r_sorted, minlength=n_rows).cumsum(0)
    slot = torch.arange(rows.numel()) - starts[r_sorted]
    width = int(slot.max()) + 1 if rows.numel() else 1
    padded = torch.full((n_rows, width), float("nan"), dtype=pos_scores.dtype)
    padded[r_sorted, slot] = pos_scores[order]
    mine, s = padded[r_sorted], pos_scores[order].unsqueeze(1)
    above_pos = (mine > s).sum(1).double()
    tied_pos = (mine == s).sum(1).double() - 1  # the positive itself left out
    neg = (n_valid[r_sorted] - pos_count[r_sorted]).clamp(min=1).double()
    beaten_by = ranks[order] - above_pos - 0.5 * tied_pos
    auc = torch.empty(rows.numel(), dtype=torch.float64)
    auc[order] = 1.0 - beaten_by / neg
    return auc


def _by_user(frames: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(users, items) of the frames' pairs, sorted by user (for :func:`rows_of`)."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    users = torch.cat([torch.as_tensor(f["user"].to_numpy("int64", copy=True)) for f in frames])
    items = torch.cat([torch.as_tensor(f["product"].to_numpy("int64", copy=True)) for f in frames])
    order = torch.argsort(users, stable=True)
    return users[order], items[order]


def stage_pairs(split: Split, stage: str, candidates: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """What a ranking of ``stage`` is judged on: (users, items) of its pairs on ``candidates``
    (a bool mask), then (users, items) never ranked (:meth:`Split.excluded`), each sorted by
    user (for :func:`rows_of`)."""
    gt_users, gt_items = _by_user([split.frame(stage)])
    keep = candidates[gt_items]
    return (gt_users[keep], gt_items[keep], *_by_user([split.excluded(stage)]))


def rows_of(users: torch.Tensor, batch: torch.Tensor, items: torch.Tensor):
    """Entries of (users, items) (sorted by user) whose user is in ``batch`` (sorted),
    as (row-in-batch, item)."""
    lo = torch.searchsorted(users, batch[0])
    hi = torch.searchsorted(users, batch[-1], right=True)
    u, i = users[lo:hi], items[lo:hi]
    rows = torch.searchsorted(batch, u).clamp(max=batch.numel() - 1)
    hit = batch[rows] == u  # users between batch members that are not in the batch
    return rows[hit], i[hit]


@torch.no_grad()
def evaluate_ranking(
    score_fn: ScoreFn,
    split: Split,
    *,
    stage: str = "test",
    k: int = 20,
    candidates: torch.Tensor | None = None,
    batch_size: int = 1024,
    slices: tuple[str, ...] = SLICES,
    auc: bool = True,
    sample_users: int = 0,
    seed: int = 2020,
) -> dict[str, dict[str, float]]:
    """Rank products for every user holding ``stage`` pairs and report metrics per slice.

    Args:
        score_fn: ``score_fn(user_idx LongTensor[B]) -> Tensor[B, num_items]``, higher is better.
        split: the split; training pairs (and validation pairs for ``stage="test"``) are
            excluded from each user's ranking.
        stage: ``"valid"`` or ``"test"``.
        k: cut-off of recall/ndcg/hit/mrr/coverage.
        candidates: optional bool mask ``[num_items]`` or index of products: only those are
            ranked and only pairs on them count (e.g. long-tail products only).
        batch_size: users scored per call of ``score_fn``.
        slices: which of ``overall``, ``long_tail``, ``cold_start`` to report.
        auc: compute AUC (every positive's rank counted, not only the top K's; training-time
            monitoring skips it and leaves the key out).
        sample_users: rank a sample of at most this many users (0: all; module doc);
            ``seed`` draws it, the same users for every score function.

    Returns:
        ``{slice: {"recall@K", "ndcg@K", "hit@K", "mrr", "auc", "coverage@K", "users",
        "pairs"}}`` (and ``"sampled_from"``, ``"se:recall@K"`` ... when users were
        sampled); ``mrr`` is MRR@K, ``coverage@K`` is the share of the slice's
        (candidate) products that appear in some user's top K.
    """
    if stage not in ("valid", "test"):
        raise UsageError(f"stage must be 'valid' or 'test', got {stage!r}")
    cand = candidate_mask(candidates, split.num_items)
    slice_masks = _slice_masks(split, slices)
    states = {name: _SliceState(k, slice_masks[name] & cand, auc) for name in slices}
    gt_users, gt_items, ex_users, ex_items = stage_pairs(split, stage, cand)
    users, total = draw_users(gt_users, sample_users, seed)
    sampled_from = total if users.numel() < total else 0
    k_eff = min(k, int(cand.sum()))
    for start in range(0, users.numel(), batch_size):
        batch = users[start : start + batch_size]
        scores = _masked_scores(score_fn, batch, split.num_items, cand,
                                rows_of(ex_users, batch, ex_items))
        topk, rows, items, ranks, pair_auc = _rank_batch(
            scores, k_eff, rows_of(gt_users, batch, gt_items), auc)
        for name, state in states.items():
            on = slice_masks[name][items]
            state.update(topk, rows[on], ranks[on], pair_auc[on])
    return {name: state.result(sampled_from) for name, state in states.items()}


def _slice_masks(split: Split, slices: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Bool ``[num_items]`` mask of every known slice; refuses unknown names in ``slices``."""
    slice_masks = {
        "overall": torch.ones(split.num_items, dtype=torch.bool),
        "long_tail": long_tail_items(split),
        "cold_start": cold_start_items(split),
    }
    unknown = set(slices) - set(slice_masks)
    if unknown:
        raise UsageError(f"unknown slices {sorted(unknown)}; known: {list(slice_masks)}")
    return slice_masks


def _masked_scores(score_fn: ScoreFn, batch: torch.Tensor, num_items: int,
                   cand: torch.Tensor, excluded: tuple[torch.Tensor, torch.Tensor]
                   ) -> torch.Tensor:
    """``[B, num_items]`` scores of ``batch``, -inf off the candidates and on the
    ``excluded`` (row, item) entries, where the scores are (the GPU during training)."""
    scores = score_fn(batch).float()
    if scores.shape != (batch.numel(), num_items):
        raise UsageError(
            f"score_fn returned shape {tuple(scores.shape)}, expected "
            f"({batch.numel()}, {num_items})"
        )
    device = scores.device
    scores = scores.clone()
    scores[:, ~cand.to(device)] = float("-inf")
    ex_rows, ex_cols = excluded
    scores[ex_rows.to(device), ex_cols.to(device)] = float("-inf")
    return scores


def _rank_batch(scores: torch.Tensor, k_eff: int, positives: tuple[torch.Tensor, torch.Tensor],
                auc: bool) -> tuple[torch.Tensor, ...]:
    """(top-K indices, positives' rows and items, their mid-ranks, their AUC or NaN) of one
    batch's masked ``scores``. Only the ``[B, k]`` indices come back to the CPU, unless AUC
    needs the whole matrix."""
    device = scores.device
    top = scores.topk(k_eff, dim=1)
    topk = top.indices.cpu()
    rows, items = positives
    no_top = torch.full((scores.shape[0],), float("inf"), device=device)
    kth = top.values[:, -1] if k_eff else no_top
    # AUC needs every positive's rank; the top-K metrics only those at or above the
    # K-th score (a positive below it ranks K or worse either way).
    ranks = mid_ranks(scores, rows.to(device), items.to(device), None if auc else kth)
    if auc:
        pair_auc = _pair_auc(scores[rows, items].cpu(), rows, ranks,
                             torch.isfinite(scores).sum(1).cpu())
    else:
        pair_auc = torch.full((rows.numel(),), float("nan"), dtype=torch.float64)
    return topk, rows, items, ranks, pair_auc


def format_table(results: dict[str, dict[str, dict[str, float]]], k: int = 20) -> str:
    """A plain-text table: one line per (model, slice) with the main metrics; ``n/a`` where
    a value is NaN or absent (an empty slice, AUC skipped), so it never reads as 0."""
    cols = [f"recall@{k}", f"ndcg@{k}", f"hit@{k}", "mrr", "auc", f"coverage@{k}", "users"]
    head = f"{'model':<12} {'slice':<16}" + "".join(f"{c:>12}" for c in cols)
    lines = [head, "-" * len(head)]
    for model, by_slice in results.items():
        for name, values in by_slice.items():
            cells = "".join(_cell(values.get(c), 0 if c == "users" else 4) for c in cols)
            lines.append(f"{model:<12} {name:<16}{cells}")
    return "\n".join(lines + _sample_lines(results, k))


def _sample_lines(results: dict[str, dict[str, dict[str, float]]], k: int) -> list[str]:
    """The footnote of a sampled table: how many users of how many, and the standard
    errors of NDCG@K (none when every user was ranked)."""
    overall = [by["overall"] for by in results.values()
               if "sampled_from" in by.get("overall", {})]
    if not overall:
        return []
    errors = [v[f"se:ndcg@{k}"] for v in overall]
    return [f"Users: a seeded sample of {overall[0]['users']:,.0f} of "
            f"{overall[0]['sampled_from']:,.0f} (train.eval_users); standard error of "
            f"ndcg@{k} overall {min(errors):.4f}-{max(errors):.4f}"]


def _cell(value: float | None, digits: int) -> str:
    """One right-aligned table cell: the value, or ``n/a`` for a missing or NaN one."""
    if value is None or math.isnan(value):
        return f"{'n/a':>12}"
    return f"{value:>12.{digits}f}"
