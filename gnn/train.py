"""Training: weighted BPR with sampled negatives, Adam, early stopping on validation NDCG@K.

``train_model`` accepts :class:`kgrec.settings.TrainSettings` or any object with the same
attribute names (the [train] section, ``kgrec.settings.TrainConfig``, qualifies). One full-graph
propagation per batch on a sparse adjacency; the negative sampler knows training pairs only.

Cost: a step costs O(events + nodes) (the propagation) plus O(batch); an epoch has at most
``max_steps_per_epoch`` steps (:func:`scaled_batch`), so an epoch costs O(events + nodes),
linear in the data. Results depend on the seed and the machine's thread count, never on
the clock or the load: no decision reads a timer except the ``max_minutes`` safety net.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from kgrec.errors import UsageError
from kgrec.files import atomic_write
from kgrec.gnn.checkpoint import LAST_CHECKPOINT, Progress, resume_from, save_last
from kgrec.gnn.device import resolve_device, reuse_freed_memory, set_threads
from kgrec.gnn.losses import bpr_loss, softmax_loss
from kgrec.gnn.metrics import evaluate_ranking
from kgrec.gnn.models import EmbeddingModel, build_model
from kgrec.gnn.pairs import behaviour_weights, interaction_table
from kgrec.gnn.replica import Replica, current_replica
from kgrec.gnn.result import TrainResult, export_embeddings
from kgrec.gnn.sampling import NegativeSampler, negative_pool
from kgrec.gnn.split import Split
from kgrec.gnn.warm import WarmStart, row_keys
from kgrec.kg.snapshot import GraphSnapshot
from kgrec.settings import TrainSettings

log = logging.getLogger(__name__)


def train_weights(snapshot: GraphSnapshot, split: Split,
                  event_weights: Mapping[str, float] | None) -> Tensor:
    """Loss weight of each training pair: the split's, or recomputed from ``event_weights``
    and the behaviours the pair holds in training (never from the snapshot, which also holds
    the held-out events of a pair whose other behaviours train)."""
    if not event_weights:
        return torch.as_tensor(split.train["weight"].to_numpy("float32", copy=True))
    if "rels" in split.train:
        return torch.as_tensor(behaviour_weights(split.train, event_weights), dtype=torch.float32)
    table = interaction_table(snapshot, event_weights)[["user", "product", "weight"]]
    joined = split.train[["user", "product"]].merge(table, on=["user", "product"], how="left")
    if joined["weight"].isna().any():
        raise UsageError("split holds pairs the snapshot does not; was it made from another graph?")
    return torch.as_tensor(joined["weight"].to_numpy("float32"))


def scaled_batch(settings: TrainSettings, pairs: int) -> tuple[int, float]:
    """The batch size and learning rate of a run over ``pairs`` training pairs.

    ``settings.batch_size`` and ``settings.lr`` while an epoch needs at most
    ``settings.max_steps_per_epoch`` steps; beyond, the batch that fills that many steps and
    the learning rate times the square root of the batch's growth (Adam's usual scaling;
    Krizhevsky 2014, Malladi et al. 2022), so that an epoch costs a bounded number of
    full-graph propagations: linear in the events, not quadratic.
    """
    cap = settings.max_steps_per_epoch
    if cap is None or pairs <= settings.batch_size * cap:
        return settings.batch_size, settings.lr
    batch = math.ceil(pairs / cap)
    return batch, settings.lr * math.sqrt(batch / settings.batch_size)


def _autocast(device: torch.device):
    enabled = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def _evaluate(model: EmbeddingModel, split: Split, stage: str,
              settings: TrainSettings) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        cache = model.embed()
        cache = (cache[0].float(), cache[1].float())
    device = cache[0].device

    def score(users: Tensor) -> Tensor:
        return model.score(users.to(device), cache)

    # AUC needs a full sort per batch: skipped while monitoring (it only stops on NDCG@k).
    return evaluate_ranking(score, split, stage=stage, k=settings.k, slices=("overall",),
                            auc=False, sample_users=settings.eval_users,
                            seed=settings.seed)["overall"]


class _BatchLoss(nn.Module):
    """The loss of one batch as a module's forward, which DistributedDataParallel hooks.

    Each rank sees the whole batch (users, positives, negatives and weights are the same on
    every rank) and takes its rows ``replica.bounds``: its BPR and L2 parts are scaled so
    that their mean over ranks (DDP averages gradients) is the single-process batch loss,
    ``sum w l / sum w + wd * |ego|^2 / (2 B)``. The contrastive term needs the whole batch
    and is the same on every rank, so it is not scaled. One process: factors of exactly 1.
    """

    def __init__(self, model: EmbeddingModel, settings: TrainSettings, replica: Replica) -> None:
        super().__init__()
        self.model, self.settings, self.replica = model, settings, replica

    def forward(self, users: Tensor, pos: Tensor, neg: Tensor, w: Tensor) -> Tensor:
        settings, model, world = self.settings, self.model, self.replica.world
        lo, hi = self.replica.bounds(len(users))
        us, ps, ns, ws = users[lo:hi], pos[lo:hi], neg[lo:hi], w[lo:hi]
        user_emb, item_emb = model.embed()  # one full-graph propagation per batch
        # index_select, never x[idx]: its backward (index_add) sums in a fixed order on any
        # number of CPU threads, advanced indexing's (index_put with accumulate) does not.
        u = user_emb.index_select(0, us)
        share = ws.sum() / w.sum().clamp(min=1e-12)  # this rank's part of the weight mean
        if settings.loss == "softmax":  # neg: the batch's shared negatives
            candidates = torch.cat([neg, pos]) if settings.in_batch_negatives else neg
            loss = softmax_loss(u, item_emb.index_select(0, ps),
                                item_emb.index_select(0, candidates), ps, candidates,
                                settings.temperature, ws)
        else:
            loss = bpr_loss((u * item_emb.index_select(0, ps)).sum(-1).float(),
                            (u * item_emb.index_select(0, ns)).sum(-1).float(), ws)
        loss = loss * share * world
        eu, ep = model.ego(us, ps)
        reg = eu.pow(2).sum() + ep.pow(2).sum()
        if settings.loss == "bpr":  # the softmax's negatives are shared, not the pairs'
            reg = reg + model.ego(us, ns)[1].pow(2).sum()
        reg = reg / (2 * len(users))
        loss = loss + settings.weight_decay * reg.float() * world
        if settings.cl_weight > 0:
            loss = loss + settings.cl_weight * model.contrastive_loss(
                users, pos, settings.cl_temperature)
        return loss


def _epoch(step, optimizer, pairs, weights, sampler, settings, batch_size: int, device, gen,
           bar, deadline: float | None, replica: Replica) -> tuple[float, int, bool]:
    """One pass over the shuffled training pairs; returns (mean loss, batches run, stopped by
    the deadline).

    The deadline (``time.perf_counter()`` value) is checked after every batch, so a time
    limit ends training within one batch, not one epoch."""
    step.train()
    n = pairs.shape[1]
    perm = torch.randperm(n, generator=gen)
    total, steps = 0.0, 0
    starts = range(0, n, batch_size)
    # A per-batch bar only where an epoch is long enough to need one (e.g. Gowalla).
    batches = tqdm(starts, desc="batches", unit="batch", leave=False,
                   disable=bar.disable or len(starts) < 50)
    for start in batches:
        if settings.max_batches is not None and steps >= settings.max_batches:
            break
        idx = perm[start : start + batch_size]
        users, pos = pairs[0, idx], pairs[1, idx]
        # For the whole batch: the same draws on every rank.
        neg = sampler.draw(settings.negatives) if settings.loss == "softmax" \
            else sampler.sample(users)
        with _autocast(device):
            loss = step(users.to(device), pos.to(device), neg.to(device),
                        weights[idx].to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
        steps += 1
        bar.set_postfix(loss=f"{total / steps:.4f}", refresh=False)
        if deadline is not None and replica.any(time.perf_counter() > deadline):
            return replica.mean(total) / steps, steps, True
    return replica.mean(total) / max(steps, 1), steps, False


def train_model(
    snapshot: GraphSnapshot,
    split: Split,
    cfg: Any = None,
    *,
    product_features: Tensor | None = None,
    progress: bool = True,
    eval_stage: str | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    warm_start: WarmStart | None = None,
) -> TrainResult:
    """Train ``cfg.model`` on ``split.train`` and return the best-validation state.

    Args:
        snapshot: the graph (id maps, knowledge-graph edges).
        split: the evaluation split; only ``split.train`` is seen by propagation and negatives.
        cfg: :class:`TrainSettings` or any object with its attribute names (e.g.
            ``kgrec.settings.TrainConfig``); None uses the defaults.
        product_features: optional ``[num_items, F]`` product inputs for ``gcn``/``gat``.
        progress: show a tqdm bar over epochs; without it, one INFO log line per evaluation.
        eval_stage: stage monitored during training; default ``"valid"`` when the split has
            validation pairs (early stopping), else no monitoring. ``"test"`` only records
            the curve (never used to stop or to pick the state).
        checkpoint_dir: where to write ``best.pt`` whenever validation improves and
            ``last.pt`` (model, optimizer, RNG states, history) after every epoch.
        resume: continue from ``checkpoint_dir/last.pt`` when it exists: the same result
            as an uninterrupted run. Only ``epochs``, ``max_minutes``, ``patience`` and
            ``device`` may differ from the interrupted run's settings.
        warm_start: a previous run's parameters to start from (:mod:`kgrec.gnn.warm`),
            matched on ids; a resumed run starts from its checkpoint instead.

    Inside an initialised torch.distributed process group each rank trains on its share
    of every batch (:mod:`kgrec.gnn.distributed`); rank 0 alone writes checkpoints.
    """
    settings = cfg if isinstance(cfg, TrainSettings) else TrainSettings.from_any(cfg)
    device, replica, threads, gen = _prepare(settings, resume and checkpoint_dir is None)
    weights = train_weights(snapshot, split, settings.event_weights)
    model = build_model(snapshot, split, settings, product_features=product_features,
                        train_weight=weights)
    keys = row_keys(model, snapshot)
    warmed = None if warm_start is None or not model.trainable else warm_start.apply(model, keys)
    if warmed is not None and progress and replica.is_main:
        print(f"kgrec: {warmed.summary()}")
    model = model.to(device)
    stage = eval_stage or ("valid" if len(split.valid) else None)
    folder = None if checkpoint_dir is None else Path(checkpoint_dir)
    state, stop_reason = Progress(), "not trainable"
    start = time.perf_counter()
    deadline = None if settings.max_minutes is None else start + 60 * settings.max_minutes
    batch_size, lr = scaled_batch(settings, len(split.train))
    if model.trainable and len(split.train):
        optimizer, state = _optimizer_and_progress(model, lr, device, gen, settings, replica,
                                                   folder if resume else None)
        loop = _Loop(model, optimizer, gen, split, weights, settings, batch_size, device, replica,
                     stage, folder if replica.is_main else None, progress and replica.is_main)
        stop_reason = loop.run(state, deadline)
        _keep_best(model, state)
    elif stage == "valid":
        state.history.append({"epoch": 0, "valid": _evaluate(model, split, stage, settings)})
    seconds = time.perf_counter() - start
    users, items = export_embeddings(model, snapshot)
    applied: dict[str, Any] = {"batch_size": batch_size, "lr": lr, "threads": threads}
    if warmed is not None:
        applied["warm_start"] = warmed.to_dict()
    result = TrainResult(model, users, items, state.history, settings, state.best_epoch, seconds,
                         stop_reason, applied, keys)
    if progress and replica.is_main:
        print(result.summary())
    return result


def _prepare(settings: TrainSettings, resume_without_folder: bool
             ) -> tuple[torch.device, Replica, int, torch.Generator]:
    """The run's device, replica and torch thread count, with every generator seeded:
    (device, replica, threads, the generator of shuffles and negatives). Refuses to resume
    without the interrupted run's checkpoint folder first."""
    if resume_without_folder:
        raise UsageError("resume=True needs the checkpoint_dir of the interrupted run")
    device = resolve_device(settings.device)
    replica = current_replica(device)
    threads = set_threads(settings.threads, int(os.environ.get("LOCAL_WORLD_SIZE",
                                                               replica.world)))
    reuse_freed_memory()
    torch.manual_seed(settings.seed)
    np.random.seed(settings.seed)
    return device, replica, threads, torch.Generator().manual_seed(settings.seed)


