"""Batch scoring on Spark local[2] (kgrec.spark, kgrec score --spark): the Parquet
parts hold exactly the local scorer's rows."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import kgrec
from kgrec.cli import main
from kgrec.config import Config
from kgrec.errors import InputError
from kgrec.kg.snapshot import snapshot_from_tables
from kgrec.spark import score_on_spark, spark_session

pytest.importorskip("pyspark")

pytestmark = pytest.mark.spark
KEY = ["user_id", "rank"]


@pytest.fixture(scope="module")
def run(themed_tables, tmp_path_factory):
    """A fused MF run on the themed catalogue, saved with its snapshot."""
    root = tmp_path_factory.mktemp("spark")
    config = Config()
    config.fusion.cache_dir = str(root / "text-cache")
    config.fusion.tower_epochs = 2
    config.score.chunk_size = 7  # several chunks per batch, as on a real catalogue
    rec = kgrec.Recommender.fit(snapshot_from_tables(themed_tables), config, model="mf",
                                progress=False, epochs=3, dim=8, eval_every=100,
                                device="cpu").fuse(progress=False)
    return rec.save(root / "run"), config


@pytest.fixture(scope="module")
def spark():
    """One local[2] session for the module: the CLI run reuses it and its Python workers."""
    session, _ = spark_session("local[2]")
    yield session
    session.stop()


def _local(folder, config, **options) -> pd.DataFrame:
    """The local scorer's rows at one torch thread, as Spark's Python workers run
    (OMP_NUM_THREADS = spark.task.cpus): float32 rounding depends on the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rec = kgrec.Recommender.load(folder, config=config)
        return rec.recommend(**options).assign(per="user")
    finally:
        torch.set_num_threads(threads)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.astype({"title": str, "user_id": str, "product_id": str})
    return frame.sort_values(KEY, kind="stable").reset_index(drop=True)


def test_spark_rows_equal_the_local_scorer(run, spark, tmp_path, capsys) -> None:
    folder, config = run
    local = _local(folder, config, items="all", k=4, exclude_seen="train")
    done = score_on_spark(folder, master="local[2]", out=tmp_path / "scores", items="all",
                          k=4, exclude_seen="train", config=config, partitions=3)
    spark = pd.read_parquet(tmp_path / "scores")
    assert list(spark.columns) == list(local.columns)
    assert (done.users, done.rows, done.partitions) == (30, 30 * 4, 3)
    assert done.candidates == 40
    pd.testing.assert_frame_equal(_sorted(spark), _sorted(local), check_exact=False,
                                  rtol=0, atol=1e-6)

    # The CLI is a thin caller: long-tail candidates, every interaction excluded.
    out = tmp_path / "cli"
    assert main(["score", "--run", str(folder), "--no-progress", "--device", "cpu",
                 "--spark", "local[2]", "--items", "long-tail", "--top-k", "3",
                 "--out", str(out), "--set", f"score.chunk_size={config.score.chunk_size}",
                 "--set", f"fusion.cache_dir={config.fusion.cache_dir}"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("Scored 30 users against") and str(out) in line
    tail = _local(folder, config, items="long-tail", k=3)
    pd.testing.assert_frame_equal(_sorted(pd.read_parquet(out)), _sorted(tail),
                                  check_exact=False, rtol=0, atol=1e-6)


def test_unknown_users_fail_before_spark_starts(run, tmp_path) -> None:
    folder, config = run
    with pytest.raises(InputError, match="unknown user id.*'nobody'"):
        score_on_spark(folder, master="local[1]", out=tmp_path / "x", users=["u00", "nobody"],
                       config=config)


def test_cli_rejects_what_spark_does_not_do(run, tmp_path, capsys) -> None:
    folder, _ = run
    base = ["score", "--run", str(folder), "--no-progress", "--out", str(tmp_path / "x")]
    assert main([*base, "--spark", "local[2]", "--per", "item"]) == 1
    assert "--spark scores top products per user" in capsys.readouterr().err
    assert main([*base, "--spark", "localhost"]) == 1
    assert "score.spark" in capsys.readouterr().err
