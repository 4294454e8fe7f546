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
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kgrec.gnn.split import make_split  # noqa: E402
from kgrec.gnn.train import TrainSettings  # noqa: E402

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

#: The ablation: today's GAT (ids, BPR), the loss alone, the text-native inputs with each
#: loss, the id residual back on, and LightGCN with the softmax loss (what the loss gives
#: without text).
ROWS = (
    "model=gat",
    "model=gat,loss=softmax",
    "model=gat,loss=softmax,item_input=text,user_input=history",
    "model=gat,loss=bpr,item_input=text,user_input=history",
    "model=gat,loss=softmax,item_input=text+id,user_input=history",
    "model=lightgcn,loss=softmax",
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
    settings = TrainSettings(**{"seed": seed, "device": "cpu", "threads": threads,
                                **parse_row(spec)})
    return {"dataset": dataset, "row": spec, "seed": seed,
            **train_to_convergence(snapshot, make_split(snapshot), settings,
                                   text_vectors(snapshot), ("overall", "cold_start"))}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| dataset | row | valid NDCG@20 | test NDCG@20 | test cold start | epochs | s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['dataset']} | `{r['row']}` | {r['valid_ndcg@20']:.4f} | "
              f"{r['test_ndcg@20']:.4f} | {r['test_cold_start_ndcg@20']:.4f} | {r['epochs']} | "
              f"{r['seconds']:.0f} |" for r in rows]
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
