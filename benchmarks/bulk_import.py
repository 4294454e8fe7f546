"""Bulk-import benchmark: MovieLens-100K + its KG into an empty Neo4j with Neo4j's own
importer (``kgrec ingest --bulk``'s path, :class:`kgrec.kg.store.bulk.BulkStore`).

Times each stage (CSV export, ``neo4j-admin database import full``, server start,
constraints, count check) into a temporary NEO4J_HOME with a private server (port
``--port``, stopped at the end); ``events_per_s`` divides the 100,000 RATED events by the
importer's wall time (JVM start included), ``importer_reported_s`` is the importer's own
"IMPORT DONE in" figure. Writes ``benchmarks/results/bulk_import.json``.

    .venv/bin/python benchmarks/bulk_import.py [--port 7899] [--scale 1] [--out PATH]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS, command, machine, now, write_json  # noqa: E402
from kgrec.kg import schema  # noqa: E402
from kgrec.kg.extract.recbole import read_recbole_ml100k  # noqa: E402
from kgrec.kg.store.bulk import SCRIPTS, BulkStore  # noqa: E402
from kgrec.kg.tables import GraphTables  # noqa: E402
from kgrec.settings import Neo4jConfig  # noqa: E402


def importer_seconds(log: Path) -> float | None:
    """The importer's own total from its log ("IMPORT DONE in 19s 247ms.")."""
    found = re.search(r"IMPORT DONE in (?:(\d+)m )?(?:(\d+)s )?(\d+)ms", log.read_text())
    if not found:
        return None
    minutes, seconds, millis = (int(g or 0) for g in found.groups())
    return 60 * minutes + seconds + millis / 1000


def scaled(tables: GraphTables, times: int) -> GraphTables:
    """``tables`` with each RATED event repeated ``times`` times (new timestamps: new events)."""
    rated = tables.rel(schema.RATED)
    span = int(rated["timestamp"].max() - rated["timestamp"].min()) + 1
    copies = [rated.assign(timestamp=rated["timestamp"] + i * span) for i in range(times)]
    events = pd.concat(copies, ignore_index=True)
    return GraphTables(nodes=tables.nodes, rels={**tables.rels, schema.RATED: events})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=7899, help="port of the temporary server (7899)")
    p.add_argument("--scale", type=int, default=1,
                   help="repeat the RATED events N times, timestamps shifted (a larger dump)")
    p.add_argument("--out", type=Path, help="results file (benchmarks/results/"
                   "bulk_import.json, or bulk_import_x<N>.json with --scale N)")
    args = p.parse_args()
    suffix = f"_x{args.scale}" if args.scale > 1 else ""
    args.out = args.out or RESULTS / f"bulk_import{suffix}.json"
    info = machine()
    tables = scaled(read_recbole_ml100k(), args.scale)
    with tempfile.TemporaryDirectory(prefix="kgrec-bulk-") as tmp:
        env = {"NEO4J_RUN_DIR": tmp, "NEO4J_AUTH": "off"}
        store = BulkStore(Neo4jConfig(uri=f"bolt://127.0.0.1:{args.port}"), f"{tmp}/home",
                          env=env)
        try:
            created = store.write(tables, progress=True)
            reported = importer_seconds(Path(tmp, "home", "bulk-import", "import.log"))
        finally:
            store.close()
            subprocess.run(["bash", str(SCRIPTS / "server.sh"), "stop"], check=False, env={
                **os.environ, **env, "NEO4J_HOME": f"{tmp}/home", "NEO4J_PORT": str(args.port)})
    rels = sum(n for name, n in created.items() if name in schema.RELATIONSHIPS)
    import_s = store.timings["import_s"]
    result = {
        "benchmark": "bulk_import",
        "dataset": "MovieLens-100K + KG (recbole==1.2.1 wheel, ml-100k atomic files)"
                   + (f", RATED events x{args.scale}" if args.scale > 1 else ""),
        "command": command(), "date": now(), "machine": info,
        "importer": "neo4j-admin database import full (Neo4j 5.26.30 Community, Maven Central "
                    "org.neo4j:neo4j-import-tool via org.neo4j:neo4j)",
        "counts": created, "stage_s": store.timings,
        "importer_reported_s": reported,
        "events_per_s": round(created[schema.RATED] / import_s),
        "relationships_per_s": round(rels / import_s),
        "end_to_end_s": round(sum(store.timings.values()), 3),
    }  # fmt: skip
    print(write_json(args.out, result))
    print({k: result[k] for k in ("stage_s", "importer_reported_s", "events_per_s")})


if __name__ == "__main__":
    main()
