"""Knowledge-graph attention recommender: relation-aware attention over the knowledge graph
feeding light collaborative propagation (KGAT / KGIN style, in LightGCN's light form).

Two aggregators, as in KGIN: users and products exchange messages over the training
interactions exactly as in LightGCN (symmetric normalisation, no weight matrices, no
non-linearities, layer outputs averaged), while each product's layer-0 state also carries
what its knowledge-graph neighbourhood says about it:

``x0_i = id_i + g * k_i`` for products with training events,
``x0_i = W t_i + g * k_i`` for products without (an untrained id embedding is noise)

- ``id_i``: the product's free embedding;
- ``t_i``: the product's frozen text vector (title, brand, categories, description ...),
  ``W`` one trained projection (optional). In each training step a random share
  ``id_dropout`` of the seen products also gets ``W t_i`` instead of its id (DropoutNet,
  Volkovs et al. 2017): the projection learns to stand in for an id, so a product nobody
  bought still lands where its text says (measured on ml-100k: adding ``W t_i`` to every
  product instead over-fits, test NDCG@20 0.1276 vs 0.1325 without text);
- ``k_i``: ``kg_hops`` rounds of attention over (head, relation, tail) triples towards the
  products (categories, brands, linked entities and their relations; with two or more
  rounds products send messages into the graph too, so two products sharing a director meet
  in two hops);
- ``g``: a learned gate.

One attention round updates each head ``h`` that has knowledge-graph neighbours:

``k_h = sum_r beta(h, r) * sum_{t in N_r(h)} pi(h, r, t) * x_t``,
``pi(h, r, .) = softmax_t((x_h * e_r) . x_t / sqrt(d))`` over the tails of one relation,
``beta(h, .) = softmax_r(w_r)`` over the relations present at ``h``.

So attention is normalised per head node and relation (``e_r`` is a relation embedding,
``w_r`` a relation weight), and a hub relation cannot drown a rare one. Attention dropout
(``kg_dropout``) is applied to ``pi`` during training. ``attention=False`` gives the GCN
variant: uniform ``pi`` and ``beta`` (mean per relation, then mean over relations).

Text-native, inductive inputs (``item_input="text"``, ``user_input="history"``, AlphaRec's
design, Sheng et al., ICLR 2025): every product starts from ``W t_i + g * k_i`` (``W`` an
optional MLP; the id embedding an optional residual, ``"text+id"``) and every user from the
mean of their training products' states, so products and users that arrive after training
are embedded from their text and history without retraining (:meth:`embed_new_products`,
:meth:`embed_new_users`).

The BPR regulariser acts on the layer-0 states of the batch (:meth:`ego`), text and
knowledge parts included. Edge products run as CSR kernels (:mod:`kgrec.gnn.edge_ops`).

Optional contrastive regulariser (XSimGCL, Yu et al., TKDE 2023; ``cl_eps > 0``): in
training, every collaborative layer's output gets uniform noise of length ``cl_eps`` in
the orthant of ``x`` (``sign(x) * normalize(rand) * eps``), and :meth:`contrastive_loss`
(InfoNCE) pulls each node's final embedding towards its own layer-``cl_layer`` one, away
from the batch's other nodes. The paper finds that this evens out the distribution of the
embeddings (less popularity bias) and lifts LightGCN-style models; evaluation is noise-free.
Measured on ml-100k (gat, eps 0.1, tau 0.2; valid / test NDCG@20): weight 0.01 gives
0.1533 / 0.1330 against 0.1495 / 0.1303 without; weight 0.1 collapses to 0.035 (each batch
holds nearly every user, and uniformity swamps this dense data's popularity signal).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch_geometric.utils import softmax

from kgrec.errors import UsageError
from kgrec.gnn.edge_ops import EdgePattern
from kgrec.gnn.graph import HomogeneousGraph, homogeneous_graph, training_graph
from kgrec.gnn.models.base import INIT_STD, EmbeddingModel, ModelInputs, SymmetricSpmm, sparse_mm
from kgrec.gnn.split import later_events
from kgrec.settings import ITEM_INPUTS, USER_INPUTS

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


class _Round(nn.Module):
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




def _check_inputs(item_input: str, user_input: str, features: Tensor | None,
                  history: Tensor | None) -> None:
    if item_input not in ITEM_INPUTS:
        raise UsageError(f"item_input must be one of {ITEM_INPUTS}, got {item_input!r}")
    if user_input not in USER_INPUTS:
        raise UsageError(f"user_input must be one of {USER_INPUTS}, got {user_input!r}")
    if item_input != "id" and features is None:
        raise UsageError(f"item_input {item_input!r} needs product text vectors")
    if user_input != "id" and history is None:
        raise UsageError(f"user_input {user_input!r} needs the users' training histories")


def text_projector(features: int, dim: int, hidden: int, init_std: float) -> nn.Module:
    """Frozen text vectors to embeddings: one linear map (``hidden=0``), or AlphaRec's MLP
    (linear, LeakyReLU, linear) with ``hidden`` units."""
    if not hidden:
        linear = nn.Linear(features, dim, bias=False)
        nn.init.normal_(linear.weight, std=init_std)
        return linear
    return nn.Sequential(nn.Linear(features, hidden), nn.LeakyReLU(), nn.Linear(hidden, dim))


def history_matrix(history: pd.DataFrame, num_users: int, num_items: int,
                   half_life: float = 0.0) -> Tensor:
    """``[U, I]`` CSR whose row ``u`` weighs user ``u``'s events of ``history`` (``user``,
    ``product`` and, for recency, ``time`` columns), summing to 1: every event alike
    (``half_life`` 0), or each half as much per later event of the same user (``half_life``
    in events: the next product a user picks is most like the last few)."""
    weight = np.ones(len(history)) if not half_life else np.power(
        0.5, later_events(history) / half_life)
    users = torch.as_tensor(history["user"].to_numpy("int64", copy=True))
    items = torch.as_tensor(history["product"].to_numpy("int64", copy=True))
    w = torch.as_tensor(weight, dtype=torch.float32)
    total = torch.zeros(num_users).index_add_(0, users, w).clamp(min=1e-12)
    matrix = torch.sparse_coo_tensor(torch.stack([users, items]), w / total[users],
                                     (num_users, num_items), check_invariants=False)
    return matrix.coalesce().to_sparse_csr()


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


def _rounds(graph: HomogeneousGraph, hops: int, offset: int, items: int) -> list[_Round]:
    masks = knowledge_rounds(graph, hops)
    rounds: list[_Round] = []
    for mask in masks:
        inputs = rounds[-1].heads if rounds else knowledge_space(graph, masks, offset, items)
        rounds.append(_Round(graph, mask, offset, inputs))
    return rounds


class KGATModel(EmbeddingModel):
    """See the module docstring.

    Args:
        graph: the flattened training graph (:func:`kgrec.gnn.graph.homogeneous_graph`): users
            first, then products, then categories, brands, entities.
        adj: normalised ``[U+I, U+I]`` CSR adjacency of the training interactions
            (LightGCN's, :func:`kgrec.gnn.graph.normalized_adjacency`).
        item_counts: ``[I]`` training events per product (zero-count products get no id
            embedding).
        dim: embedding size. layers: collaborative propagation layers.
        kg_hops: attention rounds over the knowledge graph (0: no knowledge graph).
        attention: relation-aware attention (GAT) or uniform means (GCN).
        kg_dropout: dropout on attention coefficients during training.
        kg_every: in training, the knowledge-graph summaries (and the gradients of the
            entity embeddings and attention parameters) are recomputed on the first step of
            each epoch and then every ``kg_every`` steps; the steps between reuse them as
            constants. 1 recomputes them on every step. Evaluation always recomputes them.
        product_features: optional ``[I, F]`` frozen product text vectors.
        id_dropout: share of seen products whose id embedding is replaced by their
            projected text in each training step (DropoutNet), so that the projection learns
            to stand in for ids.
        init_std: standard deviation of the normal initialisation of id embeddings.
        cl_eps: length of the training noise added to each collaborative layer (XSimGCL;
            0: none). cl_layer: the layer whose output is the contrastive view (1).
        item_input: what products start from (:data:`ITEM_INPUTS`): ``"id"`` (the id
            embedding, the projected text where it stands out), ``"text"`` (the projected
            text: text-native, every product scored alike, bought or not) or ``"text+id"``
            (the projected text plus the id embedding as a residual).
        user_input: what users start from (:data:`USER_INPUTS`): ``"id"``, ``"history"``
            (the mean of their training products' inputs, as AlphaRec: a user who arrives
            later is scored from their history, :meth:`embed_new_users`) or ``"history+id"``.
        text_hidden: hidden units of the text projector (0: one linear map).
        history: ``[U, I]`` :func:`history_matrix` of the training pairs (history inputs).
        history_half_life: its recency half-life in events (0: every event alike), also
            used for the histories of :meth:`embed_new_users`.

    Parameters: ``node`` holds the ``[U + I, d]`` id embeddings of users and products (the
    table LightGCN has), ``entity`` the embeddings of the other knowledge-graph nodes the
    rounds read (:func:`knowledge_space`; absent without a knowledge graph), so that a step
    without knowledge-graph gradients leaves the entity table out of the optimiser step.
    """

    adj: Tensor
    seen: Tensor
    features: Tensor | None

    def __init__(
        self,
        graph: HomogeneousGraph,
        adj: Tensor,
        item_counts: Tensor,
        *,
        dim: int = 64,
        layers: int = 3,
        kg_hops: int = 1,
        attention: bool = True,
        kg_dropout: float = 0.1,
        kg_every: int = 1,
        product_features: Tensor | None = None,
        id_dropout: float = 0.2,
        init_std: float = INIT_STD,
        cl_eps: float = 0.0,
        cl_layer: int = 1,
        item_input: str = "id",
        user_input: str = "id",
        text_hidden: int = 0,
        history: Tensor | None = None,
        history_half_life: float = 0.0,
    ) -> None:
        super().__init__()
        users, items = graph.offsets["product"], int(item_counts.numel())
        if graph.offsets["user"] != 0 or adj.shape[0] != users + items:
            raise UsageError("graph must hold users first, then products, and adj both")
        _check_inputs(item_input, user_input, product_features, history)
        self.item_input, self.user_input = item_input, user_input
        self.history_half_life = history_half_life
        for name, value in (("kg_dropout", kg_dropout), ("id_dropout", id_dropout)):
            if not 0.0 <= value < 1.0:
                raise UsageError(f"{name} must lie in [0, 1), got {value}")
        if kg_every < 1:
            raise UsageError(f"kg_every must be at least 1, got {kg_every}")
        if cl_eps and not 1 <= cl_layer <= layers:
            raise UsageError(f"cl_layer must lie in [1, layers={layers}], got {cl_layer}")
        self.id_dropout, self.cl_eps, self.cl_layer = id_dropout, cl_eps, cl_layer
        self.num_users, self.num_items, self.num_nodes = users, items, graph.num_nodes
        self.layers, self.dim, self.attention, self.kg_dropout = layers, dim, attention, kg_dropout
        self.kg_every = kg_every
        self.node = nn.Embedding(users + items, dim)
        nn.init.normal_(self.node.weight, std=init_std)
        self.register_buffer("adj", adj, persistent=False)
        #: [U, I] CSR: each training user's mean over their products (history inputs).
        self.register_buffer("history", history, persistent=False)
        #: Training degree of every node (users, then products), for folding in new users.
        self.register_buffer("degree", adj.crow_indices().diff().float(), persistent=False)
        self.register_buffer("seen", (item_counts > 0).float().unsqueeze(1), persistent=False)
        self.rounds = nn.ModuleList(_rounds(graph, kg_hops, users, items))
        self.entity: nn.Embedding | None = None
        if len(self.rounds):  # the first round's inputs: the products, then these
            first: _Round = self.rounds[0]  # type: ignore[assignment]
            self.entity = nn.Embedding(first.tails.shape[1] - items, dim)
            nn.init.normal_(self.entity.weight, std=init_std)
        num_rel = max(len(graph.edge_types), 1)
        self.rel_emb = nn.Parameter(torch.ones(num_rel, dim))  # e_r, starts as plain dot
        self.rel_weight = nn.Parameter(torch.zeros(num_rel))  # w_r, starts uniform
        self.gate = nn.Parameter(torch.ones(()))
        if product_features is not None:
            if product_features.shape[0] != items:
                raise UsageError(
                    f"product_features has {product_features.shape[0]} rows, expected {items}"
                )
            self.register_buffer("features", product_features.float(), persistent=False)
            self.text_proj: nn.Module | None = text_projector(product_features.shape[1], dim,
                                                              text_hidden, init_std)
        else:
            self.features, self.text_proj = None, None
        self._layer0: Tensor | None = None
        self._views: tuple[Tensor, Tensor] | None = None  # (layer cl_layer, final), training
        self._kg_cache: Tensor | None = None  # training: the last summaries, as constants
        self._kg_age = 0  # training steps since they were computed
        self._item_layers: list[Tensor] = []  # evaluation: products' state at every layer

    def train(self, mode: bool = True) -> KGATModel:
        """Also forgets the cached knowledge-graph summaries: the training loop switches to
        training mode at the start of every epoch, so each epoch (and a run resumed at an
        epoch boundary) recomputes them on its first step."""
        self._kg_cache, self._kg_age = None, 0
        return super().train(mode)

    def attention_weights(self, index: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per-edge ``pi`` (tails of round ``index`` in CSR order) and per-group ``beta``,
        from the states ``x`` of the round's input (:meth:`graph_states` for the first round,
        the previous round's output after it)."""
        rnd: _Round = self.rounds[index]  # type: ignore[assignment]
        if not self.attention:
            return rnd.uniform_pi, rnd.uniform_beta
        beta = softmax(self.rel_weight.index_select(0, rnd.group_rel), rnd.group_head,
                       num_nodes=rnd.num_heads)
        pi = x.new_ones(rnd.tails.num_edges)  # groups of one tail (see _Round._scored_part)
        if rnd.num_scored_groups:
            # Gathered per head first: the backward pass then scatters heads, not groups,
            # into the input's gradient.
            head = x.index_select(0, rnd.head_input).index_select(0, rnd.scored_head)
            query = head * (self.rel_emb / math.sqrt(self.dim)).index_select(0, rnd.scored_rel)
            scored = softmax(rnd.scored.scores(query, x), rnd.scored.row,
                             num_nodes=rnd.num_scored_groups)
            pi = pi.index_copy(0, rnd.scored_edges, scored)
        return pi, beta

    def knowledge(self, x: Tensor) -> Tensor:
        """``[I, d]`` knowledge-graph summaries ``k_i`` of the products from the node states
        ``x`` (:meth:`graph_states`); zero for products without knowledge-graph edges."""
        for index in range(len(self.rounds)):
            x = self.attention_round(index, x)
        # The last round's heads are products (rows below num_items of the node space).
        last: _Round = self.rounds[-1]  # type: ignore[assignment]
        return x.new_zeros(self.num_items, self.dim).index_copy(0, last.heads, x)

    def attention_round(self, index: int, x: Tensor) -> Tensor:
        """The new states ``[heads, d]`` of round ``index``'s heads (the next round's input)
        from the states ``x`` of its input: each edge's message carries ``beta * pi``, so
        one sparse product sums them per head, with no ``[groups, d]`` intermediate."""
        rnd: _Round = self.rounds[index]  # type: ignore[assignment]
        pi, beta = self.attention_weights(index, x)
        if self.training and self.kg_dropout > 0:
            pi = nn.functional.dropout(pi, self.kg_dropout)
        weight = pi * beta.index_select(0, rnd.tails.row)
        return rnd.per_head.aggregate(weight.index_select(0, rnd.per_head.order), x)

    def item_states(self) -> Tensor:
        """``[I, d]`` products' own inputs (before the knowledge-graph part).

        ``item_input="id"``: the id embedding, or the projected text where the id stands out
        (products without events, and the ``id_dropout`` share in training).
        ``"text"``: the projected text. ``"text+id"``: the projected text plus the id as a
        residual (for products with events, less the ``id_dropout`` share in training).
        """
        ids = self.node.weight[self.num_users :]
        use_id = self.seen
        if self.text_proj is None or self.features is None:
            return ids * use_id
        text = self.text_proj(self.features)
        if self.item_input == "text":
            return text
        if self.training and self.id_dropout > 0:
            use_id = use_id * (torch.rand_like(use_id) >= self.id_dropout)
        if self.item_input == "text+id":
            return text + ids * use_id
        return ids * use_id + text * (1 - use_id)

    def user_states(self, items: Tensor) -> Tensor:
        """``[U, d]`` users' inputs: their id embedding (``user_input="id"``), the mean of
        their training products' inputs ``items`` (``"history"``), or both summed."""
        ids = self.node.weight[: self.num_users]
        if self.user_input == "id":
            return ids
        assert self.history is not None
        mean = sparse_mm(self.history, items)
        return mean if self.user_input == "history" else mean + ids

    def graph_states(self, items: Tensor) -> Tensor:
        """``[I + E, d]`` states of the knowledge-graph space (:func:`knowledge_space`:
        products, then the other nodes the rounds read) that the attention rounds start from."""
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

    def inputs(self) -> Tensor:
        """Layer-0 states ``[U + I, d]`` of the collaborative propagation: users' ids;
        products' id, text and gated knowledge-graph parts."""
        items = self.item_states()
        if len(self.rounds):
            items = items + self.gate * self._knowledge_part(items)
        return torch.cat([self.user_states(items), items])

    def propagate(self) -> tuple[Tensor, Tensor]:
        with torch.autocast(device_type=self.node.weight.device.type, enabled=False):
            x = self.inputs().float()
            self._layer0 = x
            out, view = x, None
            noisy = self.training and self.cl_eps > 0
            self._item_layers = [] if self.training else [x[self.num_users :]]
            for layer in range(1, self.layers + 1):
                x = SymmetricSpmm.apply(self.adj, x)
                if not self.training:
                    self._item_layers.append(x[self.num_users :])
                if noisy:
                    x = x + torch.sign(x) * nn.functional.normalize(torch.rand_like(x), dim=-1) \
                        * self.cl_eps
                    if layer == self.cl_layer:
                        view = x
                out = out + x
            out = out / (self.layers + 1)
            self._views = (view, out) if view is not None else None
        return out[: self.num_users], out[self.num_users :]

    @torch.no_grad()
    def embed_users(self, history: Tensor) -> Tensor:
        """``[B, d]`` embeddings of users with the given histories (``[B, I]`` CSR of
        :func:`history_matrix`), folded into the trained graph without retraining: each is
        a new node linked to its products, with LightGCN's propagation over the products'
        trained states and degree + 1 normalisation (the products' own update by the
        newcomer is left out). A user input starts from the weighted mean of the history
        (``user_input`` history; a newcomer has no id embedding). Serves users who arrive
        after training and known users whose history has grown since. Scores are dot
        products with :meth:`embed`'s products."""
        was_training = self.training
        self.eval()
        self.embed()  # the products' states at every layer, as they are now
        self.train(was_training)
        history = history.to(self.degree.device)
        coo = history.to_sparse_coo().coalesce()
        rows, items = coo.indices()
        size = torch.bincount(rows, minlength=history.shape[0]).float()
        norm = (size[rows] * (self.degree[self.num_users :][items] + 1)).rsqrt()
        links = torch.sparse_coo_tensor(coo.indices(), norm, history.shape,
                                        check_invariants=False).to_sparse_csr()
        layers = self._item_layers
        x = sparse_mm(history, layers[0]) if self.user_input != "id" \
            else layers[0].new_zeros(history.shape[0], self.dim)
        out = (x + sum(sparse_mm(links, layer) for layer in layers[:-1])) / (self.layers + 1)
        return nn.functional.normalize(out, dim=-1) if self.cosine else out

    def embed_new_users(self, histories: list[Tensor]) -> Tensor:
        """:meth:`embed_users` of users given as their products' rows, oldest first."""
        if any(not h.numel() for h in histories):
            raise UsageError("a new user needs at least one product in their history")
        frame = pd.DataFrame({
            "user": np.repeat(np.arange(len(histories)), [h.numel() for h in histories]),
            "product": torch.cat([h.flatten().cpu() for h in histories]).numpy(),
            "time": np.concatenate([np.arange(h.numel()) for h in histories])})
        return self.embed_users(history_matrix(frame, len(histories), self.num_items,
                                               self.history_half_life))

    @torch.no_grad()
    def embed_new_products(self, features: Tensor) -> Tensor:
        """``[B, d]`` embeddings of products added after training, from their text vectors
        alone (no events and no knowledge-graph edges yet: their layer-0 state, which
        propagation leaves as it is, averaged over the layers as every node's is)."""
        if self.text_proj is None:
            raise UsageError("new products need a model trained with product text vectors")
        self.eval()
        x = self.text_proj(features.to(self.degree.device).float()) / (self.layers + 1)
        return nn.functional.normalize(x, dim=-1) if self.cosine else x

    def contrastive_loss(self, users: Tensor, items: Tensor, temperature: float) -> Tensor:
        """InfoNCE between the layer-``cl_layer`` and final noisy views of the last training
        :meth:`embed`, over the unique ``users`` and unique ``items`` (in-batch negatives);
        the sum of the user and the item term (XSimGCL)."""
        if self._views is None:
            raise RuntimeError("contrastive_loss needs a training embed() with cl_eps > 0")
        view, final = self._views
        loss = view.new_zeros(())
        for nodes in (users.unique(), items.unique() + self.num_users):
            a = nn.functional.normalize(view.index_select(0, nodes), dim=-1)
            b = nn.functional.normalize(final.index_select(0, nodes), dim=-1)
            target = torch.arange(len(nodes), device=a.device)
            loss = loss + nn.functional.cross_entropy(a @ b.t() / temperature, target)
        return loss

    def ego(self, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        """Layer-0 states of the last :meth:`embed` (regularising text and knowledge parts
        too, so the gate and projection cannot grow without bound)."""
        x0 = self._layer0 if self._layer0 is not None else self.inputs()
        return x0.index_select(0, users), x0.index_select(0, items + self.num_users)


def build(inputs: ModelInputs, attention: bool = True) -> KGATModel:
    """The GAT (``attention``) or the GCN over the training graph and the knowledge graph."""
    s, split, snapshot = inputs.settings, inputs.split, inputs.snapshot
    graph = homogeneous_graph(training_graph(snapshot, split), snapshot.relations)
    history = None if s.user_input == "id" else history_matrix(
        split.train, split.num_users, split.num_items, s.history_half_life)
    return KGATModel(graph, inputs.adjacency(), split.item_counts(), dim=s.dim,
                     layers=s.layers, kg_hops=s.kg_hops, attention=attention,
                     kg_dropout=s.kg_dropout, kg_every=s.kg_every,
                     product_features=inputs.product_features if s.text_features else None,
                     id_dropout=s.id_dropout, init_std=s.init_std or INIT_STD,
                     cl_eps=s.cl_eps if s.cl_weight > 0 else 0.0,
                     item_input=s.item_input, user_input=s.user_input,
                     text_hidden=s.text_hidden, history=history,
                     history_half_life=s.history_half_life)


def build_gcn(inputs: ModelInputs) -> KGATModel:
    return build(inputs, attention=False)
