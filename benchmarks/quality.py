"""Ranking quality of every kgrec model, the text sides and the fusion, on one dataset.

Datasets: ``ml-100k`` (MovieLens-100K + its Freebase knowledge graph) and ``scientific``
(Amazon Industrial & Scientific: category tree and brands as the knowledge graph, rich
product text). Two splits: the per-user temporal split (slices ``overall``, ``long_tail``,
``cold_start``, and ``tail_candidates``: the ranking restricted to long-tail products, the
batch-scoring job) and the item cold-start split (``item_cold_start``: 10% of the products
held out with all their interactions). Every model trains with the same settings
(``kgrec.settings.TrainSettings`` defaults) and early stopping on validation NDCG@20; the
fusion is fitted per job on validation only; the test split is read once at the end.

Rows (``models``): pop, mf, lightgcn, gcn, gat; ``text:profile`` and ``text:tower`` (a
text side alone; ``text_sides`` records the profile's half-life chosen on validation);
``gat+fusion`` (per-job fit: text side and item-dependent alpha chosen on validation).
``ablation``: gat without the knowledge graph, without text features, and its fusion with
a constant alpha vs the item-dependent alpha. ``recbole``: RecBole 1.2.1 on the same
exported split, read from ``recbole_peer.json`` (``benchmarks/recbole_peer.py``).
Each kgrec model's top-20 test recommendations are written as Parquet and re-scored by
``benchmarks/eval_recommendations.py`` (independent code) as a check. ``targets`` states
each target of the quality issue and by how much it is met or missed.

    .venv/bin/python benchmarks/quality.py --dataset ml-100k
    .venv/bin/python benchmarks/quality.py --dataset scientific --models gat,lightgcn
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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
    text_vectors,
    write_json,
)
from kgrec.fusion.alpha import AlphaFunction  # noqa: E402
from kgrec.fusion.fit import (  # noqa: E402
    FusionFit,
    JobFit,
    Sources,
    build_text_side,
    fit_fusion,
    fused_table,
)
from kgrec.fusion.output import topk_frame  # noqa: E402
from kgrec.fusion.seen import SeenIndex  # noqa: E402
from kgrec.fusion.text import has_text, text_confidence  # noqa: E402
from kgrec.fusion.topk import chunked_topk, dot_scorer  # noqa: E402
from kgrec.gnn.export import export_recbole_dataset  # noqa: E402
from kgrec.gnn.metrics import evaluate_ranking, format_table, long_tail_items  # noqa: E402
from kgrec.gnn.result import TrainResult  # noqa: E402
from kgrec.gnn.split import Split, item_cold_start_split, make_split  # noqa: E402
from kgrec.gnn.train import train_model  # noqa: E402
from kgrec.kg.snapshot import GraphSnapshot  # noqa: E402
from kgrec.settings import MODEL_NAMES, TrainSettings  # noqa: E402

K = 20
#: Ablations of the GAT: name -> settings overrides.
ABLATIONS = {"gat_no_kg": {"kg_hops": 0}, "gat_no_text": {"text_features": False}}
RESULT_FILES = {"ml-100k": "quality_ml100k.json", "scientific": "quality_scientific.json"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--dataset", choices=DATASETS, required=True)
    p.add_argument("--models", default=",".join(MODEL_NAMES), help="comma-separated (default all)")
    p.add_argument("--no-ablation", action="store_true", help="skip the ablation rows")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="safety net only: a wall-time cap per training (default none; where "
                        "it acts the row is reported as not converged and depends on the load)")
    p.add_argument("--tower-epochs", type=int, default=20, help="text tower epochs (20)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: shared machine)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--out", type=Path, help="results JSON (default "
                   "benchmarks/results/quality_<dataset>.json)")
    p.add_argument("--merge", action="store_true",
                   help="keep the rows of models not rerun from the existing results file "
                   "(their command and date stay under training); targets are recomputed")
    return p.parse_args(argv)


class Run:
    """One split of the dataset: its text sides, the trained models and their tables."""

    def __init__(self, name: str, snapshot: GraphSnapshot, split: Split, item_text,
                 args: argparse.Namespace) -> None:
        self.name, self.snapshot, self.split, self.args = name, snapshot, split, args
        self.item_text = item_text
        self.degree = split.item_counts()
        self.confidence = text_confidence(snapshot.products)
        self.tail = long_tail_items(split)
        self.sides = {} if item_text is None else {
            kind: build_text_side(kind, split, item_text, tower_epochs=args.tower_epochs)
            for kind in ("profile", "tower")}
        self.trained: dict[str, TrainResult] = {}

    def train(self, row: str, model: str, overrides: dict[str, Any]) -> TrainResult:
        settings = TrainSettings(model=model, max_minutes=self.args.max_minutes,
                                 device=self.args.device, **overrides)
        features = self.item_text if settings.text_features else None
        result = train_model(self.snapshot, self.split, settings, product_features=features,
                             progress=False)
        print(f"[{self.name}] {row}: {result.summary()}", flush=True)
        self.trained[row] = result
        return result

    def table(self, result: TrainResult) -> dict[str, dict[str, float]]:
        if self.split.kind == "item_cold_start":
            return {"item_cold_start": evaluate_ranking(result.score, self.split, k=K,
                                                        slices=("overall",))["overall"]}
        table = evaluate_ranking(result.score, self.split, stage="test", k=K)
        table["tail_candidates"] = evaluate_ranking(
            result.score, self.split, stage="test", k=K, candidates=self.tail,
            slices=("overall",))["overall"]
        return table

    def fit(self, result: TrainResult, item_dependent: bool = True) -> FusionFit:
        jobs = ("full",) if self.split.kind == "item_cold_start" else ("full", "tail")
        return fit_fusion(self.sources(*_vectors(result)), self.split, jobs=jobs, k=K,
                          item_dependent=item_dependent)

    def sources(self, users: torch.Tensor, items: torch.Tensor) -> Sources:
        return Sources(users, items, self.sides, self.degree, self.confidence)

    def fused(self, users: torch.Tensor, items: torch.Tensor, fit: FusionFit
              ) -> dict[str, dict[str, float]]:
        table = fused_table(Sources(users, items, fit.sides, self.degree, self.confidence), fit,
                            self.split, k=K)
        if self.split.kind == "item_cold_start":
            return {"item_cold_start": table["overall"]}
        return table

    def text_only(self, side: str) -> dict[str, dict[str, float]]:
        jobs = {job: JobFit(job, side, AlphaFunction.constant(0.0), 0.0, 0.0)
                for job in ("full", "tail")}
        # Alpha 0: the GNN side is never read, zeros stand in for it.
        return self.fused(torch.zeros(self.split.num_users, 1),
                          torch.zeros(self.split.num_items, 1), FusionFit(jobs, self.sides))


def write_recommendations(run: Run, result: TrainResult, folder: Path, row: str) -> Path:
    """Top-20 of every test user, training and validation pairs excluded, as Parquet."""
    split, snapshot = run.split, run.snapshot
    users = torch.unique(split.pairs("test")[0])
    seen = SeenIndex.from_edges(torch.cat([split.pairs("train"), split.pairs("valid")], 1),
                                split.num_users)
    scorer = dot_scorer(result.user_embeddings.tensor, result.product_embeddings.tensor)
    top = chunked_topk(scorer, users, K, num_columns=split.num_items, seen=seen,
                       progress=False)
    frame = topk_frame(top, users, snapshot.id_maps["user"], snapshot.id_maps["product"])
    path = folder / f"{row}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


def independent_check(recs: Path, test_file: Path, table: dict) -> dict[str, Any]:
    """Recall/NDCG@20 recomputed by benchmarks/eval_recommendations.py (a subprocess)."""
    out = recs.with_suffix(".eval.json")
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "eval_recommendations.py"),
                    str(recs), str(test_file), "--json", str(out)], check=True,
                   capture_output=True, text=True)
    figures = json.loads(out.read_text())
    mine = table["overall"]
    return {"recall@20": figures["recall@20"], "ndcg@20": figures["ndcg@20"],
            "agrees": all(abs(figures[m] - mine[m]) < 5e-5 for m in ("recall@20", "ndcg@20"))}


def recbole_rows(dataset: str) -> dict[str, Any]:
    """RecBole's figures on the same split, from recbole_peer.json (best setting per model)."""
    path = RESULTS / "recbole_peer.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text()).get("datasets", {}).get(dataset, {})
    out: dict[str, Any] = {}
    for model, by_setting in (data.get("recbole") or {}).items():
        settings = {s: v for s, v in by_setting.items() if "ndcg@20" in v}
        if not settings:
            continue
        best = max(settings, key=lambda s: settings[s]["ndcg@20"])
        out[model] = {"recall@20": settings[best]["recall@20"],
                      "ndcg@20": settings[best]["ndcg@20"], "setting": best,
                      "by_setting": {s: {"recall@20": v["recall@20"], "ndcg@20": v["ndcg@20"]}
                                     for s, v in settings.items()}}
    return out


