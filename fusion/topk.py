"""Exact top-K over chunks: the matmul top-K kernel and the chunk driver.

Never materialises the users x items matrix: a chunk of rows (users, or items in
``--per item`` mode) is scored against the candidate columns, seen pairs are set to -inf,
and K per row are kept. Memory is bounded by ``chunk_size x columns``; matmul scorers
(:class:`MatmulScorer`) do not even hold that, only group maxima.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from kgrec.errors import UsageError
from kgrec.fusion.seen import SeenIndex

#: Column group width of :func:`grouped_topk` (the selection among group maxima).
GROUP = 32
#: Members per column group of the streamed matmul top-K (see :class:`MatmulScorer`).
MEMBERS = 8

#: ``rows -> (fused, gnn, text)`` score matrices ``[len(rows), num_columns]``, or the fused
#: matrix alone (then :func:`chunked_topk` needs ``components``).
ChunkScorer = Callable[[Tensor], "tuple[Tensor, Tensor, Tensor] | Tensor"]


class MatmulScorer:
    """A scorer whose scores are one matrix product: ``user_vectors(rows) @ items.T``.

    :meth:`topk` never writes the ``rows x columns`` score matrix to memory. The product is
    computed ``item_block`` columns at a time into one small buffer that stays in cache;
    each block's columns are cut into groups of :data:`MEMBERS` (strided, so the maximum
    is a vectorised reduction) and only the group maxima are kept. The true top-k lie in
    the k groups with the largest maxima (a group holding a top-k value has a maximum at
    least the k-th value, and at most k groups do), so only those ``k * MEMBERS`` columns
    are scored again, exactly, at the end. Writing and re-reading the full matrix cost
    more than the matrix product itself saves (see ``benchmarks/score_speed.py``).

    Args:
        user_vectors: Maps row indices to ``[b, D]`` row vectors.
        items: ``[C, D]`` column vectors (the candidate columns, in order).
        components: (rows, global column indices ``[b, k]``) -> (gnn, text) scores at
            those pairs; ``None`` reports the score itself as GNN score and NaN as text.
        item_block: Columns per block (default: 1024 on the CPU, where the block buffer
            must stay in cache, and all columns at once on a GPU).
    """

    def __init__(
        self,
        user_vectors: Callable[[Tensor], Tensor],
        items: Tensor,
        components: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None,
        *,
        item_block: int | None = None,
    ) -> None:
        self.user_vectors = user_vectors
        self.items_t = items.T.contiguous()
        self.components = components
        block = item_block or (1024 if items.device.type == "cpu" else 1 << 20)
        # Whole groups per block, and no block wider than the (padded) candidate count.
        self.item_block = min(_round_up(block, MEMBERS), _round_up(self.num_columns, MEMBERS))
        self.groups_per_block = self.item_block // MEMBERS
        self.blocks = -(-self.num_columns // self.item_block)
        self.grouped_items = self._group_rows(items)
        self._buffers: dict[str, Tensor] = {}

    def _group_rows(self, items: Tensor) -> Tensor:
        """``[groups, MEMBERS * D]``: each group's member vectors side by side, so that
        re-scoring a group reads one contiguous run instead of MEMBERS scattered rows.
        Columns past the end (the last block's padding) are zero vectors."""
        n, d, width = self.num_columns, items.shape[1], self.item_block
        per_block, full = self.groups_per_block, n // width
        grouped = torch.empty(self.blocks, per_block, MEMBERS, d, dtype=items.dtype,
                              device=items.device)
        # One strided copy: member m of group g in block j is column j*width + m*per_block + g.
        grouped[:full] = items[: full * width].view(full, MEMBERS, per_block, d).transpose(1, 2)
        if full < len(grouped):
            last = torch.zeros(width, d, dtype=items.dtype, device=items.device)
            last[: n - full * width] = items[full * width :]
            grouped[full] = last.view(MEMBERS, per_block, d).transpose(0, 1)
        return grouped.view(-1, MEMBERS * d)

    @property
    def num_columns(self) -> int:
        return int(self.items_t.shape[1])

    def __call__(self, rows: Tensor) -> Tensor:
        return self.user_vectors(rows) @ self.items_t

    def topk(self, rows: Tensor, k: int, seen: tuple[Tensor, Tensor] | None = None
             ) -> tuple[Tensor, Tensor]:
        """Exact top-``k`` (values, column positions) of each row, ``[b, k]`` each.

        Args:
            rows: Row indices (a chunk).
            k: Results per row (at most :attr:`num_columns`).
            seen: (position in ``rows``, column position) pairs to exclude.
        """
        users = self.user_vectors(rows)
        if seen is not None:
            seen = (seen[0].to(users.device), seen[1].to(users.device))
        if self.num_columns < 16 * MEMBERS * k:  # too few columns for grouping to pay
            scores = users @ self.items_t
            if seen is not None:
                scores[seen[0], seen[1]] = -torch.inf
            return torch.topk(scores, k, dim=1)
        group_max = self._group_maxima(users, seen)
        _, top_groups = grouped_topk(group_max, k, GROUP, sorted=False)
        cols = self._group_columns(top_groups)  # [b, k * MEMBERS], may point past the end
        values = self._exact_scores(users, top_groups)
        values[cols >= self.num_columns] = -torch.inf
        if seen is not None:
            values[_pair_mask(seen, cols, self.num_columns)] = -torch.inf
        values, pos = values.topk(k, dim=1)
        return values, cols.gather(1, pos)

    def _group_maxima(self, users: Tensor, seen: tuple[Tensor, Tensor] | None) -> Tensor:
        b, n, width = users.shape[0], self.num_columns, self.item_block
        per_block = self.groups_per_block
        block = self._scratch("block", b, width, users.device)
        group_max = self._scratch("group_max", b, self.blocks * per_block, users.device)
        seen_by_block = _split_by_block(seen, width, self.blocks)
        for j in range(self.blocks):
            start = j * width
            end = min(start + width, n)
            torch.mm(users, self.items_t[:, start:end], out=block[:, : end - start])
            if end - start < width:
                block[:, end - start :] = -torch.inf
            block_seen = seen_by_block[j]
            if block_seen is not None:
                block[block_seen[0], block_seen[1] - start] = -torch.inf
            # Group g of block j holds columns start + g + m * per_block, m < MEMBERS.
            torch.amax(block.view(b, MEMBERS, per_block), 1,
                       out=group_max[:, j * per_block : (j + 1) * per_block])
        return group_max

    def _scratch(self, name: str, rows: int, cols: int, device: torch.device) -> Tensor:
        """A ``[rows, cols]`` work buffer kept across chunks: allocating tens of megabytes
        per chunk costs page faults (freed large blocks go back to the OS)."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape[0] < rows or buf.shape[1] != cols or buf.device != device:
            buf = self._buffers[name] = torch.empty(rows, cols, device=device)
        return buf[:rows]

    def _group_columns(self, groups: Tensor) -> Tensor:
        per_block = self.groups_per_block
        first = (groups // per_block) * self.item_block + groups % per_block
        members = torch.arange(MEMBERS, device=groups.device) * per_block
        return (first[:, :, None] + members).flatten(1)

    def _exact_scores(self, users: Tensor, groups: Tensor) -> Tensor:
        """Scores of ``users[r]`` with every member of ``groups[r, j]``, ``[b, k * MEMBERS]``
        in :meth:`_group_columns` order."""
        b, k = groups.shape
        out = torch.empty(b, k * MEMBERS, device=users.device)
        # On the CPU, sub-chunks keep the gathered vectors in cache.
        sub = 128 if users.device.type == "cpu" else b
        for r in range(0, b, sub):
            vectors = torch.nn.functional.embedding(groups[r : r + sub], self.grouped_items)
            vectors = vectors.view(len(vectors), k * MEMBERS, -1)
            out[r : r + sub] = vectors.mul_(users[r : r + sub, None, :]).sum(-1)
        return out


def _round_up(n: int, multiple: int) -> int:
    return max(multiple, -(-n // multiple) * multiple)


def _split_by_block(seen: tuple[Tensor, Tensor] | None, width: int, blocks: int
                    ) -> list[tuple[Tensor, Tensor] | None]:
    """The seen (position, column) pairs of each column block."""
    if seen is None or not len(seen[0]):
        return [None] * blocks
    pos, col = seen
    order = torch.argsort(col)
    pos, col = pos[order], col[order]
    edges = torch.arange(0, blocks + 1, device=col.device) * width
    bounds = torch.searchsorted(col, edges).tolist()
    return [(pos[a:b], col[a:b]) if b > a else None
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _pair_mask(seen: tuple[Tensor, Tensor], cols: Tensor, num_columns: int) -> Tensor:
    """``[b, m]`` mask of the (row, cols[row, j]) pairs that are in ``seen``."""
    pos, col = seen
    if not len(pos):
        return torch.zeros(cols.shape, dtype=torch.bool, device=cols.device)
    stride = max(num_columns, int(cols.max()) + 1)  # padded columns point past the end
    keys = torch.sort(pos * stride + col).values
    rows = torch.arange(len(cols), device=cols.device)[:, None]
    query = rows * stride + cols
    at = torch.searchsorted(keys, query).clamp(max=len(keys) - 1)
    return keys[at] == query


def dot_scorer(users: Tensor, items: Tensor, columns: Tensor | None = None) -> MatmulScorer:
    """A single-source scorer (e.g. GNN only): ``users[rows] @ items[columns].T``."""
    cand = items if columns is None else items[columns]
    return MatmulScorer(lambda rows: users[rows.to(users.device)], cand)


def grouped_topk(scores: Tensor, k: int, group: int = GROUP, *, sorted: bool = True
                 ) -> tuple[Tensor, Tensor]:
    """Exact row-wise top-``k`` of ``[B, C]`` scores.

    Columns are cut into groups of ``group``; each of the true top-k values lies in one of
    the ``k`` groups with the largest maxima (a group holding a top-k value has a maximum
    at least the k-th value, and at most k groups do), so one max-reduction over the
    matrix, a top-k over the group maxima and a top-k over ``k * group`` gathered values
    replace a top-k over all C columns. Falls back to ``torch.topk`` when C is not a
    multiple of ``group`` or too small for grouping to pay.
    """
    b, c = scores.shape
    if c % group or c < 4 * group * k:
        return scores.topk(min(k, c), dim=1, sorted=sorted)
    groups = scores.view(b, c // group, group)
    top_g = groups.amax(2).topk(k, dim=1, sorted=False).indices
    cand = groups.gather(1, top_g[:, :, None].expand(-1, -1, group)).reshape(b, -1)
    values, pos = cand.topk(k, dim=1, sorted=sorted)
    return values, top_g.gather(1, pos // group) * group + pos % group


@dataclass
class TopK:
    """Top-K per row: column indices and fused/component scores, all ``[R, k]``.

    Rows with fewer than k unseen candidates are padded with index -1 and score -inf.
    """

    index: Tensor
    score: Tensor
    score_gnn: Tensor
    score_text: Tensor


def chunked_topk(
    scorer: ChunkScorer,
    rows: Tensor,
    k: int,
    *,
    columns: Tensor | None = None,
    num_columns: int | None = None,
    seen: SeenIndex | None = None,
    chunk_size: int = 1024,
    progress: bool = True,
    desc: str = "score",
    components: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None,
) -> TopK:
    """Exact top-``k`` of the candidate ``columns`` (global indices; ``None``: all
    ``num_columns``) for every one of ``rows``, ``chunk_size`` rows at a time, ``seen`` pairs
    (global column indices) excluded.

    ``scorer`` maps a chunk of rows to fused, GNN and text scores ``[b, C]`` over the
    candidates (column j = ``columns[j]``), or to the fused ones only: then ``components``
    maps (rows, global column indices ``[b, k]``) to the GNN and text scores of those pairs.
    Memory is ``chunk_size x C`` floats a few times (for a :class:`MatmulScorer`,
    ``chunk_size x (item_block + C / MEMBERS)``).
    """
    if k < 1:
        raise UsageError(f"k must be >= 1, got {k}")
    if chunk_size < 1:
        raise UsageError(f"chunk_size must be >= 1, got {chunk_size}")
    columns, col_of = _candidate_columns(columns, num_columns)
    kk = min(k, len(columns))
    out: dict[str, list[Tensor]] = {n: [] for n in ("index", "score", "score_gnn", "score_text")}
    mm = scorer if isinstance(scorer, MatmulScorer) else None
    if mm is not None and components is None:
        components = mm.components
    bar = tqdm(total=len(rows), desc=desc, unit="row", disable=not progress, leave=False)
    for start in range(0, len(rows), chunk_size):
        chunk = rows[start : start + chunk_size]
        seen_pairs = None
        if seen is not None:
            pos, cols = seen.pairs(chunk)
            local = col_of[cols]
            keep = local >= 0
            seen_pairs = (pos[keep], local[keep])
        vals, idx, g_top, t_top = _chunk_topk(scorer, mm, chunk, kk, seen_pairs)
        found = torch.isfinite(vals)
        glob = columns.to(idx.device)[idx]
        if g_top is None or t_top is None:
            g_top, t_top = _components_at(components, mm, chunk, glob, vals)
        out["index"].append(torch.where(found, glob, -1).cpu())
        out["score"].append(vals.cpu())
        out["score_gnn"].append(torch.where(found, g_top.float(), torch.nan).cpu())
        out["score_text"].append(torch.where(found, t_top.float(), torch.nan).cpu())
        bar.update(len(chunk))
    bar.close()
    cat = {
        name: torch.cat(parts) if parts else torch.zeros(0, kk) for name, parts in out.items()
    }
    if kk < k:  # fewer candidates than k: pad so every row has k slots
        cat = {name: _pad(x, k - kk, -1 if name == "index" else -torch.inf)
               for name, x in cat.items()}
    return TopK(cat["index"].long(), cat["score"], cat["score_gnn"], cat["score_text"])


def _candidate_columns(columns: Tensor | None, num_columns: int | None
                       ) -> tuple[Tensor, Tensor]:
    """The candidates' global column indices and the map global -> candidate position
    (-1 for a column that is not a candidate)."""
    if columns is None:
        if num_columns is None:
            raise UsageError("chunked_topk needs columns or num_columns")
        columns = torch.arange(num_columns)
        total = num_columns
    else:
        total = int(num_columns if num_columns is not None else int(columns.max()) + 1)
    col_of = torch.full((max(total, 1),), -1, dtype=torch.long)
    col_of[columns] = torch.arange(len(columns))
    return columns, col_of


def _chunk_topk(scorer: ChunkScorer, mm: MatmulScorer | None, chunk: Tensor, kk: int,
                seen_pairs: tuple[Tensor, Tensor] | None
                ) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """One chunk's top-``kk`` values and candidate positions, seen pairs excluded, with
    the GNN and text scores there when the scorer returned them (else None)."""
    if mm is not None:
        vals, idx = mm.topk(chunk, kk, seen_pairs)
        return vals, idx, None, None
    out_chunk = scorer(chunk)
    if isinstance(out_chunk, Tensor):  # fused only: components at the top-k pairs later
        fused, g, t = out_chunk.float(), None, None
    else:
        fused, g, t = out_chunk
        fused = fused.float()
    if seen_pairs is not None:
        fused[seen_pairs[0].to(fused.device), seen_pairs[1].to(fused.device)] = -torch.inf
    vals, idx = torch.topk(fused, kk, dim=1)
    if g is None or t is None:
        return vals, idx, None, None
    return vals, idx, g.gather(1, idx), t.gather(1, idx)


def _components_at(components: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None,
                   mm: MatmulScorer | None, chunk: Tensor, glob: Tensor, vals: Tensor
                   ) -> tuple[Tensor, Tensor]:
    """The GNN and text scores of the top pairs, for scorers that gave the fused ones only."""
    if components is not None:
        return components(chunk, glob.clamp(min=0))
    if mm is not None:  # single source: the score is the GNN score
        return vals, torch.full_like(vals, torch.nan)
    raise UsageError("a scorer returning fused scores only needs components=")


def _pad(x: Tensor, pad: int, value: float) -> Tensor:
    """``x`` with ``pad`` more columns of ``value``."""
    return torch.cat([x, torch.full((x.shape[0], pad), value).to(x.dtype)], dim=1)


def score_users(
    score_fn: Callable[[Tensor, Tensor | None], tuple[Tensor, Tensor, Tensor]],
    users: Tensor,
    items: Tensor,
    num_items: int,
    k: int,
    *,
    seen: SeenIndex | None = None,
    chunk_size: int = 1024,
    progress: bool = True,
) -> TopK:
    """Top-``k`` of ``items`` for each of ``users`` (``score_fn(users, items)``)."""
    return chunked_topk(
        lambda rows: score_fn(rows, items), users, k, columns=items, num_columns=num_items,
        seen=seen, chunk_size=chunk_size, progress=progress, desc="score users",
    )
