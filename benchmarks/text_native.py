"""The text-native GAT's ablation: what products and users start from, and the loss.

Every row trains to early stopping on the temporal split with MiniLM text vectors, from the
``TrainSettings`` defaults with the row's changes (``--rows`` names them; ``key=value``
pairs joined by commas), and reports the best validation and the test NDCG@20 (overall and
on the products without training events), the epochs and the seconds. Quality depends on
the seed alone; the seconds depend on the load, recorded with each row.

    .venv/bin/python benchmarks/text_native.py --dataset scientific ml-100k
    .venv/bin/python benchmarks/text_native.py --dataset scientific \
        --rows "loss=softmax" "loss=softmax,item_input=text,user_input=history"
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import (  # noqa: E402
    DATASETS,
    RESULTS,
    command,
    load_dataset,
    machine,
    now,
    text_vectors,
    train_to_convergence,
    write_json,
)
from kgrec.gnn.metrics import evaluate_ranking  # noqa: E402
from kgrec.gnn.models.kgat import history_matrix  # noqa: E402
from kgrec.gnn.split import item_cold_start_split, make_split  # noqa: E402
from kgrec.gnn.train import train_model  # noqa: E402
from kgrec.settings import TrainSettings  # noqa: E402

#: The ablation: today's GAT (ids, BPR), the loss alone, the text-native inputs with each
#: loss, the id residual back on, LightGCN with the softmax loss (what the loss gives
#: without text), and the text-native GAT with recency-weighted histories, its test users
#: scored from their history at test time (``test_history=current``: training plus
#: validation events, folded in without retraining; not a training setting), and EASE
#: (:func:`ease_row`) with either history; then the item cold-start split
#: (``split=item_cold_start``: 10% of the products held out with all their events, so the
#: whole test is products never seen in training), and users who arrive after training
#: (``new_users=0.1``, :func:`new_users_row`); last AlphaRec's design inside kgrec (no KG,
#: an MLP projector, 2 layers, softmax) and the best row without the knowledge graph.
ROWS = (
    "model=gat",
    "model=gat,loss=softmax",
    "model=gat,loss=softmax,item_input=text,user_input=history",
    "model=gat,loss=bpr,item_input=text,user_input=history",
    "model=gat,loss=softmax,item_input=text+id,user_input=history",
    "model=lightgcn,loss=softmax",
    "model=gat,loss=softmax,item_input=text,user_input=history,history_half_life=1",
    "model=gat,loss=softmax,item_input=text,user_input=history,history_half_life=1,"
    "test_history=current",
    "model=ease,reg=250", "model=ease,reg=250,test_history=current",
    "model=ease,reg=50", "model=ease,reg=50,test_history=current",
    "model=gat,split=item_cold_start",
    "model=gat,loss=softmax,item_input=text,user_input=history,split=item_cold_start",
    "model=gat,loss=softmax,item_input=text,user_input=history,history_half_life=1,"
    "split=item_cold_start",
    "model=gat,loss=softmax,item_input=text,user_input=history,history_half_life=1,"
    "new_users=0.1",
    "model=gat,kg_hops=0,item_input=text,user_input=history,text_hidden=192,layers=2,"
    "loss=softmax",
    "model=gat,loss=softmax,item_input=text,user_input=history,history_half_life=1,kg_hops=0",
    "model=gat,loss=softmax,item_input=text,user_input=history,history_half_life=1,kg_hops=0,"
    "test_history=current",
)


def parse_row(spec: str) -> dict[str, Any]:
    """``"loss=softmax,lr=0.001"`` -> ``{"loss": "softmax", "lr": 0.001}``."""
    values: dict[str, Any] = {}
    for part in spec.split(","):
        key, value = part.split("=", 1)
        try:
            values[key] = json.loads(value)
        except ValueError:
            values[key] = value
    return values


def one_row(dataset: str, spec: str, seed: int, threads: int | None) -> dict[str, Any]:
    snapshot = load_dataset(dataset)
    values = parse_row(spec)
    split = item_cold_start_split(snapshot) if values.pop("split", "") == "item_cold_start" \
        else make_split(snapshot)
    if values.get("model") == "ease":
        return {"dataset": dataset, "row": spec, "seed": seed, **ease_row(split, values)}
    if "new_users" in values:
        share = values.pop("new_users")
        settings = TrainSettings(**{"seed": seed, "device": "cpu", "threads": threads, **values})
        return {"dataset": dataset, "row": spec, "seed": seed,
                **new_users_row(snapshot, split, settings, share, seed)}
    test_users = _current_history(split) if values.pop("test_history", "train") == "current" \
        else None
    settings = TrainSettings(**{"seed": seed, "device": "cpu", "threads": threads, **values})
    return {"dataset": dataset, "row": spec, "seed": seed,
            **train_to_convergence(snapshot, split, settings, text_vectors(snapshot),
                                   ("overall", "cold_start"), test_users)}


def ease_row(split, values: dict[str, Any]) -> dict[str, Any]:
    """EASE (Steck, WWW 2019) in its closed form, ``B = I - P / diag(P)`` with ``P = (X^T X
    + reg I)^-1`` over the binary training matrix (RecBole's EASE, re-derived here only to
    score a history other than the training one): ``reg`` its L2 weight (250), users ranked
    by ``x_u B`` with ``x_u`` their training history, or with ``test_history=current`` their
    history at test time, like the text-native GAT's row. The dense items x items inverse
    is EASE's own cost (O(products^3)): fine at these sizes, not at a million products."""
    load, start = os.getloadavg()[0], time.perf_counter()
    X = history_matrix(split.train, split.num_users, split.num_items).to_dense().gt(0).double()
    P = torch.linalg.inv(X.t() @ X + values.get("reg", 250.0) * torch.eye(split.num_items,
                                                                        dtype=torch.float64))
    B = (-P / P.diagonal()).float()
    B.fill_diagonal_(0.0)
    seconds = time.perf_counter() - start
    current = values.get("test_history", "train") == "current"
    test_x = history_matrix(split.history("test"), split.num_users, split.num_items) \
        .to_dense().gt(0).float() if current else X.float()
    metrics = {}
    for stage, x in (("valid", X.float()), ("test", test_x)):
        metrics[stage] = evaluate_ranking(lambda rows, x=x: x[rows] @ B, split, stage=stage,
                                          k=20, slices=("overall", "cold_start"))
    return {"valid_ndcg@20": metrics["valid"]["overall"]["ndcg@20"],
            "test_ndcg@20": metrics["test"]["overall"]["ndcg@20"],
            "test_cold_start_ndcg@20": metrics["test"]["cold_start"]["ndcg@20"],
            "epochs": 0, "best_epoch": 0, "stop_reason": "closed form", "seconds": seconds,
            "threads": torch.get_num_threads(), "load_avg_1m_before": load}


