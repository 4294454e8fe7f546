"""GraphSnapshot: the bulk export of a store that gnn and fusion read.

Built the same way from every store, so Neo4j and the embedded store give identical
snapshots. Node types are the lower-cased labels; edge types are
``(src_type, rel_type.lower(), dst_type)``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from kgrec.errors import InputError
from kgrec.files import (
    atomic_write,
    checksums,
    read_artefact,
    seal,
    unseal,
    verify,
    write_text,
)
from kgrec.ids import IdMap
from kgrec.kg import schema
from kgrec.kg.store.base import GraphStore
from kgrec.kg.tables import (
    GraphTables,
    empty_node_table,
    empty_rel_table,
    typed_node_table,
    typed_rel_table,
)


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

    def id_hash(self) -> str:
        """SHA-256 of every node type's ids in row order: what ties a trained run to the
        snapshot it was trained on (two snapshots of the same size with two user ids
        swapped differ here)."""
        digest = hashlib.sha256()
        for name in sorted(self.id_maps):
            digest.update(json.dumps([name, list(self.id_maps[name].ids)]).encode())
        return digest.hexdigest()

    def save(self, folder: str | Path) -> None:
        """Write the snapshot into ``folder``, each file atomically, and last
        ``snapshot.json`` with their SHA-256 and the :meth:`id_hash` (sealed)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        names = ["hetero.pt", *(f"ids_{name}.json" for name in self.id_maps),
                 "products.parquet", "relations.json"]
        atomic_write(folder / "hetero.pt", lambda p: torch.save(self.data.to_dict(), p))
        for name, ids in self.id_maps.items():
            atomic_write(folder / f"ids_{name}.json", ids.save)
        atomic_write(folder / "products.parquet",
                     lambda p: self.products.to_parquet(p, index=False))
        write_text(folder / "relations.json", json.dumps(self.relations))
        meta = {"checksums": checksums(folder, names), "id_hash": self.id_hash()}
        write_text(folder / MANIFEST, json.dumps(seal(meta), indent=1))

    @classmethod
    def load(cls, folder: str | Path) -> GraphSnapshot:
        """A folder of :meth:`save`. Raises :class:`ModelError` naming the file when one is
        missing, damaged or changed since it was saved (checked against ``snapshot.json``;
        snapshots saved before it existed are read unchecked)."""
        folder = Path(folder)
        if not (folder / "hetero.pt").exists():
            raise InputError("not a snapshot folder (no hetero.pt)", file=str(folder))
        id_files = sorted(folder.glob("ids_*.json"))
        if (folder / MANIFEST).exists():
            meta = unseal(read_artefact(folder / MANIFEST, lambda p: json.loads(p.read_text()),
                                        SNAPSHOT_AGAIN), folder / MANIFEST, SNAPSHOT_AGAIN)
            verify(folder, meta["checksums"], SNAPSHOT_AGAIN)
            id_files = [folder / n for n in sorted(meta["checksums"]) if n.startswith("ids_")]
        data = HeteroData.from_dict(read_artefact(
            folder / "hetero.pt", lambda p: torch.load(p, weights_only=False), SNAPSHOT_AGAIN))
        id_maps = {p.stem.removeprefix("ids_"): read_artefact(p, IdMap.load, SNAPSHOT_AGAIN)
                   for p in id_files}
        products = typed_node_table(schema.PRODUCT, read_artefact(
            folder / "products.parquet", pd.read_parquet, SNAPSHOT_AGAIN))
        relations = read_artefact(folder / "relations.json",
                                  lambda p: json.loads(p.read_text()), SNAPSHOT_AGAIN)
        return cls(data, id_maps, products, relations)


#: The manifest of a saved snapshot (checksums and id hash).
MANIFEST = "snapshot.json"
#: What rebuilds a damaged snapshot folder.
SNAPSHOT_AGAIN = "export it again with `kgrec graph snapshot` (or rerun `kgrec run`)"


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
