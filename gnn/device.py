"""Where tensors live: the one parser of kgrec's device settings (``auto``, ``cpu``,
``cuda``, ``cuda:N``), shared by training, text encoding and scoring; and how many CPU
threads training uses.
"""

from __future__ import annotations

import os
import re

import torch

from kgrec.errors import UsageError
from kgrec.gnn.cpus import available_cpus


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` (or ``cuda:N``) without a GPU is
    an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise UsageError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} requested but no CUDA GPU is available")
    return torch.device(name)


def set_threads(requested: int | None = None, processes: int = 1) -> int:
    """Set torch's intra-op threads and return the number: ``requested``, or the CPUs this
    process may use shared among ``processes`` local training processes.

    More threads than CPUs make every parallel kernel wait for descheduled threads
    (measured 7-13x slower steps on a 2-core machine with other jobs running); fewer leave
    cores idle. The number depends on the machine, never on its load, so a seed gives the
    same results on a quiet and on a busy machine.
    """
    if requested is not None and requested < 1:
        raise UsageError(f"threads must be at least 1, got {requested}")
    count = requested or max(1, available_cpus() // max(processes, 1))
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count


#: glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def reuse_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of unmapping it; True where
    it applied (glibc on Linux).

    glibc serves every allocation over 32 MB with a fresh ``mmap`` and unmaps it on free, so
    each ``[N, d]`` tensor of a large graph is page-faulted in again on every training step:
    at 1M events (216k nodes, 55 MB per ``[N, 64]`` tensor) a LightGCN step took 1.2 s
    instead of 0.48 s. With no mmap and a high trim threshold the heap keeps such blocks,
    and the process's peak memory is what it would be anyway.
    """
    import ctypes
    import ctypes.util

    if os.name != "posix" or not hasattr(os, "confstr"):
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except (OSError, ValueError):
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD,
                                                                     1 << 31))
