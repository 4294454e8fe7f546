"""GNN layer of kgrec: splits, leak-free training graphs, GCN/GAT + baselines, training, metrics.

Reads :class:`kgrec.kg.snapshot.GraphSnapshot` only; never talks to a graph store.
"""

from __future__ import annotations
