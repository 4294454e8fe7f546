"""Behaviour weights fitted for the target: how much a view or a cart counts, in the edges
and the loss, when purchases are what the ranking is for.

Each candidate scales the schema's default weights of the non-target behaviours (view
0.25, cart 0.5 ...; scale 0: the target alone; each weight capped at the target's, so a
large scale gives every behaviour the target's weight: "equal"). A short training of the
configured model per candidate (``epochs``, the same seed) ranks them by validation
NDCG@k on the target at its end; the best is kept, ties going to the smaller scale. The split's
training pairs are reweighted in place of a new split: the held-out pairs do not move.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from kgrec.errors import UsageError
from kgrec.gnn.pairs import REL_BITS, behaviour_weights, event_weight_table
from kgrec.gnn.split import Split
from kgrec.gnn.train import train_model
from kgrec.kg.snapshot import GraphSnapshot
from kgrec.settings import BEHAVIOUR_FIT_EPOCHS, BEHAVIOUR_SCALES, TrainSettings


@dataclass
class BehaviourFit:
    """The chosen event weights, and each candidate's scale, weights and validation NDCG."""

    weights: dict[str, float]
    candidates: list[dict]

    def summary(self) -> str:
        tried = ", ".join(f"x{c['scale']:g} {c['valid_ndcg']:.4f}" for c in self.candidates)
        chosen = ", ".join(f"{rel} {w:g}" for rel, w in self.weights.items())
        return f"behaviour weights {chosen} (validation NDCG per scale: {tried})"


def candidate_weights(split: Split, scale: float) -> dict[str, float]:
    """Event weights of one candidate: the present non-target behaviours' defaults times
    ``scale``, each capped at the target's weight; the target's own unchanged."""
    assert split.target is not None
    defaults = event_weight_table()
    top = defaults[split.target]
    return {rel: top if rel == split.target else min(top, defaults[rel] * scale)
            for rel in REL_BITS if rel in {*split.behaviours(), split.target}}


def reweighted(split: Split, weights: dict[str, float]) -> Split:
    """``split`` with its training pairs weighed by ``weights`` (edges and loss)."""
    train = split.train.assign(weight=behaviour_weights(split.train, weights))
    return dataclasses.replace(split, train=train)


def fit_behaviour_weights(snapshot: GraphSnapshot, split: Split, settings: TrainSettings, *,
                          product_features: Tensor | None = None,
                          scales: Sequence[float] = BEHAVIOUR_SCALES,
                          epochs: int = BEHAVIOUR_FIT_EPOCHS) -> BehaviourFit:
    """Train ``settings``'s model for ``epochs`` per candidate of ``scales`` and keep the
    weights whose validation NDCG@k after them is highest (ties: the smaller scale). Cost:
    ``len(scales) x epochs`` epochs and ``len(scales)`` evaluations."""
    if split.target is None or not len(split.valid):
        raise UsageError("fitting behaviour weights needs a target behaviour and validation")
    short = dataclasses.replace(settings, epochs=epochs, eval_every=epochs, event_weights={})
    candidates = []
    for scale in sorted(scales):
        weights = candidate_weights(split, scale)
        result = train_model(snapshot, reweighted(split, weights), short,
                             product_features=product_features, progress=False)
        best = max(h["valid"][f"ndcg@{short.k}"] for h in result.history if "valid" in h)
        candidates.append({"scale": float(scale), "weights": weights, "valid_ndcg": best})
    chosen = max(candidates, key=lambda c: (c["valid_ndcg"], -c["scale"]))
    return BehaviourFit(chosen["weights"], candidates)
