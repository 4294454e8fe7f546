"""Fitting the fusion on a split, once per job: which text side, and which alpha function.

A job is what the ranking is for, and each is fitted on its own validation ranking:

- ``full``: rank every product (the ``overall`` evaluation, ``recommend(items="all")``);
- ``tail``: rank long-tail products only (batch scoring of the long tail, where text and
  knowledge graph must carry what interaction counts cannot).

For each job the fit compares the text sides (``profile``: raw MiniLM profile similarity;
``tower``: the BPR-trained text tower; and the GNN alone, ``a = 1``, which is the
text-featured GNN when the GNN took product text as input), fitting for each the constant
alpha and the item-dependent :class:`kgrec.fusion.alpha.AlphaFunction` on validation NDCG@K.
Test pairs are never read. A profile is rebuilt for each stage from what is known then
(:meth:`kgrec.gnn.split.Split.history`: train for validation, train + validation for the test of
a time-ordered split), as it would be at serving time; trained sides (the tower, the GNN)
keep what they learnt from ``train``. Validation NDCG@K is measured on
:class:`kgrec.fusion.pools.BlendPools` (a sample of users, each ranked within a candidate pool
scored once), which equals ``kgrec.gnn.metrics.evaluate_ranking`` (the evaluation of every
model) wherever the pool is exact, and every fit reports how many users that is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from kgrec.errors import UsageError
from kgrec.fusion.alpha import ALPHA_GRID, PIVOT_GRID, AlphaFit, AlphaFunction, fit_alpha_function
from kgrec.fusion.blend import GNN_ONLY, Blend
from kgrec.fusion.pools import BlendPools
from kgrec.fusion.reengage import Reengagement, fit_reengagement
from kgrec.fusion.score import FusedScorer, ScoreFn, candidate_score_fn
from kgrec.fusion.text import user_profiles
from kgrec.fusion.tower import train_text_tower
from kgrec.gnn.metrics import evaluate_ranking, long_tail_items
from kgrec.gnn.split import Split
from kgrec.settings import FIT_POOL, FIT_USERS, PROFILE_HALF_LIVES

#: Text sides: the raw MiniLM profile similarity, or a text tower trained on the interactions.
TEXT_SIDES = ("profile", "tower")
#: What the ranking is for: every product, or the long-tail products only.
JOBS = ("full", "tail")
#: The GNN's name among the fit's score sources.
GNN = "gnn"


def job_candidates(job: str, split: Split) -> Tensor | None:
    """Bool mask of the products a job ranks (None: all)."""
    if job == "full":
        return None
    if job == "tail":
        return long_tail_items(split)
    raise UsageError(f"unknown job {job!r}; expected one of {', '.join(JOBS)}")


@dataclass
class TextSide:
    """Text-side vectors for a :class:`FusedScorer`: users ``[U, d]``, items ``[N, d]``
    (``half_life_events``: the recency of a ``profile`` side's users)."""

    kind: str
    users: Tensor
    items: Tensor
    losses: list[float] = field(default_factory=list)
    half_life_events: float | None = None

    def at_stage(self, split: Split, stage: str) -> TextSide:
        """The side as known when ranking ``stage``: a profile is recomputed from
        ``split.history(stage)``; a trained side is returned as it is."""
        if self.kind != "profile":
            return self
        users = user_profiles(split.history(stage), self.items, split.num_users,
                              half_life_events=self.half_life_events)
        return TextSide(self.kind, users, self.items, self.losses, self.half_life_events)


@dataclass
class Sources:
    """What every blend of one model reads: the GNN embeddings ``[U, d]`` / ``[N, d]``, the
    text sides, and the two product features the GNN weight depends on (``degree``: training
    events; ``confidence``: text confidence, :func:`kgrec.fusion.text.text_confidence`)."""

    gnn_users: Tensor
    gnn_items: Tensor
    sides: dict[str, TextSide]
    degree: Tensor
    confidence: Tensor

    def at_stage(self, split: Split, stage: str) -> Sources:
        """The sources as known when ranking ``stage`` (:meth:`TextSide.at_stage`)."""
        sides = {name: side.at_stage(split, stage) for name, side in self.sides.items()}
        return Sources(self.gnn_users, self.gnn_items, sides, self.degree, self.confidence)

    def vectors(self) -> dict[str, tuple[Tensor, Tensor]]:
        """Each source's (users, items) vectors by name: the GNN's, then each text side's."""
        return {GNN: (self.gnn_users, self.gnn_items)} | {
            name: (side.users, side.items) for name, side in self.sides.items()}

    def scorer(self, blend: Blend, *, seen: Reengagement | None = None, seen_weight: float = 0.0,
               device: str | torch.device | None = None) -> FusedScorer:
        """The :class:`FusedScorer` of ``blend`` over these sources (its text side by name;
        ``"none"``: the GNN alone), with the re-engagement term ``seen`` at ``seen_weight``."""
        if blend.text == GNN_ONLY:
            users, items = torch.zeros(len(self.gnn_users), 1), torch.zeros(len(self.gnn_items), 1)
        else:
            users, items = self.sides[blend.text].users, self.sides[blend.text].items
        return FusedScorer(self.gnn_users, self.gnn_items, users, items, blend=blend,
                           device=device, seen=seen, seen_weight=seen_weight)


def build_text_side(
    kind: str,
    split: Split,
    item_text: Tensor,
    *,
    tower_epochs: int = 20,
    tower_dim: int = 64,
    half_lives: Sequence[float] = PROFILE_HALF_LIVES,
    k: int = 20,
    seed: int = 2020,
    device: str = "cpu",
    progress: bool = False,
    sample_users: int = FIT_USERS,
    pool: int = FIT_POOL,
) -> TextSide:
    """The text side of the fusion, from training interactions only.

    Args:
        kind: ``"profile"`` (cosine of the user's recency/strength-weighted text profile
            and the product text) or ``"tower"`` (BPR-trained projection, see
            :class:`kgrec.fusion.tower.TextTower`).
        split: Only ``split.train`` is used (see :meth:`TextSide.at_stage`).
        item_text: ``[num_items, d]`` frozen product text vectors.
        tower_epochs, tower_dim, seed, device: Text-tower training settings.
        half_lives: Recency half-lives of the profile in events (0: none) compared by the
            profile's validation NDCG@``k`` (:func:`kgrec.fusion.text.user_profiles`); the first
            is taken when the split has no validation pairs.
        progress: Show progress bars.
        sample_users, pool: How the half-lives are compared (as :func:`fit_job`).
    """
    if kind == "profile":
        return _best_profile(split, item_text.float(), half_lives, k, sample_users, pool, seed)
    if kind == "tower":
        tower = train_text_tower(
            split.pairs("train"), item_text, split.num_users, dim=tower_dim,
            epochs=tower_epochs, seed=seed, device=device, progress=progress,
        )
        return TextSide(kind, tower.user_vectors, tower.item_vectors, tower.losses)
    raise UsageError(f"text side must be one of {', '.join(TEXT_SIDES)}, got {kind!r}")


def _best_profile(split: Split, items: Tensor, half_lives: Sequence[float], k: int,
                  sample_users: int, pool: int, seed: int) -> TextSide:
    """The profile side whose half-life ranks validation best alone (ties: the first),
    measured on the fit's user sample and pools (:class:`kgrec.fusion.pools.BlendPools`)."""
    if not half_lives:
        raise UsageError("half_lives must name at least one half-life (0: none)")
    recency = [h or None for h in half_lives]
    sides = [TextSide("profile", user_profiles(split.train, items, split.num_users,
                                               half_life_events=h), items, half_life_events=h)
             for h in recency]
    if len(sides) == 1 or not len(split.valid):
        return sides[0]
    pools = BlendPools({str(i): (side.users, items) for i, side in enumerate(sides)}, split,
                       k=k, sample_users=sample_users, pool=pool, seed=seed)
    scores = [pools.ndcg(str(i)) for i in range(len(sides))]
    return sides[scores.index(max(scores))]


def evaluate(
    score_fn: ScoreFn, split: Split, *, stage: str = "test", k: int = 20,
    candidates: Tensor | None = None, slices: tuple[str, ...] = ("overall", "long_tail",
                                                                   "cold_start"),
    sample_users: int = 0, seed: int = 2020,
) -> dict[str, dict[str, float]]:
    """``kgrec.gnn.metrics.evaluate_ranking`` (kept as the one evaluation of every model)."""
    return evaluate_ranking(score_fn, split, stage=stage, k=k, candidates=candidates,
                            slices=slices, sample_users=sample_users, seed=seed)


@dataclass
class JobFit:
    """The fusion chosen for one job, with every alternative's validation fit.

    Args:
        job: ``"full"`` or ``"tail"``.
        text_side: the chosen side (``"profile"``, ``"tower"``, or ``"none"``: GNN alone).
        alpha: the chosen alpha function (constant 1 for ``"none"``).
        valid_metric: its validation NDCG@K.
        gnn_only: validation NDCG@K of the GNN alone on this job.
        by_side: each text side's :class:`kgrec.fusion.alpha.AlphaFit`.
        validation: how the metric was measured (:meth:`kgrec.fusion.pools.BlendPools.report`:
            users fitted on, sampling error, share of users the pool makes exact).
        seen_weight: ``b`` of the re-engagement term (:mod:`kgrec.fusion.reengage`; 0: none
            or no help), fitted after the text side and alpha; ``seen_curve`` its
            (b, validation NDCG@K) points.
    """

    job: str
    text_side: str
    alpha: AlphaFunction
    valid_metric: float
    gnn_only: float
    by_side: dict[str, AlphaFit] = field(default_factory=dict)
    validation: dict[str, float] = field(default_factory=dict)
    seen_weight: float = 0.0
    seen_curve: list[tuple[float, float]] = field(default_factory=list)

    def blend(self, sources: Sources, normalise: str = "zscore") -> Blend:
        """The fitted blend: the chosen text side, its alpha over ``sources``' products."""
        if self.text_side == GNN_ONLY:
            return Blend(1.0, normalise)
        return Blend(self.alpha.values(sources.degree, sources.confidence), normalise,
                     self.text_side)

    def summary(self) -> str:
        gain = (self.valid_metric / self.gnn_only - 1) * 100 if self.gnn_only > 0 else 0.0
        seen = ""
        if self.seen_curve:
            metric = dict(self.seen_curve)[self.seen_weight]
            seen = f"; re-engagement b {self.seen_weight:g} (valid NDCG {metric:.4f})"
        return (f"{self.job}: {self.text_side} text side, alpha {self.alpha.describe()} "
                f"(valid NDCG {self.valid_metric:.4f}, GNN alone {self.gnn_only:.4f}, "
                f"{gain:+.1f}%{self._measured()}){seen}")

    def _measured(self) -> str:
        v = self.validation
        if not v:
            return ""
        return (f"; {v['fit_users']:,.0f} of {v['stage_users']:,.0f} users, "
                f"+/- {v['sampling_error']:.4f}, {v['exact_share']:.0%} exact in the pool")

    def to_dict(self) -> dict:
        return {
            "job": self.job, "text_side": self.text_side, "alpha": self.alpha.to_dict(),
            "valid_metric": self.valid_metric, "gnn_only": self.gnn_only,
            "validation": self.validation, "seen_weight": self.seen_weight,
            "seen_curve": self.seen_curve,
            "by_side": {side: {"best": fit.best.to_dict(), "best_metric": fit.best_metric,
                               "constant_curve": fit.constant_curve, "curve": fit.curve}
                        for side, fit in self.by_side.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> JobFit:
        by_side = {side: AlphaFit(AlphaFunction.from_dict(f["best"]), f["best_metric"],
                                  [tuple(p) for p in f["constant_curve"]],
                                  [tuple(p) for p in f["curve"]])
                   for side, f in data.get("by_side", {}).items()}
        return cls(data["job"], data["text_side"], AlphaFunction.from_dict(data["alpha"]),
                   data["valid_metric"], data["gnn_only"], by_side,
                   data.get("validation", {}), data.get("seen_weight", 0.0),
                   [tuple(p) for p in data.get("seen_curve", [])])


def fit_job(
    job: str,
    sources: Sources,
    split: Split,
    *,
    k: int = 20,
    normalise_method: str = "zscore",
    grid: Sequence[float] = ALPHA_GRID,
    pivots: Sequence[float] = PIVOT_GRID,
    item_dependent: bool = True,
    sample_users: int = FIT_USERS,
    pool: int = FIT_POOL,
    seed: int = 2020,
    progress: bool = False,
    reengage: Reengagement | None = None,
) -> JobFit:
    """Fit one job: for each text side of ``sources`` the best alpha function, then the best
    side, then the weight of the re-engagement term ``reengage`` when there is one
    (:func:`kgrec.fusion.reengage.fit_reengagement`, on the same user sample size).

    Every blend is evaluated on the same :class:`kgrec.fusion.pools.BlendPools` (at most
    ``sample_users`` validation users, each ranked within a pool of every source's top
    ``pool`` products; 0 for either: all), scored once per source. The GNN alone (``a = 1``)
    wins unless a blend is strictly better on validation, so a text side that does not help is
    never kept. ``sources`` may hold no text side (a catalogue without text): the job is then
    the GNN alone.
    """
    if not len(split.valid):
        raise UsageError("fitting the fusion needs a split with validation pairs")
    staged = sources.at_stage(split, "valid")
    pools = BlendPools(staged.vectors(), split, k=k, candidates=job_candidates(job, split),
                       normalise_method=normalise_method, sample_users=sample_users, pool=pool,
                       seed=seed, progress=progress)
    by_side: dict[str, AlphaFit] = {}
    for name in sources.sides:
        def metric(fn: AlphaFunction, side: str = name) -> float:
            blend = Blend(fn.values(sources.degree, sources.confidence), normalise_method, side)
            return pools.ndcg(GNN, blend)

        by_side[name] = fit_alpha_function(metric, grid=grid, pivots=pivots,
                                           item_dependent=item_dependent)
    gnn_only = pools.ndcg(GNN)
    best = JobFit(job, GNN_ONLY, AlphaFunction.constant(1.0), gnn_only, gnn_only, by_side)
    for name, fit in by_side.items():
        if fit.best_metric > best.valid_metric and not (fit.best.is_constant
                                                         and fit.best.a_head == 1.0):
            best = JobFit(job, name, fit.best, fit.best_metric, gnn_only, by_side)
    blend = best.blend(sources, normalise_method)
    best.validation = pools.report(GNN, blend)
    if reengage is not None:
        scorer = staged.scorer(blend, seen=reengage)
        best.seen_weight, best.seen_curve = fit_reengagement(
            scorer, split, k=k, candidates=job_candidates(job, split),
            sample_users=sample_users, seed=seed)
    return best


@dataclass
class FusionFit:
    """The fitted fusion of every job (``jobs[name]``) and the text sides it used."""

    jobs: dict[str, JobFit]
    sides: dict[str, TextSide]

    def summary(self) -> str:
        return "; ".join(job.summary() for job in self.jobs.values())


def fit_fusion(
    sources: Sources,
    split: Split,
    *,
    jobs: Sequence[str] = JOBS,
    progress: bool = False,
    **kwargs: object,
) -> FusionFit:
    """:func:`fit_job` for each of ``jobs`` (options as there)."""
    from tqdm.auto import tqdm

    fits = {job: fit_job(job, sources, split, progress=progress,
                         **kwargs)  # type: ignore[arg-type]
            for job in tqdm(list(jobs), desc="fit fusion", disable=not progress, leave=False)}
    return FusionFit(fits, dict(sources.sides))


def fused_table(
    sources: Sources,
    fit: FusionFit,
    split: Split,
    *,
    stage: str = "test",
    k: int = 20,
    normalise_method: str = "zscore",
    seen: Reengagement | None = None,
    sample_users: int = 0,
    seed: int = 2020,
) -> dict[str, dict[str, float]]:
    """The evaluation table of a fitted fusion (of a seeded sample of at most
    ``sample_users`` users, as :func:`kgrec.gnn.metrics.evaluate_ranking`): the ``full``
    job's blend on the overall / long-tail / cold-start slices and the ``tail`` job's blend
    on ``tail_candidates`` (the ranking restricted to long-tail products), each with its
    own text side and alpha; a profile side from the history known at ``stage``
    (:meth:`TextSide.at_stage`). ``sources`` carries the text sides of ``fit``."""
    table: dict[str, dict[str, float]] = {}
    staged = sources.at_stage(split, stage)
    for job, slices in (("full", ("overall", "long_tail", "cold_start")), ("tail", None)):
        if job not in fit.jobs:
            continue
        scorer = job_scorer(staged, fit, job, normalise_method=normalise_method, seen=seen)
        candidates = job_candidates(job, split)
        result = evaluate(candidate_score_fn(scorer, candidates), split, stage=stage, k=k,
                          candidates=candidates, slices=slices or ("overall",),
                          sample_users=sample_users, seed=seed)
        if slices:
            table.update(result)
        else:
            table["tail_candidates"] = result["overall"]
    return table


def job_scorer(sources: Sources, fit: FusionFit, job: str, *, normalise_method: str = "zscore",
               seen: Reengagement | None = None, alpha: float | None = None,
               device: str | torch.device | None = None) -> FusedScorer:
    """The :class:`FusedScorer` of one fitted job (the GNN alone when it chose no text), with
    the re-engagement term ``seen`` at the job's fitted weight when given; ``alpha``: a
    constant GNN weight in place of the fitted one (the fitted text side kept)."""
    chosen = fit.jobs[job]
    blend = chosen.blend(sources, normalise_method)
    if alpha is not None:
        blend = Blend(alpha, blend.normalise, blend.text)
    return sources.scorer(blend, seen=seen,
                          seen_weight=chosen.seen_weight if seen is not None else 0.0,
                          device=device)
