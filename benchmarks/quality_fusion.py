"""Fusion quality on MovieLens-100K + KG: GNN only, text only, text tower and fused variants.

Every row is evaluated five ways: full ranking on the temporal split (slices ``overall``,
``long_tail``, ``cold_start``), ranking restricted to the long-tail products
(``tail_candidates``), and full ranking on the item cold-start split (``item_cold_start``:
10% of products held out with all their interactions; alphas refit on its validation
products, which are cold too). Alphas are fitted on validation NDCG@20, never on test.

Rows are merged into ``benchmarks/results/quality_ml100k.json`` under ``models`` (the gnn
rows already there are kept); curves and settings go under ``fusion``.

    .venv/bin/python benchmarks/quality_fusion.py [--epochs 25] [--tower-epochs 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import RESULTS, command, machine, now  # noqa: E402
from fusion.fit import (  # noqa: E402
    TextSide,
    build_text_side,
    candidate_score_fn,
    evaluate,
    fit_fusion,
)
from fusion.score import FusedScorer, fit_alpha, item_degree, popularity_alpha  # noqa: E402
from fusion.text import TextEncoder, product_text  # noqa: E402
from gnn.data import Split, item_cold_start_split, make_split  # noqa: E402
from gnn.metrics import long_tail_items  # noqa: E402
from gnn.train import TrainResult, TrainSettings, train_model  # noqa: E402
from kg.snapshot import GraphSnapshot, snapshot_from_tables  # noqa: E402

WORK = ROOT / ".kgrec" / "bench-fusion"
GRID = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
PIVOTS = (5.0, 20.0)
K = 20


def load_snapshot() -> GraphSnapshot:
    folder = WORK / "ml100k-snapshot"
    if (folder / "hetero.pt").exists():
        return GraphSnapshot.load(folder)
    from kg.extract.recbole import read_recbole_ml100k

    snapshot = snapshot_from_tables(read_recbole_ml100k())
    snapshot.save(folder)
    return snapshot


def gnn_run(snapshot: GraphSnapshot, split: Split, name: str, args) -> TrainResult:
    """Train the base model afresh (a cached run would outlive changes to the model code)."""
    # The settings of the gnn benchmark's rows (benchmarks/quality_ml100k.py).
    settings = TrainSettings(model=args.model, epochs=args.epochs, batch_size=4096, lr=args.lr,
                             eval_every=2, patience=4, max_minutes=args.max_minutes,
                             layers=3 if args.model == "lightgcn" else 2, seed=2020)
    return train_model(snapshot, split, settings, progress=True)


class Setting:
    """One split with its GNN, text sides, fits and slices."""

    def __init__(self, name: str, split: Split, gnn: TrainResult, item_text: torch.Tensor,
                 args) -> None:
        self.name, self.split = name, split
        self.gu = gnn.user_embeddings.tensor
        self.gi = gnn.product_embeddings.tensor
        self.degree = item_degree(split.pairs("train"), split.num_items)
        self.tail = long_tail_items(split)
        self.sides: dict[str, TextSide] = {
            kind: build_text_side(kind, split, item_text, tower_epochs=args.tower_epochs,
                                  progress=False)
            for kind in ("profile", "tower")
        }
        t0 = time.perf_counter()
        self.fits = {kind: fit_fusion(self.gu, self.gi, side, split, k=K, grid=GRID,
                                      pivots=PIVOTS, progress=True)
                     for kind, side in self.sides.items()}
        print(f"[{name}] alpha fits in {time.perf_counter() - t0:.0f}s: " + ", ".join(
            f"{k}: a={f.alpha.best} (valid {f.alpha.best_metric:.4f}), popularity "
            f"a_head={f.popularity.best} pivot={f.pivot} (valid {f.popularity.best_metric:.4f})"
            for k, f in self.fits.items()), flush=True)

    def alpha(self, kind: str, mode: str) -> float | torch.Tensor:
        fit = self.fits[kind]
        if mode == "fit":
            return fit.alpha.best
        return popularity_alpha(self.degree, fit.popularity.best, fit.pivot)

    def scorer(self, kind: str, alpha: float | torch.Tensor, normalise: str = "zscore"):
        side = self.sides[kind]
        return FusedScorer(self.gu, self.gi, side.users, side.items, alpha=alpha,
                           normalise=normalise)

    def fit_tail_alpha(self, kind: str) -> float:
        def run(a: float) -> float:
            fn = candidate_score_fn(self.scorer(kind, a), self.tail)
            return evaluate(fn, self.split, stage="valid", k=K, candidates=self.tail,
                            slices=("overall",))["overall"][f"ndcg@{K}"]

        return fit_alpha(run, GRID).best


ROWS = {
    # name: (text side, alpha mode or fixed value)
    "gnn_only": ("profile", 1.0),
    "text": ("profile", 0.0),
    "text_tower": ("tower", 0.0),
    "fused_fixed": ("profile", 0.5),
    "fused_fit": ("profile", "fit"),
    "fused_popularity": ("profile", "popularity"),
    "fused_tower_fit": ("tower", "fit"),
    "fused_tower_popularity": ("tower", "popularity"),
}


def evaluate_row(name: str, warm: Setting, cold: Setting) -> dict[str, object]:
    kind, mode = ROWS[name]
    out: dict[str, object] = {"text_side": kind}
    alpha = warm.alpha(kind, mode) if isinstance(mode, str) else mode
    res = evaluate(warm.scorer(kind, alpha), warm.split, stage="test", k=K)
    out.update(res)
    tail_alpha = warm.fit_tail_alpha(kind) if mode == "fit" else alpha
    fn = candidate_score_fn(warm.scorer(kind, tail_alpha), warm.tail)
    out["tail_candidates"] = evaluate(fn, warm.split, stage="test", k=K, candidates=warm.tail,
                                      slices=("overall",))["overall"]
    cold_alpha = cold.alpha(kind, mode) if isinstance(mode, str) else mode
    out["item_cold_start"] = evaluate(cold.scorer(kind, cold_alpha), cold.split, stage="test",
                                      k=K, slices=("overall",))["overall"]
    out["alpha"] = _alpha_record(alpha, mode, warm, kind)
    out["alpha_tail_candidates"] = _alpha_record(tail_alpha, mode, warm, kind)
    out["alpha_item_cold_start"] = _alpha_record(cold_alpha, mode, cold, kind)
    return out


def _alpha_record(alpha, mode, setting: Setting, kind: str):
    if isinstance(alpha, torch.Tensor):
        fit = setting.fits[kind]
        return {"alpha_head": fit.popularity.best, "pivot": fit.pivot,
                "rule": "alpha_head * min(1, log1p(degree) / log1p(pivot))"}
    return alpha


def features_row(snapshot: GraphSnapshot, item_text: torch.Tensor, args) -> dict[str, object]:
    """The base model trained with the MiniLM product vectors as input features (no blend):
    text enters the GNN itself, so never-seen products get embeddings from their text."""
    row: dict[str, object] = {"base_model": args.model, "product_features": "MiniLM 384-d"}
    settings = TrainSettings(model=args.model, epochs=args.epochs, batch_size=4096, lr=args.lr,
                             eval_every=2, patience=4, max_minutes=args.max_minutes, layers=2,
                             seed=2020)
    warm, cold = make_split(snapshot), item_cold_start_split(snapshot)
    res = train_model(snapshot, warm, settings, product_features=item_text, progress=True)
    row.update(evaluate(res.score, warm, stage="test", k=K))
    tail = long_tail_items(warm)
    row["tail_candidates"] = evaluate(res.score, warm, stage="test", k=K, candidates=tail,
                                      slices=("overall",))["overall"]
    res_cold = train_model(snapshot, cold, settings, product_features=item_text, progress=True)
    row["item_cold_start"] = evaluate(res_cold.score, cold, stage="test", k=K,
                                      slices=("overall",))["overall"]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lightgcn",
                        help="base model from gnn (lightgcn, mf, gcn, gat; default lightgcn)")
    parser.add_argument("--epochs", type=int, default=100, help="base model max epochs (100)")
    parser.add_argument("--max-minutes", type=float, default=4.0,
                        help="LightGCN wall-time cap per split (4, as the gnn benchmark)")
    parser.add_argument("--lr", type=float, default=5e-3, help="LightGCN learning rate (5e-3)")
    parser.add_argument("--tower-epochs", type=int, default=20, help="text tower epochs (20)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: the shared 2-core dev machine)")
    parser.add_argument("--out", default=str(RESULTS / "quality_ml100k.json"),
                        help="results JSON to merge into")
    parser.add_argument("--features-only", action="store_true",
                        help="only add the row '<model>_text_features': --model (gcn/gat) "
                        "trained with MiniLM product vectors as input features")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    snapshot = load_snapshot()
    encoder = TextEncoder(cache_dir=ROOT / ".kgrec" / "text-cache")
    item_text = encoder.encode(product_text(snapshot.products), progress=True)
    if args.features_only:
        if args.model not in ("gcn", "gat"):
            raise SystemExit("--features-only needs --model gcn or gat (models with inputs)")
        name = f"{args.model}_text_features"
        row = features_row(snapshot, item_text, args)
        path = Path(args.out)
        data = json.loads(path.read_text()) if path.exists() else {}
        data.setdefault("models", {})[name] = row
        data.setdefault("fusion", {})["features_row"] = {
            "command": command(), "machine": machine(), "date": now(),
            "seconds": round(time.perf_counter() - start, 1),
        }
        path.write_text(json.dumps(data, indent=1))
        print(f"{name}: overall NDCG@{K} {row['overall'][f'ndcg@{K}']:.4f}, tail candidates "  # type: ignore[index]
              f"{row['tail_candidates'][f'ndcg@{K}']:.4f}, item cold start "  # type: ignore[index]
              f"{row['item_cold_start'][f'ndcg@{K}']:.4f}; merged into {path}.")  # type: ignore[index]
        return 0
    settings = {}
    gnn_epochs: dict[str, int] = {}
    for name, split in (("temporal", make_split(snapshot)),
                        ("item_cold_start", item_cold_start_split(snapshot))):
        print(split.summary(), flush=True)
        gnn = gnn_run(snapshot, split, name, args)
        gnn_epochs[name] = gnn.best_epoch
        settings[name] = Setting(name, split, gnn, item_text, args)
    warm, cold = settings["temporal"], settings["item_cold_start"]
    warm_gnn_epoch = gnn_epochs["temporal"]
    rows = {}
    for name in ROWS:
        rows[name] = evaluate_row(name, warm, cold)
        r = rows[name]
        print(f"{name:24s} overall {r['overall'][f'ndcg@{K}']:.4f}  "  # type: ignore[index]
              f"long_tail {r['long_tail'][f'ndcg@{K}']:.4f}  "  # type: ignore[index]
              f"tail_cand {r['tail_candidates'][f'ndcg@{K}']:.4f}  "  # type: ignore[index]
              f"item_cold {r['item_cold_start'][f'ndcg@{K}']:.4f}", flush=True)  # type: ignore[index]
    # Normalisation chosen by measurement: best validation NDCG of each, tower side.
    norms: dict[str, dict[str, object]] = {}
    for kind in ("tower", "profile"):
        for method in ("zscore", "rank"):
            fit = fit_alpha(lambda a, m=method, kd=kind: evaluate(
                warm.scorer(kd, a, m), warm.split, stage="valid", k=K,
                slices=("overall",))["overall"][f"ndcg@{K}"], GRID)
            norms[f"{kind}/{method}"] = {"best_alpha": fit.best,
                                         "valid_ndcg@20": fit.best_metric, "curve": fit.curve}
    record = {
        "command": command(), "machine": machine(), "date": now(),
        "seconds": round(time.perf_counter() - start, 1),
        "k": K,
        "base_model": args.model,
        "base_training": {"epochs": args.epochs, "lr": args.lr, "max_minutes": args.max_minutes,
                     "batch_size": 4096, "eval_every": 2, "patience": 4,
                     "temporal_best_epoch": warm_gnn_epoch},
        "rows": "gnn_only = the fusion's base model alone (alpha 1); text = MiniLM profile "
                "similarity; text_tower = BPR-trained projection of MiniLM vectors; fused_* "
                "blend per-user z-scores: fixed alpha 0.5, alpha fitted on validation, or "
                "popularity-aware alpha(degree); *_tower_* use the text tower as text side",
        "tower_epochs": args.tower_epochs,
        "splits": {n: s.split.summary() for n, s in settings.items()},
        "curves": {
            f"{split}/{kind}": {
                "constant": fit.alpha.curve,
                "popularity": [list(x) for x in fit.curve_popularity],
            }
            for split, s in settings.items() for kind, fit in s.fits.items()
        },
        "normalisation": norms,
    }
    path = Path(args.out)
    data = json.loads(path.read_text()) if path.exists() else {}
    for row in rows.values():
        row["base_model"] = args.model
    data.setdefault("models", {}).update(rows)
    by_base = (data.get("fusion") or {}).get("by_base", {})
    by_base[args.model] = {
        name: {part: row[part][f"ndcg@{K}"]  # type: ignore[index]
               for part in ("overall", "long_tail", "tail_candidates", "item_cold_start")}
        for name, row in rows.items()
    }
    record["by_base"] = by_base  # NDCG@20 of the fusion rows on each base model run so far
    data["fusion"] = record
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    print(f"Fusion quality on ml-100k in {record['seconds']:.0f}s; rows "
          f"{', '.join(rows)} merged into {path}. z-score vs rank (tower, valid NDCG@20): "
          f"{norms['tower/zscore']['valid_ndcg@20']:.4f} vs "
          f"{norms['tower/rank']['valid_ndcg@20']:.4f}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
