"""Snapshot -> interaction tables, evaluation splits, the leak-free training graph, negatives.

Everything here works on row indices into the snapshot's id maps (``user`` indexes
``id_maps["user"]``, ``product`` indexes ``id_maps["product"]``). A :class:`Split` holds three
frames with the columns :data:`SPLIT_COLUMNS`; only ``split.train`` ever reaches message
passing or the negative sampler.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from kgrec.kg import schema
from kgrec.kg.errors import InputError, ModelError
from kgrec.kg.ids import IdMap
from kgrec.kg.snapshot import GraphSnapshot, edge_type, node_type
from kgrec.kg.tables import empty_node_table
from torch_geometric.data import HeteroData

SPLIT_COLUMNS = ["user", "product", "weight", "value", "time"]
STAGES = ("train", "valid", "test")
#: Split kinds whose validation pairs come before the test pairs in each user's history.
TIME_ORDERED_KINDS = ("temporal", "temporal_ratio", "leave_one_out")

#: Edge type of the (training) user->product interactions in :func:`training_graph`.
INTERACTS = ("user", "interacts", "product")


@dataclass
class Split:
    """Train / valid / test interactions as row indices into the snapshot id maps.

    Args:
        train, valid, test: frames with :data:`SPLIT_COLUMNS` (one row per user-product
            pair; ``weight`` is the loss weight, ``value`` the raw event value, ``time``
            unix seconds or -1).
        num_users, num_items: sizes of the user and product id maps.
        kind: ``"temporal"``, ``"temporal_ratio"``, ``"leave_one_out"``, ``"random"``,
            ``"item_cold_start"`` or ``"given"``.
        seed: the seed that drew a random split (None when deterministic).
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    num_users: int
    num_items: int
    kind: str
    seed: int | None = None

    def frame(self, stage: str) -> pd.DataFrame:
        """The frame of ``stage`` (``"train"``, ``"valid"`` or ``"test"``)."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
        return getattr(self, stage)

    def pairs(self, stage: str) -> torch.Tensor:
        """``LongTensor[2, n]`` of (user, product) rows of ``stage``."""
        frame = self.frame(stage)
        return torch.as_tensor(
            np.stack([frame["user"].to_numpy("int64"), frame["product"].to_numpy("int64")])
        )

    def history(self, stage: str) -> pd.DataFrame:
        """The interactions known when ``stage``'s pairs are predicted: the training pairs,
        plus the validation pairs for ``test`` in a time-ordered split (they happened before
        the test pairs; in a random or item cold-start split they did not). Only what is
        computed from history without training (text profiles) reads it; trained models see
        ``train`` alone."""
        if stage == "test" and self.kind in TIME_ORDERED_KINDS:
            return pd.concat([self.train, self.valid], ignore_index=True)
        self.frame(stage)  # checks the name
        return self.train

    def item_counts(self) -> torch.Tensor:
        """Training interactions per product (``LongTensor[num_items]``)."""
        items = torch.from_numpy(self.train["product"].to_numpy("int64", copy=True))
        return torch.bincount(items, minlength=self.num_items)

    def save(self, folder: str | Path) -> None:
        """Write the three frames (Parquet) and the split's sizes and kind (JSON)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for stage in STAGES:
            self.frame(stage).to_parquet(folder / f"split_{stage}.parquet", index=False)
        meta = {"num_users": self.num_users, "num_items": self.num_items, "kind": self.kind,
                "seed": self.seed}
        (folder / "split.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, folder: str | Path) -> Split:
        folder = Path(folder)
        if not (folder / "split.json").exists():
            raise ModelError(f"{folder} holds no saved split (split.json is missing)")
        meta = json.loads((folder / "split.json").read_text())
        frames = [pd.read_parquet(folder / f"split_{stage}.parquet") for stage in STAGES]
        return cls(*frames, **meta)

    def summary(self) -> str:
        return (
            f"{self.kind} split: {len(self.train):,} train / {len(self.valid):,} valid / "
            f"{len(self.test):,} test pairs, {self.num_users:,} users x {self.num_items:,} products"
        )


def event_weight_table(event_weights: Mapping[str, float] | None = None) -> dict[str, float]:
    """Per-event-type loss weights: the schema defaults overridden by ``event_weights``."""
    weights = dict(schema.DEFAULT_EVENT_WEIGHTS)
    for rel, value in (event_weights or {}).items():
        weights[schema.event_type(rel)] = float(value)
    return weights


def interaction_table(
    snapshot: GraphSnapshot, event_weights: Mapping[str, float] | None = None
) -> pd.DataFrame:
    """One row per (user, product) pair with its loss weight, value and latest time.

    The weight of an event is ``event_weights[type]``, times ``value / max rating`` for
    ratings (so a 5-star rating weighs 1.0 and a 1-star 0.2 by default); a pair seen
    several times keeps its heaviest event, so one model serves purchase > cart > view.
    """
    events = snapshot.interactions()
    if events.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in SPLIT_COLUMNS})
    weights = event_weight_table(event_weights)
    scale = np.ones(len(events))
    rated = (events["rel"] == schema.RATED).to_numpy()
    if rated.any():
        top = float(events.loc[rated, "value"].max())
        if top > 0:
            scale[rated] = events.loc[rated, "value"].to_numpy("float64") / top
    events = events.assign(weight=events["rel"].map(weights).to_numpy("float64") * scale)
    pairs = (
        events.groupby(["user", "product"], sort=True)
        .agg(weight=("weight", "max"), value=("value", "max"), time=("time", "max"))
        .reset_index()
    )
    return pairs[SPLIT_COLUMNS].astype(
        {"user": "int64", "product": "int64", "weight": "float64", "value": "float64",
         "time": "int64"}
    )


