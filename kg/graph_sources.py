"""Graph sources: what :mod:`kgrec.kg.explore` asks of a store, from a snapshot or by Cypher.

Nodes are keyed ``"<Label>:<id>"`` (e.g. ``"Product:242"``). Both stores answer the same five
questions (:class:`GraphSource`): does a node exist, its new neighbours (first ``cap`` by
label and id), node properties, the edges among a node set, and the paths between a user and
a product: the embedded store from a snapshot's arrays (:class:`GraphIndex`), Neo4j through
bounded, parameterised Cypher (:class:`Neo4jGraphSource`), with the same results for the
same data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from kgrec.errors import MissingIdError
from kgrec.kg import cypher, schema
from kgrec.kg.snapshot import GraphSnapshot, build_snapshot, edge_type, node_type
from kgrec.kg.store.base import GraphStore

PRODUCT_FIELDS = ("title", "category_path", "brand", "price")
#: The ingested graph's relationship types (RECOMMENDED, written by scoring, is left out).
GRAPH_RELS: tuple[str, ...] = tuple(schema.RELATIONSHIPS)


def node_key(label: str, id_: str) -> str:
    """The networkx key of a node: ``"Product:242"``."""
    return f"{label}:{id_}"


@dataclass(frozen=True, order=True)
class NodeRef:
    """A node by label and id; sorts by (label, id), the order every cut keeps."""

    label: str
    id: str

    @property
    def key(self) -> str:
        return node_key(self.label, self.id)

    @classmethod
    def parse(cls, key: str) -> NodeRef:
        label, _, id_ = key.partition(":")
        return cls(label, id_)


class GraphSource(Protocol):
    """What :func:`~kgrec.kg.explore.neighbourhood` and :func:`~kgrec.kg.explore.explain` ask
    of a store."""

    def exists(self, ref: NodeRef) -> bool: ...

    def expand(self, frontier: Sequence[NodeRef], types: Sequence[str], seen: set[str],
               cap: int) -> list[NodeRef]:
        """Distinct neighbours of ``frontier`` over ``types`` not in ``seen`` (keys), sorted,
        at most ``cap + 1`` (one more than asked says that more exist)."""
        ...

    def nodes(self, refs: Sequence[NodeRef]) -> dict[str, dict[str, Any]]: ...

    def edges(self, refs: Sequence[NodeRef], types: Sequence[str],
              cap: int) -> list[tuple[str, str, str, dict[str, Any]]]:
        """(type, src key, dst key, properties) among ``refs``, in type order then as a
        snapshot orders them, at most ``cap + 1``."""
        ...

    def degrees(self, refs: Sequence[NodeRef], types: Sequence[str]) -> dict[str, int]: ...

    def paths(self, user: NodeRef, product: NodeRef, max_hops: int, types: Sequence[str],
              cap: int) -> list[list[str]]:
        """Node-key sequences of the simple paths of at most ``max_hops`` (any direction),
        at most ``cap + 1``."""
        ...


def edge_props(rel: str, values: dict[str, Any]) -> dict[str, Any]:
    """A relationship's properties as explore shows them on both stores: a snapshot's fill
    rules (unknown time -1, value and weight 1) and its float32 precision."""
    if rel in schema.INTERACTIONS:
        ts, value, weight = (values.get(k) for k in ("timestamp", "value", "weight"))
        return {"timestamp": -1 if ts is None else int(ts),
                "value": float(np.float32(1.0 if value is None else value)),
                "weight": float(np.float32(1.0 if weight is None else weight))}
    if rel == schema.RELATED:
        return {"relation": values.get("relation")}
    return {}


def node_props(ref: NodeRef, values: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {"label": ref.label, "id": ref.id}
    if ref.label == schema.PRODUCT:
        props.update({f: _plain(values.get(f)) for f in PRODUCT_FIELDS})
    return props


def _plain(value: Any) -> Any:
    try:
        if value is None or value != value:  # NA / NaN
            return None
    except TypeError:
        return None
    return value.item() if hasattr(value, "item") else value


# ---- the embedded store: a snapshot's arrays ----------------------------------------------

class GraphIndex:
    """One global numbering of every node of a snapshot plus undirected adjacencies: the
    :class:`GraphSource` of the embedded store."""

    def __init__(self, snap: GraphSnapshot) -> None:
        self.snap = snap
        self.labels = [lb for lb in schema.NODE_LABELS if node_type(lb) in snap.id_maps]
        self.offsets: dict[str, int] = {}
        total = 0
        for label in self.labels:
            self.offsets[label] = total
            total += len(snap.id_maps[node_type(label)])
        self.num_nodes = total
        #: (rel, src global, dst global) per edge type, in the snapshot's edge order.
        self.edges_by_rel: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for rel, spec in schema.RELATIONSHIPS.items():
            et = edge_type(rel)
            if et in snap.data.edge_types:
                ei = snap.data[et].edge_index.numpy()
                self.edges_by_rel[rel] = (ei[0] + self.offsets[spec.src],
                                          ei[1] + self.offsets[spec.dst])
        self._adjacency: dict[tuple[str, ...], sp.csr_matrix] = {}

    def adjacency(self, types: Sequence[str] = GRAPH_RELS) -> sp.csr_matrix:
        """Undirected 0/1 adjacency over the relationship ``types``."""
        key = tuple(sorted(types))
        if key not in self._adjacency:
            pairs = [self.edges_by_rel[r] for r in key if r in self.edges_by_rel]
            src = np.concatenate([p[0] for p in pairs] or [np.zeros(0, np.int64)])
            dst = np.concatenate([p[1] for p in pairs] or [np.zeros(0, np.int64)])
            rows, cols = np.concatenate([src, dst]), np.concatenate([dst, src])
            adj = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                                shape=(self.num_nodes, self.num_nodes))
            adj.sum_duplicates()
            adj.data[:] = 1.0
            self._adjacency[key] = adj
        return self._adjacency[key]

    def index(self, label: str, id_: str) -> int:
        ids = self.snap.id_maps[node_type(schema.label(label))]
        return self.offsets[label] + int(ids.index_of([str(id_)])[0])

    def ref(self, g: int) -> NodeRef:
        """The node of a global number."""
        label = next(lb for lb in reversed(self.labels) if self.offsets[lb] <= g)
        return NodeRef(label, self.snap.id_maps[node_type(label)].ids[g - self.offsets[label]])

    def distances(self, g: int, limit: int, types: Sequence[str] = GRAPH_RELS) -> np.ndarray:
        """Hop distance of every node from ``g`` (inf beyond ``limit``)."""
        return dijkstra(self.adjacency(types), indices=g, unweighted=True, limit=limit + 0.5)

    # -- GraphSource --

    def exists(self, ref: NodeRef) -> bool:
        try:
            self.index(ref.label, ref.id)
        except (MissingIdError, KeyError):
            return False
        return True

    def expand(self, frontier, types, seen, cap):
        adj = self.adjacency(types)
        rows = [self.index(r.label, r.id) for r in frontier]
        found = np.unique(adj[rows].indices) if rows else np.zeros(0, np.int64)
        new = sorted(ref for ref in map(self.ref, found.tolist()) if ref.key not in seen)
        return new[: cap + 1]

    def nodes(self, refs):
        out = {}
        for ref in refs:
            values: dict[str, Any] = {}
            if ref.label == schema.PRODUCT:
                row = self.snap.products.iloc[self.index(ref.label, ref.id)
                                              - self.offsets[ref.label]]
                values = {f: row[f] for f in PRODUCT_FIELDS}
            out[ref.key] = node_props(ref, values)
        return out

    def edges(self, refs, types, cap):
        keep = np.zeros(self.num_nodes, dtype=bool)
        keep[[self.index(r.label, r.id) for r in refs]] = True
        out: list[tuple[str, str, str, dict[str, Any]]] = []
        for rel in GRAPH_RELS:
            if rel not in types or rel not in self.edges_by_rel:
                continue
            src, dst = self.edges_by_rel[rel]
            store = self.snap.data[edge_type(rel)]
            for pos in np.flatnonzero(keep[src] & keep[dst]):
                if len(out) > cap:
                    return out
                out.append((rel, self.ref(int(src[pos])).key, self.ref(int(dst[pos])).key,
                            self._edge_values(rel, store, int(pos))))
        return out

    def _edge_values(self, rel: str, store: Any, pos: int) -> dict[str, Any]:
        if rel in schema.INTERACTIONS:
            return edge_props(rel, {"timestamp": int(store.edge_time[pos]),
                                    "value": float(store.edge_value[pos]),
                                    "weight": float(store.edge_weight[pos])})
        if rel == schema.RELATED:
            return edge_props(rel, {"relation": self.snap.relations[int(store.edge_relation[pos])]})
        return {}

    def degrees(self, refs, types):
        adj = self.adjacency(types)
        return {r.key: int(adj.indptr[g + 1] - adj.indptr[g])
                for r, g in ((r, self.index(r.label, r.id)) for r in refs)}

    def paths(self, user, product, max_hops, types, cap):
        u, p = self.index(user.label, user.id), self.index(product.label, product.id)
        du, dp = self.distances(u, max_hops, types), self.distances(p, max_hops, types)
        keep = np.flatnonzero((du + dp) <= max_hops)
        if p not in set(keep.tolist()):
            return []
        sub = self.adjacency(types)[keep][:, keep].tocsr()
        start, end = int(np.searchsorted(keep, u)), int(np.searchsorted(keep, p))
        found = _simple_paths(sub, start, end, dp[keep], max_hops, cap, EXPLAIN_STEPS)
        out = Paths([self.ref(int(keep[i])).key for i in path] for path in found)
        out.stopped = found.stopped
        return out


#: Path extensions one explanation may try on the embedded store (about a second); past
#: it the paths found so far are weighed and the answer says so.
EXPLAIN_STEPS = 1_000_000
#: Seconds one explanation's path query may run on Neo4j before it is stopped.
EXPLAIN_SECONDS = 30.0


class Paths(list):
    """Paths found by a :class:`GraphSource`; ``stopped`` says why the search ended before
    it had seen them all (None: it saw them all, or ``cap + 1`` of them)."""

    stopped: str | None = None


def _simple_paths(adj: sp.csr_matrix, start: int, end: int, to_end: np.ndarray,
                  max_hops: int, cap: int, steps: int) -> Paths:
    """The simple paths ``start`` -> ``end`` of at most ``max_hops`` edges (depth first, in
    index order), at most ``cap + 1``. A branch is cut as soon as the hops from its node to
    ``end`` (``to_end``) no longer fit, so the work follows the paths found; the search
    stops after ``steps`` extensions (``stopped`` then says so)."""
    out = Paths()
    path, on = [start], {start}
    stack = [iter(adj.indices[adj.indptr[start]:adj.indptr[start + 1]].tolist())]
    tried = 0
    while stack:
        nxt = next(stack[-1], None)
        if nxt is None:
            stack.pop()
            on.discard(path.pop())
            continue
        tried += 1
        if tried > steps:
            out.stopped = f"the search bound of {steps:,} steps"
            break
        if nxt in on or len(path) + to_end[nxt] > max_hops:
            continue
        if nxt == end:
            out.append([*path, end])
            if len(out) > cap:
                break
            continue
        path.append(nxt)
        on.add(nxt)
        stack.append(iter(adj.indices[adj.indptr[nxt]:adj.indptr[nxt + 1]].tolist()))
    return out


# ---- Neo4j: bounded, parameterised Cypher reads ---------------------------------------

class Neo4jGraphSource:
    """The :class:`GraphSource` of a Neo4j store: bounded, parameterised
    reads (:mod:`kgrec.kg.cypher`'s ``explore_*``), one query per label or type."""

    def __init__(self, store: Any) -> None:
        self.store = store

    @staticmethod
    def _by_label(refs: Sequence[NodeRef]) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for ref in refs:
            groups.setdefault(ref.label, []).append(ref.id)
        return groups

    def exists(self, ref: NodeRef) -> bool:
        return bool(self.store._query(cypher.explore_nodes(ref.label), ids=[ref.id]))

    def expand(self, frontier: Sequence[NodeRef], types: Sequence[str], seen: set[str],
               cap: int) -> list[NodeRef]:
        found: set[NodeRef] = set()
        for label, ids in self._by_label(frontier).items():
            records = self.store._query(cypher.explore_expand(label), ids=ids,
                                        types=list(types), seen=sorted(seen), cap=cap + 1)
            found.update(NodeRef(r["label"], r["id"]) for r in records)
        return sorted(found)[: cap + 1]

    def nodes(self, refs: Sequence[NodeRef]) -> dict[str, dict[str, Any]]:
        values: dict[str, dict[str, Any]] = {}
        for label, ids in self._by_label(refs).items():
            for r in self.store._query(cypher.explore_nodes(label), ids=ids):
                values[NodeRef(label, r["id"]).key] = dict(r["props"])
        return {ref.key: node_props(ref, values.get(ref.key, {})) for ref in refs}

    def edges(self, refs: Sequence[NodeRef], types: Sequence[str],
              cap: int) -> list[tuple[str, str, str, dict]]:
        groups = self._by_label(refs)
        out: list[tuple[str, str, str, dict]] = []
        for rel in GRAPH_RELS:
            spec = schema.RELATIONSHIPS[rel]
            if rel not in types or spec.src not in groups or spec.dst not in groups:
                continue
            for r in self.store._query(cypher.explore_edges(rel), src=groups[spec.src],
                                       dst=groups[spec.dst], cap=cap + 1 - len(out)):
                out.append((rel, node_key(spec.src, r["src"]), node_key(spec.dst, r["dst"]),
                            edge_props(rel, dict(r))))
            if len(out) > cap:
                break
        return out

    def degrees(self, refs: Sequence[NodeRef], types: Sequence[str]) -> dict[str, int]:
        out = {}
        for label, ids in self._by_label(refs).items():
            for r in self.store._query(cypher.explore_degrees(label), ids=ids, types=list(types)):
                out[node_key(label, r["id"])] = int(r["degree"])
        return out

    def paths(self, user: NodeRef, product: NodeRef, max_hops: int, types: Sequence[str],
              cap: int) -> list[list[str]]:
        records = self.store._query_bounded(
            cypher.explore_paths(max_hops), EXPLAIN_SECONDS,
            f"explaining {user.key} -> {product.key} within {max_hops} hops",
            user=user.id, product=product.id, types=list(types), cap=cap + 1)
        return Paths(list(r["keys"]) for r in records)


# ---- any of them ------------------------------------------------------------------------

def graph_source(source: GraphSnapshot | GraphStore | GraphSource) -> GraphSource:
    """The :class:`GraphSource` of a snapshot, a store (Neo4j answers with Cypher; the
    embedded store through its snapshot) or a source itself."""
    if isinstance(source, GraphSnapshot):
        return GraphIndex(source)
    if hasattr(source, "expand") and hasattr(source, "paths"):
        return source
    explorer = getattr(source, "explorer", None)
    if explorer is not None:
        return explorer()
    return GraphIndex(build_snapshot(source, progress=False))
