"""The on-disk form of a fitted fusion (the one place that reads and writes it).

A fusion folder holds ``fusion.json`` (the fitted jobs, the text sides, the text fields and
model, the normalisation and a model version), each text side's user and product vectors,
the products' text confidence and the raw product text vectors (reused by ``search``).
Every tensor is saved with its ids, so loading joins on ids, never on row order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from kgrec.errors import ModelError
from kgrec.files import (
    atomic_write,
    checksums,
    read_artefact,
    seal,
    unseal,
    verify,
    write_text,
)
from kgrec.fusion.fit import FusionFit, JobFit, TextSide
from kgrec.ids import IdMap, NodeEmbeddings

FUSION_FILE = "fusion.json"
RAW_TEXT_FILE = "raw_text_products.pt"


@dataclass
class Fusion:
    """A fitted fusion: ``fit`` (jobs and text sides, sides as of the latest history),
    ``confidence`` ``[N]`` per product, ``raw_text`` (``None`` for a catalogue without text)
    and ``meta`` (the JSON header: ``model_version``, ``normalise``, ``text_model`` ...)."""

    fit: FusionFit
    confidence: Tensor
    raw_text: NodeEmbeddings | None
    meta: dict[str, Any]

    @property
    def normalise(self) -> str:
        return str(self.meta["normalise"])

    @property
    def model_version(self) -> str:
        return str(self.meta["model_version"])


def save_fusion(fusion: Fusion, folder: str | Path, users: IdMap, products: IdMap) -> Path:
    """Write ``fusion`` into ``folder``; rows of its tensors follow ``users`` / ``products``.

    Each file is written atomically; ``fusion.json``, written last, holds their SHA-256
    and its own (:func:`kgrec.files.seal`): a blend edited within range is refused too.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, NodeEmbeddings] = {}
    for kind, side in fusion.fit.sides.items():
        tensors[f"text_users_{kind}.pt"] = NodeEmbeddings("user", users, side.users)
        tensors[f"text_products_{kind}.pt"] = NodeEmbeddings("product", products, side.items)
    tensors["text_confidence.pt"] = NodeEmbeddings("product", products, fusion.confidence[:, None])
    if fusion.raw_text is not None:
        tensors[RAW_TEXT_FILE] = fusion.raw_text
    for name, embeddings in tensors.items():
        atomic_write(folder / name, embeddings.save)
    profile = fusion.fit.sides.get("profile")
    meta = {**fusion.meta,
            "jobs": {name: job.to_dict() for name, job in fusion.fit.jobs.items()},
            "text_sides": list(fusion.fit.sides),
            "profile_half_life_events": profile.half_life_events if profile else None,
            "checksums": checksums(folder, tensors)}
    write_text(folder / FUSION_FILE, json.dumps(seal(meta), indent=1))
    return folder


def load_fusion(folder: str | Path, users: IdMap, products: IdMap) -> Fusion:
    """A folder written by :func:`save_fusion`, joined on ``users`` / ``products`` ids.

    Raises:
        ModelError: a file is missing, damaged or changed since it was saved.
    """
    folder = Path(folder)
    if not (folder / FUSION_FILE).exists():
        raise ModelError(f"{folder} holds no {FUSION_FILE}; run `kgrec fuse` first")
    meta = read_artefact(folder / FUSION_FILE, lambda p: json.loads(p.read_text()), FUSE_AGAIN)
    if not isinstance(meta, dict) or "jobs" not in meta:
        raise ModelError(f"{folder / FUSION_FILE} was written by an older kgrec; run "
                         "`kgrec fuse` again")
    meta = unseal(meta, folder / FUSION_FILE, FUSE_AGAIN)
    verify(folder, meta.get("checksums", {}), FUSE_AGAIN)

    def tensor(name: str) -> NodeEmbeddings:
        return read_artefact(folder / name, NodeEmbeddings.load, FUSE_AGAIN)

    sides = {kind: TextSide(kind, tensor(f"text_users_{kind}.pt").align(users),
                            tensor(f"text_products_{kind}.pt").align(products),
                            half_life_events=meta.get("profile_half_life_events"))
             for kind in meta["text_sides"]}
    jobs = {name: JobFit.from_dict(job) for name, job in meta["jobs"].items()}
    confidence = tensor("text_confidence.pt").align(products)[:, 0]
    raw = tensor(RAW_TEXT_FILE) if (folder / RAW_TEXT_FILE).exists() else None
    return Fusion(FusionFit(jobs, sides), confidence, raw, meta)


#: What rebuilds a damaged fusion folder.
FUSE_AGAIN = "re-run `kgrec fuse`"
