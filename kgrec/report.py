"""The report of ``kgrec run``: one self-contained HTML file (plots inlined) and the same
content as Markdown beside its PNGs.

Sections (their ids are what tests and readers look for): summary, dataset, metrics,
fusion, scores, samples, outputs.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kgrec.errors import KgrecError
from kgrec.fusion.alpha import AlphaFunction
from kgrec.gnn.result import how_training_ended
from kgrec.kg.stats import GraphStats, plot_popularity

SECTIONS = {"summary": "Summary", "dataset": "Dataset", "metrics": "Ranking quality",
            "fusion": "The blend weight", "scores": "Score components",
            "samples": "Sample recommendations", "outputs": "Where everything lies"}
SLICES = ("overall", "long_tail", "cold_start", "tail_candidates")


@dataclass
class ReportData:
    """Everything the report shows; every number comes from the run's results files."""

    title: str
    #: One paragraph on the graph (kgrec.kg.stats.GraphStats.paragraph) and its counts.
    dataset: str
    counts: dict[str, int]
    #: model -> slice -> metric (the run's evaluation.json).
    metrics: dict[str, dict[str, dict[str, float]]]
    k: int
    #: job -> the fitted job (kgrec.fusion.fit.JobFit.to_dict).
    jobs: dict[str, dict[str, Any]]
    #: the graph's statistics (popularity plot).
    stats: GraphStats
    #: the batch-scored recommendations (columns of kgrec.fusion.output.OUTPUT_COLUMNS).
    recommendations: pd.DataFrame
    #: user id -> (top recommendations with titles, why-path sentences per product id,
    #: titles of the user's latest interactions).
    samples: dict[str, tuple[pd.DataFrame, dict[str, str], list[str]]]
    outputs: dict[str, str]
    #: stage -> (seconds, reused).
    stages: dict[str, tuple[float, bool]] = field(default_factory=dict)
    #: model -> how its training ended (:func:`training_line`).
    training: dict[str, str] = field(default_factory=dict)


def training_line(settings_json: str | Path) -> str:
    """How a saved training run ended, from its ``settings.json``
    (:func:`kgrec.gnn.result.how_training_ended`)."""
    meta = json.loads(Path(settings_json).read_text())
    reason = meta.get("stop_reason", "epoch cap")
    if reason == "not trainable":
        return "is not trained"
    warm = meta.get("applied", {}).get("warm_start")
    start = ""
    if warm and warm["matched"]:  # its largest keyed table: users' (and products') rows
        hit, total = max(warm["matched"].values(), key=lambda pair: pair[1])
        start = f"warm-started from the previous run ({hit:,} of {total:,} rows carried), "
    return start + how_training_ended(reason, meta["settings"].get("max_minutes"),
                                      meta.get("best_epoch", 0))


def _training(data: ReportData) -> list[tuple[str, Any]]:
    if not data.training:
        return []
    return [("p", "Training: " + "; ".join(f"{m} {line}" for m, line in data.training.items())
             + ".")]


