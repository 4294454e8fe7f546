"""Scale: the same jobs on growing synthetic catalogues, on the single-machine path and on the
engines kgrec hands work to (Neo4j's bulk importer, torch.distributed, Spark).

The catalogue is generated from Amazon Industrial & Scientific (``../shared/data``): as many
products and users per event as the real dataset has (4,344 products and 8,317 users for
58,492 events), each product's popularity drawn from the real item degrees, each user's
activity from the real sequence lengths, and each title and description as long (in words)
as a real one, its words drawn from the real texts' vocabulary; brands and category paths
are real ones. Timestamps increase by one second per event; 0.1% of events name an unknown
product (they must show up in the rejects report, never vanish).

Per size (``--sizes``, events) it measures, each step in a subprocess running the real
``kgrec`` command with its peak RSS read from /proc (``run_measured``):

- ingest into the embedded store (streaming, ``data.chunk_rows``): events/s, peak RSS;
- ingest into Neo4j over Bolt (sizes up to ``--bolt-max``) and with ``--bulk``
  (neo4j-admin import, the dump exported in ``data.chunk_rows`` parts; up to ``--bulk-max``)
  on a private server;
- training s/epoch of the GAT (no text features, no KG: the synthetic catalogue has none)
  with 1 and 2 processes (``--nproc``; sizes up to ``--train-max``, ``--train-batches``
  batches per epoch, the epoch time projected from them);
- scoring users/s, local against Spark ``local[2]`` (``--score-users`` users, sizes up to
  ``--score-max``; the fusion is fitted on the brand text only, to keep encoding short).

Memory must stay flat as events grow: the table reports the peak-RSS slope in MB per million
events for each ingest path. The catalogue (products with text, users) grows with the events
unless ``--catalogue-events`` fixes its size, which separates the memory per event from the
memory per product. Prints a table and writes ``benchmarks/results/scale.json``.

    .venv/bin/python benchmarks/scale.py [--sizes 1000000 5000000 20000000]
    .venv/bin/python benchmarks/scale.py --sizes 1000000 5000000 --catalogue-events 1000000 \
        --bolt-max 0 --train-max 0 --score-max 0 --out benchmarks/results/scale_fixed_catalogue.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    RESULTS,
    ROOT,
    SHARED_DATA,
    command,
    ingest_cmd,
    machine,
    now,
    run_measured,
    write_json,
)
from kgrec.gnn.train import scaled_batch  # noqa: E402
from kgrec.settings import TrainSettings

SOURCE = SHARED_DATA / "amazon-scientific"
KGREC = str(ROOT / ".venv" / "bin" / "kgrec")
SERVER_SH = ROOT / "scripts" / "neo4j" / "server.sh"
#: Share of generated events on a product that does not exist (rejected by the ingest).
BAD_SHARE = 0.001


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000, 20_000_000],
                   help="events per catalogue (1000000 5000000 20000000)")
    p.add_argument("--bolt-max", type=int, default=1_000_000,
                   help="largest size loaded into Neo4j over Bolt (1000000)")
    p.add_argument("--bulk-max", type=int, default=5_000_000,
                   help="largest size loaded into Neo4j with --bulk (5000000)")
    p.add_argument("--train-max", type=int, default=1_000_000,
                   help="largest size trained on (1000000)")
    p.add_argument("--train-batches", type=int, default=20,
                   help="batches timed per epoch; the epoch time is projected (20)")
    p.add_argument("--score-max", type=int, default=1_000_000,
                   help="largest size scored (1000000)")
    p.add_argument("--score-users", type=int, default=5_000, help="users scored (5000)")
    p.add_argument("--chunk-rows", type=int, default=100_000, help="data.chunk_rows (100000)")
    p.add_argument("--max-minutes", type=float, default=60.0,
                   help="stop before a size when the run has taken this long (60)")
    p.add_argument("--catalogue-events", type=int, default=None,
                   help="size the products and users for this many events at every size, so "
                        "that only the events grow (default: they grow with the events)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS / "scale.json"), help="results JSON path")
    return p.parse_args(argv)


# -- the synthetic catalogue ------------------------------------------------------------------

def real_catalogue() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The real products (title, description, brand, categories), item degrees and user
    sequence lengths of Amazon Scientific."""
    items = json.loads((SOURCE / "Scientific.item.json").read_text())
    inter = json.loads((SOURCE / "Scientific.inter.json").read_text())
    products = pd.DataFrame.from_dict(items, orient="index")
    degree = pd.Series(np.concatenate([np.asarray(s, dtype=str) for s in inter.values()])) \
        .value_counts()
    lengths = np.array([len(seq) for seq in inter.values()])
    return products, degree.to_numpy(), lengths


