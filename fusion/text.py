"""Product texts, their text confidence and embeddings, and users' text profiles.

Products are encoded by :class:`kgrec.fusion.encoder.TextEncoder`; a user's profile is the
recency-weighted mean of the text vectors of the products they used.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from kgrec.errors import UsageError
from kgrec.fusion.encoder import TextEncoder
from kgrec.gnn.split import later_events
from kgrec.ids import IdMap, NodeEmbeddings
from kgrec.kg import schema
from kgrec.settings import PROFILE_HALF_LIVES, TEXT_FIELDS

#: Events whose weighted text vectors one step of :func:`user_profiles` sums.
PROFILE_CHUNK = 1 << 16


_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


def clean_text(value: object, max_chars: int | None = None) -> str:
    """Unescape HTML entities, drop tags and collapse whitespace; '' for missing values."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    text = _SPACE.sub(" ", _TAG.sub(" ", html.unescape(str(value)))).strip()
    if max_chars is not None and len(text) > max_chars:
        text = text[:max_chars].rsplit(" ", 1)[0]
    return text


def _attributes_text(value: object) -> str:
    raw = clean_text(value)
    if not raw:
        return ""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    if isinstance(data, dict):
        parts = []
        for key, val in data.items():
            val = ", ".join(map(str, val)) if isinstance(val, list) else str(val)
            if val and val.lower() not in ("nan", "none", ""):
                parts.append(f"{key}: {val}")
        return ". ".join(parts)
    return raw


#: How each field is written into the text (``{}`` is the cleaned value) and its length cap.
_FIELD_FORMAT: dict[str, tuple[str, int | None]] = {
    "title": ("{}", None),
    "brand": ("Brand: {}", None),
    "category_path": ("Category: {}", None),
    "attributes": ("{}", None),
    "features": ("Features: {}", 400),
    "description": ("{}", 800),
}


def _check_fields(fields: Sequence[str]) -> tuple[str, ...]:
    unknown = [f for f in fields if f not in _FIELD_FORMAT]
    if unknown or not fields:
        raise UsageError(f"unknown text fields {unknown}; known: {', '.join(_FIELD_FORMAT)}"
                         if unknown else "text fields must name at least one field")
    return tuple(fields)


def _field_texts(products: pd.DataFrame, name: str) -> list[str]:
    template, cap = _FIELD_FORMAT[name]
    column = products[name] if name in products else pd.Series([None] * len(products))
    clean = _attributes_text if name == "attributes" else (lambda v: clean_text(v, cap))
    return [template.format(c) if (c := clean(value)) else "" for value in column]


def product_text(
    products: pd.DataFrame,
    fields: Sequence[str] = TEXT_FIELDS,
    *,
    separator: str = ". ",
    max_chars: int = 1500,
) -> list[str]:
    """One text per product row: the non-empty ``fields`` joined by ``separator``.

    Args:
        products: A product node table (columns of ``kgrec.kg.schema.node_columns("Product")``;
            missing columns are treated as empty).
        fields: Which fields, in order (:data:`TEXT_FIELDS` by default; brand, category
            and features are labelled, description and features are capped).
        separator: What joins the fields.
        max_chars: Cap on the whole text (the model truncates at its token limit anyway).
    """
    columns = [_field_texts(products, name) for name in _check_fields(fields)]
    return [clean_text(separator.join(p for p in parts if p), max_chars)
            for parts in zip(*columns, strict=True)] if columns else []


def text_confidence(products: pd.DataFrame, fields: Sequence[str] = TEXT_FIELDS) -> torch.Tensor:
    """``[N]`` share of the catalogue's text fields that each product fills, in ``[0, 1]``.

    Only fields that some product fills count (a catalogue without descriptions does not
    make every product half-empty); a product without any text gets 0. This is the text
    confidence of the item-dependent blend weight (:mod:`kgrec.fusion.alpha`).
    """
    filled = np.array([[bool(t) for t in _field_texts(products, name)]
                       for name in _check_fields(fields)]).reshape(len(fields), len(products))
    used = filled.any(axis=1)
    if not used.any():
        return torch.zeros(len(products))
    return torch.as_tensor(filled[used].mean(axis=0), dtype=torch.float32)


def has_text(products: pd.DataFrame, fields: Sequence[str] = TEXT_FIELDS) -> bool:
    """Whether the catalogue carries product text worth encoding: some product has a
    non-empty text and not every product has the same one (ids-only catalogues have none)."""
    texts = set(product_text(products, fields))
    return bool(texts - {""}) and (len(texts) > 1 or len(products) == 1)


