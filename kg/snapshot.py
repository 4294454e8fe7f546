"""GraphSnapshot: the bulk export of a store that gnn and fusion read.

Built the same way from every store, so Neo4j and the embedded store give identical
snapshots. Node types are the lower-cased labels; edge types are
``(src_type, rel_type.lower(), dst_type)``.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from kgrec.kg import schema
from kgrec.kg.errors import InputError
from kgrec.kg.ids import IdMap
from kgrec.kg.store.base import GraphStore
from kgrec.kg.tables import (
    GraphTables,
    empty_node_table,
    empty_rel_table,
    typed_node_table,
    typed_rel_table,
)
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm


def node_type(label: str) -> str:
    """HeteroData node type of a schema label (``"Product"`` -> ``"product"``)."""
    return schema.label(label).lower()


def edge_type(rel: str) -> tuple[str, str, str]:
    """HeteroData edge type of a schema relationship type."""
    spec = schema.rel_spec(rel)
    return (node_type(spec.src), rel.lower(), node_type(spec.dst))


@dataclass
class GraphSnapshot:
    """HeteroData + id maps + product text, as exported from a store.

    ``data[node_type].num_nodes`` matches ``id_maps[node_type]``. Interaction edges carry
    ``edge_time`` (unix seconds, -1 when unknown), ``edge_value`` and ``edge_weight``;
    ``('entity', 'related', 'entity')`` carries ``edge_relation`` indexing ``relations``.
    """

    data: HeteroData
    id_maps: dict[str, IdMap]
    #: Product node table (schema columns), row i = id_maps["product"].ids[i].
    products: pd.DataFrame
    relations: list[str] = field(default_factory=list)

    def interactions(self) -> pd.DataFrame:
        """All user->product events in one frame: user and product (row indices), rel, time,
        value, weight."""
        frames = []
        for rel in schema.INTERACTIONS:
            et = edge_type(rel)
            if et not in self.data.edge_types:
                continue
            store = self.data[et]
            frames.append(
                pd.DataFrame(
                    {
                        "user": store.edge_index[0].numpy(),
                        "product": store.edge_index[1].numpy(),
                        "rel": rel,
                        "time": store.edge_time.numpy(),
                        "value": store.edge_value.numpy(),
                        "weight": store.edge_weight.numpy(),
                    }
                )
            )
        if not frames:
            return pd.DataFrame(columns=["user", "product", "rel", "time", "value", "weight"])
        return pd.concat(frames, ignore_index=True)

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.data.to_dict(), folder / "hetero.pt")
        for name, ids in self.id_maps.items():
            ids.save(folder / f"ids_{name}.json")
        self.products.to_parquet(folder / "products.parquet", index=False)
        (folder / "relations.json").write_text(json.dumps(self.relations))

    @classmethod
    def load(cls, folder: str | Path) -> GraphSnapshot:
        folder = Path(folder)
        if not (folder / "hetero.pt").exists():
            raise InputError("not a snapshot folder (no hetero.pt)", file=str(folder))
        data = HeteroData.from_dict(torch.load(folder / "hetero.pt", weights_only=False))
        id_maps = {
            p.stem.removeprefix("ids_"): IdMap.load(p) for p in sorted(folder.glob("ids_*.json"))
        }
        products = typed_node_table(schema.PRODUCT, pd.read_parquet(folder / "products.parquet"))
        relations = json.loads((folder / "relations.json").read_text())
        return cls(data, id_maps, products, relations)


def _read_all(batches, bar: tqdm, name: str) -> pd.DataFrame:
    bar.set_postfix_str(name)
    frames = list(batches)
    bar.update()
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def build_snapshot(
    store: GraphStore, *, batch_size: int = 50_000, progress: bool = True
) -> GraphSnapshot:
    """Export ``store`` into a :class:`GraphSnapshot`, streaming every table in batches."""
    data = HeteroData()
    id_maps: dict[str, IdMap] = {}
    node_tables: dict[str, pd.DataFrame] = {}
    # One bar over every table (not one per table: most types are empty in most graphs).
    bar = tqdm(total=len(schema.NODE_LABELS) + len(schema.RELATIONSHIPS), desc="snapshot",
               unit="table", disable=not progress, leave=False)
    for label in schema.NODE_LABELS:
        frame = _read_all(store.iter_nodes(label, batch_size=batch_size), bar, label)
        frame = typed_node_table(label, frame) if len(frame) else empty_node_table(label)
        frame = frame.sort_values(schema.NODE_KEY, kind="stable").reset_index(drop=True)
        nt = node_type(label)
        id_maps[nt] = IdMap(nt, frame[schema.NODE_KEY].tolist())
        data[nt].num_nodes = len(frame)
        node_tables[label] = frame
    relations: list[str] = []
    for rel in schema.RELATIONSHIPS:
        frame = _read_all(store.iter_rels(rel, batch_size=batch_size), bar, rel)
        frame = typed_rel_table(rel, frame) if len(frame) else empty_rel_table(rel)
        if not len(frame):
            continue
        spec = schema.RELATIONSHIPS[rel]
        frame = frame.sort_values(["src", "dst", *spec.key], kind="stable").reset_index(drop=True)
        src = id_maps[node_type(spec.src)].index_of(frame["src"])
        dst = id_maps[node_type(spec.dst)].index_of(frame["dst"])
        store_ = data[edge_type(rel)]
        store_.edge_index = torch.as_tensor(np.stack([src, dst]), dtype=torch.long)
        if rel in schema.INTERACTIONS:
            store_.edge_time = torch.as_tensor(frame["timestamp"].fillna(-1).to_numpy("int64"))
            store_.edge_value = torch.as_tensor(frame["value"].fillna(1.0).to_numpy("float32"))
            store_.edge_weight = torch.as_tensor(frame["weight"].fillna(1.0).to_numpy("float32"))
        elif rel == schema.RELATED:
            relations = sorted(frame["relation"].dropna().unique().tolist())
            codes = pd.Categorical(frame["relation"], categories=relations).codes
            store_.edge_relation = torch.as_tensor(np.asarray(codes, dtype=np.int64))
    bar.close()
    return GraphSnapshot(data, id_maps, node_tables[schema.PRODUCT], relations)


def snapshot_from_tables(tables: GraphTables) -> GraphSnapshot:
    """Snapshot of freshly read ``tables``, through a temporary embedded store: the same
    validation, merge and export path as a real ingest (for benchmarks, tests, notebooks)."""
    from kgrec.kg.store.local import LocalStore  # the store module imports this one

    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(tmp)
        store.write(tables, progress=False)
        return build_snapshot(store, progress=False)
