"""The models' propagation: PyG's reference layers, the knowledge-graph attention model."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import torch
from torch_geometric.nn import GCNConv, LightGCN
from torch_geometric.utils import softmax as pyg_softmax

from kgrec.errors import UsageError
from kgrec.gnn.edge_ops import EdgePattern
from kgrec.gnn.graph import (
    bipartite_edge_index,
    homogeneous_graph,
    normalized_adjacency,
    training_graph,
)
from kgrec.gnn.models import MODELS, build_model
from kgrec.gnn.models.base import INIT_STD, SymmetricSpmm
from kgrec.gnn.models.kg_attention import knowledge_rounds
from kgrec.gnn.models.kgat import KGATModel
from kgrec.gnn.models.lightgcn import LightGCNModel
from kgrec.gnn.models.mf import MFModel
from kgrec.gnn.split import Split
from kgrec.settings import MODEL_NAMES, TrainSettings
from tests.gnn.conftest import random_graph, tiny_snapshot


def test_symmetric_spmm_matches_gcnconv_forward_and_backward(ml100k_snapshot, ml100k_split):
    graph = homogeneous_graph(training_graph(ml100k_snapshot, ml100k_split))
    n = graph.num_nodes
    reference = GCNConv(8, 8, add_self_loops=False, normalize=True, bias=False)
    x1 = torch.randn(n, 8, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    expected = reference(x1, graph.edge_index)
    got = SymmetricSpmm.apply(normalized_adjacency(graph.edge_index, n), reference.lin(x2))
    assert torch.allclose(got, expected, atol=1e-5)
    weight = torch.randn(n, 8)
    (expected * weight).sum().backward()
    (got * weight).sum().backward()
    assert torch.allclose(x1.grad, x2.grad, atol=1e-5)


def test_lightgcn_matches_pyg_lightgcn(ml100k_split):
    split = ml100k_split
    edge_index = bipartite_edge_index(split)
    adj = normalized_adjacency(edge_index, split.num_users + split.num_items)
    model = LightGCNModel(split.num_users, split.num_items, adj, dim=16, layers=3)
    reference = LightGCN(split.num_users + split.num_items, 16, 3)
    reference.embedding.weight.data.copy_(model.lightgcn.embedding.weight.data)
    users, items = model.embed()
    expected = reference.get_embedding(edge_index)
    assert users.shape == (943, 16) and items.shape == (1682, 16)
    assert torch.allclose(torch.cat([users, items]), expected, atol=1e-5)


def test_no_optional_sparse_extensions_needed():
    import torch_geometric.typing as pyg_typing

    # Propagation is torch.sparse CSR / plain scatter: no pyg-lib or torch-sparse installed.
    assert not pyg_typing.WITH_PYG_LIB and not pyg_typing.WITH_TORCH_SPARSE


def test_symmetric_spmm_keeps_the_input_dtype():
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    adj = normalized_adjacency(edge_index, 3)
    x = torch.randn(3, 4, dtype=torch.bfloat16, requires_grad=True)
    out = SymmetricSpmm.apply(adj, x)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.bfloat16
    dense = adj.to_dense()
    assert torch.allclose(out, dense @ x.detach().float())


def test_every_id_embedding_starts_at_the_papers_scale(ml100k_split):
    """LightGCN must not keep PyG's xavier default (std 0.027 here, 0.005 on Gowalla): it
    stalls training (ml-100k test NDCG@20 0.097 against 0.135). MF starts from RecBole's
    BPR initialisation, xavier-normal: std sqrt(2 / (rows + dim)) per table."""
    import math

    split = ml100k_split
    adj = normalized_adjacency(bipartite_edge_index(split), split.num_users + split.num_items)
    torch.manual_seed(0)
    lightgcn = LightGCNModel(split.num_users, split.num_items, adj, dim=64, layers=3)
    mf = MFModel(split.num_users, split.num_items, 64)
    expected = [(lightgcn.lightgcn.embedding.weight, INIT_STD),
                (mf.user.weight, math.sqrt(2 / (943 + 64))),
                (mf.item.weight, math.sqrt(2 / (1682 + 64)))]
    for weight, std in expected:
        assert abs(float(weight.std()) - std) < 0.05 * std
        assert abs(float(weight.mean())) < 0.005
    assert abs(float(MFModel(943, 1682, 64, init_std=0.01).user.weight.std()) - 0.01) < 5e-4


def _kgat(snapshot, split, **kwargs) -> KGATModel:
    graph = homogeneous_graph(training_graph(snapshot, split), snapshot.relations)
    adj = normalized_adjacency(bipartite_edge_index(split), split.num_users + split.num_items)
    return KGATModel(graph, adj, split.item_counts(), **kwargs)


@pytest.fixture(scope="module")
def ml100k_kgat(ml100k_snapshot, ml100k_split) -> KGATModel:
    torch.manual_seed(0)
    model = _kgat(ml100k_snapshot, ml100k_split, dim=16, kg_hops=2)
    with torch.no_grad():  # relation embeddings and weights away from their uniform start
        model.rel_emb.normal_(1.0, 0.5)
        model.rel_weight.normal_(0.0, 1.0)
    return model.eval()


def test_knowledge_rounds_walk_back_from_products(ml100k_snapshot, ml100k_split):
    graph = homogeneous_graph(training_graph(ml100k_snapshot, ml100k_split),
                              ml100k_snapshot.relations)
    first, last = knowledge_rounds(graph, hops=2)
    product, entity = graph.node_types.index("product"), graph.node_types.index("entity")
    heads_last = graph.node_type[graph.edge_index[1, last]]
    assert (heads_last == product).all()
    # 1,598 linked movies + 2,893 genre memberships point into products.
    assert int(last.sum()) == 1598 + 2893
    # Round 1 feeds the movies' entities and the genres from their neighbours (and products).
    heads_first = graph.node_type[graph.edge_index[1, first]]
    assert set(heads_first.unique().tolist()) <= {product, entity,
                                                  graph.node_types.index("category")}
    names = [graph.edge_types[t] for t in graph.edge_type[first | last].unique().tolist()]
    assert "interacts" not in names and "rev_interacts" not in names
    assert int(first.sum()) > 90_000


def _round_inputs(model: KGATModel) -> list[torch.Tensor]:
    """The states each attention round reads: the node space, then each round's output."""
    x = model.graph_states(model.item_states()).detach()
    inputs = []
    for index in range(len(model.rounds)):
        inputs.append(x)
        x = model.attention_round(index, x)
    return inputs