def write_report(data: ReportData, folder: str | Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` (+ PNGs) into ``folder``; returns both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plots = {"popularity": plot_popularity(data.stats, folder / "popularity.png"),
             "alpha": _plot_alpha(data, folder / "alpha_curve.png"),
             "components": _plot_components(data, folder / "score_components.png")}
    blocks = _blocks(data)
    html_path, md_path = folder / "report.html", folder / "report.md"
    html_path.write_text(_html(data.title, blocks, plots))
    md_path.write_text(_markdown(data.title, blocks, plots))
    return html_path, md_path


def chromium() -> str:
    """The headless browser that renders reports (Debian's ``chromium``: ``make browser``)."""
    import shutil

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise KgrecError("Chromium is not installed: `make browser` (apt-get install chromium)")
    return found


def _headless(*args: str, text: bool = False):
    import subprocess

    flags = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    return subprocess.run([*flags, *args], check=True, capture_output=True, text=text,
                          timeout=120)


def render_png(html_path: str | Path, png_path: str | Path, *, width: int = 1200,
               height: int = 4000) -> Path:
    """A screenshot of the report as a browser shows it (the top ``height`` pixels)."""
    png = Path(png_path)
    _headless(f"--screenshot={png}", f"--window-size={width},{height}",
              Path(html_path).resolve().as_uri())
    return png


def rendered_dom(html_path: str | Path) -> str:
    """The report's DOM after a browser has rendered it."""
    return _headless("--dump-dom", Path(html_path).resolve().as_uri(), text=True).stdout


def metrics_frame(metrics: dict[str, dict[str, dict[str, float]]], k: int) -> pd.DataFrame:
    """One row per model, NDCG@k and Recall@k per slice (n/a where a slice is empty; ``±`` its
    standard error where the users were sampled), then per other objective
    (``objective:CARTED`` ..., with a target behaviour)."""
    objectives = sorted({name for by_slice in metrics.values() for name in by_slice
                         if name.startswith("objective:")})
    rows = []
    for model, by_slice in metrics.items():
        row: dict[str, Any] = {"model": model}
        for name in (*SLICES, *objectives):
            values = by_slice.get(name, {})
            for metric in (f"ndcg@{k}", f"recall@{k}"):
                value, error = values.get(metric), values.get(f"se:{metric}")
                shown = "n/a" if value is None or not values.get("users", 1) else f"{value:.4f}"
                row[f"{name} {metric}"] = shown if error is None or shown == "n/a" else (
                    f"{shown} ± {error:.4f}")
        rows.append(row)
    return pd.DataFrame(rows)


# ---- content, shared by both renderings ------------------------------------------------

def _reengagement_cells(job: dict[str, Any], k: int) -> dict[str, str]:
    """The re-engagement term's fitted weight and its validation NDCG, where it was fitted
    (a catalogue with a target behaviour)."""
    curve = dict(job.get("seen_curve") or [])
    if not curve:
        return {}
    weight = job.get("seen_weight", 0.0)
    return {"re-engagement b": f"{weight:g}", f"with it, valid NDCG@{k}": f"{curve[weight]:.4f}"}


def _sample_note(metrics: dict[str, dict[str, dict[str, float]]]) -> str:
    """Says which users were ranked where the evaluation sampled them (train.eval_users)."""
    overall = next(iter(metrics.values()), {}).get("overall", {})
    if "sampled_from" not in overall:
        return ""
    return (f" Ranked for a seeded sample of {overall['users']:,.0f} of "
            f"{overall['sampled_from']:,.0f} test users (train.eval_users), the same users "
            f"for every model; ± is the standard error.")


def _blocks(data: ReportData) -> dict[str, list[tuple[str, Any]]]:
    """section -> [("p", text) | ("table", DataFrame) | ("plot", name)]."""
    k = data.k
    table = metrics_frame(data.metrics, k)
    best = max(data.metrics, key=lambda m: data.metrics[m]["overall"][f"ndcg@{k}"])
    stages = ", ".join(f"{name} {sec:.0f}s{' (reused)' if reused else ''}"
                       for name, (sec, reused) in data.stages.items())
    jobs = pd.DataFrame([{"job": job, "text side": j["text_side"],
                          "alpha": _alpha_text(j["alpha"]),
                          f"valid NDCG@{k}": f"{j['valid_metric']:.4f}",
                          "GNN alone": f"{j['gnn_only']:.4f}",
                          **_reengagement_cells(j, k)} for job, j in data.jobs.items()])
    recs = data.recommendations
    samples: list[tuple[str, Any]] = []
    for user, (top, why, latest) in data.samples.items():
        shown = top[["rank", "product_id", "title", "score", "score_gnn", "score_text"]].copy()
        shown["why"] = shown["product_id"].map(why).fillna("")
        samples += [("h3", f"user {user}"),
                    ("p", "Latest interactions: " + ("; ".join(latest) or "none")),
                    ("table", shown)]
    return {
        "summary": [("p", f"Best overall NDCG@{k}: {best} "
                          f"({data.metrics[best]['overall'][f'ndcg@{k}']:.4f}). "
                          + _fusion_gain(data.metrics, k) + f" Stages: {stages}."),
                    *_training(data)],
        "dataset": [("p", data.dataset),
                    ("table", pd.DataFrame(list(data.counts.items()),
                                           columns=["label / type", "count"])),
                    ("plot", "popularity")],
        "metrics": [("p", f"Test split, full ranking over all products with the training and "
                          f"validation pairs excluded; long_tail / cold_start: test pairs on "
                          f"such products; tail_candidates: the ranking restricted to long-tail "
                          f"products. NDCG@{k} and Recall@{k}." + _sample_note(data.metrics)),
                    ("table", table)],
        "fusion": [("p", "s = a * z(s_gnn) + (1 - a) * z(s_text), fitted on validation per "
                         "job; a may depend on the product's popularity and text. With a "
                         "target behaviour, + b * s_seen: the user's own viewed or carted, "
                         "not bought, products, b fitted on validation after a (0: no help)."),
                   ("table", jobs), ("plot", "alpha")],
        "scores": [("p", f"{len(recs):,} recommendations for {recs['user_id'].nunique():,} "
                         f"users over {recs['product_id'].nunique():,} distinct products; "
                         f"mean fused score {recs['score'].mean():.3f}." if len(recs)
                    else "No recommendations."),
                   ("plot", "components")],
        "samples": samples,
        "outputs": [("table", pd.DataFrame(list(data.outputs.items()),
                                           columns=["output", "path"]))],
    }


def _fusion_gain(metrics: dict[str, dict[str, dict[str, float]]], k: int) -> str:
    """The fused rows against the GNN alone, slice by slice (empty without a fused row)."""
    fused = next((m for m in metrics if m.endswith("+fusion")), None)
    if fused is None:
        return ""
    gnn, parts = metrics[fused.removesuffix("+fusion")], []
    for name in SLICES:
        a = metrics[fused].get(name, {}).get(f"ndcg@{k}")
        b = gnn.get(name, {}).get(f"ndcg@{k}")
        if a is not None and b:
            parts.append(f"{name} {a:.4f} vs {b:.4f} ({a / b:.2f}x)")
    return f"The fusion against the GNN alone (NDCG@{k}): {', '.join(parts)}." if parts else ""


def _alpha_text(alpha: dict[str, Any]) -> str:
    return AlphaFunction.from_dict(alpha).describe()


# ---- renderings ------------------------------------------------------------------------

def _html(title: str, blocks: dict[str, list[tuple[str, Any]]], plots: dict[str, Path]) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             "</title><style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;"
             "color:#222}table{border-collapse:collapse;margin:.5em 0 1em;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}"
             "th{background:#f0f0f0}img{max-width:100%}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    for section, items in blocks.items():
        parts.append(f"<section id='{section}'><h2>{SECTIONS[section]}</h2>")
        for kind, value in items:
            if kind == "plot":
                png = base64.b64encode(plots[value].read_bytes()).decode()
                parts.append(f"<img alt='{value}' src='data:image/png;base64,{png}'>")
            elif kind == "table":
                parts.append(value.to_html(index=False, escape=True, border=0))
            else:
                parts.append(f"<{kind}>{html.escape(str(value))}</{kind}>")
        parts.append("</section>")
    return "\n".join([*parts, "</body></html>"])


def _markdown(title: str, blocks: dict[str, list[tuple[str, Any]]],
              plots: dict[str, Path]) -> str:
    lines = [f"# {title}", ""]
    for section, items in blocks.items():
        lines += [f"## {SECTIONS[section]}", ""]
        for kind, value in items:
            if kind == "plot":
                lines += [f"![{value}]({plots[value].name})", ""]
            elif kind == "table":
                lines += [_md_table(value), ""]
            elif kind == "h3":
                lines += [f"### {value}", ""]
            else:
                lines += [str(value), ""]
    return "\n".join(lines)


def _md_table(frame: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        return (f"{v:.4f}" if isinstance(v, float) else str(v)).replace("|", "\\|")

    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


# ---- plots -----------------------------------------------------------------------------

def _figure(width: float = 8, height: float = 3.6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(width, height))


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_alpha(data: ReportData, path: Path) -> Path:
    plt, fig, ax = _figure()
    for job, fit in data.jobs.items():
        for side, curves in fit.get("by_side", {}).items():
            curve = np.array(curves["constant_curve"], dtype=float)
            if len(curve):
                ax.plot(curve[:, 0], curve[:, 1], marker="o", label=f"{job} job, {side} text")
    ax.set_xlabel("a (GNN weight, constant)")
    ax.set_ylabel(f"validation NDCG@{data.k}")
    ax.set_title("s = a * z(s_gnn) + (1 - a) * z(s_text)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no text side: the GNN alone", ha="center", transform=ax.transAxes)
    return _save(plt, fig, path)


def _plot_components(data: ReportData, path: Path) -> Path:
    plt, fig, ax = _figure(6, 4.5)
    recs = data.recommendations
    if len(recs):
        points = ax.scatter(recs["score_gnn"], recs["score_text"], c=recs["score"], s=4,
                            cmap="viridis", alpha=0.6)
        fig.colorbar(points, label="fused score")
    ax.set_xlabel("GNN score (dot product)")
    ax.set_ylabel("text score (cosine / dot product)")
    ax.set_title("score components of the batch-scored recommendations")
    return _save(plt, fig, path)
