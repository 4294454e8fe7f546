"""The models' propagation equals PyG's reference layers."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.nn import GATConv, GCNConv, LightGCN

from gnn.data import bipartite_edge_index, homogeneous_graph, normalized_adjacency, training_graph
from gnn.models import (
    EDGE_DIM,
    INIT_STD,
    KGEncoder,
    LightGCNModel,
    MFModel,
    SymmetricSpmm,
    receptive_edges,
)


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


def test_gat_receptive_pruning_keeps_user_and_product_outputs_exact(
    ml100k_snapshot, ml100k_split
):
    graph = homogeneous_graph(training_graph(ml100k_snapshot, ml100k_split),
                              ml100k_snapshot.relations)
    keep = receptive_edges(graph, layers=2)
    assert 0 < int(keep.sum()) < graph.edge_index.shape[1]
    # Only messages into entities two hops from users/products are dropped.
    entity = graph.node_types.index("entity")
    assert (graph.node_type[graph.edge_index[1, ~keep]] == entity).all()
    model = KGEncoder(graph, 943, 1682, conv="gat", dim=8, layers=2)
    users, items = model.embed()
    x = model.inputs()
    attr = model.rel_emb(graph.edge_type)
    outs = [x]
    for conv in model.convs:
        x = conv(x, graph.edge_index, attr)
        outs.append(x)
    full = torch.stack(outs).mean(0)
    assert torch.allclose(users, full[:943], atol=1e-5)
    assert torch.allclose(items, full[943 : 943 + 1682], atol=1e-5)
    assert isinstance(model.convs[0], GATConv) and model.rel_emb.embedding_dim == EDGE_DIM


def test_product_features_enter_product_inputs_only(ml100k_snapshot, ml100k_split):
    graph = homogeneous_graph(training_graph(ml100k_snapshot, ml100k_split))
    feats = torch.randn(1682, 5)
    model = KGEncoder(graph, 943, 1682, conv="gcn", dim=8, layers=1, product_features=feats)
    x = model.inputs()
    expected = model.node.weight[943 : 943 + 1682] + model.feature_proj(feats)
    assert torch.allclose(x[943 : 943 + 1682], expected)
    assert torch.equal(x[:943], model.node.weight[:943])
    with pytest.raises(ValueError, match="product_features has 3 rows, expected 1682"):
        KGEncoder(graph, 943, 1682, product_features=torch.randn(3, 5))
    with pytest.raises(ValueError, match="conv must be"):
        KGEncoder(graph, 943, 1682, conv="sage")


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
    stalls training (ml-100k test NDCG@20 0.097 against 0.135)."""
    split = ml100k_split
    adj = normalized_adjacency(bipartite_edge_index(split), split.num_users + split.num_items)
    torch.manual_seed(0)
    lightgcn = LightGCNModel(split.num_users, split.num_items, adj, dim=64, layers=3)
    mf = MFModel(split.num_users, split.num_items, 64)
    for weight in (lightgcn.lightgcn.embedding.weight, mf.user.weight, mf.item.weight):
        assert abs(float(weight.std()) - INIT_STD) < 0.005
        assert abs(float(weight.mean())) < 0.005
