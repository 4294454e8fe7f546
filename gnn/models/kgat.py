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

The rounds' attention (per head and relation) and its GCN variant:
:mod:`kgrec.gnn.models.kg_attention`.

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

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from kgrec.errors import UsageError
from kgrec.gnn.graph import HomogeneousGraph, homogeneous_graph, training_graph
from kgrec.gnn.models.base import INIT_STD, ModelInputs, SymmetricSpmm, sparse_mm
from kgrec.gnn.models.kg_attention import KnowledgeAttention
from kgrec.gnn.split import later_events
from kgrec.settings import ITEM_INPUTS, USER_INPUTS, TrainSettings


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


def _check_rates(kg_dropout: float, id_dropout: float, kg_every: int, cl_eps: float,
                 cl_layer: int, layers: int) -> None:
    for name, value in (("kg_dropout", kg_dropout), ("id_dropout", id_dropout)):
        if not 0.0 <= value < 1.0:
            raise UsageError(f"{name} must lie in [0, 1), got {value}")
    if kg_every < 1:
        raise UsageError(f"kg_every must be at least 1, got {kg_every}")
    if cl_eps and not 1 <= cl_layer <= layers:
        raise UsageError(f"cl_layer must lie in [1, layers={layers}], got {cl_layer}")


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


class KGATModel(KnowledgeAttention):
    """See the module docstring.

    Args:
        graph: the flattened training graph (:func:`kgrec.gnn.graph.homogeneous_graph`): users
            first, then products, then categories, brands, entities.
        adj: normalised ``[U+I, U+I]`` CSR adjacency of the training interactions
            (LightGCN's, :func:`kgrec.gnn.graph.normalized_adjacency`).
        item_counts: ``[I]`` training events per product (zero-count products get no id
            embedding).
        The defaults of the settings' namesakes are :class:`kgrec.settings.TrainSettings`'s.
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
    rounds read (:func:`~kgrec.gnn.models.kg_attention.knowledge_space`; absent without a
    knowledge graph), so that a step without knowledge-graph gradients leaves the entity
    table out of the optimiser step.
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
        dim: int = TrainSettings.dim,
        layers: int = TrainSettings.layers,
        kg_hops: int = TrainSettings.kg_hops,
        attention: bool = True,
        kg_dropout: float = TrainSettings.kg_dropout,
        kg_every: int = TrainSettings.kg_every,
        product_features: Tensor | None = None,
        id_dropout: float = TrainSettings.id_dropout,
        init_std: float = INIT_STD,
        cl_eps: float = 0.0,
        cl_layer: int = 1,
        item_input: str = TrainSettings.item_input,
        user_input: str = TrainSettings.user_input,
        text_hidden: int = TrainSettings.text_hidden,
        history: Tensor | None = None,
        history_half_life: float = TrainSettings.history_half_life,
    ) -> None:
        super().__init__()
        users, items = graph.offsets["product"], int(item_counts.numel())
        if graph.offsets["user"] != 0 or adj.shape[0] != users + items:
            raise UsageError("graph must hold users first, then products, and adj both")
        _check_inputs(item_input, user_input, product_features, history)
        _check_rates(kg_dropout, id_dropout, kg_every, cl_eps, cl_layer, layers)
        self.item_input, self.user_input = item_input, user_input
        self.history_half_life = history_half_life
        self.id_dropout, self.cl_eps, self.cl_layer = id_dropout, cl_eps, cl_layer
        self.num_users, self.num_items, self.num_nodes = users, items, graph.num_nodes
        self.layers, self.dim, self.attention, self.kg_dropout = layers, dim, attention, kg_dropout
        self.kg_every = kg_every
        # Parameters, buffers and submodules in this order: it fixes the initialisation.
        self._add_collaborative(adj, item_counts, history, init_std)
        self._add_knowledge(graph, kg_hops, init_std)
        self._add_text(product_features, text_hidden, init_std)
        self._layer0: Tensor | None = None
        self._views: tuple[Tensor, Tensor] | None = None  # (layer cl_layer, final), training
        self._kg_cache, self._kg_age = None, 0  # training: the last summaries, their age
        self._item_layers: list[Tensor] = []  # evaluation: products' state at every layer

    def _add_collaborative(self, adj: Tensor, item_counts: Tensor, history: Tensor | None,
                           init_std: float) -> None:
        """The users' and products' id embeddings and the training graph's buffers."""
        users, items, dim = self.num_users, self.num_items, self.dim
        self.node = nn.Embedding(users + items, dim)
        nn.init.normal_(self.node.weight, std=init_std)
        self.register_buffer("adj", adj, persistent=False)
        #: [U, I] CSR: each training user's mean over their products (history inputs).
        self.register_buffer("history", history, persistent=False)
        #: Training degree of every node (users, then products), for folding in new users.
        self.register_buffer("degree", adj.crow_indices().diff().float(), persistent=False)
        self.register_buffer("seen", (item_counts > 0).float().unsqueeze(1), persistent=False)

    def _add_text(self, product_features: Tensor | None, text_hidden: int,
                  init_std: float) -> None:
        """The frozen product text vectors and their projector (none without text)."""
        items = self.num_items
        if product_features is not None:
            if product_features.shape[0] != items:
                raise UsageError(
                    f"product_features has {product_features.shape[0]} rows, expected {items}"
                )
            self.register_buffer("features", product_features.float(), persistent=False)
            self.text_proj: nn.Module | None = text_projector(product_features.shape[1],
                                                              self.dim, text_hidden, init_std)
        else:
            self.features, self.text_proj = None, None

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

    def keyed_rows(self) -> dict[str, Tensor | list[str]]:
        rows: dict[str, Tensor | list[str]] = {
            "node.weight": torch.arange(self.num_users + self.num_items),
            "rel_emb": self.relation_names, "rel_weight": self.relation_names}
        if self.entity is not None:
            rows["entity.weight"] = self.entity_rows
        return rows


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
