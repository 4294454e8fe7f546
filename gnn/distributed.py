"""Data-parallel training over processes with torch.distributed (DistributedDataParallel).

Every rank holds the whole model and propagates the whole graph (it fits on one device);
what is split is each BPR batch. All ranks draw the same permutation and the same negatives
for the whole batch from the shared seed, then each takes its contiguous share of the rows
(:meth:`kgrec.gnn.replica.DistributedReplica.bounds`); DDP averages the gradients, and the
trainer scales each rank's loss so that the average is the single-process batch loss (see
``kgrec.gnn.train._BatchLoss``). Dropout masks match too: every rank seeds the global RNG
alike and draws the same masks in the same order. Rank 0 evaluates and broadcasts the
metrics, so every rank takes the same early-stopping decision; only rank 0 writes files.

Two ways to start ranks: :func:`train_distributed` (``kgrec train --nproc N``) spawns N
local processes; a launcher such as ``torchrun --nproc-per-node N -m kgrec.cli train ...``
sets ``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` / ``MASTER_PORT``, and
:func:`kgrec.gnn.replica.init_from_env` joins that group. gloo on CPUs, NCCL on GPUs (one per rank,
``LOCAL_RANK``). Results equal a single process up to float summation order (the gradient
all-reduce adds in another order): ``tests/gnn/test_distributed.py`` states the tolerance.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor

from kgrec.gnn.models import build_model
from kgrec.gnn.replica import init_from_env, rank_device
from kgrec.gnn.result import TrainResult, export_embeddings
from kgrec.gnn.train import train_model, train_weights
from kgrec.gnn.warm import row_keys
from kgrec.settings import TrainSettings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, device: str, fn: Callable[..., Any],
               args: tuple[Any, ...]) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    init_from_env(device)
    try:
        fn(*args)
    finally:
        dist.destroy_process_group()


def spawn(nproc: int, fn: Callable[..., Any], *args: Any, device: str = "auto") -> None:
    """Run ``fn(*args)`` in ``nproc`` new local processes joined in one process group
    (``fn`` and ``args`` must pickle). Raises when a rank fails."""
    mp.spawn(_rank_main, args=(nproc, _free_port(), device, fn, args), nprocs=nproc, join=True)


def _train_rank(snapshot, split, settings, kwargs: dict[str, Any], out: Path) -> None:
    settings = dataclasses.replace(settings, device=rank_device(settings.device))
    result = train_model(snapshot, split, settings, **kwargs)
    if dist.get_rank() == 0:
        torch.save({"model": result.model.state_dict(), "history": result.history,
                    "best_epoch": result.best_epoch, "seconds": result.seconds,
                    "stop_reason": result.stop_reason, "applied": result.applied}, out)


def train_distributed(snapshot, split, cfg: Any = None, nproc: int = 2, *,
                      product_features: Tensor | None = None, **kwargs: Any):
    """:func:`kgrec.gnn.train.train_model` in ``nproc`` local processes; returns rank 0's
    :class:`~kgrec.gnn.result.TrainResult` (the trained model rebuilt in this process).
    ``kwargs``: the other options of ``train_model`` (``progress``, ``checkpoint_dir``,
    ``resume``, ``eval_stage``, ``warm_start``)."""

    settings = cfg if isinstance(cfg, TrainSettings) else TrainSettings.from_any(cfg)
    kwargs["product_features"] = product_features
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.pt"
        spawn(nproc, _train_rank, snapshot, split, settings, kwargs, out,
              device=settings.device)
        saved = torch.load(out, map_location="cpu", weights_only=True)
    model = build_model(snapshot, split, settings, product_features=product_features,
                        train_weight=train_weights(snapshot, split, settings.event_weights))
    model.load_state_dict(saved["model"])
    users, items = export_embeddings(model, snapshot)
    return TrainResult(model, users, items, saved["history"], settings, saved["best_epoch"],
                       saved["seconds"], saved["stop_reason"], saved["applied"],
                       row_keys=row_keys(model, snapshot))
