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

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from kgrec.errors import ModelError, UsageError
from kgrec.files import atomic_write, checksums, read_artefact, verify, write_text
from kgrec.gnn.device import resolve_device, reuse_freed_memory, set_threads
from kgrec.gnn.distributed import Replica, current_replica
from kgrec.gnn.graph import (
    bipartite_edge_index,
    homogeneous_graph,
    normalized_adjacency,
    training_graph,
)
from kgrec.gnn.kgat import KGATModel, history_matrix
from kgrec.gnn.losses import bpr_loss, softmax_loss
from kgrec.gnn.metrics import evaluate_ranking
from kgrec.gnn.models import INIT_STD, LightGCNModel, MFModel, PopModel, Recommender
from kgrec.gnn.sampling import NegativeSampler, negative_pool
from kgrec.gnn.split import Split, behaviour_weights, interaction_table
from kgrec.ids import NodeEmbeddings
from kgrec.kg.snapshot import GraphSnapshot
from kgrec.settings import MODEL_NAMES, TEXT_FEATURE_MODELS, TrainSettings

log = logging.getLogger(__name__)
#: The resumable checkpoint of :func:`train_model`, in its ``checkpoint_dir``.
LAST_CHECKPOINT = "last.pt"


class FrozenEmbeddings(Recommender):
    """Scores from exported embeddings (what :meth:`TrainResult.load` restores)."""

    trainable = False

    users: Tensor
    items: Tensor

    def __init__(self, users: Tensor, items: Tensor) -> None:
        super().__init__()
        self.num_users, self.num_items = users.shape[0], items.shape[0]
        self.register_buffer("users", users)
        self.register_buffer("items", items)

    def propagate(self) -> tuple[Tensor, Tensor]:
        return self.users, self.items


def build_model(
    snapshot: GraphSnapshot,
    split: Split,
    settings: TrainSettings,
    *,
    product_features: Tensor | None = None,
    train_weight: Tensor | None = None,
) -> Recommender:
    """The model named by ``settings.model`` over the training graph of ``split``."""
    model = _build_model(snapshot, split, settings, product_features, train_weight)
    # Popularity is not trained by any loss: unit-length [N, 1] vectors would tie every product.
    model.cosine = settings.loss == "softmax" and model.trainable
    return model


def _build_model(snapshot: GraphSnapshot, split: Split, settings: TrainSettings,
                 product_features: Tensor | None, train_weight: Tensor | None) -> Recommender:
    name = settings.model
    if settings.cl_weight > 0 and name not in TEXT_FEATURE_MODELS:
        raise UsageError(f"cl_weight > 0 needs model gcn or gat, not {name!r}")
    if (settings.item_input, settings.user_input) != ("id", "id") and (
            name not in TEXT_FEATURE_MODELS):
        raise UsageError(f"item_input and user_input other than 'id' need model gcn or gat, "
                         f"not {name!r}")
    if name == "pop":
        weight = train_weight if train_weight is not None else torch.as_tensor(
            split.train["weight"].to_numpy("float32", copy=True)
        )
        items = torch.as_tensor(split.train["product"].to_numpy("int64", copy=True))
        pop = torch.zeros(split.num_items).index_add_(0, items, weight.float())
        return PopModel(pop, split.num_users)
    if name == "mf":
        return MFModel(split.num_users, split.num_items, settings.dim, settings.init_std)
    adj = normalized_adjacency(bipartite_edge_index(split), split.num_users + split.num_items,
                               behaviour_edge_weights(split))
    if name == "lightgcn":
        return LightGCNModel(split.num_users, split.num_items, adj, settings.dim, settings.layers,
                             settings.init_std or INIT_STD)
    if name in TEXT_FEATURE_MODELS:
        graph = homogeneous_graph(training_graph(snapshot, split), snapshot.relations)
        features = product_features if settings.text_features else None
        history = None if settings.user_input == "id" else history_matrix(
            split.train, split.num_users, split.num_items, settings.history_half_life)
        return KGATModel(graph, adj, split.item_counts(), dim=settings.dim,
                         layers=settings.layers, kg_hops=settings.kg_hops,
                         attention=name == "gat", kg_dropout=settings.kg_dropout,
                         kg_every=settings.kg_every,
                         product_features=features, id_dropout=settings.id_dropout,
                         init_std=settings.init_std or INIT_STD,
                         cl_eps=settings.cl_eps if settings.cl_weight > 0 else 0.0,
                         item_input=settings.item_input, user_input=settings.user_input,
                         text_hidden=settings.text_hidden, history=history,
                         history_half_life=settings.history_half_life)
    raise UsageError(f"unknown model {name!r}; expected one of {MODEL_NAMES}")


