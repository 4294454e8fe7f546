"""Fusion layer of kgrec: transformer text embeddings, score fusion and batch scoring.

``kgrec.fusion.encoder`` runs the text model (MiniLM by default, offline, with an on-disk
cache) and ``kgrec.fusion.text`` builds product texts and user profiles;
``kgrec.fusion.blend`` normalises GNN and text scores per user and blends
them, ``kgrec.fusion.score`` scores users against products with that blend and
``kgrec.fusion.tower`` trains the text tower; ``kgrec.fusion.fit`` fits the blend on a
validation split. Batch scoring: ``kgrec.fusion.candidates`` picks the candidate products,
``kgrec.fusion.topk`` keeps the exact top-K over chunks (``kgrec.fusion.seen`` excludes known
pairs) and ``kgrec.fusion.output`` writes Parquet / RECOMMENDED edges.
"""

from __future__ import annotations

from kgrec.fusion.alpha import AlphaFit, AlphaFunction, fit_alpha_function
from kgrec.fusion.blend import Blend, normalise, rank_percentile, zscore
from kgrec.fusion.candidates import select_items
from kgrec.fusion.encoder import TextEncoder, resolve_model_dir
from kgrec.fusion.fit import FusionFit, JobFit, build_text_side, fit_fusion, fit_job
from kgrec.fusion.output import topk_frame, write_back, write_parquet
from kgrec.fusion.score import FusedScorer
from kgrec.fusion.seen import SeenIndex
from kgrec.fusion.text import (
    encode_products,
    has_text,
    product_text,
    profile_embeddings,
    text_confidence,
    user_profiles,
)
from kgrec.fusion.topk import MatmulScorer, TopK, chunked_topk, dot_scorer
from kgrec.fusion.tower import TextTower, train_text_tower

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
    "Blend",
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
