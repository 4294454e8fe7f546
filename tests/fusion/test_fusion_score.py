"""fusion.blend, score, tower and alpha: normalisation, blending, alpha functions and their
fit, text tower."""

from __future__ import annotations

import math

import pytest
import torch

from kgrec.errors import UsageError
from kgrec.fusion.alpha import AlphaFunction, fit_alpha_function
from kgrec.fusion.blend import Blend, normalise, rank_percentile, zscore
from kgrec.fusion.candidates import item_degree
from kgrec.fusion.fit import Sources
from kgrec.fusion.score import FusedScorer
from kgrec.fusion.tower import TextTower, train_text_tower


def test_zscore_hand_computed() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0, 6.0], [5.0, 5.0, 5.0, 5.0]])
    # row 0: mean 3, population std sqrt((4+1+0+9)/4) = sqrt(3.5)
    s = math.sqrt(3.5)
    expected = torch.tensor([[-2 / s, -1 / s, 0.0, 3 / s], [0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(zscore(x), expected)


def test_rank_percentile_hand_computed() -> None:
    x = torch.tensor([[0.3, -1.0, 7.0, 0.2]])
    torch.testing.assert_close(rank_percentile(x), torch.tensor([[0.75, 0.25, 1.0, 0.5]]))
    # Against a 2-value reference sketch: share of the reference <= x.
    ref = torch.tensor([[0.0, 1.0]])
    torch.testing.assert_close(rank_percentile(x, ref), torch.tensor([[0.5, 0.0, 1.0, 0.5]]))
    with pytest.raises(ValueError, match="normalise must be one of"):
        normalise(x, "minmax")


def test_blend_scalar_and_per_item() -> None:
    g = torch.tensor([[1.0, 0.0, -1.0]])
    t = torch.tensor([[0.0, 2.0, 4.0]])
    torch.testing.assert_close(Blend(0.25).mix(g, t), torch.tensor([[0.25, 1.5, 2.75]]))
    per_item = torch.tensor([1.0, 0.5, 0.0])
    torch.testing.assert_close(Blend(per_item).mix(g, t), torch.tensor([[1.0, 1.0, 4.0]]))
    with pytest.raises(UsageError, match="alpha must lie in"):
        Blend(1.5)
    with pytest.raises(UsageError, match="alpha values must lie in"):
        Blend(torch.tensor([0.5, -0.1]))
    with pytest.raises(UsageError, match="normalise must be one of"):
        Blend(0.5, "minmax")
    # combine: normalised per row, then mixed; a constant 0 or 1 is that source, raw.
    torch.testing.assert_close(Blend(0.25).combine(g, t),
                               0.25 * zscore(g) + 0.75 * zscore(t))
    torch.testing.assert_close(Blend(0.0).combine(g, t), t)
    torch.testing.assert_close(Blend(0.0).combine(g, t, raw_single=False), zscore(t))
    # A per-product alpha read at the columns scored.
    cols = torch.tensor([2, 0])
    torch.testing.assert_close(Blend(per_item).combine(g[:, cols], t[:, cols], cols),
                               Blend(torch.tensor([0.0, 1.0])).combine(g[:, cols], t[:, cols]))


def test_fused_scorer_matches_hand_blend() -> None:
    gu, gi = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    tu, ti = torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 3.0], [0.0, 0.0], [0.0, 0.0]])
    scorer = FusedScorer(gu, gi, tu, ti, blend=Blend(0.5, "zscore"))
    fused, g, t = scorer.score(torch.tensor([0]))
    torch.testing.assert_close(g, torch.tensor([[1.0, 0.0, 2.0]]))
    torch.testing.assert_close(t, torch.tensor([[3.0, 0.0, 0.0]]))
    expected = 0.5 * zscore(g) + 0.5 * zscore(t)
    torch.testing.assert_close(fused, expected)
    # Item 0 is good on both sides: the fused order is 0 > 2 > 1.
    assert fused.argsort(descending=True).tolist() == [[0, 2, 1]]
    # alpha = 1 is the GNN's own ranking.
    only_gnn = FusedScorer(gu, gi, tu, ti, blend=Blend(1.0))(torch.tensor([0]))
    torch.testing.assert_close(only_gnn, g)