def _keep_best(model: EmbeddingModel, state: Progress) -> None:
    """Load the best validation state into ``model``; without one (no validation), the last
    epoch counts as the best."""
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    else:
        state.best_epoch = len(state.history)


def _optimizer_and_progress(model: EmbeddingModel, lr: float, device: torch.device,
                            gen: torch.Generator, settings: TrainSettings, replica: Replica,
                            resume_folder: Path | None
                            ) -> tuple[torch.optim.Optimizer, Progress]:
    """Adam over the model's parameters, and the progress to start from: a fresh one, or
    the last checkpoint in ``resume_folder`` (restoring model, optimizer and ``gen``)."""
    # One pass over each parameter instead of six (the GAT's entity table: 3.5 ms a step).
    optimizer = torch.optim.Adam(model.parameters(), lr=lr,
                                 fused=device.type in ("cpu", "cuda"))
    if resume_folder is not None and (resume_folder / LAST_CHECKPOINT).exists():
        state = resume_from(resume_folder / LAST_CHECKPOINT, model, optimizer, gen, settings)
        if replica.is_main:
            log.info("resuming %s after epoch %d", settings.model, state.epoch)
        return optimizer, state
    if resume_folder is not None and replica.is_main:
        log.warning("nothing to resume in %s: training from scratch", resume_folder)
    return optimizer, Progress()


