"""``kgrec run`` and ``kgrec demo``: the main job end to end as one resumable run
(:class:`kgrec.run.Pipeline`), with a report at the end."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from kgrec.config import Config, cli_config
from kgrec.settings import RUN_STAGES

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "data" / "ml100k.toml"


def register(sub: argparse._SubParsersAction) -> None:
    stages = " -> ".join(RUN_STAGES)
    r = sub.add_parser(
        "run",
        help="the main job end to end, resumable, with an HTML/Markdown report",
        description=(
            f"Run {stages} on the catalogue named by [source], into [run] workdir. A "
            "stage whose settings and inputs did not change since its last run is reused "
            "(keyed by content hashes), so a second run redoes only what changed. When "
            "events were appended to the dump since, each model trains from the previous "
            "run's parameters, matched on ids (run.warm_start; --force train starts from "
            "scratch), and the fusion is fitted again on the new validation window. The "
            "report (WORKDIR/report/report.html and .md) compares popularity, the "
            "baselines, the GNN, the text alone and the fusion on the overall, long-tail, "
            "cold-start and tail-candidate slices."),
        epilog="Example: kgrec run data/scientific.toml --set train.model=gcn",
    )
    r.add_argument("run_config", nargs="?", metavar="CONFIG",
                   help="TOML settings of the run (same as the global --config)")
    _options(r)
    r.set_defaults(func=run_pipeline)

    d = sub.add_parser(
        "demo",
        help="`kgrec run` on MovieLens-100K + KG with the embedded store (data/ml100k.toml)",
        description=("The main job on MovieLens-100K with its knowledge graph (the "
                     "recbole==1.2.1 wheel, fetched once and cached), in the embedded store: "
                     "exactly `kgrec run data/ml100k.toml`."),
    )
    _options(d)
    d.set_defaults(func=run_demo)


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="append", default=[], choices=RUN_STAGES, metavar="STAGE",
                   help="rerun this stage and those after it (repeatable; "
                   f"{', '.join(RUN_STAGES)}); a forced train starts from scratch")
    p.add_argument("--workdir", help="output folder (default: run.workdir)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run_pipeline(args: argparse.Namespace) -> int:
    if getattr(args, "run_config", None):
        args.config = args.run_config
    config = cli_config(args)
    return _run(config, args)


def run_demo(args: argparse.Namespace) -> int:
    args.config = args.config or str(DEMO_CONFIG)
    return _run(cli_config(args), args)


def _highlights(config: Config) -> str:
    """The lines a user reads first: each model's NDCG on the overall and tail-candidate
    rankings, and one user's first recommendations with titles."""
    import json

    import pandas as pd

    work = Path(config.run.workdir)
    k = config.train.k
    table = json.loads((work / "evaluation.json").read_text())
    lines = [f"{'model':<16}{'overall NDCG@' + str(k):>20}{'tail candidates':>18}"]
    lines += [f"{name:<16}{rows['overall'][f'ndcg@{k}']:>20.4f}"
              f"{rows['tail_candidates'][f'ndcg@{k}']:>18.4f}" for name, rows in table.items()]
    recs = pd.read_parquet(work / "recommendations.parquet")
    if len(recs):
        user = recs["user_id"].iloc[0]
        lines += ["", f"{config.run.items} recommendations for user {user}:"]
        lines += [f"  {r.rank:>2}. {r.title or r.product_id}  (score {r.score:.2f})"
                  for r in recs[recs["user_id"] == user].head(5).itertuples()]
    return "\n".join(lines)


def _run(config: Config, args: argparse.Namespace) -> int:
    if args.workdir:
        config.run.workdir = args.workdir
    start = time.perf_counter()
    from kgrec.run import Pipeline

    result = Pipeline(config, force=args.force, progress=not args.no_progress).run()
    report = Path(result.stages["report"].outputs["html"])
    print()
    print(result.summary())
    print()
    print(_highlights(config))
    print(f"\nRun done in {time.perf_counter() - start:.0f}s "
          f"({len(result.reused)} of {len(result.stages)} stages reused). "
          f"Report: {report} (Markdown: {report.with_suffix('.md')}); everything in "
          f"{config.run.workdir}.")
    return 0