@pytest.mark.parametrize("per_item", [False, True])
def test_one_matmul_zscore_blend_equals_explicit(per_item: bool) -> None:
    gen = torch.Generator().manual_seed(5)
    n = 300
    alpha = AlphaFunction(0.8, 0.0, 20.0)(torch.randint(0, 60, (n,), generator=gen)) \
        if per_item else 0.35
    scorer = FusedScorer(torch.randn(20, 8, generator=gen), torch.randn(n, 8, generator=gen) + 1,
                         torch.randn(20, 6, generator=gen), torch.randn(n, 6, generator=gen),
                         blend=Blend(alpha))
    users, items = torch.arange(20), torch.arange(0, n, 3)
    explicit = scorer.score(users, items)[0]
    torch.testing.assert_close(scorer.fused_zscore(users, items), explicit, atol=1e-5,
                               rtol=1e-5)
    g, t = scorer.pair_components(users[:2], items[None, :4].repeat(2, 1))
    torch.testing.assert_close(g, scorer.components(users[:2], items[:4])[0])
    torch.testing.assert_close(t, scorer.components(users[:2], items[:4])[1])


def test_constant_fit_picks_best_on_constructed_curve() -> None:
    grid = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0]
    fit = fit_alpha_function(lambda fn: 1.0 - (fn.a_head - 0.35) ** 2, grid=grid,
                             item_dependent=False)
    assert fit.best.a_head == 0.3  # 0.3 and 0.4 tie at 1 - 0.05^2; the smaller wins
    assert fit.best_metric == pytest.approx(1.0 - 0.05**2)
    assert [a for a, _ in fit.constant_curve] == grid
    # ties resolve to the smallest alpha, and an item-dependent tie keeps the constant
    assert fit_alpha_function(lambda fn: 1.0, grid=[0.7, 0.2]).best == AlphaFunction.constant(0.2)


def test_fit_alpha_on_ranking_problem() -> None:
    # Two sources, each right about one half of the items; the true relevance is their sum,
    # so the best alpha is in the middle and both ends are worse.
    torch.manual_seed(0)
    g = torch.randn(200, 50)
    t = torch.randn(200, 50)
    truth = (zscore(g) + zscore(t)).topk(5, dim=1).indices

    def hit_rate(alpha: float) -> float:
        top = Blend(alpha).mix(zscore(g), zscore(t)).topk(5, dim=1).indices
        return float((top.unsqueeze(2) == truth.unsqueeze(1)).any(2).float().mean())

    fit = fit_alpha_function(lambda fn: hit_rate(fn.a_head), grid=[0.0, 0.25, 0.5, 0.75, 1.0],
                             item_dependent=False)
    assert fit.best == AlphaFunction.constant(0.5)
    assert fit.best_metric == pytest.approx(1.0)
    curve = dict(fit.constant_curve)
    assert curve[0.0] < 0.6 and curve[1.0] < 0.6


def test_alpha_function_hand_computed_and_bounded() -> None:
    deg = torch.tensor([0, 1, 9, 99, 1000])
    ramp = torch.tensor([0.0, math.log(2) / math.log(100), math.log(10) / math.log(100), 1, 1])
    fn = AlphaFunction(a_head=0.8, a_cold=0.2, pivot=99)
    torch.testing.assert_close(fn(deg), 0.2 + 0.6 * ramp)
    # Text confidence: no text -> GNN only (1.0), half the text -> half the text share.
    conf = torch.tensor([0.0, 0.5, 1.0, 1.0, 1.0])
    expected = 1 - (1 - (0.2 + 0.6 * ramp)) * conf
    torch.testing.assert_close(fn(deg, conf), expected)
    assert AlphaFunction.constant(0.3).values(deg, conf) == 0.3
    many = torch.randint(0, 10_000, (1000,))
    for a_head in (0.0, 0.5, 1.0):
        for a_cold in (0.0, 1.0):
            values = AlphaFunction(a_head, a_cold, 7.0)(many, torch.rand(1000))
            assert float(values.min()) >= 0.0 and float(values.max()) <= 1.0
    for bad in ({"a_head": 1.2}, {"a_head": 0.5, "a_cold": -0.1}, {"a_head": 0.5, "pivot": 0}):
        with pytest.raises(ValueError):
            AlphaFunction(**bad)
    assert AlphaFunction.from_dict(fn.to_dict()) == fn
    edges = torch.tensor([[0, 1, 1, 2], [3, 3, 0, 3]])
    assert item_degree(edges, 5).tolist() == [1, 0, 0, 3, 0]