def how_training_ended(stop_reason: str, max_minutes: float | None,
                       best_epoch: int | None = None) -> str:
    """How a run ended, in the words of the training summary and the report: converged by
    early stopping, or NOT converged (epoch cap, or the ``max_minutes`` safety net, whose
    result depends on the machine's speed and load)."""
    best = "" if best_epoch is None else f" (best epoch {best_epoch})"
    if stop_reason == "early stopping":
        return f"converged by early stopping{best}"
    if stop_reason == "time limit":
        return (f"NOT converged: stopped by the max_minutes safety net ({max_minutes:g} min) "
                f"before early stopping{best}; the result depends on the machine's speed and "
                f"load")
    return f"NOT converged: stopped by the {stop_reason} before early stopping{best}"


@dataclass
class TrainResult:
    """A trained model, its exported embeddings and its training history.

    Args:
        model: the trained :class:`Recommender` (best validation state).
        user_embeddings, product_embeddings: final embeddings joined to the id maps.
        history: one dict per epoch: ``epoch``, ``loss``, ``batches``, ``seconds`` and, on
            evaluation epochs, ``valid`` metrics of the overall slice.
        settings: the settings used.
        best_epoch: epoch of the restored state (0 for untrained models).
        seconds: training wall time.
        stop_reason: ``"early stopping"`` (validation stopped improving for ``patience``
            evaluations: converged), ``"epoch cap"``, ``"time limit"`` (the ``max_minutes``
            safety net) or ``"not trainable"`` (popularity, frozen embeddings).
        applied: what the run derived from the settings and the machine: ``batch_size``
            and ``lr`` (:func:`scaled_batch`) and torch ``threads``.
    """

    model: Recommender
    user_embeddings: NodeEmbeddings
    product_embeddings: NodeEmbeddings
    history: list[dict[str, Any]]
    settings: TrainSettings
    best_epoch: int = 0
    seconds: float = 0.0
    stop_reason: str = "not trainable"
    applied: dict[str, Any] = field(default_factory=dict)

    @property
    def converged(self) -> bool | None:
        """True when early stopping ended training, False when a cap (epochs or minutes)
        did first; None for models that are not trained."""
        return None if self.stop_reason == "not trainable" else self.stop_reason == "early stopping"

    @torch.no_grad()
    def score(self, user_idx: Tensor) -> Tensor:
        """Scores ``[B, num_items]`` for user rows ``user_idx`` (dot products of the embeddings)."""
        users = self.user_embeddings.tensor[user_idx.cpu()]
        return users @ self.product_embeddings.tensor.t()

    def summary(self) -> str:
        """One paragraph: model, epochs, time, final loss and best validation NDCG."""
        losses = [h["loss"] for h in self.history if "loss" in h]
        stage = "valid" if any("valid" in h for h in self.history) else "test"
        k = self.settings.k
        scores = [h[stage][f"ndcg@{k}"] for h in self.history if stage in h]
        best = max(scores, default=float("nan"))
        return (
            f"Trained {self.settings.model} (dim {self.settings.dim}) for {len(losses)} epochs in "
            f"{self.seconds:.1f}s; loss {losses[0] if losses else float('nan'):.4f} -> "
            f"{losses[-1] if losses else float('nan'):.4f}; best {stage} NDCG@{k} "
            f"{best:.4f} (restored state: epoch {self.best_epoch}); {self._stopped()}; "
            f"{self._applied()}embeddings for "
            f"{len(self.user_embeddings.ids):,} users and "
            f"{len(self.product_embeddings.ids):,} products."
        )

    def _applied(self) -> str:
        a = self.applied
        if not a or self.converged is None:
            return ""
        return f"batch {a['batch_size']:,}, lr {a['lr']:.3g}, {a['threads']} threads; "

    def _stopped(self) -> str:
        if self.converged is None:
            return "no training"
        return how_training_ended(self.stop_reason, self.settings.max_minutes)

    def save(self, folder: str | Path) -> Path:
        """Write checkpoint, embeddings, id maps, settings and history into ``folder``.

        Each file is written atomically; ``settings.json``, written last, holds their
        SHA-256 so that :meth:`load` refuses a file damaged since.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        writers = {
            "checkpoint.pt": lambda p: torch.save(self.model.state_dict(), p),
            "user_embeddings.pt": self.user_embeddings.save,
            "product_embeddings.pt": self.product_embeddings.save,
            "ids_user.json": self.user_embeddings.ids.save,
            "ids_product.json": self.product_embeddings.ids.save,
            "history.json": lambda p: p.write_text(json.dumps(self.history, indent=1)),
        }
        for name, write in writers.items():
            atomic_write(folder / name, write)
        meta = {"settings": dataclasses.asdict(self.settings), "best_epoch": self.best_epoch,
                "seconds": self.seconds, "stop_reason": self.stop_reason,
                "applied": self.applied,
                "converged": self.converged, "checksums": checksums(folder, writers)}
        write_text(folder / "settings.json", json.dumps(meta, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> TrainResult:
        """Restore a saved run; ``.model`` scores from the saved embeddings.

        Raises:
            ModelError: a file is missing, damaged or changed since :meth:`save`.
        """
        folder = Path(folder)
        for name in ("settings.json", "user_embeddings.pt", "product_embeddings.pt"):
            if not (folder / name).exists():
                raise ModelError(f"{folder} is not a training run: {name} is missing")
        meta = read_artefact(folder / "settings.json", _read_json, RETRAIN)
        verify(folder, meta.get("checksums", {}), RETRAIN)  # runs saved before: no sums
        users = read_artefact(folder / "user_embeddings.pt", NodeEmbeddings.load, RETRAIN)
        items = read_artefact(folder / "product_embeddings.pt", NodeEmbeddings.load, RETRAIN)
        history = read_artefact(folder / "history.json", _read_json, RETRAIN)
        return cls(
            FrozenEmbeddings(users.tensor, items.tensor), users, items, history,
            TrainSettings.from_any(None, **meta["settings"]), meta["best_epoch"], meta["seconds"],
            meta.get("stop_reason", "epoch cap"), meta.get("applied", {}),
        )


#: What rebuilds a damaged training run.
RETRAIN = "re-run `kgrec train`"


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


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


def behaviour_edge_weights(split: Split) -> Tensor | None:
    """Edge weights of propagation: with a target behaviour, each pair's loss weight (its
    heaviest behaviour's), both directions, so a view passes less than a purchase; None (all
    edges equal, LightGCN's) otherwise."""
    if split.target is None:
        return None
    weight = torch.as_tensor(split.train["weight"].to_numpy("float32", copy=True))
    return torch.cat([weight, weight])


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


