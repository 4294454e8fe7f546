"""Batch scoring: exact top-K over chunks, seen items excluded, Parquet and store write-back.

Never materialises the users x items matrix: a chunk of rows (users, or items in
``--per item`` mode) is scored against the candidate columns, seen pairs are set to -inf,
and K per row are kept. Memory is bounded by ``chunk_size x columns``; matmul scorers
(:class:`MatmulScorer`) do not even hold that, only group maxima.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from kgrec.kg import schema
from kgrec.kg.errors import InputError
from kgrec.kg.ids import IdMap
from kgrec.kg.stats import long_tail_mask
from kgrec.kg.store.base import GraphStore
from torch import Tensor
from tqdm.auto import tqdm

ITEM_SETS = ("long-tail", "cold-start", "all")
#: Column group width of :func:`grouped_topk` (the selection among group maxima).
GROUP = 32
#: Members per column group of the streamed matmul top-K (see :class:`MatmulScorer`).
MEMBERS = 8
#: Columns of the Parquet output.
OUTPUT_COLUMNS = ["user_id", "product_id", "rank", "score", "score_gnn", "score_text"]

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


class SeenIndex:
    """Row -> seen column indices in CSR form, for masking already-used pairs.

    Args:
        rows: Row index of each seen pair (e.g. the user).
        cols: Column index of each seen pair (e.g. the product).
        num_rows: Number of rows.
    """

    def __init__(self, rows: Tensor, cols: Tensor, num_rows: int) -> None:
        rows, cols = rows.long().cpu(), cols.long().cpu()
        order = torch.argsort(rows * (int(cols.max()) + 1 if cols.numel() else 1) + cols)
        self.cols = cols[order]
        counts = torch.bincount(rows, minlength=num_rows)
        self.indptr = torch.zeros(num_rows + 1, dtype=torch.long)
        self.indptr[1:] = torch.cumsum(counts, 0)

    @classmethod
    def from_edges(cls, edges: Tensor, num_rows: int, *, transpose: bool = False) -> SeenIndex:
        """From ``[2, E]`` (user, item) edges; ``transpose`` gives item -> users."""
        if edges.dim() != 2 or edges.shape[0] != 2:
            hint = " (transpose it: .T)" if edges.dim() == 2 and edges.shape[1] == 2 else ""
            raise ValueError(f"edges must be [2, E] (row 0 users, row 1 items), got "
                             f"{list(edges.shape)}{hint}")
        src, dst = (edges[1], edges[0]) if transpose else (edges[0], edges[1])
        if src.numel() and (int(src.min()) < 0 or int(src.max()) >= num_rows):
            raise ValueError(f"edge rows must lie in [0, {num_rows}), got {int(src.min())}.."
                             f"{int(src.max())}: are users and items swapped?")
        return cls(src, dst, num_rows)

    def pairs(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """(position in ``rows``, column) of every seen pair of the given rows."""
        rows = rows.long().cpu()
        start, end = self.indptr[rows], self.indptr[rows + 1]
        lengths = end - start
        pos = torch.repeat_interleave(torch.arange(len(rows)), lengths)
        offsets = torch.arange(int(lengths.sum())) - torch.repeat_interleave(
            torch.cumsum(lengths, 0) - lengths, lengths
        )
        return pos, self.cols[torch.repeat_interleave(start, lengths) + offsets]


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
    """Exact top-``k`` columns of every row, one chunk of rows at a time.

    Args:
        scorer: Maps a chunk of row indices to fused, GNN and text scores over the candidate
            columns (``[b, C]``, column j = ``columns[j]``).
        rows: Row indices to score.
        k: Results per row.
        columns: Global indices of the candidate columns (``None``: all ``num_columns``).
        num_columns: Total number of columns (needed when ``columns`` is ``None``).
        seen: Pairs to exclude, in global column indices.
        chunk_size: Rows per chunk (memory is ``chunk_size x C`` floats, a few times; for a
            :class:`MatmulScorer`, ``chunk_size x (item_block + C / MEMBERS)``).
        progress: Show a progress bar.
        desc: Progress bar label.
        components: For scorers that return the fused matrix only: maps (rows, global
            column indices ``[b, k]``) to the GNN and text scores of those pairs.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if columns is None:
        if num_columns is None:
            raise ValueError("chunked_topk needs columns or num_columns")
        columns = torch.arange(num_columns)
        total = num_columns
    else:
        total = int(num_columns if num_columns is not None else int(columns.max()) + 1)
    col_of = torch.full((max(total, 1),), -1, dtype=torch.long)
    col_of[columns] = torch.arange(len(columns))
    kk = min(k, len(columns))
    out: dict[str, list[Tensor]] = {n: [] for n in ("index", "score", "score_gnn", "score_text")}
    mm = scorer if isinstance(scorer, MatmulScorer) else None
    if mm is not None and components is None:
        components = mm.components
    bar = tqdm(total=len(rows), desc=desc, unit="row", disable=not progress, leave=False)
    for start in range(0, len(rows), chunk_size):
        chunk = rows[start : start + chunk_size]
        g = t = None
        seen_pairs = None
        if seen is not None:
            pos, cols = seen.pairs(chunk)
            local = col_of[cols]
            keep = local >= 0
            seen_pairs = (pos[keep], local[keep])
        if mm is not None:
            vals, idx = mm.topk(chunk, kk, seen_pairs)
        else:
            out_chunk = scorer(chunk)
            if isinstance(out_chunk, Tensor):  # fused only: components at the top-k pairs
                fused = out_chunk.float()
            else:
                fused, g, t = out_chunk
                fused = fused.float()
            if seen_pairs is not None:
                fused[seen_pairs[0].to(fused.device), seen_pairs[1].to(fused.device)] = -torch.inf
            vals, idx = torch.topk(fused, kk, dim=1)
        found = torch.isfinite(vals)
        glob = columns.to(idx.device)[idx]
        out["index"].append(torch.where(found, glob, -1).cpu())
        out["score"].append(vals.cpu())
        if g is None or t is None:
            if components is not None:
                g_top, t_top = components(chunk, glob.clamp(min=0))
            elif mm is not None:  # single source: the score is the GNN score
                g_top, t_top = vals, torch.full_like(vals, torch.nan)
            else:
                raise ValueError("a scorer returning fused scores only needs components=")
        else:
            g_top, t_top = g.gather(1, idx), t.gather(1, idx)
        out["score_gnn"].append(torch.where(found, g_top.float(), torch.nan).cpu())
        out["score_text"].append(torch.where(found, t_top.float(), torch.nan).cpu())
        bar.update(len(chunk))
    bar.close()
    cat = {
        name: torch.cat(parts) if parts else torch.zeros(0, kk) for name, parts in out.items()
    }
    if kk < k:  # fewer candidates than k: pad so every row has k slots
        pad = k - kk
        cat = {
            name: torch.cat(
                [x, torch.full((x.shape[0], pad), -1 if name == "index" else -torch.inf)
                 .to(x.dtype)], dim=1,
            )
            for name, x in cat.items()
        }
    return TopK(cat["index"].long(), cat["score"], cat["score_gnn"], cat["score_text"])


