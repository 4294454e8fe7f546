"""Data-parallel training over processes with torch.distributed (DistributedDataParallel).

Every rank holds the whole model and propagates the whole graph (it fits on one device);
what is split is each BPR batch. All ranks draw the same permutation and the same negatives
for the whole batch from the shared seed, then each takes its contiguous share of the rows
(:meth:`DistributedReplica.bounds`); DDP averages the gradients, and the trainer scales
each rank's loss so that the average is the single-process batch loss (see
``kgrec.gnn.train._BatchLoss``). Dropout masks match too: every rank seeds the global RNG
alike and draws the same masks in the same order. Rank 0 evaluates and broadcasts the
metrics, so every rank takes the same early-stopping decision; only rank 0 writes files.

Two ways to start ranks: :func:`train_distributed` (``kgrec train --nproc N``) spawns N
local processes; a launcher such as ``torchrun --nproc-per-node N -m kgrec.cli train ...``
sets ``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` / ``MASTER_PORT``, and
:func:`init_from_env` joins that group. gloo on CPUs, NCCL on GPUs (one per rank,
``LOCAL_RANK``). Results equal a single process up to float summation order (the gradient
all-reduce adds in another order): ``tests/gnn/test_distributed.py`` states the tolerance.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from kgrec.errors import UsageError

T = TypeVar("T")


class Replica:
    """This process's part in training: the single process (every row, nothing to share)."""

    rank, world = 0, 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that evaluates, logs and writes files."""
        return self.rank == 0

    def bounds(self, n: int) -> tuple[int, int]:
        """This rank's rows ``[lo, hi)`` of a global batch of ``n`` rows."""
        return 0, n

    def wrap(self, module: nn.Module) -> nn.Module:
        """The module whose backward pass shares gradients between ranks."""
        return module

    def mean(self, value: float) -> float:
        """Mean of ``value`` over ranks."""
        return value

    def any(self, flag: bool) -> bool:
        """True on every rank when any rank says True."""
        return flag

    def from_main(self, compute: Callable[[], T]) -> T:
        """``compute()`` on rank 0, its result sent to every rank."""
        return compute()


class DistributedReplica(Replica):
    """A rank of an initialised process group (see :func:`init_from_env`)."""

    def __init__(self, device: torch.device) -> None:
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        # NCCL collectives need tensors on the rank's GPU.
        self.device = device if dist.get_backend() == "nccl" else torch.device("cpu")

    def bounds(self, n: int) -> tuple[int, int]:
        size, extra = divmod(n, self.world)  # as torch.tensor_split: the first get one more
        lo = self.rank * size + min(self.rank, extra)
        return lo, lo + size + (self.rank < extra)

    def wrap(self, module: nn.Module) -> nn.Module:
        # Buffers (sparse adjacencies, graph indices) are identical on every rank: never
        # broadcast them (DDP cannot broadcast sparse CSR tensors anyway). static_graph:
        # some parameters never get a gradient (gcn's attention, gat without KG hops), the
        # same ones in every step.
        ignored = [name for name, _ in module.named_buffers()]
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, ignored)
        ids = [self.device.index] if self.device.type == "cuda" else None
        with warnings.catch_warnings():  # its replacement still syncs buffers at init
            warnings.filterwarnings("ignore", "`broadcast_buffers` is deprecated")
            return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False,
                                           static_graph=True)

    def mean(self, value: float) -> float:
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.item() / self.world

    def any(self, flag: bool) -> bool:
        t = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def from_main(self, compute: Callable[[], T]) -> T:
        box = [compute() if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]  # type: ignore[return-value]


def current_replica(device: torch.device) -> Replica:
    """A :class:`DistributedReplica` inside an initialised process group, else the single
    process."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return DistributedReplica(device)
    return Replica()


def is_main_rank() -> bool:
    """Rank 0 of the process group, or no group at all."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def launched() -> bool:
    """Started by a launcher (torchrun) as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank_device(device: str) -> str:
    """The device setting of this rank: its own GPU (``LOCAL_RANK``) where CUDA is used."""
    if device == "cpu" or not torch.cuda.is_available():
        return device
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"


def init_from_env(device: str = "auto") -> None:
    """Join the process group described by ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
    ``MASTER_PORT`` (what torchrun sets): NCCL when this rank trains on a GPU, else gloo."""
    if dist.is_initialized():
        return
    cuda = rank_device(device).startswith("cuda")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda and local >= torch.cuda.device_count():
        raise UsageError(f"NCCL needs one GPU per process: rank {local} of this machine, "
                         f"{torch.cuda.device_count()} GPU(s); use fewer processes or "
                         "--device cpu")
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")


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
    from kgrec.gnn.train import train_model

    settings = dataclasses.replace(settings, device=rank_device(settings.device))
    result = train_model(snapshot, split, settings, **kwargs)
    if dist.get_rank() == 0:
        torch.save({"model": result.model.state_dict(), "history": result.history,
                    "best_epoch": result.best_epoch, "seconds": result.seconds,
                    "stop_reason": result.stop_reason}, out)


def train_distributed(snapshot, split, cfg: Any = None, nproc: int = 2, *,
                      product_features: Tensor | None = None, **kwargs: Any):
    """:func:`kgrec.gnn.train.train_model` in ``nproc`` local processes; returns rank 0's
    :class:`~kgrec.gnn.train.TrainResult` (the trained model rebuilt in this process).
    ``kwargs``: the other options of ``train_model`` (``progress``, ``checkpoint_dir``,
    ``resume``, ``eval_stage``)."""
    from kgrec.gnn.train import TrainResult, _embeddings, build_model, train_weights
    from kgrec.settings import TrainSettings

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
    users, items = _embeddings(model, snapshot)
    return TrainResult(model, users, items, saved["history"], settings, saved["best_epoch"],
                       saved["seconds"], saved["stop_reason"])
