"""Fusion layer of kgrec: transformer text embeddings, score fusion and batch scoring.

``fusion.text`` encodes product texts and user profiles (MiniLM by default, offline, with
an on-disk cache); ``fusion.score`` normalises and blends GNN and text scores and trains
the text tower; ``fusion.fit`` fits the blend on a validation split; ``fusion.batch``
scores users x products in chunks (exact top-K) and writes Parquet / RECOMMENDED edges.
"""

from __future__ import annotations

from fusion.batch import (
    MatmulScorer,
    SeenIndex,
    TopK,
    chunked_topk,
    dot_scorer,
    select_items,
    topk_frame,
    write_back,
    write_parquet,
)
from fusion.score import (
    AlphaFit,
    FusedScorer,
    TextTower,
    blend,
    fit_alpha,
    normalise,
    popularity_alpha,
    rank_percentile,
    train_text_tower,
    zscore,
)
from fusion.text import (
    TextEncoder,
    encode_products,
    product_text,
    profile_embeddings,
    resolve_model_dir,
    user_profiles,
)

__all__ = [
    "AlphaFit",
    "FusedScorer",
    "MatmulScorer",
    "SeenIndex",
    "TextEncoder",
    "TextTower",
    "TopK",
    "blend",
    "chunked_topk",
    "dot_scorer",
    "encode_products",
    "fit_alpha",
    "normalise",
    "popularity_alpha",
    "product_text",
    "profile_embeddings",
    "rank_percentile",
    "resolve_model_dir",
    "select_items",
    "topk_frame",
    "train_text_tower",
    "user_profiles",
    "write_back",
    "write_parquet",
    "zscore",
]
