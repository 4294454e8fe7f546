"""Wall time of the main job: `make demo`'s run (``data/ml100k.toml``) from an empty workdir,
then once more unchanged (every stage reused).

Records the wall seconds of both runs, each stage's seconds, peak RSS, the metrics table
the run's report shows, the command, machine and date in
``benchmarks/results/pipeline.json`` (target: the first run within 150 s on 2 CPU cores,
every model stopping by early stopping), and the report as a browser renders it in
``benchmarks/results/pipeline_report.png``. ``--busy`` runs the job once more from scratch
while other processes keep every CPU busy and records whether its metrics equal the quiet
run's to 4 decimals and whether the report names the same best model (no result may
depend on the clock). The busy run is a process of its own, started once the other processes
spin, as a user's ``kgrec run`` on a busy machine would be.

    .venv/bin/python benchmarks/pipeline.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import RESULTS, command, machine, now, write_json  # noqa: E402
from kgrec.config import load_config  # noqa: E402
from kgrec.pipeline import DEMO_CONFIG  # noqa: E402
from kgrec.report import render_png  # noqa: E402
from kgrec.run import Pipeline  # noqa: E402

TARGET_S = 150


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--config", type=Path, default=DEMO_CONFIG,
                   help="run settings (default: the demo's data/ml100k.toml)")
    p.add_argument("--workdir", type=Path, default=ROOT / ".kgrec" / "bench" / "pipeline",
                   help="emptied first; the store, text cache and run go there")
    p.add_argument("--out", type=Path, default=RESULTS / "pipeline.json",
                   help="results JSON; the report's picture goes beside it as *_report.png")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="a setting over the config, as kgrec's --set (repeatable)")
    p.add_argument("--busy", action="store_true",
                   help="also run from scratch beside 2 x CPUs busy processes and compare")
    p.add_argument("--one-run", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _timed_run(config) -> tuple[float, dict]:
    start = time.perf_counter()
    result = Pipeline(config, progress=False).run()
    wall = time.perf_counter() - start
    stages = {name: {"seconds": round(rec.seconds, 1), "reused": rec.reused}
              for name, rec in result.stages.items()}
    return wall, stages


def _config(args: argparse.Namespace, workdir: Path):
    shutil.rmtree(workdir, ignore_errors=True)
    config = load_config(args.config, env={}, sets=args.set)
    config.run.workdir = str(workdir / "run")
    config.store.path = str(workdir / "store")
    config.fusion.cache_dir = str(workdir / "text-cache")  # a cold text cache too
    return config


def _stops(workdir: Path) -> dict[str, str]:
    return {p.parent.name: json.loads(p.read_text())["stop_reason"]
            for p in sorted((workdir / "run" / "runs").glob("*/settings.json"))}


def _rounded(table: dict) -> dict:
    return {m: {s: {k: round(v, 4) for k, v in row.items()} for s, row in rows.items()}
            for m, rows in table.items()}


def busy_run(args: argparse.Namespace, quiet: dict, k: int) -> dict:
    """The job from scratch while 2 x CPUs processes spin: its metrics against the quiet run's."""
    workdir = args.workdir.with_name(args.workdir.name + "-busy")
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in range(2 * (os.cpu_count() or 1))]
    try:
        time.sleep(5)
        load = os.getloadavg()[0]
        out = subprocess.run([sys.executable, __file__, "--one-run", "--config", str(args.config),
                              "--workdir", str(workdir),
                              *(f"--set={s}" for s in args.set)], capture_output=True, text=True)
        load_end = os.getloadavg()[0]
    finally:
        for b in burners:
            b.kill()
            b.wait()
    if out.returncode:
        raise SystemExit(f"the busy run failed:\n{out.stderr[-3000:]}")
    child = json.loads(out.stdout.strip().splitlines()[-1])
    table = json.loads((workdir / "run" / "evaluation.json").read_text())

    def best(t: dict) -> str:
        return max(t, key=lambda m: t[m]["overall"][f"ndcg@{k}"])

    return {"wall_s": child["wall_s"], "burners": len(burners),
            "omp_wait_policy": child["omp_wait_policy"],
            "load_avg_1m": [round(load, 2), round(load_end, 2)],
            "metrics_equal_to_4_decimals": _rounded(table) == _rounded(quiet),
            "best_model": best(table), "same_best_model": best(table) == best(quiet),
            "stop_reasons": _stops(workdir)}


def one_run(args: argparse.Namespace) -> int:
    """The job once into an emptied ``--workdir`` (the busy run's own process)."""
    wall, _ = _timed_run(_config(args, args.workdir))
    print(json.dumps({"wall_s": round(wall, 1),
                      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default")}))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out = args.out.resolve()
    if args.one_run:
        return one_run(args)
    config = _config(args, args.workdir)
    host = machine()
    first_s, stages = _timed_run(config)
    second_s, again = _timed_run(config)
    table = json.loads((args.workdir / "run" / "evaluation.json").read_text())
    k = config.train.k
    payload = {
        "wall_s": round(first_s, 1), "target_s": TARGET_S, "met": first_s <= TARGET_S,
        "stop_reasons": _stops(args.workdir),
        "rerun_wall_s": round(second_s, 1),
        "rerun_reused": [name for name, s in again.items() if s["reused"]],
        "stages": stages,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "metrics": {model: {name: {f"ndcg@{k}": rows[name][f"ndcg@{k}"],
                                   f"recall@{k}": rows[name][f"recall@{k}"]}
                            for name in rows} for model, rows in table.items()},
        "config": str(args.config.relative_to(ROOT)) if args.config.is_relative_to(ROOT)
        else str(args.config),
        "sets": args.set,
        "command": command(), "machine": host, "date": now(),
    }
    png = render_png(args.workdir / "run" / "report" / "report.html",
                     args.out.with_name(f"{args.out.stem}_report.png"))
    payload["report_png"] = str(png.relative_to(ROOT))
    write_json(args.out, payload)
    if args.busy:
        payload["busy"] = busy_run(args, table, k)
        write_json(args.out, payload)
        print(f"busy machine: {payload['busy']}")
    print(f"\n{'stage':<14}{'seconds':>9}")
    for name, s in stages.items():
        print(f"{name:<14}{s['seconds']:>9.1f}")
    print(f"{'total':<14}{first_s:>9.1f}   (target {TARGET_S} s: "
          f"{'met' if payload['met'] else 'missed'}); unchanged rerun {second_s:.1f} s, "
          f"{len(payload['rerun_reused'])} of {len(again)} stages reused")
    print(f"\n{'model':<14}" + "".join(f"{s:>17}" for s in next(iter(table.values()))))
    for model, rows in table.items():
        print(f"{model:<14}" + "".join(f"{rows[s][f'ndcg@{k}']:>17.4f}" for s in rows))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
