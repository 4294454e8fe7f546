"""``kgrec fuse``, ``kgrec score`` and ``kgrec search``: text fusion and batch scoring.

``fuse`` builds the text side for a trained GNN run and fits the blend weight on the
validation split; ``score`` writes the top-K long-tail (or cold-start, all, listed)
products per user, or the top-K users per product, to Parquet and optionally back to the
store; ``search`` ranks products for one user by a free-text query blended with the GNN.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from kgrec.config import BACKENDS, SPLITS, Config, cli_config, default_help
from kgrec.kg.errors import ConfigError, InputError, ModelError
from kgrec.kg.ids import IdMap, NodeEmbeddings
from kgrec.kg.snapshot import GraphSnapshot

if TYPE_CHECKING:
    from kgrec.fusion.fit import FusionFit

FUSION_FILE = "fusion.json"


def register(sub: argparse._SubParsersAction) -> None:
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
    f.add_argument("--split", choices=[s for s in SPLITS if s != "item_cold_start"],
                   help="validation split when the run folder holds none "
                   + default_help("train.split"))
    f.add_argument("--out", help="artefact folder (default: RUN/fusion)")
    f.set_defaults(func=run_fuse)

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
    s.set_defaults(func=run_score)

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
                "alpha_function": "fusion.alpha_function", "split": "train.split"}
SCORE_OPTIONS = {"top_k": "score.top_k", "chunk_size": "score.chunk_size", "out": "score.out"}
SEARCH_OPTIONS = {"top_k": "fusion.search_top_k", "alpha": "fusion.search_alpha"}


def _config(args: argparse.Namespace, options: dict[str, str]) -> Config:
    return cli_config(args, COMMON_OPTIONS | options)


def _snapshot(args: argparse.Namespace, config: Config) -> GraphSnapshot:
    from kgrec.stores import load_snapshot

    return load_snapshot(config, args.snapshot, progress=not args.no_progress)


@dataclass
class _Gnn:
    users: torch.Tensor
    items: torch.Tensor


def _gnn(run: str, snapshot: GraphSnapshot) -> _Gnn:
    folder = Path(run)
    paths = [folder / "user_embeddings.pt", folder / "product_embeddings.pt"]
    for path in paths:
        if not path.exists():
            raise ModelError(f"{folder} is not a training run: {path.name} is missing")
    users, items = (NodeEmbeddings.load(p) for p in paths)
    # Join on ids, never on row order.
    return _Gnn(users.align(snapshot.id_maps["user"]), items.align(snapshot.id_maps["product"]))


def _encoder(config: Config, device: str):
    from kgrec.fusion.text import TextEncoder

    return TextEncoder(config.fusion.text_model, device=device,
                       batch_size=config.fusion.text_batch_size,
                       cache_dir=config.fusion.cache_dir)


def _run_split(run: str, snapshot: GraphSnapshot, kind: str, seed: int):
    """The split saved with the GNN run (so no test pair leaks into a fit), else a new one."""
    from kgrec.gnn.data import Split, make_split

    if (Path(run) / "split.json").exists():
        return Split.load(run)
    return make_split(snapshot, kind=kind, seed=seed)


def run_fuse(args: argparse.Namespace) -> int:
    from kgrec.fusion.fit import build_text_side, fit_fusion
    from kgrec.fusion.text import encode_products, has_text, text_confidence

    start = time.perf_counter()
    config = _config(args, FUSE_OPTIONS)
    snapshot = _snapshot(args, config)
    gnn = _gnn(args.run, snapshot)
    split = _run_split(args.run, snapshot, config.train.split, config.train.seed)
    fields = tuple(config.fusion.text_fields)
    out = Path(args.out or Path(args.run) / "fusion")
    out.mkdir(parents=True, exist_ok=True)
    users, products = snapshot.id_maps["user"], snapshot.id_maps["product"]
    sides = {}
    if has_text(snapshot.products, fields):
        encoder = _encoder(config, config.train.device)
        raw = encode_products(encoder, snapshot.products, fields=fields,
                              separator=config.fusion.text_separator,
                              progress=not args.no_progress)
        raw.save(out / "raw_text_products.pt")
        side = config.fusion.text_side
        kinds = ("profile", "tower") if side == "all" else (side,)
        sides = {kind: build_text_side(kind, split, raw.tensor,
                                       tower_epochs=config.fusion.tower_epochs,
                                       seed=config.train.seed, progress=not args.no_progress,
                                       half_lives=config.fusion.profile_half_lives,
                                       k=config.train.k)
                 for kind in kinds}
        text_model = encoder.model_id
    else:
        print(f"kgrec: the catalogue carries no product text (fields {', '.join(fields)} are "
              "empty or identical everywhere): nothing encoded, graph-only fusion (alpha 1).")
        text_model = None
    confidence = text_confidence(snapshot.products, fields)
    NodeEmbeddings("product", products, confidence[:, None]).save(out / "text_confidence.pt")
    fit = fit_fusion(gnn.users, gnn.items, sides, split, split.item_counts(), confidence,
                     k=config.train.k,
                     normalise_method=config.fusion.normalise,
                     item_dependent=config.fusion.alpha_function == "item",
                     progress=not args.no_progress)
    for kind, side in sides.items():
        # Profiles as of the latest history the split knows (what scoring serves with).
        side = side.at_stage(split, "test")
        NodeEmbeddings("user", users, side.users).save(out / f"text_users_{kind}.pt")
        NodeEmbeddings("product", products, side.items).save(out / f"text_products_{kind}.pt")
    version = f"{Path(args.run).resolve().name}-fusion-{int(time.time())}"
    meta = {
        "model_version": version, "jobs": {name: job.to_dict() for name, job in fit.jobs.items()},
        "text_sides": list(sides), "text_fields": list(fields),
        "profile_half_life_events": sides["profile"].half_life_events if "profile" in sides
        else None,
        "normalise": config.fusion.normalise, "text_model": text_model,
        "split": split.summary(),
    }
    (out / FUSION_FILE).write_text(json.dumps(meta, indent=1))
    for job in fit.jobs.values():
        print(f"  {job.summary()}")
    print(f"Fused {len(users):,} users x {len(products):,} products in "
          f"{time.perf_counter() - start:.0f}s (text sides compared: "
          f"{', '.join(sides) or 'none'}); artefacts in {out} (model version {version}).")
    return 0


def load_fusion(folder: Path, users: IdMap, products: IdMap) -> tuple[dict, FusionFit, Tensor]:
    """A saved ``kgrec fuse`` folder: its metadata, the fitted jobs with their text sides
    (joined on ``users`` / ``products`` ids) and the products' text confidence."""
    from kgrec.fusion.fit import FusionFit, JobFit, TextSide

    if not (folder / FUSION_FILE).exists():
        raise ModelError(f"{folder} holds no {FUSION_FILE}; run `kgrec fuse` first")
    meta = json.loads((folder / FUSION_FILE).read_text())
    if "jobs" not in meta:
        raise ModelError(f"{folder / FUSION_FILE} was written by an older kgrec; run "
                         "`kgrec fuse` again")
    sides = {kind: TextSide(kind,
                            NodeEmbeddings.load(folder / f"text_users_{kind}.pt").align(users),
                            NodeEmbeddings.load(folder / f"text_products_{kind}.pt")
                            .align(products),
                            half_life_events=meta.get("profile_half_life_events"))
             for kind in meta["text_sides"]}
    jobs = {name: JobFit.from_dict(job) for name, job in meta["jobs"].items()}
    confidence = NodeEmbeddings.load(folder / "text_confidence.pt").align(products)[:, 0]
    return meta, FusionFit(jobs, sides), confidence


