"""Seconds per training epoch on ml-100k: one process versus data-parallel processes.

Each configuration trains the same model, seed and batches (``kgrec.gnn.distributed``: every
rank propagates the whole graph and takes its share of each BPR batch; gloo on CPUs, NCCL
on GPUs) and reports the median epoch time, the final loss and the largest difference of
its embeddings from the one-process run.

    .venv/bin/python benchmarks/train_distributed.py [--model lightgcn] [--epochs 3]
        [--nproc 1 2] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import RESULTS, command, load_dataset, machine, now, write_json  # noqa: E402

#: What the numbers mean (saved with them).
NOTE = ("Every rank propagates the whole graph forward and backward (most of an epoch's "
        "work) and only the loss over its share of each batch is split, so the work per rank "
        "hardly shrinks: little speed-up is to be expected unless the batch part (large "
        "batches, the contrastive term) dominates. Here the processes also share 2 CPU cores "
        "with other jobs (see machine.load_average_1m_at_start): 2 processes are slower.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="lightgcn", help="model trained (lightgcn)")
    p.add_argument("--epochs", type=int, default=3, help="epochs timed per configuration (3)")
    p.add_argument("--nproc", type=int, nargs="+", default=[1, 2], help="processes (1 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (1)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cpu)")
    p.add_argument("--out", type=Path, default=RESULTS / "train_distributed.json")
    args = p.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # read by the spawned ranks' torch
    import torch

    from kgrec.gnn.distributed import train_distributed
    from kgrec.gnn.split import make_split
    from kgrec.gnn.train import train_model
    from kgrec.settings import TrainSettings

    torch.set_num_threads(args.threads)
    started, host = now(), machine()
    snapshot = load_dataset("ml-100k")
    split = make_split(snapshot)
    # Evaluation only after the last epoch (not part of the epoch times).
    settings = TrainSettings(model=args.model, epochs=args.epochs, eval_every=10**6,
                             device=args.device, text_features=False)
    rows, base = [], None
    for nproc in args.nproc:
        run = (train_model if nproc == 1 else
               lambda *a, n=nproc, **k: train_distributed(*a, nproc=n, **k))
        result = run(snapshot, split, settings, progress=False, eval_stage="test")
        base = base if base is not None else result
        times = [h["seconds"] for h in result.history]
        diff = max((result.user_embeddings.tensor - base.user_embeddings.tensor).abs().max(),
                   (result.product_embeddings.tensor - base.product_embeddings.tensor).abs().max())
        rows.append({"nproc": nproc, "threads_per_process": args.threads,
                     "median_s_per_epoch": statistics.median(times), "epoch_seconds": times,
                     "final_loss": result.history[-1]["loss"],
                     "test_ndcg@20": result.history[-1]["test"]["ndcg@20"],
                     "max_abs_embedding_diff_vs_first": float(diff)})
    print(f"{'nproc':>5} {'threads':>7} {'median s/epoch':>15} {'final loss':>11} "
          f"{'test NDCG@20':>12} {'max |emb diff|':>14}")
    for r in rows:
        print(f"{r['nproc']:>5} {r['threads_per_process']:>7} {r['median_s_per_epoch']:>15.2f} "
              f"{r['final_loss']:>11.5f} {r['test_ndcg@20']:>12.4f} "
              f"{r['max_abs_embedding_diff_vs_first']:>14.2e}")
    write_json(args.out, {
        "rows": rows, "model": args.model, "device": args.device, "note": NOTE,
        "dataset": f"ml-100k temporal split, batch {settings.batch_size}, "
                   f"{args.epochs} epochs, no text features",
        "command": command(), "machine": host, "date": started,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
