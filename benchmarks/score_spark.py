"""Batch scoring speed: the local scorer vs Spark ``local[N]`` (kgrec.spark).

Every ml-100k user gets the top-20 long-tail products of a saved fused run (the pipeline
benchmark's GAT run when present, else an MF run trained briefly here). Rows: the local
``Recommender.recommend`` (load + score), Spark cold (session start, driver and worker
loads, write, read-back count) and Spark warm (the same job again: session and the
workers' cached models reused). Writes ``benchmarks/results/score_spark.json``.

    .venv/bin/python benchmarks/score_spark.py [--master local[2]] [--chunk-size 128]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import RESULTS, command, load_dataset, machine, now, write_json  # noqa: E402

#: What the rows measure (saved with them).
NOTES = ("Cold Spark includes the JVM/session start, the driver's run load and check, each "
         "Python worker importing torch and loading the run, the Parquet write and the "
         "read-back count; warm reruns the same job on the live session (workers and their "
         "cached models reused). Spark's workers share the machine's cores with each other, "
         "so on one small machine they cannot beat one process; Spark pays off when "
         "executors are separate machines.")
PIPELINE_RUN = ROOT / ".kgrec" / "bench" / "pipeline" / "run"


def saved_run(config, scratch: Path) -> tuple[Path, Path | None, str]:
    """(run folder, snapshot folder or None, what it is): the pipeline's fused GAT run on
    ml-100k, else a 2-epoch MF run fused here."""
    gat = PIPELINE_RUN / "runs" / "gat"
    if (gat / "fusion" / "fusion.json").exists() and (PIPELINE_RUN / "snapshot").exists():
        return gat, PIPELINE_RUN / "snapshot", "pipeline benchmark GAT run (ml-100k)"
    import kgrec

    rec = kgrec.Recommender.fit(load_dataset("ml-100k"), config, model="mf", epochs=2,
                                progress=False).fuse(progress=False)
    return rec.save(scratch / "run"), None, "MF, 2 epochs, fused here (ml-100k)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--master", default="local[2]")
    p.add_argument("--chunk-size", type=int, default=128,
                   help="users per chunk, the unit Spark partitions hold (943 users: 8 chunks)")
    p.add_argument("--top-k", type=int, default=20)
    p.add_argument("--items", default="long-tail")
    args = p.parse_args()

    import kgrec
    from kgrec.config import Config
    from kgrec.spark import score_on_spark, spark_session

    config = Config()
    config.score.chunk_size, config.train.device = args.chunk_size, "cpu"
    scratch = Path(tempfile.mkdtemp(prefix="kgrec-score-spark-"))
    run, snapshot, what = saved_run(config, scratch)
    options = {"items": args.items, "k": args.top_k}

    start = time.perf_counter()
    rec = kgrec.Recommender.load(run, snapshot=snapshot, config=config)
    loaded = time.perf_counter()
    local = rec.recommend(**options)
    scored = time.perf_counter()
    users = local["user_id"].nunique()
    rows = [{"engine": "local (one process)", "seconds": round(scored - start, 2),
             "scoring_seconds": round(scored - loaded, 2), "users": users,
             "users_per_s": round(users / (scored - start), 1), "rows": len(local)}]

    t = time.perf_counter()
    spark, _ = spark_session(args.master)  # kept open: the warm run reuses it and its workers
    session_start = time.perf_counter() - t
    try:
        for name in ("cold", "warm"):
            out = scratch / f"spark-{name}"
            t = time.perf_counter()
            done = score_on_spark(run, master=args.master, out=out, snapshot=snapshot,
                                  config=config, **options)
            seconds = time.perf_counter() - t + (session_start if name == "cold" else 0)
            got = pd.read_parquet(out)
            key = ["user_id", "rank"]
            same = got.sort_values(key)[["user_id", "product_id"]].reset_index(drop=True).equals(
                local.sort_values(key)[["user_id", "product_id"]].reset_index(drop=True))
            rows.append({"engine": f"Spark {args.master} ({name})", "seconds": round(seconds, 2),
                         "scoring_seconds": None, "users": done.users,
                         "users_per_s": round(done.users / seconds, 1), "rows": done.rows,
                         "partitions": done.partitions, "same_rows_as_local": bool(same)})
            print(done.line())
    finally:
        spark.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"{'engine':<28} {'seconds':>8} {'users/s':>9} {'rows':>7}")
    for r in rows:
        print(f"{r['engine']:<28} {r['seconds']:>8.2f} {r['users_per_s']:>9.1f} {r['rows']:>7,}")
    payload = {"benchmark": "score_spark", "command": command(), "date": now(),
               "machine": machine(), "run": what, "items": args.items, "top_k": args.top_k,
               "chunk_size": args.chunk_size, "rows": rows, "notes": NOTES}
    print(f"Saved {write_json(RESULTS / 'score_spark.json', payload)}")


if __name__ == "__main__":
    main()