def _texts(rng: np.random.Generator, vocab: np.ndarray, lengths: np.ndarray) -> list[str]:
    """Texts of the given word counts, words drawn from ``vocab`` (with its frequencies)."""
    words = vocab[rng.integers(0, len(vocab), size=int(lengths.sum()))]
    ends = np.cumsum(lengths)
    return [" ".join(words[end - n:end]) for n, end in zip(lengths, ends, strict=True)]


def write_catalogue(folder: Path, events: int, seed: int, catalogue_events: int | None = None
                    ) -> tuple[Path, Path, dict[str, int]]:
    """Products and events CSVs of a synthetic catalogue with ``events`` events, its products
    and users as many as the real dataset has for ``catalogue_events`` (None: ``events``)."""
    real, degree, lengths = real_catalogue()
    rng = np.random.default_rng(seed)
    sized = catalogue_events or events
    n_products = max(1, round(sized * len(real) / degree.sum()))
    n_users = max(1, round(sized * len(lengths) / degree.sum()))
    pick = rng.integers(0, len(real), size=n_products)  # a real product as each one's model
    title_words = real["title"].fillna("").str.split().str.len().to_numpy()[pick]
    desc_words = real["description"].fillna("").str.split().str.len().to_numpy()[pick]
    # dtype=object: a fixed-width string array is as wide as the longest token (600+ chars).
    vocab = np.array(" ".join(real["title"].fillna("") + " " + real["description"].fillna(""))
                     .split(), dtype=object)
    products = pd.DataFrame({
        "item_id": [f"p{i}" for i in range(n_products)],
        "title": _texts(rng, vocab, np.maximum(title_words, 1)),
        "description": _texts(rng, vocab, desc_words),
        "brand": real["brand"].to_numpy()[pick],
        "category": real["categories"].to_numpy()[pick],
    })
    products_path = folder / f"products-{events}.csv"
    products.to_csv(products_path, index=False)
    del products
    popularity = rng.choice(degree, size=n_products).astype(float)
    activity = rng.choice(lengths, size=n_users).astype(float)
    item = rng.choice(n_products, size=events, p=popularity / popularity.sum())
    user = rng.choice(n_users, size=events, p=activity / activity.sum())
    item_ids = np.char.add("p", item.astype(str)).astype(object)
    item_ids[rng.random(events) < BAD_SHARE] = "no-such-product"
    events_path = folder / f"events-{events}.csv"
    pd.DataFrame({"user_id": np.char.add("u", user.astype(str)), "item_id": item_ids,
                  "timestamp": 1_500_000_000 + np.arange(events)}).to_csv(events_path, index=False)
    return products_path, events_path, {"products": n_products, "users": n_users}


# -- running kgrec ----------------------------------------------------------------------------

def ingest(products: Path, events: Path, work: Path, chunk_rows: int, store: list[str],
           env: dict[str, str] | None = None) -> dict[str, Any]:
    """One ``kgrec ingest``: wall, peak RSS, events/s over the run's own time, lost rows."""
    work.mkdir(parents=True)
    res = run_measured(ingest_cmd(products, events, work, chunk_rows, store), work, env)
    summary = json.loads(max((work / "reports").glob("ingest-*.json")).read_text())
    n = summary["files"][str(events)][0]
    rejected = summary["files"][str(events)][1]
    stored = summary["store_counts"].get("PURCHASED", 0)
    return {**res, "events": n, "elapsed_s": summary["elapsed_s"],
            "events_per_s": n / summary["elapsed_s"], "stored": stored,
            "rejected": rejected, "lost_rows": n - stored - rejected}


class Neo4jServer:
    """A private Neo4j server (scripts/neo4j/server.sh) on a fresh data folder."""

    def __init__(self, folder: Path, port: int = 7797) -> None:
        self.env = {**os.environ, "NEO4J_PORT": str(port), "NEO4J_RUN_DIR": str(folder),
                    "NEO4J_HOME": str(folder / "data")}
        self.folder, self.uri = folder, f"bolt://127.0.0.1:{port}"

    def __call__(self, action: str) -> None:
        subprocess.run(["bash", str(SERVER_SH), action], env=self.env, check=True,
                       capture_output=True)

    def kgrec_env(self) -> dict[str, str]:
        return {**self.env, "KGREC_NEO4J_URI": self.uri,
                "KGREC_NEO4J_PASSWORD_FILE": str(self.folder / "password")}


