"""Graph neighbourhoods and explanation paths, written once for every graph source.

Nodes are keyed ``"<Label>:<id>"`` (e.g. ``"Product:242"``) and carry ``label``, ``id``,
their hop distance ``hops`` and, for products, their text fields; edges carry ``type`` and
their properties (``timestamp``, ``value``, ``weight`` on interactions, ``relation`` on
knowledge-graph edges). Distances ignore edge direction: "2 hops from a product" includes
the users who rated it and what else they rated. Every result is bounded: what was cut is
said in ``graph.graph["cut"]`` (and ``graph.graph["truncated"]``), never silently.

The embedded store (through a snapshot) and Neo4j (through bounded, parameterised Cypher)
give the same results for the same data: both answer the same questions
(:class:`~kgrec.kg.graph_sources.GraphSource`), and the algorithms on top
(:func:`neighbourhood`, :func:`explain`) are written once. Drawings are in
:mod:`kgrec.kg.draw`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from kgrec.errors import MissingIdError, UsageError
from kgrec.kg import schema
from kgrec.kg.graph_sources import GRAPH_RELS, GraphSource, NodeRef, graph_source
from kgrec.kg.snapshot import GraphSnapshot
from kgrec.kg.store.base import GraphStore

#: The longest explanation path: "rated X, which is in genre G, like P" is 3 hops and a 4th
#: adds one link (a brand, an entity); a longer path explains nothing a reader can follow,
#: and the number of paths grows as the degree to the power of the hops (on a 424-node
#: graph 6 hops took 11 s and 8 did not finish).
MAX_EXPLAIN_HOPS = 4


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
    store stops after :data:`~kgrec.kg.graph_sources.EXPLAIN_STEPS` path extensions (the
    text then says so), Neo4j after :data:`~kgrec.kg.graph_sources.EXPLAIN_SECONDS` (a
    :class:`~kgrec.errors.StoreError`).

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

