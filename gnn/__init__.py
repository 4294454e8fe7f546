"""GNN layer of kgrec: splits, leak-free training graphs, GCN/GAT + baselines, training, metrics.

Reads :class:`kgrec.kg.snapshot.GraphSnapshot` only; never talks to a graph store.
``kgrec.gnn.split`` makes the evaluation splits from ``kgrec.gnn.pairs``' (user, product)
pairs and behaviour weights, ``kgrec.gnn.graph`` the training graph built
from their training pairs and ``kgrec.gnn.sampling`` the negatives; ``kgrec.gnn.models``
holds the models, one per file, and their registry; ``kgrec.gnn.train`` trains them
(``kgrec.gnn.losses``, ``kgrec.gnn.device``, ``kgrec.gnn.cpus``; ``kgrec.gnn.checkpoint``
resumes a run, ``kgrec.gnn.replica`` shares a step between processes, which
``kgrec.gnn.distributed`` starts) into a ``kgrec.gnn.result.TrainResult``, and
``kgrec.gnn.metrics`` ranks them.
``kgrec.gnn.export`` writes RecBole files, ``kgrec.gnn.lightgcn_files`` reads LightGCN-format
splits.
"""

from __future__ import annotations
