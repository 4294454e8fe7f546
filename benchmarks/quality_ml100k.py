"""Quality of the five gnn models on MovieLens-100K + its knowledge graph.

Each model is trained twice: on the per-user temporal split (slices ``overall``,
``long_tail``, ``cold_start``, and ``tail_candidates``: ranking restricted to long-tail
products) and on the item cold-start split (``item_cold_start``: 10% of products held out
with all their interactions; full ranking, the held-out products are the only positives).
Early stopping on validation NDCG@20; the test split is read once at the end.

    .venv/bin/python benchmarks/quality_ml100k.py

Rows are merged into ``benchmarks/results/quality_ml100k.json`` under ``models`` (rows of
other models, e.g. fusion's, are kept); the gnn settings and timings go under ``gnn``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS, command, machine, now, write_json  # noqa: E402
from gnn.data import item_cold_start_split, make_split  # noqa: E402
from gnn.metrics import evaluate_ranking, format_table, long_tail_items  # noqa: E402
from gnn.train import TrainSettings, train_model  # noqa: E402
from kg.snapshot import GraphSnapshot, snapshot_from_tables  # noqa: E402

MODELS = ("pop", "mf", "lightgcn", "gcn", "gat")
K = 20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated (default: all)")
    p.add_argument("--snapshot", type=Path, help="saved ml-100k snapshot (default: build it "
                   "from the recbole wheel through the embedded store)")
    p.add_argument("--epochs", type=int, default=100, help="maximum epochs (100)")
    p.add_argument("--max-minutes", type=float, default=4.0,
                   help="wall-time cap per model and split (4; CPU is shared)")
    p.add_argument("--batch-size", type=int, default=4096, help="pairs per step (4096)")
    p.add_argument("--lr", type=float, default=0.005, help="Adam learning rate (0.005)")
    p.add_argument("--eval-every", type=int, default=2, help="epochs between validations (2)")
    p.add_argument("--patience", type=int, default=4, help="evaluations without gain (4)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: shared machine)")
    p.add_argument("--out", type=Path, default=RESULTS / "quality_ml100k.json")
    return p.parse_args(argv)


def load_snapshot(folder: Path | None) -> GraphSnapshot:
    if folder is not None:
        return GraphSnapshot.load(folder)
    from kg.extract.recbole import read_recbole_ml100k

    return snapshot_from_tables(read_recbole_ml100k())


def settings_for(model: str, args: argparse.Namespace) -> TrainSettings:
    return TrainSettings(
        model=model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        eval_every=args.eval_every, patience=args.patience, max_minutes=args.max_minutes,
        layers=3 if model == "lightgcn" else 2, seed=2020,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started, host, t0 = now(), machine(), time.perf_counter()
    snapshot = load_snapshot(args.snapshot)
    warm = make_split(snapshot)  # temporal: ml-100k events all carry timestamps
    cold = item_cold_start_split(snapshot)
    print(warm.summary())
    print(cold.summary())
    tail = long_tail_items(warm)
    rows: dict[str, dict[str, dict[str, float]]] = {}
    runs: dict[str, dict[str, object]] = {}
    for model in args.models.split(","):
        settings = settings_for(model, args)
        res = train_model(snapshot, warm, settings)
        table = evaluate_ranking(res.score, warm, stage="test", k=K)
        table["tail_candidates"] = evaluate_ranking(
            res.score, warm, stage="test", k=K, candidates=tail, slices=("overall",)
        )["overall"]
        res_cold = train_model(snapshot, cold, settings)
        table["item_cold_start"] = evaluate_ranking(
            res_cold.score, cold, stage="test", k=K, slices=("overall",)
        )["overall"]
        rows[model] = table
        runs[model] = {
            "command": command(), "date": started,
            "settings": {"epochs": settings.epochs, "batch_size": settings.batch_size,
                         "lr": settings.lr, "layers": settings.layers, "dim": settings.dim,
                         "reg": settings.weight_decay, "max_minutes": settings.max_minutes},
            "temporal": {"epochs_run": len(res.history), "best_epoch": res.best_epoch,
                         "train_seconds": round(res.seconds, 1)},
            "item_cold_start": {"epochs_run": len(res_cold.history),
                                "best_epoch": res_cold.best_epoch,
                                "train_seconds": round(res_cold.seconds, 1)},
        }
        print(format_table({model: table}, K), flush=True)
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    data.setdefault("models", {}).update(rows)
    data.update({
        "split": {"overall/long_tail/cold_start/tail_candidates": warm.summary(),
                  "item_cold_start": cold.summary(), "seed": 2020, "k": K,
                  "protocol": "full ranking over all products, training (and validation) "
                              "items excluded; early stopping on validation NDCG@20"},
        "command": command(), "machine": host, "date": started,
    })
    # Models run separately keep their own command and timings under gnn.runs.
    gnn = data.setdefault("gnn", {})
    gnn.setdefault("runs", {}).update(runs)
    gnn["seconds"] = round(time.perf_counter() - t0, 1)
    write_json(args.out, data)
    print(format_table(rows, K))
    best = max((m for m in rows if m != "pop"), key=lambda m: rows[m]["overall"][f"ndcg@{K}"])
    print(f"ml-100k quality of {len(rows)} models in {gnn['seconds']:.0f}s: best overall "
          f"NDCG@{K} {best} {rows[best]['overall'][f'ndcg@{K}']:.4f} vs pop "
          f"{rows.get('pop', {}).get('overall', {}).get(f'ndcg@{K}', float('nan')):.4f}; "
          f"merged into {args.out}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