def _cut(
    order_key: np.ndarray,
    users: np.ndarray,
    valid_ratio: float,
    test_ratio: float,
    rule: str = "min_one",
) -> np.ndarray:
    """Per-user stage labels (0 train, 1 valid, 2 test): each user's last rows (by key) to
    test, the ones just before to valid, the rest to train.

    Stage sizes for a user with ``n`` rows, by ``rule``:

    - ``"ratio"``: ``floor(ratio * n)`` (RecBole's ratio split): a user with fewer than
      ``1 / ratio`` rows gets no valid/test row, so sparse catalogues lose most users.
    - ``"min_one"``: the same, but at least 1 per stage whose ratio is > 0 once ``n >= 3``
      (leave-last-out for short histories, the ratio for long ones); 1-2 rows stay in train,
      and train always keeps at least one row.
    - ``"last_one"``: leave-one-out, 1 test and 1 valid row once ``n >= 3`` (ratios unused).
    """
    order = np.lexsort((order_key, users))
    sorted_users = users[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_users)) + 1]
    sizes = np.diff(np.r_[starts, len(users)])
    rank = np.arange(len(users)) - np.repeat(starts, sizes)
    size = np.repeat(sizes, sizes)
    n_test = np.floor(size * test_ratio).astype(int)
    n_valid = np.floor(size * valid_ratio).astype(int)
    if rule != "ratio":
        long = size >= 3
        if rule == "last_one":
            n_test, n_valid = long.astype(int), long.astype(int)
        else:
            n_test = np.where(long, np.maximum(n_test, int(test_ratio > 0)), 0)
            n_valid = np.where(long, np.maximum(n_valid, int(valid_ratio > 0)), 0)
            n_valid = np.minimum(n_valid, size - n_test - 1).clip(min=0)
    stage_sorted = np.zeros(len(users), dtype=np.int8)
    stage_sorted[rank >= size - n_test] = 2
    stage_sorted[(rank >= size - n_test - n_valid) & (rank < size - n_test)] = 1
    stage = np.empty_like(stage_sorted)
    stage[order] = stage_sorted
    return stage


def _check_ratios(valid_ratio: float, test_ratio: float) -> None:
    if not (0 <= valid_ratio < 1 and 0 <= test_ratio < 1 and valid_ratio + test_ratio < 1):
        raise ValueError(
            f"valid_ratio={valid_ratio} and test_ratio={test_ratio} must be in [0, 1) "
            "and sum to less than 1"
        )


#: make_split kind -> the per-user stage sizes rule of :func:`_cut`.
_SPLIT_RULES = {
    "temporal": "min_one",
    "temporal_ratio": "ratio",
    "leave_one_out": "last_one",
    "random": "min_one",
}