@dataclass
class _Loop:
    """The epochs of one training run (what :func:`train_model` sets up)."""

    model: EmbeddingModel
    optimizer: torch.optim.Optimizer
    gen: torch.Generator
    split: Split
    weights: Tensor  # loss weight of each training pair
    settings: TrainSettings
    batch_size: int  # scaled_batch's
    device: torch.device
    replica: Replica
    stage: str | None
    folder: Path | None  # checkpoints; None on ranks other than 0
    progress: bool

    def run(self, state: Progress, deadline: float | None) -> str:
        """Train from ``state.epoch + 1`` (updating ``state``); returns the stop reason."""
        settings, stops = self.settings, self.stage == "valid"
        if stops and state.bad >= settings.patience:  # resumed from a finished run
            return "early stopping"
        pairs = self.split.pairs("train")
        sampler = NegativeSampler(pairs, self.split.num_items, self.gen,
                                  pool=negative_pool(self.split))
        step = self.replica.wrap(_BatchLoss(self.model, settings, self.replica))
        bar = tqdm(range(state.epoch + 1, settings.epochs + 1), desc=f"train {settings.model}",
                   unit="epoch", initial=state.epoch, total=settings.epochs,
                   disable=not self.progress)
        for epoch in bar:
            t0 = time.perf_counter()
            loss, batches, out_of_time = _epoch(step, self.optimizer, pairs, self.weights, sampler,
                                                settings, self.batch_size, self.device, self.gen,
                                                bar, deadline, self.replica)
            record: dict[str, Any] = {"epoch": epoch, "loss": loss, "batches": batches,
                                      "seconds": time.perf_counter() - t0}
            # The curve always ends on an evaluated epoch, however training stops.
            if self.stage and (epoch % settings.eval_every == 0 or epoch == settings.epochs
                               or out_of_time):
                self._evaluate(state, record, bar)
            state.history.append(record)
            state.epoch = epoch
            # Complete epochs only: a run cut by the time limit redoes its last epoch.
            if self.folder is not None and not out_of_time:
                save_last(self.folder, self.model, self.optimizer, self.gen, settings, state)
            if stops and state.bad >= settings.patience:
                return "early stopping"
            if out_of_time:
                return "time limit"
        return "epoch cap"

    def _evaluate(self, state: Progress, record: dict[str, Any], bar) -> None:
        settings, stage = self.settings, self.stage
        assert stage is not None
        metrics = self.replica.from_main(
            lambda: _evaluate(self.model, self.split, stage, settings))
        record[stage] = metrics
        score = metrics[f"ndcg@{settings.k}"]
        bar.set_postfix(loss=f"{record['loss']:.4f}", ndcg=f"{score:.4f}")
        if not self.progress and self.replica.is_main:
            log.info("%s epoch %d/%d: loss %.4f, %s ndcg@%d %.4f, %.1f s/epoch",
                     settings.model, record["epoch"], settings.epochs, record["loss"], stage,
                     settings.k, score, record["seconds"])
        if stage != "valid":
            return
        if score > state.best:
            gained = score > state.best * (1.0 + settings.min_gain)
            state.best, state.best_epoch = score, record["epoch"]
            state.bad = 0 if gained else state.bad + 1
            state.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            if self.folder is not None:
                self.folder.mkdir(parents=True, exist_ok=True)
                best = state.best_state
                atomic_write(self.folder / "best.pt", lambda tmp: torch.save(best, tmp))
        else:
            state.bad += 1
