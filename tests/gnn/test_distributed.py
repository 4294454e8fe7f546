"""Data-parallel training (2 gloo processes) equals the single process on a small graph.

Tolerance: the ranks' gradients are summed by an all-reduce in another order than one
process sums them, so results agree up to float32 rounding, amplified by a few Adam steps:
max abs difference < 1e-4 on embeddings and loss curve (measured ~1e-7, see the report)."""

from __future__ import annotations

import pytest
import torch

from kgrec.gnn.replica import DistributedReplica
from kgrec.gnn.split import Split
from kgrec.gnn.train import train_model
from kgrec.settings import TrainSettings
from tests.gnn.conftest import random_graph

pytestmark = pytest.mark.slow  # several processes per test: the full suite only

TOLERANCE = 1e-4


def small_split():
    """30 users x 16 products; every tenth pair validates (it stays a training pair: only
    the equality of the two runs matters here)."""
    snapshot, split = random_graph(30, 16, draws=300, seed=5)
    valid = split.train.iloc[::10]
    return snapshot, Split(split.train, valid, valid.iloc[:0], 30, 16, "given")


# (lightgcn over two processes runs in the CLI test below.)
@pytest.mark.parametrize("model,extra", [
    # Whole-batch contrastive term; parameters without gradients (no attention).
    ("gcn", {"cl_weight": 0.1}),
    # Dropout on attention coefficients: the same masks on every rank.
    ("gat", {"kg_dropout": 0.3}),
])
def test_two_processes_equal_one(model, extra):
    from kgrec.gnn.distributed import train_distributed

    snapshot, split = small_split()
    # 3 batches an epoch, the last one of odd size (rank 0 takes one row more).
    settings = TrainSettings(model=model, dim=8, layers=2, kg_hops=1, epochs=3, batch_size=101,
                             lr=0.05, text_features=False, device="cpu", seed=7, eval_every=1,
                             **extra)
    one = train_model(snapshot, split, settings, progress=False)
    two = train_distributed(snapshot, split, settings, 2, progress=False)
    diff = max((one.user_embeddings.tensor - two.user_embeddings.tensor).abs().max(),
               (one.product_embeddings.tensor - two.product_embeddings.tensor).abs().max())
    losses = torch.tensor([[h["loss"] for h in r.history] for r in (one, two)])
    loss_diff = (losses[0] - losses[1]).abs().max()
    print(f"{model}: max |embedding diff| {diff:.2e}, max |loss diff| {loss_diff:.2e}")
    assert diff < TOLERANCE and loss_diff < TOLERANCE
    assert [h["epoch"] for h in two.history] == [1, 2, 3]
    # Rank 0's evaluations steer every rank: same curve, same restored epoch.
    ndcg = torch.tensor([[h["valid"]["ndcg@20"] for h in r.history] for r in (one, two)])
    assert (ndcg[0] - ndcg[1]).abs().max() < 1e-3
    assert two.best_epoch == one.best_epoch
    # What the run derived is rank 0's: the global batch and rate, each rank's threads.
    assert {k: two.applied[k] for k in ("batch_size", "lr")} == {"batch_size": 101, "lr": 0.05}
    assert two.applied["threads"] == max(1, one.applied["threads"] // 2)


def test_ranks_split_a_batch_like_tensor_split():
    class Fake(DistributedReplica):
        def __init__(self, rank: int, world: int) -> None:
            self.rank, self.world = rank, world

    for n in (0, 1, 7, 8):
        bounds = [Fake(rank, 3).bounds(n) for rank in range(3)]
        assert [hi - lo for lo, hi in bounds] == [len(c) for c in torch.arange(n).tensor_split(3)]
        assert [lo for lo, _ in bounds] == [0, bounds[0][1], bounds[1][1]] and bounds[2][1] == n


def test_cli_trains_over_two_processes(tmp_path, capsys):
    from kgrec.cli import main
    from kgrec.gnn.result import TrainResult

    snapshot, _ = small_split()
    snapshot.save(tmp_path / "snap")
    common = ["train", "--model", "lightgcn", "--snapshot", str(tmp_path / "snap"), "--split",
              "random", "--epochs", "2", "--eval-every", "1", "--batch-size", "64", "--dim", "8",
              "--device", "cpu", "--out-dir", str(tmp_path / "runs"), "--no-progress"]
    assert main([*common, "--run-name", "one"]) == 0
    assert main([*common, "--run-name", "two", "--nproc", "2"]) == 0
    assert "Run written to" in capsys.readouterr().out
    one, two = (TrainResult.load(tmp_path / "runs" / name) for name in ("one", "two"))
    assert (one.user_embeddings.tensor - two.user_embeddings.tensor).abs().max() < TOLERANCE
    assert (tmp_path / "runs" / "two" / "checkpoints" / "last.pt").exists()
