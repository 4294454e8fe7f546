"""What ``train.kg_every`` and ``train.kg_hops`` cost in quality: the GAT trained to early
stopping with the knowledge-graph summaries recomputed every step (1, the default) or every
4 / 8 steps, and with ``--hops`` rounds of attention over the knowledge graph.

Every row trains the ``TrainSettings`` defaults (only ``kg_every`` and ``kg_hops`` change) on
the temporal
split with MiniLM text features and reports the best validation and the test NDCG@20, the
epochs and the seconds. Quality does not depend on the machine's load (one seed gives one
result); the seconds do, so the load average is recorded with each row. ``--seeds`` repeats
each row per seed; ``--baseline REV`` also trains an earlier revision's GAT (its own
defaults, in a git worktree) on the same data, text and seeds, for quality before and after.

    .venv/bin/python benchmarks/kg_every.py --dataset ml-100k --every 1 4 8
    .venv/bin/python benchmarks/kg_every.py --every 1 --hops 1 2 --seeds 2020 2021 2022 \
        --out benchmarks/results/kg_hops.json
    .venv/bin/python benchmarks/kg_every.py --dataset scientific --every 1 \
        --seeds 2020 2021 2022 2023 2024 --baseline c67c0b3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

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
    run_at_revision,
    text_vectors,
    train_to_convergence,
    worktree,
    write_json,
)
from kgrec.gnn.split import make_split  # noqa: E402
from kgrec.settings import TrainSettings  # noqa: E402


def one_row(dataset: str, every: int, hops: int, seed: int,
            threads: int | None) -> dict[str, Any]:
    snapshot = load_dataset(dataset)
    settings = TrainSettings(model="gat", kg_every=every, kg_hops=hops, seed=seed,
                             device="cpu", threads=threads)
    return {"dataset": dataset, "code": "this", "kg_every": every, "kg_hops": hops, "seed": seed,
            **train_to_convergence(snapshot, make_split(snapshot), settings,
                                   text_vectors(snapshot))}


#: An earlier revision's GAT with its own defaults, on this run's split, text and seed.
BASELINE = """
import json, os, sys, time, torch
from kgrec.gnn.metrics import evaluate_ranking
from kgrec.gnn.split import make_split
from kgrec.gnn.train import train_model
try:
    from kgrec.settings import TrainSettings
except ImportError:  # a revision before kgrec.settings
    from kgrec.gnn.train import TrainSettings
from kgrec.kg.snapshot import GraphSnapshot
snapshot = GraphSnapshot.load(sys.argv[1])
split = make_split(snapshot)
text = torch.load(sys.argv[2])
settings = TrainSettings(model="gat", seed=int(sys.argv[3]), device="cpu")
load, start = os.getloadavg()[0], time.perf_counter()
result = train_model(snapshot, split, settings, product_features=text, progress=False)
seconds = time.perf_counter() - start
test = evaluate_ranking(result.score, split, stage="test", k=20,
                        slices=("overall",))["overall"]["ndcg@20"]
valid = max(h["valid"]["ndcg@20"] for h in result.history if "valid" in h)
print(json.dumps({"valid_ndcg@20": valid, "test_ndcg@20": test, "epochs": len(result.history),
                  "best_epoch": result.best_epoch, "stop_reason": result.stop_reason,
                  "seconds": seconds, "threads": torch.get_num_threads(),
                  "load_avg_1m_before": load}))
"""


def baseline_row(dataset: str, rev: str, seed: int) -> dict[str, Any]:
    """The GAT of revision ``rev`` (kg_every did not exist before: every step) on ``dataset``."""
    tree = worktree(rev)
    snapshot = load_dataset(dataset)
    folder = ROOT / ".kgrec" / "bench" / f"{dataset}-kg-every"
    snapshot.save(folder / "snapshot")
    torch.save(text_vectors(snapshot), folder / "text.pt")
    run = run_at_revision(tree, BASELINE, str(folder / "snapshot"), str(folder / "text.pt"),
                          str(seed))
    return {"dataset": dataset, "code": rev, "kg_every": 1, "seed": seed, **run}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=DATASETS, nargs="+", default=list(DATASETS))
    p.add_argument("--every", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--hops", type=int, nargs="+", default=[TrainSettings().kg_hops],
                   help="kg_hops values (default: the settings' default)")
    p.add_argument("--seeds", type=int, nargs="+", default=[TrainSettings().seed])
    p.add_argument("--baseline", metavar="REV", help="also train this earlier revision's GAT "
                   "(a git worktree) on each dataset and seed, e.g. c67c0b3")
    p.add_argument("--threads", type=int, help="torch threads (default: the CPUs available)")
    p.add_argument("--out", type=Path, default=RESULTS / "kg_every.json")
    args = p.parse_args(argv)
    payload: dict[str, Any] = {"benchmark": "kg_every", "command": command(),
                               "machine": machine(), "date": now(), "rows": []}
    for dataset in args.dataset:
        for seed in args.seeds:
            rows = [one_row(dataset, every, hops, seed, args.threads)
                    for every in args.every for hops in args.hops]
            if args.baseline:
                rows.append(baseline_row(dataset, args.baseline, seed))
            for row in rows:
                payload["rows"].append(row)
                print(json.dumps(row), flush=True)
            write_json(args.out, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