def test_attention_normalises_per_head_and_relation(ml100k_kgat):
    model = ml100k_kgat
    for index, (rnd, x) in enumerate(zip(model.rounds, _round_inputs(model), strict=True)):
        pi, beta = model.attention_weights(index, x)
        per_group = torch.zeros(rnd.num_groups).index_add_(0, rnd.tails.row, pi.detach())
        assert torch.allclose(per_group, torch.ones(rnd.num_groups), atol=1e-5)
        per_head = torch.zeros(rnd.num_heads).index_add_(0, rnd.group_head, beta.detach())
        assert torch.allclose(per_head, torch.ones(rnd.num_heads), atol=1e-5)
        # Attention is not uniform: tails of one (head, relation) get different weights.
        sizes = torch.bincount(rnd.tails.row, minlength=rnd.num_groups)
        big = sizes[rnd.tails.row] > 1
        assert float(pi[big].std()) > 1e-3


def _formula_knowledge(model: KGATModel, graph, x: torch.Tensor,
                       hops: int = 2) -> torch.Tensor:
    """The module docstring's attention formula with plain gathers over every node: the new
    state of every node of ``x`` after the rounds (rows that no round updates keep theirs)."""
    users, num_rel = model.num_users, len(graph.edge_types)
    expected = x
    for mask in knowledge_rounds(graph, hops):
        tail, head = graph.edge_index[:, mask] - users
        rel = graph.edge_type[mask]
        logits = (expected[head] * model.rel_emb[rel] * expected[tail]).sum(-1) / 4.0
        _, group = torch.unique(head * num_rel + rel, return_inverse=True)
        pi = pyg_softmax(logits, group)
        per_group = torch.zeros(int(group.max()) + 1, 16).index_add_(
            0, group, pi[:, None] * expected[tail])
        group_head = torch.zeros(per_group.shape[0], dtype=torch.long)
        group_rel = torch.zeros_like(group_head)
        group_head[group], group_rel[group] = head, rel
        beta = pyg_softmax(model.rel_weight[group_rel], group_head)
        heads = torch.zeros_like(expected).index_add_(0, group_head, beta[:, None] * per_group)
        is_head = torch.zeros(len(expected), 1)
        is_head[head] = 1.0
        expected = heads * is_head + expected * (1 - is_head)
    return expected


