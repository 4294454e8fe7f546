"""Snapshot -> evaluation splits of its interaction pairs (:mod:`kgrec.gnn.pairs` builds them).

Everything here works on row indices into the snapshot's id maps (``user`` indexes
``id_maps["user"]``, ``product`` indexes ``id_maps["product"]``). A :class:`Split` holds three
frames with the columns :data:`~kgrec.gnn.pairs.SPLIT_COLUMNS`; only ``split.train`` ever
reaches message passing (:mod:`kgrec.gnn.graph`) or the negative sampler
(:mod:`kgrec.gnn.sampling`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kgrec.errors import ModelError, UsageError
from kgrec.gnn.pairs import (
    REL_BITS,
    behaviours_in,
    event_weight_table,
    interaction_table,
    pair_table,
)
from kgrec.kg import schema
from kgrec.kg.snapshot import GraphSnapshot

STAGES = ("train", "valid", "test")
#: Split kinds whose validation pairs come before the test pairs in each user's history.
TIME_ORDERED_KINDS = ("temporal", "temporal_ratio", "leave_one_out")


@dataclass
class Split:
    """Train / valid / test interactions as row indices into the snapshot id maps.

    Args:
        train, valid, test: frames with :data:`~kgrec.gnn.pairs.SPLIT_COLUMNS` (one row per
            user-product pair; ``weight`` is the loss weight, ``value`` the raw event value,
            ``time`` unix seconds or -1).
        num_users, num_items: sizes of the user and product id maps.
        kind: ``"temporal"``, ``"temporal_ratio"``, ``"leave_one_out"``, ``"random"``,
            ``"item_cold_start"`` or ``"given"``.
        seed: the seed that drew a random split (None when deterministic).
        target: the event type predicted (``"PURCHASED"``), or None when every interaction
            is a target. With one, valid and test hold that behaviour's pairs only, training
            keeps every behaviour, and a ranking leaves out only the training pairs that
            hold the target (a product the user viewed may still be recommended).
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    num_users: int
    num_items: int
    kind: str
    seed: int | None = None
    target: str | None = None

    def frame(self, stage: str) -> pd.DataFrame:
        """The frame of ``stage`` (``"train"``, ``"valid"`` or ``"test"``)."""
        if stage not in STAGES:
            raise UsageError(f"unknown stage {stage!r}; expected one of {STAGES}")
        return getattr(self, stage)

    def pairs(self, stage: str) -> torch.Tensor:
        """``LongTensor[2, n]`` of (user, product) rows of ``stage``."""
        frame = self.frame(stage)
        return torch.as_tensor(
            np.stack([frame["user"].to_numpy("int64"), frame["product"].to_numpy("int64")])
        )

    def history(self, stage: str) -> pd.DataFrame:
        """The interactions known when ``stage``'s pairs are predicted: the training pairs,
        plus the validation pairs for ``test`` in a time-ordered split (they happened before
        the test pairs; in a random or item cold-start split they did not). Only what is
        computed from history without training (text profiles) reads it; trained models see
        ``train`` alone."""
        if stage == "test" and self.kind in TIME_ORDERED_KINDS:
            return pd.concat([self.train, self.valid], ignore_index=True)
        self.frame(stage)  # checks the name
        return self.train

    def excluded(self, stage: str) -> pd.DataFrame:
        """The pairs a ranking of ``stage`` leaves out: the training pairs (those holding the
        target behaviour when the split has one), and the validation pairs when ranking
        ``test``."""
        train = self.train
        if self.target is not None and "rels" in train:
            train = train[(train["rels"].to_numpy() & REL_BITS[self.target]) != 0]
        return pd.concat([train, self.valid], ignore_index=True) if stage == "test" else train

    def behaviours(self) -> list[str]:
        """The event types the training pairs hold (from their ``rels``; [] without)."""
        return behaviours_in(self.train["rels"].to_numpy("int64")) if "rels" in self.train \
            else []

    def item_counts(self) -> torch.Tensor:
        """Training interactions per product (``LongTensor[num_items]``)."""
        items = torch.from_numpy(self.train["product"].to_numpy("int64", copy=True))
        return torch.bincount(items, minlength=self.num_items)

    def save(self, folder: str | Path) -> None:
        """Write the three frames (Parquet) and the split's sizes and kind (JSON)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for stage in STAGES:
            self.frame(stage).to_parquet(folder / f"split_{stage}.parquet", index=False)
        meta = {"num_users": self.num_users, "num_items": self.num_items, "kind": self.kind,
                "seed": self.seed, "target": self.target}
        (folder / "split.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, folder: str | Path) -> Split:
        folder = Path(folder)
        if not (folder / "split.json").exists():
            raise ModelError(f"{folder} holds no saved split (split.json is missing)")
        meta = json.loads((folder / "split.json").read_text())
        frames = [pd.read_parquet(folder / f"split_{stage}.parquet") for stage in STAGES]
        return cls(*frames, **meta)

    def summary(self) -> str:
        target = f" (target {self.target})" if self.target else ""
        return (
            f"{self.kind} split{target}: {len(self.train):,} train / {len(self.valid):,} valid / "
            f"{len(self.test):,} test pairs, {self.num_users:,} users x {self.num_items:,} products"
        )


def _cut(
    order_key: np.ndarray,
    users: np.ndarray,
    valid_ratio: float,
    test_ratio: float,
    rule: str = "min_one",
) -> np.ndarray:
    """Per-user stage labels (0 train, 1 valid, 2 test): each user's last rows (by key) to
    test, the ones just before to valid, the rest to train.

    Stage sizes for a user with ``n`` rows, by ``rule``:

    - ``"ratio"``: ``floor(ratio * n)`` (RecBole's ratio split): a user with fewer than
      ``1 / ratio`` rows gets no valid/test row, so sparse catalogues lose most users.
    - ``"min_one"``: the same, but at least 1 per stage whose ratio is > 0 once ``n >= 3``
      (leave-last-out for short histories, the ratio for long ones); 1-2 rows stay in train,
      and train always keeps at least one row.
    - ``"last_one"``: leave-one-out, 1 test and 1 valid row once ``n >= 3`` (ratios unused).
    - ``"valid_one"``: 1 valid row once ``n >= 2``, no test row (the test pairs are given).
    """
    order = np.lexsort((order_key, users))
    sorted_users = users[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_users)) + 1]
    sizes = np.diff(np.r_[starts, len(users)])
    rank = np.arange(len(users)) - np.repeat(starts, sizes)
    size = np.repeat(sizes, sizes)
    n_test = np.floor(size * test_ratio).astype(int)
    n_valid = np.floor(size * valid_ratio).astype(int)
    if rule != "ratio":
        long = size >= 3
        if rule == "last_one":
            n_test, n_valid = long.astype(int), long.astype(int)
        elif rule == "valid_one":
            n_test, n_valid = np.zeros_like(size), (size >= 2).astype(int)
        else:
            n_test = np.where(long, np.maximum(n_test, int(test_ratio > 0)), 0)
            n_valid = np.where(long, np.maximum(n_valid, int(valid_ratio > 0)), 0)
            n_valid = np.minimum(n_valid, size - n_test - 1).clip(min=0)
    stage_sorted = np.zeros(len(users), dtype=np.int8)
    stage_sorted[rank >= size - n_test] = 2
    stage_sorted[(rank >= size - n_test - n_valid) & (rank < size - n_test)] = 1
    stage = np.empty_like(stage_sorted)
    stage[order] = stage_sorted
    return stage


def _check_ratios(valid_ratio: float, test_ratio: float) -> None:
    if not (0 <= valid_ratio < 1 and 0 <= test_ratio < 1 and valid_ratio + test_ratio < 1):
        raise UsageError(
            f"valid_ratio={valid_ratio} and test_ratio={test_ratio} must be in [0, 1) "
            "and sum to less than 1"
        )


#: make_split kind -> the per-user stage sizes rule of :func:`_cut`.
_SPLIT_RULES = {
    "temporal": "min_one",
    "temporal_ratio": "ratio",
    "leave_one_out": "last_one",
    "random": "min_one",
    "given": "valid_one",
}


def make_split(
    snapshot: GraphSnapshot,
    kind: str = "auto",
    valid_ratio: float = 0.1,
    test_ratio: float = 0.1,
    seed: int = 2020,
    *,
    event_weights: Mapping[str, float] | None = None,
    target: str | None = None,
    held_out: pd.DataFrame | None = None,
) -> Split:
    """Split every user's interactions into train / valid / test.

    Args:
        snapshot: the graph; its interaction edges are split (one row per pair).
        kind: ``"temporal"`` (each user's latest pairs to test, the ones before to valid;
            ``n_test = max(1, floor(test_ratio * n))`` and likewise for valid once a user has
            ``n >= 3`` pairs, so every such user is evaluated; users with 1-2 pairs stay in
            train), ``"temporal_ratio"`` (RecBole's pure ``floor(ratio * n)``: users with
            fewer than ``1 / ratio`` pairs get no valid/test pair), ``"leave_one_out"``
            (last pair to test, second-to-last to valid, for users with >= 3 pairs),
            ``"random"`` (per-user random, RecBole's RS 8:1:1, with temporal's at-least-one
            rule), ``"given"`` (the test pairs are ``held_out``; each user with >= 2 target
            pairs gives the latest, or a seeded random one without times, to valid) or
            ``"auto"`` (temporal when every event has a timestamp, random otherwise). Time
            ties are broken by product row, so every kind but random is deterministic.
        valid_ratio, test_ratio: share of each user's pairs (floored) per stage; unused by
            leave_one_out and given.
        seed: seed of the random split (and of given's validation pairs without times).
        event_weights: per-event-type loss weights (default
            ``kgrec.kg.schema.DEFAULT_EVENT_WEIGHTS``).
        target: the event type held out and predicted
            (:func:`kgrec.gnn.pairs.target_behaviour`); None: every interaction. With a
            target, the other behaviours all stay in training, except in time-ordered kinds
            those after the user's first held-out target event.
        held_out: ``user, product`` rows (snapshot row indices) of ``"given"``'s test pairs.
    """
    _check_split_args(kind, valid_ratio, test_ratio, held_out)
    events = snapshot.interactions()
    targets = events if target is None else events[events["rel"] == target]
    pairs = pair_table(targets, event_weights)
    if kind == "auto":
        kind = _auto_kind(pairs)
    stage = _cut(_order_key(pairs, kind, seed), pairs["user"].to_numpy(), valid_ratio,
                 test_ratio, _SPLIT_RULES[kind])
    train, valid, test = (pairs[stage == i].reset_index(drop=True) for i in range(3))
    if held_out is not None:
        test = _given_pairs(held_out, pairs, target, event_weights)
    if target is not None:
        train = pair_table(_training_events(events, target, [valid, test], kind), event_weights)
    seeded = kind == "random" or (kind == "given" and (pairs["time"] < 0).any())
    return Split(train, valid, test, num_users=len(snapshot.id_maps["user"]),
                 num_items=len(snapshot.id_maps["product"]), kind=kind,
                 seed=seed if seeded else None, target=target)


def _check_split_args(kind: str, valid_ratio: float, test_ratio: float,
                      held_out: pd.DataFrame | None) -> None:
    """Refuse make_split's impossible arguments (before any work)."""
    _check_ratios(valid_ratio, test_ratio)
    if kind != "auto" and kind not in _SPLIT_RULES:
        raise UsageError(
            f"unknown split kind {kind!r}; expected auto, {', '.join(_SPLIT_RULES)}"
        )
    if (kind == "given") != (held_out is not None):
        raise UsageError("the given split, and only it, takes held_out test pairs")


def _auto_kind(pairs: pd.DataFrame) -> str:
    """``"auto"``'s kind: temporal when every pair has a time and they differ, else random."""
    times = pairs["time"].to_numpy()
    return "temporal" if len(times) and (times >= 0).all() and times.min() < times.max() else (
        "random"
    )


def _order_key(pairs: pd.DataFrame, kind: str, seed: int) -> np.ndarray:
    """Each pair's place in its user's history: time order (ties by product row), or a
    seeded permutation for random splits and given splits without times."""
    untimed = kind == "given" and (pairs["time"] < 0).any()
    if kind == "random" or untimed:
        return np.random.default_rng(seed).permutation(len(pairs))
    key = np.empty(len(pairs), dtype=np.int64)
    key[np.lexsort((pairs["product"].to_numpy(), pairs["time"].to_numpy()))] = np.arange(
        len(pairs))
    return key


def _given_pairs(held_out: pd.DataFrame, pairs: pd.DataFrame, target: str | None,
                 event_weights: Mapping[str, float] | None) -> pd.DataFrame:
    """The given test pairs as split rows (the target's weight, no time)."""
    rel = target or schema.PURCHASED
    test = held_out[["user", "product"]].astype("int64").drop_duplicates(ignore_index=True)
    return test.assign(weight=event_weight_table(event_weights)[rel], value=1.0,
                       time=np.int64(-1), rels=np.int64(REL_BITS[rel]))


def _training_events(events: pd.DataFrame, target: str, held: list[pd.DataFrame],
                     kind: str) -> pd.DataFrame:
    """Every event but the held-out target pairs' target events; in time-ordered kinds also
    without each user's events after their first held-out target event (no future leaks)."""
    held_pairs = pd.concat([h[["user", "product", "time"]] for h in held], ignore_index=True)
    key = ["user", "product"]
    marked = events.merge(held_pairs[key].drop_duplicates().assign(_held=True), on=key,
                          how="left")
    drop = marked["_held"].fillna(False).to_numpy(bool) & (marked["rel"] == target).to_numpy()
    if kind in TIME_ORDERED_KINDS:
        timed = held_pairs[held_pairs["time"] >= 0]
        first = timed.groupby("user")["time"].min().rename("_cut")
        cut = marked.merge(first, left_on="user", right_index=True, how="left")["_cut"]
        drop |= (marked["time"].to_numpy() > cut.fillna(np.inf).to_numpy())
    return events[~drop].reset_index(drop=True)


def item_cold_start_split(
    snapshot: GraphSnapshot,
    frac: float = 0.1,
    seed: int = 2020,
    *,
    event_weights: Mapping[str, float] | None = None,
) -> Split:
    """Hold out ``frac`` of the interacted products with ALL their interactions.

    Half of the held-out products (by count) go to valid and half to test, so that both
    stages rank products the model never saw a training interaction of.
    """
    if not 0 < frac < 1:
        raise UsageError(f"frac={frac} must be in (0, 1)")
    pairs = interaction_table(snapshot, event_weights)
    items = np.unique(pairs["product"].to_numpy())
    held = np.random.default_rng(seed).permutation(items)[: max(2, int(round(frac * len(items))))]
    valid_items, test_items = held[: len(held) // 2], held[len(held) // 2 :]
    prod = pairs["product"].to_numpy()
    in_valid, in_test = np.isin(prod, valid_items), np.isin(prod, test_items)
    return Split(
        pairs[~in_valid & ~in_test].reset_index(drop=True),
        pairs[in_valid].reset_index(drop=True),
        pairs[in_test].reset_index(drop=True),
        num_users=len(snapshot.id_maps["user"]),
        num_items=len(snapshot.id_maps["product"]),
        kind="item_cold_start",
        seed=seed,
    )


def later_events(frame: pd.DataFrame) -> np.ndarray:
    """For each row, how many rows of the same user come after it in time order (ties by
    product row; rows in frame order when there is no ``time`` column)."""
    n = len(frame)
    time = frame["time"].to_numpy("int64") if "time" in frame else np.arange(n)
    order = np.lexsort((frame["product"].to_numpy("int64"), time, frame["user"].to_numpy()))
    users = frame["user"].to_numpy()[order]
    ends = np.r_[np.flatnonzero(np.diff(users)) + 1, n]  # one past each user's last row
    sizes = np.diff(np.r_[0, ends])
    later = np.empty(n, dtype=np.float64)
    later[order] = np.repeat(ends, sizes) - 1 - np.arange(n)
    return later