def make_split(
    snapshot: GraphSnapshot,
    kind: str = "auto",
    valid_ratio: float = 0.1,
    test_ratio: float = 0.1,
    seed: int = 2020,
    *,
    event_weights: Mapping[str, float] | None = None,
) -> Split:
    """Split every user's interactions into train / valid / test.

    Args:
        snapshot: the graph; its interaction edges are split (one row per pair).
        kind: ``"temporal"`` (each user's latest pairs to test, the ones before to valid;
            ``n_test = max(1, floor(test_ratio * n))`` and likewise for valid once a user has
            ``n >= 3`` pairs, so every such user is evaluated; users with 1-2 pairs stay in
            train), ``"temporal_ratio"`` (RecBole's pure ``floor(ratio * n)``: users with
            fewer than ``1 / ratio`` pairs get no valid/test pair), ``"leave_one_out"``
            (last pair to test, second-to-last to valid, for users with >= 3 pairs),
            ``"random"`` (per-user random, RecBole's RS 8:1:1, with temporal's at-least-one
            rule) or ``"auto"`` (temporal when every event has a timestamp, random
            otherwise). Time ties are broken by product row, so every kind but random is
            deterministic.
        valid_ratio, test_ratio: share of each user's pairs (floored) per stage; unused by
            leave_one_out.
        seed: seed of the random split.
        event_weights: per-event-type loss weights (default
            ``kgrec.kg.schema.DEFAULT_EVENT_WEIGHTS``).
    """
    _check_ratios(valid_ratio, test_ratio)
    if kind != "auto" and kind not in _SPLIT_RULES:
        raise ValueError(
            f"unknown split kind {kind!r}; expected auto, {', '.join(_SPLIT_RULES)}"
        )
    pairs = interaction_table(snapshot, event_weights)
    if kind == "auto":
        times = pairs["time"].to_numpy()
        kind = "temporal" if len(times) and (times >= 0).all() and times.min() < times.max() else (
            "random"
        )
    users = pairs["user"].to_numpy()
    if kind == "random":
        key = np.random.default_rng(seed).permutation(len(pairs))
    else:
        # Ties in time are broken by product row so that the split is deterministic.
        key = np.empty(len(pairs), dtype=np.int64)
        key[np.lexsort((pairs["product"].to_numpy(), pairs["time"].to_numpy()))] = np.arange(
            len(pairs)
        )
    stage = _cut(key, users, valid_ratio, test_ratio, _SPLIT_RULES[kind])
    frames = [pairs[stage == i].reset_index(drop=True) for i in range(3)]
    return Split(
        frames[0], frames[1], frames[2],
        num_users=len(snapshot.id_maps["user"]),
        num_items=len(snapshot.id_maps["product"]),
        kind=kind,
        seed=seed if kind == "random" else None,
    )


