"""Warm starts: a model trained on yesterday's graph as the starting point of today's.

When events are appended, the new graph keeps most users, products, categories and
relations of the old one, in other rows. A warm start copies the previous model's
parameters into a freshly built model: the rows of node and relation tables matched on
their ids (:meth:`~kgrec.gnn.models.EmbeddingModel.keyed_rows`), every other parameter
whole where its shape is unchanged. New users and products keep their initialisation
(the GAT embeds a product without events by its text), and training goes on from there
under the usual early stopping.

Cost: O(rows of the keyed tables) for the id join, once per training run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from kgrec.errors import ModelError
from kgrec.gnn.graph import node_order
from kgrec.gnn.models import EmbeddingModel
from kgrec.kg.snapshot import GraphSnapshot

#: A trained run's parameters and the row keys of its keyed ones (:meth:`TrainResult.save`).
CHECKPOINT_FILE, ROW_KEYS_FILE = "checkpoint.pt", "row_keys.parquet"


def node_keys(snapshot: GraphSnapshot) -> np.ndarray:
    """``type:id`` of every row of the flattened node space of ``snapshot``."""
    keys = [f"{nt}:" + pd.Series(snapshot.id_maps[nt].ids, dtype=object)
            for nt in node_order(list(snapshot.id_maps))]
    return pd.concat(keys, ignore_index=True).to_numpy(dtype=object)


def row_keys(model: EmbeddingModel, snapshot: GraphSnapshot) -> dict[str, np.ndarray]:
    """The key of every row of each of ``model``'s keyed parameters."""
    nodes = None
    out = {}
    for name, rows in model.keyed_rows().items():
        if isinstance(rows, Tensor):
            nodes = node_keys(snapshot) if nodes is None else nodes
            out[name] = nodes[rows.cpu().numpy()]
        else:
            out[name] = np.asarray([f"relation:{r}" for r in rows], dtype=object)
    return out


def save_row_keys(keys: dict[str, np.ndarray], path: Path) -> None:
    frame = pd.DataFrame({"param": np.repeat(list(keys), [len(v) for v in keys.values()]),
                          "key": np.concatenate([*keys.values(), np.zeros(0, dtype=object)])})
    frame.to_parquet(path, index=False)


def load_row_keys(path: Path) -> dict[str, np.ndarray]:
    frame = pd.read_parquet(path)
    return {name: part["key"].to_numpy(dtype=object)
            for name, part in frame.groupby("param", sort=False)}


@dataclass
class WarmReport:
    """What a warm start carried: per keyed parameter, rows matched of the new model's rows;
    the parameters copied whole and those left at their initialisation (shape changed)."""

    source: str
    matched: dict[str, tuple[int, int]] = field(default_factory=dict)
    copied: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)

    def summary(self) -> str:
        rows = ", ".join(f"{name} {hit:,}/{total:,} rows"
                         for name, (hit, total) in self.matched.items())
        fresh = f"; left at their initialisation: {', '.join(self.fresh)}" if self.fresh else ""
        return (f"warm start from {self.source}: {rows}; {len(self.copied)} other parameters "
                f"copied{fresh}")

    def to_dict(self) -> dict:
        return {"source": self.source, "matched": {k: list(v) for k, v in self.matched.items()},
                "copied": self.copied, "fresh": self.fresh}


@dataclass
class WarmStart:
    """A previous run's parameters and the keys of their rows."""

    state: dict[str, Tensor]
    keys: dict[str, np.ndarray]
    source: str

    @classmethod
    def load(cls, folder: str | Path) -> WarmStart:
        """The trained run in ``folder`` (a ``kgrec train`` run folder)."""
        folder = Path(folder)
        missing = [n for n in (CHECKPOINT_FILE, ROW_KEYS_FILE) if not (folder / n).exists()]
        if missing:
            raise ModelError(f"{folder} cannot warm-start a model: {', '.join(missing)} missing "
                             "(runs saved before kgrec kept row keys cannot)")
        state = torch.load(folder / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
        return cls(state, load_row_keys(folder / ROW_KEYS_FILE), str(folder))

    @torch.no_grad()
    def apply(self, model: EmbeddingModel, keys: dict[str, np.ndarray]) -> WarmReport:
        """Copy into ``model`` (whose rows have ``keys``, :func:`row_keys`) what matches."""
        report = WarmReport(self.source)
        params = model.state_dict(keep_vars=True)
        for name, target in params.items():
            old = self.state.get(name)
            if old is None:
                report.fresh.append(name)
            elif name in keys and name in self.keys:
                new_rows = pd.Index(self.keys[name]).get_indexer(keys[name])
                hit = new_rows >= 0
                if old.shape[1:] == target.shape[1:]:
                    where = torch.as_tensor(np.flatnonzero(hit), device=target.device)
                    rows = old[torch.as_tensor(new_rows[hit])]
                    target.data[where] = rows.to(target.device, target.dtype)
                    report.matched[name] = (int(hit.sum()), len(hit))
                else:
                    report.fresh.append(name)
            elif old.shape == target.shape:
                target.data.copy_(old)
                report.copied.append(name)
            else:
                report.fresh.append(name)
        return report
