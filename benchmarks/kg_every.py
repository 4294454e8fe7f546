"""What ``train.kg_every`` costs in quality: the GAT trained to early stopping with the
knowledge-graph summaries recomputed every step (1, the default) or every 4 / 8 steps.

Every row trains the ``TrainSettings`` defaults (only ``kg_every`` changes) on the temporal
split with MiniLM text features and reports the best validation and the test NDCG@20, the
epochs and the seconds. Quality does not depend on the machine's load (one seed gives one
result); the seconds do, so the load average is recorded with each row.

    .venv/bin/python benchmarks/kg_every.py --dataset ml-100k --every 1 4 8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kgrec.fusion.text import TextEncoder, product_text  # noqa: E402
from kgrec.gnn.metrics import evaluate_ranking  # noqa: E402
from kgrec.gnn.split import make_split  # noqa: E402
from kgrec.gnn.train import TrainSettings, train_model  # noqa: E402

from benchmarks._common import (  # noqa: E402
    DATASETS,
    RESULTS,
    command,
    load_dataset,
    machine,
    now,
    write_json,
)


def one_row(dataset: str, every: int, threads: int | None) -> dict[str, Any]:
    snapshot = load_dataset(dataset)
    split = make_split(snapshot)
    encoder = TextEncoder(device="cpu", cache_dir=ROOT / ".kgrec" / "text-cache")
    text = encoder.encode(product_text(snapshot.products), progress=False)
    settings = TrainSettings(model="gat", kg_every=every, device="cpu", threads=threads)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    result = train_model(snapshot, split, settings, product_features=text, progress=False)
    seconds = time.perf_counter() - start
    test = evaluate_ranking(result.score, split, stage="test", k=20,
                            slices=("overall",))["overall"]["ndcg@20"]
    valid = max(h["valid"]["ndcg@20"] for h in result.history if "valid" in h)
    return {"dataset": dataset, "kg_every": every, "valid_ndcg@20": valid,
            "test_ndcg@20": test, "epochs": len(result.history), "best_epoch": result.best_epoch,
            "stop_reason": result.stop_reason, "seconds": seconds,
            "threads": torch.get_num_threads(), "load_avg_1m_before": load}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=DATASETS, nargs="+", default=list(DATASETS))
    p.add_argument("--every", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--threads", type=int, help="torch threads (default: the CPUs available)")
    p.add_argument("--out", type=Path, default=RESULTS / "kg_every.json")
    args = p.parse_args(argv)
    payload: dict[str, Any] = {"benchmark": "kg_every", "command": command(),
                               "machine": machine(), "date": now(), "rows": []}
    for dataset in args.dataset:
        for every in args.every:
            row = one_row(dataset, every, args.threads)
            payload["rows"].append(row)
            print(json.dumps(row), flush=True)
            write_json(args.out, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
