"""Seen pairs: the (row, column) pairs a ranking leaves out (what a user already bought)."""

from __future__ import annotations

import torch
from torch import Tensor

from kgrec.errors import UsageError


class SeenIndex:
    """Row -> seen column indices in CSR form, for masking already-used pairs.

    Args:
        rows: Row index of each seen pair (e.g. the user).
        cols: Column index of each seen pair (e.g. the product).
        num_rows: Number of rows.
        values: Optional value of each pair (:meth:`dense` writes them; default 1).
    """

    def __init__(self, rows: Tensor, cols: Tensor, num_rows: int,
                 values: Tensor | None = None) -> None:
        rows, cols = rows.long().cpu(), cols.long().cpu()
        order = torch.argsort(rows * (int(cols.max()) + 1 if cols.numel() else 1) + cols)
        self.cols = cols[order]
        self.values = (torch.ones(len(cols)) if values is None else values.float().cpu())[order]
        counts = torch.bincount(rows, minlength=num_rows)
        self.indptr = torch.zeros(num_rows + 1, dtype=torch.long)
        self.indptr[1:] = torch.cumsum(counts, 0)

    @classmethod
    def from_edges(cls, edges: Tensor, num_rows: int, *, transpose: bool = False) -> SeenIndex:
        """From ``[2, E]`` (user, item) edges; ``transpose`` gives item -> users."""
        if edges.dim() != 2 or edges.shape[0] != 2:
            hint = " (transpose it: .T)" if edges.dim() == 2 and edges.shape[1] == 2 else ""
            raise UsageError(f"edges must be [2, E] (row 0 users, row 1 items), got "
                             f"{list(edges.shape)}{hint}")
        src, dst = (edges[1], edges[0]) if transpose else (edges[0], edges[1])
        if src.numel() and (int(src.min()) < 0 or int(src.max()) >= num_rows):
            raise UsageError(f"edge rows must lie in [0, {num_rows}), got {int(src.min())}.."
                             f"{int(src.max())}: are users and items swapped?")
        return cls(src, dst, num_rows)

    def pairs(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """(position in ``rows``, column) of every seen pair of the given rows."""
        pos, at = self._entries(rows)
        return pos, self.cols[at]

    def dense(self, rows: Tensor, num_cols: int) -> Tensor:
        """``[len(rows), num_cols]`` holding each seen pair's value (0 elsewhere)."""
        pos, at = self._entries(rows)
        out = torch.zeros(len(rows), num_cols)
        out[pos, self.cols[at]] = self.values[at]
        return out

    def _entries(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """(position in ``rows``, entry index) of every seen pair of the given rows."""
        rows = rows.long().cpu()
        start, end = self.indptr[rows], self.indptr[rows + 1]
        lengths = end - start
        pos = torch.repeat_interleave(torch.arange(len(rows)), lengths)
        offsets = torch.arange(int(lengths.sum())) - torch.repeat_interleave(
            torch.cumsum(lengths, 0) - lengths, lengths
        )
        return pos, torch.repeat_interleave(start, lengths) + offsets
