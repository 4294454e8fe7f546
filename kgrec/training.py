"""Making a run: its split (:func:`make_run_split`, every objective's), its training
(:func:`train_run`: text features, the behaviour-weight fit, one or several processes),
its fusion fit (:func:`fuse_run`) and its evaluation table (:func:`evaluate_run`).
``kgrec.Recommender.fit`` / ``fuse`` / ``evaluate`` call these.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from kgrec.config import Config
from kgrec.errors import InputError
from kgrec.fusion.alpha import AlphaFunction
from kgrec.fusion.artefacts import Fusion
from kgrec.fusion.fit import (
    FusionFit,
    JobFit,
    Sources,
    build_text_side,
    fit_fusion,
    fused_table,
    job_scorer,
)
from kgrec.fusion.output import new_model_version
from kgrec.fusion.text import text_confidence
from kgrec.gnn.behaviours import fit_behaviour_weights, reweighted
from kgrec.gnn.distributed import train_distributed
from kgrec.gnn.metrics import evaluate_ranking, long_tail_items
from kgrec.gnn.models import MODELS
from kgrec.gnn.pairs import target_behaviour
from kgrec.gnn.split import Split, item_cold_start_split, make_split
from kgrec.gnn.train import train_model
from kgrec.gnn.warm import WarmStart
from kgrec.kg import schema
from kgrec.kg.extract.lists import held_out_pairs
from kgrec.kg.snapshot import GraphSnapshot
from kgrec.runfolder import Run, as_snapshot, encode_catalogue, text_precision
from kgrec.settings import SourceSpec, TrainSettings


def make_run_split(snapshot: GraphSnapshot, kind: str, config: Config) -> Split:
    """The evaluation split ``kind`` (see ``kgrec train --help``) with the config's seed,
    event weights and target behaviour (``given``: the source's held-out pairs)."""
    weights = config.train.event_weights or None
    if kind == "item_cold_start":
        return item_cold_start_split(snapshot, seed=config.train.seed, event_weights=weights)
    target = target_behaviour(snapshot, config.train.target)
    held = given_test_pairs(snapshot, config.source, target) if kind == "given" else None
    return make_split(snapshot, kind=kind, seed=config.train.seed, event_weights=weights,
                      target=target, held_out=held)


def objective_splits(snapshot: GraphSnapshot, split: Split, config: Config
                     ) -> dict[str, Split]:
    """The split of every other behaviour as the target, to evaluate one model on each
    objective side by side: the same kind, seed and weights (``given``: each behaviour's own
    held-out file; a behaviour without one is left out). Empty without a target."""
    if split.target is None:
        return {}
    held = set(snapshot.interactions()["rel"].unique()) - {split.target}
    out = {}
    for rel in (r for r in schema.INTERACTIONS if r in held):
        other = dataclasses.replace(config, train=dataclasses.replace(config.train, target=rel))
        try:
            out[rel] = make_run_split(snapshot, split.kind, other)
        except InputError:  # a given split without this behaviour's held-out file
            continue
    return out


def _fits_behaviours(split: Split, config: Config, settings: TrainSettings) -> bool:
    """Behaviour weights are fitted for a trained model on a split with a target, other
    behaviours and validation pairs, unless the config sets event weights or no scales."""
    others = set(split.behaviours()) - {split.target}
    return (split.target is not None and bool(others) and len(split.valid) > 0
            and len(config.train.behaviour_scales) > 1 and not config.train.event_weights
            and settings.model != "pop")


def given_test_pairs(snapshot: GraphSnapshot, source: SourceSpec, target: str | None
                     ) -> pd.DataFrame:
    """``user, product`` rows of the source's held-out file of ``target`` (purchases when
    None); pairs on users or products the graph lacks are left out, and said."""
    if source.kind != "lists":
        raise InputError(f"the given split reads held-out files of a lists source; this "
                         f"source is {source.kind}", field="train.split")
    pairs = held_out_pairs(source.path, target or schema.PURCHASED, source.held_out)
    users = snapshot.id_maps["user"].rows_or_missing(pairs["user"])
    products = snapshot.id_maps["product"].rows_or_missing(pairs["product"])
    known = (users >= 0) & (products >= 0)
    if not known.all():
        print(f"kgrec: {int((~known).sum()):,} of {len(pairs):,} held-out pairs name users or "
              "products the graph lacks: left out of the test stage.")
    return pd.DataFrame({"user": users[known], "product": products[known]})


def train_run(snapshot: GraphSnapshot | str | Path, config: Config | None = None, *,
        split: str | Split | None = None, progress: bool = True,
        checkpoint_dir: str | Path | None = None, resume: bool = False,
        warm_start: WarmStart | str | Path | None = None, **train: Any) -> Run:
    """Train ``config.train.model`` (or the ``model`` override) on a split of ``snapshot``.

    Args:
        snapshot: a :class:`GraphSnapshot` or its folder.
        config: settings (default: :class:`kgrec.config.Config` defaults).
        split: a split kind (``kgrec train --help``; default ``train.split``) or a
            ready :class:`Split`.
        progress: show progress bars.
        checkpoint_dir: where training keeps its best and last states while it runs.
        resume: continue an interrupted run from ``checkpoint_dir/last.pt``.
        warm_start: start from a previous run's parameters (its run folder, or a loaded
            :class:`~kgrec.gnn.warm.WarmStart`), matched on ids (:mod:`kgrec.gnn.warm`).
        train: overrides of ``[train]`` settings, e.g. ``model="mf"`` (gat, gcn, lightgcn,
            mf or pop) or ``epochs=5``; None leaves a setting as configured; ``nproc`` > 1 trains
            data-parallel in that many processes (:mod:`kgrec.gnn.distributed`).
    """
    config = config or Config()
    snapshot = as_snapshot(snapshot)
    nproc = train.pop("nproc", None) or config.train.nproc
    settings = TrainSettings.from_any(config.train, **train)
    run_split = split if isinstance(split, Split) else make_run_split(
        snapshot, split or config.train.split, config)
    features = None
    if MODELS[settings.model].takes_text and settings.text_features:
        raw = encode_catalogue(snapshot, config, progress)
        features = None if raw is None else raw.tensor
    behaviours = None
    if _fits_behaviours(run_split, config, settings):
        behaviours = fit_behaviour_weights(
            snapshot, run_split, settings, product_features=features,
            scales=config.train.behaviour_scales, epochs=config.train.behaviour_fit_epochs)
        run_split = reweighted(run_split, behaviours.weights)
        if progress:
            print(f"kgrec: {behaviours.summary()}")
    if warm_start is not None and not isinstance(warm_start, WarmStart):
        warm_start = WarmStart.load(warm_start)
    options = {"product_features": features, "progress": progress,
               "checkpoint_dir": checkpoint_dir, "resume": resume, "warm_start": warm_start}
    result = (train_distributed(snapshot, run_split, settings, nproc, **options)
              if nproc > 1 else train_model(snapshot, run_split, settings, **options))
    if behaviours is not None:
        result.applied["behaviour_fit"] = behaviours.candidates
    return Run(snapshot, run_split, result, config)


def fuse_run(run: Run, text_sides: Sequence[str] | None = None, *,
             item_dependent: bool | None = None, progress: bool = True) -> Run:
    """Fit the blend ``s = a * s_gnn + (1 - a) * s_text`` on the validation split, per
    job (full ranking, long-tail candidates), comparing ``text_sides`` ("profile",
    "tower"; default ``fusion.text_side``) and constant / item-dependent ``a`` (default
    ``fusion.alpha_function``); keeps the GNN alone where no blend beats it. Sets and
    returns ``run.fusion``'s run."""
    config, split = run.config, run.split
    if text_sides is None:
        side = config.fusion.text_side
        text_sides = ("profile", "tower") if side == "all" else (side,)
    if item_dependent is None:
        item_dependent = config.fusion.alpha_function == "item"
    raw = encode_catalogue(run.snapshot, config, progress)
    sampling = {"sample_users": config.fusion.fit_users, "pool": config.fusion.fit_pool,
                "seed": config.train.seed, "progress": progress}
    sides = {} if raw is None else {
        kind: build_text_side(kind, split, raw.align(run.products), k=config.train.k,
                              tower_epochs=config.fusion.tower_epochs,
                              half_lives=config.fusion.profile_half_lives, **sampling)
        for kind in text_sides}
    confidence = text_confidence(run.snapshot.products, config.fusion.text_fields)
    sources = Sources(run.gnn_users, run.gnn_items, sides, split.item_counts(), confidence)
    fit = fit_fusion(sources, split, k=config.train.k,
                     normalise_method=config.fusion.normalise,
                     item_dependent=item_dependent, reengage=run.seen_in_training,
                     **sampling)
    # Serve with profiles as of the latest history the split knows.
    fit.sides = {kind: side.at_stage(split, "test") for kind, side in fit.sides.items()}
    meta = {"model_version": new_model_version(run.result.settings.model),
            "text_fields": list(config.fusion.text_fields),
            "normalise": config.fusion.normalise,
            "text_model": None if raw is None else config.fusion.text_model,
            "text_precision": None if raw is None else text_precision(config),
            "split": split.summary()}
    run.fusion = Fusion(fit, confidence, raw, meta)
    return run


def evaluate_run(run: Run, stage: str = "test", k: int | None = None
                 ) -> dict[str, dict[str, dict[str, float]]]:
    """Rows model -> slice -> metric on the split's ``stage``: the GNN alone and, after
    :func:`fuse_run`, the fused ranking and each text side alone (slices overall, long_tail,
    cold_start, tail_candidates; with a target behaviour, the GNN and the fused ranking
    also on each other behaviour as the objective, ``objective:CARTED`` ...)."""
    k = run.top_k(k if k is not None else run.config.train.k)
    name, split = run.result.settings.model, run.split
    # Every row ranks the same sampled users (train.eval_users), so rows compare paired.
    sample = {"sample_users": run.config.train.eval_users, "seed": run.config.train.seed}
    table = evaluate_ranking(run.result.score, split, stage=stage, k=k, **sample)
    table["tail_candidates"] = evaluate_ranking(
        run.result.score, split, stage=stage, k=k, candidates=long_tail_items(split),
        slices=("overall",), **sample)["overall"]
    objectives = objective_splits(run.snapshot, split, run.config)
    for rel, other in objectives.items():
        table[f"objective:{rel}"] = evaluate_ranking(
            run.result.score, other, stage=stage, k=k, slices=("overall",), **sample)["overall"]
    rows = {name: table}
    fusion = run.fusion
    if fusion is None:
        return rows
    fit, sources = fusion.fit, run.sources()

    def fused(f: FusionFit) -> dict[str, dict[str, float]]:
        return fused_table(sources, f, split, stage=stage, k=k,
                           normalise_method=fusion.normalise, seen=run.seen_in_training,
                           **sample)

    rows[f"{name}+fusion"] = fused(fit)
    scorer = job_scorer(sources, fit, "full", normalise_method=fusion.normalise,
                        seen=run.seen_in_training)
    for rel, other in objectives.items():
        rows[f"{name}+fusion"][f"objective:{rel}"] = evaluate_ranking(
            scorer, other, stage=stage, k=k, slices=("overall",), **sample)["overall"]
    for side in fit.sides:
        text_only = {job: JobFit(job, side, AlphaFunction.constant(0.0), 0.0, 0.0)
                     for job in fit.jobs}
        rows[f"text:{side}"] = fused(FusionFit(text_only, fit.sides))
    return rows