def _linked_products(graph, model: KGATModel) -> torch.Tensor:
    return torch.unique(graph.edge_index[1, knowledge_rounds(graph, 2)[-1]]) - model.num_users


def test_knowledge_matches_the_attention_formula_over_the_whole_graph(ml100k_snapshot,
                                                                       ml100k_split, ml100k_kgat):
    """The compact rounds (each reads only the rows the round before wrote, and scores only
    the groups of several tails) equal the formula evaluated over every node."""
    model = ml100k_kgat
    graph = homogeneous_graph(training_graph(ml100k_snapshot, ml100k_split),
                              ml100k_snapshot.relations)
    x = model.graph_states(model.item_states()).detach()
    with torch.no_grad():
        expected = _formula_knowledge(model, graph, x)
        got = model.knowledge(x)
    linked = _linked_products(graph, model)
    assert got.shape == (1682, 16)
    assert torch.allclose(got[linked], expected[linked], atol=1e-5)
    unlinked = torch.ones(1682, dtype=torch.bool)
    unlinked[linked] = False
    assert float(got[unlinked].abs().sum()) == 0.0


def test_knowledge_gradients_match_the_formula(ml100k_snapshot, ml100k_split, ml100k_kgat):
    """Leaving the groups of one tail unscored changes no gradient either: the node states'
    and the relation embeddings' gradients equal those of the formula."""
    model = ml100k_kgat
    graph = homogeneous_graph(training_graph(ml100k_snapshot, ml100k_split),
                              ml100k_snapshot.relations)
    linked = _linked_products(graph, model)
    weight = torch.randn(len(linked), 16, generator=torch.Generator().manual_seed(0))
    grads = []
    for knowledge in (lambda x: model.knowledge(x),
                      lambda x: _formula_knowledge(model, graph, x)[:1682]):
        x = model.graph_states(model.item_states()).detach().requires_grad_()
        model.zero_grad()
        (knowledge(x)[linked] * weight).sum().backward()
        grads.append((x.grad, model.rel_emb.grad.clone(), model.rel_weight.grad.clone()))
    for got, expected in zip(*grads, strict=True):
        assert float(expected.abs().max()) > 0
        assert torch.allclose(got, expected, atol=1e-5)


def test_entity_table_holds_only_the_nodes_one_round_reads(ml100k_snapshot, ml100k_split):
    """With one round only the products' knowledge-graph neighbours get an embedding, and
    the summaries equal the formula over every node whatever the other nodes' states."""
    torch.manual_seed(0)
    model = _kgat(ml100k_snapshot, ml100k_split, dim=16, kg_hops=1).eval()
    graph = homogeneous_graph(training_graph(ml100k_snapshot, ml100k_split),
                              ml100k_snapshot.relations)
    (mask,) = knowledge_rounds(graph, hops=1)
    items = model.num_items
    tails = torch.unique(graph.edge_index[0, mask]) - model.num_users
    neighbours = tails[tails >= items]
    all_entities = graph.num_nodes - model.num_users - items
    assert model.entity.weight.shape == (len(neighbours), 16)
    assert len(neighbours) < all_entities / 10
    full = torch.randn(items + all_entities, 16)  # the nodes no round reads: noise
    full[:items] = model.item_states().detach()
    full[neighbours] = model.entity.weight.detach()
    with torch.no_grad():
        expected = _formula_knowledge(model, graph, full, hops=1)[:items]
        got = model.knowledge(model.graph_states(model.item_states()))
    linked = torch.unique(graph.edge_index[1, mask]) - model.num_users
    assert torch.allclose(got[linked], expected[linked], atol=1e-5)


def test_gcn_variant_averages_uniformly(ml100k_snapshot, ml100k_split):
    model = _kgat(ml100k_snapshot, ml100k_split, dim=8, attention=False)
    x = model.graph_states(model.item_states()).detach()
    pi, beta = model.attention_weights(0, x)
    rnd = model.rounds[0]
    sizes = torch.bincount(rnd.tails.row, minlength=rnd.num_groups).float()
    assert torch.allclose(pi, 1.0 / sizes[rnd.tails.row])
    relations = torch.bincount(rnd.group_head, minlength=rnd.num_heads).float()
    assert torch.allclose(beta, 1.0 / relations[rnd.group_head])


