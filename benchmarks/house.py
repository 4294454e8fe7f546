"""The house's shape in numbers: long files and functions, import circles, back arrows,
deferred imports and the wall time of ``kgrec --help``, for this tree and (``--before
REV``) a revision beside it; saves benchmarks/results/house.json.

    .venv/bin/python benchmarks/house.py --before 33e5782 [--demo]

``--demo`` also runs ``kgrec run data/ml100k.toml`` (the demo) at both revisions, one after
the other, and compares their recommendations and evaluation tables. ``--tiers fast,full``
times this tree's test tiers (``make test-fast``'s selection, and every test), one after the
other; the results file keeps the other keys of an earlier run.

Layers, lowest first: ``kgrec.kg`` (graph data), ``kgrec.gnn`` (models),
``kgrec.fusion`` (blend and serving), then the ``kgrec`` root (settings, API,
CLI). The root's ``errors``, ``files``, ``ids`` and ``settings`` are shared
utilities below every layer. An import from a lower layer into a higher one is
a back arrow. Circles are strongly connected groups of modules in the graph of
imports made when a module loads; ``circles_with_deferred`` also follows the imports
inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    RESULTS,
    ROOT,
    command,
    machine,
    now,
    worktree,
    write_json,
)

PACKAGES = {"kgrec.kg": "kg", "kgrec.gnn": "gnn", "kgrec.fusion": "fusion", "kgrec": "kgrec"}
LAYERS = {"kgrec.kg": 1, "kgrec.gnn": 2, "kgrec.fusion": 3, "kgrec": 4}
SHARED = {"kgrec.errors", "kgrec.files", "kgrec.ids", "kgrec.settings"}
#: Modules `kgrec --help` must not load (they take seconds).
HEAVY = ("torch", "torch_geometric", "transformers", "pandas", "numpy", "neo4j", "pyspark")
LONG_FILE, LONG_FUNCTION = 400, 60


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package, by its import name."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted((root / folder).rglob("*.py")):
            if folder == "kgrec" and path.relative_to(root / folder).parts[0] in PACKAGES.values():
                continue  # a benchmark worktree links gnn, kg and fusion under kgrec/
            parts = list(path.relative_to(root / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def layer(module: str) -> int:
    if module in SHARED:
        return 0
    for package in ("kgrec.kg", "kgrec.gnn", "kgrec.fusion"):
        if module == package or module.startswith(package + "."):
            return LAYERS[package]
    return LAYERS["kgrec"]


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def imports(path: Path, known: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(imports made at load time, imports deferred into functions or TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    at_load: set[str] = set()
    deferred: set[str] = set()

    def visit(node: ast.AST, late: bool) -> None:
        for child in ast.iter_child_nodes(node):
            child_late = late or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) or (
                isinstance(child, ast.If) and _type_checking(child))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                names = [f"{child.module}.{alias.name}" for alias in child.names]
            for name in names:
                target = _resolve(name, known) if name.startswith("kgrec") else None
                if target:
                    (deferred if child_late else at_load).add(target)
            visit(child, child_late)

    visit(tree, False)
    return at_load, deferred


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def long_functions(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text())
    return [(f"{node.name}:{node.lineno}", node.end_lineno - node.lineno + 1)
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > LONG_FUNCTION]


def measure(root: Path) -> dict:
    known = modules(root)
    graph, wider, back, deferred_count, load_count = {}, {}, [], 0, 0
    for module, path in known.items():
        at_load, deferred = imports(path, known)
        # a package's __init__ re-exporting its children is not an arrow of the design
        own = {m for m in at_load | deferred if _is_package(path) and m.startswith(module + ".")}
        graph[module] = at_load - own
        wider[module] = (at_load | deferred) - own
        load_count += len(at_load)
        deferred_count += len(deferred - at_load)
        back += [f"{module} -> {t}" for t in wider[module] if layer(t) > layer(module)]
    rel = {m: str(p.relative_to(root)) for m, p in known.items()}
    lines = {rel[m]: len(p.read_text().splitlines()) for m, p in known.items()}
    return {
        "files_over_400_lines": {f: n for f, n in sorted(lines.items(), key=lambda x: -x[1])
                                 if n > LONG_FILE},
        "functions_over_60_lines": {f"{rel[m]}:{name}": n for m, p in known.items()
                                    for name, n in long_functions(p)},
        "import_circles": circles(graph),
        "circles_with_deferred": circles(wider),
        "back_arrows": sorted(back),
        "internal_imports_at_load": load_count,
        "internal_imports_deferred": deferred_count,
    }


HELP = "import sys; from kgrec.cli import main; sys.argv = ['kgrec', '--help']; main()"


def help_seconds(trees: dict[str, Path], runs: int) -> dict[str, float]:
    """Median wall time of ``kgrec --help`` per tree, the trees interleaved run by run."""
    times: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(runs):
        for name, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": str(tree)} if tree != ROOT else dict(os.environ)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", HELP], cwd=tree, env=env, check=True,
                           capture_output=True)
            times[name].append(time.perf_counter() - t0)
    return {name: round(statistics.median(t), 3) for name, t in times.items()}


def demo_run(tree: Path, out: Path) -> float:
    """``kgrec run data/ml100k.toml`` at ``tree`` into ``out``; returns its wall seconds."""
    env = {**os.environ, "PYTHONPATH": str(tree)} if tree != ROOT else dict(os.environ)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "kgrec.cli", "run", "data/ml100k.toml",
                    "--workdir", str(out), "--set", f"store.path={out / 'store'}",
                    "--no-progress"], cwd=tree, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def same_demo(before: Path, after: Path) -> dict:
    """How far the two runs' recommendations and evaluation figures differ."""
    import pandas as pd

    key = ["user_id", "rank"]
    a, b = (pd.read_parquet(d / "recommendations.parquet").sort_values(key).reset_index(drop=True)
            for d in (before, after))
    evals = [json.loads((d / "evaluation.json").read_text()) for d in (before, after)]
    figures = [dict(_numbers(e)) for e in evals]
    diffs = [abs(figures[0][k] - figures[1][k]) for k in figures[0].keys() & figures[1].keys()]
    return {
        "rows": [len(a), len(b)],
        "same_products_and_ranks": bool(len(a) == len(b) and (
            a[[*key, "product_id"]] == b[[*key, "product_id"]]).all().all()),
        "max_score_difference": float(max(
            (a[c] - b[c]).abs().max() for c in ("score", "score_gnn", "score_text"))),
        "evaluation_figures": [len(f) for f in figures],
        "max_evaluation_difference": max(diffs, default=float("nan")),
    }


