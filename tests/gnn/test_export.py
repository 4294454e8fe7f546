"""gnn.export: a split + the snapshot's knowledge graph as a RecBole benchmark dataset."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch_geometric.data import HeteroData

from kgrec.gnn.export import export_recbole_dataset
from kgrec.gnn.split import Split, make_split
from kgrec.ids import IdMap
from kgrec.kg import schema
from kgrec.kg.snapshot import GraphSnapshot, edge_type, node_type
from kgrec.kg.tables import empty_node_table

IDS = {
    "user": ["u0", "u1", "u2"],
    "product": ["A", "B", "C", "D"],
    "category": ["Tools", "Tools > Saws"],
    "brand": ["Acme"],
    "entity": ["m.1", "m.2", "m.3"],
}


def _edges(data: HeteroData, rel: str, pairs: list[tuple[int, int]]) -> None:
    data[edge_type(rel)].edge_index = torch.tensor(pairs, dtype=torch.long).t().contiguous()


def catalogue(entity_ids: list[str] | None = None) -> GraphSnapshot:
    """4 products: A is entity m.1 (one link each way), B links to two entities, C has only
    a brand, D has no edge at all; a two-level category tree, one brand, two KG relations."""
    ids = dict(IDS, entity=entity_ids or IDS["entity"])
    data = HeteroData()
    id_maps = {}
    for label in schema.NODE_LABELS:
        nt = node_type(label)
        id_maps[nt] = IdMap(nt, ids[nt])
        data[nt].num_nodes = len(ids[nt])
    store = data[edge_type(schema.RATED)]
    store.edge_index = torch.tensor([[0, 0, 1, 2], [0, 1, 2, 3]])
    store.edge_time = torch.tensor([1, 2, 3, 4])
    store.edge_value = torch.tensor([5.0, 4.0, 3.0, 2.0])
    store.edge_weight = torch.ones(4)
    _edges(data, schema.IN_CATEGORY, [(0, 1), (1, 0)])
    _edges(data, schema.SUBCATEGORY_OF, [(1, 0)])
    _edges(data, schema.HAS_BRAND, [(0, 0), (2, 0)])
    _edges(data, schema.ALSO_BOUGHT, [(0, 1)])
    _edges(data, schema.LINKED_TO, [(0, 0), (1, 1), (1, 2)])
    _edges(data, schema.RELATED, [(0, 1), (1, 2)])
    data[edge_type(schema.RELATED)].edge_relation = torch.tensor([1, 0])
    products = pd.concat(
        [empty_node_table(schema.PRODUCT), pd.DataFrame({"id": ids["product"]})]
    ).astype(empty_node_table(schema.PRODUCT).dtypes.to_dict()).reset_index(drop=True)
    return GraphSnapshot(data, id_maps, products, ["film.actor", "genre"])


def given_split() -> Split:
    def frame(rows: list[tuple[int, int, float, int]]) -> pd.DataFrame:
        out = pd.DataFrame(rows, columns=["user", "product", "value", "time"])
        return out.assign(weight=1.0)[["user", "product", "weight", "value", "time"]]

    return Split(frame([(0, 0, 5.0, 1), (1, 2, 3.0, 3)]), frame([(0, 1, 4.0, 2)]),
                 frame([(2, 3, 2.0, 4)]), num_users=3, num_items=4, kind="given")


def test_export_writes_exact_files(tmp_path: Path) -> None:
    out = export_recbole_dataset(given_split(), catalogue(), tmp_path / "tiny", "tiny")
    folder = tmp_path / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == [
        "tiny.kg", "tiny.link", "tiny.test.inter", "tiny.train.inter", "tiny.valid.inter"]
    assert (folder / "tiny.train.inter").read_text() == (
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "u0\tA\t5.0\t1.0\nu1\tC\t3.0\t3.0\n")
    assert (folder / "tiny.valid.inter").read_text().splitlines()[1:] == ["u0\tB\t4.0\t2.0"]
    assert (folder / "tiny.test.inter").read_text().splitlines()[1:] == ["u2\tD\t2.0\t4.0"]
    assert (folder / "tiny.kg").read_text().splitlines() == [
        "head_id:token\trelation_id:token\ttail_id:token",
        "m.1\tin_category\tc:Tools > Saws",
        "p:B\tin_category\tc:Tools",
        "c:Tools > Saws\tsubcategory_of\tc:Tools",
        "m.1\thas_brand\tb:Acme",
        "p:C\thas_brand\tb:Acme",
        "m.1\talso_bought\tp:B",
        "p:B\tlinked_to\tm.2",
        "p:B\tlinked_to\tm.3",
        "m.1\tgenre\tm.2",
        "m.2\tfilm.actor\tm.3",
        "p:D\tself\tp:D",
    ]
    assert (folder / "tiny.link").read_text().splitlines() == [
        "item_id:token\tentity_id:token", "A\tm.1", "B\tp:B", "C\tp:C", "D\tp:D"]
    assert out.triples == 11
    assert out.linked_products == 1
    assert out.self_loops == 1
    assert out.relations == {"also_bought": 1, "film.actor": 1, "genre": 1, "has_brand": 2,
                             "in_category": 2, "linked_to": 2, "self": 1, "subcategory_of": 1}
    assert set(out.paths) == {"train", "valid", "test", "kg", "link"}


def test_export_reads_back_with_pandas_defaults(tmp_path: Path) -> None:
    """RecBole reads atomic files with pandas' default parsing: every token survives."""
    export_recbole_dataset(given_split(), catalogue(), tmp_path, "tiny")
    kg = pd.read_csv(tmp_path / "tiny.kg", sep="\t", dtype=str)
    assert not kg.isna().any().any()
    assert kg.shape == (11, 3)
    assert set(kg["tail_id:token"]) >= {"c:Tools > Saws", "b:Acme"}


