"""Seconds per epoch: kgrec's LightGCN vs PyG's own LightGCN example procedure, on Gowalla.

The PyG side reproduces ``examples/lightgcn.py`` of pytorch_geometric: a homogeneous graph
with both edge directions, ``LightGCN(num_nodes, 64, num_layers=2)``, Adam(lr=0.001),
shuffled batches of 8,192 training edges, one uniform random negative item per edge,
``model(edge_index, edge_label_index)`` (full propagation over the COO ``edge_index`` per
batch) and ``recommendation_loss(..., node_id=edge_label_index.unique())``. The kgrec side
runs its real training loop (``kgrec.gnn.train.train_model``, one warm-up batch first) with
the same sizes: embedding 64, 2 layers, batch 8,192 (not scaled with the data), lr 0.001,
one negative per pair (drawn excluding training positives).

Both run in fresh subprocesses, alternating (kgrec, pyg, kgrec, pyg, ...), each timing
``--batches`` batches after one warm-up batch; s/epoch = median seconds per batch x
batches per epoch (99 on Gowalla), unless ``--full-epoch`` times whole epochs. Peak RSS is
each subprocess's ``ru_maxrss``.

    .venv/bin/python benchmarks/train_speed.py

writes ``benchmarks/results/train_speed.json``.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import queue as queue_module
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS, SHARED_DATA, command, machine, now, write_json  # noqa: E402

DIM, LAYERS, BATCH, LR = 64, 2, 8192, 0.001


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_gpu_mb(device) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def kgrec_worker(data: str, batches: int | None, threads: int, device_name: str,
                 out: mp.Queue) -> None:
    import dataclasses

    import torch

    from kgrec.gnn.lightgcn_files import load_lightgcn_split
    from kgrec.gnn.models import build_model
    from kgrec.gnn.train import train_model
    from kgrec.settings import TrainSettings

    snapshot, split = load_lightgcn_split(data)
    # Nothing to evaluate: every second timed is training.
    split = dataclasses.replace(split, valid=split.valid.iloc[:0], test=split.test.iloc[:0])
    # PyG's batch whatever the data's size (no batch scaling), one batch: the warm-up.
    settings = TrainSettings(model="lightgcn", dim=DIM, layers=LAYERS, batch_size=BATCH, lr=LR,
                             epochs=1, max_batches=1, max_steps_per_epoch=None,
                             device=device_name, threads=threads, seed=2020)
    device = torch.device(device_name)
    t0 = time.perf_counter()
    build_model(snapshot, split, settings)  # the normalised adjacency, once per training
    setup = time.perf_counter() - t0
    train_model(snapshot, split, settings, progress=False)
    timed = train_model(snapshot, split, dataclasses.replace(settings, max_batches=batches),
                        progress=False)
    _sync(device)
    epoch = timed.history[0]
    n, seconds = epoch["batches"], epoch["seconds"]
    out.put({"s_per_batch": seconds / n, "batches": n, "setup_s": setup,
             "batches_per_epoch": math.ceil(len(split.train) / BATCH),
             "peak_rss_mb": _peak_rss_mb(), "peak_gpu_mb": _peak_gpu_mb(device)})


def pyg_worker(data: str, batches: int | None, threads: int, device_name: str,
               out: mp.Queue) -> None:
    import torch
    from torch_geometric.nn import LightGCN

    from kgrec.gnn.lightgcn_files import load_lightgcn_split

    torch.set_num_threads(threads)
    device = torch.device(device_name)
    _, split = load_lightgcn_split(data)
    num_users, num_items = split.num_users, split.num_items
    pairs = split.pairs("train")
    # The example's data: to_homogeneous() of a user<->item graph, both edge directions.
    fwd = torch.stack([pairs[0], pairs[1] + num_users])
    edge_index = torch.cat([fwd, fwd.flip(0)], 1).to(device)
    mask = edge_index[0] < edge_index[1]
    train_edge_label_index = edge_index[:, mask]
    loader = torch.utils.data.DataLoader(range(train_edge_label_index.size(1)), shuffle=True,
                                         batch_size=BATCH)
    model = LightGCN(num_nodes=num_users + num_items, embedding_dim=DIM,
                     num_layers=LAYERS).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)

    def step(index: torch.Tensor) -> None:
        pos_edge_label_index = train_edge_label_index[:, index.to(device)]
        neg_edge_label_index = torch.stack([
            pos_edge_label_index[0],
            torch.randint(num_users, num_users + num_items, (index.numel(),), device=device),
        ], dim=0)
        edge_label_index = torch.cat([pos_edge_label_index, neg_edge_label_index], dim=1)
        optimizer.zero_grad()
        pos_rank, neg_rank = model(edge_index, edge_label_index).chunk(2)
        loss = model.recommendation_loss(pos_rank, neg_rank, node_id=edge_label_index.unique())
        loss.backward()
        optimizer.step()

    it = iter(loader)
    step(next(it))  # warm-up
    n = 0
    t0 = time.perf_counter()
    for index in it:
        if batches is not None and n >= batches:
            break
        step(index)
        n += 1
    _sync(device)
    seconds = time.perf_counter() - t0
    out.put({"s_per_batch": seconds / n, "batches": n, "batches_per_epoch": len(loader),
             "peak_rss_mb": _peak_rss_mb(), "peak_gpu_mb": _peak_gpu_mb(device)})


def run_child(target, args: argparse.Namespace) -> dict:
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    batches = None if args.full_epoch else args.batches
    proc = ctx.Process(target=target,
                       args=(str(args.data), batches, args.threads, args.device, queue))
    proc.start()
    while True:  # a child that dies (e.g. no GPU) must not leave us waiting forever
        try:
            result = queue.get(timeout=1)
            break
        except queue_module.Empty:
            if not proc.is_alive():
                raise SystemExit(
                    f"{target.__name__} failed with exit code {proc.exitcode}"
                ) from None
    proc.join()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=SHARED_DATA / "gowalla")
    p.add_argument("--batches", type=int, default=12, help="timed batches per round (12)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds (2)")
    p.add_argument("--full-epoch", action="store_true", help="time whole epochs instead")
    p.add_argument("--threads", type=int, default=2, help="torch threads per process (2)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="where both train (default cpu; cuda times the GPU path)")
    p.add_argument("--out", type=Path, default=RESULTS / "train_speed.json")
    args = p.parse_args(argv)
    started, host = now(), machine()
    runs: dict[str, list[dict]] = {"kgrec": [], "pyg": []}
    for r in range(args.rounds):
        for name, target in (("kgrec", kgrec_worker), ("pyg", pyg_worker)):
            res = run_child(target, args)
            runs[name].append(res)
            print(f"round {r + 1} {name}: {res['s_per_batch']:.3f} s/batch over "
                  f"{res['batches']} batches, peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
    per_epoch = {}
    for name, results in runs.items():
        per_batch = statistics.median(x["s_per_batch"] for x in results)
        per_epoch[name] = per_batch * results[0]["batches_per_epoch"]
    payload = {
        "benchmark": "train_speed",
        "kgrec_s_per_epoch": round(per_epoch["kgrec"], 2),
        "pyg_s_per_epoch": round(per_epoch["pyg"], 2),
        "ratio": round(per_epoch["pyg"] / per_epoch["kgrec"], 2),
        "ratio_meaning": "pyg_s_per_epoch / kgrec_s_per_epoch (> 1: kgrec is faster)",
        "peak_rss_mb": round(max(x["peak_rss_mb"] for x in runs["kgrec"]), 1),
        "pyg_peak_rss_mb": round(max(x["peak_rss_mb"] for x in runs["pyg"]), 1),
        "kgrec_setup_s": round(statistics.median(x["setup_s"] for x in runs["kgrec"]), 2),
        "device": args.device,
        "peak_gpu_mb": {name: max((x["peak_gpu_mb"] or 0) for x in results) or None
                        for name, results in runs.items()},
        "settings": {"dim": DIM, "layers": LAYERS, "batch_size": BATCH, "lr": LR,
                     "timed_batches": "full epoch" if args.full_epoch else args.batches,
                     "rounds": args.rounds, "threads": args.threads,
                     "batches_per_epoch": runs["kgrec"][0]["batches_per_epoch"]},
        "runs": runs,
        "note": ("s_per_epoch = median s/batch x batches per epoch (evaluation excluded); "
                 "kgrec_setup_s (normalised CSR adjacency, once per training) is not in it"),
        "command": command(), "machine": host, "date": started,
    }
    write_json(args.out, payload)
    print(f"{'':10}{'s/epoch':>10}{'peak RSS MB':>13}")
    print(f"{'kgrec':10}{payload['kgrec_s_per_epoch']:>10.1f}{payload['peak_rss_mb']:>13.0f}")
    print(f"{'pyg':10}{payload['pyg_s_per_epoch']:>10.1f}{payload['pyg_peak_rss_mb']:>13.0f}")
    where = "CUDA" if args.device == "cuda" else f"CPU, {args.threads} threads"
    print(f"LightGCN on Gowalla ({where}): kgrec {payload['kgrec_s_per_epoch']}"
          f" s/epoch vs PyG example {payload['pyg_s_per_epoch']} s/epoch, {payload['ratio']}x; "
          f"peak RSS {payload['peak_rss_mb']} MB vs {payload['pyg_peak_rss_mb']} MB. "
          f"Results in {args.out}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
