"""How much a model's test NDCG@20 moves with the training seed (same split, same settings).

``quality.py`` trains every model once (seed 2020); this script retrains the named models
with other seeds on the temporal split, so a gap between two models can be read against
the spread of each (``--patience`` varies the early stopping too). Each (model, seed) row
records the best validation NDCG@20, the test NDCG@20 of the restored state, the epochs run
and the stop reason; the summary gives each model's mean and standard deviation over the
seeds.

    .venv/bin/python benchmarks/seed_spread.py --dataset ml-100k --models gat --seeds 2021,2022
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

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
    write_json,
)
from kgrec.fusion.encoder import TextEncoder  # noqa: E402
from kgrec.fusion.text import has_text, product_text  # noqa: E402
from kgrec.gnn.metrics import evaluate_ranking  # noqa: E402
from kgrec.gnn.split import make_split  # noqa: E402
from kgrec.gnn.train import train_model  # noqa: E402
from kgrec.settings import TrainSettings  # noqa: E402

K = 20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--dataset", choices=DATASETS, required=True)
    p.add_argument("--models", default="lightgcn,gat", help="comma-separated (lightgcn,gat)")
    p.add_argument("--seeds", default="2020,2021,2022", help="comma-separated training seeds")
    p.add_argument("--patience", type=int, default=TrainSettings.patience,
                   help=f"early-stopping patience in evaluations ({TrainSettings.patience})")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: shared machine)")
    p.add_argument("--out", type=Path, help="results JSON (default benchmarks/results/"
                   "seed_spread_<dataset>.json); rows of other (model, seed) pairs already "
                   "there are kept")
    return p.parse_args(argv)


def _key(row: dict) -> str:
    """``model`` at the default patience, ``model@patience=N`` otherwise."""
    patience = row.get("patience", TrainSettings.patience)
    return row["model"] if patience == TrainSettings.patience else (
        f"{row['model']}@patience={patience}")


def summarise(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per model (and patience): mean and standard deviation of test and validation NDCG@K
    over seeds."""
    out = {}
    for key in sorted({_key(r) for r in rows}):
        test = [r["test_ndcg"] for r in rows if _key(r) == key]
        valid = [r["best_valid_ndcg"] for r in rows if _key(r) == key]
        out[key] = {"seeds": len(test), "test_mean": statistics.mean(test),
                    "test_std": statistics.stdev(test) if len(test) > 1 else 0.0,
                    "valid_mean": statistics.mean(valid)}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out or RESULTS / f"seed_spread_{args.dataset.replace('-', '')}.json"
    snapshot = load_dataset(args.dataset)
    split = make_split(snapshot)
    features = None
    if has_text(snapshot.products):
        encoder = TextEncoder(device="cpu", cache_dir=ROOT / ".kgrec" / "text-cache")
        features = encoder.encode(product_text(snapshot.products), progress=True)
    rows = []
    for model in args.models.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            t0 = time.perf_counter()
            settings = TrainSettings(model=model, seed=seed, patience=args.patience)
            result = train_model(snapshot, split, settings, product_features=features,
                                 progress=False)
            valid = [h["valid"][f"ndcg@{K}"] for h in result.history if "valid" in h]
            test = evaluate_ranking(result.score, split, stage="test", k=K,
                                    slices=("overall",), auc=False)["overall"][f"ndcg@{K}"]
            row = {"model": model, "seed": seed, "patience": args.patience,
                   "best_valid_ndcg": max(valid), "test_ndcg": test,
                   "epochs_run": len(result.history),
                   "best_epoch": result.best_epoch, "stop_reason": result.stop_reason,
                   "seconds": round(time.perf_counter() - t0, 1), "date": now(),
                   "command": command()}
            print(json.dumps(row), flush=True)
            rows.append(row)
    # Read at the end, so runs of other models in parallel keep each other's rows.
    previous = json.loads(out.read_text())["rows"] if out.exists() else []
    fresh = {(_key(r), r["seed"]) for r in rows}
    rows += [r for r in previous if (_key(r), r["seed"]) not in fresh]
    rows.sort(key=lambda r: (_key(r), r["seed"]))
    summary = summarise(rows)
    write_json(out, {"dataset": args.dataset, "split": split.summary(), "k": K,
                     "settings": "TrainSettings defaults, seed (and patience) varied",
                     "rows": rows, "summary": summary, "machine": machine()})
    print(f"{'model':<22} {'seeds':>5} {'test mean':>10} {'test std':>9} {'valid mean':>11}")
    for model, s in summary.items():
        print(f"{model:<22} {s['seeds']:>5} {s['test_mean']:>10.4f} {s['test_std']:>9.4f} "
              f"{s['valid_mean']:>11.4f}")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
