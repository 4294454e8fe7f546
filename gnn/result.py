"""A trained model's result: its embeddings, history and how training ended, saved and
loaded as a run folder whose files are checked against their recorded SHA-256."""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from kgrec.errors import ModelError
from kgrec.files import atomic_write, checksums, read_artefact, verify, write_text
from kgrec.gnn.models import EmbeddingModel, FrozenEmbeddings
from kgrec.gnn.warm import CHECKPOINT_FILE, ROW_KEYS_FILE, load_row_keys, save_row_keys
from kgrec.ids import NodeEmbeddings
from kgrec.kg.snapshot import GraphSnapshot
from kgrec.settings import TrainSettings


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
        model: the trained :class:`~kgrec.gnn.models.EmbeddingModel` (best validation state).
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
            and ``lr`` (:func:`scaled_batch`) and torch ``threads``; ``warm_start`` where
            it started from a previous run (:mod:`kgrec.gnn.warm`).
        row_keys: the ids of the rows of the model's node and relation tables
            (:func:`kgrec.gnn.warm.row_keys`), saved so that a later run can warm-start.
    """

    model: EmbeddingModel
    user_embeddings: NodeEmbeddings
    product_embeddings: NodeEmbeddings
    history: list[dict[str, Any]]
    settings: TrainSettings
    best_epoch: int = 0
    seconds: float = 0.0
    stop_reason: str = "not trainable"
    applied: dict[str, Any] = field(default_factory=dict)
    row_keys: dict[str, np.ndarray] | None = None
    #: A loaded result's ``checkpoint.pt``: ``model`` then holds only the embeddings, and a
    #: save copies this file, so the trained parameters (a later warm start's) survive.
    saved_checkpoint: Path | None = None

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
        warm = self.applied.get("warm_start")
        started = f"warm-started from {warm['source']}, " if warm else ""
        return started + how_training_ended(self.stop_reason, self.settings.max_minutes)

    def save(self, folder: str | Path) -> Path:
        """Write checkpoint, embeddings, id maps, settings and history into ``folder``.

        Each file is written atomically; ``settings.json``, written last, holds their
        SHA-256 so that :meth:`load` refuses a file damaged since.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        source = self.saved_checkpoint
        writers = {
            CHECKPOINT_FILE: (lambda p: torch.save(self.model.state_dict(), p)) if source is None
            else (lambda p: shutil.copyfile(source, p)),
            "user_embeddings.pt": self.user_embeddings.save,
            "product_embeddings.pt": self.product_embeddings.save,
            "ids_user.json": self.user_embeddings.ids.save,
            "ids_product.json": self.product_embeddings.ids.save,
            "history.json": lambda p: p.write_text(json.dumps(self.history, indent=1)),
        }
        if self.row_keys is not None:
            keys = self.row_keys
            writers[ROW_KEYS_FILE] = lambda p: save_row_keys(keys, p)
        else:  # another model's keys must not outlive it in a reused folder
            (folder / ROW_KEYS_FILE).unlink(missing_ok=True)
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
        keys = folder / ROW_KEYS_FILE
        row_keys = read_artefact(keys, load_row_keys, RETRAIN) if keys.exists() else None
        return cls(
            FrozenEmbeddings(users.tensor, items.tensor), users, items, history,
            TrainSettings.from_any(None, **meta["settings"]), meta["best_epoch"], meta["seconds"],
            meta.get("stop_reason", "epoch cap"), meta.get("applied", {}), row_keys,
            folder / CHECKPOINT_FILE if (folder / CHECKPOINT_FILE).exists() else None,
        )


#: What rebuilds a damaged training run.
RETRAIN = "re-run `kgrec train`"


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def export_embeddings(
    model: EmbeddingModel, snapshot: GraphSnapshot
) -> tuple[NodeEmbeddings, NodeEmbeddings]:
    """The model's user and product embeddings (evaluation mode, on the CPU) joined to the
    snapshot's id maps."""
    model.eval()
    with torch.no_grad():
        users, items = model.embed()
    return (
        NodeEmbeddings("user", snapshot.id_maps["user"], users.detach().float().cpu()),
        NodeEmbeddings("product", snapshot.id_maps["product"], items.detach().float().cpu()),
    )
