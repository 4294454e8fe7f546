"""kgrec run: every stage once, reused the second time, rerun only what changed; the
report holds the results files' numbers; the same run on Neo4j writes RECOMMENDED."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from kgrec.cli import main
from kgrec.config import Config
from kgrec.kg import schema
from kgrec.kg.store.local import LocalStore
from kgrec.report import render_png, rendered_dom
from kgrec.run import Pipeline

pytestmark = pytest.mark.slow  # the whole pipeline, end to end: the full suite only
TRAIN_STAGES = ["train:gat", "train:pop", "train:mf"]
ALL = ["ingest", "snapshot", "encode", *TRAIN_STAGES, "fuse", "evaluate", "score", "report"]


@pytest.fixture(scope="module")
def dump(tmp_path_factory, themed_tables) -> Path:
    """The themed catalogue as generic CSV dumps (products, rating events)."""
    folder = tmp_path_factory.mktemp("dump")
    themed_tables.nodes[schema.PRODUCT][["id", "title"]].to_csv(folder / "products.csv",
                                                                  index=False)
    events = themed_tables.rels[schema.RATED].rename(columns={"src": "user", "dst": "product"})
    events.assign(type="rating")[["user", "product", "type", "timestamp", "value"]].to_csv(
        folder / "events.csv", index=False)
    return folder


def _config(dump: Path, work: Path) -> Config:
    config = Config()
    config.source.kind = "generic"
    config.source.products = str(dump / "products.csv")
    config.source.events = str(dump / "events.csv")
    config.store.path = str(work / "store")
    config.run.workdir = str(work / "run")
    config.run.baselines = ["pop", "mf"]
    config.run.sample_users = 2
    config.train.model = "gat"
    config.train.epochs = 4
    config.train.dim = 16
    config.train.device = "cpu"
    config.fusion.tower_epochs = 2
    config.fusion.cache_dir = str(work / "text-cache")
    config.score.top_k = 5
    return config


@pytest.fixture(scope="module")
def first(dump, tmp_path_factory):
    work = tmp_path_factory.mktemp("run")
    config = _config(dump, work)
    return config, Pipeline(config, progress=False, echo=False).run()


def test_first_run_runs_every_stage_and_writes_the_outputs(first) -> None:
    config, result = first
    assert list(result.stages) == ALL and result.reused == []
    work = Path(config.run.workdir)
    recs = pd.read_parquet(work / "recommendations.parquet")
    assert recs.groupby("user_id").size().max() == 5 and recs["title"].str.len().min() > 0
    table = json.loads((work / "evaluation.json").read_text())
    assert set(table) == {"pop", "mf", "gat", "gat+fusion", "text:profile", "text:tower"}
    assert set(table["gat"]) == {"overall", "long_tail", "cold_start", "tail_candidates"}


def test_report_holds_the_results_numbers_and_every_section(first) -> None:
    config, _ = first
    work = Path(config.run.workdir)
    table = json.loads((work / "evaluation.json").read_text())
    md = (work / "report" / "report.md").read_text()
    for model, by_slice in table.items():
        row = next(line for line in md.splitlines() if line.startswith(f"| {model} |"))
        assert f"{by_slice['overall']['ndcg@20']:.4f}" in row
    html = (work / "report" / "report.html").read_text()
    for section in ("summary", "dataset", "metrics", "fusion", "scores", "samples", "outputs"):
        assert f"<section id='{section}'>" in html
    assert html.count("data:image/png;base64,") == 3  # popularity, alpha curve, components
    assert re.search(r"<h3>user u\d\d</h3>\n<p>Latest interactions: [a-z]", html)
    assert "The fusion against the GNN alone (NDCG@20): overall" in html
    assert "Rated" in html or "RATED" in html  # why-paths walk the rating edges


def test_second_run_reuses_every_stage_and_a_change_reruns_what_follows(first) -> None:
    config, _ = first
    again = Pipeline(config, progress=False, echo=False).run()
    assert again.reused == ALL
    config.fusion.tower_epochs = 3
    changed = Pipeline(config, progress=False, echo=False).run()
    assert changed.reused == ["ingest", "snapshot", "encode", *TRAIN_STAGES]
    forced = Pipeline(config, force=["snapshot"], progress=False, echo=False).run()
    assert forced.reused == ["ingest"]


def test_cli_run_prints_the_stage_table(first, capsys) -> None:
    config, _ = first
    toml = Path(config.run.workdir).parent / "run.toml"
    toml.write_text(
        f'[source]\nkind = "generic"\nproducts = "{config.source.products}"\n'
        f'events = "{config.source.events}"\n[store]\npath = "{config.store.path}"\n'
        f'[run]\nworkdir = "{config.run.workdir}"\nbaselines = ["pop", "mf"]\n'
        f'sample_users = 2\n[train]\nmodel = "gat"\nepochs = 4\ndim = 16\ndevice = "cpu"\n'
        f'[fusion]\ntower_epochs = 3\ncache_dir = "{config.fusion.cache_dir}"\n'
        f'[score]\ntop_k = 5\n')
    assert main(["run", str(toml), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "(10 of 10 stages reused)" in out and "report.html" in out
    table = json.loads((Path(config.run.workdir) / "evaluation.json").read_text())
    fused = table["gat+fusion"]
    assert re.search(rf"^gat\+fusion +{fused['overall']['ndcg@20']:.4f} +"
                     rf"{fused['tail_candidates']['ndcg@20']:.4f}$", out, re.M)
    assert re.search(r"long-tail recommendations for user u\d\d:\n +1\. [a-z]", out)


def test_report_renders_in_headless_chromium(first) -> None:
    config, _ = first
    report = Path(config.run.workdir) / "report" / "report.html"
    png = render_png(report, report.with_name("report.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 50_000
    assert re.findall(r"<h2>([^<]+)</h2>", rendered_dom(report)) == [
        "Summary", "Dataset", "Ranking quality", "The blend weight", "Score components",
        "Sample recommendations", "Where everything lies"]
    assert rendered_dom(report).count("<img") == 3


@pytest.mark.neo4j
def test_the_same_run_on_neo4j_writes_recommended(dump, tmp_path, neo4j_uri, neo4j_password,
                                                  neo4j_driver) -> None:
    with neo4j_driver.session() as session:
        session.run("MATCH (n) DETACH DELETE n").consume()
    config = _config(dump, tmp_path)
    config.store.backend = "neo4j"
    config.neo4j.uri = neo4j_uri
    config.neo4j.password = neo4j_password
    result = Pipeline(config, progress=False, echo=False).run()
    frame = pd.read_parquet(result.stages["score"].outputs["recommendations"])
    with neo4j_driver.session() as session:
        count = session.run("MATCH (:User)-[r:RECOMMENDED]->(:Product) RETURN count(r) AS n"
                            ).single()["n"]
        rated = session.run("MATCH ()-[r:RATED]->() RETURN count(r) AS n").single()["n"]
    assert count == len(frame) > 0
    assert rated == 300


def test_appended_events_warm_start_training_and_a_forced_train_starts_afresh(
        dump, tmp_path) -> None:
    """A day's new events (one new user, a newer event for others) appended to the dump: the
    next run trains each model from the previous run's parameters, matched on ids, and
    serves the new user; ``--force train`` trains from scratch."""
    events = pd.read_csv(dump / "events.csv")
    newcomer = events["user"].iloc[0]
    latest = events.sort_values("timestamp").groupby("user").tail(1)
    held = events["user"].eq(newcomer) | events.index.isin(latest.index[::3])
    today = tmp_path / "dump"
    today.mkdir()
    (today / "products.csv").write_text((dump / "products.csv").read_text())
    events[~held].to_csv(today / "events.csv", index=False)
    config = _config(today, tmp_path)
    Pipeline(config, progress=False, echo=False).run()
    before = json.loads((tmp_path / "run" / "runs" / "gat" / "ids_user.json").read_text())["ids"]
    events.to_csv(today / "events.csv", index=False)  # the appended dump

    again = Pipeline(config, progress=False, echo=False).run()

    assert again.reused == []
    runs = tmp_path / "run" / "runs"
    users, products = events["user"].nunique(), len(pd.read_csv(today / "products.csv"))
    assert len(before) == users - 1
    for model, table in (("gat", "node.weight"), ("mf", "user.weight")):
        applied = json.loads((runs / model / "settings.json").read_text())["applied"]
        hit, total = applied["warm_start"]["matched"][table]
        rows = users + products if model == "gat" else users
        assert (hit, total) == (rows - 1, rows)
    recs = pd.read_parquet(tmp_path / "run" / "recommendations.parquet")
    assert str(newcomer) in set(recs["user_id"]) and recs.groupby("user_id").size().max() == 5
    report = (tmp_path / "run" / "report" / "report.md").read_text()
    # The report counts each model's largest table: the GAT's users and products, MF's
    # products (more than users here, and none of them new).
    assert products > users
    assert (f"gat warm-started from the previous run ({users + products - 1:,} of "
            f"{users + products:,} rows carried)") in report
    assert f"mf warm-started from the previous run ({products:,} of {products:,} rows" in report
    Pipeline(config, force=["train"], progress=False, echo=False).run()
    assert "warm_start" not in json.loads((runs / "gat" / "settings.json").read_text())["applied"]
    versions = LocalStore(config.store.path).recommendation_versions()  # three runs wrote
    assert len(versions) == config.score.keep_versions == 2
