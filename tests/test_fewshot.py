"""NAS-Bench-201 / FBNet modules, their cost features, and the few-shot latency adapter on the HELP
data (``public_benchmarks``; the data ship with the package)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.base import clone

from predictors import ModelFileError
from predictors.latency.fewshot import FewShotAdapter
from public_benchmarks.data import read_csv_rows, read_json
from public_benchmarks.fbnet import FBNET_BLOCKS, MBConv, build_fbnet, fbnet_encoding, format_fbnet, parse_fbnet
from public_benchmarks.help import (ENCODING_SHAPE, HELP_SPLITS, DeviceBank, ProfileColumns, load_help,
                                    profile_columns, query_indices, support_indices, trimmed_spearman)
from public_benchmarks.nb201 import NB201_OPS, NB201Cell, build_nb201, format_nb201, nb201_encoding, parse_nb201
from public_benchmarks.profiling import (CostTable, check_profile, count_macs_params, profile_module,
                                         profile_network, space_features)

NB_ARCHS = [
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
]
FB_ARCHS = [
    ["k5_e6", "skip", "k3_e1_g2", "skip", "k5_e1", "skip", "skip", "skip", "k5_e6", "k5_e1", "k3_e1_g2", "k5_e1",
     "k5_e6", "k3_e6", "k3_e3", "k5_e6", "k3_e6", "k3_e3", "k5_e1", "k3_e3", "k5_e1", "k5_e1_g2"],
    ["skip"] * 22,  # every shape change goes through the 1x1-conv skip
]

# Hand-counted MACs of the NAS-Bench-201 skeleton (no cells): stem 3*16*9*32^2 = 442,368; each reduction
# block: conv_a c_in*c_out*9*r^2 + conv_b c_out^2*9*r^2 + shortcut 1x1 c_in*c_out*r^2, i.e.
# 1,179,648 + 2,359,296 + 131,072 twice (16->32 at r=16, 32->64 at r=8); classifier 64*10 = 640.
NB201_SKELETON_MACS = 442_368 + 2 * (1_179_648 + 2_359_296 + 131_072) + 640  # = 7,783,040
CONV3_EDGE_MACS = 16 * 16 * 9 * 32 * 32  # c^2 * 9 * r^2, the same at 16@32x32, 32@16x16 and 64@8x8
CONV1_EDGE_MACS = 16 * 16 * 32 * 32


def test_nb201_parser_round_trip_and_errors():
    for a in NB_ARCHS:
        ops = parse_nb201(a)
        assert len(ops) == 6 and format_nb201(ops) == a
    assert parse_nb201(NB_ARCHS[1])[4] == "nor_conv_3x3"  # edge 3<-1
    for bad in ["|nor_conv_3x3~0|+|none~0|none~1|", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
                "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|"]:
        with pytest.raises(ValueError):
            parse_nb201(bad)


def test_fbnet_parser_round_trip_and_errors():
    for blocks in FB_ARCHS:
        s = str(blocks)
        assert parse_fbnet(s) == tuple(blocks)
        assert format_fbnet(parse_fbnet(s)) == s
    with pytest.raises(ValueError):
        parse_fbnet(str(FB_ARCHS[0][:21]))
    with pytest.raises(ValueError):
        parse_fbnet(str(["k7_e6"] + FB_ARCHS[0][1:]))


def test_parsers_round_trip_every_arch_in_the_data():
    for space, parse, fmt in (("nasbench201", parse_nb201, format_nb201), ("fbnet", parse_fbnet, format_fbnet)):
        archs = [r["arch"] for r in read_csv_rows("help", space, "latency_ms.csv")]
        assert all(fmt(parse(a)) == a for a in archs)
        assert len(set(archs)) == len(archs)


def test_nb201_networks_run_with_right_shapes():
    torch.manual_seed(0)
    for a in NB_ARCHS:
        net = build_nb201(a).eval()
        with torch.no_grad():
            out = net(torch.randn(2, 3, 32, 32))
        assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_fbnet_networks_run_with_right_shapes():
    torch.manual_seed(0)
    for blocks in FB_ARCHS:
        net = build_fbnet(blocks).eval()
        with torch.no_grad():
            out = net(torch.randn(1, 3, 224, 224))
        assert out.shape == (1, 1000) and torch.isfinite(out).all()
        feats = net.head(net.layers(net.stem(torch.randn(1, 3, 224, 224))))
        assert feats.shape == (1, 1984, 7, 7)


def test_all_none_cell_outputs_zeros_and_cuts_the_input_off():
    cell = NB201Cell(["none"] * 6, 16)
    x = torch.randn(2, 16, 32, 32)
    y = cell(x)
    assert y.shape == x.shape and torch.count_nonzero(y) == 0
    # every cell of the network is zero, so the logits cannot depend on the image
    net = build_nb201(NB_ARCHS[2]).eval()
    with torch.no_grad():
        a, b = net(torch.randn(1, 3, 32, 32)), net(10 * torch.randn(1, 3, 32, 32))
    assert torch.equal(a, b)
    # a skip-only cell is not cut off: node1 = x, node2 = x + node1 = 2x, node3 = x + node1 + node2 = 4x
    skip = NB201Cell(["skip_connect"] * 6, 16)
    assert torch.allclose(skip(x), 4 * x)


def test_hand_counted_macs_and_params():
    macs, params = count_macs_params(build_nb201(NB_ARCHS[2]), 32)
    assert macs == NB201_SKELETON_MACS == 7_783_040
    one_conv = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    macs3, params3 = count_macs_params(build_nb201(one_conv), 32)
    assert macs3 == NB201_SKELETON_MACS + 15 * CONV3_EDGE_MACS  # 5 cells x 3 stages, conv still executed
    # params of that edge: conv c*c*9 + BN 2c, 5 cells per stage at c = 16, 32, 64
    assert params3 - params == 5 * sum(c * c * 9 + 2 * c for c in (16, 32, 64))
    # one cell at 16 channels, 32x32: a 3x3 and a 1x1 conv edge, pooling and skip cost no MACs
    cell = NB201Cell(["nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3", "skip_connect", "none", "none"], 16)
    assert profile_module(cell, (1, 16, 32, 32))["macs"] == CONV3_EDGE_MACS + CONV1_EDGE_MACS
    # FBNet k3_e6 block 24->24 at 56x56: 1x1 expand + 3x3 depthwise + 1x1 project; _g2 halves the 1x1s
    p = profile_module(MBConv(24, 24, 3, 6, 1), (1, 24, 56, 56))
    assert p["macs"] == 24 * 144 * 56**2 + 144 * 9 * 56**2 + 144 * 24 * 56**2
    g = profile_module(MBConv(24, 24, 3, 1, 1, groups=2), (1, 24, 56, 56))
    assert g["macs"] == 24 * 12 * 56**2 + 24 * 9 * 56**2 + 24 * 12 * 56**2
    check_profile(p)
    check_profile(g)


def test_cost_table_equals_whole_module_count():
    for space, archs in (("nasbench201", NB_ARCHS[:2]), ("fbnet", [str(FB_ARCHS[0])])):
        table = CostTable(space)
        for a in archs:
            whole = profile_network(space, a)
            check_profile(whole)
            composed = table.profile(a)
            assert set(whole) == set(composed)
            assert all(whole[k] == composed[k] for k in whole), space
            assert np.array_equal(table.matrix([a])[0], [whole.get(k, 0) for k in table.keys])


def test_encodings_are_one_hot():
    e = nb201_encoding(NB_ARCHS[1]).reshape(6, len(NB201_OPS))
    assert (e.sum(1) == 1).all() and e[0, NB201_OPS.index("nor_conv_3x3")] == 1
    f = fbnet_encoding(str(FB_ARCHS[0])).reshape(22, len(FBNET_BLOCKS))
    assert (f.sum(1) == 1).all() and f[2, FBNET_BLOCKS.index("k3_e1_g2")] == 1


def _toy_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    n, L, C = 400, 6, 5
    enc = np.zeros((n, L * C))
    enc[np.arange(n)[:, None], np.arange(L) * C + rng.integers(0, C, (n, L))] = 1
    prof = rng.normal(size=(n, 3))
    X = np.hstack([enc, prof])
    costs = rng.uniform(0.5, 2.0, (3, L * C))
    Y = 5 + enc @ costs.T + rng.normal(scale=0.05, size=(n, 3))
    target = 3 + enc @ (0.6 * costs[0] + 0.3 * costs[2]) + 0.2 * prof[:, 0]
    return X, Y, target


def _toy_adapter(bank: DeviceBank, **kw) -> FewShotAdapter:
    """The HELP-style adapter on the toy rows: bank surrogates as bases, profile columns 0-2 + encoding."""
    return FewShotAdapter(bases={d: bank.surrogate(d) for d in ("a", "b", "c")},
                          profile=ProfileColumns(30, (0, 1, 2), encoding=True), base_transform="linear",
                          target="ratio", select="evidence", base_weight=1.0, profile_weight=0.1, **kw)


def test_adapter_fit_predict_json_round_trip_is_identical():
    X, Y, target = _toy_data()
    bank = DeviceBank(6, 5, pairwise="all", alpha=1.0).fit(X[:300], Y[:300], ["a", "b", "c"])
    model = _toy_adapter(bank).fit(X[300:320], target[300:320], pool=X[:300])
    assert model is not None and hasattr(model, "coef_") and model.alpha_ > 0
    # Bases and profile are functions here, which a saved adapter cannot hold (it names its profile
    # and saves estimators as bases): saving refuses in one line, and the round trip that holds is
    # the refit of a clone (same parameters, same data -> identical predictions).
    with pytest.raises(ModelFileError, match="not a function"):
        model.to_dict()
    twin = clone(model).fit(X[300:320], target[300:320], pool=X[:300])
    assert np.array_equal(twin.predict(X)[0], model.predict(X)[0])
    d = json.loads(json.dumps(bank.to_dict()))
    assert np.array_equal(DeviceBank.from_dict(d).predict(X), bank.predict(X))
    # the constructor only stores parameters; fitted state ends in "_"
    fresh = _toy_adapter(bank)
    assert not any(k.endswith("_") for k in vars(fresh))
    # and it learned something: rank correlation on the unseen rows
    assert trimmed_spearman(model.predict(X)[0], target, np.arange(320, 400)) > 0.9
    with pytest.raises(ValueError):
        _toy_adapter(DeviceBank()).fit(X[:20], target[:20])  # bank not fitted


def test_protocol_sets():
    y = np.arange(20000, 0, -1, dtype=float)
    q = query_indices(y)
    assert len(q) == 800 and q.min() >= 900 and q.max() < 1900
    ref = [11982, 431, 55, 9, 14451, 8636, 9881, 13479, 6196, 1462]  # NAS-Bench-201's; 1462 is a query index
    for seed in range(3):
        s = support_indices(ref, seed)
        assert len(s) == 20 and len(set(s)) == 20 and set(ref) - {1462} <= set(s.tolist())
        assert not np.any((s >= 900) & (s < 1900))
    assert np.array_equal(support_indices(ref, 0), support_indices(ref, 0))
    fb_ref = [3328, 3790, 3313, 890, 3052, 2538, 1640, 2514, 457, 2100]  # 1640 is a query index
    s = support_indices(fb_ref, 0)
    assert len(s) == 20 and 1640 not in s.tolist() and not np.any((s >= 900) & (s < 1900))


def test_adapter_beats_flops_on_gold_6226():
    """One NAS-Bench-201 meta-test device, seed 0, 20 measurements; no query latency used anywhere."""
    data = load_help("nasbench201")
    split = HELP_SPLITS["nasbench201"]
    feats = space_features("nasbench201", data.archs)  # exact composed profiles (checked above)
    X = np.hstack([feats["encoding"], feats["profile"]])
    pool = np.setdiff1d(np.arange(len(data.archs)), np.arange(900, 1900))
    bank = DeviceBank(*ENCODING_SHAPE["nasbench201"]).fit(
        X[pool], np.stack([data.latency[d][pool] for d in split["meta_train"]], 1), split["meta_train"])
    y = data.latency["gold_6226"]
    sup = support_indices(data.reference, seed=0)
    model = FewShotAdapter(bases={d: bank.surrogate(d) for d in split["meta_train"]},
                           profile=ProfileColumns(30, tuple(profile_columns(feats["keys"])), encoding=True),
                           base_transform="linear", target="ratio", select="evidence", base_weight=1.0,
                           profile_weight=0.1).fit(X[sup], y[sup], pool=X[pool])
    q = query_indices(y)
    rho_adapter = trimmed_spearman(model.predict(X)[0], y, q)
    rho_flops = trimmed_spearman(feats["profile"][:, feats["keys"].index("macs")], y, q)
    assert rho_adapter > rho_flops + 0.05, (rho_adapter, rho_flops)


def test_nb201_params_equal_nas_bench_suite_zero():
    """Parameter counts of all 491 CIFAR-10 cells in NAS-Bench-Suite-Zero (NASLib) equal ours.

    (Their ``flops`` also count BN/ReLU/pooling work, which FlopCounterMode does not, so only the
    parameter counts are compared exactly.) Keys are op-index tuples, ops (skip, none, conv3x3,
    conv1x1, avgpool), edges 1-2, 1-3, 1-4, 2-3, 2-4, 3-4 (nodes numbered from 1).
    """
    zc = read_json("nb201-zero-cost", "zc_nasbench201.json")["nasbench201"]["cifar10"]
    names = ["skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3"]
    table = CostTable("nasbench201")
    assert len(zc) == 491
    for key, v in zc.items():
        t = [int(i) for i in key.strip("()").split(",")]
        ops = [names[t[i]] for i in (0, 1, 3, 2, 4, 5)]  # to arch-string edge order
        assert table.profile(ops)["params"] == round(v["params"] * 1e6), key


def test_module_features_cache_round_trip_and_refuses_a_broken_file(tmp_path):
    """The whole-module path caches its counts (written atomically, read without pickle); a cache
    that is stale or broken is counted again, never trusted."""
    archs = NB_ARCHS[:2]
    first = space_features("nasbench201", archs, method="module", cache_dir=tmp_path)
    files = list(tmp_path.iterdir())
    assert [f.name for f in files] == ["nasbench201_v2.npz"]  # no temporary file left behind
    again = space_features("nasbench201", archs, method="module", cache_dir=tmp_path)
    assert again["seconds"] == 0.0 and again["keys"] == first["keys"]
    assert np.array_equal(again["profile"], first["profile"])
    table = CostTable("nasbench201")  # the composed counts agree with the whole-module ones, key by key
    assert np.array_equal(first["profile"], table.matrix(archs)[:, [table.keys.index(k) for k in first["keys"]]])
    files[0].write_bytes(b"not a zip file")
    recount = space_features("nasbench201", archs, method="module", cache_dir=tmp_path)
    assert recount["seconds"] > 0 and np.array_equal(recount["profile"], first["profile"])
    other = space_features("nasbench201", NB_ARCHS[1:], method="module", cache_dir=tmp_path)  # other digest
    assert other["seconds"] > 0 and other["profile"].shape[0] == 2


def test_adapter_offset_shrinks_towards_the_base_not_a_constant():
    """``offset``: the regression learns log(latency / base); under a penalty that leaves it nothing,
    the adapter is that base times one factor (without the offset: one constant for every item)."""
    rng = np.random.default_rng(0)
    X = rng.uniform(1.0, 10.0, size=(40, 2))
    good = lambda A: 3.0 * A[:, 0] ** 1.2  # noqa: E731 -- a base that ranks the devices' latencies
    other = lambda A: A[:, 1]  # noqa: E731
    y = 2.0 * X[:, 0] ** 1.2 * np.exp(rng.normal(0, 0.02, 40))
    kw = dict(bases={"good": good, "other": other}, profile="none", profile_weight=0.0, alphas=(1e9,))
    flat = FewShotAdapter(**kw).fit(X[:20], y[:20])
    rel = FewShotAdapter(**kw, offset="good").fit(X[:20], y[:20])
    p_flat, p_rel = flat.predict(X[20:])[0], rel.predict(X[20:])[0]
    assert np.ptp(np.log(p_flat)) < 1e-3  # shrunk to a constant
    ratio = p_rel / good(X[20:])
    assert np.ptp(np.log(ratio)) < 1e-3 and abs(ratio[0] - 2.0 / 3.0) < 0.02  # the base, rescaled once
    assert np.max(np.abs(p_rel / y[20:] - 1)) < 0.1
    with pytest.raises(ValueError, match="offset='nope': allowed: None or a base's name"):
        FewShotAdapter(**kw, offset="nope").fit(X[:20], y[:20])
    with pytest.raises(ValueError, match="offset='good': needs target='log'"):
        FewShotAdapter(**kw, offset="good", target="ratio").fit(X[:20], y[:20])
