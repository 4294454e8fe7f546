"""The fusion fit's time, memory and fitted alphas: the exhaustive fit of an earlier revision,
the same fit today with every user and every product (``pool=0``), and today's default (a
sample of validation users ranked within pools; :mod:`kgrec.fusion.pools`).

Each (dataset, fit) runs in a process of its own, one after the other, so its wall time and
peak RSS are its own. A run builds both text sides (profile and text tower) and fits both
jobs (full ranking, long-tail candidates) on the temporal split, from the same GNN vectors:
an MF model trained for a fixed number of epochs and cached (the fit's cost does not depend on
which GNN made the vectors). ``synthetic-1m`` is the 1M-event catalogue of
``benchmarks/scale.py`` (run that first), fused on its brand text as scale.py does.

    .venv/bin/python benchmarks/fusion_fit.py                       # ml-100k and scientific
    .venv/bin/python benchmarks/fusion_fit.py --datasets synthetic-1m --fits default --merge
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import (  # noqa: E402
    RESULTS,
    command,
    machine,
    now,
    run_measured,
    worktree,
    write_json,
)

DATASETS = ("ml-100k", "scientific", "synthetic-1m")
#: (A first process per dataset trains and caches the GNN vectors and encodes the text.)
#: ``before``: the exhaustive fit at ``--before`` (every alpha re-ranks users x products);
#: ``exhaustive``: today's code with every user and product; ``default``: today's defaults.
FITS = ("before", "exhaustive", "default")
#: MF epochs of the cached GNN vectors.
GNN_EPOCHS = {"ml-100k": 20, "scientific": 20, "synthetic-1m": 3}

#: One fit, run in its own process: ``python -c WORKER dataset fit epochs out.json``.
WORKER = r'''
import json, os, resource, sys, time
from pathlib import Path
import torch
from benchmarks._common import load_dataset, text_vectors
from kgrec.fusion.fit import build_text_side, fit_fusion
from kgrec.fusion.text import text_confidence
from kgrec.gnn.split import make_split
from kgrec.gnn.train import train_model
try:
    from kgrec.settings import TrainSettings
except ImportError:  # a revision before kgrec.settings
    from kgrec.gnn.train import TrainSettings
from kgrec.kg.snapshot import GraphSnapshot

dataset, fit, epochs, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
torch.set_num_threads(int(os.environ.get("FIT_THREADS", "2")))
root = Path(os.environ["KGREC_BENCH_ROOT"])
if dataset == "synthetic-1m":
    snapshot = GraphSnapshot.load(root / ".kgrec/bench/synthetic-1m-snapshot")
    fields = ["brand"]
else:
    snapshot = load_dataset(dataset, root / ".kgrec/bench" / f"{dataset}-snapshot")
    fields = None
split = make_split(snapshot)
cache = root / ".kgrec/bench/fusion-fit" / f"{dataset}-mf{epochs}.pt"
if cache.exists():
    gu, gi = torch.load(cache)
else:
    settings = TrainSettings(model="mf", epochs=epochs, lr=1e-2, eval_every=1000, seed=2020,
                             device="cpu")
    result = train_model(snapshot, split, settings, progress=False)
    gu, gi = result.user_embeddings.tensor, result.product_embeddings.tensor
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save((gu, gi), cache)
if fit == "vectors":  # only the cached GNN vectors and text, so no fit pays for them
    text_vectors(snapshot, fields)
    sys.exit(0)
text = text_vectors(snapshot, fields)
conf = text_confidence(snapshot.products, fields) if fields else text_confidence(
    snapshot.products)
sampling = {} if fit == "before" else (
    {"sample_users": 0, "pool": 0} if fit == "exhaustive" else {})
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
load, rss_before = os.getloadavg()[0], rss()
start = time.perf_counter()
sides = {kind: build_text_side(kind, split, text, **sampling) for kind in ("profile", "tower")}
sides_s = time.perf_counter() - start
start = time.perf_counter()
try:
    from kgrec.fusion.fit import Sources
    fitted = fit_fusion(Sources(gu, gi, sides, split.item_counts(), conf), split, **sampling)
except ImportError:  # a revision before fusion.fit.Sources
    fitted = fit_fusion(gu, gi, sides, split, split.item_counts(), conf, **sampling)
fit_s = time.perf_counter() - start
valid_users = int(torch.unique(split.pairs("valid")[0]).numel())
out.write_text(json.dumps({
    "dataset": dataset, "fit": fit, "users": split.num_users, "products": split.num_items,
    "valid_users": valid_users, "sides_s": sides_s, "fit_s": fit_s,
    "peak_rss_before_fit_mb": rss_before, "threads": torch.get_num_threads(),
    "load_avg_1m_before": load,
    "jobs": {name: {"text_side": job.text_side, "alpha": job.alpha.to_dict(),
                    "valid_ndcg@20": job.valid_metric, "gnn_only": job.gnn_only,
                    "validation": getattr(job, "validation", {})}
             for name, job in fitted.jobs.items()},
    "profile_half_life": sides["profile"].half_life_events,
}))
'''


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="ml-100k,scientific",
                   help=f"comma-separated, of {', '.join(DATASETS)} (default ml-100k,scientific)")
    p.add_argument("--fits", default=",".join(FITS),
                   help=f"comma-separated, of {', '.join(FITS)} (default all)")
    p.add_argument("--before", default="6e56d61",
                   help="revision of the 'before' fit (default 6e56d61, the last exhaustive one)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    p.add_argument("--out", type=Path, default=RESULTS / "fusion_fit.json")
    p.add_argument("--merge", action="store_true", help="keep other rows of --out")
    return p.parse_args(argv)


def one_fit(dataset: str, fit: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one fit in a fresh process (at ``--before`` for ``before``)."""
    tree = worktree(args.before) if fit == "before" else ROOT
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fit.json"
        cmd = [sys.executable, "-c", WORKER, dataset, fit, str(GNN_EPOCHS[dataset]), str(out)]
        measured = run_measured(cmd, cwd=tree, env=_env(tree, args))
        row = json.loads(out.read_text())
    row.update(wall_s=measured["wall_s"], peak_rss_mb=measured["peak_rss_mb"])
    if fit == "before":
        row["revision"] = args.before
    print(table_row(row), flush=True)
    return row


