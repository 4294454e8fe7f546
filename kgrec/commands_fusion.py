"""``kgrec fuse``, ``kgrec score`` and ``kgrec search``: text fusion and batch scoring.

``fuse`` builds the text side for a trained GNN run and fits the blend weight on the
validation split; ``score`` writes the top-K long-tail (or cold-start, all, listed)
products per user, or the top-K users per product, to Parquet and optionally back to the
store; ``search`` ranks products for one user by a free-text query blended with the GNN.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from kgrec.config import Config, cli_config, default_help
from kgrec.errors import InputError, ModelError
from kgrec.settings import BACKENDS


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``fuse``, ``score`` and ``search`` sub-commands."""
    _register_fuse(sub)
    _register_score(sub)
    _register_search(sub)


def _register_fuse(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser(
        "fuse",
        help="fit the GNN + text fusion of a training run",
        description=(
            "Encode product texts (cached), build the text side (a text tower trained with "
            "BPR on the training interactions, or raw text profiles), and fit the GNN weight "
            "alpha on the validation split (constant and popularity-aware); writes the "
            "artefacts to OUT (default RUN/fusion) and prints the validation curve."
        ),
    )
    _common(f)
    f.add_argument("--text-side", choices=("all", "tower", "profile"),
                   help="text sides to compare: all (profile and tower, each against "
                   "the GNN alone), tower (BPR-trained projection of the text vectors) or "
                   f"profile (raw text-profile similarity) {default_help('fusion.text_side')}")
    f.add_argument("--tower-epochs", type=int,
                   help=f"text tower epochs {default_help('fusion.tower_epochs')}")
    f.add_argument("--alpha-function", choices=("item", "constant"),
                   help="item: the GNN weight may depend on each product's degree and text "
                   "(constants compete too); constant: one weight for all products "
                   + default_help("fusion.alpha_function"))
    f.add_argument("--out", help="artefact folder (default: RUN/fusion)")
    f.set_defaults(func=run_fuse)


def _register_score(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "score",
        help="batch-score long-tail / cold-start products",
        description=(
            "Exact top-K over chunks (never the whole users x products matrix), products "
            "the user already interacted with excluded. Output Parquet: user_id, product_id, "
            "rank, score (fused), score_gnn, score_text."
        ),
    )
    _common(s)
    s.add_argument("--fusion", help="artefact folder of `kgrec fuse` (default: RUN/fusion)")
    s.add_argument("--items", default="long-tail",
                   help="candidate products: long-tail (outside the head covering 80%% of "
                   "events, cold included; default), cold-start (no events), all, or a FILE "
                   "of product ids (one per line, or CSV/Parquet with product_id)")
    s.add_argument("--per", choices=("user", "item"), default="user",
                   help="user: top-K products per user (default); item: top-K users per product")
    s.add_argument("--top-k", type=int,
                   help=f"results per row, at least 1 {default_help('score.top_k')}")
    s.add_argument("--chunk-size", type=int, help="rows scored at once; memory ~ chunk x "
                   f"candidates {default_help('score.chunk_size')}")
    s.add_argument("--alpha", type=float,
                   help="constant GNN weight overriding the fitted one (0 text only, 1 GNN only)")
    s.add_argument("--exclude", choices=("all", "train", "train+valid"), default="all",
                   help="pairs never recommended: every interaction in the snapshot (default, "
                   "for serving), or the run split's train / train+valid pairs (a ranking "
                   "that can be evaluated on its validation / test pairs)")
    s.add_argument("--out", help=f"Parquet output {default_help('score.out')}")
    s.add_argument("--write-back", action="store_true",
                   help="also write RECOMMENDED relationships to the store (idempotent per "
                   "model version)")
    s.add_argument("--model-version", help="version tag for write-back (default: the fusion's)")
    s.add_argument("--spark", metavar="MASTER",
                   help="score the users on Apache Spark (local[N], spark://HOST:PORT, yarn, "
                   "k8s://URL; needs kgrec[spark]); OUT becomes a folder of Parquet parts with "
                   "the same rows; on a cluster the run must sit on storage every executor "
                   "reads (default: from config score.spark; empty: score here)")
    s.set_defaults(func=run_score)


def _register_search(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser(
        "search",
        help="personalised semantic search: a free-text query blended with the GNN",
        description=(
            "Rank products for one user by alpha * z(GNN score) + (1 - alpha) * z(query "
            "similarity): the text side is the query instead of the user's profile."
        ),
    )
    _common(q)
    q.add_argument("query", help="free-text query, e.g. 'waterproof hiking boots'")
    q.add_argument("--user", required=True, help="user id")
    q.add_argument("--top-k", type=int, help=f"results {default_help('fusion.search_top_k')}")
    q.add_argument("--alpha", type=float, help="GNN weight in [0, 1]; below 0.5 the query "
                   f"leads and taste re-orders {default_help('fusion.search_alpha')}")
    q.add_argument("--include-seen", action="store_true",
                   help="keep products the user already interacted with")
    q.set_defaults(func=run_search)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True,
                   help="GNN training run folder (user/product embeddings, as saved by training)")
    p.add_argument("--snapshot", help="GraphSnapshot folder (default: export the store)")
    p.add_argument("--store", choices=BACKENDS,
                   help="graph store when no --snapshot is given, and for --write-back "
                   + default_help("store.backend"))
    p.add_argument("--store-path", help=f"local store folder {default_help('store.path')}")
    p.add_argument("--text-model",
                   help=f"text model dir or package {default_help('fusion.text_model')}")
    p.add_argument("--device", help="auto (CUDA when present), cpu, cuda or cuda:N "
                   + default_help("train.device"))
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


#: Options that override settings (argparse dest -> key), shared and per command.
COMMON_OPTIONS = {"text_model": "fusion.text_model", "device": "train.device"}
FUSE_OPTIONS = {"text_side": "fusion.text_side", "tower_epochs": "fusion.tower_epochs",
                "alpha_function": "fusion.alpha_function"}
SCORE_OPTIONS = {"top_k": "score.top_k", "chunk_size": "score.chunk_size", "out": "score.out",
                 "spark": "score.spark"}
SEARCH_OPTIONS = {"top_k": "fusion.search_top_k", "alpha": "fusion.search_alpha"}


def _config(args: argparse.Namespace, options: dict[str, str]) -> Config:
    return cli_config(args, COMMON_OPTIONS | options)


def _recommender(args: argparse.Namespace, config: Config, fusion: str | None = None):
    """The run of ``--run`` on the graph of ``--snapshot`` (else the run's own snapshot, else
    a fresh export of the store)."""
    from kgrec.api import Recommender
    from kgrec.runfolder import SNAPSHOT_DIR, load_snapshot

    snapshot = None
    if args.snapshot or not (Path(args.run) / SNAPSHOT_DIR).exists():
        snapshot = load_snapshot(config, args.snapshot, progress=not args.no_progress)
    return Recommender.load(args.run, snapshot=snapshot, config=config, fusion=fusion)


def run_fuse(args: argparse.Namespace) -> int:
    from kgrec.fusion.artefacts import save_fusion

    start = time.perf_counter()
    config = _config(args, FUSE_OPTIONS)
    rec = _recommender(args, config)
    rec.fuse(progress=not args.no_progress)
    out = save_fusion(rec.fusion, args.out or Path(args.run) / "fusion", rec.users,
                      rec.products)
    for job in rec.fusion.fit.jobs.values():
        print(f"  {job.summary()}")
    print(f"Fused {len(rec.users):,} users x {len(rec.products):,} products in "
          f"{time.perf_counter() - start:.0f}s (text sides compared: "
          f"{', '.join(rec.fusion.fit.sides) or 'none'}); artefacts in {out} (model version "
          f"{rec.fusion.model_version}).")
    return 0


#: --exclude -> Recommender's exclude_seen.
EXCLUDE: dict[str, bool | str] = {"all": True, "train": "train", "train+valid": "train+valid"}


def run_score(args: argparse.Namespace) -> int:
    from kgrec.fusion.candidates import ITEM_SETS
    from kgrec.fusion.output import describe, write_back, write_parquet

    start = time.perf_counter()
    config = _config(args, SCORE_OPTIONS)  # --top-k 0 is rejected there, naming score.top_k
    items = args.items if args.items in ITEM_SETS else Path(args.items)
    if config.score.spark:
        return _score_on_spark(args, config, items)
    rec = _recommender(args, config, fusion=args.fusion or str(Path(args.run) / "fusion"))
    if rec.fusion is None:
        raise ModelError(f"{args.fusion or Path(args.run) / 'fusion'} holds no fusion; run "
                         "`kgrec fuse` first")
    progress, exclude = not args.no_progress, EXCLUDE[args.exclude]
    if args.per == "user":
        frame = rec.recommend(items=items, exclude_seen=exclude, alpha=args.alpha,
                              progress=progress)
    else:
        frame = rec.audience(items, exclude_seen=exclude, alpha=args.alpha, progress=progress)
    # The file says which way it ranks (top products per user, or top users per product).
    out = write_parquet(frame.assign(per=args.per), config.score.out)
    written = 0
    if args.write_back:
        from kgrec.stores import open_store

        store = open_store(config)
        try:
            written = write_back(store, frame, model_version=args.model_version
                                 or rec.fusion.model_version, batch_size=config.store.batch_size,
                                 progress=progress)
        finally:
            store.close()
    summary = describe(frame, time.perf_counter() - start, args.per, frame.attrs["candidates"])
    print(f"{summary} Written to {out}" + (f"; {written:,} RECOMMENDED relationships "
                                          "written back." if args.write_back else "."))
    return 0


def _score_on_spark(args: argparse.Namespace, config: Config, items: str | Path) -> int:
    """``score --spark``: executors load the run from its folders, so there is no store
    export, and the output stays on the cluster's storage (no write-back)."""
    from kgrec.runfolder import SNAPSHOT_DIR
    from kgrec.spark import score_on_spark

    if args.per != "user" or args.write_back:
        raise InputError("--spark scores top products per user (--per user) without "
                         "--write-back")
    if not args.snapshot and not (Path(args.run) / SNAPSHOT_DIR).exists():
        raise InputError(f"--spark needs the run's graph as a folder: --snapshot, or "
                         f"{Path(args.run) / SNAPSHOT_DIR}")
    fusion = args.fusion or str(Path(args.run) / "fusion")
    if not Path(fusion).exists():
        raise ModelError(f"{fusion} holds no fusion; run `kgrec fuse` first")
    done = score_on_spark(args.run, master=config.score.spark, out=config.score.out,
                          items=items, exclude_seen=EXCLUDE[args.exclude], alpha=args.alpha,
                          snapshot=args.snapshot, fusion=fusion, config=config)
    print(done.line())
    return 0


def run_search(args: argparse.Namespace) -> int:
    config = _config(args, SEARCH_OPTIONS)
    rec = _recommender(args, config)
    frame = rec.search(args.user, args.query,
                       exclude_seen=not args.include_seen)
    print(f"{'rank':>4}  {'product':<12} {'fused':>7} {'gnn':>7} {'query':>7}  title")
    for row in frame.itertuples(index=False):
        print(f"{row.rank:>4}  {row.product_id:<12} {row.score:7.3f} {row.score_gnn:7.3f} "
              f"{row.score_text:7.3f}  {row.title}")
    print(f"Searched {len(rec.products):,} products for user {args.user} with query "
          f"{args.query!r} (alpha {config.fusion.search_alpha}: GNN z-score weight).")
    return 0