def _events(snapshot: GraphSnapshot) -> torch.Tensor:
    frame = snapshot.interactions()
    pairs = np.stack([frame["user"].to_numpy("int64"), frame["product"].to_numpy("int64")])
    return torch.as_tensor(pairs, dtype=torch.long).reshape(2, -1)


def _excluded_events(args: argparse.Namespace, snapshot: GraphSnapshot,
                     config: Config) -> torch.Tensor:
    """``[2, E]`` (user, product) pairs never recommended: every snapshot interaction
    (serving), or the run's training (+ validation) pairs (an evaluable ranking)."""
    if args.exclude == "all":
        return _events(snapshot)
    split = _run_split(args.run, snapshot, "auto", config.train.seed)
    stages = ("train",) if args.exclude == "train" else ("train", "valid")
    return torch.cat([split.pairs(stage) for stage in stages], 1)


def run_score(args: argparse.Namespace) -> int:
    from kgrec.fusion.batch import (
        SeenIndex,
        chunked_topk,
        describe,
        select_items,
        topk_frame,
        write_back,
        write_parquet,
    )
    from kgrec.fusion.fit import job_scorer
    from kgrec.fusion.score import FusedScorer, item_degree
    from kgrec.fusion.text import pick_device

    start = time.perf_counter()
    config = _config(args, SCORE_OPTIONS)  # --top-k 0 is rejected there, naming score.top_k
    k, chunk = config.score.top_k, config.score.chunk_size
    snapshot = _snapshot(args, config)
    events = _excluded_events(args, snapshot, config)
    users_map, products_map = snapshot.id_maps["user"], snapshot.id_maps["product"]
    degree = item_degree(events, len(products_map))
    items = select_items(args.items, products_map, degree)  # bad --items fails fast
    gnn = _gnn(args.run, snapshot)
    folder = Path(args.fusion or Path(args.run) / "fusion")
    meta, fit, confidence = load_fusion(folder, users_map, products_map)
    # Long-tail and cold-start scoring use the fusion fitted on tail candidates.
    job = "tail" if args.items in ("long-tail", "cold-start") else "full"
    scorer = job_scorer(gnn.users, gnn.items, fit, job, degree, confidence,
                        normalise_method=meta["normalise"])
    if args.alpha is not None:
        if not 0 <= args.alpha <= 1:
            raise ConfigError(f"--alpha must lie in [0, 1], got {args.alpha}")
        scorer.alpha = float(args.alpha)
    scorer = FusedScorer(scorer.gnn_users, scorer.gnn_items, scorer.text_users,
                         scorer.text_items, alpha=scorer.alpha, normalise=meta["normalise"],
                         device=pick_device(config.train.device))
    users = torch.arange(len(users_map))
    progress = not args.no_progress
    if args.per == "user":
        top = chunked_topk(scorer.chunk_scorer(items), users, k, columns=items,
                           num_columns=len(products_map), seen=SeenIndex.from_edges(
                               events, len(users_map)), chunk_size=chunk, progress=progress,
                           desc="score users", components=scorer.pair_components)
        frame = topk_frame(top, users, users_map, products_map, per="user")
    else:
        stats = scorer.user_stats(users, items, chunk_size=chunk)
        top = chunked_topk(lambda r: scorer.score_items(r, users, stats), items, k,
                           columns=users, num_columns=len(users_map),
                           seen=SeenIndex.from_edges(events, len(products_map), transpose=True),
                           chunk_size=chunk, progress=progress, desc="score products")
        frame = topk_frame(top, items, products_map, users_map, per="item")
    out = write_parquet(frame, config.score.out)
    written = 0
    if args.write_back:
        from kgrec.stores import open_store

        store = open_store(config)
        try:
            written = write_back(store, frame, model_version=args.model_version
                                 or meta["model_version"], batch_size=config.store.batch_size,
                                 progress=progress)
        finally:
            store.close()
    summary = describe(frame, time.perf_counter() - start, args.per, items)
    print(f"{summary} Written to {out}" + (f"; {written:,} RECOMMENDED relationships "
                                          "written back." if args.write_back else "."))
    return 0


