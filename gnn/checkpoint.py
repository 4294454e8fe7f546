"""The resumable state of a training run: ``last.pt`` (model, optimizer, RNG states and
progress) written after every epoch, and read back so that a resumed run equals an
uninterrupted one."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from kgrec.errors import ModelError
from kgrec.files import atomic_write, read_artefact
from kgrec.settings import TrainSettings

#: The resumable checkpoint of :func:`kgrec.gnn.train.train_model`, in its ``checkpoint_dir``.
LAST_CHECKPOINT = "last.pt"


@dataclass
class Progress:
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


def save_last(folder: Path, model, optimizer, gen, settings, progress: Progress) -> None:
    """``last.pt``: everything :func:`resume` needs, written atomically (a crash while
    writing leaves the previous one)."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "rng": _rng_state(gen), "settings": _settings_dict(settings), **vars(progress)}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / LAST_CHECKPOINT, lambda tmp: torch.save(state, tmp))


def _settings_dict(settings: TrainSettings) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(TrainSettings)}


def resume_from(path: Path, model, optimizer, gen, settings) -> Progress:
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
    return Progress(**{f.name: state[f.name] for f in dataclasses.fields(Progress)})
