"""Fused scoring: users against products from a GNN and a text embedding pair, each
source normalised per user and the two blended (:mod:`kgrec.fusion.blend`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

from kgrec.errors import UsageError
from kgrec.fusion.blend import Blend, UserStats, row_stats
from kgrec.fusion.topk import MatmulScorer

ScoreFn = Callable[[Tensor], Tensor]


class SeenTerm(Protocol):
    """A score term added to the blend (:class:`kgrec.fusion.reengage.Reengagement`)."""

    def scores(self, users: Tensor, items: Tensor | None = None) -> Tensor: ...


class FusedScorer:
    """Scores users against items from two embedding pairs and blends them.

    ``s_gnn = U_g @ I_g.T`` and ``s_text = U_t @ I_t.T`` (the text pair is the raw text
    profile/product text, a trained text tower, or a query vector for search).

    Args:
        gnn_users: ``[U, d]`` GNN user embeddings.
        gnn_items: ``[N, d]`` GNN product embeddings.
        text_users: ``[U, d']`` text-side user vectors.
        text_items: ``[N, d']`` text-side product vectors.
        blend: the GNN weight and the per-user normaliser (:class:`kgrec.fusion.blend.Blend`;
            default: the GNN alone).
        device: Where the matmuls run (default: where ``gnn_users`` is).
        seen: the re-engagement term ``s_seen`` (:class:`kgrec.fusion.reengage.Reengagement`),
            added as ``seen_weight * s_seen`` to the normalised blend (which then stays
            normalised even for ``alpha`` 0 or 1, so the weight has one scale).
    """

    def __init__(
        self,
        gnn_users: Tensor,
        gnn_items: Tensor,
        text_users: Tensor,
        text_items: Tensor,
        *,
        blend: Blend | None = None,
        device: str | torch.device | None = None,
        seen: SeenTerm | None = None,
        seen_weight: float = 0.0,
    ) -> None:
        if gnn_users.shape[0] != text_users.shape[0]:
            raise UsageError(
                f"user rows differ: gnn {gnn_users.shape[0]} vs text {text_users.shape[0]}"
            )
        if gnn_items.shape[0] != text_items.shape[0]:
            raise UsageError(
                f"item rows differ: gnn {gnn_items.shape[0]} vs text {text_items.shape[0]}"
            )
        self.device = torch.device(device) if device is not None else gnn_users.device
        self.gnn_users, self.gnn_items = (x.float().to(self.device) for x in (gnn_users, gnn_items))
        self.text_users, self.text_items = (
            x.float().to(self.device) for x in (text_users, text_items)
        )
        self.blend = (blend or Blend()).to(self.device)
        self.seen, self.seen_weight = seen, float(seen_weight)

    @property
    def num_users(self) -> int:
        return int(self.gnn_users.shape[0])

    @property
    def num_items(self) -> int:
        return int(self.gnn_items.shape[0])

    @property
    def normalise(self) -> str:
        return self.blend.normalise

    def components(self, users: Tensor, items: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Raw ``[B, C]`` GNN and text scores of ``users`` against ``items`` (default all)."""
        users = users.to(self.device)
        gi = self.gnn_items if items is None else self.gnn_items[items.to(self.device)]
        ti = self.text_items if items is None else self.text_items[items.to(self.device)]
        return self.gnn_users[users] @ gi.T, self.text_users[users] @ ti.T

    def score(self, users: Tensor, items: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Fused, GNN and text scores ``[B, C]``; normalised per user over ``items``."""
        g, t = self.components(users, items)
        fused = self.blend.combine(g, t, items, raw_single=self.seen is None)
        if self.seen is not None and self.seen_weight:
            fused += self.seen_weight * self.seen.scores(users, items).to(fused.device)
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
        if self.normalise != "zscore" or self.seen is not None:
            raise UsageError("fused_zscore needs normalise='zscore' and no re-engagement term")
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
        alpha = self.blend.alpha_at(idx)
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
        :func:`kgrec.fusion.topk.chunked_topk`: the one-matmul z-score blend when it applies
        (returns fused scores only; components come from :meth:`pair_components`)."""
        if self.normalise == "zscore" and self.seen is None and not self.blend.one_source:
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
                parts[name].append(row_stats(x, self.normalise, sketch))
        return UserStats(self.normalise, torch.cat(parts["gnn"]), torch.cat(parts["text"]))

    def score_items(
        self, items: Tensor, users: Tensor, stats: UserStats
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Item-major fused, GNN and text scores ``[len(items), len(users)]``."""
        g, t = self.components(users, items)  # [U, C]
        fused = self.blend.combine(g, t, items, stats=stats, raw_single=self.seen is None)
        if self.seen is not None and self.seen_weight:
            fused += self.seen_weight * self.seen.scores(users, items).to(fused.device)
        return fused.T, g.T, t.T


def candidate_score_fn(scorer: FusedScorer, candidates: Tensor | None = None) -> ScoreFn:
    """``users -> [B, num_items]`` fused scores, normalised per user over ``candidates``
    (default: all products); non-candidates get ``-inf``."""
    if candidates is None:
        return scorer
    cand = torch.as_tensor(candidates)
    if cand.dtype == torch.bool:
        cand = torch.nonzero(cand).flatten()

    def score(users: Tensor) -> Tensor:
        out = torch.full((len(users), scorer.num_items), -torch.inf)
        out[:, cand] = scorer.score(users, cand)[0].cpu()
        return out

    return score
