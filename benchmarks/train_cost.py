"""Seconds per training step and per epoch of the GAT, the GCN and LightGCN as the data grow.

Datasets: synthetic catalogues of 100k, 200k, 400k and 1M events (the generator of
``benchmarks/scale.py``: Amazon Scientific's degrees, activity, text lengths, brands and
category paths), ml-100k (with its Freebase knowledge graph) and Amazon Scientific. Every
model trains with the ``TrainSettings`` defaults on the temporal split, text features on for
gat/gcn (MiniLM vectors of the products' text; on the synthetic catalogues of brand and
category path alone, a few thousand distinct texts that 2 CPUs encode in minutes where 74k
generated titles would take most of an hour: a step's cost depends on the vectors' size,
not on what they say), for
``--epochs`` epochs without evaluation (the validation ranking's cost grows with users x
products and belongs to the fusion and evaluation issues, not to training).

Each measurement is one process (``--one DATASET MODEL``), so no allocator or cache state
carries over; the models of a dataset run interleaved, ``--rounds`` times in alternating
order, and the table takes the median per model. Threads (``--threads``, default the CPUs
this process may use) and the 1-minute load average before each run are recorded.

    .venv/bin/python benchmarks/train_cost.py                     # all sizes, ~40 min
    .venv/bin/python benchmarks/train_cost.py --datasets ml-100k scientific --rounds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import (  # noqa: E402
    RESULTS,
    command,
    load_dataset,
    machine,
    now,
    run_at_revision,
    text_vectors,
    worktree,
    write_json,
)

MODELS = ("gat", "gcn", "lightgcn")
SYNTHETIC = {"100k": 100_000, "200k": 200_000, "400k": 400_000, "1m": 1_000_000}
DATASETS = ("100k", "200k", "400k", "1m", "ml-100k", "scientific")
BENCH = ROOT / ".kgrec" / "bench"
#: Product text of the synthetic catalogues (the real datasets use kgrec's default fields).
SYNTHETIC_TEXT = ["brand", "category_path"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS,
                   help="datasets (default all: " + " ".join(DATASETS) + ")")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--epochs", type=int, default=2, help="epochs per measurement (2)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds per dataset (2)")
    p.add_argument("--threads", type=int, help="torch threads (default: the CPUs available)")
    p.add_argument("--baseline", help="also time the GAT of this earlier revision (a git "
                   "worktree; e.g. c67c0b3, before this benchmark), interleaved with today's")
    p.add_argument("--out", type=Path, default=RESULTS / "train_cost.json")
    p.add_argument("--one", nargs=2, metavar=("DATASET", "MODEL"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


# -- data -------------------------------------------------------------------------------------

def snapshot(name: str):
    """The dataset's snapshot, built once and cached under .kgrec/bench."""
    if name not in SYNTHETIC:
        return load_dataset(name)
    from kgrec.kg.extract.mapping import load_mapping
    from kgrec.kg.extract.stream import read_generic
    from kgrec.kg.snapshot import GraphSnapshot, snapshot_from_tables

    folder = BENCH / f"synthetic-{name}-snapshot"
    if (folder / "hetero.pt").exists():
        return GraphSnapshot.load(folder)
    from benchmarks.scale import write_catalogue

    data = BENCH / f"synthetic-{name}"
    data.mkdir(parents=True, exist_ok=True)
    products, events, _ = write_catalogue(data, SYNTHETIC[name], seed=0)
    mapping = load_mapping(overrides=["options.category_separator=,",
                                      "options.event_type=purchase"])
    snap = snapshot_from_tables(read_generic(products, events, mapping=mapping))
    snap.save(folder)
    return snap


def catalogue_text(name: str, snap):
    return text_vectors(snap, SYNTHETIC_TEXT if name in SYNTHETIC else None)


# -- one measurement (its own process) --------------------------------------------------------

