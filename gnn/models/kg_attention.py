"""The knowledge-graph attention rounds of :class:`kgrec.gnn.models.kgat.KGATModel`: which
edges each round uses, which node rows it reads and writes, their fixed CSR patterns, and the
attention that turns them into the products' knowledge-graph summaries ``k_i``.

One attention round updates each head ``h`` that has knowledge-graph neighbours:

``k_h = sum_r beta(h, r) * sum_{t in N_r(h)} pi(h, r, t) * x_t``,
``pi(h, r, .) = softmax_t((x_h * e_r) . x_t / sqrt(d))`` over the tails of one relation,
``beta(h, .) = softmax_r(w_r)`` over the relations present at ``h``.

So attention is normalised per head node and relation (``e_r`` is a relation embedding,
``w_r`` a relation weight), and a hub relation cannot drown a rare one. Attention dropout
(``kg_dropout``) is applied to ``pi`` during training. ``attention=False`` gives the GCN
variant: uniform ``pi`` and ``beta`` (mean per relation, then mean over relations).
"""

from __future__ import annotations

import math
from typing import Self

import torch
from torch import Tensor, nn
from torch_geometric.utils import softmax

from kgrec.errors import UsageError
from kgrec.gnn.edge_ops import EdgePattern
from kgrec.gnn.graph import HomogeneousGraph
from kgrec.gnn.models.base import EmbeddingModel

#: Relation names of the user-product interactions in :func:`kgrec.gnn.graph.homogeneous_graph`:
#: they feed the collaborative aggregator, never the knowledge-graph one.
INTERACTION_RELATIONS = ("interacts", "rev_interacts")


def knowledge_rounds(graph: HomogeneousGraph, hops: int) -> list[Tensor]:
    """Bool edge masks of the ``hops`` attention rounds, farthest first.

    Round ``k`` (1-based) keeps the knowledge-graph edges whose head (target) lies within
    ``hops - k`` knowledge-graph hops of a product: the only messages that can still reach a
    product in the remaining rounds. The last round holds the edges into products.
    """
    rel_is_ui = torch.tensor([name in INTERACTION_RELATIONS for name in graph.edge_types],
                             dtype=torch.bool)
    kg = ~rel_is_ui[graph.edge_type] if graph.edge_types else torch.zeros(0, dtype=torch.bool)
    src, dst = graph.edge_index
    far = torch.iinfo(torch.long).max
    dist = torch.full((graph.num_nodes,), far, dtype=torch.long)
    dist[graph.node_type == graph.node_types.index("product")] = 0
    for d in range(1, hops):
        reach = kg & (dist[dst] == d - 1) & (dist[src] == far)
        dist[src[reach]] = d
    return [kg & (dist[dst] <= hops - k) for k in range(1, hops + 1)]