def topk_frame(
    top: TopK, rows: Tensor, row_ids: IdMap, col_ids: IdMap, *, per: str = "user"
) -> pd.DataFrame:
    """The long table of a :class:`TopK`: one row per (row, rank), padding dropped.

    Args:
        top: Result of :func:`chunked_topk`.
        rows: The row indices that were scored.
        row_ids, col_ids: Id maps of rows and columns (users and products, or the reverse).
        per: ``"user"`` (rows are users) or ``"item"`` (rows are products).
    """
    k = top.index.shape[1]
    valid = (top.index >= 0).flatten().numpy()
    row_idx = rows.long().repeat_interleave(k).numpy()[valid]
    col_idx = top.index.flatten().numpy()[valid]
    rank = np.tile(np.arange(1, k + 1), len(rows))[valid]
    row_col, col_col = ("user_id", "product_id") if per == "user" else ("product_id", "user_id")
    frame = pd.DataFrame(
        {
            row_col: row_ids.ids_of(row_idx).astype(str),
            col_col: col_ids.ids_of(col_idx).astype(str),
            "rank": rank.astype("int64"),
            "score": top.score.flatten().numpy()[valid].astype("float64"),
            "score_gnn": top.score_gnn.flatten().numpy()[valid].astype("float64"),
            "score_text": top.score_text.flatten().numpy()[valid].astype("float64"),
        }
    )
    frame["per"] = per
    return frame[[*OUTPUT_COLUMNS, "per"]]


def select_items(
    spec: str, product_ids: IdMap, degree: Tensor, *, tail_share: float = 0.8
) -> Tensor:
    """Candidate product indices for ``--items``.

    Args:
        spec: ``"long-tail"`` (the least popular products holding ``1 - tail_share`` of the
            training events ... i.e. everything outside the head that makes up ``tail_share``
            of events, cold products included), ``"cold-start"`` (no training events),
            ``"all"``, or a path to a file of product ids (one per line, or a CSV/Parquet with
            a ``product_id`` or ``id`` column).
        product_ids: Product id map.
        degree: ``[N]`` training events per product.
        tail_share: Share of training events held by the head (0.8: Pareto's 80/20).
    """
    if spec == "all":
        return torch.arange(len(product_ids))
    if spec == "cold-start":
        return torch.nonzero(degree == 0).flatten()
    if spec == "long-tail":
        return long_tail(degree, tail_share)
    return _items_from_file(Path(spec), product_ids)


