"""Incremental runs: `kgrec run` after a dump of new events is appended, warm-started from the
previous run, against a full retrain on the same data.

Amazon Industrial & Scientific (a list of products per user, in time order) is cut in two:
the *appended* events are every event of a seeded ``--new-users`` share of the users (new
users, and the products only they bought: new products) and the latest event of as many other
users as make the appended share ``--share`` of all events; the *base* is the rest, each
user's list a prefix of the full one (so its positions, the events' timestamps, are kept).

1. `kgrec run` on the base, from an empty workdir (the previous day's run);
2. the full lists replace the base in the same dump folder (kgrec's ingest appends what is
   new and skips what it holds);
3. in each round, two copies of the base run's workdir run `kgrec run` again: one warm
   (`run.warm_start = true`, the default) and one from scratch (`run.warm_start = false`),
   one after the other, the order swapped every round; each is a process of its own.
   With ``--steps N`` the appended events arrive in N equal steps instead, each followed by a
   warm run in one workdir (``--out`` then names another file), and the last is compared
   with one full retrain.

Records each run's wall seconds, each stage's seconds, peak RSS, the test NDCG@20 of every
model and of the fused ranking, and the ratios warm / scratch (targets: time <= 0.3x,
NDCG@20 within 2%) in ``benchmarks/results/incremental.json``, beside one more run from
scratch under another training seed: how far NDCG@20 moves with the seed alone.

    .venv/bin/python benchmarks/incremental.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import (  # noqa: E402
    RESULTS,
    SHARED_DATA,
    command,
    machine,
    now,
    run_measured,
    write_json,
)

TIME_TARGET, NDCG_TOLERANCE = 0.3, 0.02
INTER, ITEMS = "Scientific.inter.json", "Scientific.item.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--data", type=Path, default=SHARED_DATA / "amazon-scientific",
                   help="the Scientific folder (%(default)s)")
    p.add_argument("--share", type=float, default=0.10,
                   help="appended events as a share of all events (%(default)s)")
    p.add_argument("--new-users", type=float, default=0.03,
                   help="share of users whose every event is appended (%(default)s)")
    p.add_argument("--rounds", type=int, default=2, help="warm/scratch pairs (%(default)s)")
    p.add_argument("--steps", type=int, default=1,
                   help="append the events in this many equal steps, each run warm from the "
                   "one before, then compare the last with one full retrain (%(default)s)")
    p.add_argument("--seed", type=int, default=2020, help="seed of the cut (%(default)s)")
    p.add_argument("--other-seed", type=int, default=2021,
                   help="train.seed of one more run from scratch: how far NDCG@20 moves with "
                   "the seed alone, the yardstick of the warm run's change (%(default)s)")
    p.add_argument("--workdir", type=Path, default=ROOT / ".kgrec" / "bench" / "incremental",
                   help="emptied first")
    p.add_argument("--out", type=Path, default=RESULTS / "incremental.json")
    return p.parse_args(argv)


def cut(lists: dict[str, list], share: float, new_users: float, seed: int
        ) -> tuple[list[str], list[str], dict[str, int]]:
    """The users whose every event is appended, those whose latest event is, in a seeded
    order, and the counts of what the full lists append to the base (:func:`lists_at`)."""
    rng = np.random.default_rng(seed)
    users = sorted(lists, key=int)
    total = sum(len(v) for v in lists.values())
    new = rng.choice(users, size=round(new_users * len(users)), replace=False).tolist()
    appended = sum(len(lists[u]) for u in new)
    others = [u for u in rng.permutation(users).tolist() if u not in set(new)]
    latest = others[:max(0, round(share * total) - appended)]
    base = lists_at(lists, new, latest, 0.0)
    counts = {"events": total, "appended_events": appended + len(latest),
              "new_users": len(new), "users_with_a_new_latest_event": len(latest)}
    counts["new_products"] = len({i for u in new for i in lists[u]}
                                 - {i for v in base.values() for i in v})
    return new, latest, counts


def lists_at(lists: dict[str, list], new: list[str], latest: list[str], done: float
             ) -> dict[str, list]:
    """The lists once the share ``done`` of the appended users (of each kind, in order) has
    arrived: 0 gives the base (each list a prefix of the full one), 1 the full lists."""
    held_new = set(new[round(done * len(new)):])
    held_latest = set(latest[round(done * len(latest)):])
    return {u: items[:-1] if u in held_latest else items
            for u, items in lists.items() if u not in held_new}


def kgrec_run(work: Path, dump: Path, *sets: str) -> dict:
    kgrec = Path(sys.executable).parent / "kgrec"
    cmd = [str(kgrec), "run", str(ROOT / "data" / "scientific.toml"), "--no-progress",
           "--set", f"source.path={dump}", "--set", f"run.workdir={work}",
           "--set", f"store.path={work / 'store'}",
           "--set", f"fusion.cache_dir={work.parent / 'text-cache'}",
           *[x for s in sets for x in ("--set", s)]]
    measured = run_measured(cmd, ROOT)
    state = json.loads((work / "state.json").read_text())
    table = json.loads((work / "evaluation.json").read_text())
    settings = json.loads((work / "runs" / "gat" / "settings.json").read_text())
    gat_epochs = len(json.loads((work / "runs" / "gat" / "history.json").read_text()))
    return {"wall_s": round(measured["wall_s"], 1), "peak_rss_mb": round(measured["peak_rss_mb"]),
            "stages_s": {n: round(r["seconds"], 1) for n, r in state.items()},
            "test_ndcg@20": {m: round(t["overall"]["ndcg@20"], 4) for m, t in table.items()},
            "gat_epochs": gat_epochs, "gat_best_epoch": settings["best_epoch"],
            "gat_warm_start": settings["applied"].get("warm_start", {}).get("matched")}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    shutil.rmtree(args.workdir, ignore_errors=True)
    dump = args.workdir / "dump"
    dump.mkdir(parents=True)
    full_text = (args.data / INTER).read_text()
    full = json.loads(full_text)
    new, latest, counts = cut(full, args.share, args.new_users, args.seed)
    shutil.copy(args.data / ITEMS, dump / ITEMS)
    (dump / INTER).write_text(json.dumps(lists_at(full, new, latest, 0.0)))
    print(f"base run: {counts['events'] - counts['appended_events']:,} events; appended "
          f"later: {counts}", flush=True)
    previous = args.workdir / "previous"
    base_run = kgrec_run(previous, dump)
    if args.steps > 1:
        steps = chain(args, previous, dump, full, new, latest)
        (dump / INTER).write_text(full_text)
        work = args.workdir / "scratch"
        shutil.copytree(previous, work)
        scratch = kgrec_run(work, dump, "run.warm_start=false")
        payload = {"date": now(), "command": command(), "machine": machine(),
                   "load_average_1m_at_end": round(os.getloadavg()[0], 2),
                   "cut": counts | {"share": args.share, "new_users_share": args.new_users,
                                    "seed": args.seed, "steps": args.steps},
                   "base_run": base_run, "warm_steps": steps, "scratch": scratch}
        print(f"steps: {[s['wall_s'] for s in steps]} s; scratch {scratch['wall_s']} s; test "
              f"NDCG@20 after the last step {steps[-1]['test_ndcg@20']}, scratch "
              f"{scratch['test_ndcg@20']}")
        print(f"saved {write_json(args.out, payload)}")
        return
    (dump / INTER).write_text(full_text)
    runs: dict[str, list[dict]] = {"warm": [], "scratch": []}
    for round_ in range(args.rounds):
        order = ["warm", "scratch"] if round_ % 2 == 0 else ["scratch", "warm"]
        for kind in order:
            work = args.workdir / f"{kind}-{round_}"
            shutil.copytree(previous, work)
            sets = () if kind == "warm" else ("run.warm_start=false",)
            runs[kind].append(kgrec_run(work, dump, *sets))
            print(f"round {round_ + 1} {kind}: {runs[kind][-1]['wall_s']} s, test NDCG@20 "
                  f"{runs[kind][-1]['test_ndcg@20']}", flush=True)
            shutil.rmtree(work)
    work = args.workdir / "scratch-other-seed"
    shutil.copytree(previous, work)
    other = kgrec_run(work, dump, "run.warm_start=false", f"train.seed={args.other_seed}")
    summary = summarise(runs)
    summary["seed_change"] = {m: round(v / summary["ndcg@20"]["scratch"][m] - 1, 4)
                              for m, v in other["test_ndcg@20"].items()
                              if summary["ndcg@20"]["scratch"].get(m)}
    payload = {"date": now(), "command": command(), "machine": machine(),
               "load_average_1m_at_end": round(os.getloadavg()[0], 2),
               "cut": counts | {"share": args.share, "new_users_share": args.new_users,
                                "seed": args.seed},
               "base_run": base_run, "runs": runs,
               f"scratch_seed_{args.other_seed}": other, "summary": summary}
    print(table(summary))
    print(f"saved {write_json(args.out, payload)}")


def chain(args: argparse.Namespace, previous: Path, dump: Path, full: dict, new: list[str],
          latest: list[str]) -> list[dict]:
    """``args.steps`` warm runs, each after its share of the appended events, one after the
    other in one workdir (each starting from the run before)."""
    work = args.workdir / "chain"
    shutil.copytree(previous, work)
    steps = []
    for step in range(1, args.steps + 1):
        (dump / INTER).write_text(json.dumps(lists_at(full, new, latest, step / args.steps)))
        steps.append(kgrec_run(work, dump))
        print(f"step {step}: {steps[-1]['wall_s']} s, test NDCG@20 "
              f"{steps[-1]['test_ndcg@20']}", flush=True)
    return steps


def summarise(runs: dict[str, list[dict]]) -> dict:
    """Medians of the wall and train-stage seconds, the NDCG@20 of each row (the same in
    every round: results depend on the seed, not the clock) and the ratios warm / scratch."""
    def median(kind: str, pick) -> float:
        return float(np.median([pick(r) for r in runs[kind]]))

    def train_s(run: dict) -> float:
        return sum(s for n, s in run["stages_s"].items() if n.startswith("train:"))

    out = {"wall_s": {k: median(k, lambda r: r["wall_s"]) for k in runs},
           "train_s": {k: median(k, train_s) for k in runs},
           "ndcg@20": {k: runs[k][0]["test_ndcg@20"] for k in runs}}
    out["wall_ratio"] = round(out["wall_s"]["warm"] / out["wall_s"]["scratch"], 3)
    out["train_ratio"] = round(out["train_s"]["warm"] / out["train_s"]["scratch"], 3)
    out["ndcg_change"] = {m: round(v / out["ndcg@20"]["scratch"][m] - 1, 4)
                          for m, v in out["ndcg@20"]["warm"].items()
                          if out["ndcg@20"]["scratch"].get(m)}
    out["targets"] = {"wall_ratio <= 0.3": out["wall_ratio"] <= TIME_TARGET,
                      "gat+fusion ndcg within 2%":
                          abs(out["ndcg_change"].get("gat+fusion", 1)) <= NDCG_TOLERANCE}
    return out


def table(summary: dict) -> str:
    lines = [f"{'':<22}{'warm':>10}{'scratch':>10}{'warm/scratch':>14}",
             f"{'wall s (median)':<22}{summary['wall_s']['warm']:>10.1f}"
             f"{summary['wall_s']['scratch']:>10.1f}{summary['wall_ratio']:>14.3f}",
             f"{'train stages s':<22}{summary['train_s']['warm']:>10.1f}"
             f"{summary['train_s']['scratch']:>10.1f}{summary['train_ratio']:>14.3f}"]
    lines[0] += f"{'other seed/scratch':>20}"
    for model, change in summary["ndcg_change"].items():
        lines.append(f"{'NDCG@20 ' + model:<22}{summary['ndcg@20']['warm'][model]:>10.4f}"
                     f"{summary['ndcg@20']['scratch'][model]:>10.4f}{1 + change:>14.3f}"
                     f"{1 + summary['seed_change'].get(model, 0):>20.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
