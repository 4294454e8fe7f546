"""kgrec's LightGCN on LightGCN's Gowalla split (paper: Recall@20 0.1830, NDCG@20 0.1554).

Trains on ``../shared/data/gowalla/train.txt`` and reports full-ranking Recall/NDCG@20 on
``test.txt`` (training items excluded) every ``--eval-every`` epochs: the paper's protocol
(the split has no validation set; the curve is recorded, never used to pick a state).
Training ends by ``--epochs`` (the protocol has no validation set to stop on);
``--max-minutes`` is a safety net only, off by default.

    .venv/bin/python benchmarks/gowalla_lightgcn.py --epochs 10

writes ``benchmarks/results/gowalla_lightgcn.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS, SHARED_DATA, command, machine, now, write_json  # noqa: E402
from kgrec.gnn.device import resolve_device  # noqa: E402
from kgrec.gnn.lightgcn_files import load_lightgcn_split  # noqa: E402
from kgrec.gnn.train import train_model  # noqa: E402
from kgrec.settings import TrainSettings

PAPER = {"recall@20": 0.1830, "ndcg@20": 0.1554}
TARGET = {"recall@20": 0.178, "ndcg@20": 0.151}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", type=Path, default=SHARED_DATA / "gowalla",
                   help="LightGCN-format folder (default ../shared/data/gowalla)")
    p.add_argument("--epochs", type=int, default=1000, help="maximum epochs (default 1000)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop after the first epoch ending past this wall time (default: none)")
    p.add_argument("--batch-size", type=int, default=8192, help="positive pairs per step (8192)")
    p.add_argument("--lr", type=float, default=0.005, help="Adam learning rate (0.005)")
    p.add_argument("--dim", type=int, default=64, help="embedding size (64, as the paper)")
    p.add_argument("--layers", type=int, default=3, help="propagation layers (3, as the paper)")
    p.add_argument("--reg", type=float, default=1e-4, help="L2 on batch embeddings (1e-4, paper)")
    p.add_argument("--eval-every", type=int, default=5, help="epochs between test evaluations (5)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=2020, help="seed (2020)")
    p.add_argument("--out", type=Path, default=RESULTS / "gowalla_lightgcn.json",
                   help="results file (default benchmarks/results/gowalla_lightgcn.json)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    snapshot, split = load_lightgcn_split(args.data)
    print(split.summary())
    settings = TrainSettings(
        model="lightgcn", dim=args.dim, layers=args.layers, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.reg,
        eval_every=args.eval_every, seed=args.seed, device=args.device,
        max_minutes=args.max_minutes,
        eval_users=0,  # the paper's protocol: every test user ranked
    )
    started, host = now(), machine()
    t0 = time.perf_counter()
    result = train_model(snapshot, split, settings, eval_stage="test")
    wall = time.perf_counter() - t0
    curve = [
        {"epoch": h["epoch"], "loss": round(h["loss"], 5), "recall@20": h["test"]["recall@20"],
         "ndcg@20": h["test"]["ndcg@20"]}
        for h in result.history if "test" in h
    ]
    epoch_seconds = [h["seconds"] for h in result.history]
    last = curve[-1]
    best = max(curve, key=lambda c: c["ndcg@20"])
    payload = {
        "benchmark": "gowalla_lightgcn",
        "recall@20": last["recall@20"], "ndcg@20": last["ndcg@20"],
        "epochs": len(result.history),
        "s_per_epoch": round(sum(epoch_seconds) / len(epoch_seconds), 2),
        "device": str(resolve_device(args.device)),
        "best_on_curve": best,
        "stopped_by": "epochs" if len(result.history) >= args.epochs else "time budget",
        "paper": PAPER, "target": TARGET,
        "reaches_target": all(last[k] >= v for k, v in TARGET.items()),
        "settings": {"batch_size": args.batch_size, "lr": args.lr, "dim": args.dim,
                     "layers": args.layers, "reg": args.reg, "negatives": "1 uniform per pair",
                     "max_minutes": args.max_minutes},
        "curve": curve,
        "wall_seconds": round(wall, 1),
        "note": ("s_per_epoch is training only (evaluation excluded); recall/ndcg are the last "
                 "evaluated epoch on the test split, full ranking over 40,981 items with "
                 "training items excluded"),
        "command": command(), "machine": host, "date": started,
    }
    write_json(args.out, payload)
    print(f"{'epoch':>6} {'loss':>8} {'recall@20':>10} {'ndcg@20':>9}")
    for c in curve:
        print(f"{c['epoch']:>6} {c['loss']:>8.4f} {c['recall@20']:>10.4f} {c['ndcg@20']:>9.4f}")
    print(
        f"LightGCN on Gowalla: {payload['epochs']} epochs at {payload['s_per_epoch']} s/epoch on "
        f"{payload['device']}; Recall@20 {last['recall@20']:.4f}, NDCG@20 {last['ndcg@20']:.4f} "
        f"(paper {PAPER['recall@20']}/{PAPER['ndcg@20']}, target {TARGET['recall@20']}/"
        f"{TARGET['ndcg@20']}: {'reached' if payload['reaches_target'] else 'not reached'}). "
        f"Results in {args.out}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
