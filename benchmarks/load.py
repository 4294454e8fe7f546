"""Streaming ingest at scale: 1M and 2M events through ``kgrec ingest`` into the embedded store.

The events are drawn from the real distributions of Amazon Industrial & Scientific
(``../shared/data/amazon-scientific``): each event's user with the frequency of that user's
interactions, its product with the product's degree. The dataset keeps no timestamps or
ratings (only each user's order), so events are purchases with increasing timestamps (one
second apart), and 0.1% of them name an unknown product, to exercise the rejects report.
The products file is the dataset's 4,344 products (title, brand, category path).

Each size runs the real command (``kgrec ingest --products ... --events ...``) in a
subprocess on a fresh store and measures: wall time, the ingest's own time (run summary)
and events/s over it, the peak RSS of that process (from /proc, see
``benchmarks._common.run_measured``), lost rows (events in - events stored - events
reported rejected: must be 0), and the throughput of the first and
last 10% of the events (from the per-part timings in the run summary). Peak RSS should not
grow with the number of events: the table gives both sizes and the slope (MB per million
events). For reference, the smallest size also runs as one chunk (the whole file in memory,
as before streaming).

Prints a table and writes ``benchmarks/results/load_1m.json``.

    .venv/bin/python benchmarks/load.py [--sizes 1000000 2000000] [--chunk-rows 100000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    RESULTS,
    SHARED_DATA,
    command,
    ingest_cmd,
    machine,
    now,
    run_measured,
    write_json,
)

SOURCE = SHARED_DATA / "amazon-scientific"
#: Share of generated events on a product that does not exist (rejected by the ingest).
BAD_SHARE = 0.001


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 2_000_000],
                   help="events per run (1000000 2000000)")
    p.add_argument("--chunk-rows", type=int, default=100_000,
                   help="data.chunk_rows of the ingest (100000, the default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS / "load_1m.json"), help="results JSON path")
    return p.parse_args(argv)


def write_products(folder: Path) -> Path:
    """The dataset's products as a CSV (id, title, brand, comma-joined category path)."""
    items = json.loads((SOURCE / "Scientific.item.json").read_text())
    frame = pd.DataFrame([
        {"item_id": key, "title": item.get("title"), "brand": item.get("brand"),
         "category": item.get("categories")} for key, item in items.items()])
    path = folder / "products.csv"
    frame.to_csv(path, index=False)
    return path


def write_events(folder: Path, n: int, seed: int) -> Path:
    """``n`` events sampled with the real user and product frequencies."""
    inter = json.loads((SOURCE / "Scientific.inter.json").read_text())
    users = np.array(list(inter))
    user_freq = np.array([len(seq) for seq in inter.values()], dtype=float)
    items, degree = np.unique(np.concatenate([np.asarray(s, dtype=str) for s in inter.values()]),
                              return_counts=True)
    rng = np.random.default_rng(seed)
    products = rng.choice(items, size=n, p=degree / degree.sum()).astype(object)
    bad = rng.random(n) < BAD_SHARE
    products[bad] = "no-such-product"
    frame = pd.DataFrame({
        "user_id": rng.choice(users, size=n, p=user_freq / user_freq.sum()),
        "item_id": products,
        "timestamp": 1_500_000_000 + np.arange(n),
    })
    path = folder / f"events-{n}.csv"
    frame.to_csv(path, index=False)
    return path


def ingest(products: Path, events: Path, work: Path, chunk_rows: int) -> dict:
    """One ``kgrec ingest`` in a subprocess: its wall time, peak RSS and run summary."""
    cmd = ingest_cmd(products, events, work, chunk_rows,
                     ["--store", "local", "--store-path", str(work / "store")])
    res = run_measured(cmd, work)
    summary = json.loads(next((work / "reports").glob("ingest-*.json")).read_text())
    shown = " ".join(c if " " not in c else repr(c) for c in cmd)
    return {"command": shown, **res, "summary": summary}


def window_rate(parts: list[list[float]], share: float, last: bool) -> float:
    """Events/s over the first (or last) ``share`` of the event parts' rows."""
    parts = parts[::-1] if last else parts
    total = sum(rows for rows, _ in parts)
    rows_in = seconds = 0.0
    for rows, sec in parts:
        take = min(rows, share * total - rows_in)
        if take <= 0:
            break
        rows_in += take
        seconds += sec * take / rows
    return rows_in / seconds


