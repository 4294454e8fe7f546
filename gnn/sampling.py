"""Negative sampling for BPR: uniform negatives that are never a known training positive."""

from __future__ import annotations

import torch

from kgrec.errors import UsageError
from kgrec.gnn.split import Split


def negative_pool(split: Split) -> torch.Tensor:
    """Rows of the products with at least one training interaction (the negative pool)."""
    return torch.nonzero(split.item_counts() > 0).flatten()


class NegativeSampler:
    """Uniform negative products for (user, positive) pairs, never a known training positive.

    Built from training pairs only: validation and test pairs are unknown to it, exactly as
    at serving time. Sampling is vectorised: draw all, then redraw only the collisions.

    Args:
        train_pairs: ``LongTensor[2, n]`` of training (user, product) rows.
        num_items: size of the product id space.
        generator: torch generator for reproducible draws.
        pool: product rows to draw from (default all). :func:`negative_pool` gives the
            products seen in training: a product without training interactions would only
            ever be a negative, pushed below everything, which is exactly wrong for
            cold-start products (and unrealistic: a new product is unknown at training).
    """

    def __init__(
        self,
        train_pairs: torch.Tensor,
        num_items: int,
        generator: torch.Generator | None = None,
        pool: torch.Tensor | None = None,
    ) -> None:
        self.num_items = num_items
        self.keys = torch.unique(train_pairs[0] * num_items + train_pairs[1])  # sorted
        self.generator = generator
        self.pool = pool
        if pool is not None and pool.numel() == 0:
            raise UsageError("empty negative pool")

    def draw(self, n: int) -> torch.Tensor:
        """``n`` uniform products of the pool (positives of nobody in particular)."""
        if self.pool is None:
            return torch.randint(self.num_items, (n,), generator=self.generator)
        return self.pool[torch.randint(self.pool.numel(), (n,), generator=self.generator)]

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Bool mask: is (user, item) a training positive."""
        key = users * self.num_items + items
        pos = torch.searchsorted(self.keys, key).clamp(max=max(len(self.keys) - 1, 0))
        return self.keys[pos] == key if len(self.keys) else torch.zeros_like(key, dtype=torch.bool)

    def sample(self, users: torch.Tensor, max_rounds: int = 50) -> torch.Tensor:
        """One negative product per entry of ``users``."""
        items = self.draw(users.numel()).view(users.shape)
        bad = self.is_positive(users, items)
        for _ in range(max_rounds):
            if not bad.any():
                return items
            items[bad] = self.draw(int(bad.sum()))
            bad = self.is_positive(users, items)
        if bad.any():
            raise UsageError(
                f"{int(bad.sum())} users have (almost) every product as a positive; "
                "no negative could be drawn"
            )
        return items