def _embeddings(
    model: Recommender, snapshot: GraphSnapshot
) -> tuple[NodeEmbeddings, NodeEmbeddings]:
    model.eval()
    with torch.no_grad():
        users, items = model.embed()
    return (
        NodeEmbeddings("user", snapshot.id_maps["user"], users.detach().float().cpu()),
        NodeEmbeddings("product", snapshot.id_maps["product"], items.detach().float().cpu()),
    )


def _evaluate(model: Recommender, split: Split, stage: str, k: int) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        cache = model.embed()
        cache = (cache[0].float(), cache[1].float())
    device = cache[0].device

    def score(users: Tensor) -> Tensor:
        return model.score(users.to(device), cache)

    # AUC needs a full sort per batch: skipped while monitoring (it only stops on NDCG@k).
    return evaluate_ranking(score, split, stage=stage, k=k, slices=("overall",),
                            auc=False)["overall"]


class _BatchLoss(nn.Module):
    """The loss of one batch as a module's forward, which DistributedDataParallel hooks.

    Each rank sees the whole batch (users, positives, negatives and weights are the same on
    every rank) and takes its rows ``replica.bounds``: its BPR and L2 parts are scaled so
    that their mean over ranks (DDP averages gradients) is the single-process batch loss,
    ``sum w l / sum w + wd * |ego|^2 / (2 B)``. The contrastive term needs the whole batch
    and is the same on every rank, so it is not scaled. One process: factors of exactly 1.
    """

    def __init__(self, model: Recommender, settings: TrainSettings, replica: Replica) -> None:
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


@dataclass
class _Progress:
    """How far training got: written to ``last.pt`` after every epoch, read by ``resume``."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: float = -math.inf
    best_epoch: int = 0
    best_state: dict[str, Tensor] | None = None
    bad: int = 0


#: Settings a resumed run may change (caps and placement); any other must match.
RESUMABLE = ("epochs", "max_minutes", "patience", "min_gain", "device", "threads")


def _rng_state(gen: torch.Generator) -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    # As a tensor: torch.load(weights_only=True) refuses numpy arrays.
    return {"gen": gen.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "numpy": (kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss,
                      gauss)}


def _set_rng_state(state: dict[str, Any], gen: torch.Generator) -> None:
    gen.set_state(state["gen"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))


def _save_last(folder: Path, model, optimizer, gen, settings, progress: _Progress) -> None:
    """``last.pt``: everything :func:`_resume` needs, written atomically (a crash while
    writing leaves the previous one)."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "rng": _rng_state(gen), "settings": _settings_dict(settings), **vars(progress)}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / LAST_CHECKPOINT, lambda tmp: torch.save(state, tmp))


