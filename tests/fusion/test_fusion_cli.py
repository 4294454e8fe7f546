"""kgrec fuse / score / search end to end on a small graph in the embedded store."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from kgrec.cli import main
from kgrec.fusion.encoder import native_bfloat16
from kgrec.gnn.split import Split, make_split
from kgrec.gnn.train import train_model
from kgrec.kg import schema
from kgrec.kg.snapshot import GraphSnapshot, build_snapshot
from kgrec.kg.store.local import LocalStore
from kgrec.kg.tables import GraphTables, typed_node_table, typed_rel_table
from kgrec.settings import TrainSettings


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, themed_tables):
    root = tmp_path_factory.mktemp("fusion-cli")
    tables = themed_tables
    store = LocalStore(root / "store")
    store.write(tables, progress=False)
    snapshot = build_snapshot(store, progress=False)
    snapshot.save(root / "snapshot")
    split = make_split(snapshot)
    result = train_model(snapshot, split, TrainSettings(model="mf", epochs=3, dim=8,
                                                        eval_every=100, device="cpu"),
                         progress=False)
    result.save(root / "run")
    split.save(root / "run")
    snapshot.save(root / "run" / "snapshot")  # a self-contained run, as `kgrec train` writes
    return root


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KGREC_FUSION_CACHE_DIR", str(tmp_path / "text-cache"))


def _common(root) -> list[str]:
    return ["--run", str(root / "run"), "--snapshot", str(root / "snapshot"),
            "--store-path", str(root / "store"), "--device", "cpu", "--no-progress"]


def test_fuse_score_write_back_and_search(workdir, capsys) -> None:
    assert main(["fuse", *_common(workdir), "--tower-epochs", "3"]) == 0
    meta = json.loads((workdir / "run" / "fusion" / "fusion.json").read_text())
    assert meta["text_sides"] == ["profile", "tower"]
    # The arithmetic the vectors were computed in: "auto" resolved for this CPU.
    assert meta["text_precision"] == ("bfloat16" if native_bfloat16(torch.device("cpu"))
                                      else "float32")
    for job in ("full", "tail"):
        fit = meta["jobs"][job]
        assert fit["text_side"] in ("profile", "tower", "none")
        assert set(fit["by_side"]) == {"profile", "tower"}  # both sides were compared
        assert fit["valid_metric"] >= fit["gnn_only"]
        assert 0.0 <= fit["alpha"]["a_head"] <= 1.0 and 0.0 <= fit["alpha"]["a_cold"] <= 1.0
        # Every validation user fits in the default sample: no sampling error.
        measured = fit["validation"]
        assert measured["fit_users"] == measured["stage_users"] > 0
        assert measured["sampling_error"] == 0.0 and 0.0 <= measured["exact_share"] <= 1.0
    out_text = capsys.readouterr().out
    assert "users, +/- 0.0000" in out_text and "exact in the pool" in out_text
    assert "full: " in out_text and "tail: " in out_text and "artefacts in" in out_text

    capsys.readouterr()
    assert main(["evaluate", str(workdir / "run"), "--no-progress"]) == 0
    table = capsys.readouterr().out
    rows = {line.split()[0] for line in table.splitlines()[2:] if line.strip()}
    assert {"mf", "mf+fusion", "text:profile", "text:tower"} <= rows
    results = pd.read_csv(workdir / "run" / "results.csv")
    fused = results[(results["model"] == "mf+fusion") & (results["slice"] == "tail_candidates")]
    assert len(fused) == 1 and 0.0 <= float(fused["ndcg@20"].iloc[0]) <= 1.0

    out = workdir / "scores.parquet"
    args = ["score", *_common(workdir), "--items", "all", "--top-k", "3", "--out", str(out),
            "--chunk-size", "7", "--write-back"]
    assert main(args) == 0
    frame = pd.read_parquet(out)
    assert len(frame) == 30 * 3
    assert frame.groupby("user_id")["rank"].apply(list).map(lambda r: r == [1, 2, 3]).all()
    seen = pd.concat(LocalStore(workdir / "store").iter_rels(schema.RATED))
    pairs = set(zip(seen["src"], seen["dst"], strict=True))
    assert not any((u, p) in pairs for u, p in zip(frame["user_id"], frame["product_id"],
                                                   strict=True))
    assert frame[["score", "score_gnn", "score_text"]].notna().all().all()
    assert LocalStore(workdir / "store").counts()[schema.RECOMMENDED] == 90
    assert main(args) == 0  # same model version: replaced, not added
    assert LocalStore(workdir / "store").counts()[schema.RECOMMENDED] == 90

    item_out = workdir / "per_item.parquet"
    assert main(["score", *_common(workdir), "--items", "all", "--per", "item", "--top-k", "2",
                 "--out", str(item_out)]) == 0
    per_item = pd.read_parquet(item_out)
    assert len(per_item) == 40 * 2 and set(per_item["per"]) == {"item"}

    capsys.readouterr()
    assert main(["search", *_common(workdir), "--user", "u00", "--alpha", "0", "--top-k", "4",
                 "--include-seen", "espresso coffee beans"]) == 0
    lines = capsys.readouterr().out.splitlines()
    top_titles = [line for line in lines[1:5]]
    assert all("espresso coffee beans" in line for line in top_titles)


def test_score_excludes_what_the_split_says(workdir) -> None:
    split = Split.load(workdir / "run")
    out = workdir / "evaluable.parquet"
    assert main(["score", *_common(workdir), "--items", "all", "--top-k", "10",
                 "--exclude", "train+valid", "--out", str(out)]) == 0
    frame = pd.read_parquet(out)
    snap = GraphSnapshot.load(workdir / "snapshot")
    uid, pid = snap.id_maps["user"], snap.id_maps["product"]

    def pairs(stage: str) -> set[tuple[str, str]]:
        f = split.frame(stage)
        return set(zip(uid.ids_of(f["user"].to_numpy()), pid.ids_of(f["product"].to_numpy()),
                       strict=True))

    recommended = set(zip(frame["user_id"], frame["product_id"], strict=True))
    assert not recommended & (pairs("train") | pairs("valid"))
    assert recommended & pairs("test")  # test pairs can be recommended, so evaluated


def test_catalogue_without_text_fuses_graph_only(tmp_path, capsys) -> None:
    products = pd.DataFrame({"id": [f"p{i}" for i in range(12)]})  # ids only
    rows = [(f"u{u}", f"p{(u + j) % 12}", 1000 + j, 5.0, 1.0) for u in range(8)
            for j in range(6)]
    tables = GraphTables()
    tables.nodes[schema.PRODUCT] = typed_node_table(schema.PRODUCT, products)
    tables.nodes[schema.USER] = typed_node_table(
        schema.USER, pd.DataFrame({"id": [f"u{u}" for u in range(8)]}))
    tables.rels[schema.RATED] = typed_rel_table(
        schema.RATED, pd.DataFrame(rows, columns=["src", "dst", "timestamp", "value", "weight"]))
    store = LocalStore(tmp_path / "store")
    store.write(tables, progress=False)
    snapshot = build_snapshot(store, progress=False)
    snapshot.save(tmp_path / "snapshot")
    split = make_split(snapshot)
    train_model(snapshot, split, TrainSettings(model="mf", epochs=1, dim=4, eval_every=100,
                                               device="cpu"), progress=False).save(tmp_path / "run")
    split.save(tmp_path / "run")
    assert main(["fuse", *_common(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "the catalogue carries no product text" in out and "nothing encoded" in out
    meta = json.loads((tmp_path / "run" / "fusion" / "fusion.json").read_text())
    assert meta["text_sides"] == [] and meta["text_model"] is meta["text_precision"] is None
    assert {job["text_side"] for job in meta["jobs"].values()} == {"none"}
    assert not (tmp_path / "run" / "fusion" / "raw_text_products.pt").exists()
    assert main(["score", *_common(tmp_path), "--items", "all", "--top-k", "2", "--out",
                 str(tmp_path / "s.parquet")]) == 0
    assert len(pd.read_parquet(tmp_path / "s.parquet")) == 8 * 2


def test_score_rejects_unknown_item_file(workdir, tmp_path, capsys) -> None:
    bad = tmp_path / "ids.txt"
    bad.write_text("p01\nzzz\n")
    assert main(["score", *_common(workdir), "--items", str(bad), "--out",
                 str(tmp_path / "x.parquet")]) == 1
    assert "row 2" in capsys.readouterr().err