def _numbers(value, prefix: str = ""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{prefix}/{k}")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield prefix, float(value)


#: pytest's -m selection of each tier (the Makefile's FAST; "" runs every test).
TIERS = {"fast": "not neo4j and not notebook and not spark and not slow", "full": ""}


def tier_seconds(tier: str) -> dict:
    """Wall time of one test tier in this tree, and pytest's own summary line."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    cmd += ["-m", TIERS[tier]] if TIERS[tier] else []
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    return {"wall_s": round(seconds, 1), "exit_code": done.returncode, "summary": summary,
            "load_average_1m_after": round(os.getloadavg()[0], 2)}


def show(name: str, result: dict) -> None:
    print(f"== {name}")
    for key, value in result.items():
        count = value if isinstance(value, int | float) else len(value)
        print(f"{key:28} {count}")
        if isinstance(value, dict):
            for item, n in value.items():
                print(f"    {n:5}  {item}")
        elif isinstance(value, list):
            for item in value:
                print(f"    {' <-> '.join(item) if isinstance(item, list) else item}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", metavar="REV", help="a revision measured beside this tree")
    parser.add_argument("--runs", type=int, default=5, help="timed `kgrec --help` runs (5)")
    parser.add_argument("--demo", action="store_true",
                        help="also run the demo config at both revisions and compare")
    parser.add_argument("--tiers", default="",
                        help="comma-separated test tiers to time in this tree (fast, full)")
    args = parser.parse_args()
    trees = {"after": ROOT}
    if args.before:
        trees = {"before": worktree(args.before), **trees}
    results = {name: measure(tree) for name, tree in trees.items()}
    for name, seconds in help_seconds(trees, args.runs).items():
        results[name]["kgrec_help_seconds"] = seconds
    for name, result in results.items():
        show(name, result)
    path = RESULTS / "house.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    # Keep what this call does not measure again (an earlier --before, --demo, tier or a
    # figure added by hand, such as test_modules_ab).
    remeasured = {"commands", "date", "machine", "after"} | (
        {"before", "before_rev"} if args.before else set())
    extra = {k: v for k, v in previous.items() if k not in remeasured}
    commands = [c for c in previous.get("commands", []) if c != command()] + [command()]
    for tier in filter(None, args.tiers.split(",")):
        extra.setdefault("tests", {})[tier] = tier_seconds(tier)
        print(f"tests {tier}:", json.dumps(extra["tests"][tier]))
    if args.demo and args.before:
        work = ROOT / ".kgrec" / "bench" / "house-demo"
        shutil.rmtree(work, ignore_errors=True)
        seconds = {name: round(demo_run(tree, work / name), 1) for name, tree in trees.items()}
        extra["demo"] = {"config": "data/ml100k.toml", "seconds": seconds,
                         **same_demo(work / "before", work / "after")}
        print("demo:", json.dumps(extra["demo"]))
    path = write_json(path, {
        "commands": commands, "date": now(), "machine": machine(),
        **({"before_rev": args.before} if args.before else {}), **extra, **results})
    print(f"saved {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
