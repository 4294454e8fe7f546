"""Interaction events -> one row per (user, product) pair: its loss weight, value, latest
time and behaviours (the ``rels`` bit mask), and the event weights and target behaviour that
decide them. :mod:`kgrec.gnn.split` cuts these pair tables into train / valid / test.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from kgrec.errors import ModelError
from kgrec.kg import schema
from kgrec.kg.snapshot import GraphSnapshot, edge_type

#: Columns of every split frame (:class:`kgrec.gnn.split.Split`) and pair table.
SPLIT_COLUMNS = ["user", "product", "weight", "value", "time"]


def event_weight_table(event_weights: Mapping[str, float] | None = None) -> dict[str, float]:
    """Per-event-type loss weights: the schema defaults overridden by ``event_weights``."""
    weights = dict(schema.DEFAULT_EVENT_WEIGHTS)
    for rel, value in (event_weights or {}).items():
        weights[schema.event_type(rel)] = float(value)
    return weights


#: Bit of each interaction type in a pair's ``rels`` mask (the behaviours the pair holds).
REL_BITS = {rel: 1 << i for i, rel in enumerate(schema.INTERACTIONS)}


def behaviours_in(rels: np.ndarray) -> list[str]:
    """The event types any of the ``rels`` masks holds, in :data:`REL_BITS` order."""
    present = int(np.bitwise_or.reduce(rels, initial=0))
    return [rel for rel, bit in REL_BITS.items() if present & bit]


def interaction_table(
    snapshot: GraphSnapshot, event_weights: Mapping[str, float] | None = None
) -> pd.DataFrame:
    """One row per (user, product) pair of the snapshot's events: :func:`pair_table`."""
    return pair_table(snapshot.interactions(), event_weights)


def pair_table(events: pd.DataFrame, event_weights: Mapping[str, float] | None = None
               ) -> pd.DataFrame:
    """One row per (user, product) pair with its loss weight, value, latest time and
    ``rels`` (the :data:`REL_BITS` of its behaviours).

    The weight of an event is ``event_weights[type]``, times ``value / max rating`` for
    ratings (so a 5-star rating weighs 1.0 and a 1-star 0.2 by default); a pair seen
    several times keeps its heaviest event, so one model serves purchase > cart > view.
    """
    columns = [*SPLIT_COLUMNS, "rels"]
    if events.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in columns})
    weights = event_weight_table(event_weights)
    scale = np.ones(len(events))
    rated = (events["rel"] == schema.RATED).to_numpy()
    if rated.any():
        top = float(events.loc[rated, "value"].max())
        if top > 0:
            scale[rated] = events.loc[rated, "value"].to_numpy("float64") / top
    bits = events["rel"].map(REL_BITS).to_numpy("int64")
    # Summing a pair's distinct bits ORs them (a behaviour seen twice must count once).
    first = ~pd.DataFrame({"u": events["user"], "p": events["product"], "b": bits}).duplicated()
    events = events.assign(weight=events["rel"].map(weights).to_numpy("float64") * scale,
                           rels=np.where(first.to_numpy(), bits, 0))
    pairs = (
        events.groupby(["user", "product"], sort=True)
        .agg(weight=("weight", "max"), value=("value", "max"), time=("time", "max"),
             rels=("rels", "sum"))
        .reset_index()
    )
    return pairs[columns].astype(
        {"user": "int64", "product": "int64", "weight": "float64", "value": "float64",
         "time": "int64", "rels": "int64"}
    )


def behaviour_weights(pairs: pd.DataFrame, event_weights: Mapping[str, float] | None = None
                      ) -> np.ndarray:
    """Each pair's weight from its ``rels``: its heaviest behaviour's, a rating's scaled by
    ``value / max rating`` (as :func:`pair_table` weighs events)."""
    weights = event_weight_table(event_weights)
    rels, value = pairs["rels"].to_numpy("int64"), pairs["value"].to_numpy("float64")
    rated = (rels & REL_BITS[schema.RATED]) != 0
    top = float(value[rated].max()) if rated.any() else 0.0
    out = np.zeros(len(pairs))
    for rel, bit in REL_BITS.items():
        scale = value / top if rel == schema.RATED and top > 0 else 1.0
        out = np.maximum(out, np.where((rels & bit) != 0, weights[rel] * scale, 0.0))
    return out


def target_behaviour(snapshot: GraphSnapshot, target: str | None = "auto") -> str | None:
    """The event type a split predicts: ``target`` (an event word), or with ``"auto"``
    ``PURCHASED`` when the catalogue holds purchases beside other behaviours; None (every
    interaction is a target) for ``""``/None or a single-behaviour catalogue."""
    present = [rel for rel in schema.INTERACTIONS
               if edge_type(rel) in snapshot.data.edge_types
               and snapshot.data[edge_type(rel)].num_edges]
    if target == "auto":
        return schema.PURCHASED if schema.PURCHASED in present and len(present) > 1 else None
    if not target:
        return None
    rel = schema.event_type(target)
    if rel not in present:
        raise ModelError(f"target behaviour {rel} has no events in this catalogue "
                         f"(present: {', '.join(present) or 'none'})")
    return rel