def run_search(args: argparse.Namespace) -> int:
    from kgrec.fusion.score import FusedScorer

    config = _config(args, SEARCH_OPTIONS)
    alpha = config.fusion.search_alpha
    snapshot = _snapshot(args, config)
    users_map, products_map = snapshot.id_maps["user"], snapshot.id_maps["product"]
    if args.user not in users_map:
        raise InputError(f"unknown user {args.user!r}", field="--user")
    gnn = _gnn(args.run, snapshot)
    folder = Path(args.run) / "fusion"
    raw_path = folder / "raw_text_products.pt"
    encoder = _encoder(config, config.train.device)
    if raw_path.exists():
        raw = NodeEmbeddings.load(raw_path).align(products_map)
    else:  # no fuse run yet: encode now (cached for next time)
        from kgrec.fusion.text import encode_products

        raw = encode_products(encoder, snapshot.products, fields=config.fusion.text_fields,
                              separator=config.fusion.text_separator,
                              progress=not args.no_progress).tensor
    query = encoder.encode([args.query])
    user = torch.as_tensor(users_map.index_of([args.user]))
    scorer = FusedScorer(gnn.users[user], gnn.items, query, raw, alpha=alpha)
    fused, g, t = scorer.score(torch.tensor([0]))
    if not args.include_seen:
        events = _events(snapshot)
        fused[0, events[1][events[0] == user[0]]] = -torch.inf
    top = torch.topk(fused[0], min(config.fusion.search_top_k, fused.shape[1]))
    titles = snapshot.products.set_index("id")["title"]
    print(f"{'rank':>4}  {'product':<12} {'fused':>7} {'gnn':>7} {'query':>7}  title")
    for rank, (value, idx) in enumerate(zip(top.values.tolist(), top.indices.tolist(), strict=True),
                                        start=1):
        pid = products_map.ids[idx]
        print(f"{rank:>4}  {pid:<12} {value:7.3f} {float(g[0, idx]):7.3f} "
              f"{float(t[0, idx]):7.3f}  {titles.get(pid, '')}")
    print(f"Searched {len(products_map):,} products for user {args.user} with query "
          f"{args.query!r} (alpha {alpha}: GNN z-score weight).", file=sys.stdout)
    return 0