def test_knowledge_summaries_are_reused_for_kg_every_steps(ml100k_snapshot, ml100k_split):
    model = _kgat(ml100k_snapshot, ml100k_split, dim=8, kg_every=3).train()
    entity_grads = []
    for _ in range(7):
        model.zero_grad(set_to_none=True)
        users, items = model.embed()
        (users.pow(2).sum() + items.pow(2).sum()).backward()
        entity_grads.append(model.entity.weight.grad is not None)
        assert model.node.weight.grad is not None and model.gate.grad is not None
    # Recomputed (with gradients into the entities) on steps 1, 4 and 7 only.
    assert entity_grads == [True, False, False, True, False, False, True]
    model.train()  # a new epoch recomputes on its first step
    model.zero_grad(set_to_none=True)
    model.embed()[1].sum().backward()
    assert model.entity.weight.grad is not None
    # Evaluation always recomputes: the summaries follow the entity embeddings at once.
    model.eval()
    with torch.no_grad():
        before = model.embed()[1]
        model.entity.weight.mul_(2.0)
        after = model.embed()[1]
    assert not torch.allclose(before, after)
    with pytest.raises(ValueError, match="kg_every"):
        _kgat(ml100k_snapshot, ml100k_split, dim=8, kg_every=0)


def test_product_without_events_gets_a_text_and_graph_embedding():
    # Product p3 has no event: its id embedding must not enter, text and category must.
    events = [(0, 0, 1, 5.0), (0, 1, 2, 4.0), (1, 1, 3, 5.0), (1, 2, 4, 3.0), (2, 0, 5, 4.0)]
    snapshot = tiny_snapshot(events, num_users=3, num_items=4)
    frame = pd.DataFrame(events, columns=["user", "product", "time", "value"]).assign(weight=1.0)
    split = Split(frame, frame.iloc[:0], frame.iloc[:0], 3, 4, "given")
    torch.manual_seed(0)
    text = torch.randn(4, 6)
    model = _kgat(snapshot, split, dim=8, kg_hops=1, product_features=text).eval()  # no dropout
    _, items = model.embed()
    assert float(items[3].norm()) > 0
    with torch.no_grad():
        model.node.weight[3 + 3].fill_(100.0)  # p3's id embedding: unused, it has no events
    _, same = model.embed()
    assert torch.allclose(same[3], items[3])
    other = _kgat(snapshot, split, dim=8, kg_hops=1, product_features=text.flip(0)).eval()
    other.load_state_dict(model.state_dict())
    _, changed = other.embed()
    assert not torch.allclose(changed[3], items[3])  # it follows the text
    no_kg = _kgat(snapshot, split, dim=8, kg_hops=0, product_features=text)
    no_kg.load_state_dict(model.state_dict(), strict=False)
    assert len(no_kg.rounds) == 0