def measure(products: Path, events: Path, work: Path, n: int, chunk_rows: int) -> dict:
    """One ingest of ``n`` events and its figures."""
    work.mkdir()
    res = ingest(products, events, work, chunk_rows)
    s = res.pop("summary")
    stored = s["store_counts"].get("PURCHASED", 0)
    rejected = s["files"][str(events)][1]
    event_parts = s["parts"][1:]  # the first part is the products file
    return {
        "events": n, "chunk_rows": chunk_rows, **res, "elapsed_s_summary": s["elapsed_s"],
        # The process wall time includes ~1 GB and tens of seconds of CLI start-up (torch is
        # imported); the ingest's own run time is in its summary.
        "events_per_s": n / s["elapsed_s"], "events_per_s_wall": n / res["wall_s"],
        "stored": stored, "rejected": rejected, "lost_rows": n - stored - rejected,
        "first_10pct_events_per_s": window_rate(event_parts, 0.1, last=False),
        "last_10pct_events_per_s": window_rate(event_parts, 0.1, last=True),
        "parts": len(event_parts), "store_counts": s["store_counts"],
        "events_file_mb": events.stat().st_size / 2**20,
    }


def run(args: argparse.Namespace) -> dict:
    runs = []
    with tempfile.TemporaryDirectory(prefix="kgrec-load-") as tmp:
        folder = Path(tmp)
        products = write_products(folder)
        for n in args.sizes:
            events = write_events(folder, n, args.seed)
            runs.append(measure(products, events, folder / f"run-{n}", n, args.chunk_rows))
            if n == args.sizes[0]:  # the same file in one chunk: the memory of a whole read
                runs.append(measure(products, events, folder / f"whole-{n}", n, n))
            events.unlink()
    whole = [r for r in runs if r["chunk_rows"] == r["events"]]
    runs = [r for r in runs if r not in whole]
    a, b = runs[0], runs[-1]
    slope = ((b["peak_rss_mb"] - a["peak_rss_mb"]) / ((b["events"] - a["events"]) / 1e6)
             if len(runs) > 1 else None)
    return {
        "benchmark": "load",
        "dataset": "events sampled from Amazon Industrial & Scientific (user and product "
                   "frequencies), synthetic increasing timestamps, 0.1% unknown products",
        "store": "local (embedded Parquet parts)",
        "chunk_rows": args.chunk_rows,
        "runs": runs,
        #: The smallest size again with the whole file as one chunk (the memory profile of
        #: reading it whole, as before streaming).
        "whole_file_reference": whole,
        "peak_rss_slope_mb_per_million_events": slope,
        "command": command(),
        "machine": machine(),
        "date": now(),
    }


def table(res: dict) -> str:
    m = res["machine"]
    lines = [f"kgrec ingest into the {res['store']}, chunk_rows {res['chunk_rows']:,}; "
             f"{m['cpu_count']} CPUs, {m['memory_gib']} GiB, load average "
             f"{m['load_average_1m_at_start']:.1f} at start (shared machine)",
             f"{'events':>10}{'wall s':>9}{'ingest s':>10}{'events/s':>11}{'peak RSS MB':>13}"
             f"{'lost':>6}"
             f"{'first 10%/s':>13}{'last 10%/s':>12}"]
    for r in res["runs"] + res["whole_file_reference"]:
        if r["chunk_rows"] == r["events"]:
            lines.append("same events as one chunk (whole-file read, the memory profile "
                         "before streaming):")
        lines.append(f"{r['events']:>10,}{r['wall_s']:>9.1f}{r['elapsed_s_summary']:>10.1f}"
                     f"{r['events_per_s']:>11,.0f}"
                     f"{r['peak_rss_mb']:>13,.0f}{r['lost_rows']:>6}"
                     f"{r['first_10pct_events_per_s']:>13,.0f}"
                     f"{r['last_10pct_events_per_s']:>12,.0f}")
    if res["peak_rss_slope_mb_per_million_events"] is not None:
        lines.append(f"peak RSS slope: {res['peak_rss_slope_mb_per_million_events']:+.1f} MB "
                     "per million events")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    res = run(args)
    print(table(res))
    print(f"results: {write_json(Path(args.out), res)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