def test_alpha_function_fit_finds_an_item_dependent_optimum() -> None:
    # A synthetic metric that is best when cold products lean on text (a_cold 0.2) and
    # popular ones on the graph (a_head 0.9): the coordinate search must find both.
    degree = torch.tensor([0, 0, 2, 50, 400])

    def metric(fn: AlphaFunction) -> float:
        target = AlphaFunction(0.9, 0.2, 30.0, False)(degree)
        return -float((fn(degree) - target).abs().sum())

    fit = fit_alpha_function(metric, grid=[round(0.1 * i, 1) for i in range(11)],
                             pivots=(3.0, 30.0))
    assert (fit.best.a_head, fit.best.a_cold, fit.best.pivot) == (0.9, 0.2, 30.0)
    assert fit.best_metric == pytest.approx(0.0, abs=1e-6)
    assert fit.best_metric > fit.best_constant[1]
    assert len(fit.constant_curve) == 11 and len(fit.curve) > 11


def test_text_tower_learns_text_defined_taste() -> None:
    # Items carry a one-hot "genre" in their text vector; users like one genre each.
    # After BPR the tower must rank an unseen item of the user's genre (never in training)
    # above items of other genres: the cold-start case.
    torch.manual_seed(0)
    n_genres, per_genre, n_users = 4, 30, 40
    genre = torch.arange(n_genres).repeat_interleave(per_genre)
    text = torch.nn.functional.one_hot(genre, n_genres).float() + 0.05 * torch.randn(
        len(genre), n_genres
    )
    user_genre = torch.arange(n_users) % n_genres
    cold = torch.arange(0, len(genre), per_genre)  # first item of each genre never seen
    users, items = [], []
    for u in range(n_users):
        pool = torch.nonzero(genre == user_genre[u]).flatten()
        pool = pool[~torch.isin(pool, cold)][:15]
        users += [u] * len(pool)
        items += pool.tolist()
    edges = torch.tensor([users, items])
    result = train_text_tower(
        edges, text, n_users, dim=8, hidden=16, epochs=30, batch_size=64, progress=False
    )
    assert result.losses[-1] < 0.7 * result.losses[0]
    scores = result.user_vectors @ result.item_vectors[cold].T  # [users, genres]
    accuracy = float((scores.argmax(1) == user_genre).float().mean())
    assert accuracy >= 0.95


def test_text_tower_steps_touch_only_their_users() -> None:
    # Users 3..9 have no events: a step's cost and updates cover its batch's users only, so
    # their rows stay exactly as initialised (dense Adam's weight decay moved every row).
    edges = torch.tensor([[0, 0, 1, 1, 2, 2], [0, 1, 1, 2, 2, 3]])
    text = torch.eye(4)
    torch.manual_seed(5)
    initial = TextTower(4, 10, dim=8, hidden=0).user_emb.weight.detach().clone()
    result = train_text_tower(edges, text, 10, dim=8, hidden=0, epochs=5, batch_size=4,
                              seed=5, progress=False)
    assert torch.equal(result.user_vectors[3:], initial[3:])
    assert not torch.allclose(result.user_vectors[:3], initial[:3])


