"""Views, carts and purchases (Tmall, MB-CGCN's split): kgrec's models beside the peers.

Reads ``../shared/data/tmall-multibehavior`` through kgrec's ``lists`` reader into the
embedded store, snapshots it and splits it as ``kgrec run`` does (``given``: the held-out
``buy_test.txt`` purchase of each user is the test pair; one training purchase per user
with two or more goes to validation). Every ranking is over all products with the user's
training (and validation) purchases left out, ties at the mid-rank, HR@10 and NDCG@10.

Peers on the same split: most-bought products; EASE (Steck 2019, closed form) on purchases
only and on view + 2 cart + 4 purchase (each pair's sum capped at 10); "seen" (the user's
own viewed and carted products, view + 3 cart, most-bought first); EASE weighted + 4 x seen;
kgrec's re-engagement term alone (each seen product at its conversion rates, most-bought
first). kgrec: the GAT trained on every behaviour (behaviour-weighted edges and loss), alone
and in the fitted blend with the re-engagement term.

    .venv/bin/python benchmarks/multibehavior.py --set loss=softmax --set min_gain=0.01
                                                 # -> multibehavior.json (data/tmall.toml's)
    .venv/bin/python benchmarks/multibehavior.py --models kgrec_run   # + the end-to-end run
    .venv/bin/python benchmarks/multibehavior.py --models scientific_leave_one_out
    .venv/bin/python benchmarks/multibehavior.py --models behaviours --set loss=softmax \
        --out benchmarks/results/multibehavior_weights.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import RESULTS, SHARED_DATA, command, machine, now, write_json  # noqa: E402

K = 10
#: The target of training and fitting first, then the other objectives evaluated.
OBJECTIVES = ("purchase", "cart", "view")
FOLDER = SHARED_DATA / "tmall-multibehavior"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    p.add_argument("--models", default="peers,lightgcn,gat",
                   help="peers (closed forms), lightgcn, gat and/or behaviours (the fitted "
                   "behaviour weights against equal and purchases-only; default: the first "
                   "three); or "
                   "kgrec_run alone: time `kgrec run data/tmall.toml` end to end and merge "
                   "it into --out; or scientific_leave_one_out alone: `kgrec run "
                   "data/scientific.toml` on the leave-one-out split at HR@10 / NDCG@10, "
                   "EASE beside it, merged into --out")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a TrainSettings override of the GAT (repeatable)")
    p.add_argument("--out", type=Path, default=RESULTS / "multibehavior.json")
    return p.parse_args(argv)


def timed(rows: dict[str, Any], name: str, fn):
    start, load = time.perf_counter(), os.getloadavg()[0]
    out = fn()
    rows.setdefault(name, {}).update(seconds=round(time.perf_counter() - start, 2),
                                     load_avg_1m_before=round(load, 2))
    return out


def build(stages: dict[str, Any]):
    """Snapshot through the lists reader and the embedded store; the given split."""
    from kgrec.config import Config
    from kgrec.kg.extract.lists import read_lists
    from kgrec.kg.ingest import ingest
    from kgrec.kg.snapshot import build_snapshot
    from kgrec.kg.store.local import LocalStore
    from kgrec.training import make_run_split

    work = Path(".kgrec/bench/tmall")
    store = LocalStore(work / "store")
    store.clear()
    tables = timed(stages, "read", lambda: read_lists(FOLDER))
    summary = timed(stages, "ingest", lambda: ingest(tables, store, work / "reports",
                                                     progress=False))
    stages["ingest"].update(loaded=summary.loaded, rejected=summary.rejected)
    snapshot = timed(stages, "snapshot", lambda: build_snapshot(store, progress=False))
    splits = {}
    for objective in OBJECTIVES:  # the first (purchase) trains; each is evaluated
        config = Config()
        config.source.kind, config.source.path = "lists", str(FOLDER)
        config.train.target = objective
        splits[objective] = timed(stages, f"split_{objective}",
                                  lambda c=config: make_run_split(snapshot, "given", c))
        print(splits[objective].summary(), flush=True)
    return snapshot, splits


def behaviour_matrix(split, weights: dict[str, float], cap: float = 10.0) -> torch.Tensor:
    """Dense ``[users, items]`` of each training pair's summed behaviour weights (capped)."""
    from kgrec.gnn.pairs import REL_BITS

    train = split.train
    rels = train["rels"].to_numpy()
    value = sum(w * ((rels & REL_BITS[rel]) != 0) for rel, w in weights.items())
    x = torch.zeros(split.num_users, split.num_items)
    keep = value > 0
    x[train["user"].to_numpy()[keep], train["product"].to_numpy()[keep]] = torch.as_tensor(
        np.minimum(value[keep], cap), dtype=torch.float32)
    return x