def new_users_row(snapshot, split, settings: TrainSettings, share: float,
                  seed: int) -> dict[str, Any]:
    """Users who arrive after training: a random ``share`` of the users is left out of
    training altogether (their events and validation pairs), then folded in from their
    training events (:meth:`KGATModel.embed_users`) and ranked on their test pairs, beside
    the same users scored by the model trained with them (the usual run)."""
    rng = np.random.default_rng(seed)
    new = rng.choice(split.num_users, int(share * split.num_users), replace=False)
    known = dataclasses.replace(split, train=split.train[~split.train["user"].isin(new)],
                                valid=split.valid[~split.valid["user"].isin(new)])
    only_new = dataclasses.replace(split, test=split.test[split.test["user"].isin(new)])
    text = text_vectors(snapshot)
    start = time.perf_counter()
    without = train_model(snapshot, known, settings, product_features=text, progress=False)
    users = without.model.embed_users(history_matrix(  # type: ignore[operator]
        split.train, split.num_users, split.num_items, settings.history_half_life))
    items = without.product_embeddings.tensor
    folded = evaluate_ranking(lambda rows: users[rows] @ items.t(), only_new, k=20,
                              slices=("overall",))["overall"]["ndcg@20"]
    with_them = train_model(snapshot, split, settings, product_features=text, progress=False)
    retrained = evaluate_ranking(with_them.score, only_new, k=20,
                                 slices=("overall",))["overall"]["ndcg@20"]
    return {"new_users": len(new), "new_users_test_pairs": len(only_new.test),
            "folded_in_test_ndcg@20": folded, "retrained_test_ndcg@20": retrained,
            "ratio": folded / retrained, "seconds": time.perf_counter() - start,
            "threads": torch.get_num_threads(), "load_avg_1m_before": os.getloadavg()[0]}


def _current_history(split):
    """Test users folded in from their history at test time (training plus validation
    events on a time-ordered split), the trained model unchanged."""
    def users(result) -> torch.Tensor:
        history = history_matrix(split.history("test"), split.num_users, split.num_items,
                                 result.settings.history_half_life)
        return result.model.embed_users(history)
    return users


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| dataset | row | valid NDCG@20 | test NDCG@20 | test cold start | epochs | s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['dataset']} | `{r['row']}` | {r['valid_ndcg@20']:.4f} | "
              f"{r['test_ndcg@20']:.4f} | {r['test_cold_start_ndcg@20']:.4f} | {r['epochs']} | "
              f"{r['seconds']:.0f} |" for r in rows if "new_users" not in r]
    new = [r for r in rows if "new_users" in r]
    if new:
        lines += ["", "| dataset | row | new users | folded in | retrained with them | ratio |",
                  "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['dataset']} | `{r['row']}` | {r['new_users']} | "
                  f"{r['folded_in_test_ndcg@20']:.4f} | {r['retrained_test_ndcg@20']:.4f} | "
                  f"{r['ratio']:.2f} |" for r in new]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=DATASETS, nargs="+", default=list(DATASETS))
    p.add_argument("--rows", nargs="+", default=list(ROWS),
                   help="training settings of each row, key=value pairs joined by commas")
    p.add_argument("--seed", type=int, default=TrainSettings().seed)
    p.add_argument("--threads", type=int, help="torch threads (default: the CPUs available)")
    p.add_argument("--out", type=Path, default=RESULTS / "text_native.json")
    args = p.parse_args(argv)
    payload: dict[str, Any] = {"benchmark": "text_native", "command": command(),
                               "machine": machine(), "date": now(), "rows": []}
    for dataset in args.dataset:
        for spec in args.rows:
            row = one_row(dataset, spec, args.seed, args.threads)
            payload["rows"].append(row)
            print(json.dumps(row), flush=True)
            write_json(args.out, payload)
    print(table(payload["rows"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