def encode_products(
    encoder: TextEncoder, products: pd.DataFrame, *, fields: Sequence[str] = TEXT_FIELDS,
    separator: str = ". ", progress: bool = True,
) -> NodeEmbeddings:
    """Text embeddings of a product table, keyed by its ``id`` column."""
    texts = product_text(products, fields, separator=separator)
    ids = IdMap("product", products[schema.NODE_KEY].astype(str).tolist())
    return NodeEmbeddings("product", ids, encoder.encode(texts, progress=progress))


def user_profiles(
    interactions: pd.DataFrame,
    product_vectors: torch.Tensor,
    num_users: int,
    *,
    half_life_events: float | None = PROFILE_HALF_LIVES[0],
    half_life_days: float | None = None,
    event_weights: dict[str, float] | None = None,
) -> torch.Tensor:
    """Text profile of each user: the weighted mean of the texts of the products they used.

    Each event weighs ``w * 0.5 ** (n_later / half_life_events) * 0.5 ** (age / half_life_days)``:
    ``w`` is the event's ``weight`` column when present and positive (purchase > cart > view,
    ratings scaled), else the event type's default; ``n_later`` counts the user's events
    after this one (time order, ties by product row as in :func:`kgrec.gnn.split.make_split`), and
    ``age`` is the time before that user's latest event. Counting events works whether
    timestamps are dates or list positions (Amazon Scientific's), and the next product a
    user picks is most like the last few: measured on the temporal split, a half-life of
    one event lifts the profile's validation NDCG@20 from 0.064 to 0.083 on Scientific and
    from 0.018 to 0.044 on ml-100k. Users without events get a zero vector.

    Args:
        interactions: Frame with ``user``, ``product`` (row indices), and optionally
            ``rel``, ``time`` (unix seconds or an ordinal, -1 unknown) and ``weight``.
        product_vectors: ``[num_products, d]`` product text vectors.
        num_users: Rows of the result.
        half_life_events: Recency half-life in events; ``None`` weighs every event alike.
        half_life_days: Recency half-life in days (unix-time stamps only); ``None``: off.
        event_weights: Per-relationship default weights (``kgrec.kg.schema.DEFAULT_EVENT_WEIGHTS``).

    Returns:
        ``[num_users, d]`` L2-normalised profiles.
    """
    frame = interactions
    weights = _event_weights(frame, event_weights or schema.DEFAULT_EVENT_WEIGHTS)
    if half_life_events and len(frame):
        weights = weights * np.power(0.5, later_events(frame) / half_life_events)
    if half_life_days and "time" in frame and len(frame):
        time = frame["time"].to_numpy("float64")
        known = time >= 0
        by_user = pd.Series(np.where(known, time, -np.inf)).groupby(frame["user"].to_numpy())
        latest = by_user.transform("max").to_numpy()
        age_days = np.where(known & np.isfinite(latest), (latest - time) / 86_400.0, 0.0)
        weights = weights * np.power(0.5, age_days / half_life_days)
    users = torch.as_tensor(frame["user"].to_numpy("int64", copy=True))
    items = torch.as_tensor(frame["product"].to_numpy("int64", copy=True))
    w = torch.as_tensor(weights, dtype=product_vectors.dtype)
    out = torch.zeros(num_users, product_vectors.shape[1], dtype=product_vectors.dtype)
    # In chunks of events: an [events, d] product of the gathered vectors would take 1.5 GB
    # per million events at d = 384.
    for start in range(0, len(users), PROFILE_CHUNK):
        part = slice(start, start + PROFILE_CHUNK)
        out.index_add_(0, users[part], product_vectors[items[part]] * w[part].unsqueeze(1))
    return torch.nn.functional.normalize(out, dim=1)


def _event_weights(frame: pd.DataFrame, defaults: dict[str, float]) -> np.ndarray:
    base = (
        frame["rel"].map(defaults).fillna(1.0).to_numpy("float64")
        if "rel" in frame
        else np.ones(len(frame))
    )
    if "weight" in frame:
        given = pd.to_numeric(frame["weight"], errors="coerce").to_numpy("float64")
        base = np.where(np.isfinite(given) & (given > 0), given, base)
    return base


def profile_embeddings(
    interactions: pd.DataFrame,
    products: NodeEmbeddings,
    users: IdMap,
    **kwargs: object,
) -> NodeEmbeddings:
    """:func:`user_profiles` wrapped as ``NodeEmbeddings("user", ...)``.

    ``interactions`` use row indices of ``users`` and of ``products.ids``.
    """
    vectors = user_profiles(interactions, products.tensor, len(users), **kwargs)  # type: ignore[arg-type]
    return NodeEmbeddings("user", users, vectors)
