"""Graph statistics: counts, interaction degree distributions and the long tail.

The long tail: sort products by interaction count (all interaction types), the *head* is
the smallest set of most-interacted products that covers ``head_share`` (80%) of all
interactions; every other product, never-interacted ones included, is in the tail.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kgrec.errors import UsageError
from kgrec.kg import schema
from kgrec.kg.snapshot import GraphSnapshot, build_snapshot, edge_type, node_type
from kgrec.kg.store.base import GraphStore

QUANTILES = (0.25, 0.5, 0.75, 0.9, 0.99)


@dataclass
class GraphStats:
    """Counts, degree summaries and long-tail figures of one graph."""

    counts: dict[str, int]
    interactions: int
    user_degree: dict[str, float]
    product_degree: dict[str, float]
    products: int
    never_interacted: int
    head_products: int
    long_tail_products: int
    #: Share of products in the long tail (never-interacted ones included).
    long_tail_share: float
    #: Share of all interactions that fall on long-tail products.
    long_tail_interaction_share: float
    head_share: float = 0.8
    #: Raw per-node degrees (for plots; left out of :meth:`to_dict`).
    user_degrees: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    product_degrees: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("user_degrees")
        out.pop("product_degrees")
        return out

    def table(self) -> str:
        """Counts and degree summaries as an aligned text table."""
        lines = [f"{'label / type':<18}{'count':>12}"]
        lines += [f"{name:<18}{n:>12,}" for name, n in self.counts.items()]
        keys = list(self.user_degree)
        lines.append("")
        lines.append(f"{'degree':<10}" + "".join(f"{k:>9}" for k in keys))
        for name, deg in (("user", self.user_degree), ("product", self.product_degree)):
            lines.append(f"{name:<10}" + "".join(f"{deg[k]:>9.1f}" for k in keys))
        return "\n".join(lines)

    def paragraph(self) -> str:
        return (
            f"{self.interactions:,} interactions between {self.counts.get(schema.USER, 0):,} "
            f"users and {self.products:,} products. The head ({self.head_products:,} products) "
            f"covers {self.head_share:.0%} of interactions; the long tail is "
            f"{self.long_tail_products:,} products ({self.long_tail_share:.1%} of the catalogue, "
            f"{self.long_tail_interaction_share:.1%} of interactions), of which "
            f"{self.never_interacted:,} were never interacted with. Median interactions per "
            f"user {self.user_degree['p50']:.0f}, per product "
            f"{self.product_degree['p50']:.0f}."
        )


def degree_summary(degrees: np.ndarray) -> dict[str, float]:
    """min, mean, max and quantiles (p50 is the median) of a degree array (zeros when empty)."""
    if len(degrees) == 0:
        return {k: 0.0 for k in ("min", "mean", "max", *(f"p{int(q * 100)}" for q in QUANTILES))}
    out = {"min": float(degrees.min()), "mean": float(degrees.mean()), "max": float(degrees.max())}
    for q in QUANTILES:
        out[f"p{int(q * 100)}"] = float(np.quantile(degrees, q))
    return out


def head_size(product_degrees: np.ndarray, head_share: float = 0.8) -> int:
    """Number of most-interacted products needed to cover ``head_share`` of interactions."""
    if not 0 < head_share <= 1:
        raise UsageError(f"head_share must be in (0, 1], got {head_share}")
    total = product_degrees.sum()
    if total == 0:
        return 0
    covered = np.cumsum(np.sort(product_degrees)[::-1])
    return int(np.searchsorted(covered, head_share * total - 1e-9) + 1)


def long_tail_mask(product_degrees: np.ndarray, head_share: float = 0.8) -> np.ndarray:
    """Bool mask of long-tail products: outside the most-interacted head (ties broken by
    position) that covers ``head_share`` of interactions; never-interacted products included.
    The one definition of the long tail that stats, evaluation and batch scoring share."""
    degrees = np.asarray(product_degrees)
    order = np.argsort(-degrees, kind="stable")
    tail = np.ones(len(degrees), dtype=bool)
    tail[order[: head_size(degrees, head_share)]] = False
    return tail


def graph_stats(
    source: GraphSnapshot | GraphStore, *, head_share: float = 0.8, progress: bool = False
) -> GraphStats:
    """Statistics of a snapshot, or of a store (exported to a snapshot first).

    Args:
        source: a :class:`GraphSnapshot` or any :class:`GraphStore`.
        head_share: share of interactions the head covers (default 0.8).
        progress: progress bars while exporting a store.
    """
    snap = (
        source if isinstance(source, GraphSnapshot) else build_snapshot(source, progress=progress)
    )
    counts = _counts(snap)
    n_users = snap.data[node_type(schema.USER)].num_nodes
    n_products = snap.data[node_type(schema.PRODUCT)].num_nodes
    events = snap.interactions()
    users = np.bincount(events["user"].to_numpy("int64"), minlength=n_users)
    products = np.bincount(events["product"].to_numpy("int64"), minlength=n_products)
    head = head_size(products, head_share)
    tail = n_products - head
    order = np.sort(products)[::-1]
    total = int(products.sum())
    return GraphStats(
        counts=counts,
        interactions=total,
        user_degree=degree_summary(users),
        product_degree=degree_summary(products),
        products=n_products,
        never_interacted=int((products == 0).sum()),
        head_products=head,
        long_tail_products=tail,
        long_tail_share=tail / n_products if n_products else 0.0,
        long_tail_interaction_share=float(order[head:].sum() / total) if total else 0.0,
        head_share=head_share,
        user_degrees=users,
        product_degrees=products,
    )


def _counts(snap: GraphSnapshot) -> dict[str, int]:
    out = {}
    for label in schema.NODE_LABELS:
        n = snap.data[node_type(label)].num_nodes or 0
        if n:
            out[label] = int(n)
    for rel in schema.RELATIONSHIPS:
        et = edge_type(rel)
        if et in snap.data.edge_types:
            out[rel] = int(snap.data[et].edge_index.shape[1])
    return out


def plot_degrees(stats: GraphStats, path: str | Path) -> Path:
    """Save log-log histograms of user and product interaction degrees as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, name, deg in (
        (axes[0], "users", stats.user_degrees),
        (axes[1], "products", stats.product_degrees),
    ):
        positive = deg[deg > 0]
        if len(positive):
            bins = np.logspace(0, np.log10(positive.max() + 1), 30)
            ax.hist(positive, bins=bins, color="tab:blue")
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_title(f"interactions per {name[:-1]} ({len(deg):,} {name})")
        ax.set_xlabel("interactions")
        ax.set_ylabel(name)
    fig.suptitle(
        f"long tail: {stats.long_tail_share:.1%} of products, "
        f"{stats.never_interacted:,} never interacted"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_popularity(stats: GraphStats, path: str | Path) -> Path:
    """Save the popularity curve (interactions per product, most popular first) with the
    head and the long tail coloured, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    degrees = stats.product_degrees
    order = np.argsort(-degrees, kind="stable")
    tail = long_tail_mask(degrees, stats.head_share)[order]
    x = np.arange(1, len(degrees) + 1)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    # One filled step curve per part, not a bar per product (thousands of patches).
    ranked = degrees[order]
    ax.fill_between(x, ranked, where=~tail, step="mid", color="tab:blue", label="head")
    ax.fill_between(x, ranked, where=tail, step="mid", color="tab:orange", label="long tail")
    ax.set_yscale("symlog")
    ax.set_xlabel("products by popularity")
    ax.set_ylabel("interactions")
    ax.set_title(f"popularity: {int(tail.sum()):,} of {len(tail):,} products in the long tail")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