@pytest.mark.parametrize("kind", ["given", "temporal"])
def test_fusion_fit_never_reads_test_pairs(kind: str) -> None:
    """The fit of a job depends on train and valid pairs only: replacing every test pair
    changes nothing, while changing the validation pairs changes the curve (also when the
    profile is rebuilt per stage, as in a time-ordered split)."""
    import pandas as pd

    from kgrec.fusion.fit import TextSide, fit_job
    from kgrec.gnn.split import Split

    gen = torch.Generator().manual_seed(3)
    n_users, n_items = 40, 60
    rows = [(u, int(i)) for u in range(n_users)
            for i in torch.randperm(n_items, generator=gen)[:9]]
    frame = pd.DataFrame(rows, columns=["user", "product"]).assign(weight=1.0, value=1.0, time=-1)
    train, valid, test = frame.iloc[0::3], frame.iloc[1::3], frame.iloc[2::3]
    gu, gi = torch.randn(n_users, 8, generator=gen), torch.randn(n_items, 8, generator=gen)
    side = TextSide("profile", torch.randn(n_users, 5, generator=gen),
                    torch.randn(n_items, 5, generator=gen))
    degree = torch.bincount(torch.as_tensor(train["product"].to_numpy()), minlength=n_items)
    conf = torch.ones(n_items)

    def fit(split: Split):
        job = fit_job("tail", Sources(gu, gi, {"profile": side}, degree, conf), split,
                      grid=(0.0, 0.5, 1.0), pivots=(5.0,))
        return job.to_dict()

    base = fit(Split(train, valid, test, n_users, n_items, kind))
    other_test = test.assign(product=(test["product"] + 7) % n_items)
    assert fit(Split(train, valid, other_test, n_users, n_items, kind)) == base
    assert fit(Split(train, valid, test.iloc[:0], n_users, n_items, kind)) == base
    other_valid = valid.assign(product=(valid["product"] + 7) % n_items)
    assert fit(Split(train, other_valid, test, n_users, n_items, kind)) != base
    for point in base["by_side"]["profile"]["constant_curve"]:
        assert 0.0 <= point[0] <= 1.0


def test_profile_side_is_rebuilt_from_the_history_of_each_stage() -> None:
    """Validation ranks with the train profile; the test of a time-ordered split with the
    train + validation profile (the validation pair is the latest known event)."""
    import pandas as pd

    from kgrec.fusion.fit import build_text_side
    from kgrec.gnn.split import Split

    def frame(rows):
        return pd.DataFrame(rows, columns=["user", "product", "time"]).assign(weight=1.0,
                                                                             value=1.0)

    train, valid, test = frame([(0, 0, 1), (0, 1, 2)]), frame([(0, 2, 3)]), frame([(0, 3, 4)])
    items = torch.eye(4)
    split = Split(train, valid, test, 1, 4, "temporal")
    side = build_text_side("profile", split, items, half_lives=(1.0,))
    unit = torch.nn.functional.normalize
    torch.testing.assert_close(side.at_stage(split, "valid").users[0],
                               unit(torch.tensor([0.5, 1.0, 0.0, 0.0]), dim=0))
    torch.testing.assert_close(side.at_stage(split, "test").users[0],
                               unit(torch.tensor([0.25, 0.5, 1.0, 0.0]), dim=0))
    shuffled = Split(train, valid, test, 1, 4, "random")
    torch.testing.assert_close(side.at_stage(shuffled, "test").users, side.users)


def test_profile_half_life_is_chosen_on_validation() -> None:
    """Users whose validation product is like their latest training product get the short
    half-life; users whose validation product is like their whole history get none."""
    import pandas as pd

    from kgrec.fusion.fit import build_text_side
    from kgrec.gnn.split import Split

    def frame(rows):
        return pd.DataFrame(rows, columns=["user", "product", "time"]).assign(weight=1.0,
                                                                             value=1.0)

    # Products 0-3 are four text directions; 4 and 5 mix them.
    items = torch.nn.functional.normalize(torch.tensor(
        [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 0.1, 0.0], [0.9, 1.0, 1.0],
         [0.05, 0.05, 1.0]]), dim=1)
    history = [(u, p, t) for u in range(3) for t, p in enumerate((0, 1, 2))]
    follows_last = Split(frame(history), frame([(u, 5, 9) for u in range(3)]),
                         frame([]), 3, 6, "temporal")
    likes_all = Split(frame(history), frame([(u, 4, 9) for u in range(3)]),
                      frame([]), 3, 6, "temporal")
    assert build_text_side("profile", follows_last, items, half_lives=(0.0, 0.5)
                           ).half_life_events == 0.5
    assert build_text_side("profile", likes_all, items, half_lives=(0.5, 0.0)
                           ).half_life_events is None
