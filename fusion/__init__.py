"""Fusion layer of kgrec: transformer text embeddings, score fusion and batch scoring.

``kgrec.fusion.text`` encodes product texts and user profiles (MiniLM by default, offline, with
an on-disk cache); ``kgrec.fusion.score`` normalises and blends GNN and text scores and trains
the text tower; ``kgrec.fusion.fit`` fits the blend on a validation split; ``kgrec.fusion.batch``
scores users x products in chunks (exact top-K) and writes Parquet / RECOMMENDED edges.
"""

from __future__ import annotations

from kgrec.fusion.alpha import AlphaFit, AlphaFunction, fit_alpha_function
from kgrec.fusion.batch import (
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
from kgrec.fusion.fit import FusionFit, JobFit, build_text_side, fit_fusion, fit_job
from kgrec.fusion.score import (
    FusedScorer,
    TextTower,
    blend,
    normalise,
    rank_percentile,
    train_text_tower,
    zscore,
)
from kgrec.fusion.text import (
    TextEncoder,
    encode_products,
    has_text,
    product_text,
    profile_embeddings,
    resolve_model_dir,
    text_confidence,
    user_profiles,
)

__all__ = [
    "AlphaFit",
    "AlphaFunction",
    "FusedScorer",
    "FusionFit",
    "JobFit",
    "MatmulScorer",
    "SeenIndex",
    "TextEncoder",
    "TextTower",
    "TopK",
    "blend",
    "build_text_side",
    "chunked_topk",
    "dot_scorer",
    "encode_products",
    "fit_alpha_function",
    "fit_fusion",
    "fit_job",
    "has_text",
    "normalise",
    "product_text",
    "profile_embeddings",
    "rank_percentile",
    "resolve_model_dir",
    "select_items",
    "text_confidence",
    "topk_frame",
    "train_text_tower",
    "user_profiles",
    "write_back",
    "write_parquet",
    "zscore",
]