def _env(tree: Path, args: argparse.Namespace) -> dict[str, str]:
    """The worker's environment: ``tree``'s kgrec first, the benchmark helpers of ROOT."""
    return {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{ROOT}",
            "KGREC_BENCH_ROOT": str(ROOT), "FIT_THREADS": str(args.threads)}


def table_row(r: dict[str, Any]) -> str:
    jobs = "; ".join(f"{name} {j['text_side']} {_alpha(j['alpha'])} {j['valid_ndcg@20']:.4f}"
                     + (f" exact {j['validation']['exact_share']:.0%}" if j["validation"] else "")
                     for name, j in r["jobs"].items())
    return (f"{r['dataset']:<13} {r['fit']:<10} {r['valid_users']:>7,} x {r['products']:>6,} "
            f"sides {r['sides_s']:7.1f} s  fit {r['fit_s']:7.1f} s  peak {r['peak_rss_mb']:6.0f} MB"
            f"  | {jobs}")


def _alpha(a: dict[str, Any]) -> str:
    if a["a_head"] == a["a_cold"] and not a["use_text_confidence"]:
        return f"a={a['a_head']:g}"
    conf = ",conf" if a["use_text_confidence"] else ""
    return f"a={a['a_cold']:g}->{a['a_head']:g}@{a['pivot']:g}{conf}"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    previous = json.loads(args.out.read_text()) if args.merge and args.out.exists() else {}
    rows = {(r["dataset"], r["fit"]): r for r in previous.get("rows", [])}
    for dataset in args.datasets.split(","):
        run_measured([sys.executable, "-c", WORKER, dataset, "vectors",
                      str(GNN_EPOCHS[dataset]), "-"], cwd=ROOT, env=_env(ROOT, args))
        for fit in args.fits.split(","):
            rows[(dataset, fit)] = one_fit(dataset, fit, args)
            write_json(args.out, {
                "benchmark": "fusion_fit", "doc": __doc__.split("\n\n")[0],
                "rows": list(rows.values()), "command": command(), "machine": machine(),
                "date": now()})
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
