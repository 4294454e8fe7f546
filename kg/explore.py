"""Notebook helpers: graph neighbourhoods, paths that explain a user-product pair, drawing.

Everything works on a :class:`GraphSnapshot` (a store is exported first). Nodes are keyed
``"<Label>:<id>"`` (e.g. ``"Product:242"``) and carry ``label``, ``id`` and, for products,
their text fields; edges carry ``type`` and their properties (``timestamp``, ``value``,
``weight`` on interactions, ``relation`` on knowledge-graph edges). Distances ignore edge
direction: "2 hops from a product" includes the users who rated it and what else they rated.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp
from kgrec.kg import schema
from kgrec.kg.errors import MissingIdError
from kgrec.kg.snapshot import GraphSnapshot, build_snapshot, edge_type, node_type
from kgrec.kg.store.base import GraphStore
from scipy.sparse.csgraph import dijkstra

PRODUCT_FIELDS = ("title", "category_path", "brand", "price")


def node_key(label: str, id_: str) -> str:
    """The networkx key of a node: ``"Product:242"``."""
    return f"{schema.label(label)}:{id_}"


@dataclass
class Explanation:
    """One path between a user and a product: node keys, relationship types between them
    (``"RATED"`` read left to right, ``"<RATED"`` against its direction) and a sentence."""

    nodes: list[str]
    rels: list[str]
    text: str

    @property
    def hops(self) -> int:
        return len(self.rels)


class GraphIndex:
    """One global numbering of every node of a snapshot plus an undirected adjacency."""

    def __init__(self, snap: GraphSnapshot) -> None:
        self.snap = snap
        self.labels = [lb for lb in schema.NODE_LABELS if node_type(lb) in snap.id_maps]
        self.offsets: dict[str, int] = {}
        total = 0
        for label in self.labels:
            self.offsets[label] = total
            total += len(snap.id_maps[node_type(label)])
        self.num_nodes = total
        #: (rel, src global, dst global, position within the rel's edges) per edge type.
        self.edges: list[tuple[str, np.ndarray, np.ndarray]] = []
        for rel, spec in schema.RELATIONSHIPS.items():
            et = edge_type(rel)
            if et not in snap.data.edge_types:
                continue
            ei = snap.data[et].edge_index.numpy()
            self.edges.append((rel, ei[0] + self.offsets[spec.src], ei[1] + self.offsets[spec.dst]))

    @cached_property
    def adjacency(self) -> sp.csr_matrix:
        src = np.concatenate([e[1] for e in self.edges] or [np.zeros(0, np.int64)])
        dst = np.concatenate([e[2] for e in self.edges] or [np.zeros(0, np.int64)])
        rows, cols = np.concatenate([src, dst]), np.concatenate([dst, src])
        data = np.ones(len(rows), dtype=np.float32)
        adj = sp.csr_matrix((data, (rows, cols)), shape=(self.num_nodes, self.num_nodes))
        adj.sum_duplicates()
        adj.data[:] = 1.0
        return adj

    def index(self, label: str, id_: str) -> int:
        ids = self.snap.id_maps[node_type(schema.label(label))]
        return self.offsets[label] + int(ids.index_of([str(id_)])[0])

    def describe(self, g: int) -> tuple[str, str]:
        """(label, id) of a global node number."""
        label = next(lb for lb in reversed(self.labels) if self.offsets[lb] <= g)
        return label, self.snap.id_maps[node_type(label)].ids[g - self.offsets[label]]

    def distances(self, g: int, limit: int) -> np.ndarray:
        """Hop distance of every node from ``g`` (inf beyond ``limit``)."""
        return dijkstra(self.adjacency, indices=g, unweighted=True, limit=limit + 0.5)

    def subgraph(self, keep: np.ndarray) -> nx.MultiDiGraph:
        """Typed MultiDiGraph of the nodes where ``keep`` is True and every edge among them."""
        graph = nx.MultiDiGraph()
        for g in np.flatnonzero(keep):
            label, id_ = self.describe(int(g))
            graph.add_node(node_key(label, id_), **self._node_props(label, id_, int(g)))
        for rel, src, dst in self.edges:
            mask = keep[src] & keep[dst]
            store = self.snap.data[edge_type(rel)]
            for pos in np.flatnonzero(mask):
                s_label, s_id = self.describe(int(src[pos]))
                d_label, d_id = self.describe(int(dst[pos]))
                graph.add_edge(node_key(s_label, s_id), node_key(d_label, d_id), key=rel,
                               type=rel, **self._edge_props(rel, store, int(pos)))  # fmt: skip
        return graph

    def _node_props(self, label: str, id_: str, g: int) -> dict[str, Any]:
        props: dict[str, Any] = {"label": label, "id": id_}
        if label == schema.PRODUCT:
            row = self.snap.products.iloc[g - self.offsets[label]]
            props.update({f: _plain(row[f]) for f in PRODUCT_FIELDS})
        return props

    def _edge_props(self, rel: str, store: Any, pos: int) -> dict[str, Any]:
        if rel in schema.INTERACTIONS:
            return {
                "timestamp": int(store.edge_time[pos]),
                "value": float(store.edge_value[pos]),
                "weight": float(store.edge_weight[pos]),
            }
        if rel == schema.RELATED:
            return {"relation": self.snap.relations[int(store.edge_relation[pos])]}
        return {}


def _plain(value: Any) -> Any:
    try:
        if value is None or value != value:  # NA / NaN
            return None
    except TypeError:
        return None
    return value.item() if hasattr(value, "item") else value


def _index(source: GraphSnapshot | GraphStore | GraphIndex) -> GraphIndex:
    if isinstance(source, GraphIndex):
        return source
    snap = source if isinstance(source, GraphSnapshot) else build_snapshot(source, progress=False)
    return GraphIndex(snap)


def neighbourhood(
    source: GraphSnapshot | GraphStore | GraphIndex, label: str, id_: str, hops: int = 2
) -> nx.MultiDiGraph:
    """The ``hops``-hop neighbourhood of one node (edge directions ignored), with every
    edge among those nodes.

    Args:
        source: snapshot, store or a prebuilt :class:`GraphIndex` (reuse it for many calls).
        label: node label, e.g. ``"Product"``.
        id_: external id of the node.
        hops: radius in hops (default 2).
    """
    if hops < 0:
        raise ValueError(f"hops must be >= 0, got {hops}")
    index = _index(source)
    dist = index.distances(index.index(label, id_), hops)
    return index.subgraph(np.isfinite(dist))


def paths(
    source: GraphSnapshot | GraphStore | GraphIndex,
    user_id: str,
    product_id: str,
    max_hops: int = 3,
    limit: int = 10,
) -> list[Explanation]:
    """Shortest paths (up to ``max_hops``, at most ``limit``) linking a user to a product:
    why the item relates to the user (e.g. "rated X, which is in genre G, like P").

    Only nodes whose distances from both ends add up to at most ``max_hops`` are searched,
    so this stays fast on hub-heavy graphs.
    """
    index = _index(source)
    try:
        u, p = index.index(schema.USER, user_id), index.index(schema.PRODUCT, product_id)
    except MissingIdError:
        raise
    du, dp = index.distances(u, max_hops), index.distances(p, max_hops)
    keep = (du + dp) <= max_hops
    if not keep[p]:
        return []
    graph = index.subgraph(keep)
    simple = nx.Graph(graph.to_undirected(as_view=True))
    start, end = node_key(schema.USER, user_id), node_key(schema.PRODUCT, product_id)
    out: list[Explanation] = []
    for nodes in nx.shortest_simple_paths(simple, start, end):
        if len(nodes) - 1 > max_hops or len(out) >= limit:
            break
        rels = [_rel_between(graph, a, b) for a, b in zip(nodes, nodes[1:], strict=False)]
        out.append(Explanation(nodes, rels, _sentence(graph, nodes, rels)))
    return out


def _rel_between(graph: nx.MultiDiGraph, a: str, b: str) -> str:
    if graph.has_edge(a, b):
        return next(iter(graph[a][b]))
    return "<" + next(iter(graph[b][a]))


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


COLOURS = {
    schema.USER: "tab:blue",
    schema.PRODUCT: "tab:orange",
    schema.CATEGORY: "tab:green",
    schema.BRAND: "tab:purple",
    schema.ENTITY: "tab:gray",
}


def draw(
    graph: nx.MultiDiGraph,
    path: str | Path | None = None,
    *,
    highlight: list[str] | None = None,
    max_labels: int = 40,
    ax: Any = None,
) -> Any:
    """Draw a neighbourhood: nodes coloured by label, products named by title, edges
    labelled by type when the graph is small; save to ``path`` (PNG) if given.

    Returns the matplotlib Axes."""
    import matplotlib

    if ax is None and path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    ax.set_axis_off()
    if path is not None:
        ax.figure.savefig(path, dpi=100, bbox_inches="tight")
    return ax
