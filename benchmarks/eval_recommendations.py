"""Independent Recall@K / NDCG@K of a recommendations file against a RecBole test file.

Reads a recommendations file (Parquet, or CSV/TSV; columns ``user_id``, ``product_id``,
``rank`` with rank 1 the best; the top K per user, training and validation items already
excluded, as kgrec's ``score`` command and ``kgrec.fusion.output`` write them) and the exported
``NAME.test.inter`` (RecBole atomic file: tab-separated, header ``user_id:token
item_id:token ...``, one row per test pair; ``kgrec.gnn.export.export_recbole_dataset`` writes it).
It uses numpy and pandas only, nothing of kgrec's packages, so that kgrec's figures can be
recomputed by code that shares none of kgrec's evaluation path.

Definitions (those of PyTorch Geometric's ``LinkPredRecall`` / ``LinkPredNDCG``, which
``kgrec.gnn.metrics.evaluate_ranking`` uses, and of RecBole's ``Recall`` / ``NDCG``). For a user
``u`` with test items ``T_u`` (``|T_u| >= 1``) and recommended list ``R_u`` (the rows of
rank ``1..K``, in rank order), let ``hit(r) = 1`` if the item at rank ``r`` is in ``T_u``:

- ``Recall@K(u) = sum_{r<=K} hit(r) / |T_u|`` (the denominator is ``|T_u|``, NOT
  ``min(|T_u|, K)``: a user with 30 test items scores at most 20/30);
- ``NDCG@K(u) = DCG / IDCG`` with ``DCG = sum_{r<=K} hit(r) / log2(r + 1)`` and
  ``IDCG = sum_{r=1}^{min(|T_u|, K)} 1 / log2(r + 1)``;
- each metric is the mean over every user with at least one test pair; such a user without
  recommendations counts as 0. Recommendations of users without test pairs are ignored.

Duplicate (user, product) rows or ranks in a recommendations file are an error.

    .venv/bin/python benchmarks/eval_recommendations.py recs.parquet NAME.test.inter
    .venv/bin/python benchmarks/eval_recommendations.py recs.parquet NAME.test.inter \\
        --seen NAME.train.inter NAME.valid.inter --check results.json:models.lightgcn.overall
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REC_COLUMNS = ("user_id", "product_id", "rank")


def read_atomic_pairs(path: str | Path) -> pd.DataFrame:
    """``(user_id, product_id)`` of a RecBole ``.inter`` file, ids as strings."""
    frame = pd.read_csv(path, sep="\t", dtype=str)
    frame.columns = [c.split(":", 1)[0] for c in frame.columns]
    missing = {"user_id", "item_id"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
    if frame[["user_id", "item_id"]].isna().any().any():
        raise ValueError(f"{path}: empty user_id or item_id")
    return frame[["user_id", "item_id"]].rename(columns={"item_id": "product_id"})


def read_recommendations(path: str | Path) -> pd.DataFrame:
    """``user_id``, ``product_id`` (strings) and ``rank`` (int) of a Parquet or CSV/TSV file."""
    path = Path(path)
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        sep = "\t" if path.suffix in (".tsv", ".inter") else ","
        frame = pd.read_csv(path, sep=sep, dtype={"user_id": str, "product_id": str})
    missing = set(REC_COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
    frame = frame[list(REC_COLUMNS)].copy()
    frame["user_id"] = frame["user_id"].astype(str)
    frame["product_id"] = frame["product_id"].astype(str)
    if frame["rank"].isna().any():
        raise ValueError(f"{path}: empty rank")
    frame["rank"] = frame["rank"].astype("int64")
    if (frame["rank"] < 1).any():
        raise ValueError(f"{path}: ranks start at 1")
    for key in (["user_id", "product_id"], ["user_id", "rank"]):
        dup = frame.duplicated(key)
        if dup.any():
            row = frame[dup].iloc[0]
            raise ValueError(f"{path}: duplicate {'/'.join(key)} for user {row['user_id']!r}")
    return frame


def evaluate(recs: pd.DataFrame, test: pd.DataFrame, k: int = 20) -> dict[str, float]:
    """Recall@k and NDCG@k (see the module docstring) plus counts.

    Args:
        recs: ``user_id``, ``product_id``, ``rank`` (see :func:`read_recommendations`).
        test: ``user_id``, ``product_id`` test pairs (see :func:`read_atomic_pairs`).
        k: cut-off; rows with rank > k are ignored.
    """
    test = test.drop_duplicates(["user_id", "product_id"])
    n_test = test.groupby("user_id").size()
    if n_test.empty:
        raise ValueError("the test file holds no pairs")
    top = recs[recs["rank"] <= k]
    # The position in the list (1..k) is the order of ranks (a list may skip a rank).
    top = top.sort_values(["user_id", "rank"], kind="stable")
    top = top.assign(pos=top.groupby("user_id").cumcount() + 1)
    hits = top.merge(test, on=["user_id", "product_id"], how="inner")
    gain = 1.0 / np.log2(hits["pos"].to_numpy("float64") + 1.0)
    per_user = pd.DataFrame({"user_id": hits["user_id"], "hit": 1.0, "dcg": gain})
    per_user = per_user.groupby("user_id")[["hit", "dcg"]].sum().reindex(n_test.index,
                                                                        fill_value=0.0)
    ideal = np.cumsum(1.0 / np.log2(np.arange(1, k + 1) + 1.0))
    idcg = ideal[np.minimum(n_test.to_numpy(), k) - 1]
    recall = per_user["hit"].to_numpy() / n_test.to_numpy()
    ndcg = per_user["dcg"].to_numpy() / idcg
    covered = n_test.index.isin(top["user_id"].unique())
    return {
        f"recall@{k}": float(recall.mean()),
        f"ndcg@{k}": float(ndcg.mean()),
        "users": int(len(n_test)),
        "users_without_recommendations": int((~covered).sum()),
        "test_pairs": int(n_test.sum()),
        "hits": int(len(hits)),
    }


def seen_leaks(recs: pd.DataFrame, seen: list[pd.DataFrame], k: int = 20) -> int:
    """Recommended (rank <= k) pairs that are in the given (training/validation) files."""
    if not seen:
        return 0
    pairs = pd.concat(seen, ignore_index=True).drop_duplicates()
    top = recs[recs["rank"] <= k][["user_id", "product_id"]]
    return int(len(top.merge(pairs, on=["user_id", "product_id"], how="inner")))


def _lookup(path_spec: str) -> dict[str, float]:
    file, _, key = path_spec.partition(":")
    node = json.loads(Path(file).read_text())
    for part in filter(None, key.split(".")):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"{file}: no key {key!r} (stops at {part!r})")
        node = node[part]
    if not isinstance(node, dict):
        raise KeyError(f"{file}: {key!r} is not an object of metrics")
    return node


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Definitions: see the module docstring.")
    p.add_argument("recommendations", type=Path,
                   help="Parquet or CSV/TSV with user_id, product_id, rank")
    p.add_argument("test", type=Path, help="RecBole NAME.test.inter")
    p.add_argument("--k", type=int, default=20, help="cut-off (20)")
    p.add_argument("--seen", type=Path, nargs="*", default=[],
                   help="NAME.train.inter / NAME.valid.inter: count recommended pairs that "
                        "are in them (should be 0)")
    p.add_argument("--check", metavar="FILE[:dotted.key]",
                   help="JSON holding recall@K/ndcg@K to compare with (e.g. "
                        "benchmarks/results/quality_ml100k.json:models.lightgcn.overall); "
                        "exit 1 when a value differs by more than --tol")
    p.add_argument("--tol", type=float, default=5e-5, help="tolerance of --check (5e-5)")
    p.add_argument("--json", type=Path, help="write the figures to this JSON file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    recs = read_recommendations(args.recommendations)
    test = read_atomic_pairs(args.test)
    res = evaluate(recs, test, args.k)
    res["seen_in_recommendations"] = seen_leaks(recs, [read_atomic_pairs(p) for p in args.seen],
                                                args.k)
    print(f"{'metric':<32} {'value':>10}")
    print("-" * 43)
    for key, value in res.items():
        print(f"{key:<32} {value:>10.4f}" if isinstance(value, float) else
              f"{key:<32} {value:>10}")
    status = 0
    if args.check:
        expected = _lookup(args.check)
        print(f"\ncheck against {args.check}:")
        for key in (f"recall@{args.k}", f"ndcg@{args.k}"):
            if key not in expected:
                print(f"  {key}: not in the file")
                status = 1
                continue
            diff = abs(res[key] - float(expected[key]))
            ok = diff <= args.tol
            status |= 0 if ok else 1
            print(f"  {key}: ours {res[key]:.6f}, file {float(expected[key]):.6f}, "
                  f"|diff| {diff:.2e} {'ok' if ok else 'MISMATCH'}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    if res["seen_in_recommendations"]:
        print(f"warning: {res['seen_in_recommendations']} recommended pairs are training or "
              "validation pairs", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