def _ndcg(rows: dict, name: str, part: str) -> float:
    value = rows.get(name, {}).get(part, {}).get(f"ndcg@{K}", float("nan"))
    return float("nan") if value is None else float(value)


def targets(rows: dict, recbole: dict, dataset: str) -> list[dict[str, Any]]:
    """Each target of the quality issue: the figures compared, the ratio and the verdict."""
    gnns = [m for m in MODEL_NAMES if m != "pop" and m in rows]
    best_gnn = {part: max((_ndcg(rows, m, part) for m in gnns), default=float("nan"))
                for part in ("overall", "tail_candidates")}
    singles = gnns + [m for m in rows if m.startswith("text:")]
    best_single = max((_ndcg(rows, m, "overall") for m in singles), default=float("nan"))
    best_text_cold = max((_ndcg(rows, m, "item_cold_start") for m in rows
                          if m.startswith("text:")), default=float("nan"))
    peer = max((v["ndcg@20"] for v in recbole.values()), default=float("nan"))
    tail_goal = 1.10 if dataset == "ml-100k" else 1.5
    checks = [
        ("gat overall >= kgrec lightgcn", _ndcg(rows, "gat", "overall"),
         _ndcg(rows, "lightgcn", "overall"), 1.0),
        ("gat overall >= RecBole's best model", _ndcg(rows, "gat", "overall"), peer, 1.0),
        ("fused overall >= best single source", _ndcg(rows, "gat+fusion", "overall"),
         best_single, 1.0),
        (f"fused tail candidates >= {tail_goal:.2f}x best GNN alone",
         _ndcg(rows, "gat+fusion", "tail_candidates"), best_gnn["tail_candidates"], tail_goal),
        ("fused item cold start >= 2x text only",
         _ndcg(rows, "gat+fusion", "item_cold_start"), best_text_cold, 2.0),
        ("kgrec mf overall >= RecBole BPR", _ndcg(rows, "mf", "overall"),
         recbole.get("BPR", {}).get("ndcg@20", float("nan")), 1.0),
        ("fused item cold start far above popularity (>= 5x)",
         _ndcg(rows, "gat+fusion", "item_cold_start"),
         max(_ndcg(rows, "pop", "item_cold_start"), 1e-4), 5.0),
    ]
    out = []
    for name, value, reference, factor in checks:
        ratio = value / reference if reference and not math.isnan(reference) else float("nan")
        out.append({"target": name, "value": value, "reference": reference,
                    "required_ratio": factor, "ratio": ratio,
                    "met": bool(ratio >= factor) if not math.isnan(ratio) else None,
                    "shortfall": None if math.isnan(ratio) or ratio >= factor
                    else factor * reference - value})
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started, host, t0 = now(), machine(), time.perf_counter()
    out_path = args.out or RESULTS / RESULT_FILES[args.dataset]
    work = ROOT / ".kgrec" / "bench" / args.dataset
    snapshot = load_dataset(args.dataset)
    item_text = None
    if has_text(snapshot.products):
        item_text = text_vectors(snapshot, progress=True)
    warm = Run("temporal", snapshot, make_split(snapshot), item_text, args)
    cold = Run("item_cold_start", snapshot, item_cold_start_split(snapshot), item_text, args)
    export = export_recbole_dataset(warm.split, snapshot, work / "split", "kgrec")
    test_file = Path(export.paths["test"])
    rows: dict[str, dict[str, Any]] = {}
    training: dict[str, Any] = {}
    checks: dict[str, Any] = {}
    models = args.models.split(",")
    variants = [(m, m, {}) for m in models]
    if not args.no_ablation and "gat" in models:
        variants += [(name, "gat", over) for name, over in ABLATIONS.items()]
    for row, model, overrides in variants:
        res = warm.train(row, model, overrides)
        table = warm.table(res)
        res_cold = cold.train(row, model, overrides)
        table.update(cold.table(res_cold))
        rows[row] = table
        training[row] = {**_training_record(res, res_cold), "command": command(),
                         "date": started}
        if model != "pop":
            recs = write_recommendations(warm, res, work / "recommendations", row)
            checks[row] = independent_check(recs, test_file, table)
        print(format_table({row: table}, K), flush=True)
    for side in warm.sides:
        rows[f"text:{side}"] = {**warm.text_only(side), **cold.text_only(side)}
    fusion: dict[str, Any] = {}
    ablation: dict[str, Any] = {}
    if "gat" in warm.trained and warm.sides:
        for name, item_dependent in (("gat+fusion", True), ("gat+fusion_constant", False)):
            fits = (warm.fit(warm.trained["gat"], item_dependent),
                    cold.fit(cold.trained["gat"], item_dependent))
            table = {**warm.fused(*_vectors(warm.trained["gat"]), fits[0]),
                     **cold.fused(*_vectors(cold.trained["gat"]), fits[1])}
            (rows if name == "gat+fusion" else ablation)[name] = table
            fusion[name] = {"temporal": {j: f.to_dict() for j, f in fits[0].jobs.items()},
                            "item_cold_start": {j: f.to_dict() for j, f in fits[1].jobs.items()}}
            print(f"{name}: {fits[0].summary()} | cold: {fits[1].summary()}", flush=True)
    for name in ABLATIONS:
        if name in rows:
            ablation[name] = rows.pop(name)
    if "gat+fusion" in rows:
        ablation["gat+fusion_item_alpha"] = rows["gat+fusion"]
    if "gat" in rows:
        ablation["gat"] = rows["gat"]
    previous = json.loads(out_path.read_text()) if args.merge and out_path.exists() else {}
    for key, fresh in (("models", rows), ("ablation", ablation), ("training", training),
                       ("independent_check", checks), ("fusion", fusion)):
        fresh.update({k: v for k, v in previous.get(key, {}).items() if k not in fresh})
    recbole = recbole_rows(args.dataset)
    result = {
        "dataset": args.dataset,
        "models": rows,
        "ablation": ablation,
        "recbole": recbole,
        "targets": targets(rows, recbole, args.dataset),
        "fusion": fusion,
        "text_sides": {run.name: {kind: {"half_life_events": side.half_life_events}
                                  for kind, side in run.sides.items()} for run in (warm, cold)},
        "training": training,
        "independent_check": checks,
        "split": {"temporal": warm.split.summary(), "item_cold_start": cold.split.summary(),
                  "k": K, "protocol": "full ranking over all products, training (and "
                  "validation) items excluded; early stopping on validation NDCG@20; "
                  "tail_candidates ranks long-tail products only"},
        "settings": dataclasses.asdict(TrainSettings()),
        "command": command(), "machine": host, "date": started,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(out_path, result)
    print(format_table({**rows, **{f"ablation:{k}": v for k, v in ablation.items()}}, K))
    for check in result["targets"]:
        verdict = {True: "met", False: "MISSED", None: "n/a"}[check["met"]]
        print(f"  {verdict:>6}  {check['target']}: {check['value']:.4f} vs "
              f"{check['reference']:.4f} (ratio {check['ratio']:.3f}, needs "
              f"{check['required_ratio']:.2f})")
    print(f"{args.dataset} quality in {result['seconds']:.0f}s; written to {out_path}.")
    return 0


def _training_record(res: TrainResult, res_cold: TrainResult) -> dict[str, Any]:
    def one(r: TrainResult) -> dict[str, Any]:
        epochs = [h for h in r.history if "loss" in h]
        per_epoch = sum(h["seconds"] for h in epochs) / max(len(epochs), 1)
        return {"epochs_run": len(epochs), "best_epoch": r.best_epoch,
                "seconds": round(r.seconds, 1), "seconds_per_epoch": round(per_epoch, 3),
                "stop_reason": r.stop_reason, "converged": r.converged}

    return {"temporal": one(res), "item_cold_start": one(res_cold)}


def _vectors(result: TrainResult) -> tuple[torch.Tensor, torch.Tensor]:
    return result.user_embeddings.tensor, result.product_embeddings.tensor


if __name__ == "__main__":
    sys.exit(main())
