"""The GNN weight ``a`` of the blend ``s = a * s_gnn + (1 - a) * s_text``, per product.

A product known from many training events is best ranked by the graph; a product with few
or none has only its text and its knowledge-graph neighbours to go by. So ``a`` may depend
on the product, through a small function of two product features:

- ``degree``: training events of the product (its popularity);
- ``text_confidence``: how much text the product carries, in ``[0, 1]`` (the share of the
  configured text fields that are non-empty; 0 means no text at all).

:class:`AlphaFunction` is ``a(i) = 1 - (1 - ramp(degree_i)) * text_confidence_i`` with
``ramp(d) = a_cold + (a_head - a_cold) * min(1, log1p(d) / log1p(pivot))``: products
without text are scored by the graph alone whatever the parameters, a product with full
text follows the ramp from ``a_cold`` (never seen) to ``a_head`` (seen ``pivot`` times or
more). Every value lies in ``[0, 1]`` because ``a_cold`` and ``a_head`` do. A constant
alpha is the special case ``a_cold = a_head`` with full text confidence.

:func:`fit_alpha_function` chooses the parameters on validation data only, by coordinate
search over grids (the metric, NDCG@K, is not differentiable), starting from the best
constant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from kgrec.errors import UsageError

#: Default alpha grid (the GNN weight), 0.0 (text only) to 1.0 (GNN only).
ALPHA_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(21))
#: Degrees from which a product counts as well known, searched by the fit.
PIVOT_GRID: tuple[float, ...] = (3.0, 10.0, 30.0, 100.0)


@dataclass(frozen=True)
class AlphaFunction:
    """Item-dependent GNN weight; see the module docstring.

    Args:
        a_head: weight of a well-known product (degree >= pivot), in [0, 1].
        a_cold: weight of a product without training events, in [0, 1].
        pivot: degree at which the ramp reaches ``a_head`` (> 0).
        use_text_confidence: scale the text share by the product's text confidence.
    """

    a_head: float
    a_cold: float | None = None
    pivot: float = 10.0
    use_text_confidence: bool = True

    def __post_init__(self) -> None:
        cold = self.a_head if self.a_cold is None else self.a_cold
        for name, value in (("a_head", self.a_head), ("a_cold", cold)):
            if not 0.0 <= value <= 1.0:
                raise UsageError(f"{name} must lie in [0, 1], got {value}")
        if self.pivot <= 0:
            raise UsageError(f"pivot must be > 0, got {self.pivot}")
        object.__setattr__(self, "a_cold", float(cold))

    @classmethod
    def constant(cls, alpha: float) -> AlphaFunction:
        """The same weight for every product (text confidence ignored)."""
        return cls(alpha, alpha, use_text_confidence=False)

    @property
    def is_constant(self) -> bool:
        return self.a_cold == self.a_head and not self.use_text_confidence

    def __call__(self, degree: Tensor, text_confidence: Tensor | None = None) -> Tensor:
        """``[N]`` weights for products of the given degrees (and text confidences)."""
        ramp = (torch.log1p(degree.float()) / math.log1p(self.pivot)).clamp(max=1.0)
        assert self.a_cold is not None  # set in __post_init__
        alpha = self.a_cold + (self.a_head - self.a_cold) * ramp
        if self.use_text_confidence and text_confidence is not None:
            alpha = 1.0 - (1.0 - alpha) * text_confidence.float().clamp(0.0, 1.0)
        return alpha

    def values(self, degree: Tensor, text_confidence: Tensor | None = None) -> float | Tensor:
        """A float for constant functions (the blend's fast path), else per-product weights."""
        return self.a_head if self.is_constant else self(degree, text_confidence)

    def to_dict(self) -> dict[str, float | bool | None]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AlphaFunction:
        return cls(**data)

    def describe(self) -> str:
        if self.is_constant:
            return f"constant {self.a_head:g}"
        text = ", x text confidence" if self.use_text_confidence else ""
        return (f"{self.a_cold:g} (never seen) -> {self.a_head:g} (from {self.pivot:g} events)"
                f"{text}")


@dataclass
class AlphaFit:
    """A fitted alpha function: the best function, its validation metric and every point tried
    (``curve``: (description, metric) in the order evaluated; ``constant_curve``: the
    constant grid)."""

    best: AlphaFunction
    best_metric: float
    constant_curve: list[tuple[float, float]] = field(default_factory=list)
    curve: list[tuple[str, float]] = field(default_factory=list)

    @property
    def best_constant(self) -> tuple[float, float]:
        """(alpha, metric) of the best constant on the grid (ties to the smaller alpha)."""
        return max(self.constant_curve, key=lambda p: (p[1], -p[0]))


def fit_alpha_function(
    evaluate: Callable[[AlphaFunction], float],
    *,
    grid: Sequence[float] = ALPHA_GRID,
    pivots: Sequence[float] = PIVOT_GRID,
    item_dependent: bool = True,
    rounds: int = 2,
) -> AlphaFit:
    """Choose an :class:`AlphaFunction` maximising ``evaluate`` (a validation metric).

    First the constant grid; then, if ``item_dependent``, coordinate search from the best
    constant over ``a_head``, ``a_cold`` (both on ``grid``) and ``pivot``, with and without
    text confidence, ``rounds`` times. A candidate replaces the current best only if it is
    strictly better, so ties keep the simpler function.
    """
    if not list(grid):
        raise UsageError("fit_alpha_function needs a non-empty grid")
    seen: dict[AlphaFunction, float] = {}
    curve: list[tuple[str, float]] = []

    def score(fn: AlphaFunction) -> float:
        if fn not in seen:
            seen[fn] = float(evaluate(fn))
            curve.append((fn.describe(), seen[fn]))
        return seen[fn]

    constant_curve = [(float(a), score(AlphaFunction.constant(float(a)))) for a in grid]
    a0, m0 = max(constant_curve, key=lambda p: (p[1], -p[0]))
    best, best_metric = AlphaFunction.constant(a0), m0
    if item_dependent:
        current = AlphaFunction(a0, a0, pivots[0] if pivots else 10.0, True)
        for _ in range(rounds):
            # One coordinate at a time, each sweep starting from the best point so far.
            for vary in (
                lambda c: [AlphaFunction(a, c.a_cold, c.pivot, c.use_text_confidence)
                           for a in grid],
                lambda c: [AlphaFunction(c.a_head, a, c.pivot, c.use_text_confidence)
                           for a in grid],
                lambda c: [AlphaFunction(c.a_head, c.a_cold, p, c.use_text_confidence)
                           for p in pivots],
                lambda c: [AlphaFunction(c.a_head, c.a_cold, c.pivot, t) for t in (True, False)],
            ):
                for fn in vary(current):
                    if score(fn) > score(current):
                        current = fn
            if score(current) > best_metric:
                best, best_metric = current, score(current)
    return AlphaFit(best, best_metric, constant_curve, curve)
