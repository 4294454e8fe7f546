"""A trained run, loaded (:class:`Run`: the snapshot, the split, the training result, the
settings and, once fused, the fusion) and the run folder it is saved as: the training run
(:meth:`kgrec.gnn.result.TrainResult.save`), the split, the snapshot (``snapshot/``), the
fitted fusion (``fusion/``, :mod:`kgrec.fusion.artefacts`), the settings (``config.json``),
the id hash of the snapshot it was trained on and the checksums that make a damaged file
fail to load; and whether a saved run can warm-start the next training
(:func:`warm_start_from`). The one place that knows this layout.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from kgrec.config import Config
from kgrec.errors import InputError, ModelError
from kgrec.files import checksums, read_artefact, verify, write_text
from kgrec.fusion.artefacts import Fusion, load_fusion, save_fusion
from kgrec.fusion.encoder import TextEncoder, resolve_precision
from kgrec.fusion.fit import Sources
from kgrec.fusion.reengage import Reengagement
from kgrec.fusion.text import encode_products, has_text
from kgrec.gnn.device import resolve_device
from kgrec.gnn.pairs import pair_table
from kgrec.gnn.result import RETRAIN, TrainResult
from kgrec.gnn.split import Split
from kgrec.gnn.warm import WarmStart
from kgrec.ids import IdMap
from kgrec.kg.graph_sources import GraphIndex
from kgrec.kg.snapshot import GraphSnapshot, build_snapshot
from kgrec.settings import TrainSettings
from kgrec.stores import open_store

SNAPSHOT_DIR, FUSION_DIR, CONFIG_FILE = "snapshot", "fusion", "config.json"
#: SHA-256 of the split and snapshot files of a saved run (:meth:`Run.save`).
CHECKSUM_FILE = "checksums.json"
#: The :meth:`GraphSnapshot.id_hash` of the snapshot a saved run was trained on.
TRAINED_ON_FILE = "trained_on.json"


def text_encoder(config: Config):
    """The configured transformer text encoder (cached on disk per text)."""
    return TextEncoder(config.fusion.text_model, device=config.train.device,
                       batch_size=config.fusion.text_batch_size,
                       cache_dir=config.fusion.cache_dir,
                       precision=config.fusion.text_precision)


def text_precision(config: Config) -> str:
    """The arithmetic the text encoder runs in here (``fusion.text_precision`` resolved for
    the device: "auto" is bfloat16 only where the hardware computes it)."""
    return resolve_precision(config.fusion.text_precision, resolve_device(config.train.device))


def encode_catalogue(snapshot: GraphSnapshot, config: Config, progress: bool = True):
    """The products' text vectors (:class:`NodeEmbeddings`), or None for a catalogue without
    text: said in one line instead of encoding blanks."""
    fields = tuple(config.fusion.text_fields)
    if not has_text(snapshot.products, fields):
        print(f"kgrec: the catalogue carries no product text ({', '.join(fields)} empty or "
              "identical everywhere): nothing encoded, graph only.")
        return None
    return encode_products(text_encoder(config), snapshot.products, fields=fields,
                           separator=config.fusion.text_separator, progress=progress)


def as_snapshot(snapshot: GraphSnapshot | str | Path) -> GraphSnapshot:
    return snapshot if isinstance(snapshot, GraphSnapshot) else GraphSnapshot.load(snapshot)


def _verify_run(folder: Path, own_snapshot: bool) -> None:
    """Check the run's split (and its own snapshot) against the checksums of :meth:`save`
    (runs saved before checksums were kept: nothing to check)."""
    path = folder / CHECKSUM_FILE
    if path.exists():
        sums = read_artefact(path, lambda p: json.loads(p.read_text()), RETRAIN)
        verify(folder, {name: sha for name, sha in sums.items()
                        if own_snapshot or not name.startswith(f"{SNAPSHOT_DIR}/")}, RETRAIN)


def _check_trained_on(folder: Path, snap: GraphSnapshot) -> None:
    """A run scores only the snapshot it was trained on: the ids of both, in row order,
    must hash alike (runs saved before the hash was kept: nothing to check)."""
    path = folder / TRAINED_ON_FILE
    if not path.exists():
        return
    saved = read_artefact(path, lambda p: json.loads(p.read_text())["snapshot_id_hash"],
                          RETRAIN)
    if saved != snap.id_hash():
        raise ModelError(f"{folder} was trained on another snapshot: its node ids differ "
                         f"(id hash {saved[:12]} at training, {snap.id_hash()[:12]} now); give "
                         "the snapshot it was trained on (--snapshot) or train again")


def load_snapshot(
    config: Config, snapshot: str | None = None, backend: str | None = None, progress: bool = True
) -> GraphSnapshot:
    """The saved snapshot folder ``snapshot`` if given, else a fresh export of the store."""
    if snapshot:
        return GraphSnapshot.load(snapshot)
    store = open_store(config, backend)
    try:
        return build_snapshot(store, progress=progress)
    finally:
        store.close()


#: Settings that steer a training run without changing the model it trains: a previous run
#: trained under other values of these may still warm-start this one.
RUN_CONTROL = ("epochs", "patience", "min_gain", "eval_every", "max_minutes", "max_batches",
               "device", "threads")
#: The ``[fusion]`` settings that decide what a product's text vector says (a model trained
#: on other ones cannot warm-start); ``text_precision`` changes its last digits only.
TEXT_SETTINGS = ("text_model", "text_fields", "text_separator")


def warm_start_from(folder: str | Path, config: Config, model: str
                    ) -> tuple[WarmStart | None, str]:
    """The trained run in ``folder`` as the start of training ``model`` under ``config``, or
    None and why not: none there, other model settings or text inputs, no row keys."""
    folder = Path(folder)
    if not (folder / "settings.json").exists():
        return None, f"no previous run in {folder}"
    meta = json.loads((folder / "settings.json").read_text())
    if meta.get("converged") is None:  # popularity: nothing trained, nothing to carry
        return None, ""
    old = meta["settings"]
    new = dataclasses.asdict(TrainSettings.from_any(config.train, model=model))
    old_text = json.loads((folder / CONFIG_FILE).read_text()).get("fusion", {}) \
        if (folder / CONFIG_FILE).exists() else {}
    changed = [k for k in new if k not in RUN_CONTROL and old.get(k) != new[k]]
    changed += [f"fusion.{k}" for k in TEXT_SETTINGS
                if old_text.get(k) != json.loads(json.dumps(getattr(config.fusion, k)))]
    if changed:
        return None, f"the previous run's settings differ ({', '.join(changed)})"
    try:
        return WarmStart.load(folder), ""
    except ModelError as exc:
        return None, str(exc)


@dataclass
class Run:
    """A trained GNN on a snapshot, with its split and (once fused) its text fusion: what
    serving (:mod:`kgrec.serving`), evaluation and the run folder read. The fields are public
    for notebooks; :class:`kgrec.Recommender` is this with the jobs as methods."""

    snapshot: GraphSnapshot
    split: Split
    result: TrainResult
    config: Config = field(default_factory=Config)
    fusion: Fusion | None = None

    @property
    def users(self) -> IdMap:
        return self.snapshot.id_maps["user"]

    @property
    def products(self) -> IdMap:
        return self.snapshot.id_maps["product"]

    @cached_property
    def gnn_users(self) -> Tensor:
        return self.result.user_embeddings.align(self.users)  # joined on ids, not row order

    @cached_property
    def gnn_items(self) -> Tensor:
        return self.result.product_embeddings.align(self.products)

    def sources(self, degree: Tensor | None = None) -> Sources:
        """The fusion's :class:`~kgrec.fusion.fit.Sources` (no text side before fusing);
        ``degree``: the products' popularity the GNN weight reads (default: training)."""
        degree = self.split.item_counts() if degree is None else degree
        if self.fusion is None:
            return Sources(self.gnn_users, self.gnn_items, {}, degree, torch.ones(len(degree)))
        return Sources(self.gnn_users, self.gnn_items, self.fusion.fit.sides, degree,
                       self.fusion.confidence)

    def save(self, folder: str | Path, *, with_snapshot: bool = True) -> Path:
        """Write everything :meth:`load` needs into ``folder`` (a ``kgrec train`` run
        folder plus ``snapshot/``, ``fusion/`` and ``config.json``); without the snapshot
        (``with_snapshot=False``) when runs share one, given again to :meth:`load`."""
        folder = Path(folder)
        self.result.save(folder)
        self.split.save(folder)
        if with_snapshot:
            self.snapshot.save(folder / SNAPSHOT_DIR)
        if self.fusion is not None:
            save_fusion(self.fusion, folder / FUSION_DIR, self.users, self.products)
        else:  # a fusion fitted on an earlier training (other ids, perhaps) must not stay
            shutil.rmtree(folder / FUSION_DIR, ignore_errors=True)
        write_text(folder / CONFIG_FILE, json.dumps(self.config.redacted(), indent=1))
        write_text(folder / TRAINED_ON_FILE,
                   json.dumps({"snapshot_id_hash": self.snapshot.id_hash()}))
        # The split and snapshot files are not written atomically: their checksums, written
        # last, make a half-written or later damaged one fail to load instead.
        names = [*(p.relative_to(folder).as_posix() for p in sorted(folder.glob("split*"))),
                 TRAINED_ON_FILE,
                 *(f"{SNAPSHOT_DIR}/{p.name}" for p in sorted((folder / SNAPSHOT_DIR).glob("*"))
                   if with_snapshot and p.is_file())]
        write_text(folder / CHECKSUM_FILE, json.dumps(checksums(folder, names), indent=1))
        return folder

    @classmethod
    def load(cls, folder: str | Path, snapshot: GraphSnapshot | str | Path | None = None,
             config: Config | None = None, fusion: str | Path | None = None) -> Self:
        """A saved run: ``folder`` from :meth:`save` or ``kgrec train`` (``snapshot``: the
        graph it was trained on, default its own ``snapshot/``); its fusion (``fusion``,
        default ``folder/fusion``) is loaded when present."""
        folder = Path(folder)
        if not (folder / "split.json").exists():
            raise ModelError(f"{folder} is not a training run: split.json is missing")
        if snapshot is None:
            if not (folder / SNAPSHOT_DIR).exists():
                raise ModelError(f"{folder} holds no {SNAPSHOT_DIR}/: give the snapshot the "
                                 "run was trained on (--snapshot)")
            snapshot = folder / SNAPSHOT_DIR
        own = not isinstance(snapshot, GraphSnapshot) and Path(snapshot) == folder / SNAPSHOT_DIR
        _verify_run(folder, own_snapshot=own)
        snap = snapshot if isinstance(snapshot, GraphSnapshot) else read_artefact(
            Path(snapshot), GraphSnapshot.load,
            RETRAIN if own else "export it again with `kgrec graph snapshot`")
        _check_trained_on(folder, snap)
        result = TrainResult.load(folder)
        split = read_artefact(folder, Split.load, RETRAIN)
        if split.num_users != len(snap.id_maps["user"]):
            raise ModelError(f"{folder}: its split has {split.num_users:,} users, the snapshot "
                             f"{len(snap.id_maps['user']):,}: was it trained on another graph?")
        rec = cls(snap, split, result, config or Config())
        fusion = Path(fusion) if fusion else folder / FUSION_DIR
        if fusion.exists():
            rec.fusion = load_fusion(fusion, rec.users, rec.products)
        return rec

    @cached_property
    def raw_text(self) -> Tensor:
        """``[N, d]`` product text vectors: the fusion's, else encoded now (cached on disk)."""
        raw = self.fusion.raw_text if self.fusion is not None else None
        raw = raw or encode_catalogue(self.snapshot, self.config, progress=False)
        if raw is None:
            raise InputError("the catalogue carries no product text")
        return raw.align(self.products)

    @cached_property
    def titles(self) -> pd.Series:
        return self.snapshot.products.set_index("id")["title"].astype("string")

    @cached_property
    def interactions(self) -> pd.DataFrame:
        return self.snapshot.interactions()

    @cached_property
    def seen_in_training(self) -> Reengagement | None:
        """The re-engagement term as the split's training pairs give it (fit, evaluation)."""
        return Reengagement.of_split(self.split, self.config.fusion.seen_prior)

    @cached_property
    def seen_now(self) -> Reengagement | None:
        """The re-engagement term of every event in the snapshot (serving)."""
        if self.split.target is None:
            return None
        return Reengagement(pair_table(self.interactions), self.split.target, len(self.users),
                            len(self.products), self.config.fusion.seen_prior)

    @cached_property
    def graph_index(self) -> GraphIndex:
        return GraphIndex(self.snapshot)

    def top_k(self, k: int | None) -> int:
        k = self.config.score.top_k if k is None else k
        if isinstance(k, bool | np.bool_) or not isinstance(k, int | np.integer) or k < 1:
            raise InputError(f"k must be a whole number of at least 1, got {k!r}")
        return int(k)

    def user_rows(self, users: Sequence[str] | None) -> Tensor:
        if users is None:
            return torch.arange(len(self.users))
        if isinstance(users, str):
            users = [users]
        return torch.as_tensor(self.rows(self.users, users, "user"), dtype=torch.long)

    @staticmethod
    def rows(ids: IdMap, wanted: Sequence[str], what: str) -> np.ndarray:
        wanted = [str(x) for x in wanted]
        unknown = [x for x in wanted if x not in ids]
        if unknown:
            raise InputError(f"unknown {what} id(s) {', '.join(map(repr, unknown[:5]))}"
                             f"{' ...' if len(unknown) > 5 else ''}", field=what)
        return ids.index_of(wanted)

    def titled(self, frame: pd.DataFrame, candidates: int | None = None) -> pd.DataFrame:
        """``frame`` with product titles; ``attrs["candidates"]``: how many columns competed."""
        frame = frame.drop(columns="per").reset_index(drop=True)
        frame["title"] = frame["product_id"].map(self.titles).fillna("")
        frame.attrs["candidates"] = candidates
        return frame