def long_tail(degree: Tensor, head_share: float = 0.8) -> Tensor:
    """Indices of the long-tail products (see :func:`kgrec.kg.stats.long_tail_mask`)."""
    return torch.from_numpy(np.flatnonzero(long_tail_mask(degree.cpu().numpy(), head_share)))


def _items_from_file(path: Path, product_ids: IdMap) -> Tensor:
    if not path.is_file():
        raise InputError(
            "not 'long-tail', 'cold-start', 'all' nor an existing file of product ids",
            file=str(path), field="--items",
        )
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix == ".csv":
        frame = pd.read_csv(path, dtype=str)
    else:
        lines = [x.strip() for x in path.read_text().splitlines()]
        frame = pd.DataFrame({"product_id": [x for x in lines if x]})
    column = next((c for c in ("product_id", "id") if c in frame), None)
    if column is None:
        raise InputError("needs a 'product_id' or 'id' column", file=str(path), field="product_id")
    ids = frame[column].astype(str).tolist()
    known = [i in product_ids for i in ids]
    if not all(known):
        row = known.index(False)
        raise InputError(
            f"unknown product id {ids[row]!r}", file=str(path), row=row + 1, field=column
        )
    return torch.as_tensor(product_ids.index_of(ids), dtype=torch.long).unique()


def recommendation_frame(
    frame: pd.DataFrame, *, model_version: str, created_at: int | None = None
) -> pd.DataFrame:
    """Scores table -> ``RECOMMENDED`` relationship rows (``kgrec.kg.schema.rel_columns``)."""
    if not model_version:
        raise ValueError("model_version must be a non-empty string")
    out = pd.DataFrame(
        {
            "src": frame["user_id"].astype("string"),
            "dst": frame["product_id"].astype("string"),
            "score": frame["score"].astype("Float64"),
            "score_gnn": frame["score_gnn"].astype("Float64"),
            "score_text": frame["score_text"].astype("Float64"),
            "rank": frame["rank"].astype("Int64"),
            "model_version": pd.Series(model_version, index=frame.index, dtype="string"),
            "created_at": pd.Series(
                int(time.time()) if created_at is None else created_at,
                index=frame.index, dtype="Int64",
            ),
        }
    )
    return out[schema.rel_columns(schema.RECOMMENDED)]


def write_back(
    store: GraphStore,
    frame: pd.DataFrame,
    *,
    model_version: str,
    batch_size: int = 5_000,
    progress: bool = True,
) -> int:
    """Write scores to the store as ``RECOMMENDED`` relationships, in batches.

    Idempotent per model version: the store merges on (user, product, model_version), so a
    rerun updates the same relationships instead of adding new ones.
    """
    rows = recommendation_frame(frame, model_version=model_version)
    # Stores replace a user's recommendations of a version per call, so a user's rows must
    # never be split over two batches: sort by user and cut only at user boundaries.
    rows = rows.sort_values(["src", "rank"], kind="stable").reset_index(drop=True)
    bounds = user_batches(rows["src"].to_numpy(), batch_size)
    written = 0
    for start, end in tqdm(bounds, desc="write-back", unit="batch", disable=not progress,
                           leave=False):
        written += store.write_recommendations(
            rows.iloc[start:end].reset_index(drop=True), progress=False
        )
    return written


def user_batches(users: np.ndarray, batch_size: int) -> list[tuple[int, int]]:
    """(start, end) row ranges of about ``batch_size`` rows over rows sorted by user, never
    splitting one user's rows (a user with more rows than ``batch_size`` gets one batch)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(users)
    change = np.flatnonzero(users[1:] != users[:-1]) + 1 if n else np.zeros(0, dtype=int)
    starts = np.r_[0, change] if n else np.zeros(0, dtype=int)
    out: list[tuple[int, int]] = []
    begin = 0
    for start in starts[1:]:
        if start - begin >= batch_size:
            out.append((begin, int(start)))
            begin = int(start)
    if n:
        out.append((begin, n))
    return out


def write_parquet(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write the scores table to Parquet (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


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


def describe(frame: pd.DataFrame, seconds: float, per: str, items: Sequence[int] | Tensor) -> str:
    """One-paragraph summary of a scoring run."""
    rows = frame["user_id" if per == "user" else "product_id"].nunique()
    return (
        f"Scored {rows:,} {'users' if per == 'user' else 'products'} against "
        f"{len(items):,} candidate {'products' if per == 'user' else 'users'} in "
        f"{seconds:.1f} s, keeping {len(frame):,} recommendations "
        f"({frame['product_id'].nunique():,} distinct products, "
        f"{frame['user_id'].nunique():,} distinct users); mean fused score "
        f"{frame['score'].mean():.3f}."
        if len(frame)
        else f"Scored nothing in {seconds:.1f} s: no candidates left after exclusions."
    )
