"""This process's part in data-parallel training (torch.distributed): the single process
(:class:`Replica`) or one rank of a process group (:class:`DistributedReplica`), and how a
rank joins its group. :mod:`kgrec.gnn.distributed` starts the ranks."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn
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