class KnowledgeRound(nn.Module):
    """The fixed structure of one attention round.

    A round reads the states of its input space and writes its ``heads``: the first round
    reads the knowledge-graph space (:func:`knowledge_space`: every product, then the
    categories, brands and entities on the rounds' edges; users never take part), every
    later one reads the previous round's heads alone (the tails of round ``k + 1`` are heads
    of round ``k``: each lies within ``hops - k`` hops of a product and receives the edge
    from its neighbour on that path).
    So no round touches a row it neither reads nor writes.

    Args:
        graph: the flattened graph; mask: the round's edges (:func:`knowledge_rounds`).
        offset: first global row of the knowledge-graph node space (the number of users).
        inputs: the node-space rows the round reads, sorted.
    """

    heads: Tensor
    head_input: Tensor
    group_head: Tensor
    group_rel: Tensor
    uniform_pi: Tensor
    uniform_beta: Tensor
    scored_edges: Tensor
    scored_head: Tensor
    scored_rel: Tensor

    def __init__(self, graph: HomogeneousGraph, mask: Tensor, offset: int,
                 inputs: Tensor) -> None:
        super().__init__()
        num_rel = len(graph.edge_types)
        src, dst = graph.edge_index[:, mask] - offset  # knowledge_space checked: no users
        rel = graph.edge_type[mask]
        groups, group = torch.unique(dst * num_rel + rel, return_inverse=True)
        heads, group_head = torch.unique(groups // num_rel, return_inverse=True)
        self.num_groups, self.num_heads = int(groups.numel()), int(heads.numel())
        self.inputs = inputs  # on the CPU: only warm starts read it
        #: The edges by (head, relation) group, for attention's scores and softmax ...
        self.tails = EdgePattern(group, _position(inputs, src), self.num_groups,
                                 int(inputs.numel()))
        #: ... and the same edges by head, for the one product that sums a head's messages
        #: (``per_head.order`` takes per-edge values from ``tails``' order to its own).
        self.per_head = EdgePattern(group_head[self.tails.row], self.tails.col, self.num_heads,
                                    int(inputs.numel()))
        #: Node-space rows of the heads and their rows in the input; each group's head (as a
        #: row of ``heads``) and relation.
        self.register_buffer("heads", heads, persistent=False)
        self.register_buffer("head_input", _position(inputs, heads), persistent=False)
        self.register_buffer("group_head", group_head, persistent=False)
        self.register_buffer("group_rel", groups % num_rel, persistent=False)
        #: The GCN's weights: the mean over each group's tails, then over each head's groups.
        size = torch.bincount(self.tails.row, minlength=self.num_groups)
        count = torch.bincount(group_head, minlength=self.num_heads)
        self.register_buffer("uniform_pi", 1.0 / size[self.tails.row].float(), persistent=False)
        self.register_buffer("uniform_beta", 1.0 / count[group_head].float(), persistent=False)
        self._scored_part(size, int(inputs.numel()))

    def _scored_part(self, size: Tensor, num_inputs: int) -> None:
        """The edges whose attention needs a score: those of groups with several tails. A
        group of one tail gets ``pi = 1`` whatever its score (softmax over one value), and
        most groups have one tail (74% of ml-100k's groups into products, all of Amazon
        Scientific's; with two rounds 63% and 90% of the first round's), so scoring only the
        rest saves most of the ``[groups, d]`` queries and their gradients without changing
        the result.
        ``size``: the tails of each group."""
        several = size > 1
        edges = several[self.tails.row]
        rank = torch.cumsum(several, 0) - 1  # a scored group's row among the scored groups
        self.num_scored_groups = int(several.sum())
        #: The scored edges by scored group (in ``tails``' CSR order, which this keeps) ...
        self.scored = EdgePattern(rank[self.tails.row[edges]], self.tails.col[edges],
                                  self.num_scored_groups, num_inputs)
        #: ... their positions among ``tails``' edges, and each scored group's head and
        #: relation.
        self.register_buffer("scored_edges", edges.nonzero().flatten(), persistent=False)
        self.register_buffer("scored_head", self.group_head[several], persistent=False)
        self.register_buffer("scored_rel", self.group_rel[several], persistent=False)

    def _apply(self, fn, recurse=True):  # move the CSR patterns with the module
        out = super()._apply(fn, recurse)
        device = self.heads.device
        self.tails, self.per_head = self.tails.to(device), self.per_head.to(device)
        self.scored = self.scored.to(device)
        return out


def _position(sorted_rows: Tensor, rows: Tensor) -> Tensor:
    """Positions of ``rows`` in ``sorted_rows``; each must be there."""
    pos = torch.searchsorted(sorted_rows, rows).clamp(max=max(sorted_rows.numel() - 1, 0))
    if rows.numel() and not bool((sorted_rows[pos] == rows).all()):
        raise UsageError("a knowledge-graph round reads a node the round before did not write")
    return pos


def knowledge_space(graph: HomogeneousGraph, masks: list[Tensor], offset: int,
                    items: int) -> Tensor:
    """Sorted node-space rows (global rows less ``offset``, the users) the rounds of ``masks``
    read: every product (rows below ``items``), then the other nodes on their edges. Nodes
    farther than ``kg_hops`` from every product can reach none, so they get no embedding:
    with one round ml-100k's entity table keeps 1,617 of its 34,647 rows (each a parameter
    Adam would update on every step; its step took 1.5 ms instead of 0.3)."""
    used = torch.zeros(graph.num_nodes - offset, dtype=torch.bool)
    used[:items] = True
    ends = graph.edge_index[:, torch.stack(masks).any(0)].flatten() - offset
    if ends.numel() and int(ends.min()) < 0:
        raise UsageError("knowledge-graph edges must not touch users")
    used[ends] = True
    return used.nonzero().flatten()


def attention_rounds(graph: HomogeneousGraph, hops: int, offset: int, items: int
                     ) -> list[KnowledgeRound]:
    """The ``hops`` rounds of :func:`knowledge_rounds`, farthest first: the first reads
    :func:`knowledge_space`, each later one the heads of the round before."""
    masks = knowledge_rounds(graph, hops)
    rounds: list[KnowledgeRound] = []
    for mask in masks:
        inputs = rounds[-1].heads if rounds else knowledge_space(graph, masks, offset, items)
        rounds.append(KnowledgeRound(graph, mask, offset, inputs))
    return rounds


class KnowledgeAttention(EmbeddingModel):
    """The knowledge-graph half of :class:`kgrec.gnn.models.kgat.KGATModel`: the attention
    rounds and the products' summaries ``k_i`` they give. Its parameters (``entity``,
    ``rel_emb``, ``rel_weight``, ``gate``) are made by :meth:`_add_knowledge`, which the
    model's constructor calls where they belong in the initialisation order."""

    dim: int
    attention: bool
    kg_dropout: float
    kg_every: int
    rounds: nn.ModuleList
    entity: nn.Embedding | None
    rel_emb: nn.Parameter
    rel_weight: nn.Parameter
    gate: nn.Parameter
    _kg_cache: Tensor | None  # training: the last summaries, as constants
    _kg_age: int  # training steps since they were computed

    def _add_knowledge(self, graph: HomogeneousGraph, kg_hops: int, init_std: float) -> None:
        """The attention rounds, the entity embeddings they read, the relation embeddings and
        weights, and the gate."""
        users, items, dim = self.num_users, self.num_items, self.dim
        self.rounds = nn.ModuleList(attention_rounds(graph, kg_hops, users, items))
        self.entity = None
        #: Node-space rows of the entity table's rows and the relations' names (warm starts).
        self.entity_rows, self.relation_names = torch.zeros(0, dtype=torch.long), ["-"]
        if len(self.rounds):  # the first round's inputs: the products, then these
            first: KnowledgeRound = self.rounds[0]  # type: ignore[assignment]
            self.entity = nn.Embedding(first.tails.shape[1] - items, dim)
            nn.init.normal_(self.entity.weight, std=init_std)
            self.entity_rows = first.inputs[items:] + users
        num_rel = max(len(graph.edge_types), 1)
        if graph.edge_types:
            self.relation_names = list(graph.edge_types)
        self.rel_emb = nn.Parameter(torch.ones(num_rel, dim))  # e_r, starts as plain dot
        self.rel_weight = nn.Parameter(torch.zeros(num_rel))  # w_r, starts uniform
        self.gate = nn.Parameter(torch.ones(()))

    def train(self, mode: bool = True) -> Self:
        """Also forgets the cached knowledge-graph summaries: the training loop switches to
        training mode at the start of every epoch, so each epoch (and a run resumed at an
        epoch boundary) recomputes them on its first step."""
        self._kg_cache, self._kg_age = None, 0
        return super().train(mode)

    def graph_states(self, items: Tensor) -> Tensor:
        """``[I + E, d]`` states of the knowledge-graph space
        (:func:`~kgrec.gnn.models.kg_attention.knowledge_space`: products, then the other nodes
        the rounds read) that the attention rounds start from."""
        assert self.entity is not None
        return torch.cat([items, self.entity.weight])

    def _knowledge_part(self, items: Tensor) -> Tensor:
        """``k`` for this call: recomputed in evaluation, on an epoch's first training step
        and every ``kg_every`` steps after; otherwise the last one, as a constant."""
        if not self.training:
            return self.knowledge(self.graph_states(items))
        if self._kg_cache is None or self._kg_age >= self.kg_every:
            k = self.knowledge(self.graph_states(items))
            self._kg_cache, self._kg_age = k.detach(), 1
            return k
        self._kg_age += 1
        return self._kg_cache

    def knowledge(self, x: Tensor) -> Tensor:
        """``[I, d]`` knowledge-graph summaries ``k_i`` of the products from the node states
        ``x`` (:meth:`graph_states`); zero for products without knowledge-graph edges."""
        for index in range(len(self.rounds)):
            x = self.attention_round(index, x)
        # The last round's heads are products (rows below num_items of the node space).
        last: KnowledgeRound = self.rounds[-1]  # type: ignore[assignment]
        return x.new_zeros(self.num_items, self.dim).index_copy(0, last.heads, x)

    def attention_round(self, index: int, x: Tensor) -> Tensor:
        """The new states ``[heads, d]`` of round ``index``'s heads (the next round's input)
        from the states ``x`` of its input: each edge's message carries ``beta * pi``, so
        one sparse product sums them per head, with no ``[groups, d]`` intermediate."""
        rnd: KnowledgeRound = self.rounds[index]  # type: ignore[assignment]
        pi, beta = self.attention_weights(index, x)
        if self.training and self.kg_dropout > 0:
            pi = nn.functional.dropout(pi, self.kg_dropout)
        weight = pi * beta.index_select(0, rnd.tails.row)
        return rnd.per_head.aggregate(weight.index_select(0, rnd.per_head.order), x)

    def attention_weights(self, index: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per-edge ``pi`` (tails of round ``index`` in CSR order) and per-group ``beta``,
        from the states ``x`` of the round's input (:meth:`graph_states` for the first round,
        the previous round's output after it)."""
        rnd: KnowledgeRound = self.rounds[index]  # type: ignore[assignment]
        if not self.attention:
            return rnd.uniform_pi, rnd.uniform_beta
        beta = softmax(self.rel_weight.index_select(0, rnd.group_rel), rnd.group_head,
                       num_nodes=rnd.num_heads)
        # Groups of one tail (see KnowledgeRound._scored_part).
        pi = x.new_ones(rnd.tails.num_edges)
        if rnd.num_scored_groups:
            # Gathered per head first: the backward pass then scatters heads, not groups,
            # into the input's gradient.
            head = x.index_select(0, rnd.head_input).index_select(0, rnd.scored_head)
            query = head * (self.rel_emb / math.sqrt(self.dim)).index_select(0, rnd.scored_rel)
            scored = softmax(rnd.scored.scores(query, x), rnd.scored.row,
                             num_nodes=rnd.num_scored_groups)
            pi = pi.index_copy(0, rnd.scored_edges, scored)
        return pi, beta
