"""Score fusion: per-user normalisation, the alpha blend, alpha fitting and the text tower.

``s = a * norm(s_gnn) + (1 - a) * norm(s_text)`` where ``norm`` works per user over the
candidate items, because raw dot products of the two sources live on unrelated scales (and
differ in scale from user to user). ``a`` is a number, or one number per item (see
:mod:`kgrec.fusion.alpha`: products with few training events or much text lean on text).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

NORMALISATIONS = ("zscore", "rank", "none")


def check_normalise(method: str) -> str:
    if method not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {', '.join(NORMALISATIONS)}, got {method!r}")
    return method


def zscore(scores: Tensor) -> Tensor:
    """Per-row z-score: ``(x - mean) / std`` over the row (std 0 -> 1)."""
    mean = scores.mean(dim=1, keepdim=True)
    std = scores.std(dim=1, unbiased=False, keepdim=True)
    return (scores - mean) / torch.where(std > 0, std, torch.ones_like(std))


def rank_percentile(scores: Tensor, reference: Tensor | None = None) -> Tensor:
    """Per-row percentile rank in ``(0, 1]``: the share of the row's reference values <= x.

    Args:
        scores: ``[B, C]`` values to convert.
        reference: ``[B, Q]`` sorted reference values per row (default: the sorted row itself,
            which gives exact ranks; a quantile sketch gives ranks to within ``1/Q``).
    """
    ref = torch.sort(scores, dim=1).values if reference is None else reference
    # A relative tolerance: the same (user, item) score computed in matmuls of different
    # shapes (user-major vs item-major) may differ in the last bits.
    probe = scores + 1e-5 * (scores.abs() + 1e-3)
    pos = torch.searchsorted(ref.contiguous(), probe.contiguous(), right=True)
    return pos.to(scores.dtype) / ref.shape[1]


def normalise(scores: Tensor, method: str) -> Tensor:
    """Normalise each row (one user's scores over the candidate items) by ``method``."""
    method = check_normalise(method)
    if method == "zscore":
        return zscore(scores)
    if method == "rank":
        return rank_percentile(scores)
    return scores


def blend(gnn: Tensor, text: Tensor, alpha: float | Tensor) -> Tensor:
    """``alpha * gnn + (1 - alpha) * text``; a tensor ``alpha`` broadcasts over the last axis
    (one weight per item column)."""
    if isinstance(alpha, Tensor):
        if ((alpha < 0) | (alpha > 1)).any():
            raise ValueError("alpha values must lie in [0, 1]")
    elif not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    return alpha * gnn + (1 - alpha) * text


@dataclass
class UserStats:
    """Per-user normalisation statistics over the candidate items, for scoring item-major
    (``--per item``), where one chunk holds few items but all users.

    ``gnn``/``text`` hold ``[U, 2]`` (mean, std) for z-scores or ``[U, Q]`` sorted quantiles
    for ranks.
    """

    method: str
    gnn: Tensor
    text: Tensor

    def apply(self, scores: Tensor, which: str) -> Tensor:
        """Normalise ``[U, C]`` raw scores (rows = the users these stats were built for)."""
        stats = self.gnn if which == "gnn" else self.text
        if self.method == "zscore":
            std = stats[:, 1:2]
            return (scores - stats[:, 0:1]) / torch.where(std > 0, std, torch.ones_like(std))
        if self.method == "rank":
            return rank_percentile(scores, stats)
        return scores


class FusedScorer:
    """Scores users against items from two embedding pairs and blends them.

    ``s_gnn = U_g @ I_g.T`` and ``s_text = U_t @ I_t.T`` (the text pair is the raw text
    profile/product text, a trained text tower, or a query vector for search).

    Args:
        gnn_users: ``[U, d]`` GNN user embeddings.
        gnn_items: ``[N, d]`` GNN product embeddings.
        text_users: ``[U, d']`` text-side user vectors.
        text_items: ``[N, d']`` text-side product vectors.
        alpha: GNN weight, a number or ``[N]`` per product.
        normalise: ``"zscore"``, ``"rank"`` or ``"none"``.
        device: Where the matmuls run (default: where ``gnn_users`` is).
    """

    def __init__(
        self,
        gnn_users: Tensor,
        gnn_items: Tensor,
        text_users: Tensor,
        text_items: Tensor,
        *,
        alpha: float | Tensor = 0.5,
        normalise: str = "zscore",
        device: str | torch.device | None = None,
    ) -> None:
        if gnn_users.shape[0] != text_users.shape[0]:
            raise ValueError(
                f"user rows differ: gnn {gnn_users.shape[0]} vs text {text_users.shape[0]}"
            )
        if gnn_items.shape[0] != text_items.shape[0]:
            raise ValueError(
                f"item rows differ: gnn {gnn_items.shape[0]} vs text {text_items.shape[0]}"
            )
        self.device = torch.device(device) if device is not None else gnn_users.device
        self.gnn_users, self.gnn_items = (x.float().to(self.device) for x in (gnn_users, gnn_items))
        self.text_users, self.text_items = (
            x.float().to(self.device) for x in (text_users, text_items)
        )
        self.normalise = check_normalise(normalise)
        self.alpha = alpha.float().to(self.device) if isinstance(alpha, Tensor) else float(alpha)

    @property
    def num_users(self) -> int:
        return int(self.gnn_users.shape[0])

    @property
    def num_items(self) -> int:
        return int(self.gnn_items.shape[0])

    def _alpha(self, items: Tensor | None) -> float | Tensor:
        if isinstance(self.alpha, Tensor) and items is not None:
            return self.alpha[items]
        return self.alpha

    def components(self, users: Tensor, items: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Raw ``[B, C]`` GNN and text scores of ``users`` against ``items`` (default all)."""
        users = users.to(self.device)
        gi = self.gnn_items if items is None else self.gnn_items[items.to(self.device)]
        ti = self.text_items if items is None else self.text_items[items.to(self.device)]
        return self.gnn_users[users] @ gi.T, self.text_users[users] @ ti.T

    def score(self, users: Tensor, items: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Fused, GNN and text scores ``[B, C]``; normalised per user over ``items``."""
        g, t = self.components(users, items)
        alpha = self._alpha(None if items is None else items.to(self.device))
        if isinstance(alpha, float) and alpha in (0.0, 1.0):
            fused = (g if alpha == 1.0 else t).clone()  # one source: its own ranking, raw scale
        else:
            fused = blend(normalise(g, self.normalise), normalise(t, self.normalise), alpha)
        return fused, g, t

    def fused_zscore(self, users: Tensor, items: Tensor | None = None) -> Tensor:
        """Fused z-score blend ``[B, C]`` in one matmul, equal to ``score(...)[0]`` up to float
        rounding.

        Per-user z-score statistics over the candidates are closed forms of the item
        statistics: ``mean_u = u . mu`` and ``var_u = u^T Sigma u``. So
        ``a_i (g_ui - m_u) / s_u + (1 - a_i)(t_ui - n_u) / r_u`` is one dot product of
        ``[u_g / s_u, -m_u / s_u, u_t / r_u, -n_u / r_u]`` with
        ``[a_i i_g, a_i, (1 - a_i) i_t, 1 - a_i]``: no score matrix is normalised at all.
        """
        if self.normalise != "zscore":
            raise ValueError("fused_zscore needs normalise='zscore'")
        side = self._item_side(items)
        return self._zscore_users(users, side) @ side["items"].T

    def _zscore_users(self, users: Tensor, side: dict[str, Tensor]) -> Tensor:
        ug = self.gnn_users[users.to(self.device)]
        ut = self.text_users[users.to(self.device)]
        parts = []
        for u, mu, cov in ((ug, side["mu_g"], side["cov_g"]), (ut, side["mu_t"], side["cov_t"])):
            mean = u @ mu
            std = ((u @ cov) * u).sum(1).clamp(min=0).sqrt()
            std = torch.where(std > 0, std, torch.ones_like(std))
            parts += [u / std[:, None], (-mean / std)[:, None]]
        return torch.cat(parts, 1)

    def _item_side(self, items: Tensor | None) -> dict[str, Tensor]:
        key = None if items is None else hash(items.cpu().numpy().tobytes())
        cached = getattr(self, "_side_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        idx = None if items is None else items.to(self.device)
        gi = self.gnn_items if idx is None else self.gnn_items[idx]
        ti = self.text_items if idx is None else self.text_items[idx]
        alpha = self._alpha(idx)
        a = (alpha if isinstance(alpha, Tensor) else torch.full((gi.shape[0],), alpha,
                                                                  device=self.device))[:, None]
        side = {"items": torch.cat([a * gi, a, (1 - a) * ti, 1 - a], 1)}
        for name, x in (("g", gi), ("t", ti)):
            mu = x.mean(0)
            centred = x - mu
            side[f"mu_{name}"] = mu
            side[f"cov_{name}"] = centred.T @ centred / max(x.shape[0], 1)
        self._side_cache = (key, side)
        return side

    def pair_components(self, users: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        """Raw GNN and text scores of ``users[b]`` with products ``index[b, j]`` (``[B, k]``)."""
        users, index = users.to(self.device), index.to(self.device)
        g = (self.gnn_users[users][:, None, :] * self.gnn_items[index]).sum(-1)
        t = (self.text_users[users][:, None, :] * self.text_items[index]).sum(-1)
        return g, t

    def chunk_scorer(self, items: Tensor | None = None):
        """The fastest exact scorer of user chunks against ``items`` for
        :func:`kgrec.fusion.batch.chunked_topk`: the one-matmul z-score blend when it applies
        (returns fused scores only; components come from :meth:`pair_components`)."""
        from kgrec.fusion.batch import MatmulScorer  # batch builds on score, not the reverse

        if self.normalise == "zscore" and not (
            isinstance(self.alpha, float) and self.alpha in (0.0, 1.0)
        ):
            side = self._item_side(items)
            return MatmulScorer(lambda rows: self._zscore_users(rows, side), side["items"],
                                self.pair_components)
        return lambda rows: self.score(rows, items)

    def __call__(self, users: Tensor) -> Tensor:
        """Fused scores of ``users`` against every item (the ``score_fn`` of evaluations)."""
        return self.score(users)[0]

    def user_stats(
        self, users: Tensor, items: Tensor | None = None, *, chunk_size: int = 1024,
        sketch: int = 1024,
    ) -> UserStats:
        """Normalisation statistics of ``users`` over ``items``, computed chunk by chunk."""
        parts: dict[str, list[Tensor]] = {"gnn": [], "text": []}
        for start in range(0, len(users), chunk_size):
            g, t = self.components(users[start : start + chunk_size], items)
            for name, x in (("gnn", g), ("text", t)):
                parts[name].append(_row_stats(x, self.normalise, sketch))
        return UserStats(self.normalise, torch.cat(parts["gnn"]), torch.cat(parts["text"]))

    def score_items(
        self, items: Tensor, users: Tensor, stats: UserStats
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Item-major fused, GNN and text scores ``[len(items), len(users)]``."""
        g, t = self.components(users, items)  # [U, C]
        alpha = self._alpha(items.to(self.device))
        if isinstance(alpha, float) and alpha in (0.0, 1.0):
            fused = (g if alpha == 1.0 else t).clone()
        else:
            fused = blend(stats.apply(g, "gnn"), stats.apply(t, "text"), alpha)
        return fused.T, g.T, t.T


def _row_stats(x: Tensor, method: str, sketch: int) -> Tensor:
    if method == "zscore":
        return torch.stack([x.mean(dim=1), x.std(dim=1, unbiased=False)], dim=1)
    if method == "rank":
        ordered = torch.sort(x, dim=1).values
        if ordered.shape[1] <= sketch:
            return ordered
        pos = torch.linspace(0, ordered.shape[1] - 1, sketch, device=x.device).round().long()
        return ordered[:, pos]
    return torch.zeros(x.shape[0], 0, device=x.device)


class TextTower(torch.nn.Module):
    """A projection of frozen text embeddings into a space learned from interactions.

    ``score(u, i) = user_emb[u] . mlp(text[i])``, trained with BPR on the training events.
    The item side is a function of the text only, so products without any events (cold
    start) get scores in the users' language rather than raw semantic similarity.

    Args:
        text_dim: Width of the frozen text vectors (384 for MiniLM).
        num_users: Users with a free embedding.
        dim: Width of the shared space (64).
        hidden: Hidden width of the item MLP (0: a single linear map).
    """

    def __init__(self, text_dim: int, num_users: int, dim: int = 64, hidden: int = 256) -> None:
        super().__init__()
        self.user_emb = torch.nn.Embedding(num_users, dim)
        torch.nn.init.normal_(self.user_emb.weight, std=0.1)
        if hidden:
            self.item_mlp: torch.nn.Module = torch.nn.Sequential(
                torch.nn.Linear(text_dim, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, dim)
            )
        else:
            self.item_mlp = torch.nn.Linear(text_dim, dim)

    def items(self, text: Tensor) -> Tensor:
        """Item vectors ``[N, dim]`` from text vectors ``[N, text_dim]``."""
        return self.item_mlp(text)

    def forward(self, users: Tensor, text: Tensor) -> Tensor:
        return (self.user_emb(users) * self.items(text)).sum(-1)


@dataclass
class TowerResult:
    """A trained text tower's user and item vectors, and its loss per epoch."""

    user_vectors: Tensor
    item_vectors: Tensor
    losses: list[float]
    model: TextTower


def train_text_tower(
    edges: Tensor,
    item_text: Tensor,
    num_users: int,
    *,
    dim: int = 64,
    hidden: int = 256,
    epochs: int = 20,
    batch_size: int = 8192,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    seed: int = 2020,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> TowerResult:
    """Fit a :class:`TextTower` with BPR on training edges (one uniform negative per positive).

    Args:
        edges: ``[2, E]`` training (user, item) row indices.
        item_text: ``[N, d]`` frozen text vectors of all items (cold ones included, so they
            get vectors too; they simply never appear as positives).
        num_users: Number of users.
        dim, hidden: Tower sizes (see :class:`TextTower`).
        epochs: Passes over the training edges.
        batch_size: Positives per step.
        lr, weight_decay: Adam settings (weight decay is the L2 regulariser).
        seed: Seed of initialisation and negative sampling.
        device: Where to train.
        progress: Show a progress bar.
    """
    if edges.dim() != 2 or edges.shape[0] != 2:
        raise ValueError(f"edges must be [2, E], got {tuple(edges.shape)}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    device = torch.device(device)
    model = TextTower(item_text.shape[1], num_users, dim, hidden).to(device)
    text = item_text.float().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    users_all, items_all = edges[0].long(), edges[1].long()
    losses: list[float] = []
    bar = tqdm(range(epochs), desc="text tower", unit="epoch", disable=not progress, leave=False)
    for _ in bar:
        order = torch.randperm(users_all.numel(), generator=generator)
        total = 0.0
        for start in range(0, order.numel(), batch_size):
            idx = order[start : start + batch_size]
            u, pos = users_all[idx].to(device), items_all[idx].to(device)
            neg = torch.randint(0, text.shape[0], (idx.numel(),), generator=generator).to(device)
            item_vecs = model.items(text)
            ue = model.user_emb(u)
            diff = (ue * item_vecs[pos]).sum(-1) - (ue * item_vecs[neg]).sum(-1)
            loss = torch.nn.functional.softplus(-diff).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
        losses.append(total / max(order.numel(), 1))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    model.eval()
    with torch.no_grad():
        item_vectors = model.items(text).cpu()
        user_vectors = model.user_emb.weight.detach().cpu().clone()
    return TowerResult(user_vectors, item_vectors, losses, model.cpu())


def item_degree(edges: Tensor, num_items: int) -> Tensor:
    """Training events per item from ``[2, E]`` (user, item) edges."""
    return torch.bincount(edges[1].long(), minlength=num_items)