def bolt_ingest(products: Path, events: Path, work: Path, chunk_rows: int) -> dict[str, Any]:
    """Into a running, empty server over Bolt."""
    server = Neo4jServer(work / "bolt")
    server("start")
    try:
        return ingest(products, events, work / "bolt-run", chunk_rows, ["--store", "neo4j"],
                      server.kgrec_env())
    finally:
        server("stop")


def bulk_ingest(products: Path, events: Path, work: Path, chunk_rows: int) -> dict[str, Any]:
    """Into a stopped, empty folder with ``--bulk`` (neo4j-admin import)."""
    bulk = Neo4jServer(work / "bulk", port=7798)
    try:
        return ingest(products, events, work / "bulk-run", chunk_rows,
                      ["--store", "neo4j", "--bulk"], bulk.kgrec_env())
    finally:
        bulk("stop")


def train_epoch(store: Path, work: Path, nproc: int, batches: int) -> dict[str, Any]:
    """Seconds of ``batches`` GAT training batches with ``nproc`` processes, projected to a
    full epoch."""
    run = work / f"train-{nproc}"
    cmd = [KGREC, "train", "--store", "local", "--store-path", str(store), "--model", "gat",
           "--no-text-features", "--kg-hops", "0", "--epochs", "1", "--nproc", str(nproc),
           "--out-dir", str(run), "--quiet", "--set", f"train.max_batches={batches}"]
    res = run_measured(cmd, work)
    folder = run / "gat"
    epoch = json.loads((folder / "history.json").read_text())[0]
    settings = json.loads((folder / "settings.json").read_text())["settings"]
    pairs = len(pd.read_parquet(folder / "split_train.parquet"))
    # The batch an epoch really uses: it grows to fill train.max_steps_per_epoch steps.
    batch, _ = scaled_batch(TrainSettings.from_any(SimpleNamespace(**settings)), pairs)
    per_batch = epoch["seconds"] / epoch["batches"]
    return {**res, "nproc": nproc, "train_pairs": pairs, "batches": epoch["batches"],
            "batch_size": batch, "seconds": epoch["seconds"], "s_per_batch": per_batch,
            "projected_s_per_epoch": per_batch * np.ceil(pairs / batch)}


def score(run: Path, work: Path, users: int, text_cache: Path) -> dict[str, Any]:
    """Users/s of the local scorer and of Spark ``local[2]`` on ``users`` users of the
    trained ``run``, fused on the brand text only (the profile side): a few thousand distinct
    brands to encode instead of every product's text, which 2 CPUs cannot encode in the
    time; scoring cost does not depend on what the text says."""
    from kgrec.api import Recommender
    from kgrec.config import Config
    from kgrec.spark import score_on_spark

    config = Config()
    config.fusion.text_fields, config.data.cache_dir = ["brand"], str(text_cache)
    t0 = time.perf_counter()
    rec = Recommender.load(run, config=config).fuse(["profile"], progress=False)
    rec.save(run)
    fuse_s = time.perf_counter() - t0
    ids = list(rec.users.ids[:users])
    t0 = time.perf_counter()
    local = rec.recommend(ids, items="long-tail")
    local_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    done = score_on_spark(run, master="local[2]", out=work / "spark.parquet", users=ids,
                          items="long-tail", config=config)
    spark_s = time.perf_counter() - t0
    return {"users": len(ids), "candidates": local.attrs["candidates"], "fuse_s": fuse_s,
            "local_s": local_s, "local_users_per_s": len(ids) / local_s,
            "spark_s": spark_s, "spark_users_per_s": len(ids) / spark_s,
            "spark_rows": done.rows, "local_rows": len(local)}


