"""The text-native, inductive GAT: products from their MiniLM text, users from their history,
the sampled-softmax loss; products and users that arrive after training are scored without
retraining."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from kgrec.fusion.text import product_text
from kgrec.gnn.losses import softmax_loss
from kgrec.gnn.models.kgat import KGATModel, history_matrix
from kgrec.gnn.result import TrainResult
from kgrec.gnn.split import make_split
from kgrec.gnn.train import train_model
from kgrec.kg.snapshot import snapshot_from_tables
from kgrec.settings import TrainSettings
from tests.conftest import THEMES

TEXT_NATIVE = {"model": "gat", "item_input": "text", "user_input": "history", "loss": "softmax",
               "dim": 32, "layers": 2, "kg_hops": 1, "epochs": 30, "eval_every": 5,
               "patience": 100, "batch_size": 64, "negatives": 16, "seed": 7}


@pytest.fixture(scope="module")
def themed(themed_tables, text_encoder):
    snapshot = snapshot_from_tables(themed_tables)
    text = text_encoder.encode(product_text(snapshot.products, ["title"]), progress=False)
    return snapshot, make_split(snapshot, kind="temporal"), text, text_encoder


@pytest.fixture(scope="module")
def trained(themed) -> TrainResult:
    snapshot, split, text, _ = themed
    return train_model(snapshot, split, TrainSettings(**TEXT_NATIVE), product_features=text,
                       progress=False)


def _theme_rows(snapshot, theme: int) -> list[int]:
    titles = snapshot.products["title"].tolist()
    return [row for row, title in enumerate(titles) if title.startswith(THEMES[theme])]


def test_history_matrix_weighs_each_users_events() -> None:
    # User 0: products 1, 3, 2 in time order; user 2: product 0; user 1: nothing.
    frame = pd.DataFrame({"user": [0, 2, 0, 0], "product": [1, 0, 2, 3], "time": [0, 5, 9, 4]})
    dense = history_matrix(frame, num_users=3, num_items=4).to_dense()
    third = 1 / 3
    assert torch.allclose(dense, torch.tensor([[0, third, third, third], [0, 0, 0, 0],
                                               [1, 0, 0, 0]]))
    recent = history_matrix(frame, 3, 4, half_life=1.0).to_dense()  # weights 1/4, 1/2, 1
    assert torch.allclose(recent[0], torch.tensor([0, 0.25, 1, 0.5]) / 1.75)


def test_softmax_loss_is_the_cross_entropy_of_the_positive_among_candidates() -> None:
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    positives = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    candidates = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    loss = softmax_loss(users, positives, candidates, torch.tensor([5, 9]),
                        torch.tensor([7, 9]), temperature=0.5, weight=torch.tensor([1.0, 3.0]))
    # Row 0: positive 2.0 against 0.0 and 2.0. Row 1: positive 1.6 against 2.0 (candidate 9
    # is its own positive: left out).
    row0 = -2.0 + torch.logsumexp(torch.tensor([2.0, 0.0, 2.0]), 0)
    row1 = -1.6 + torch.logsumexp(torch.tensor([1.6, 2.0]), 0)
    assert float(loss) == pytest.approx(float((row0 + 3 * row1) / 4), rel=1e-6)


def test_text_native_ranks_far_above_popularity(themed, trained) -> None:
    snapshot, split, text, _ = themed
    pop = train_model(snapshot, split, TrainSettings(model="pop"), progress=False)
    ndcg = [h["valid"]["ndcg@20"] for h in trained.history if "valid" in h]
    assert max(ndcg) > 1.5 * pop.history[0]["valid"]["ndcg@20"], ndcg
    users, items = trained.model.embed()
    assert torch.allclose(users.norm(dim=1), torch.ones(len(users)), atol=1e-5)  # cosine


def test_a_product_added_after_training_is_scored_by_its_text(themed, trained) -> None:
    snapshot, _, _, encoder = themed
    model: KGATModel = trained.model  # type: ignore[assignment]
    new = model.embed_new_products(encoder.encode(
        ["waterproof hiking boots model 9", "corporate tax law textbook model 9"],
        progress=False))
    users, _ = model.embed()
    boots_fans = [u for u in range(30) if u % 3 == 0]  # theme 0 (boots) among their tastes
    tax_fans = [u for u in range(30) if u % 3 == 2]  # theme 2 (tax law)
    scores = users @ new.t()
    assert scores.abs().min() > 0
    # Each new product ranks higher with the users whose taste its text matches.
    assert scores[boots_fans, 0].mean() > scores[tax_fans, 0].mean() + 0.1
    assert scores[tax_fans, 1].mean() > scores[boots_fans, 1].mean() + 0.1


def test_a_user_added_after_training_is_scored_by_their_history(themed, trained) -> None:
    snapshot = themed[0]
    model: KGATModel = trained.model  # type: ignore[assignment]
    boots, tax = _theme_rows(snapshot, 0), _theme_rows(snapshot, 2)
    _, items = model.embed()
    new = model.embed_new_users([torch.tensor(boots[:2]), torch.tensor(tax[:2])])
    scores = new @ items.t()
    assert scores.abs().min() > 0
    # Their scores follow the history: boots products for the first, tax law for the second,
    # and they change when the history does.
    assert scores[0, boots[2:]].mean() > scores[0, tax[2:]].mean() + 0.1
    assert scores[1, tax[2:]].mean() > scores[1, boots[2:]].mean() + 0.1
    # A trained user's history folded in lands near the embedding training gave them.
    users, _ = model.embed()
    split = themed[1]
    again = model.embed_users(history_matrix(split.train, split.num_users, split.num_items))
    assert float((again * users).sum(1).min()) > 0.9
    # Their history grown by the validation events, without retraining: the scores move.
    grown = model.embed_users(history_matrix(split.history("test"), split.num_users,
                                             split.num_items))
    assert 0.01 < float((grown - again).norm(dim=1).mean()) < 1.0


def test_text_inputs_need_text_and_ids_stay_the_default() -> None:
    settings = TrainSettings()
    assert (settings.item_input, settings.user_input, settings.loss) == ("id", "id", "bpr")
    with pytest.raises(ValueError, match="unknown loss"):
        TrainSettings.from_any(None, loss="hinge")


def test_fusion_on_the_text_native_gat_is_never_below_it_on_validation(themed,
                                                                        trained) -> None:
    from kgrec.fusion.fit import Sources, build_text_side, fit_job
    from kgrec.fusion.text import text_confidence

    snapshot, split, text, _ = themed
    sides = {"profile": build_text_side("profile", split, text)}
    sources = Sources(trained.user_embeddings.tensor, trained.product_embeddings.tensor,
                      sides, split.item_counts(), text_confidence(snapshot.products))
    fit = fit_job("full", sources, split, grid=(0.0, 0.5, 1.0), pivots=(20.0,))
    assert fit.gnn_only > 0.3  # the text-native GAT alone, cosine scores
    assert fit.valid_metric >= fit.gnn_only
