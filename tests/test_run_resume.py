"""``kgrec run`` killed while training resumes that training from its last checkpoint
(inside the run's workdir) instead of starting it again; a finished training leaves no
checkpoints behind, so ``--force train`` trains from scratch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kgrec.config import Config
from kgrec.gnn import train as train_module
from kgrec.gnn.checkpoint import LAST_CHECKPOINT
from kgrec.kg import schema
from kgrec.run import Pipeline


def _config(tmp_path: Path, themed_tables) -> Config:
    themed_tables.nodes[schema.PRODUCT][["id", "title"]].to_csv(tmp_path / "products.csv",
                                                                  index=False)
    events = themed_tables.rels[schema.RATED].rename(columns={"src": "user", "dst": "product"})
    events.assign(type="rating")[["user", "product", "type", "timestamp", "value"]].to_csv(
        tmp_path / "events.csv", index=False)
    config = Config()
    config.source.kind = "generic"
    config.source.products = str(tmp_path / "products.csv")
    config.source.events = str(tmp_path / "events.csv")
    config.store.path = str(tmp_path / "store")
    config.run.workdir = str(tmp_path / "run")
    config.run.baselines = []
    config.train.model = "mf"
    config.train.epochs = 4
    config.train.dim = 8
    config.train.device = "cpu"
    config.fusion.cache_dir = str(tmp_path / "text-cache")
    return config


def _until_trained(pipeline: Pipeline) -> None:
    """The run's stages up to training (the rest do not matter here)."""
    for name, stage in (("ingest", pipeline._ingest), ("snapshot", pipeline._snapshot),
                        ("encode", pipeline._encode), ("train:mf", lambda: pipeline._train("mf"))):
        pipeline._stage("", name, *stage())


def test_a_run_killed_while_training_resumes_from_its_checkpoint(tmp_path, themed_tables,
                                                                 monkeypatch, capsys) -> None:
    config = _config(tmp_path, themed_tables)
    epoch, calls = train_module._epoch, []

    def killed(*args, **kwargs):  # the run dies during epoch 3
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return epoch(*args, **kwargs)

    monkeypatch.setattr(train_module, "_epoch", killed)
    with pytest.raises(KeyboardInterrupt):
        _until_trained(Pipeline(config, progress=False))
    [last] = (tmp_path / "run" / "checkpoints" / "mf").glob(f"*/{LAST_CHECKPOINT}")
    assert torch.load(last, weights_only=True)["epoch"] == 2

    calls.clear()
    monkeypatch.setattr(train_module, "_epoch", lambda *a, **k: calls.append(1) or epoch(*a, **k))
    pipeline = Pipeline(config, progress=False)
    _until_trained(pipeline)
    assert len(calls) == 2  # epochs 3 and 4 only, not 4 epochs from scratch
    assert f"resuming the interrupted training from {last.parent}" in capsys.readouterr().out
    history = pipeline.recommender("mf", fused=False).result.history
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert not last.parent.exists()  # a finished training leaves no checkpoint to resume

    calls.clear()  # so a forced rerun trains from scratch
    _until_trained(Pipeline(config, progress=False, force=["train"]))
    assert len(calls) == 4
