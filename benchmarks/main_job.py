"""The main job end to end at scale: ``kgrec run`` with its defaults (the GAT, the popularity
and MF baselines, the text fusion, evaluation, long-tail scoring, the report) on the
embedded store, over a synthetic catalogue of ``--events`` events (the generator of
``benchmarks/scale.py``: Amazon Scientific's degrees, activity and text lengths, words drawn
from its vocabulary, so the text costs what real text costs and says little).

Records the wall time, each stage's seconds (the run's ``state.json``), the peak RSS of the
run, the GAT's epochs and how its training ended, the test metrics of the report, the
threads and the load average before and after, in ``benchmarks/results/main_job_<size>.json``,
and prints the stage table. Target (issue 21): 1M events in at most 45 minutes on 2 cores.

    .venv/bin/python benchmarks/main_job.py --events 1000000

``--collect TIME_FILE`` reads a run that was started by hand with the command this script
prints (``/usr/bin/time -v`` around it, its report in TIME_FILE) instead of running it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import RESULTS, command, machine, now, run_measured, write_json  # noqa: E402
from benchmarks.scale import write_catalogue  # noqa: E402

BENCH = ROOT / ".kgrec" / "bench"
TARGET_MINUTES = {1_000_000: 45}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000, help="synthetic events (1000000)")
    p.add_argument("--seed", type=int, default=0, help="catalogue generator seed (0)")
    p.add_argument("--workdir", type=Path, help="run folder (default .kgrec/bench/run<size>)")
    p.add_argument("--collect", type=Path, metavar="TIME_FILE",
                   help="read the finished run in --workdir and its `/usr/bin/time -v` report")
    p.add_argument("--note", default="", help="a line kept with the figures (how the run went)")
    p.add_argument("--out", type=Path, help="results JSON (default main_job_<size>.json)")
    return p.parse_args(argv)


def size_name(events: int) -> str:
    return f"{events // 1_000_000}m" if events % 1_000_000 == 0 else f"{events // 1000}k"


def config_file(folder: Path, products: Path, events: Path) -> Path:
    """The run's TOML: the synthetic dump and a store and workdir of its own, defaults else."""
    toml = folder / "run.toml"
    toml.write_text(
        "[source]\nkind = \"generic\"\n"
        f"products = \"{products}\"\nevents = \"{events}\"\n"
        "map = [\"options.category_separator=,\", \"options.event_type=purchase\"]\n"
        f"[store]\nbackend = \"local\"\npath = \"{folder / 'store'}\"\n"
        f"[run]\nworkdir = \"{folder / 'work'}\"\n"
        # A text cache of the run's own: a fresh folder encodes every product, as a first run does.
        f"[fusion]\ncache_dir = \"{folder / 'text-cache'}\"\n")
    return toml


def read_time_file(path: Path) -> dict[str, Any]:
    """Wall seconds and peak RSS from ``/usr/bin/time -v``'s report."""
    text = path.read_text()
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", text)
    assert wall, f"no wall time in {path}"
    hours, minutes, seconds = (float(g) if g else 0.0 for g in wall.groups())
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    assert rss, f"no peak RSS in {path}"
    return {"wall_s": 3600 * hours + 60 * minutes + seconds,
            "peak_rss_mb": int(rss.group(1)) / 1024}


def run_figures(work: Path) -> dict[str, Any]:
    """Stage seconds, the GAT's training and the test metrics of a finished run."""
    state = json.loads((work / "state.json").read_text())
    gat = json.loads((work / "runs" / "gat" / "settings.json").read_text())
    table = json.loads((work / "evaluation.json").read_text())
    history = json.loads((work / "runs" / "gat" / "history.json").read_text()) \
        if (work / "runs" / "gat" / "history.json").exists() else []
    stages = {name: round(rec["seconds"], 1) for name, rec in state.items()}
    return {
        "stages_s": stages,
        # Runs from before the encode stage encoded the text inside the GAT's train stage.
        "train_gat_outside_training_s": round(stages["train:gat"] - gat["seconds"], 1),
        "gat": {"best_epoch": gat["best_epoch"], "stop_reason": gat["stop_reason"],
                "training_s": round(gat["seconds"], 1), "epochs": len(history) or None,
                "applied": gat.get("applied", {})},
        "test_ndcg@20": {row: round(t["overall"]["ndcg@20"], 4) for row, t in table.items()},
        "test_tail_candidates_ndcg@20": {row: round(t["tail_candidates"]["ndcg@20"], 4)
                                         for row, t in table.items()
                                         if "tail_candidates" in t},
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    size = size_name(args.events)
    folder = args.workdir or BENCH / f"run{size}"
    if (folder / "work").exists() and not args.collect:
        raise SystemExit(f"{folder} holds an earlier run, whose stages would be reused: "
                         "give a fresh --workdir")
    folder.mkdir(parents=True, exist_ok=True)
    data = BENCH / f"synthetic-{size}"
    products, events = data / f"products-{args.events}.csv", data / f"events-{args.events}.csv"
    if not events.exists():
        data.mkdir(parents=True, exist_ok=True)
        products, events, _ = write_catalogue(data, args.events, seed=args.seed)
    toml = config_file(folder, products, events)
    run_cmd = [sys.executable, "-m", "kgrec.cli", "run", str(toml), "--no-progress"]
    info = machine()
    if args.collect:
        measured = read_time_file(args.collect)
        measured["command"] = "/usr/bin/time -v " + " ".join(run_cmd)
    else:
        print("running:", " ".join(run_cmd), flush=True)
        measured = run_measured(run_cmd, cwd=ROOT)
        measured["command"] = " ".join(run_cmd)
    figures = run_figures(folder / "work")
    target = TARGET_MINUTES.get(args.events)
    result = {
        "benchmark": "main_job", "events": args.events, "date": now(), "command": command(),
        "note": args.note,
        "machine": info, "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "run": measured, **figures,
        "wall_minutes": round(measured["wall_s"] / 60, 1), "target_minutes": target,
        "meets_target": None if target is None else measured["wall_s"] <= 60 * target,
    }
    out = args.out or RESULTS / f"main_job_{size}.json"
    write_json(out, result)
    print(f"{'stage':<16}{'seconds':>9}")
    for name, seconds in figures["stages_s"].items():
        print(f"{name:<16}{seconds:>9.1f}")
    print(f"{'whole run':<16}{measured['wall_s']:>9.1f}  ({result['wall_minutes']} min, peak RSS "
          f"{measured['peak_rss_mb']:,.0f} MB; target {target} min)")
    print(f"test NDCG@20: {figures['test_ndcg@20']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