def test_kgat_trains_through_the_edge_kernels(ml100k_kgat):
    model = ml100k_kgat.train()
    model.zero_grad()
    users, items = model.embed()
    (users.pow(2).sum() + items.pow(3).sum()).backward()
    for name in ("node.weight", "entity.weight", "rel_emb", "rel_weight", "gate"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and float(grad.abs().sum()) > 0, name
    model.eval()


def test_edge_pattern_products_match_gathers_and_gradcheck():
    torch.manual_seed(0)
    rows, cols, n_rows, n_cols = [], [], 7, 11
    for r in range(n_rows):
        for c in torch.randperm(n_cols)[: r + 1].tolist():
            rows.append(r)
            cols.append(c)
    order = torch.randperm(len(rows))
    row, col = torch.tensor(rows)[order], torch.tensor(cols)[order]
    pattern = EdgePattern(row, col, n_rows, n_cols)
    assert torch.equal(pattern.row, row[pattern.order]) and torch.equal(pattern.col,
                                                                         col[pattern.order])
    q = torch.randn(n_rows, 4, dtype=torch.float64, requires_grad=True)
    x = torch.randn(n_cols, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(pattern.num_edges, dtype=torch.float64, requires_grad=True)
    expected = (q[pattern.row] * x[pattern.col]).sum(-1)
    assert torch.allclose(pattern.scores(q, x), expected)
    summed = torch.zeros(n_rows, 4, dtype=torch.float64).index_add(
        0, pattern.row, v[:, None] * x[pattern.col])
    assert torch.allclose(pattern.aggregate(v, x), summed)
    assert torch.autograd.gradcheck(pattern.scores, (q, x))
    assert torch.autograd.gradcheck(pattern.aggregate, (v, x))


def _tiny_kgat(**kwargs) -> KGATModel:
    """20 users x 12 products, random events, one category holding every product."""
    snapshot, split = random_graph(20, 12, draws=120, seed=3)
    torch.manual_seed(0)
    return _kgat(snapshot, split, dim=8, kg_hops=1, kg_dropout=0.0, **kwargs)


def test_xsimgcl_noise_only_in_training_with_length_eps():
    model = _tiny_kgat(cl_eps=0.1, layers=2)
    plain = _tiny_kgat(layers=2)
    plain.load_state_dict(model.state_dict())
    model.eval(), plain.eval()
    with torch.no_grad():
        first, again, clean = model.embed(), model.embed(), plain.embed()
        clean_layer1 = SymmetricSpmm.apply(model.adj, model.inputs())
    assert model._views is None
    for a, b, c in zip(first, again, clean, strict=True):  # eval: deterministic and noise-free
        assert torch.equal(a, b) and torch.equal(a, c)
    model.train()
    with torch.no_grad():
        noisy = model.embed()
    view, final = model._views
    noise = view - clean_layer1
    # Layer 1 + noise of length exactly eps, in the orthant of the clean layer output.
    assert torch.allclose(noise.norm(dim=-1), torch.full((32,), 0.1), atol=1e-5)
    assert bool((torch.sign(noise) == torch.sign(clean_layer1)).all())
    assert torch.equal(torch.cat(noisy), final)
    assert not torch.allclose(noisy[0], clean[0], atol=1e-3)


def test_xsimgcl_contrastive_loss_is_positive_finite_and_trains():
    model = _tiny_kgat(cl_eps=0.2).train()
    model.embed()
    users, items = torch.tensor([0, 3, 3, 7, 9]), torch.tensor([1, 1, 4, 5, 11])
    loss = model.contrastive_loss(users, items, temperature=0.2)
    unique = model.contrastive_loss(users.unique(), items.unique(), temperature=0.2)
    value = loss.item()
    assert math.isfinite(value) and value > 0.0
    assert value < math.log(4) + math.log(4)  # own view beats in-batch negatives
    assert torch.equal(loss, unique)  # duplicates in the batch count once
    assert model.contrastive_loss(users, items, temperature=1.0).item() > value
    loss.backward()
    assert float(model.node.weight.grad.abs().sum()) > 0
    with pytest.raises(RuntimeError, match="cl_eps"):
        _tiny_kgat().train().contrastive_loss(users, items, 0.2)
    with pytest.raises(ValueError, match="cl_layer"):
        _tiny_kgat(cl_eps=0.1, layers=2, cl_layer=3)


def test_the_registry_names_every_model_and_the_settings_each_reads(ml100k_snapshot,
                                                                    ml100k_split):
    assert tuple(MODELS) == MODEL_NAMES  # the torch-free names the CLI and config rules use
    fields = {f.name for f in dataclasses.fields(TrainSettings)}
    assert all(set(spec.reads) <= fields for spec in MODELS.values())
    assert [name for name, spec in MODELS.items() if spec.takes_text] == ["gcn", "gat"]
    kinds = {name: type(build_model(ml100k_snapshot, ml100k_split,
                                    TrainSettings(model=name, kg_hops=0, text_features=False)))
             for name in MODELS}
    assert [k.__name__ for k in kinds.values()] == [
        "PopModel", "MFModel", "LightGCNModel", "KGATModel", "KGATModel"]
    gcn = build_model(ml100k_snapshot, ml100k_split, TrainSettings(model="gcn", kg_hops=1,
                                                                   text_features=False))
    assert isinstance(gcn, KGATModel) and not gcn.attention


@pytest.mark.parametrize("setting", [{"cl_weight": 0.01}, {"item_input": "text"},
                                     {"user_input": "history"}])
def test_a_setting_the_model_does_not_read_is_refused(ml100k_snapshot, ml100k_split, setting):
    key, value = next(iter(setting.items()))
    with pytest.raises(UsageError, match=f"{key} = {value!r} needs a model that reads it "
                                         r"\(gcn, gat\), not 'mf'"):
        build_model(ml100k_snapshot, ml100k_split, TrainSettings(model="mf", **setting))
