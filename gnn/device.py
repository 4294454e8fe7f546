"""Where tensors live: the one parser of kgrec's device settings (``auto``, ``cpu``,
``cuda``, ``cuda:N``), shared by training, text encoding and scoring.
"""

from __future__ import annotations

import re

import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` (or ``cuda:N``) without a GPU is
    an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but no CUDA GPU is available")
    return torch.device(name)
