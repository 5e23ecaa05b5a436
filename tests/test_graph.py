"""The operator graph: one node per executed operator, shapes and costs that agree with the model."""
import networkx as nx
import pytest
import torch

from search_space import DEFAULT_SPACE, OP_KINDS, PRESETS, build_model, cost, operators, to_networkx

CASES = list(PRESETS.values()) + DEFAULT_SPACE.sample_random(10, seed=11)


@pytest.mark.parametrize("cfg", CASES, ids=lambda c: c.name or c.arch_id)
def test_graph_is_a_dag_from_input_to_head_with_total_cost(cfg):
    g = to_networkx(cfg)
    assert nx.is_directed_acyclic_graph(g)
    assert [n for n in g if g.in_degree(n) == 0] == ["input"]
    sinks = [n for n in g if g.out_degree(n) == 0]
    assert sinks == ["head"]
    assert sum(d["params"] for _, d in g.nodes(data=True)) == cost(cfg).params
    assert sum(d["macs"] for _, d in g.nodes(data=True)) == cost(cfg).macs
    assert {d["kind"] for n, d in g.nodes(data=True) if n != "input"} <= set(OP_KINDS)
    assert g.graph["arch_id"] == cfg.arch_id
    # Residual additions have two producers, everything else one.
    for n, d in g.nodes(data=True):
        if n != "input":
            assert g.in_degree(n) == (2 if d["kind"] == "add" else 1), n


@pytest.mark.parametrize("cfg", CASES, ids=lambda c: c.name or c.arch_id)
def test_every_parameterised_op_matches_its_torch_module(cfg):
    modules = dict(build_model(cfg).named_modules())
    for op in operators(cfg):
        if op.params:
            m = modules[op.name]
            assert sum(p.numel() for p in m.parameters()) == op.params, op.name


@pytest.mark.parametrize("cfg", CASES[:4], ids=lambda c: c.name or c.arch_id)
def test_op_output_shapes_match_forward_hooks(cfg):
    model = build_model(cfg).eval()
    seen = {}
    for name, m in model.named_modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
            m.register_forward_hook(lambda mod, i, o, name=name: seen.__setitem__(name, tuple(o.shape[1:])))
    with torch.no_grad():
        model(torch.randn(1, 3, cfg.resolution, cfg.resolution))
    ops = {op.name: op for op in operators(cfg)}
    for name, shape in seen.items():
        assert ops[name].out_shape == shape, name
