"""The recommendations table and its IO: the long table of a top-K, Parquet files,
``RECOMMENDED`` write-back to a graph store and the one-paragraph summary of a run.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from torch import Tensor
from tqdm.auto import tqdm

from kgrec.errors import UsageError
from kgrec.files import atomic_write
from kgrec.fusion.topk import TopK
from kgrec.ids import IdMap
from kgrec.kg import schema
from kgrec.kg.store.base import GraphStore

#: Columns of the Parquet output.
OUTPUT_COLUMNS = ["user_id", "product_id", "rank", "score", "score_gnn", "score_text"]


def topk_frame(
    top: TopK, rows: Tensor, row_ids: IdMap, col_ids: IdMap, *, per: str = "user"
) -> pd.DataFrame:
    """The long table of a :class:`TopK`: one row per (row, rank), padding dropped.

    Args:
        top: Result of :func:`chunked_topk`.
        rows: The row indices that were scored.
        row_ids, col_ids: Id maps of rows and columns (users and products, or the reverse).
        per: ``"user"`` (rows are users) or ``"item"`` (rows are products).
    """
    k = top.index.shape[1]
    valid = (top.index >= 0).flatten().numpy()
    row_idx = rows.long().repeat_interleave(k).numpy()[valid]
    col_idx = top.index.flatten().numpy()[valid]
    rank = np.tile(np.arange(1, k + 1), len(rows))[valid]
    row_col, col_col = ("user_id", "product_id") if per == "user" else ("product_id", "user_id")
    frame = pd.DataFrame(
        {
            row_col: row_ids.ids_of(row_idx).astype(str),
            col_col: col_ids.ids_of(col_idx).astype(str),
            "rank": rank.astype("int64"),
            "score": top.score.flatten().numpy()[valid].astype("float64"),
            "score_gnn": top.score_gnn.flatten().numpy()[valid].astype("float64"),
            "score_text": top.score_text.flatten().numpy()[valid].astype("float64"),
        }
    )
    frame["per"] = per
    return frame[[*OUTPUT_COLUMNS, "per"]]


def recommendation_frame(
    frame: pd.DataFrame, *, model_version: str, created_at: int | None = None
) -> pd.DataFrame:
    """Scores table -> ``RECOMMENDED`` relationship rows (``kgrec.kg.schema.rel_columns``)."""
    if not model_version:
        raise UsageError("model_version must be a non-empty string")
    out = pd.DataFrame(
        {
            "src": frame["user_id"].astype("string"),
            "dst": frame["product_id"].astype("string"),
            "score": frame["score"].astype("Float64"),
            "score_gnn": frame["score_gnn"].astype("Float64"),
            "score_text": frame["score_text"].astype("Float64"),
            "rank": frame["rank"].astype("Int64"),
            "model_version": pd.Series(model_version, index=frame.index, dtype="string"),
            "created_at": pd.Series(
                int(time.time()) if created_at is None else created_at,
                index=frame.index, dtype="Int64",
            ),
        }
    )
    return out[schema.rel_columns(schema.RECOMMENDED)]


def write_back(
    store: GraphStore,
    frame: pd.DataFrame,
    *,
    model_version: str,
    batch_size: int = 5_000,
    progress: bool = True,
) -> int:
    """Write scores to the store as ``RECOMMENDED`` relationships, in batches of about
    ``batch_size`` rows (in one call where the store rewrites its table on each call).

    Idempotent per model version: the store merges on (user, product, model_version), so a
    rerun updates the same relationships instead of adding new ones.
    """
    rows = recommendation_frame(frame, model_version=model_version)
    # Stores replace a user's recommendations of a version per call, so a user's rows must
    # never be split over two batches: sort by user and cut only at user boundaries.
    rows = rows.sort_values(["src", "rank"], kind="stable").reset_index(drop=True)
    bounds = ([(0, len(rows))] if store.rewrites_recommendations
              else user_batches(rows["src"].to_numpy(), batch_size))
    written = 0
    for start, end in tqdm(bounds, desc="write-back", unit="batch", disable=not progress,
                           leave=False):
        written += store.write_recommendations(
            rows.iloc[start:end].reset_index(drop=True), progress=False
        )
    return written


def new_model_version(model: str) -> str:
    """The version a fusion fitted now writes its recommendations under: ``<model>-fusion-``
    and the unix time, a ``<family>-<number>`` name that :func:`prune_versions` orders."""
    return f"{model}-fusion-{int(time.time())}"


def prune_versions(store: GraphStore, current: str, keep: int) -> list[str]:
    """Delete the ``RECOMMENDED`` relationships of the older versions of ``current``'s family
    (``<family>-<number>``, as :func:`new_model_version` names them), keeping the ``keep`` newest,
    ``current`` among them; returns the versions deleted. Without it every run would add
    its recommendations to the store for good."""
    family, _, number = current.rpartition("-")
    if not family or not number.isdigit():
        return []
    ours = [v for v in store.recommendation_versions()
            if v.rpartition("-")[0] == family and v.rpartition("-")[2].isdigit()]
    ours.sort(key=lambda v: int(v.rpartition("-")[2]), reverse=True)
    older = [v for v in ours if v != current][max(keep - 1, 0):]
    if older:
        store.delete_recommendation_versions(older)
    return older


def user_batches(users: np.ndarray, batch_size: int) -> list[tuple[int, int]]:
    """(start, end) row ranges of about ``batch_size`` rows over rows sorted by user, never
    splitting one user's rows (a user with more rows than ``batch_size`` gets one batch)."""
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    n = len(users)
    change = np.flatnonzero(users[1:] != users[:-1]) + 1 if n else np.zeros(0, dtype=int)
    starts = np.r_[0, change] if n else np.zeros(0, dtype=int)
    out: list[tuple[int, int]] = []
    begin = 0
    for start in starts[1:]:
        if start - begin >= batch_size:
            out.append((begin, int(start)))
            begin = int(start)
    if n:
        out.append((begin, n))
    return out


def write_parquet(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write the scores table to Parquet (parent folders created; atomically, so a failed
    write leaves no half file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def describe(frame: pd.DataFrame, seconds: float, per: str, candidates: int) -> str:
    """One-paragraph summary of a scoring run against ``candidates`` columns."""
    rows = frame["user_id" if per == "user" else "product_id"].nunique()
    return (
        f"Scored {rows:,} {'users' if per == 'user' else 'products'} against "
        f"{candidates:,} candidate {'products' if per == 'user' else 'users'} in "
        f"{seconds:.1f} s, keeping {len(frame):,} recommendations "
        f"({frame['product_id'].nunique():,} distinct products, "
        f"{frame['user_id'].nunique():,} distinct users); mean fused score "
        f"{frame['score'].mean():.3f}."
        if len(frame)
        else f"Scored nothing in {seconds:.1f} s: no candidates left after exclusions."
    )