def one_size(n: int, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Every step that ``args`` allows at ``n`` events."""
    t0 = time.perf_counter()
    products, events, sizes = write_catalogue(folder, n, args.seed, args.catalogue_events)
    row: dict[str, Any] = {"events": n, **sizes, "generate_s": time.perf_counter() - t0,
                           "events_file_mb": events.stat().st_size / 2**20}
    work = folder / f"run-{n}"
    row["ingest_local"] = ingest(products, events, work / "local", args.chunk_rows,
                                 ["--store", "local", "--store-path", str(work / "store")])
    if n <= args.bolt_max:
        row["ingest_bolt"] = bolt_ingest(products, events, work / "neo4j", args.chunk_rows)
    if n <= args.bulk_max:
        row["ingest_bulk"] = bulk_ingest(products, events, work / "neo4j", args.chunk_rows)
    if n <= args.train_max:
        row["train"] = [train_epoch(work / "store", work, p, args.train_batches)
                        for p in (1, 2)]
    if n <= args.score_max:
        row["score"] = score(work / "train-1" / "gat", work, args.score_users,
                             folder / "text-cache")
    for path in (products, events):
        path.unlink()
    return row


def slopes(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Peak-RSS slope (MB per million events) of each ingest path, first to last size."""
    out = {}
    for key in ("ingest_local", "ingest_bolt", "ingest_bulk"):
        have = [r for r in rows if key in r]
        if len(have) > 1:
            a, b = have[0], have[-1]
            out[key] = ((_rss(b[key]) - _rss(a[key]))
                        / ((b["events"] - a["events"]) / 1e6))
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    rows, stopped, info = [], None, machine()  # the load average at the start
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kgrec-scale-") as tmp:
        for n in args.sizes:
            if (time.perf_counter() - start) / 60 > args.max_minutes:
                stopped = (f"stopped before {n:,} events: the run had taken more than "
                           f"--max-minutes {args.max_minutes:g}")
                break
            rows.append(one_size(n, args, Path(tmp)))
            print(table_row(rows[-1]), flush=True)
            write_json(Path(args.out), result(rows, stopped, args, info))  # kept if stopped later
    return result(rows, stopped, args, info)


def result(rows: list[dict[str, Any]], stopped: str | None, args: argparse.Namespace,
           info: dict[str, Any]) -> dict[str, Any]:
    return {"benchmark": "scale", "dataset": __doc__.split("\n\n")[1].replace("\n", " "),
            "sizes": rows, "stopped": stopped, "peak_rss_slope_mb_per_million_events":
            slopes(rows), "settings": {k: v for k, v in vars(args).items() if k != "out"},
            "command": command(), "machine": info, "date": now()}


HEADER = (f"{'events':>11}{'products':>10}{'users':>9} | {'local ev/s':>10}{'RSS MB':>8} | "
          f"{'bolt ev/s':>9}{'RSS MB':>8} | {'bulk ev/s':>9}{'RSS MB':>8} | "
          f"{'s/epoch 1p':>10}{'2p':>8} | {'users/s loc':>11}{'spark':>7}")


def table_row(r: dict[str, Any]) -> str:
    def ing(key: str) -> str:
        got = r.get(key)
        return f"{got['events_per_s']:>9,.0f}{_rss(got):>8,.0f}" if got else f"{'-':>17}"

    train = r.get("train") or []
    epochs = "".join(f"{t['projected_s_per_epoch']:>{w},.0f}" for t, w in zip(train, (10, 8),
                                                                             strict=False))
    sc = r.get("score")
    scored = (f"{sc['local_users_per_s']:>11,.1f}{sc['spark_users_per_s']:>7,.1f}" if sc
              else f"{'-':>18}")
    return (f"{r['events']:>11,}{r['products']:>10,}{r['users']:>9,} | "
            f"{r['ingest_local']['events_per_s']:>10,.0f}"
            f"{_rss(r['ingest_local']):>8,.0f} | {ing('ingest_bolt')} | "
            f"{ing('ingest_bulk')} | {epochs or f'{chr(45):>18}'} | {scored}")


def _rss(step: dict[str, Any]) -> float:
    """Peak RSS of a step: kgrec's own, or with its children (the bulk importer) if more."""
    return max(step["peak_rss_mb"], step["peak_tree_rss_mb"])


def table(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [f"kgrec at scale; {m['cpu_count']} CPUs, {m['memory_gib']} GiB, load "
             f"{m['load_average_1m_at_start']:.1f} at start", HEADER,
             *map(table_row, res["sizes"])]
    lines += [f"peak RSS slope {k}: {v:+.1f} MB per million events"
              for k, v in res["peak_rss_slope_mb_per_million_events"].items()]
    if res["stopped"]:
        lines.append(res["stopped"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(HEADER, flush=True)
    res = run(args)
    print(table(res))
    print(f"written to {write_json(Path(args.out), res)}")


if __name__ == "__main__":
    main()