def measure(name: str, model: str, epochs: int, threads: int | None) -> dict[str, Any]:
    """``epochs`` training epochs of ``model`` on ``name`` without evaluation."""
    import torch

    from kgrec.gnn.split import make_split
    from kgrec.gnn.train import scaled_batch, train_model
    from kgrec.settings import TrainSettings

    snap = snapshot(name)
    split = make_split(snap)
    features = catalogue_text(name, snap) if model in ("gat", "gcn") else None
    # No validation or test pairs: nothing is evaluated, every second is training.
    train_only = dataclasses.replace(split, valid=split.valid.iloc[:0], test=split.test.iloc[:0])
    settings = TrainSettings(model=model, epochs=epochs, device="cpu", threads=threads)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    result = train_model(snap, train_only, settings, product_features=features, progress=False)
    wall = time.perf_counter() - start
    epoch_s = [h["seconds"] for h in result.history]
    steps = result.history[0]["batches"]
    batch, lr = scaled_batch(settings, len(split.train))
    events = sum(int(snap.data[et].edge_index.shape[1]) for et in snap.data.edge_types
                 if et[0] == "user")
    return {"dataset": name, "model": model, "events": events, "users": split.num_users,
            "products": split.num_items, "train_pairs": len(split.train),
            "nodes": sum(len(ids) for ids in snap.id_maps.values()),
            "edges": sum(int(snap.data[et].edge_index.shape[1]) for et in snap.data.edge_types),
            "batch_size": batch, "lr": lr, "steps_per_epoch": steps,
            "epoch_s": epoch_s, "s_per_epoch": min(epoch_s), "s_per_step": min(epoch_s) / steps,
            "wall_s": wall, "threads": torch.get_num_threads(), "load_avg_1m_before": load,
            "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


#: The GAT of an earlier revision, run in its own worktree with its own settings' defaults
#: (same data, text vectors, threads and epochs; no evaluation).
BASELINE = """
import dataclasses, json, os, sys, time, torch
torch.set_num_threads({threads})
from kgrec.gnn.split import make_split
from kgrec.gnn.train import train_model
try:
    from kgrec.settings import TrainSettings
except ImportError:  # a revision before kgrec.settings
    from kgrec.gnn.train import TrainSettings
from kgrec.kg.snapshot import GraphSnapshot
snap = GraphSnapshot.load({snapshot!r})
split = make_split(snap)
split = dataclasses.replace(split, valid=split.valid.iloc[:0], test=split.test.iloc[:0])
features = torch.load({text!r})
load = os.getloadavg()[0]
res = train_model(snap, split, TrainSettings(model="gat", epochs={epochs}, device="cpu"),
                  product_features=features, progress=False)
epoch_s = [h["seconds"] for h in res.history]
steps = res.history[0]["batches"]
print(json.dumps({{"epoch_s": epoch_s, "steps_per_epoch": steps, "s_per_epoch": min(epoch_s),
                  "s_per_step": min(epoch_s) / steps, "load_avg_1m_before": load,
                  "threads": torch.get_num_threads()}}))
"""


def baseline_process(name: str, tree: Path, args: argparse.Namespace,
                     today: dict[str, Any]) -> dict[str, Any]:
    """The earlier revision's GAT on ``name``: its ``kgrec`` package with ``gnn``, ``kg`` and
    ``fusion`` linked in, found first on ``PYTHONPATH``."""
    from kgrec.gnn.device import available_cpus

    snap = snapshot(name)
    text = BENCH / f"{name}-text.pt"
    import torch

    torch.save(catalogue_text(name, snap), text)
    folder = BENCH / (f"synthetic-{name}-snapshot" if name in SYNTHETIC else f"{name}-snapshot")
    code = BASELINE.format(threads=args.threads or available_cpus(), snapshot=str(folder),
                           text=str(text), epochs=args.epochs)
    run = run_at_revision(tree, code)
    keep = ("events", "users", "products", "train_pairs", "nodes", "edges", "batch_size")
    return {**{k: today[k] for k in keep}, **run, "dataset": name,
            "model": f"gat@{args.baseline}", "lr": None, "wall_s": None,
            "peak_rss_mb": float("nan")}


def one_process(name: str, model: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", name, model,
           "--epochs", str(args.epochs)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{name} {model} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the table --------------------------------------------------------------------------------

def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per dataset and model: medians over the rounds."""
    rows = []
    for name in dict.fromkeys(r["dataset"] for r in runs):
        mine = [r for r in runs if r["dataset"] == name]
        light = [r["s_per_step"] for r in mine if r["model"] == "lightgcn"]
        for model in dict.fromkeys(r["model"] for r in mine):
            rs = [r for r in mine if r["model"] == model]
            step = statistics.median(r["s_per_step"] for r in rs)
            epoch = statistics.median(r["s_per_epoch"] for r in rs)
            first = rs[0]
            rows.append({
                "dataset": name, "model": model, "events": first["events"],
                "train_pairs": first["train_pairs"], "batch_size": first["batch_size"],
                "steps_per_epoch": first["steps_per_epoch"], "s_per_step": step,
                "s_per_epoch": epoch, "s_per_epoch_per_m_events": epoch / first["events"] * 1e6,
                "step_vs_lightgcn": step / statistics.median(light) if light else None,
                "threads": first["threads"],
                "load_avg_1m": [r["load_avg_1m_before"] for r in rs],
                "peak_rss_mb": max(r["peak_rss_mb"] for r in rs)})
    return rows


def flatness(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per model: s/epoch per million events at the largest synthetic size over the smallest."""
    out = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        synth = [r for r in rows if r["model"] == model and r["dataset"] in SYNTHETIC]
        if len(synth) >= 2:
            small, large = min(synth, key=lambda r: r["events"]), max(synth,
                                                                      key=lambda r: r["events"])
            out[model] = {"from": small["dataset"], "to": large["dataset"],
                          "ratio": large["s_per_epoch_per_m_events"]
                          / small["s_per_epoch_per_m_events"]}
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| data | model | events | batch | steps/epoch | s/step | s/epoch | s/epoch per M "
             "events | step vs LightGCN | threads | load |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        ratio = "" if r["step_vs_lightgcn"] is None else f"{r['step_vs_lightgcn']:.2f}x"
        load = "/".join(f"{x:.1f}" for x in r["load_avg_1m"])
        lines.append(f"| {r['dataset']} | {r['model']} | {r['events']:,} | {r['batch_size']:,} | "
                     f"{r['steps_per_epoch']} | {r['s_per_step']:.3f} | {r['s_per_epoch']:.2f} | "
                     f"{r['s_per_epoch_per_m_events']:.1f} | {ratio} | {r['threads']} | {load} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        print(json.dumps(measure(*args.one, args.epochs, args.threads)))
        return 0
    runs: list[dict[str, Any]] = []
    payload: dict[str, Any] = {"benchmark": "train_cost", "command": command(),
                               "machine": machine(), "date": now()}
    for name in args.datasets:
        snapshot(name)  # build (and encode) outside the timed processes
        if any(m in ("gat", "gcn") for m in args.models):
            catalogue_text(name, snapshot(name))
        tree = worktree(args.baseline) if args.baseline and name in ("ml-100k",
                                                                        "scientific") else None
        for rnd in range(args.rounds):
            order = args.models if rnd % 2 == 0 else list(reversed(args.models))
            for model in order:
                run = one_process(name, model, args)
                runs.append(run)
                if tree is not None and model == "gat":
                    runs.append(baseline_process(name, tree, args, run))
                    print(f"{name} gat@{args.baseline}: {runs[-1]['s_per_step']:.3f} s/step",
                          flush=True)
                print(f"{name} {model}: {run['s_per_step']:.3f} s/step, "
                      f"{run['s_per_epoch']:.2f} s/epoch ({run['steps_per_epoch']} steps of "
                      f"{run['batch_size']:,}), load {run['load_avg_1m_before']:.1f}", flush=True)
        rows = summarise(runs)
        payload.update({"rows": rows, "flatness": flatness(rows), "runs": runs})
        write_json(args.out, payload)  # after every dataset
    print(table(summarise(runs)))
    print(json.dumps(flatness(summarise(runs)), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