def _settings_dict(settings: TrainSettings) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(TrainSettings)}


def _resume(path: Path, model, optimizer, gen, settings) -> _Progress:
    """Restore model, optimizer, RNGs and progress from ``last.pt``."""
    state = read_artefact(path, lambda p: torch.load(p, map_location="cpu", weights_only=True),
                          "delete it to train from scratch")
    ours = _settings_dict(settings)
    changed = [f"{k} {v!r} (now {ours[k]!r})" for k, v in state["settings"].items()
               if k not in RESUMABLE and ours.get(k) != v]
    if changed:
        raise ModelError(f"cannot resume {path}: it was trained with " + ", ".join(changed))
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    _set_rng_state(state["rng"], gen)
    return _Progress(**{f.name: state[f.name] for f in dataclasses.fields(_Progress)})


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

    Inside an initialised torch.distributed process group each rank trains on its share
    of every batch (:mod:`kgrec.gnn.distributed`); rank 0 alone writes checkpoints.
    """
    settings = cfg if isinstance(cfg, TrainSettings) else TrainSettings.from_any(cfg)
    if resume and checkpoint_dir is None:
        raise UsageError("resume=True needs the checkpoint_dir of the interrupted run")
    device = resolve_device(settings.device)
    replica = current_replica(device)
    threads = set_threads(settings.threads, int(os.environ.get("LOCAL_WORLD_SIZE",
                                                               replica.world)))
    reuse_freed_memory()
    torch.manual_seed(settings.seed)
    np.random.seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    weights = train_weights(snapshot, split, settings.event_weights)
    model = build_model(snapshot, split, settings, product_features=product_features,
                        train_weight=weights).to(device)
    stage = eval_stage or ("valid" if len(split.valid) else None)
    folder = None if checkpoint_dir is None else Path(checkpoint_dir)
    state = _Progress()
    stop_reason = "not trainable"
    start = time.perf_counter()
    deadline = None if settings.max_minutes is None else start + 60 * settings.max_minutes
    batch_size, lr = scaled_batch(settings, len(split.train))
    if model.trainable and len(split.train):
        # One pass over each parameter instead of six (the GAT's entity table: 3.5 ms a step).
        optimizer = torch.optim.Adam(model.parameters(), lr=lr,
                                     fused=device.type in ("cpu", "cuda"))
        if resume and folder is not None and (folder / LAST_CHECKPOINT).exists():
            state = _resume(folder / LAST_CHECKPOINT, model, optimizer, gen, settings)
            if replica.is_main:
                log.info("resuming %s after epoch %d", settings.model, state.epoch)
        elif resume and replica.is_main:
            log.warning("nothing to resume in %s: training from scratch", folder)
        loop = _Loop(model, optimizer, gen, split, weights, settings, batch_size, device, replica,
                     stage, folder if replica.is_main else None, progress and replica.is_main)
        stop_reason = loop.run(state, deadline)
        if state.best_state is not None:
            model.load_state_dict(state.best_state)
        else:
            state.best_epoch = len(state.history)
    elif stage == "valid":
        state.history.append({"epoch": 0, "valid": _evaluate(model, split, stage, settings.k)})
    seconds = time.perf_counter() - start
    users, items = _embeddings(model, snapshot)
    result = TrainResult(model, users, items, state.history, settings, state.best_epoch,
                         seconds, stop_reason, {"batch_size": batch_size, "lr": lr,
                                                "threads": threads})
    if progress and replica.is_main:
        print(result.summary())
    return result


@dataclass
class _Loop:
    """The epochs of one training run (what :func:`train_model` sets up)."""

    model: Recommender
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

    def run(self, state: _Progress, deadline: float | None) -> str:
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
                _save_last(self.folder, self.model, self.optimizer, self.gen, settings, state)
            if stops and state.bad >= settings.patience:
                return "early stopping"
            if out_of_time:
                return "time limit"
        return "epoch cap"

    def _evaluate(self, state: _Progress, record: dict[str, Any], bar) -> None:
        settings, stage = self.settings, self.stage
        assert stage is not None
        metrics = self.replica.from_main(
            lambda: _evaluate(self.model, self.split, stage, settings.k))
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
