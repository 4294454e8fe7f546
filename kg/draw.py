"""Drawings of a neighbourhood: matplotlib, interactive HTML (pyvis) and Neo4j Browser Cypher."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx

from kgrec.kg import schema
from kgrec.kg.cypher import browser_neighbourhood
from kgrec.kg.graph_sources import NodeRef

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
    center = NodeRef.parse(graph.graph["center"])
    return browser_neighbourhood(center.label, center.id, graph.graph["hops"],
                                 graph.graph["rel_types"], graph.graph["limit"])