def item_cold_start_split(
    snapshot: GraphSnapshot,
    frac: float = 0.1,
    seed: int = 2020,
    *,
    event_weights: Mapping[str, float] | None = None,
) -> Split:
    """Hold out ``frac`` of the interacted products with ALL their interactions.

    Half of the held-out products (by count) go to valid and half to test, so that both
    stages rank products the model never saw a training interaction of.
    """
    if not 0 < frac < 1:
        raise ValueError(f"frac={frac} must be in (0, 1)")
    pairs = interaction_table(snapshot, event_weights)
    items = np.unique(pairs["product"].to_numpy())
    held = np.random.default_rng(seed).permutation(items)[: max(2, int(round(frac * len(items))))]
    valid_items, test_items = held[: len(held) // 2], held[len(held) // 2 :]
    prod = pairs["product"].to_numpy()
    in_valid, in_test = np.isin(prod, valid_items), np.isin(prod, test_items)
    return Split(
        pairs[~in_valid & ~in_test].reset_index(drop=True),
        pairs[in_valid].reset_index(drop=True),
        pairs[in_test].reset_index(drop=True),
        num_users=len(snapshot.id_maps["user"]),
        num_items=len(snapshot.id_maps["product"]),
        kind="item_cold_start",
        seed=seed,
    )


def _read_lightgcn_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    with path.open() as fh:
        for row, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            try:
                ids = np.asarray(parts, dtype=np.int64)
            except ValueError as exc:
                raise InputError(f"not an integer id: {exc}", file=str(path), row=row,
                                 field="user/item") from exc
            if (ids < 0).any():
                raise InputError("negative id", file=str(path), row=row, field="user/item")
            users.append(np.full(len(ids) - 1, ids[0]))
            items.append(ids[1:])
    if not users:
        raise InputError("no interactions", file=str(path))
    return np.concatenate(users), np.concatenate(items)


def load_lightgcn_split(folder: str | Path) -> tuple[GraphSnapshot, Split]:
    """Read a LightGCN-format folder (``train.txt``, ``test.txt``: ``user item item ...``).

    Returns a snapshot holding every pair (as ``PURCHASED`` events without time) and the
    fixed ``"given"`` split; ids are the 0-based numbers as strings, in numeric order. The
    split has no validation pairs (the paper's protocol).
    """
    folder = Path(folder)
    for name in ("train.txt", "test.txt"):
        if not (folder / name).exists():
            raise InputError(f"missing LightGCN file {name}", file=str(folder / name))
    tr_u, tr_i = _read_lightgcn_file(folder / "train.txt")
    te_u, te_i = _read_lightgcn_file(folder / "test.txt")
    num_users = int(max(tr_u.max(), te_u.max())) + 1
    num_items = int(max(tr_i.max(), te_i.max())) + 1
    data = HeteroData()
    id_maps = {}
    for label in schema.NODE_LABELS:
        nt = node_type(label)
        n = {"user": num_users, "product": num_items}.get(nt, 0)
        id_maps[nt] = IdMap(nt, map(str, range(n)))
        data[nt].num_nodes = n
    store = data[edge_type(schema.PURCHASED)]
    store.edge_index = torch.as_tensor(np.stack([np.r_[tr_u, te_u], np.r_[tr_i, te_i]]))
    n = store.edge_index.shape[1]
    store.edge_time = torch.full((n,), -1, dtype=torch.long)
    store.edge_value = torch.ones(n)
    store.edge_weight = torch.ones(n)
    products = empty_node_table(schema.PRODUCT)
    products = pd.concat(
        [products, pd.DataFrame({schema.NODE_KEY: id_maps["product"].ids})], ignore_index=True
    ).astype(products.dtypes.to_dict())
    snapshot = GraphSnapshot(data, id_maps, products, [])

    def frame(u: np.ndarray, i: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(
            {"user": u, "product": i, "weight": 1.0, "value": 1.0, "time": np.int64(-1)}
        ).drop_duplicates(["user", "product"], ignore_index=True)

    empty = frame(np.zeros(0, np.int64), np.zeros(0, np.int64))
    split = Split(frame(tr_u, tr_i), empty, frame(te_u, te_i), num_users, num_items, "given")
    return snapshot, split


def export_recbole(
    split: Split, snapshot: GraphSnapshot, out_dir: str | Path, name: str
) -> list[Path]:
    """Write the exact split as RecBole atomic files ``name.{train,valid,test}.inter``.

    Users and items are written as their external ids (tokens), ``rating`` is the raw event
    value and ``timestamp`` the event time (-1 when unknown). Returns the written paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    users, items = snapshot.id_maps["user"], snapshot.id_maps["product"]
    paths = []
    for stage in STAGES:
        frame = split.frame(stage)
        table = pd.DataFrame(
            {
                "user_id:token": users.ids_of(frame["user"].to_numpy()),
                "item_id:token": items.ids_of(frame["product"].to_numpy()),
                "rating:float": frame["value"].to_numpy("float64"),
                "timestamp:float": frame["time"].to_numpy("float64"),
            }
        )
        path = out / f"{name}.{stage}.inter"
        table.to_csv(path, sep="\t", index=False)
        paths.append(path)
    return paths


def training_graph(snapshot: GraphSnapshot, split: Split) -> HeteroData:
    """The message-passing graph: training interactions plus every non-interaction edge.

    Holds ``INTERACTS`` (user -> product, ``edge_weight`` = loss weight) built from
    ``split.train`` only, so validation and test pairs can never leak into propagation,
    and the snapshot's category / brand / also-bought / knowledge-graph edges unchanged
    (``('entity', 'related', 'entity')`` keeps ``edge_relation``). No reverse edges: the
    encoders add them (see :func:`homogeneous_graph`).
    """
    graph = HeteroData()
    for nt, ids in snapshot.id_maps.items():
        graph[nt].num_nodes = len(ids)
    graph[INTERACTS].edge_index = split.pairs("train")
    graph[INTERACTS].edge_weight = torch.as_tensor(split.train["weight"].to_numpy("float32"))
    interaction_types = {edge_type(rel) for rel in schema.INTERACTIONS}
    for et in snapshot.data.edge_types:
        if et in interaction_types:
            continue
        graph[et].edge_index = snapshot.data[et].edge_index
        if "edge_relation" in snapshot.data[et]:
            graph[et].edge_relation = snapshot.data[et].edge_relation
    return graph


@dataclass
class HomogeneousGraph:
    """A heterogeneous graph flattened to one node space, both edge directions included.

    Args:
        edge_index: ``[2, E]`` in the global node space.
        edge_type: ``[E]`` relation id (reverse directions and KG relations get their own).
        node_type: ``[N]`` node type id, indexing ``node_types``.
        offsets: first global row of each node type.
        node_types, edge_types: names of the ids.
    """

    edge_index: torch.Tensor
    edge_type: torch.Tensor
    node_type: torch.Tensor
    offsets: dict[str, int]
    node_types: list[str]
    edge_types: list[str]

    @property
    def num_nodes(self) -> int:
        return int(self.node_type.numel())


def homogeneous_graph(graph: HeteroData, relations: list[str] | None = None) -> HomogeneousGraph:
    """Flatten ``graph`` (from :func:`training_graph`) with users first, then products.

    Each edge type contributes both directions with distinct relation ids; ``RELATED``
    edges are further typed by their knowledge-graph relation (``relations`` names them).
    """
    rest = sorted(nt for nt in graph.node_types if nt not in ("user", "product"))
    order = ["user", "product", *rest]
    offsets, start, types = {}, 0, []
    for i, nt in enumerate(order):
        offsets[nt] = start
        n = int(graph[nt].num_nodes or 0)
        types.append(torch.full((n,), i, dtype=torch.long))
        start += n
    indices: list[torch.Tensor] = []
    rel_ids: list[torch.Tensor] = []
    names: list[str] = []
    for et in graph.edge_types:
        src, rel, dst = et
        ei = graph[et].edge_index
        glob = torch.stack([ei[0] + offsets[src], ei[1] + offsets[dst]])
        if "edge_relation" in graph[et]:
            codes = graph[et].edge_relation
            n_rel = int(codes.max()) + 1 if codes.numel() else 0
            labels = relations or [str(r) for r in range(n_rel)]
            local = [f"{rel}:{labels[r]}" for r in range(n_rel)]
        else:
            codes = torch.zeros(ei.shape[1], dtype=torch.long)
            local = [rel]
        base = len(names)
        names += local + [f"rev_{name}" for name in local]
        indices += [glob, glob.flip(0)]
        rel_ids += [codes + base, codes + base + len(local)]
    return HomogeneousGraph(
        edge_index=torch.cat(indices, 1) if indices else torch.zeros(2, 0, dtype=torch.long),
        edge_type=torch.cat(rel_ids) if rel_ids else torch.zeros(0, dtype=torch.long),
        node_type=torch.cat(types),
        offsets=offsets,
        node_types=order,
        edge_types=names,
    )


def normalized_adjacency(
    edge_index: torch.Tensor, num_nodes: int, edge_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Symmetrically normalised adjacency ``D^-1/2 A D^-1/2`` as a sparse CSR tensor.

    Built once per graph so that each propagation is one sparse-dense product
    (``adj @ x``) instead of a scatter over edges.
    """
    weight = torch.ones(edge_index.shape[1]) if edge_weight is None else edge_weight.float()
    deg = torch.zeros(num_nodes).index_add_(0, edge_index[0], weight)
    inv = deg.pow(-0.5)
    inv[torch.isinf(inv)] = 0
    values = inv[edge_index[0]] * weight * inv[edge_index[1]]
    adj = torch.sparse_coo_tensor(
        edge_index, values, (num_nodes, num_nodes), check_invariants=False
    ).coalesce()
    with warnings.catch_warnings():  # "sparse CSR support is in beta": known, and it works
        warnings.simplefilter("ignore", UserWarning)
        return adj.to_sparse_csr()


def bipartite_edge_index(split: Split) -> torch.Tensor:
    """Training user-item edges in LightGCN's node space (items after users), both directions."""
    pairs = split.pairs("train")
    fwd = torch.stack([pairs[0], pairs[1] + split.num_users])
    return torch.cat([fwd, fwd.flip(0)], 1)


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
            raise ValueError("empty negative pool")

    def _draw(self, n: int) -> torch.Tensor:
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
        items = self._draw(users.numel()).view(users.shape)
        bad = self.is_positive(users, items)
        for _ in range(max_rounds):
            if not bad.any():
                return items
            items[bad] = self._draw(int(bad.sum()))
            bad = self.is_positive(users, items)
        if bad.any():
            raise ValueError(
                f"{int(bad.sum())} users have (almost) every product as a positive; "
                "no negative could be drawn"
            )
        return items
