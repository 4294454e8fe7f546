"""``kgrec demo``: the main job end to end on the embedded store, as the README's commands.

Each step is one ``kgrec`` sub-command run in order (so the demo is exactly what a user
would type): ingest MovieLens-100K with its knowledge graph, graph statistics, snapshot,
train a GNN, evaluate it, fit the text fusion, batch-score the long tail and write the
recommendations to Parquet and back to the store.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from kgrec.kg.errors import KgrecError

MODELS = ("gat", "gcn", "lightgcn", "mf", "pop")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the main job end to end on MovieLens-100K + KG (embedded store)",
        description=(
            "Ingest MovieLens-100K with its knowledge graph (the recbole==1.2.1 wheel, fetched "
            "once and cached) into the embedded store, print graph statistics, train a GNN, "
            "evaluate it (overall / long-tail / cold-start), fit the GNN + text fusion on the "
            "validation split and batch-score the long-tail products for every user. Every "
            "artefact lands in WORKDIR; re-running is idempotent."
        ),
    )
    p.add_argument("--workdir", default=".kgrec/demo",
                   help="folder for the store, snapshot, runs and outputs (default .kgrec/demo)")
    p.add_argument("--model", choices=MODELS, default="gat",
                   help="model to train (default gat: the knowledge-graph attention model; "
                   "benchmarks/results/quality_ml100k.json compares them all)")
    p.add_argument("--epochs", type=int, default=40, help="maximum training epochs (default 40)")
    p.add_argument("--max-minutes", type=float, default=5.0,
                   help="training time budget; early stopping usually ends sooner (default 5)")
    p.add_argument("--top-k", type=int, default=20, help="long-tail products per user (default 20)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run_demo)


def demo_steps(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """The demo as (title, kgrec argv) pairs; pure, so tests and the README can read it."""
    work = Path(args.workdir)
    store = ["--store", "local", "--store-path", str(work / "store")]
    quiet = ["--no-progress"] if args.no_progress else []
    snap = ["--snapshot", str(work / "snapshot")]
    run = str(work / "runs" / args.model)
    return [
        ("ingest MovieLens-100K + knowledge graph",
         ["ingest", "--recbole", "ml-100k", *store, "--reports-dir", str(work / "reports"),
          *quiet]),
        ("graph statistics",
         ["graph", "stats", *store, "--plot", str(work / "degrees.png"),
          "--json", str(work / "stats.json"), *quiet]),
        ("snapshot", ["graph", "snapshot", str(work / "snapshot"), *store, *quiet]),
        (f"train {args.model}",
         ["train", "--model", args.model, *snap, "--epochs", str(args.epochs),
          "--max-minutes", str(args.max_minutes), "--device", args.device,
          "--out-dir", str(work / "runs"), "--run-name", args.model,
          *quiet]),
        ("evaluate", ["evaluate", run, *snap, "--out", str(work / "evaluation"), *quiet]),
        ("fit the text fusion",
         ["fuse", "--run", run, *snap, "--device", args.device, *quiet]),
        ("score the long tail",
         ["score", "--run", run, *snap, "--items", "long-tail", "--top-k", str(args.top_k),
          "--out", str(work / "long_tail.parquet"), "--write-back", *store,
          "--device", args.device, *quiet]),
    ]


def run_demo(args: argparse.Namespace, main: Callable[[Sequence[str]], int] | None = None) -> int:
    if main is None:
        from kgrec.cli import main as cli_main

        main = cli_main
    start = time.perf_counter()
    config = [] if args.config is None else ["--config", args.config]
    steps = demo_steps(args)
    for number, (title, argv) in enumerate(steps, start=1):
        print(f"\n== [{number}/{len(steps)}] {title}: kgrec {' '.join(argv)}", flush=True)
        code = main([*config, *argv])
        if code:
            raise KgrecError(f"demo step {number} ({title}) failed with exit code {code}")
    out = Path(args.workdir) / "long_tail.parquet"
    frame = pd.read_parquet(out)
    print(f"\nFirst long-tail recommendations ({out}):")
    print(frame.head(10).to_string(index=False))
    print(
        f"\nDemo done in {time.perf_counter() - start:.0f}s: {len(steps)} steps, "
        f"{frame['user_id'].nunique():,} users scored on the long tail, artefacts in "
        f"{args.workdir} (evaluation table: {Path(args.workdir) / 'evaluation'})."
    )
    return 0