def test_export_refuses_colliding_and_missing_tokens(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="collides"):
        export_recbole_dataset(given_split(), catalogue(["m.1", "c:Tools", "m.3"]), tmp_path, "x")
    with pytest.raises(ValueError, match="missing value"):
        export_recbole_dataset(given_split(), catalogue(["m.1", "NA", "m.3"]), tmp_path, "x")


def test_export_ml100k_is_the_original_kg_plus_genres(ml100k_snapshot, tmp_path: Path) -> None:
    from kgrec.kg.extract.recbole import fetch_ml100k

    split = make_split(ml100k_snapshot)
    out = export_recbole_dataset(split, ml100k_snapshot, tmp_path, "ml")
    assert out.triples == 91_631 + 2_893
    assert out.linked_products == 1_598
    assert out.self_loops == 0
    assert out.relations["in_category"] == 2_893
    assert len(out.relations) == 24 + 1
    for stage in ("train", "valid", "test"):
        rows = pd.read_csv(out.paths[stage], sep="\t", dtype=str)
        assert len(rows) == len(split.frame(stage))
    kg = pd.read_csv(out.paths["kg"], sep="\t", dtype=str)
    link = pd.read_csv(out.paths["link"], sep="\t", dtype=str)
    assert len(link) == 1_682
    with zipfile.ZipFile(fetch_ml100k()) as wheel:
        prefix = "recbole/dataset_example/ml-100k/ml-100k"
        orig_kg = pd.read_csv(io.BytesIO(wheel.read(prefix + ".kg")), sep="\t", dtype=str)
        orig_link = pd.read_csv(io.BytesIO(wheel.read(prefix + ".link")), sep="\t", dtype=str)
    ours = kg[kg["relation_id:token"] != "in_category"]
    assert set(map(tuple, ours.to_numpy())) == set(map(tuple, orig_kg.to_numpy()))
    linked = link[~link["entity_id:token"].str.startswith("p:")]
    assert set(map(tuple, linked.to_numpy())) == set(map(tuple, orig_link.to_numpy()))
    genres = kg[kg["relation_id:token"] == "in_category"]
    assert genres["tail_id:token"].str.startswith("c:").all()
