"""Batch scoring on Apache Spark: the users of a saved run spread over executors.

    from kgrec.spark import score_on_spark
    done = score_on_spark("runs/gat", master="local[4]", out="scores.parquet",
                          items="long-tail")
    print(done.line())

The driver checks the run and the user ids and range-partitions the ids by the local
scorer's chunks (``score.chunk_size`` users); each executor's Python worker loads the
saved :class:`~kgrec.runfolder.Run` once (cached per worker, reused by every task it
runs) and scores its users with :func:`kgrec.serving.recommend`, the same exact chunked
top-K, through ``mapInPandas``. Spark writes the rows as a folder of Parquet parts, row
for row the local scorer's output: same columns and ranks, and the same scores to the bit
when the local scorer runs as many torch threads as a Spark task (``spark.task.cpus``,
1 by default; float32 rounding depends on the thread count, by ~1e-6).

Executors read the run folder (and the snapshot, fusion and ``--items`` file) by path: on
``local[N]`` a local path does; on a cluster every executor must see the same path (shared
storage: NFS, a mounted bucket). pyspark is imported only here (``pip install
kgrec[spark]``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from kgrec import serving
from kgrec.config import Config
from kgrec.errors import InputError
from kgrec.runfolder import Run

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: Spark schema of the output: the local scorer's Parquet columns, in its order.
SCHEMA = ("user_id string, product_id string, rank long, score double, score_gnn double, "
          "score_text double, title string, per string")
#: The driver's log4j2 settings while Spark starts (:func:`_quiet_log4j`): WARN, the level
#: pyspark expects (else it prints a "Setting default log level" banner), with the
#: start-up warnings of every local run (loopback hostname, no native Hadoop) kept away.
LOG4J2 = """rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
logger.utils.name = org.apache.spark.util.Utils
logger.utils.level = error
logger.native.name = org.apache.hadoop.util.NativeCodeLoader
logger.native.level = error
"""
#: Per Python worker: (run, snapshot, fusion, settings) -> the loaded run.
_LOADED: dict[tuple[str, ...], Run] = {}


@dataclass(frozen=True)
class RunFiles:
    """Where executors load the model from: the run folder, its snapshot (None: the run's
    own ``snapshot/``) and its fusion (None: ``run/fusion`` when present)."""

    run: str
    snapshot: str | None = None
    fusion: str | None = None

    def load(self, config: Config) -> Run:
        return Run.load(self.run, snapshot=self.snapshot, config=config, fusion=self.fusion)


@dataclass(frozen=True)
class SparkScore:
    """What a Spark scoring run did: users scored, rows written, candidate products."""

    master: str
    out: str
    users: int
    rows: int
    products: int
    candidates: int
    seconds: float
    partitions: int

    def line(self) -> str:
        return (f"Scored {self.users:,} users against {self.candidates:,} candidate products "
                f"on Spark {self.master} ({self.partitions} partitions) in "
                f"{self.seconds:.1f} s, keeping {self.rows:,} recommendations "
                f"({self.products:,} distinct products). Written to {self.out} (Parquet parts).")


def score_on_spark(run: str | Path, *, master: str, out: str | Path,
                   users: Sequence[str] | None = None,
                   items: str | Path | Sequence[str] = "all", k: int | None = None,
                   exclude_seen: bool | str = True, alpha: float | None = None,
                   snapshot: str | Path | None = None, fusion: str | Path | None = None,
                   config: Config | None = None, partitions: int | None = None) -> SparkScore:
    """Top-``k`` products per user of the saved run ``run``, scored on Spark ``master``
    (``local[N]``, ``spark://host:7077``, ``yarn``, ``k8s://...``) and written to ``out``
    as Parquet parts; the arguments after ``out`` are :func:`kgrec.serving.recommend`'s.
    ``users``: ids (default all); ``partitions``: user partitions (default Spark's
    parallelism). Paths must be readable by every executor (shared storage on a cluster).
    Raises :class:`InputError` for unknown users before Spark starts."""
    start = time.perf_counter()
    config = config or Config()
    files = RunFiles(str(run), None if snapshot is None else str(snapshot),
                     None if fusion is None else str(fusion))
    # Fail here, not on an executor: the run loads and the users exist.
    rec = files.load(config)
    ids = list(rec.users.ids) if users is None else _known(rec, users)
    if not ids:
        raise InputError("no users to score")
    options: dict[str, Any] = {"items": items, "k": k, "exclude_seen": exclude_seen,
                               "alpha": alpha}
    # One user on the driver checks items, k and alpha and counts the candidates.
    candidates = serving.recommend(rec, ids[:1], **options).attrs["candidates"]
    job = functools.partial(_score_batches, files=files, config=config, options=options)
    spark, owned = spark_session(master)
    try:
        parts = partitions or spark.sparkContext.defaultParallelism
        master = spark.sparkContext.master or master  # an active session's master wins
        rows, products = _write(spark, ids, job, parts, config.score.chunk_size, str(out))
    finally:
        if owned:
            spark.stop()
    return SparkScore(master, str(out), len(ids), rows, products, candidates,
                      time.perf_counter() - start, parts)


def _write(spark: SparkSession, ids: list[str], job: Any, parts: int, chunk_size: int,
           out: str) -> tuple[int, int]:
    """Score ``ids`` in ``parts`` partitions into Parquet parts at ``out``; (rows, distinct
    products) read back from the written files.

    A partition holds whole chunks of the local scorer (``chunk_size`` consecutive users),
    in order: each matrix product then sees the same rows as locally, so scores round the
    same way (a float32 product's rounding depends on its shape)."""
    from pyspark.sql import functions as F

    with _quiet_pandas():
        users = spark.createDataFrame(pd.DataFrame({"position": range(len(ids)),
                                                    "user_id": pd.Series(ids, dtype=str)}))
        chunks = users.withColumn("chunk", F.floor(F.col("position") / chunk_size))
        (chunks.repartitionByRange(parts, "chunk").sortWithinPartitions("position")
         .mapInPandas(job, SCHEMA).write.mode("overwrite").parquet(out))
    row = spark.read.parquet(out).agg(F.count("*"), F.countDistinct("product_id")).first()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


@contextlib.contextmanager
def _quiet_pandas() -> Iterator[None]:
    # pyspark 4.x warns on every pandas call that it predates pandas 3; the tests pin the
    # rows against the local scorer instead.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
        yield


def _known(rec: Run, users: Sequence[str]) -> list[str]:
    wanted = [users] if isinstance(users, str) else [str(u) for u in users]
    unknown = [u for u in wanted if u not in rec.users]
    if unknown:
        raise InputError(f"unknown user id(s) {', '.join(map(repr, unknown[:5]))}"
                         f"{' ...' if len(unknown) > 5 else ''}", field="user")
    return wanted


def _score_batches(batches: Iterator[pd.DataFrame], *, files: RunFiles, config: Config,
                   options: dict[str, Any]) -> Iterator[pd.DataFrame]:
    """Runs on the executors: the worker's cached run ranks the partition's users
    in one call (Arrow batches may cut a chunk)."""
    key = (files.run, str(files.snapshot), str(files.fusion),
           json.dumps(config.redacted(), sort_keys=True, default=str))
    if key not in _LOADED:  # once per Python worker, which Spark reuses across tasks
        _LOADED[key] = files.load(config)
    rec = _LOADED[key]
    users = [u for batch in batches for u in batch["user_id"].tolist()]
    if users:
        yield serving.recommend(rec, users, **options).assign(per="user")


def spark_session(master: str) -> tuple[SparkSession, bool]:
    """A quiet Spark session on ``master`` for :func:`score_on_spark`, and whether the
    caller owns it (an active session is reused, and its owner stops it): open one first to
    keep the workers warm across several scorings."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as err:
        raise InputError("Spark scoring needs pyspark: pip install 'kgrec[spark]'") from err
    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    if master.startswith("local"):
        # Local workers run this interpreter (kgrec and torch installed); a cluster
        # configures its executors' Python itself.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (SparkSession.builder.master(master).appName("kgrec-score")
               .config("spark.driver.extraJavaOptions",
                       f"-Dlog4j2.configurationFile={_quiet_log4j()}")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true"))
    if master.startswith("local"):
        builder = builder.config("spark.sql.shuffle.partitions", "4")
    with _quiet_pandas():
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark, True


def _quiet_log4j() -> Path:
    """A log4j2 file that quiets the driver's start (``setLogLevel`` comes only after the
    start-up warnings and Spark's default-profile lines)."""
    path = Path(tempfile.gettempdir()) / f"kgrec-spark-log4j2-{os.getuid()}.properties"
    if not path.exists() or path.read_text() != LOG4J2:
        path.write_text(LOG4J2)
    return path
