"""Training on MovieLens-100K: every model learns and beats popularity; artefacts join on ids."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import time

import pytest
import torch

from kgrec.errors import UsageError
from kgrec.gnn.metrics import evaluate_ranking
from kgrec.gnn.result import TrainResult, how_training_ended
from kgrec.gnn.train import scaled_batch, train_model, train_weights
from kgrec.report import training_line
from kgrec.settings import TrainSettings
from tests.gnn.conftest import random_graph

FAST = {"epochs": 5, "eval_every": 5, "batch_size": 8192, "lr": 0.01, "layers": 2}


@pytest.fixture(scope="module")
def pop_valid_ndcg(ml100k_snapshot, ml100k_split) -> float:
    result = train_model(ml100k_snapshot, ml100k_split, TrainSettings(model="pop"),
                         progress=False)
    return result.history[0]["valid"]["ndcg@20"]


@pytest.fixture(scope="module")
def lightgcn_run(ml100k_snapshot, ml100k_split) -> TrainResult:
    return train_model(ml100k_snapshot, ml100k_split,
                       TrainSettings(model="lightgcn", **FAST), progress=False)


def test_popularity_scores_are_training_counts(ml100k_snapshot, ml100k_split, pop_valid_ndcg):
    result = train_model(ml100k_snapshot, ml100k_split, TrainSettings(model="pop"),
                         progress=False)
    weights = torch.zeros(1682).index_add_(
        0, torch.as_tensor(ml100k_split.train["product"].to_numpy().copy()),
        torch.as_tensor(ml100k_split.train["weight"].to_numpy(), dtype=torch.float32),
    )
    scores = result.score(torch.tensor([0, 5]))
    assert torch.allclose(scores, weights.expand(2, -1))
    assert 0.10 < pop_valid_ndcg < 0.20
    # A run configured for the softmax loss keeps popularity's own scale (unit-length [N, 1]
    # vectors would tie every product).
    softmax = train_model(ml100k_snapshot, ml100k_split, TrainSettings(model="pop",
                                                                       loss="softmax"),
                          progress=False)
    assert torch.allclose(softmax.score(torch.tensor([0, 5])), scores)


@pytest.mark.parametrize(
    "model,overrides",
    [("mf", {}), pytest.param("gcn", {}, marks=pytest.mark.slow),
     ("gat", {"layers": 1, "epochs": 4, "eval_every": 4}), ("lightgcn", {"loss": "softmax"}),
     pytest.param("gat", {"loss": "softmax", "epochs": 4, "eval_every": 4},
                  marks=pytest.mark.slow)],
)
# The softmax's floor is high on ml-100k: of 4,352 candidates, a user has rated 6% (each a
# negative all the same), so its loss falls by a smaller share than BPR's.
def test_models_learn_and_beat_popularity(ml100k_snapshot, ml100k_split, pop_valid_ndcg,
                                          model, overrides):
    settings = TrainSettings(model=model, **{**FAST, **overrides})
    result = train_model(ml100k_snapshot, ml100k_split, settings, progress=False)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == settings.epochs
    assert losses[-1] < (0.92 if settings.loss == "softmax" else 0.75) * losses[0]
    ndcg = result.history[-1]["valid"]["ndcg@20"]
    assert ndcg > 1.15 * pop_valid_ndcg, (model, ndcg, pop_valid_ndcg)


def test_lightgcn_learns_and_beats_popularity(lightgcn_run, pop_valid_ndcg):
    losses = [h["loss"] for h in lightgcn_run.history]
    assert losses[-1] < 0.75 * losses[0]
    assert lightgcn_run.history[-1]["valid"]["ndcg@20"] > 1.15 * pop_valid_ndcg
    assert lightgcn_run.best_epoch == 5


def test_embeddings_join_on_ids_and_survive_save_load(tmp_path, ml100k_snapshot,
                                                      ml100k_split, lightgcn_run):
    run = lightgcn_run
    assert run.user_embeddings.ids == ml100k_snapshot.id_maps["user"]
    assert run.product_embeddings.ids == ml100k_snapshot.id_maps["product"]
    users, items = run.model.embed()
    some = ["1", "500", "943"]
    rows = torch.as_tensor(ml100k_snapshot.id_maps["user"].index_of(some))
    # Exported embeddings live on the CPU whatever the training device.
    assert torch.allclose(run.user_embeddings.align(some), users[rows.to(users.device)].cpu())
    assert run.product_embeddings.tensor.shape == (1682, 64)
    run.save(tmp_path / "run")
    back = TrainResult.load(tmp_path / "run")
    assert back.settings == run.settings and back.history == run.history
    batch = torch.arange(10)
    assert torch.allclose(back.score(batch), run.score(batch))
    assert torch.allclose(back.model.score(batch), run.score(batch), atol=1e-5)
    again = evaluate_ranking(back.score, ml100k_split, stage="valid", slices=("overall",))
    assert again["overall"]["ndcg@20"] == pytest.approx(run.history[-1]["valid"]["ndcg@20"])


def test_same_seed_same_model(ml100k_snapshot, ml100k_split):
    settings = TrainSettings(model="mf", epochs=1, max_batches=3, eval_every=10)
    a = train_model(ml100k_snapshot, ml100k_split, settings, progress=False)
    b = train_model(ml100k_snapshot, ml100k_split, settings, progress=False)
    assert torch.equal(a.user_embeddings.tensor, b.user_embeddings.tensor)


def test_early_stopping_and_checkpoint(tmp_path, ml100k_snapshot, ml100k_split):
    # lr 0: validation never improves after the first evaluation, patience 1 stops at epoch 2.
    settings = TrainSettings(model="mf", epochs=50, eval_every=1, patience=1, lr=0.0,
                             max_batches=1)
    result = train_model(ml100k_snapshot, ml100k_split, settings, progress=False,
                         checkpoint_dir=tmp_path)
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert result.best_epoch == 1
    assert (result.stop_reason, result.converged) == ("early stopping", True)
    state = torch.load(tmp_path / "best.pt", weights_only=True)
    assert torch.equal(state["user.weight"], result.model.user.weight.detach())


def test_gains_below_min_gain_keep_the_better_state_but_run_out_the_patience(ml100k_snapshot,
                                                                           ml100k_split):
    settings = TrainSettings(model="mf", epochs=6, eval_every=1, patience=2, max_batches=2)
    plain = train_model(ml100k_snapshot, ml100k_split, settings, progress=False)
    curve = [h["valid"]["ndcg@20"] for h in plain.history]
    assert len(curve) == 6 and curve[1] > curve[0] and curve[2] > curve[1]  # still climbing
    # A gain must beat the best by 10x to count: epochs 2 and 3 gain less, so patience 2
    # stops at epoch 3, and the best state (epoch 3's) is the one kept.
    strict = train_model(ml100k_snapshot, ml100k_split,
                         dataclasses.replace(settings, min_gain=9.0), progress=False)
    assert [h["valid"]["ndcg@20"] for h in strict.history] == pytest.approx(curve[:3])
    assert (strict.best_epoch, strict.stop_reason) == (3, "early stopping")
    assert torch.equal(strict.user_embeddings.tensor, train_model(
        ml100k_snapshot, ml100k_split, dataclasses.replace(settings, epochs=3),
        progress=False).user_embeddings.tensor)


def test_event_weights_rescale_the_loss_weights(ml100k_snapshot, ml100k_split):
    base = train_weights(ml100k_snapshot, ml100k_split, None)
    assert torch.allclose(base, torch.as_tensor(ml100k_split.train["weight"].to_numpy(),
                                                dtype=torch.float32))
    # Ratings 1..5 weigh value / 5 by default.
    assert sorted(round(w, 4) for w in torch.unique(base).tolist()) == [0.2, 0.4, 0.6, 0.8, 1.0]
    halved = train_weights(ml100k_snapshot, ml100k_split, {"RATED": 0.5})
    assert torch.allclose(halved, base * 0.5)


def test_settings_accept_the_kgrec_train_config():
    from kgrec.settings import TrainConfig

    cfg = TrainConfig(model="gat", dim=32, epochs=3)
    settings = TrainSettings.from_any(cfg, lr=0.05)
    assert (settings.model, settings.dim, settings.epochs, settings.lr) == ("gat", 32, 3, 0.05)
    with pytest.raises(ValueError, match="unknown model 'sage'"):
        TrainSettings.from_any(cfg, model="sage")
    with pytest.raises(UsageError, match="unknown model 'sage'; expected one of pop, mf, "):
        TrainSettings(model="sage")  # the API's one check, where settings are made
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            train_model(None, None, TrainSettings(device="cuda"), progress=False)  # type: ignore[arg-type]


def test_epoch_cap_is_reported_as_not_converged(tmp_path, ml100k_snapshot, ml100k_split):
    settings = TrainSettings(model="mf", epochs=2, eval_every=1, patience=5, max_batches=2)
    result = train_model(ml100k_snapshot, ml100k_split, settings, progress=False)
    assert (result.stop_reason, result.converged) == ("epoch cap", False)
    assert "NOT converged: stopped by the epoch cap" in result.summary()
    result.save(tmp_path)
    saved = json.loads((tmp_path / "settings.json").read_text())
    assert (saved["stop_reason"], saved["converged"]) == ("epoch cap", False)
    assert TrainResult.load(tmp_path).converged is False


def test_time_limit_stops_within_a_batch(ml100k_snapshot, ml100k_split):
    # 80,808 pairs in batches of 256: 316 batches an epoch; a 1 ms budget ends after one.
    settings = TrainSettings(model="mf", epochs=50, batch_size=256, eval_every=10,
                             max_minutes=1e-3 / 60, max_steps_per_epoch=None)
    result = train_model(ml100k_snapshot, ml100k_split, settings, progress=False)
    assert [(h["epoch"], h["batches"]) for h in result.history] == [(1, 1)]
    assert (result.stop_reason, result.converged) == ("time limit", False)
    assert "stopped by the max_minutes safety net" in result.summary()
    # The curve ends on an evaluated epoch even though epoch 1 is no evaluation epoch.
    assert "valid" in result.history[-1]


def test_xsimgcl_contrastive_training_lowers_the_loss():
    snapshot, split = random_graph(30, 16, draws=300, seed=5)
    common = {"model": "gcn", "dim": 8, "kg_hops": 1, "epochs": 10, "batch_size": 64,
              "lr": 0.05, "text_features": False}
    plain = train_model(snapshot, split, TrainSettings(**common), progress=False)
    result = train_model(snapshot, split, TrainSettings(**common, cl_weight=0.2),
                         progress=False)
    losses = [h["loss"] for h in result.history]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < 0.8 * losses[0]
    # The contrastive term adds to BPR: the first epoch's loss is higher than without it.
    assert losses[0] > plain.history[0]["loss"] + 0.05
    with pytest.raises(UsageError, match=r"needs a model that reads it \(gcn, gat\)"):
        train_model(snapshot, split, TrainSettings(model="mf", cl_weight=0.1), progress=False)


def test_scaled_batch_bounds_the_steps_of_an_epoch():
    settings = TrainSettings(batch_size=4096, lr=0.005, max_steps_per_epoch=32)
    assert scaled_batch(settings, 80_808) == (4096, 0.005)  # ml-100k: 20 steps, unchanged
    assert scaled_batch(settings, 4096 * 32) == (4096, 0.005)
    batch, lr = scaled_batch(settings, 1_000_000)
    assert batch == 31_250 and math.ceil(1_000_000 / batch) == 32
    assert lr == pytest.approx(0.005 * math.sqrt(31_250 / 4096))  # 0.01381
    # 20M pairs: still 32 steps, so an epoch costs 32 propagations of a 20x larger graph.
    assert math.ceil(20_000_000 / scaled_batch(settings, 20_000_000)[0]) == 32
    fixed = TrainSettings(batch_size=4096, lr=0.005, max_steps_per_epoch=None)
    assert scaled_batch(fixed, 1_000_000) == (4096, 0.005)


def test_training_runs_the_scaled_batch(ml100k_snapshot, ml100k_split):
    settings = TrainSettings(model="mf", epochs=1, batch_size=1024, lr=0.01,
                             max_steps_per_epoch=8, eval_every=1)
    result = train_model(ml100k_snapshot, ml100k_split, settings, progress=False)
    assert result.history[0]["batches"] == 8  # 80,808 pairs in 8 steps of 10,101
    assert result.applied["batch_size"] == 10_101
    assert result.applied["lr"] == pytest.approx(0.01 * math.sqrt(10_101 / 1024))
    assert "batch 10,101" in result.summary()


def _cpu_burners(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


@pytest.mark.slow
def test_same_seed_same_metrics_on_a_busy_machine(ml100k_snapshot, ml100k_split):
    """No clock decides anything: two trainings with one seed give identical losses and
    validation metrics, the second while other processes keep every CPU busy."""
    settings = TrainSettings(model="gat", dim=16, layers=2, epochs=2, eval_every=1,
                             batch_size=8192, lr=0.01, text_features=False, kg_every=2)
    assert settings.max_minutes is None
    quiet = train_model(ml100k_snapshot, ml100k_split, settings, progress=False)
    burners = _cpu_burners(2 * os.cpu_count())
    try:
        time.sleep(0.5)
        assert os.getloadavg()[0] >= 0 and all(b.poll() is None for b in burners)
        busy = train_model(ml100k_snapshot, ml100k_split, settings, progress=False)
    finally:
        for b in burners:
            b.kill()
            b.wait()
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in quiet.history]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in busy.history] == strip
    assert [h["valid"]["ndcg@20"] for h in quiet.history if "valid" in h][-1] > 0.05
    assert torch.equal(quiet.product_embeddings.tensor, busy.product_embeddings.tensor)
    assert quiet.applied == busy.applied  # the same threads, batch and learning rate


def test_summary_and_report_say_how_training_ended_in_the_same_words(tmp_path):
    assert how_training_ended("early stopping", None, 12) == \
        "converged by early stopping (best epoch 12)"
    assert how_training_ended("epoch cap", None) == \
        "NOT converged: stopped by the epoch cap before early stopping"
    assert how_training_ended("time limit", 2.5, 7).startswith(
        "NOT converged: stopped by the max_minutes safety net (2.5 min) before early stopping "
        "(best epoch 7); the result depends")
    for reason, minutes, best in (("early stopping", None, 12), ("time limit", 2.5, 7),
                                  ("epoch cap", None, 300)):
        path = tmp_path / f"{best}.json"
        path.write_text(json.dumps({"stop_reason": reason, "best_epoch": best,
                                    "settings": {"max_minutes": minutes}}))
        assert training_line(path) == how_training_ended(reason, minutes, best)
    (tmp_path / "pop.json").write_text(json.dumps({"stop_reason": "not trainable",
                                                   "settings": {}}))
    assert training_line(tmp_path / "pop.json") == "is not trained"
