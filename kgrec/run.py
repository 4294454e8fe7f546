"""``kgrec run``: the main job as one resumable run.

ingest -> snapshot -> encode the products' text -> train (the model and its baselines) ->
fuse -> evaluate -> score the long tail -> report. Each stage is keyed by a hash of its
settings, the contents of its input files and the tokens of the stages it reads; a stage
whose key is unchanged and whose outputs exist is reused, so a second run redoes only what
changed. ``force`` reruns a stage (and, since its token changes, every stage after it).
State lives in ``WORKDIR/state.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from kgrec.api import Recommender
from kgrec.config import Config
from kgrec.errors import ConfigError
from kgrec.files import write_text
from kgrec.fusion.output import prune_versions, write_back, write_parquet
from kgrec.gnn.checkpoint import LAST_CHECKPOINT
from kgrec.gnn.metrics import format_table
from kgrec.gnn.warm import WarmStart
from kgrec.kg.extract.sources import source_files
from kgrec.kg.snapshot import GraphSnapshot
from kgrec.kg.stats import graph_stats
from kgrec.loading import ingest
from kgrec.report import ReportData, training_line, write_report
from kgrec.runfolder import TEXT_SETTINGS, encode_catalogue, load_snapshot, warm_start_from
from kgrec.settings import RUN_STAGES
from kgrec.stores import open_store
from kgrec.training import make_run_split

STATE_FILE = "state.json"
log = logging.getLogger(__name__)


def digest(value: Any) -> str:
    """A short stable hash of a JSON-able value."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def files_digest(paths: Iterable[Path]) -> str:
    """Hash of the names and contents of ``paths``."""
    sha = hashlib.sha256()
    for path in paths:
        sha.update(str(path).encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                sha.update(block)
    return sha.hexdigest()[:16]


_RECORD_KEYS = {"key", "token", "seconds", "outputs"}


def read_state(path: Path) -> dict[str, dict]:
    """The stage records of ``state.json``; a damaged file counts as none (every stage runs
    again) with a warning, since the outputs it points to cannot be trusted either."""
    if not path.exists():
        return {}
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        state = exc
    if not isinstance(state, dict) or not all(
            isinstance(rec, dict) and rec.keys() >= _RECORD_KEYS for rec in state.values()):
        log.warning("%s is damaged (%s): ignoring it, every stage runs again", path,
                    state if isinstance(state, Exception) else "unexpected content")
        return {}
    return state


@dataclass
class StageRecord:
    """One finished stage: its input key, the token later stages key on, its outputs."""

    key: str
    token: str
    seconds: float
    outputs: dict[str, str]
    reused: bool = False


@dataclass
class RunResult:
    """What a run did: the record of every stage, in order, and the report's paths."""

    stages: dict[str, StageRecord] = field(default_factory=dict)

    @property
    def reused(self) -> list[str]:
        return [name for name, rec in self.stages.items() if rec.reused]

    def summary(self) -> str:
        lines = [f"{'stage':<16}{'seconds':>9}  {'':<8}"]
        for name, rec in self.stages.items():
            lines.append(f"{name:<16}{rec.seconds:>9.1f}  {'reused' if rec.reused else 'ran'}")
        return "\n".join(lines)


class Pipeline:
    """The stages of one run over ``config`` (see the module doc).

    Args:
        config: settings; ``[run]`` names the workdir, baselines and scored items,
            ``[source]`` the catalogue, ``train.split`` the evaluation split.
        force: stages to rerun even when their key is unchanged.
        progress: progress bars inside stages.
        echo: print a line per stage.
    """

    def __init__(self, config: Config, *, force: Iterable[str] = (), progress: bool = True,
                 echo: bool = True) -> None:
        unknown = set(force) - set(RUN_STAGES)
        if unknown:
            raise ConfigError(f"unknown stage(s) {', '.join(sorted(unknown))} for --force; "
                              f"stages: {', '.join(RUN_STAGES)}")
        self.config, self.force, self.progress, self.echo = config, set(force), progress, echo
        self.workdir = Path(config.run.workdir).expanduser()
        self.state_path = self.workdir / STATE_FILE
        self.result = RunResult()
        self._state = read_state(self.state_path)

    # ---- driver --------------------------------------------------------------------------

    def run(self) -> RunResult:
        self.workdir.mkdir(parents=True, exist_ok=True)
        models = self.models
        plan: list[tuple[str, Callable[[], tuple[list, Callable[[], dict[str, str]]]]]] = [
            ("ingest", self._ingest), ("snapshot", self._snapshot), ("encode", self._encode),
            *[(f"train:{m}", lambda m=m: self._train(m)) for m in models],
            ("fuse", self._fuse), ("evaluate", self._evaluate), ("score", self._score),
            ("report", self._report)]
        for number, (name, stage) in enumerate(plan, start=1):
            key_parts, work = stage()
            self._stage(f"[{number}/{len(plan)}] ", name, key_parts, work)
        return self.result

    def _stage(self, prefix: str, name: str, key_parts: list,
               work: Callable[[], dict[str, str]]) -> StageRecord:
        key = digest([name, key_parts])
        old = self._state.get(name)
        forced = name.split(":")[0] in self.force
        if (old and old["key"] == key and not forced
                and all(Path(p).exists() for p in old["outputs"].values())):
            record = StageRecord(key, old["token"], old["seconds"], old["outputs"], reused=True)
            self._say(f"{prefix}{name}: reused (unchanged since its last run)")
        else:
            self._say(f"{prefix}{name} ...")
            start = time.perf_counter()
            outputs = work()
            seconds = time.perf_counter() - start
            record = StageRecord(key, digest([key, time.time_ns()]), seconds, outputs)
            self._state[name] = dataclasses.asdict(record) | {"reused": False}
            write_text(self.state_path, json.dumps(self._state, indent=1))
            self._say(f"{prefix}{name}: done in {seconds:.1f}s")
        self.result.stages[name] = record
        return record

    def _say(self, line: str) -> None:
        if self.echo:
            print(line, flush=True)

    def _token(self, name: str) -> str:
        return self.result.stages[name].token

    @property
    def models(self) -> list[str]:
        """The main model (``train.model``) first, then the ``run.baselines``."""
        main = self.config.train.model
        return [main, *[m for m in self.config.run.baselines if m != main]]

    def path(self, *parts: str) -> Path:
        return self.workdir.joinpath(*parts)

    # ---- stages: each returns (key parts, work) ---------------------------------------------

    def _ingest(self):
        cfg = self.config
        files = source_files(cfg.source, cfg.data.cache_dir)
        store = (cfg.store.backend, cfg.store.path if cfg.store.backend == "local"
                 else [cfg.neo4j.uri, cfg.neo4j.database])
        key = [dataclasses.asdict(cfg.source), files_digest(files), store]

        def work() -> dict[str, str]:
            summary = ingest(cfg, reports_dir=self.path("reports"), progress=self.progress,
                             echo=self.echo)
            # A deleted local store must be loaded again, whatever the key says.
            local = {"store": cfg.store.path} if cfg.store.backend == "local" else {}
            return {"summary": str(summary.summary_path), **local}

        return key, work

    def _snapshot(self):
        def work() -> dict[str, str]:
            snap = load_snapshot(self.config, progress=self.progress)
            snap.save(self.path("snapshot"))
            return {"snapshot": str(self.path("snapshot", "hetero.pt"))}

        return [self._token("ingest")], work

    def _encode(self):
        """The products' text vectors into the text cache, where training and the fusion
        read them: on a large catalogue the longest step of a first run, timed on its own."""
        cfg = self.config
        # Not the cache's folder: moving it must not retrain. A missing cache only moves
        # the encoding into the stages that read the vectors.
        key = [self._token("snapshot"), *(getattr(cfg.fusion, k) for k in TEXT_SETTINGS),
               cfg.fusion.text_precision]

        def work() -> dict[str, str]:
            if not cfg.fusion.cache_dir:
                self._say("  no text cache (fusion.cache_dir is empty): the texts are "
                          "encoded where they are used")
                return {}
            raw = encode_catalogue(self.snapshot, cfg, self.progress)
            if raw is not None:
                self._say(f"  {len(raw.ids):,} product texts in {cfg.fusion.cache_dir}")
            return {}

        return key, work

    def _train(self, model: str):
        cfg = self.config
        settings = {k: v for k, v in dataclasses.asdict(cfg.train).items() if k != "model"}
        key = [self._token("encode"), model, settings]
        key_hash = digest(key)  # a checkpoint of other settings or data is never resumed

        def work() -> dict[str, str]:
            # Checkpoints inside the workdir, one folder per stage key: a run killed while
            # training resumes from its last finished epoch; a finished training removes
            # them (so --force trains again from scratch).
            checkpoints = self.path("checkpoints", model, key_hash)
            resume = (checkpoints / LAST_CHECKPOINT).exists()
            if resume:
                self._say(f"  resuming the interrupted training from {checkpoints}")
            warm = None if resume else self._warm_start(model)
            rec = Recommender.fit(self.snapshot, cfg, model=model, split=self.split,
                                  progress=self.progress, checkpoint_dir=checkpoints,
                                  resume=resume, warm_start=warm)
            rec.save(self.path("runs", model), with_snapshot=False)
            shutil.rmtree(checkpoints, ignore_errors=True)
            if not self.progress:  # training prints it itself otherwise
                self._say("  " + rec.result.summary())
            return {"run": str(self.path("runs", model, "settings.json"))}

        return key, work

    def _warm_start(self, model: str) -> WarmStart | None:
        """The previous run of ``model`` to start from (``run.warm_start``; never when the
        train stage is forced), or None, said with the reason where one exists."""
        folder = self.path("runs", model)
        if not self.config.run.warm_start or "train" in self.force or not folder.exists():
            return None
        warm, why_not = warm_start_from(folder, self.config, model)
        if warm is None and why_not:
            self._say(f"  training {model} from scratch: {why_not}")
        elif not self.progress:  # training says it itself otherwise
            self._say(f"  {model}: warm start from {folder}")
        return warm

    def _fuse(self):
        cfg = self.config
        key = [self._token(f"train:{self.models[0]}"), dataclasses.asdict(cfg.fusion)]

        def work() -> dict[str, str]:
            rec = self.recommender(self.models[0], fused=False)
            rec.fuse(progress=self.progress)
            rec.save(self.path("runs", self.models[0]), with_snapshot=False)
            for job in rec.fusion.fit.jobs.values():
                self._say(f"  {job.summary()}")
            return {"fusion": str(self.path("runs", self.models[0], "fusion", "fusion.json"))}

        return key, work

    def _evaluate(self):
        key = [*(self._token(f"train:{m}") for m in self.models), self._token("fuse"),
               self.config.train.k, self.config.train.eval_users]

        def work() -> dict[str, str]:
            table: dict[str, dict[str, dict[str, float]]] = {}
            for model in self.models[1:]:
                table.update(self.recommender(model).evaluate("test"))
            table.update(self.recommender(self.models[0]).evaluate("test"))
            path = self.path("evaluation.json")
            path.write_text(json.dumps(table, indent=1))
            rows = [{"model": m, "slice": s, **v} for m, by in table.items()
                    for s, v in by.items()]
            pd.DataFrame(rows).to_csv(self.path("evaluation.csv"), index=False)
            self._say(format_table(table, self.config.train.k))
            return {"evaluation": str(path), "csv": str(self.path("evaluation.csv"))}

        return key, work

    def _score(self):
        cfg = self.config
        key = [self._token("fuse"), cfg.run.items, cfg.run.write_back, cfg.score.top_k]

        def work() -> dict[str, str]:
            rec = self.recommender(self.models[0])
            frame = rec.recommend(items=cfg.run.items, k=cfg.score.top_k,
                                  progress=self.progress)
            out = write_parquet(frame, self.path("recommendations.parquet"))
            self._say(f"  {len(frame):,} recommendations for {frame['user_id'].nunique():,} "
                      f"users ({cfg.run.items}) in {out}")
            if cfg.run.write_back:
                store = open_store(cfg)
                version = rec.fusion.model_version
                try:
                    n = write_back(store, frame, model_version=version,
                                   batch_size=cfg.store.batch_size, progress=self.progress)
                    pruned = prune_versions(store, version, cfg.score.keep_versions)
                finally:
                    store.close()
                self._say(f"  {n:,} RECOMMENDED relationships written to the "
                          f"{cfg.store.backend} store ({version})"
                          + (f"; older versions deleted: {', '.join(pruned)}" if pruned else ""))
            return {"recommendations": str(out)}

        return key, work

    def _report(self):
        key = [self._token("evaluate"), self._token("score"), self.config.run.sample_users]

        def work() -> dict[str, str]:
            html, md = write_report(self.report_data(), self.path("report"))
            return {"html": str(html), "markdown": str(md)}

        return key, work

    # ---- artefacts shared by stages ------------------------------------------------------

    @property
    def snapshot(self):
        if not hasattr(self, "_snap"):
            self._snap = GraphSnapshot.load(self.path("snapshot"))
        return self._snap

    @property
    def split(self):
        """One split for every model (so their rows compare on the same test pairs)."""
        if not hasattr(self, "_split"):
            self._split = make_run_split(self.snapshot, self.config.train.split, self.config)
        return self._split

    def recommender(self, model: str, fused: bool = True):
        rec = Recommender.load(self.path("runs", model), snapshot=self.snapshot,
                               config=self.config)
        if not fused:
            rec.fusion = None
        return rec

    def report_data(self):
        stats = graph_stats(self.snapshot)
        rec = self.recommender(self.models[0])
        frame = pd.read_parquet(self.path("recommendations.parquet"))
        samples = {}
        for user in frame["user_id"].drop_duplicates().head(self.config.run.sample_users):
            top = frame[frame["user_id"] == user].head(5)
            why = {}
            for product in top["product_id"]:
                paths = rec.explain(user, product, max_hops=3, limit=1)
                why[product] = paths[0].text if paths else "no path within 3 hops"
            samples[user] = (top, why, rec.history_titles(user, 3))
        outputs = {"report (HTML)": str(self.path("report", "report.html")),
                   **{f"{n}: {k}": v for n, r in self.result.stages.items()
                      for k, v in r.outputs.items()}}
        return ReportData(
            title=f"kgrec run: {self.config.train.model} on {self.config.source.describe()}",
            dataset=stats.paragraph(), counts=stats.counts,
            metrics=json.loads(self.path("evaluation.json").read_text()),
            k=self.config.train.k,
            jobs={n: j.to_dict() for n, j in rec.fusion.fit.jobs.items()},
            stats=stats,
            recommendations=frame, samples=samples, outputs=outputs,
            stages={n: (r.seconds, r.reused) for n, r in self.result.stages.items()},
            training={m: training_line(self.path("runs", m, "settings.json"))
                      for m in self.models})