def ease(x: torch.Tensor, lam: float) -> torch.Tensor:
    """EASE's item-item weights ``B`` (Steck 2019): ``P = (X'X + lam I)^-1``,
    ``B = -P / diag(P)``, zero diagonal."""
    gram = (x.t() @ x).double()
    gram.diagonal().add_(lam)
    p = torch.linalg.inv(gram)
    b = -p / p.diagonal()
    b.diagonal().zero_()
    return b.float()


def overrides(pairs: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs, each value read as JSON where it parses (numbers, booleans)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            out[name] = value
    return out


def lightgcn_trains(split) -> dict[str, Any]:
    """LightGCN's training pairs: purchases only, and every behaviour merged into one
    (weight 1 each, so edges and loss treat a view as a purchase)."""
    from kgrec.gnn.pairs import REL_BITS
    from kgrec.kg import schema

    bought = (split.train["rels"].to_numpy() & REL_BITS[schema.PURCHASED]) != 0
    return {"lightgcn_purchases": split.train[bought].reset_index(drop=True),
            "lightgcn_merged": split.train.assign(weight=1.0)}


def train_peer(snapshot, split):
    from kgrec.gnn.train import train_model
    from kgrec.settings import TrainSettings

    result = train_model(snapshot, split, TrainSettings(model="lightgcn", k=K, device="cpu"),
                         progress=False)
    print(result.summary(), flush=True)
    return result


def train_gat(snapshot, split, args: argparse.Namespace):
    """The GAT on every behaviour (no product text in this catalogue: id inputs), early
    stopping on validation NDCG@10."""
    from kgrec.gnn.train import train_model
    from kgrec.settings import TrainSettings

    settings = TrainSettings(model="gat", text_features=False, k=K, device="cpu",
                             **overrides(args.set))
    result = train_model(snapshot, split, settings, progress=True)
    print(result.summary(), flush=True)
    return result


def behaviour_rows(snapshot, split, args: argparse.Namespace, rows: dict[str, Any],
                   record) -> None:
    """The behaviour-weight fit as kgrec runs it (each scale's short training, validation
    NDCG@10), then the GAT trained to convergence with the fitted weights, with equal weights
    and on purchases alone (the target's pairs only carry loss and edge weight)."""
    from kgrec.gnn.behaviours import candidate_weights, fit_behaviour_weights, reweighted
    from kgrec.gnn.train import train_model
    from kgrec.settings import TrainSettings

    settings = TrainSettings(model="gat", text_features=False, k=K, device="cpu",
                             **overrides(args.set))
    fit = timed(rows, "behaviour_fit", lambda: fit_behaviour_weights(snapshot, split, settings))
    print(fit.summary(), flush=True)
    rows["behaviour_fit"].update(weights=fit.weights, candidates=fit.candidates)
    scales = {"gat_fitted_weights": None, "gat_equal_weights": 4.0, "gat_purchases_only": 0.0}
    for name, scale in scales.items():
        weights = fit.weights if scale is None else candidate_weights(split, scale)
        result = timed(rows, name, lambda w=weights: train_model(
            snapshot, reweighted(split, w), settings, progress=False))
        print(result.summary(), flush=True)
        rows[name].update(weights=weights, epochs=len(result.history),
                          stop_reason=result.stop_reason)
        record(name, result.score)


def reengaged(result, split):
    """The GAT's ranking plus the re-engagement term, its weight fitted on validation
    (kgrec's fusion fit: this catalogue has no text, so the blend is GNN + b * s_seen)."""
    from kgrec.fusion.fit import Sources, fit_fusion, job_scorer
    from kgrec.fusion.reengage import Reengagement

    sources = Sources(result.user_embeddings.tensor, result.product_embeddings.tensor, {},
                      split.item_counts(), torch.zeros(split.num_items))
    term = Reengagement.of_split(split)
    fit = fit_fusion(sources, split, jobs=("full",), k=K, reengage=term)
    job = fit.jobs["full"]
    print(job.summary(), flush=True)
    scorer = job_scorer(sources, fit, "full", seen=term)
    return scorer, job.seen_weight, job.seen_curve


def measured_run(config: str, name: str, sets: list[str]) -> tuple[dict[str, Any], Path]:
    """``kgrec run CONFIG`` end to end as a user runs it (ingest to report, in a process of
    its own, under ``.kgrec/bench/NAME``): wall seconds, peak RSS, its stages and its test
    HR@K / NDCG@K per model; and its folder."""
    from benchmarks._common import ROOT, run_measured

    workdir = ROOT / ".kgrec" / "bench" / name
    if workdir.exists():
        shutil.rmtree(workdir)
    sets = [*sets, f"run.workdir={workdir}", f"store.path={workdir / 'store'}"]
    cmd = [str(ROOT / ".venv" / "bin" / "kgrec"), "run", config, "--no-progress",
           *(arg for pair in sets for arg in ("--set", pair))]
    load = os.getloadavg()[0]
    measured = run_measured(cmd, ROOT)
    evaluation = json.loads((workdir / "evaluation.json").read_text())
    record = {
        "command": " ".join(cmd[1:]), "date": now(), "load_avg_1m_before": load,
        "wall_s": round(measured["wall_s"], 1), "peak_rss_mb": round(measured["peak_rss_mb"]),
        "stage_seconds": {stage: round(done["seconds"], 1) for stage, done in
                          json.loads((workdir / "state.json").read_text()).items()},
        "test": {model: {f"{key}@{K}": by_slice["overall"][f"{key}@{K}"]
                         for key in ("hit", "ndcg")} for model, by_slice in evaluation.items()}}
    return record, workdir


def merge_into(out: Path, key: str, record: dict[str, Any]) -> None:
    payload = json.loads(out.read_text()) if out.exists() else {}
    payload[key] = record
    write_json(out, payload)
    print(json.dumps(record, indent=1))


def kgrec_run(out: Path) -> None:
    """The Tmall run, merged into ``out`` under ``kgrec_run``."""
    merge_into(out, "kgrec_run", measured_run("data/tmall.toml", "tmall-run", [])[0])


#: EASE's regularisation, chosen on validation per split.
EASE_LAMBDAS = (50.0, 100.0, 250.0, 500.0, 1000.0)


def ease_fitted(split) -> dict[str, Any]:
    """EASE on ``split``'s training pairs (binary), its lambda chosen by validation NDCG@K
    from :data:`EASE_LAMBDAS`; the test HR@K / NDCG@K with the training rows as input."""
    from kgrec.gnn.metrics import evaluate_ranking

    x = torch.zeros(split.num_users, split.num_items)
    x[split.train["user"].to_numpy(), split.train["product"].to_numpy()] = 1.0
    best: dict[str, Any] = {}
    for lam in EASE_LAMBDAS:
        b = ease(x, lam)
        valid = evaluate_ranking(lambda u, b=b: x[u] @ b, split, stage="valid", k=K,
                                 slices=("overall",), auc=False)["overall"][f"ndcg@{K}"]
        if valid > best.get("valid_ndcg", -1.0):
            test = evaluate_ranking(lambda u, b=b: x[u] @ b, split, stage="test", k=K,
                                    slices=("overall",), auc=False)["overall"]
            best = {"lambda": lam, "valid_ndcg": valid, f"hit@{K}": test[f"hit@{K}"],
                    f"ndcg@{K}": test[f"ndcg@{K}"]}
    return best


def scientific_leave_one_out(out: Path) -> None:
    """``kgrec run data/scientific.toml`` on the leave-one-out split at K (each user's last
    event the test, the one before it validation), EASE beside it on the same split; merged
    into ``out`` under ``scientific_leave_one_out``."""
    from kgrec.config import load_config
    from kgrec.kg.snapshot import GraphSnapshot
    from kgrec.training import make_run_split

    sets = ["train.split=leave_one_out", f"train.k={K}"]
    record, workdir = measured_run("data/scientific.toml", "scientific-loo", sets)
    config = load_config("data/scientific.toml", sets=sets)
    split = make_run_split(GraphSnapshot.load(workdir / "snapshot"), "leave_one_out", config)
    record.update(split=split.summary(), ease=ease_fitted(split))
    merge_into(out, "scientific_leave_one_out", record)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.models in ("kgrec_run", "scientific_leave_one_out"):
        {"kgrec_run": kgrec_run, "scientific_leave_one_out": scientific_leave_one_out}[
            args.models](args.out)
        return
    from kgrec.fusion.reengage import Reengagement
    from kgrec.gnn.metrics import evaluate_ranking
    from kgrec.gnn.split import Split
    from kgrec.kg import schema

    stages: dict[str, Any] = {}
    snapshot, splits = build(stages)
    split = splits[OBJECTIVES[0]]
    rows: dict[str, Any] = {}

    def record(name: str, score) -> None:
        for objective, on in splits.items():
            test = evaluate_ranking(score, on, stage="test", k=K, slices=("overall",),
                                    auc=False)["overall"]
            key = "" if objective == OBJECTIVES[0] else f"{objective}_"
            rows.setdefault(name, {}).update({f"{key}hr@{K}": test[f"hit@{K}"],
                                              f"{key}ndcg@{K}": test[f"ndcg@{K}"]})
            print(f"{name:<28} {objective:<9} HR@{K} {test[f'hit@{K}']:.4f}  "
                  f"NDCG@{K} {test[f'ndcg@{K}']:.4f}", flush=True)

    bought = behaviour_matrix(split, {schema.PURCHASED: 1.0})
    pop = bought.sum(0)
    seen = behaviour_matrix(split, {schema.VIEWED: 1.0, schema.CARTED: 3.0})
    seen_score = seen + (pop / (pop.max() + 1)).unsqueeze(0)  # most-bought first
    if "peers" in args.models:
        record("most_bought", lambda u: pop.expand(len(u), -1))
        record("seen", lambda u: seen_score[u])
        b_buy = timed(rows, "ease_purchases", lambda: ease(bought, 100.0))
        record("ease_purchases", lambda u: bought[u] @ b_buy)
        del b_buy
        weighted = behaviour_matrix(split, {schema.VIEWED: 1.0, schema.CARTED: 2.0,
                                            schema.PURCHASED: 4.0})
        b_w = timed(rows, "ease_weighted", lambda: ease(weighted, 500.0))
        record("ease_weighted", lambda u: weighted[u] @ b_w)

        def ease_seen(u: torch.Tensor) -> torch.Tensor:
            s = weighted[u] @ b_w
            return s / s.std(1, keepdim=True).clamp(min=1e-9) + 4 * seen[u]

        record("ease_weighted_plus_4_seen", ease_seen)
        del b_w
        # kgrec's re-engagement term alone: each seen product at its conversion rates.
        term = Reengagement.of_split(split)
        tiebreak = 1e-6 * pop / (pop.max() + 1)  # most-bought first among equal terms
        record("reengagement_term", lambda u: term.scores(u) + tiebreak.unsqueeze(0))
    if "lightgcn" in args.models:
        for name, train in lightgcn_trains(split).items():
            variant = Split(train, split.valid, split.test, split.num_users, split.num_items,
                            split.kind, split.seed, split.target)
            result = timed(rows, name, lambda v=variant: train_peer(snapshot, v))
            rows[name].update(epochs=len(result.history), stop_reason=result.stop_reason)
            record(name, result.score)
    if "behaviours" in args.models:
        behaviour_rows(snapshot, split, args, rows, record)
    if "gat" in args.models:
        result = timed(rows, "gat", lambda: train_gat(snapshot, split, args))
        rows["gat"].update(epochs=len(result.history), best_epoch=result.best_epoch,
                           stop_reason=result.stop_reason, settings=overrides(args.set))
        record("gat", result.score)
        fused = timed(rows, "gat+reengagement", lambda: reengaged(result, split))
        rows["gat+reengagement"].update(seen_weight=fused[1], seen_curve=fused[2])
        record("gat+reengagement", fused[0])
    kept = json.loads(args.out.read_text()) if args.out.exists() else {}  # the runs' entries
    rows = {**kept.get("rows", {}), **rows}  # rows of models not run this time stay
    commands = [*kept.get("commands", []), command()]  # every run whose rows are here
    write_json(args.out, {**kept, "benchmark": "multibehavior", "commands": commands,
                          "date": now(), "machine": machine(), "split": split.summary(),
                          "objectives": {o: sp.summary() for o, sp in splits.items()},
                          "stages": stages, "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
