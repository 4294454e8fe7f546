"""kgrec's Python API: one object from a graph snapshot to ranked, titled recommendations.

    from kgrec import Recommender
    rec = Recommender.fit("snapshot/", model="gat").fuse()
    rec.recommend(["1", "2"], items="long-tail", k=10)   # DataFrame with titles
    rec.save("runs/gat"); rec = Recommender.load("runs/gat")

The CLI commands, the demo and the notebooks call this; it owns the run folder's layout:
the training run (:meth:`kgrec.gnn.train.TrainResult.save`), the split, the snapshot
(``snapshot/``), the fitted fusion (``fusion/``, :mod:`kgrec.fusion.artefacts`) and the
settings (``config.json``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from kgrec.config import Config
from kgrec.errors import InputError, ModelError
from kgrec.files import checksums, read_artefact, verify, write_text
from kgrec.fusion.artefacts import Fusion, load_fusion, save_fusion
from kgrec.fusion.candidates import ITEM_SETS
from kgrec.gnn.device import resolve_device
from kgrec.gnn.models import MODELS
from kgrec.gnn.result import RETRAIN, TrainResult
from kgrec.gnn.split import (
    Split,
    item_cold_start_split,
    make_split,
    target_behaviour,
)
from kgrec.gnn.train import train_model
from kgrec.ids import IdMap
from kgrec.kg import schema
from kgrec.kg.explore import Explanation, GraphIndex, explain
from kgrec.kg.snapshot import GraphSnapshot
from kgrec.settings import SourceSpec, TrainSettings

if TYPE_CHECKING:
    from kgrec.fusion.reengage import Reengagement

#: What ``exclude_seen`` accepts besides True (every interaction) and False (none).
#: Each names the stage whose ranking leaves those pairs out (:meth:`Split.excluded`).
EXCLUDE_STAGES = {"train": "valid", "train+valid": "test"}
SNAPSHOT_DIR, FUSION_DIR, CONFIG_FILE = "snapshot", "fusion", "config.json"
#: SHA-256 of the split and snapshot files of a saved run (:meth:`Recommender.save`).
CHECKSUM_FILE = "checksums.json"
#: The :meth:`GraphSnapshot.id_hash` of the snapshot a saved run was trained on.
TRAINED_ON_FILE = "trained_on.json"
#: Spaces :meth:`Recommender.similar` measures nearness in.
SIMILAR_SPACES = ("graph", "text", "fused")


def ingest(config: Config, *, reports_dir: str | Path | None = None,
           progress: bool = True, echo: bool = False):
    """Read the catalogue of ``config.source`` and merge it into the configured store
    (idempotent: a re-run adds nothing). Rejected rows go to the rejects report in
    ``reports_dir`` (default ``data.reports_dir``); ``echo`` prints the summary. A generic
    dump's events are read and written ``data.chunk_rows`` at a time. Returns the
    :class:`~kgrec.kg.ingest.IngestSummary`; raises :class:`InputError` (after loading what
    was valid) when a file lost more than ``data.max_reject_share`` of its rows."""
    import time

    from kgrec.kg.extract.sources import count_rows, stream_source
    from kgrec.kg.ingest import ingest_stream
    from kgrec.stores import open_store

    started = time.perf_counter()  # the summary times the whole run: read, validate, write
    store = open_store(config)
    try:
        def known() -> list[str]:
            return [i for batch in store.iter_nodes("Product") for i in batch["id"]]

        parts = stream_source(config.source, cache_dir=config.data.cache_dir,
                              chunk_rows=config.data.chunk_rows, progress=progress,
                              known_products=known)
        summary = ingest_stream(parts, store, reports_dir or config.data.reports_dir,
                                total_rows=count_rows(config.source), started=started,
                                progress=progress)
    finally:
        store.close()
    if echo:
        print(summary.paragraph())
    problems = summary.reject_problems(config.data.max_reject_share)
    if problems:
        raise InputError("; ".join(problems) + f"; see {summary.rejects_path}")
    return summary


def bulk_ingest(config: Config, *, home: str | Path | None = None,
                reports_dir: str | Path | None = None, progress: bool = True,
                echo: bool = False, env: dict[str, str] | None = None):
    """First load of a (very large) dump into Neo4j with Neo4j's own bulk importer: the
    server of ``config.neo4j.uri`` must be stopped and its data folder ``home`` (default
    $NEO4J_HOME or server.sh's ``.neo4j/data-<port>``) empty. The import is followed by a
    start of the server (left running), the uniqueness constraints and a count check (see
    :mod:`kgrec.kg.store.bulk`); later loads use :func:`ingest`. A generic dump's events are
    exported ``data.chunk_rows`` at a time, so memory holds one chunk, not the dump. ``env``
    adds environment for the scripts (e.g. ``NEO4J_RUN_DIR``). Returns the ingest summary."""
    from kgrec.kg.extract.sources import count_rows, stream_source
    from kgrec.kg.ingest import ingest_stream
    from kgrec.kg.store.bulk import BulkStore

    store = BulkStore(config.neo4j, home, env=env, batch_size=config.store.batch_size)
    try:
        store.check()  # before reading what may be a very large dump
        parts = stream_source(config.source, cache_dir=config.data.cache_dir,
                              chunk_rows=config.data.chunk_rows, progress=progress)
        summary = ingest_stream(parts, store, reports_dir or config.data.reports_dir,
                                total_rows=count_rows(config.source), progress=progress)
    finally:
        store.close()
    if echo:
        print(summary.paragraph())
        stages = ", ".join(f"{name} {s:.1f}s" for name, s in store.timings.items())
        print(f"Bulk import into {store.home} ({stages}); Neo4j runs at {config.neo4j.uri}.")
    problems = summary.reject_problems(config.data.max_reject_share)
    if problems:
        raise InputError("; ".join(problems) + f"; see {summary.rejects_path}")
    return summary


def make_run_split(snapshot: GraphSnapshot, kind: str, config: Config) -> Split:
    """The evaluation split ``kind`` (see ``kgrec train --help``) with the config's seed,
    event weights and target behaviour (``given``: the source's held-out pairs)."""
    weights = config.train.event_weights or None
    if kind == "item_cold_start":
        return item_cold_start_split(snapshot, seed=config.train.seed, event_weights=weights)
    target = target_behaviour(snapshot, config.train.target)
    held = given_test_pairs(snapshot, config.source, target) if kind == "given" else None
    return make_split(snapshot, kind=kind, seed=config.train.seed, event_weights=weights,
                      target=target, held_out=held)


def objective_splits(snapshot: GraphSnapshot, split: Split, config: Config
                     ) -> dict[str, Split]:
    """The split of every other behaviour as the target, to evaluate one model on each
    objective side by side: the same kind, seed and weights (``given``: each behaviour's own
    held-out file; a behaviour without one is left out). Empty without a target."""
    if split.target is None:
        return {}
    held = set(snapshot.interactions()["rel"].unique()) - {split.target}
    out = {}
    for rel in (r for r in schema.INTERACTIONS if r in held):
        other = dataclasses.replace(config, train=dataclasses.replace(config.train, target=rel))
        try:
            out[rel] = make_run_split(snapshot, split.kind, other)
        except InputError:  # a given split without this behaviour's held-out file
            continue
    return out


def _fits_behaviours(split: Split, config: Config, settings: TrainSettings) -> bool:
    """Behaviour weights are fitted for a trained model on a split with a target, other
    behaviours and validation pairs, unless the config sets event weights or no scales."""
    others = set(split.behaviours()) - {split.target}
    return (split.target is not None and bool(others) and len(split.valid) > 0
            and len(config.train.behaviour_scales) > 1 and not config.train.event_weights
            and settings.model != "pop")


def given_test_pairs(snapshot: GraphSnapshot, source: SourceSpec, target: str | None
                     ) -> pd.DataFrame:
    """``user, product`` rows of the source's held-out file of ``target`` (purchases when
    None); pairs on users or products the graph lacks are left out, and said."""
    from kgrec.kg.extract.lists import held_out_pairs

    if source.kind != "lists":
        raise InputError(f"the given split reads held-out files of a lists source; this "
                         f"source is {source.kind}", field="train.split")
    pairs = held_out_pairs(source.path, target or schema.PURCHASED, source.held_out)
    users = snapshot.id_maps["user"].rows_or_missing(pairs["user"])
    products = snapshot.id_maps["product"].rows_or_missing(pairs["product"])
    known = (users >= 0) & (products >= 0)
    if not known.all():
        print(f"kgrec: {int((~known).sum()):,} of {len(pairs):,} held-out pairs name users or "
              "products the graph lacks: left out of the test stage.")
    return pd.DataFrame({"user": users[known], "product": products[known]})


def text_encoder(config: Config):
    """The configured transformer text encoder (cached on disk per text)."""
    from kgrec.fusion.text import TextEncoder

    return TextEncoder(config.fusion.text_model, device=config.train.device,
                       batch_size=config.fusion.text_batch_size,
                       cache_dir=config.fusion.cache_dir)


def encode_catalogue(snapshot: GraphSnapshot, config: Config, progress: bool = True):
    """The products' text vectors (:class:`NodeEmbeddings`), or None for a catalogue without
    text: said in one line instead of encoding blanks."""
    from kgrec.fusion.text import encode_products, has_text

    fields = tuple(config.fusion.text_fields)
    if not has_text(snapshot.products, fields):
        print(f"kgrec: the catalogue carries no product text ({', '.join(fields)} empty or "
              "identical everywhere): nothing encoded, graph only.")
        return None
    return encode_products(text_encoder(config), snapshot.products, fields=fields,
                           separator=config.fusion.text_separator, progress=progress)


def _job(items: object) -> str:
    """The fitted fusion job that ranks ``items``: long-tail and cold-start candidates
    use the blend fitted on tail candidates."""
    return "tail" if isinstance(items, str) and items in ("long-tail", "cold-start") else "full"


def _as_snapshot(snapshot: GraphSnapshot | str | Path) -> GraphSnapshot:
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


@dataclass
class Recommender:
    """A trained GNN on a snapshot, with its split and (after :meth:`fuse`) its text fusion.

    Build one with :meth:`fit` or :meth:`load`; the fields are public for notebooks.
    """

    snapshot: GraphSnapshot
    split: Split
    result: TrainResult
    config: Config = field(default_factory=Config)
    fusion: Fusion | None = None

    # ---- building -----------------------------------------------------------------------

    @classmethod
    def fit(cls, snapshot: GraphSnapshot | str | Path, config: Config | None = None, *,
            model: str | None = None, split: str | Split | None = None,
            progress: bool = True, checkpoint_dir: str | Path | None = None,
            resume: bool = False, **train: Any) -> Recommender:
        """Train ``model`` (default ``config.train.model``) on a split of ``snapshot``.

        Args:
            snapshot: a :class:`GraphSnapshot` or its folder.
            config: settings (default: :class:`kgrec.config.Config` defaults).
            model: gat, gcn, lightgcn, mf or pop.
            split: a split kind (``kgrec train --help``; default ``train.split``) or a
                ready :class:`Split`.
            progress: show progress bars.
            checkpoint_dir: where training keeps its best and last states while it runs.
            resume: continue an interrupted run from ``checkpoint_dir/last.pt``.
            train: overrides of ``[train]`` settings, e.g. ``epochs=5``; ``nproc`` > 1 trains
                data-parallel in that many processes (:mod:`kgrec.gnn.distributed`).
        """
        from kgrec.gnn.distributed import train_distributed

        config = config or Config()
        snapshot = _as_snapshot(snapshot)
        nproc = train.pop("nproc", None) or config.train.nproc
        settings = TrainSettings.from_any(config.train, model=model, **train)
        run_split = split if isinstance(split, Split) else make_run_split(
            snapshot, split or config.train.split, config)
        features = None
        if MODELS[settings.model].takes_text and settings.text_features:
            raw = encode_catalogue(snapshot, config, progress)
            features = None if raw is None else raw.tensor
        behaviours = None
        if _fits_behaviours(run_split, config, settings):
            from kgrec.gnn.behaviours import fit_behaviour_weights, reweighted

            behaviours = fit_behaviour_weights(
                snapshot, run_split, settings, product_features=features,
                scales=config.train.behaviour_scales, epochs=config.train.behaviour_fit_epochs)
            run_split = reweighted(run_split, behaviours.weights)
            if progress:
                print(f"kgrec: {behaviours.summary()}")
        options = {"product_features": features, "progress": progress,
                   "checkpoint_dir": checkpoint_dir, "resume": resume}
        result = (train_distributed(snapshot, run_split, settings, nproc, **options)
                  if nproc > 1 else train_model(snapshot, run_split, settings, **options))
        if behaviours is not None:
            result.applied["behaviour_fit"] = behaviours.candidates
        return cls(snapshot, run_split, result, config)

    def fuse(self, text_sides: Sequence[str] | None = None, *,
             item_dependent: bool | None = None, progress: bool = True) -> Recommender:
        """Fit the blend ``s = a * s_gnn + (1 - a) * s_text`` on the validation split, per
        job (full ranking, long-tail candidates), comparing ``text_sides`` ("profile",
        "tower"; default ``fusion.text_side``) and constant / item-dependent ``a`` (default
        ``fusion.alpha_function``); keeps the GNN alone where no blend beats it. Returns
        self."""
        from kgrec.fusion.fit import Sources, build_text_side, fit_fusion
        from kgrec.fusion.text import text_confidence

        config, split = self.config, self.split
        if text_sides is None:
            side = config.fusion.text_side
            text_sides = ("profile", "tower") if side == "all" else (side,)
        if item_dependent is None:
            item_dependent = config.fusion.alpha_function == "item"
        raw = encode_catalogue(self.snapshot, config, progress)
        sampling = {"sample_users": config.fusion.fit_users, "pool": config.fusion.fit_pool,
                    "seed": config.train.seed, "progress": progress}
        sides = {} if raw is None else {
            kind: build_text_side(kind, split, raw.align(self.products), k=config.train.k,
                                  tower_epochs=config.fusion.tower_epochs,
                                  half_lives=config.fusion.profile_half_lives, **sampling)
            for kind in text_sides}
        confidence = text_confidence(self.snapshot.products, config.fusion.text_fields)
        sources = Sources(self.gnn_users, self.gnn_items, sides, split.item_counts(), confidence)
        fit = fit_fusion(sources, split, k=config.train.k,
                         normalise_method=config.fusion.normalise,
                         item_dependent=item_dependent, reengage=self._seen_in_training,
                         **sampling)
        # Serve with profiles as of the latest history the split knows.
        fit.sides = {kind: side.at_stage(split, "test") for kind, side in fit.sides.items()}
        meta = {"model_version": f"{self.result.settings.model}-fusion-{int(time.time())}",
                "text_fields": list(config.fusion.text_fields),
                "normalise": config.fusion.normalise,
                "text_model": None if raw is None else config.fusion.text_model,
                "split": split.summary()}
        self.fusion = Fusion(fit, confidence, raw, meta)
        return self

    # ---- ids and scores -----------------------------------------------------------------

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

    def seen_pairs(self, exclude_seen: bool | str = True) -> Tensor:
        """``[2, E]`` (user, product) rows never recommended: every snapshot interaction
        (True: serving; with a target behaviour only its events, unless
        ``score.unseen_only``), the split's ``"train"`` or ``"train+valid"`` pairs (a ranking that
        can be evaluated on validation / test), or none (False)."""
        if exclude_seen is True:
            frame = self._interactions
            if self.split.target is not None and not self.config.score.unseen_only:
                # a viewed product may still be bought
                frame = frame[frame["rel"] == self.split.target]
            pairs = np.stack([frame["user"].to_numpy("int64"), frame["product"].to_numpy("int64")])
            return torch.as_tensor(pairs).reshape(2, -1)
        if exclude_seen is False:
            return torch.zeros(2, 0, dtype=torch.long)
        if exclude_seen not in EXCLUDE_STAGES:
            raise InputError(f"exclude_seen must be True, False or one of "
                             f"{', '.join(EXCLUDE_STAGES)}, got {exclude_seen!r}")
        frame = self.split.excluded(EXCLUDE_STAGES[exclude_seen])
        return torch.as_tensor(frame[["user", "product"]].to_numpy("int64").T.copy())

    def item_degree(self, pairs: Tensor) -> Tensor:
        """Events per product in ``pairs`` (what long-tail and the blend weight read)."""
        from kgrec.fusion.candidates import item_degree

        return item_degree(pairs, len(self.products))

    def candidates(self, items: str | Path | Sequence[str], degree: Tensor) -> Tensor:
        """Product rows for ``items``: a name of :data:`ITEM_SETS`, a file of product ids
        (a :class:`~pathlib.Path`: one per line, or CSV/Parquet with ``product_id``) or ids."""
        from kgrec.fusion.candidates import select_items

        if isinstance(items, Path):
            return select_items(str(items), self.products, degree)
        if isinstance(items, str):
            if items not in ITEM_SETS:
                raise InputError(f"items must be one of {', '.join(ITEM_SETS)} or a list of "
                                 f"product ids, got {items!r}")
            return select_items(items, self.products, degree)
        return torch.as_tensor(self._rows(self.products, items, "product"), dtype=torch.long)

    def scorer(self, job: str = "full", degree: Tensor | None = None,
               alpha: float | None = None):
        """The :class:`FusedScorer` of a fitted job (``"full"`` or ``"tail"``); the GNN
        alone before :meth:`fuse`; ``alpha``: a constant GNN weight instead of the fitted
        one (0: text only, 1: GNN only)."""
        from kgrec.fusion.blend import Blend

        device = resolve_device(self.config.train.device)
        sources = self._sources(degree)
        if self.fusion is None:
            return sources.scorer(Blend(1.0, self.config.fusion.normalise), device=device)
        chosen = self.fusion.fit.jobs[job]
        blend = chosen.blend(sources, self.fusion.normalise)
        if alpha is not None:
            blend = Blend(alpha, blend.normalise, blend.text)
        seen = self._seen_now if chosen.seen_weight else None
        return sources.scorer(blend, seen=seen, seen_weight=chosen.seen_weight, device=device)

    def _sources(self, degree: Tensor | None = None):
        """The fusion's :class:`~kgrec.fusion.fit.Sources` (no text side before :meth:`fuse`);
        ``degree``: the products' popularity the GNN weight reads (default: training)."""
        from kgrec.fusion.fit import Sources

        degree = self.split.item_counts() if degree is None else degree
        if self.fusion is None:
            return Sources(self.gnn_users, self.gnn_items, {}, degree, torch.ones(len(degree)))
        return Sources(self.gnn_users, self.gnn_items, self.fusion.fit.sides, degree,
                       self.fusion.confidence)

    def _scoring(self, items: str | Path | Sequence[str], exclude_seen: bool | str,
                 alpha: float | None) -> tuple[Tensor, Tensor, Any]:
        """(pairs never recommended, candidate products, scorer) of a ranking over ``items``;
        popularity (long tail, blend weight) counts the excluded pairs, or every interaction
        when nothing is excluded."""
        seen = self.seen_pairs(exclude_seen)
        degree = self.item_degree(seen if len(seen[0]) else self.seen_pairs(True))
        candidates = self.candidates(items, degree)
        if not len(candidates):
            what = f"{items!r}" if isinstance(items, str | Path) else "the list given"
            raise InputError(f"no products to score: items is {what}, which selects none; "
                             "give at least one product id", field="items")
        return seen, candidates, self.scorer(_job(items), degree, alpha)

    # ---- the jobs -----------------------------------------------------------------------

    def recommend(self, users: Sequence[str] | None = None,
                  items: str | Path | Sequence[str] = "all", k: int | None = None, *,
                  exclude_seen: bool | str = True, alpha: float | None = None,
                  progress: bool = False) -> pd.DataFrame:
        """Top-``k`` products per user: columns user_id, product_id, rank, score (fused),
        score_gnn, score_text and title. ``users``: ids (default all); ``items``: "all",
        "long-tail", "cold-start" (scored with the fusion fitted on tail candidates), a
        file or product ids (:meth:`candidates`); ``exclude_seen``: see :meth:`seen_pairs`;
        ``alpha``: see :meth:`scorer`."""
        from kgrec.fusion.output import topk_frame
        from kgrec.fusion.seen import SeenIndex
        from kgrec.fusion.topk import chunked_topk

        k = self._k(k)
        seen, cand, scorer = self._scoring(items, exclude_seen, alpha)
        rows = self._user_rows(users)
        top = chunked_topk(scorer.chunk_scorer(cand), rows, k, columns=cand,
                           num_columns=len(self.products),
                           seen=SeenIndex.from_edges(seen, len(self.users)),
                           chunk_size=self.config.score.chunk_size, progress=progress,
                           desc="score users", components=scorer.pair_components)
        return self._titled(topk_frame(top, rows, self.users, self.products, per="user"),
                            candidates=len(cand))

    def audience(self, items: str | Path | Sequence[str], k: int | None = None, *,
                 exclude_seen: bool | str = True, alpha: float | None = None,
                 progress: bool = False) -> pd.DataFrame:
        """Top-``k`` users per product (who to show a long-tail product to): columns
        product_id, user_id, rank, scores and title."""
        from kgrec.fusion.output import topk_frame
        from kgrec.fusion.seen import SeenIndex
        from kgrec.fusion.topk import chunked_topk

        k = self._k(k)
        seen, cand, scorer = self._scoring(items, exclude_seen, alpha)
        users = torch.arange(len(self.users))
        stats = scorer.user_stats(users, cand, chunk_size=self.config.score.chunk_size)
        top = chunked_topk(lambda r: scorer.score_items(r, users, stats), cand, k,
                           columns=users, num_columns=len(self.users),
                           seen=SeenIndex.from_edges(seen, len(self.products), transpose=True),
                           chunk_size=self.config.score.chunk_size, progress=progress,
                           desc="score products")
        return self._titled(topk_frame(top, cand, self.products, self.users, per="item"),
                            candidates=len(users))

    def search(self, user: str, query: str, k: int | None = None, *,
               alpha: float | None = None, exclude_seen: bool | str = True) -> pd.DataFrame:
        """Personalised semantic search: products ranked for ``user`` by
        ``alpha * z(GNN score) + (1 - alpha) * z(similarity to the query text)`` (default
        ``fusion.search_alpha``: the query leads, taste re-orders). Columns as
        :meth:`recommend`, score_text being the query similarity."""
        from kgrec.fusion.blend import Blend
        from kgrec.fusion.output import topk_frame
        from kgrec.fusion.score import FusedScorer
        from kgrec.fusion.seen import SeenIndex
        from kgrec.fusion.topk import chunked_topk

        config = self.config
        k = config.fusion.search_top_k if k is None else k
        blend = Blend(config.fusion.search_alpha if alpha is None else alpha,
                      config.fusion.normalise, "query")
        row = int(self._user_rows([user])[0])
        encoder = text_encoder(config)
        scorer = FusedScorer(self.gnn_users[[row]], self.gnn_items, encoder.encode([query]),
                             self._raw_text, blend=blend)
        seen = self.seen_pairs(exclude_seen)
        mine = seen[1][seen[0] == row]
        one = torch.zeros(1, dtype=torch.long)
        top = chunked_topk(scorer.chunk_scorer(), one, self._k(k),
                           num_columns=len(self.products),
                           seen=SeenIndex.from_edges(torch.stack([torch.zeros_like(mine), mine]),
                                                     1),
                           progress=False, components=scorer.pair_components)
        return self._titled(topk_frame(top, one, IdMap("user", [user]), self.products))

    def explain(self, user: str, product: str, max_hops: int = 3,
                limit: int = 5) -> list[Explanation]:
        """The typed paths linking ``user`` to ``product`` in the graph (why the product
        relates to the user), the most telling first (:func:`kgrec.kg.explore.explain`)."""
        return explain(self._graph_index, str(user), str(product), max_hops=max_hops,
                       limit=limit)

    def similar(self, product: str, k: int = 10, space: str = "fused",
                max_hops: int = 4) -> pd.DataFrame:
        """The ``k`` products nearest to ``product`` by cosine of the GNN embeddings
        (``"graph"``), of the MiniLM text vectors (``"text"``) or by the fitted blend of the
        two (``"fused"``: ``a * z(graph) + (1 - a) * z(text)`` with the full ranking's
        ``a`` for this product), beside their hop distance in the graph (``graph_hops``,
        empty beyond ``max_hops``)."""
        import torch.nn.functional as F

        from kgrec.fusion.blend import Blend

        if space not in SIMILAR_SPACES:
            raise InputError(f"space must be one of {', '.join(SIMILAR_SPACES)}, got {space!r}")
        row = int(self._rows(self.products, [product], "product")[0])

        def cosine(vectors: Tensor) -> Tensor:
            x = F.normalize(vectors.float(), dim=1)
            return x @ x[row]

        sims = {}
        if space in ("graph", "fused"):
            sims["graph"] = cosine(self.gnn_items)
        if space in ("text", "fused"):
            sims["text"] = cosine(self._raw_text)
        score = sims["graph" if space == "graph" else "text"]
        if space == "fused":  # z-scored over every other product, as a user's scores are
            others = torch.arange(len(self.products)) != row
            blend = Blend(self._alpha_of(row), "zscore", "text")
            score = torch.full((len(self.products),), -torch.inf)
            score[others] = blend.combine(sims["graph"][None, others], sims["text"][None, others],
                                          raw_single=False)[0]
        score = score.clone()
        score[row] = -torch.inf
        top = torch.topk(score, min(k, len(self.products) - 1))
        index = self._graph_index
        hops = index.distances(index.index("Product", product), max_hops)
        ids = self.products.ids_of(top.indices.numpy())
        frame = pd.DataFrame({
            "rank": np.arange(1, len(ids) + 1), "product_id": ids.astype(str),
            "similarity": top.values.numpy().astype("float64"),
            "graph_hops": pd.array([None if not np.isfinite(h) else int(h) for h in
                                    (hops[index.index("Product", i)] for i in ids)],
                                   dtype="Int64"),
            **{f"{n}_cosine": v[top.indices].numpy().astype("float64") for n, v in sims.items()},
        })
        frame.insert(2, "title", frame["product_id"].map(self._titles).fillna(""))
        return frame

    def _alpha_of(self, row: int) -> float:
        """The full ranking's fitted GNN weight for one product (0.5 before :meth:`fuse`)."""
        if self.fusion is None:
            return 0.5
        alpha = self.fusion.fit.jobs["full"].blend(self._sources()).alpha
        return alpha if isinstance(alpha, float) else float(alpha[row])

    def evaluate(self, stage: str = "test", k: int | None = None
                 ) -> dict[str, dict[str, dict[str, float]]]:
        """Rows model -> slice -> metric on the split's ``stage``: the GNN alone and, after
        :meth:`fuse`, the fused ranking and each text side alone (slices overall, long_tail,
        cold_start, tail_candidates; with a target behaviour, the GNN and the fused ranking
        also on each other behaviour as the objective, ``objective:CARTED`` ...)."""
        from kgrec.fusion.alpha import AlphaFunction
        from kgrec.fusion.fit import FusionFit, JobFit, fused_table, job_scorer
        from kgrec.gnn.metrics import evaluate_ranking, long_tail_items

        k = self._k(k if k is not None else self.config.train.k)
        name, split = self.result.settings.model, self.split
        table = evaluate_ranking(self.result.score, split, stage=stage, k=k)
        table["tail_candidates"] = evaluate_ranking(
            self.result.score, split, stage=stage, k=k, candidates=long_tail_items(split),
            slices=("overall",))["overall"]
        objectives = objective_splits(self.snapshot, split, self.config)
        for rel, other in objectives.items():
            table[f"objective:{rel}"] = evaluate_ranking(
                self.result.score, other, stage=stage, k=k, slices=("overall",))["overall"]
        rows = {name: table}
        fusion = self.fusion
        if fusion is None:
            return rows
        fit, sources = fusion.fit, self._sources()

        def fused(f: FusionFit) -> dict[str, dict[str, float]]:
            return fused_table(sources, f, split, stage=stage, k=k,
                               normalise_method=fusion.normalise, seen=self._seen_in_training)

        rows[f"{name}+fusion"] = fused(fit)
        scorer = job_scorer(sources, fit, "full", normalise_method=fusion.normalise,
                            seen=self._seen_in_training)
        for rel, other in objectives.items():
            rows[f"{name}+fusion"][f"objective:{rel}"] = evaluate_ranking(
                scorer, other, stage=stage, k=k, slices=("overall",))["overall"]
        for side in fit.sides:
            text_only = {job: JobFit(job, side, AlphaFunction.constant(0.0), 0.0, 0.0)
                         for job in fit.jobs}
            rows[f"text:{side}"] = fused(FusionFit(text_only, fit.sides))
        return rows

    def history_titles(self, user: str, n: int = 5) -> list[str]:
        """Titles of the ``n`` latest products ``user`` interacted with (latest first):
        what to read the user's recommendations against."""
        row = int(self._rows(self.users, [user], "user")[0])
        events = self._interactions
        mine = events[events["user"] == row].sort_values("time", kind="stable")
        ids = self.products.ids_of(mine["product"].to_numpy()[::-1][:n])
        return [str(self._titles.get(i, i)) for i in ids]

    # ---- saving -------------------------------------------------------------------------

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
             config: Config | None = None, fusion: str | Path | None = None) -> Recommender:
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

    # ---- helpers ------------------------------------------------------------------------

    @cached_property
    def _raw_text(self) -> Tensor:
        """``[N, d]`` product text vectors: the fusion's, else encoded now (cached on disk)."""
        raw = self.fusion.raw_text if self.fusion is not None else None
        raw = raw or encode_catalogue(self.snapshot, self.config, progress=False)
        if raw is None:
            raise InputError("the catalogue carries no product text")
        return raw.align(self.products)

    @cached_property
    def _titles(self) -> pd.Series:
        return self.snapshot.products.set_index("id")["title"].astype("string")

    @cached_property
    def _interactions(self) -> pd.DataFrame:
        return self.snapshot.interactions()

    @cached_property
    def _seen_in_training(self) -> Reengagement | None:
        """The re-engagement term as the split's training pairs give it (fit, evaluation)."""
        from kgrec.fusion.reengage import Reengagement

        return Reengagement.of_split(self.split, self.config.fusion.seen_prior)

    @cached_property
    def _seen_now(self) -> Reengagement | None:
        """The re-engagement term of every event in the snapshot (serving)."""
        from kgrec.fusion.reengage import Reengagement
        from kgrec.gnn.split import pair_table

        if self.split.target is None:
            return None
        return Reengagement(pair_table(self._interactions), self.split.target, len(self.users),
                            len(self.products), self.config.fusion.seen_prior)

    @cached_property
    def _graph_index(self) -> GraphIndex:
        return GraphIndex(self.snapshot)

    def _k(self, k: int | None) -> int:
        k = self.config.score.top_k if k is None else k
        if isinstance(k, bool | np.bool_) or not isinstance(k, int | np.integer) or k < 1:
            raise InputError(f"k must be a whole number of at least 1, got {k!r}")
        return int(k)

    def _user_rows(self, users: Sequence[str] | None) -> Tensor:
        if users is None:
            return torch.arange(len(self.users))
        if isinstance(users, str):
            users = [users]
        return torch.as_tensor(self._rows(self.users, users, "user"), dtype=torch.long)

    @staticmethod
    def _rows(ids: IdMap, wanted: Sequence[str], what: str) -> np.ndarray:
        wanted = [str(x) for x in wanted]
        unknown = [x for x in wanted if x not in ids]
        if unknown:
            raise InputError(f"unknown {what} id(s) {', '.join(map(repr, unknown[:5]))}"
                             f"{' ...' if len(unknown) > 5 else ''}", field=what)
        return ids.index_of(wanted)

    def _titled(self, frame: pd.DataFrame, candidates: int | None = None) -> pd.DataFrame:
        """``frame`` with product titles; ``attrs["candidates"]``: how many columns competed."""
        frame = frame.drop(columns="per").reset_index(drop=True)
        frame["title"] = frame["product_id"].map(self._titles).fillna("")
        frame.attrs["candidates"] = candidates
        return frame
