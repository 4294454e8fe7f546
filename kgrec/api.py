"""kgrec's Python API: one object from a graph snapshot to ranked, titled recommendations.

    from kgrec import Recommender
    rec = Recommender.fit("snapshot/", model="gat").fuse()
    rec.recommend(["1", "2"], items="long-tail", k=10)   # DataFrame with titles
    rec.save("runs/gat"); rec = Recommender.load("runs/gat")

The CLI commands, the demo and the notebooks call this. :class:`Recommender` is a thin facade:
a loaded run (:class:`kgrec.runfolder.Run`, which owns the run folder's layout) whose methods
call :mod:`kgrec.training` (fit, fuse, evaluate) and :mod:`kgrec.serving` (recommend,
audience, search, similar, explain). Loading a catalogue into a store is
:mod:`kgrec.loading` (``kgrec.ingest``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from torch import Tensor

from kgrec import serving, training
from kgrec.config import Config
from kgrec.fusion.score import FusedScorer
from kgrec.gnn.split import Split
from kgrec.kg.explore import Explanation
from kgrec.kg.snapshot import GraphSnapshot
from kgrec.runfolder import Run


class Recommender(Run):
    """A trained GNN on a snapshot, with its split and (after :meth:`fuse`) its text fusion.

    Build one with :meth:`fit` or :meth:`load`; the fields (:class:`~kgrec.runfolder.Run`)
    are public for notebooks. Each method below is one call of :mod:`kgrec.training` or
    :mod:`kgrec.serving`, whose docstrings say more.
    """

    @classmethod
    def fit(cls, snapshot: GraphSnapshot | str | Path, config: Config | None = None, *,
            split: str | Split | None = None, progress: bool = True,
            checkpoint_dir: str | Path | None = None, resume: bool = False,
            warm_start: str | Path | None = None, **train: Any) -> Recommender:
        """Train ``config.train.model`` on a split of ``snapshot``
        (:func:`kgrec.training.train_run`: ``split`` a kind or a ready split; ``warm_start``
        a previous run folder to start from; ``train``: overrides of ``[train]`` settings,
        e.g. ``model="mf"``, ``nproc`` > 1 data-parallel)."""
        run = training.train_run(snapshot, config, split=split, progress=progress,
                                 checkpoint_dir=checkpoint_dir, resume=resume,
                                 warm_start=warm_start, **train)
        return cls(run.snapshot, run.split, run.result, run.config)

    def fuse(self, text_sides: Sequence[str] | None = None, *,
             item_dependent: bool | None = None, progress: bool = True) -> Recommender:
        """Fit the blend ``s = a * s_gnn + (1 - a) * s_text`` on validation, per job
        (:func:`kgrec.training.fuse_run`). Returns self."""
        training.fuse_run(self, text_sides, item_dependent=item_dependent, progress=progress)
        return self

    def evaluate(self, stage: str = "test", k: int | None = None
                 ) -> dict[str, dict[str, dict[str, float]]]:
        """Rows model -> slice -> metric (:func:`kgrec.training.evaluate_run`)."""
        return training.evaluate_run(self, stage, k)

    def seen_pairs(self, exclude_seen: bool | str = True) -> Tensor:
        """``[2, E]`` (user, product) rows never recommended (:func:`kgrec.serving.seen_pairs`)."""
        return serving.seen_pairs(self, exclude_seen)

    def item_degree(self, pairs: Tensor) -> Tensor:
        """Events per product in ``pairs`` (:func:`kgrec.serving.popularity`)."""
        return serving.popularity(self, pairs)

    def candidates(self, items: str | Path | Sequence[str], degree: Tensor) -> Tensor:
        """Product rows for ``items`` (:func:`kgrec.serving.candidate_rows`)."""
        return serving.candidate_rows(self, items, degree)

    def scorer(self, job: str = "full", degree: Tensor | None = None,
               alpha: float | None = None) -> FusedScorer:
        """The scorer of a fitted job (:func:`kgrec.serving.fused_scorer`)."""
        return serving.fused_scorer(self, job, degree, alpha)

    def recommend(self, users: Sequence[str] | None = None,
                  items: str | Path | Sequence[str] = "all", k: int | None = None, *,
                  exclude_seen: bool | str = True, alpha: float | None = None,
                  progress: bool = False) -> pd.DataFrame:
        """Top-``k`` products per user (:func:`kgrec.serving.recommend`)."""
        return serving.recommend(self, users, items, k, exclude_seen=exclude_seen, alpha=alpha,
                                 progress=progress)

    def audience(self, items: str | Path | Sequence[str], k: int | None = None, *,
                 exclude_seen: bool | str = True, alpha: float | None = None,
                 progress: bool = False) -> pd.DataFrame:
        """Top-``k`` users per product (:func:`kgrec.serving.audience`)."""
        return serving.audience(self, items, k, exclude_seen=exclude_seen, alpha=alpha,
                                progress=progress)

    def search(self, user: str, query: str, k: int | None = None, *,
               alpha: float | None = None, exclude_seen: bool | str = True) -> pd.DataFrame:
        """Personalised semantic search (:func:`kgrec.serving.search`)."""
        return serving.search(self, user, query, k, alpha=alpha, exclude_seen=exclude_seen)

    def explain(self, user: str, product: str, max_hops: int = 3,
                limit: int = 5) -> list[Explanation]:
        """The typed paths linking ``user`` to ``product`` (:func:`kgrec.serving.explain`)."""
        return serving.explain(self, user, product, max_hops, limit)

    def similar(self, product: str, k: int = 10, space: str = "fused",
                max_hops: int = 4) -> pd.DataFrame:
        """The ``k`` products nearest to ``product`` (:func:`kgrec.serving.similar`)."""
        return serving.similar(self, product, k, space, max_hops)

    def history_titles(self, user: str, n: int = 5) -> list[str]:
        """The ``n`` latest products of ``user`` (:func:`kgrec.serving.history_titles`)."""
        return serving.history_titles(self, user, n)
