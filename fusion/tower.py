"""The text tower: frozen product text vectors projected into a space learned from
interactions, trained with BPR, so products without events get scores in the users' language.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from kgrec.errors import UsageError
from kgrec.gnn.losses import bpr_loss


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
        # Sparse gradients: a step touches (and SparseAdam updates) the batch's users only.
        self.user_emb = torch.nn.Embedding(num_users, dim, sparse=True)
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
        dim, hidden, epochs, batch_size: Tower sizes (see :class:`TextTower`); passes over
            the training edges; positives per step.
        lr, weight_decay: Adam settings (weight decay is the L2 regulariser; on the users it
            applies to each step's users, whose rows alone are updated).
        seed, device, progress: Seed of initialisation and negative sampling; where to
            train; whether to show a progress bar.
    """
    if edges.dim() != 2 or edges.shape[0] != 2:
        raise UsageError(f"edges must be [2, E], got {tuple(edges.shape)}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    device = torch.device(device)
    model = TextTower(item_text.shape[1], num_users, dim, hidden).to(device)
    text = item_text.float().to(device)
    # A step costs O(batch), not O(users): the user table takes sparse gradients and lazy
    # Adam, its L2 penalty covers the batch's users (dense Adam with weight decay touched
    # every user on every step, which made an epoch O(users x events / batch)).
    user_opt = torch.optim.SparseAdam(list(model.user_emb.parameters()), lr=lr)
    item_opt = torch.optim.Adam(model.item_mlp.parameters(), lr=lr, weight_decay=weight_decay)
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
            loss = _bpr_step(model, text, u, pos, neg, weight_decay, (user_opt, item_opt))
            total += loss * idx.numel()
        losses.append(total / max(order.numel(), 1))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    model.eval()
    with torch.no_grad():
        item_vectors = model.items(text).cpu()
        user_vectors = model.user_emb.weight.detach().cpu().clone()
    return TowerResult(user_vectors, item_vectors, losses, model.cpu())


def _bpr_step(model: TextTower, text: Tensor, u: Tensor, pos: Tensor, neg: Tensor,
              weight_decay: float, optimisers: tuple[torch.optim.Optimizer, ...]) -> float:
    """One BPR step on a batch of (user, positive, negative) rows; returns its mean loss."""
    # The MLP runs on the batch's products only, not the whole catalogue: a step costs
    # O(batch), whatever the number of products.
    batch_items, slot = torch.unique(torch.cat([pos, neg]), return_inverse=True)
    item_vecs = model.items(text.index_select(0, batch_items))
    # index_select and the sparse embedding's coalesced gradient sum in a fixed order
    # on any number of CPU threads (advanced indexing's does not): one seed, one result.
    ue = model.user_emb(u)
    pos_slot, neg_slot = slot[: u.numel()], slot[u.numel():]
    loss = bpr_loss((ue * item_vecs.index_select(0, pos_slot)).sum(-1),
                    (ue * item_vecs.index_select(0, neg_slot)).sum(-1),
                    torch.ones(u.numel(), device=u.device))  # unweighted: the mean
    # The L2 gradient dense Adam's weight decay gave each of the batch's users, once.
    penalty = 0.5 * weight_decay * model.user_emb(torch.unique(u)).pow(2).sum()
    for optimiser in optimisers:
        optimiser.zero_grad()
    (loss + penalty).backward()
    for optimiser in optimisers:
        optimiser.step()
    return float(loss.detach())
