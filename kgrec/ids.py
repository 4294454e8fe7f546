"""IdMap and NodeEmbeddings: artefacts join on external ids, never on row order."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kgrec.errors import MissingIdError, ModelError, UsageError


class IdMap:
    """External id <-> row index for one node type. Ids are strings, kept in a fixed order."""

    def __init__(self, node_type: str, ids: Iterable[str]) -> None:
        self.node_type = node_type
        self.ids: list[str] = [str(i) for i in ids]
        self._index = pd.Index(self.ids)
        if not self._index.is_unique:
            dup = self._index[self._index.duplicated()][0]
            raise UsageError(f"IdMap({node_type}): duplicate id {dup!r}")

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item: object) -> bool:
        return item in self._index

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, IdMap)
            and other.node_type == self.node_type
            and other.ids == self.ids
        )

    def index_of(self, ids: Sequence[str] | pd.Series | np.ndarray) -> np.ndarray:
        """Row indices of ``ids``; raises :class:`MissingIdError` naming the first unknown id."""
        idx = self.rows_or_missing(ids)
        if (idx < 0).any():
            missing = np.asarray(ids)[idx < 0][0]
            raise MissingIdError(f"{self.node_type} id {missing!r} is not in the id map")
        return idx

    def rows_or_missing(self, ids: Sequence[str] | pd.Series | np.ndarray) -> np.ndarray:
        """Row indices of ``ids``, -1 where an id is not in the map."""
        return self._index.get_indexer(pd.Index(ids).astype(str))

    def ids_of(self, index: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
        """External ids at the given row indices."""
        arr = index.cpu().numpy() if isinstance(index, torch.Tensor) else np.asarray(index)
        return np.asarray(self.ids, dtype=object)[arr]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"node_type": self.node_type, "ids": self.ids}))

    @classmethod
    def load(cls, path: str | Path) -> IdMap:
        data = json.loads(Path(path).read_text())
        return cls(data["node_type"], data["ids"])


@dataclass
class NodeEmbeddings:
    """Embeddings of one node type, row ``i`` for ``ids[i]``: the gnn/text -> fusion hand-off."""

    node_type: str
    ids: IdMap
    tensor: torch.Tensor

    def __post_init__(self) -> None:
        if self.tensor.dim() != 2 or self.tensor.shape[0] != len(self.ids):
            raise UsageError(
                f"NodeEmbeddings({self.node_type}): tensor shape {tuple(self.tensor.shape)} "
                f"does not match {len(self.ids)} ids"
            )

    @property
    def dim(self) -> int:
        return int(self.tensor.shape[1])

    def align(self, ids: IdMap | Sequence[str]) -> torch.Tensor:
        """Rows for ``ids`` in that order (raises :class:`MissingIdError` on an unknown id)."""
        wanted = ids.ids if isinstance(ids, IdMap) else list(ids)
        return self.tensor[torch.as_tensor(self.ids.index_of(wanted), dtype=torch.long)]

    def save(self, path: str | Path) -> None:
        torch.save(
            {"node_type": self.node_type, "ids": self.ids.ids, "tensor": self.tensor.cpu()},
            Path(path),
        )

    @classmethod
    def load(cls, path: str | Path) -> NodeEmbeddings:
        if not Path(path).exists():
            raise ModelError(f"embeddings file {path} does not exist")
        data = torch.load(Path(path), weights_only=True)
        return cls(data["node_type"], IdMap(data["node_type"], data["ids"]), data["tensor"])
