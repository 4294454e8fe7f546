"""Graph neighbourhoods, explanation paths and drawings, on the embedded store (through a
snapshot) and on Neo4j (through bounded, parameterised Cypher), with the same results for
the same data.

Nodes are keyed ``"<Label>:<id>"`` (e.g. ``"Product:242"``) and carry ``label``, ``id``,
their hop distance ``hops`` and, for products, their text fields; edges carry ``type`` and
their properties (``timestamp``, ``value``, ``weight`` on interactions, ``relation`` on
knowledge-graph edges). Distances ignore edge direction: "2 hops from a product" includes
the users who rated it and what else they rated. Every result is bounded: what was cut is
said in ``graph.graph["cut"]`` (and ``graph.graph["truncated"]``), never silently.

Both stores answer the same five questions (:class:`GraphSource`): does a node exist, its
new neighbours (first ``cap`` by label and id), node properties, the edges among a node
set, and the paths between a user and a product. The algorithms on top (:func:`neighbourhood`,
:func:`explain`) are written once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from kgrec.errors import MissingIdError, UsageError
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


@dataclass
class Explanation:
    """One path between a user and a product: node keys, relationship types between them
    (``"RATED"`` read left to right, ``"<RATED"`` against its direction), a sentence and its
    score (:func:`path_score`)."""

    nodes: list[str]
    rels: list[str]
    text: str
    score: float = 0.0

    @property
    def hops(self) -> int:
        return len(self.rels)


class GraphSource(Protocol):
    """What :func:`neighbourhood` and :func:`explain` ask of a store."""

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


#: The longest explanation path: "rated X, which is in genre G, like P" is 3 hops and a 4th
#: adds one link (a brand, an entity); a longer path explains nothing a reader can follow,
#: and the number of paths grows as the degree to the power of the hops (on a 424-node
#: graph 6 hops took 11 s and 8 did not finish).
MAX_EXPLAIN_HOPS = 4
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


# ---- the algorithms, once for every store -------------------------------------------------

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


def _types(rel_types: Iterable[str] | None) -> list[str]:
    return list(GRAPH_RELS) if rel_types is None else [schema.rel_type(t) for t in rel_types]


def _check(source: GraphSource, ref: NodeRef) -> None:
    if not source.exists(ref):
        raise MissingIdError(f"unknown {ref.label} {ref.id!r}: no such node in the graph")


def neighbourhood(
    source: GraphSnapshot | GraphStore | GraphSource,
    label: str,
    id_: str,
    hops: int = 2,
    rel_types: Iterable[str] | None = None,
    limit: int = 200,
    max_edges: int = 5_000,
) -> nx.MultiDiGraph:
    """The ``hops``-hop neighbourhood of one node (edge directions ignored) with every edge
    among its nodes, bounded.

    Args:
        source: a snapshot, a store (local or Neo4j) or a :class:`GraphSource` (reuse one
            for many calls).
        label: node label, e.g. ``"Product"``; id_: its id.
        hops: radius in hops (default 2).
        rel_types: relationship types to walk (default: every type of the ingested graph).
        limit: at most this many nodes, nearest first, then by (label, id).
        max_edges: at most this many edges among them.

    ``graph.graph`` holds ``center``, ``hops``, ``limit``, ``rel_types``, ``cut`` (one line
    per cut made) and ``truncated``.
    """
    if hops < 0 or limit < 1:
        raise UsageError(f"hops must be >= 0 and limit >= 1, got {hops} and {limit}")
    src, types = graph_source(source), _types(rel_types)
    start = NodeRef(schema.label(label), str(id_))
    _check(src, start)
    kept, distance, frontier, cut = [start], {start.key: 0}, [start], []
    for hop in range(1, hops + 1):
        room = limit - len(kept)
        if room == 0:
            cut.append(f"hop {hop}: not explored, the limit of {limit} nodes was reached")
            break
        new = src.expand(frontier, types, set(distance), room)
        if len(new) > room:
            cut.append(f"hop {hop}: more than {room} new nodes; kept the first {room} by "
                       "(label, id)")
            new = new[:room]
        if not new:
            break
        kept += new
        distance.update({r.key: hop for r in new})
        frontier = new
    edges = src.edges(kept, types, max_edges)
    if len(edges) > max_edges:
        cut.append(f"edges: more than {max_edges} among the kept nodes; kept the first "
                   f"{max_edges}")
        edges = edges[:max_edges]
    graph = _graph(src.nodes(kept), edges)
    nx.set_node_attributes(graph, distance, "hops")
    graph.graph.update(center=start.key, hops=hops, limit=limit, rel_types=types, cut=cut,
                       truncated=bool(cut))
    return graph


def _graph(nodes: dict[str, dict[str, Any]],
           edges: list[tuple[str, str, str, dict[str, Any]]]) -> nx.MultiDiGraph:
    graph = nx.MultiDiGraph()
    for key, props in nodes.items():
        graph.add_node(key, **props)
    for rel, a, b, props in edges:  # a (src, dst, rel) seen twice keeps the last, as sorted
        graph.add_edge(a, b, key=rel, type=rel, **props)
    return graph


def path_score(nodes: Sequence[str], degree: dict[str, int]) -> float:
    """How much a path says: the product of ``1 / ln(2 + degree)`` over its inner nodes
    (Adamic-Adar's discount), so a path through a niche product or a small category
    explains more than one through a blockbuster, and every extra hop costs."""
    return math.prod(1.0 / math.log(2 + degree.get(n, 0)) for n in nodes[1:-1])


def explain(
    source: GraphSnapshot | GraphStore | GraphSource,
    user_id: str,
    product_id: str,
    max_hops: int = 3,
    limit: int = 5,
    rel_types: Iterable[str] | None = None,
    max_paths: int = 100_000,
) -> list[Explanation]:
    """The paths of at most ``max_hops`` that link a user to a product, best
    :func:`path_score` first (then shorter, then by keys): why the product relates to the
    user ("rated X, which is in genre G, like P"). At most ``max_paths`` paths are
    weighed; when there are more, the first explanation's ``text`` ends by saying so (the
    stores then weigh different subsets; below the cap both give the same answer).

    The work is bounded: ``max_hops`` is at most :data:`MAX_EXPLAIN_HOPS`; the embedded
    store stops after :data:`EXPLAIN_STEPS` path extensions (the text then says so), Neo4j
    after :data:`EXPLAIN_SECONDS` (a :class:`~kgrec.errors.StoreError`).

    Raises:
        ValueError: ``max_hops``, ``limit`` or ``max_paths`` is not a whole number of at
            least 1, or ``max_hops`` is over :data:`MAX_EXPLAIN_HOPS`.
    """
    for name, value, top in (("max_hops", max_hops, MAX_EXPLAIN_HOPS), ("limit", limit, None),
                             ("max_paths", max_paths, None)):
        if (isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1
                or (top is not None and value > top)):
            most = f" and at most {top} (MAX_EXPLAIN_HOPS: longer paths explain nothing " \
                "and their number explodes)" if top else ""
            raise UsageError(f"{name} must be a whole number of at least 1{most}, "
                             f"got {value!r}")
    max_hops, limit, max_paths = int(max_hops), int(limit), int(max_paths)
    src, types = graph_source(source), _types(rel_types)
    user, product = NodeRef(schema.USER, str(user_id)), NodeRef(schema.PRODUCT, str(product_id))
    _check(src, user)
    _check(src, product)
    found = src.paths(user, product, max_hops, types, max_paths)
    stopped = getattr(found, "stopped", None)
    cut = len(found) > max_paths
    found = found[:max_paths]
    inner = sorted({NodeRef.parse(k) for path in found for k in path[1:-1]})
    degree = src.degrees(inner, types)
    ranked = sorted(found, key=lambda p: (-path_score(p, degree), len(p), p))[:limit]
    refs = sorted({NodeRef.parse(k) for path in ranked for k in path})
    # Few nodes (about limit x max_hops): every edge among them fits.
    graph = _graph(src.nodes(refs), src.edges(refs, types, len(refs) ** 2 * len(types)))
    out = []
    for path in ranked:
        rels = [_rel_between(graph, a, b) for a, b in zip(path, path[1:], strict=False)]
        out.append(Explanation(path, rels, _sentence(graph, path, rels),
                               path_score(path, degree)))
    if out and cut:
        out[0].text += f" (the best of the first {max_paths:,} paths)"
    elif out and stopped:
        out[0].text += f" (the best of {len(found):,} paths found within {stopped})"
    return out


def _rel_between(graph: nx.MultiDiGraph, a: str, b: str) -> str:
    """The type of an edge a -> b (first by name), else ``"<TYPE"`` of one b -> a."""
    if graph.has_edge(a, b):
        return min(graph[a][b])
    return "<" + min(graph[b][a])


def _name(graph: nx.MultiDiGraph, key: str) -> str:
    attrs = graph.nodes[key]
    title = attrs.get("title")
    return f"{key} ({title!r})" if title else key


def _sentence(graph: nx.MultiDiGraph, nodes: list[str], rels: list[str]) -> str:
    parts = [_name(graph, nodes[0])]
    for rel, node in zip(rels, nodes[1:], strict=True):
        arrow = f"<-{rel[1:]}-" if rel.startswith("<") else f"-{rel}->"
        parts += [arrow, _name(graph, node)]
    return " ".join(parts)


# ---- drawings -----------------------------------------------------------------------------

COLOURS = {
    schema.USER: "tab:blue",
    schema.PRODUCT: "tab:orange",
    schema.CATEGORY: "tab:green",
    schema.BRAND: "tab:purple",
    schema.ENTITY: "tab:gray",
}
#: The same colours as hex, for the interactive drawing.
HEX = {schema.USER: "#1f77b4", schema.PRODUCT: "#ff7f0e", schema.CATEGORY: "#2ca02c",
       schema.BRAND: "#9467bd", schema.ENTITY: "#7f7f7f"}


def draw(
    graph: nx.MultiDiGraph,
    path: str | Path | None = None,
    *,
    highlight: list[str] | None = None,
    max_labels: int = 40,
    max_nodes: int = 300,
    ax: Any = None,
) -> Any:
    """Draw a neighbourhood: nodes coloured by label (with a legend), products named by
    title, edges labelled by type when the graph is small; the nearest ``max_nodes`` only;
    saved to ``path`` (PNG) if given. Returns the matplotlib Axes."""
    import matplotlib

    if ax is None and path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if graph.number_of_nodes() > max_nodes:
        nearest = sorted(graph, key=lambda n: (graph.nodes[n].get("hops", 0), n))[:max_nodes]
        graph = graph.subgraph(nearest)
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 7))
    pos = nx.spring_layout(graph, seed=7)
    colours = [COLOURS.get(graph.nodes[n].get("label"), "black") for n in graph]
    sizes = [260 if highlight and n in highlight else 90 for n in graph]
    nx.draw_networkx_edges(graph, pos, ax=ax, alpha=0.3, arrows=False)
    nx.draw_networkx_nodes(graph, pos, ax=ax, node_color=colours, node_size=sizes)
    if graph.number_of_nodes() <= max_labels:
        labels = {n: (graph.nodes[n].get("title") or n)[:24] for n in graph}
        nx.draw_networkx_labels(graph, pos, labels, ax=ax, font_size=7)
        edge_labels = {(a, b): k for a, b, k in graph.edges(keys=True)}
        nx.draw_networkx_edge_labels(graph, pos, edge_labels, ax=ax, font_size=6)
    present = sorted({graph.nodes[n].get("label") for n in graph} & set(COLOURS))
    ax.legend(handles=[Line2D([], [], marker="o", ls="", color=COLOURS[lb], label=lb)
                       for lb in present], loc="lower left", fontsize=8)
    ax.set_axis_off()
    if path is not None:
        ax.figure.savefig(path, dpi=100, bbox_inches="tight")
    return ax


def draw_interactive(graph: nx.MultiDiGraph, path: str | Path | None = None,
                     *, height: str = "600px") -> str:
    """An interactive drawing (pyvis: drag, zoom, hover for properties) as one
    self-contained HTML page; written to ``path`` when given. In a notebook, show it with
    ``IPython.display.HTML(html)``."""
    from pyvis.network import Network

    net = Network(height=height, width="100%", directed=True, cdn_resources="in_line",
                  notebook=False)
    for key, attrs in graph.nodes(data=True):
        details = "\n".join(f"{k}: {v}" for k, v in attrs.items() if v is not None)
        net.add_node(key, label=str(attrs.get("title") or key)[:30], title=details,
                     color=HEX.get(attrs.get("label"), "#000000"))
    for a, b, rel in graph.edges(keys=True):
        net.add_edge(a, b, label=rel, title=rel)
    html = net.generate_html()
    if path is not None:
        Path(path).write_text(html)
    return html


def browser_cypher(graph: nx.MultiDiGraph) -> str:
    """The Cypher that draws the same neighbourhood in Neo4j Browser."""
    from kgrec.kg.cypher import browser_neighbourhood

    center = NodeRef.parse(graph.graph["center"])
    return browser_neighbourhood(center.label, center.id, graph.graph["hops"],
                                 graph.graph["rel_types"], graph.graph["limit"])
