"""An interrupted training run resumed from ``last.pt`` ends exactly where an uninterrupted
one does; without progress bars, every evaluation logs one line."""

from __future__ import annotations

import logging

import pytest
import torch

from kgrec.errors import ModelError
from kgrec.gnn import train as train_module
from kgrec.gnn.checkpoint import LAST_CHECKPOINT
from kgrec.gnn.result import TrainResult
from kgrec.gnn.split import Split
from kgrec.gnn.train import train_model
from kgrec.settings import TrainSettings
from tests.gnn.conftest import random_graph

# gat with attention dropout and the contrastive noise: resuming must restore the RNGs too.
SETTINGS = {"model": "gat", "dim": 8, "layers": 2, "kg_hops": 1, "epochs": 6, "eval_every": 2,
            "batch_size": 64, "lr": 0.05, "text_features": False, "kg_dropout": 0.3,
            "cl_weight": 0.1, "patience": 10, "device": "cpu"}


@pytest.fixture(scope="module")
def data() -> tuple:
    snapshot, split = random_graph(30, 16, draws=300, seed=5)
    valid = split.train.iloc[::10]  # validation pairs (also trained on: only equality matters)
    return snapshot, Split(split.train, valid, valid.iloc[:0], 30, 16, "given")


@pytest.fixture(scope="module")
def straight(data):
    return train_model(*data, TrainSettings(**SETTINGS), progress=False)


def without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def assert_same_run(a, b) -> None:
    assert torch.equal(a.user_embeddings.tensor, b.user_embeddings.tensor)
    assert torch.equal(a.product_embeddings.tensor, b.product_embeddings.tensor)
    assert without_seconds(a.history) == without_seconds(b.history)
    assert (a.best_epoch, a.stop_reason) == (b.best_epoch, b.stop_reason)


def test_interrupted_run_resumes_to_the_same_result(tmp_path, data, straight, monkeypatch):
    epoch, calls = train_module._epoch, []

    def interrupted(*args, **kwargs):  # Ctrl-C during epoch 4 (epoch 3 was not evaluated)
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return epoch(*args, **kwargs)

    monkeypatch.setattr(train_module, "_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_model(*data, TrainSettings(**SETTINGS), progress=False, checkpoint_dir=tmp_path)
    monkeypatch.setattr(train_module, "_epoch", epoch)
    assert torch.load(tmp_path / LAST_CHECKPOINT, weights_only=True)["epoch"] == 3
    resumed = train_model(*data, TrainSettings(**SETTINGS), progress=False,
                          checkpoint_dir=tmp_path, resume=True)
    assert_same_run(resumed, straight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", LAST_CHECKPOINT]


def test_a_capped_run_extends_to_the_same_result(tmp_path, data, straight):
    short = TrainSettings(**{**SETTINGS, "epochs": 4})
    first = train_model(*data, short, progress=False, checkpoint_dir=tmp_path)
    assert [h["epoch"] for h in first.history] == [1, 2, 3, 4]
    resumed = train_model(*data, TrainSettings(**SETTINGS), progress=False,
                          checkpoint_dir=tmp_path, resume=True)
    assert_same_run(resumed, straight)
    # Resuming a finished run trains nothing more; other settings cannot resume it.
    again = train_model(*data, TrainSettings(**SETTINGS), progress=False,
                        checkpoint_dir=tmp_path, resume=True)
    assert_same_run(again, straight)
    with pytest.raises(ModelError, match="lr 0.05 \\(now 0.1\\)"):
        train_model(*data, TrainSettings(**{**SETTINGS, "lr": 0.1}), progress=False,
                    checkpoint_dir=tmp_path, resume=True)


def test_resume_without_a_checkpoint_trains_from_scratch(tmp_path, data, straight, caplog):
    with caplog.at_level(logging.INFO, logger="kgrec.gnn.train"):
        result = train_model(*data, TrainSettings(**SETTINGS), progress=False,
                             checkpoint_dir=tmp_path, resume=True)
    assert_same_run(result, straight)
    assert "nothing to resume" in caplog.text
    # One line per evaluation (epochs 2, 4, 6) with epoch, loss, NDCG and time.
    lines = [r.getMessage() for r in caplog.records if "epoch" in r.getMessage()]
    assert len(lines) == 3 and lines[0].startswith("gat epoch 2/6: loss ")
    assert "valid ndcg@20" in lines[0] and "s/epoch" in lines[0]
    with pytest.raises(ValueError, match="checkpoint_dir"):
        train_model(*data, TrainSettings(**SETTINGS), progress=False, resume=True)


def test_cli_resumes_and_logs_without_progress(tmp_path, data, capsys):
    from kgrec.cli import main

    data[0].save(tmp_path / "snap")
    common = ["train", "--model", "mf", "--snapshot", str(tmp_path / "snap"), "--split",
              "random", "--eval-every", "1", "--batch-size", "64", "--dim", "8",
              "--out-dir", str(tmp_path / "runs")]
    assert main([*common, "--epochs", "3", "--run-name", "straight", "--quiet"]) == 0
    assert "epoch" not in capsys.readouterr().err  # --quiet: no per-evaluation lines
    assert main([*common, "--epochs", "2", "--run-name", "cut", "--no-progress"]) == 0
    assert main([*common, "--epochs", "3", "--run-name", "cut", "--no-progress",
                 "--resume"]) == 0
    err = capsys.readouterr().err
    assert "kgrec: INFO: kgrec.gnn.train: mf epoch 1/2: loss" in err
    assert "resuming mf after epoch 2" in err and "mf epoch 3/3: loss" in err
    runs = [TrainResult.load(tmp_path / "runs" / name) for name in ("straight", "cut")]
    assert torch.equal(runs[0].user_embeddings.tensor, runs[1].user_embeddings.tensor)
    assert without_seconds(runs[0].history) == without_seconds(runs[1].history)


def test_a_time_limited_epoch_is_redone_on_resume(tmp_path, data, straight):
    # The limit ends epoch 1 after one batch: no complete epoch, so nothing to resume from
    # (a partial epoch in last.pt would make the resumed run differ from a straight one).
    limited = TrainSettings(**{**SETTINGS, "batch_size": 16, "max_minutes": 1e-3 / 60})
    result = train_model(*data, limited, progress=False, checkpoint_dir=tmp_path)
    assert result.stop_reason == "time limit" and result.history[-1]["batches"] == 1
    assert not (tmp_path / LAST_CHECKPOINT).exists()
