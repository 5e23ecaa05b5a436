"""Phone latency predictors from nn-Meter block tables (predictors/latency/phone/). About 15 s on 2 cores.

The fitted predictor is a light one (the four block types the EdgeViT mapping uses, no
extrapolation splits, no refit), so the suite stays fast; bench/phone_blocks.py runs the full fit.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import search_space as ss
from predictors.latency.phone import (
    BLOCK_TYPES,
    IGNORED_KEYS,
    PROVENANCES,
    BlockRegressor,
    KeyFormatError,
    PhoneLatencyPredictor,
    UnknownDeviceError,
    load_table,
    map_candidate,
    parse_key,
    phone_devices,
    predict_phone_latency,
    random_split,
    table_blocks,
)
from predictors.latency.trees import TreeEnsemble

PHONES = ("s21", "pixel4", "pixel1")
MAPPED_TYPES = ("firstconv", "conv", "transattn", "transffn")


@pytest.fixture(scope="module")
def tables():
    return {d: load_table(d) for d in PHONES}


@pytest.fixture(scope="module")
def s21():
    return PhoneLatencyPredictor("s21", block_types=MAPPED_TYPES, extrapolation=False, refit_full=False).fit(
        *table_blocks("s21"))


def test_the_three_phones_have_tables():
    assert set(PHONES) <= set(phone_devices())


@pytest.mark.parametrize("device", PHONES)
def test_every_key_parses_and_round_trips(tables, device):
    table = tables[device]
    counts = dict.fromkeys(BLOCK_TYPES, 0)
    unparsed = []
    for key in table:
        if key in IGNORED_KEYS:
            continue
        try:
            spec = parse_key(key)
        except KeyFormatError:
            unparsed.append(key)
            continue
        assert spec.key() == key  # the parsed fields carry every part of the key
        counts[spec.type] += 1
    assert unparsed == []
    assert IGNORED_KEYS == frozenset()
    # counts from the tables themselves (12,116 keys per phone, shared/data/README.md)
    assert counts == {"firstconv": 12, "conv": 1788, "transds": 7740, "transattn": 1077, "transffn": 1436, "mbpool": 63}
    assert all(v > 0 for v in table.values())


def test_key_fields_are_read_in_the_documented_order():
    s = parse_key("conv_64_16_24_3_2_hard_swish_5_se")
    assert (s.hw, s.cin, s.cout, s.expansion, s.stride, s.act, s.kernel, s.se) == (64, 16, 24, 3, 2, "hard_swish", 5, True)
    s = parse_key("transds_8_288_320_2_6")
    assert (s.hw, s.cin, s.cout, s.stride, s.expansion, s.kernel, s.se) == (8, 288, 320, 2, 6, 3, True)
    s = parse_key("transattn_16_48_hard_swish_3_ln")
    assert (s.hw, s.cin, s.v_scale, s.tokens) == (16, 48, 3, 256)
    s = parse_key("transffn_3_320_5_hard_swish_ln")
    assert (s.hw, s.cin, s.expansion) == (3, 320, 5)


@pytest.mark.parametrize("bad", ["conv_64_16", "transattn_16_48_hard_swish_3_bn", "lstm_1_2", ""])
def test_bad_key_is_a_one_line_error(bad):
    with pytest.raises(KeyFormatError) as e:
        parse_key(bad)
    assert "\n" not in str(e.value) and repr(bad) in str(e.value)


def test_tree_evaluator_matches_sklearn():
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    y = X[:, 0] ** 2 + np.sin(X[:, 1]) + 0.1 * rng.normal(size=300)
    Xq = rng.normal(size=(200, 5))
    g = GradientBoostingRegressor(n_estimators=40, max_depth=3, random_state=0).fit(X, y)
    t = TreeEnsemble.from_gbr(g)
    np.testing.assert_allclose(t.predict(Xq), g.predict(Xq), rtol=1e-12, atol=1e-12)
    f = RandomForestRegressor(n_estimators=10, random_state=0).fit(X, y)
    t = TreeEnsemble.from_forest(f)
    np.testing.assert_allclose(t.predict(Xq), f.predict(Xq), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["rate", "ridge", "gbm", "rf", "hybrid"])
def test_regressor_round_trips_through_json(tables, kind):
    rows = [(parse_key(k), v) for k, v in tables["s21"].items() if k.startswith("transffn")]
    tr, te = random_split(len(rows), 0.2, 0)
    reg = BlockRegressor("transffn", model=kind, n_estimators=40).fit([rows[i][0] for i in tr], [rows[i][1] for i in tr])
    back = BlockRegressor.from_dict(json.loads(json.dumps(reg.to_dict())))
    q = [rows[i][0] for i in te]
    a, b = reg.predict(q), back.predict(q)
    assert np.array_equal(a, b)
    assert back.kind_ == kind and back.get_params() == reg.get_params()


def test_fitted_predictor_round_trips(s21):
    back = PhoneLatencyPredictor.from_dict(json.loads(json.dumps(s21.to_dict())))
    cfgs = list(ss.PRESETS.values()) + ss.DEFAULT_SPACE.sample_random(5, seed=3)
    assert [p.total_ms for p in back.predict_parts(cfgs)] == [p.total_ms for p in s21.predict_parts(cfgs)]


def test_heldout_within_10_percent_on_s21(s21):
    # Threshold = the project's target (99 % of held-out blocks within 10 % of the measurement, per
    # block type and phone). The held-out sets are 358 / 215 / 287 blocks, so 0.99 tolerates 3 / 2 / 2
    # misses; the fit measured 0.997 / 1.0 / 1.0 when this test was written.
    for t in ("conv", "transattn", "transffn"):
        m = s21.heldout_[t]["model"]
        assert m["n"] >= 200
        assert m["within_10"] >= 0.99, (t, m)
        # and the trivial baseline on the same split is clearly worse: the test can tell them apart
        assert s21.heldout_[t]["linear_macs_params"]["within_10"] < m["within_10"]


def test_presets_positive_ordered_and_parts_sum(s21):
    preds = {n: s21.predict_parts([cfg])[0] for n, cfg in ss.PRESETS.items()}
    tot = {n: p.total_ms for n, p in preds.items()}
    assert all(v > 0 for v in tot.values())
    assert tot["edgevit_xxs"] < tot["edgevit_xs"] < tot["edgevit_s"]
    for p in preds.values():
        assert all(part.ms >= 0 and part.std_ms >= 0 for part in p.parts)
        assert sum(part.ms for part in p.parts) == pytest.approx(p.total_ms, rel=1e-12)
        assert sum(p.half_blocks().values()) == pytest.approx(p.total_ms, rel=1e-12)
        assert sum(p.share().values()) == pytest.approx(1.0)
        assert 0 < p.std_ms < p.total_ms


def test_batch_equals_single(s21):
    cfgs = ss.DEFAULT_SPACE.sample_random(4, seed=7)
    batch = s21.predict_parts(cfgs)
    assert [b.total_ms for b in batch] == pytest.approx([s21.predict_parts([c])[0].total_ms for c in cfgs], rel=1e-12)
    mean, std = s21.predict(cfgs)
    assert list(mean) == [b.total_ms for b in batch] and list(std) == [b.std_ms for b in batch]


@pytest.mark.parametrize("cfg", list(ss.PRESETS.values()) + ss.DEFAULT_SPACE.sample_random(20, seed=11))
def test_provenance_covers_every_half_block_and_op(cfg):
    parts = map_candidate(cfg)
    ops = ss.operators(cfg)
    assert {p.half_block for p in parts} == {op.block for op in ops}
    covered = [name for p in parts for name in p.ops]
    assert sorted(covered) == sorted(op.name for op in ops)  # each op in exactly one part
    for p in parts:
        assert p.provenance in PROVENANCES
        assert (p.spec is None) == (p.provenance == "transferred")
        assert p.block_type == "rate" if p.provenance == "transferred" else p.block_type == p.spec.type


def test_direct_and_approximate_rules():
    xxs = ss.PRESETS["edgevit_xxs"]  # head_dim 36: heads differ from C/16 -> approximate attention
    att = [p for p in map_candidate(xxs) if p.part == "attention"]
    assert att and all(p.provenance == "approximate" for p in att)
    # head_dim 16 (heads = C/16, as nn-Meter measured) on widths divisible by 16 -> direct attention
    stages = tuple(dataclasses.replace(st, width=w, head_dim=16) for st, w in zip(xxs.stages, (48, 96, 160, 256)))
    cfg16 = xxs.replace(stages=stages)
    att = [p for p in map_candidate(cfg16) if p.part == "attention"]
    assert att and all(p.provenance == "direct" for p in att)
    mlp = {p.provenance for p in map_candidate(xxs) if p.part in ("mlp", "conv_mlp")}
    assert mlp == {"direct", "approximate"}


def test_sampling_ratio_changes_attention_tokens(s21):
    base = ss.PRESETS["edgevit_xs"]
    r1 = base.replace(stages=tuple(dataclasses.replace(st, sr_ratio=1) for st in base.stages))
    att = {cfg.arch_id: {p.half_block: p.spec for p in map_candidate(cfg) if p.part == "attention"} for cfg in (base, r1)}
    a, b = att[base.arch_id], att[r1.arch_id]
    assert a.keys() == b.keys()
    for hb in a:
        i = int(hb.split(".")[1])
        side = base.feature_side(i)
        assert b[hb].hw == side and b[hb].tokens == side * side  # r = 1: every token
        assert a[hb].hw == side // base.stages[i].sr_ratio
    assert a["stages.0.blocks.0.self_attn"].tokens == (56 // 4) ** 2 != b["stages.0.blocks.0.self_attn"].tokens
    p_base, p_r1 = s21.predict_parts([base, r1])
    ms = {p.half_block: p.ms for p in p_base.parts if p.part == "attention"}
    ms1 = {p.half_block: p.ms for p in p_r1.parts if p.part == "attention"}
    assert ms1["stages.0.blocks.0.self_attn"] > 10 * ms["stages.0.blocks.0.self_attn"]  # 3136 vs 196 tokens
    rest = [p for p in p_r1.parts if p.part == "attn_rest"]
    assert all("residual add" in p.detail for p in rest)  # no sampling / LocalProp when r = 1


@pytest.mark.parametrize("call", [lambda cfg: predict_phone_latency(cfg, "galaxy_s99"), lambda cfg: load_table("galaxy_s99")])
def test_unknown_device_is_a_one_line_error(call):
    with pytest.raises(UnknownDeviceError) as e:
        call(ss.PRESETS["edgevit_xxs"])
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("device_id='galaxy_s99'")
    assert "allowed: " in msg and all(d in msg for d in PHONES) and "host" not in msg.split("allowed:")[1]


def test_shipped_phone_models_are_current_and_load_without_fitting(tmp_path):
    """A fresh install loads the phones' fitted models in well under a second instead of fitting them
    (issue #16); each shipped fit rests on the current table and fitting code (else it is refitted)."""
    import gzip
    import time

    from predictors.latency import load_device_model
    from predictors.latency.device import SHIPPED_PHONE_MODELS, phone_fingerprint

    for device in PHONES:
        d = json.loads(gzip.decompress((SHIPPED_PHONE_MODELS / f"{device}-latency.json.gz").read_bytes()))
        assert d["data_hash"] == phone_fingerprint(device), f"{device}: run python bench/ship_phone_models.py"
    t0 = time.perf_counter()
    model = load_device_model("s21", tmp_path)
    assert time.perf_counter() - t0 < 5.0 and model.source == "nn-meter"
    mean, std = model.predict([ss.PRESETS["edgevit_xxs"]])
    assert mean[0] > 0 and std[0] > 0


def test_the_search_says_when_a_chosen_phone_figure_lies_beyond_the_tables(tmp_path):
    """A kernel-7 LocalAgg or an attention wider than 32 x 32 tokens is beyond every phone table: the
    search's note for a chosen model with one names it; EdgeViT-XXS (kernel 5, attention within the
    grid) gets none, nor does a measured candidate or a model without block tables."""
    from nas.search.driver import extrapolation_note
    from nas.search.results import Candidate
    from predictors.latency import load_device_model

    model = load_device_model("s21", tmp_path)

    def cand(cfg):
        mean, std = model.predict([cfg])
        return Candidate(cfg.arch_id, 0, cfg, 0.0, 0.0, float(mean[0]), float(std[0]), None, None, 0, 0)

    xxs = ss.PRESETS["edgevit_xxs"]
    k7 = xxs.replace(stages=[dataclasses.replace(st, kernel_size=7) for st in xxs.stages])
    line = extrapolation_note(model, cand(k7), "s21")
    assert line is not None and "beyond s21's block tables (LocalAgg kernel 7 > 5)" in line
    assert "nas farm calibrate --device s21" in line
    # EdgeViT-S attends over 14 x 14 tokens at 224 and over 64 x 64 at 1024: beyond the tables
    wide = ss.PRESETS["edgevit_s"].replace(resolution=1024)
    assert "attention over" in (extrapolation_note(model, cand(wide), "s21") or "")
    assert extrapolation_note(model, cand(xxs), "s21") is None  # kernels 5, attention within 32 x 32
    measured = cand(k7)
    measured.measured_ms, measured.measured_status = 40.0, "ok"
    assert extrapolation_note(model, measured, "s21") is None and extrapolation_note(None, cand(k7), "s21") is None


def test_a_few_shot_table_fits_without_a_held_out_split(tables):
    # A table of a new device with 2-3 blocks per type (issue #14 item 6, or a short block run) has
    # nothing to hold out: every type is fitted on all its blocks, says why, and borrows an uncertainty.
    by_type: dict[str, list[str]] = {}
    for k in tables["s21"]:
        by_type.setdefault(k.split("_", 1)[0], []).append(k)
    keys = [k for t in MAPPED_TYPES for k in by_type[t][:3]]
    pred = PhoneLatencyPredictor("s21", block_types=MAPPED_TYPES, extrapolation=False).fit(
        keys, [tables["s21"][k] for k in keys])
    assert all(pred.heldout_[t]["model"] is None and "no held-out split" in pred.heldout_[t]["why"] for t in MAPPED_TYPES)
    assert all(0 < pred.sigma_[t]["random"] < 10 for t in MAPPED_TYPES)
    ms, sd = pred.predict([ss.PRESETS["edgevit_xxs"], ss.PRESETS["edgevit_s"]])
    assert 0 < ms[0] < ms[1] and np.all(sd > 0)
    back = PhoneLatencyPredictor.from_dict(json.loads(json.dumps(pred.to_dict())))
    assert np.allclose(back.predict([ss.PRESETS["edgevit_xxs"]])[0], ms[:1])


def test_heads_change_only_the_score_work_of_an_attention_block():
    from predictors.latency.phone.blocks import BlockSpec, block_work

    nn = block_work(BlockSpec("transattn", 64, 128, 128, v_scale=1.0))  # nn-Meter's C/16 = 8 heads
    two = block_work(BlockSpec("transattn", 64, 128, 128, v_scale=1.0, heads=2))  # EdgeViT-like head_dim 64
    assert two.mm_macs == pytest.approx(nn.mm_macs) and two.dense_macs == pytest.approx(nn.dense_macs)
    assert two.attn_elems == pytest.approx(nn.attn_elems / 4)  # the score tensor: heads x N^2
    # the key carries a head count only where it differs from nn-Meter's C/16, and parses back to it
    assert BlockSpec("transattn", 64, 128, 128, v_scale=1.0, heads=8).key() == "transattn_64_128_hard_swish_1_ln"
    key = BlockSpec("transattn", 64, 128, 128, v_scale=1.0, heads=2).key()
    assert key == "transattn_64_128_hard_swish_1_ln_h2" and parse_key(key).heads == 2
    assert block_work(parse_key(key)) == two
    with pytest.raises(KeyFormatError, match="heads=3 must divide C=128"):
        parse_key("transattn_64_128_hard_swish_1_ln_h3")
    # EdgeViT's attention has no position bias: one pass fewer over the scores, the same MACs
    bare = parse_key(key + "_nopos")
    assert not bare.pos_bias and bare.heads == 2 and bare.key() == key + "_nopos"
    assert block_work(bare).attn_elems == pytest.approx(two.attn_elems * 4 / 5) and block_work(bare).macs == two.macs


def test_mapping_v2_queries_attention_with_the_candidates_heads_and_prices_it_by_work(tables):
    xxs = ss.PRESETS["edgevit_xxs"]
    v1, v2 = map_candidate(xxs, "v1"), map_candidate(xxs, "v2")
    assert [(p.half_block, p.part, p.provenance) for p in v1] == [(p.half_block, p.part, p.provenance) for p in v2]
    att = [(a, b) for a, b in zip(v1, v2) if a.part == "attention"]
    assert att and all(a.spec.heads == 0 and b.spec.heads == xxs.stages[int(b.half_block.split(".")[1])].heads
                       for a, b in att)
    assert all(a.spec == b.spec for a, b in zip(v1, v2) if a.part != "attention")
    keys = [k for k in tables["s21"] if k.split("_", 1)[0] in MAPPED_TYPES][::6]
    pred = PhoneLatencyPredictor("s21", block_types=MAPPED_TYPES, extrapolation=False, refit_full=False,
                                 mapping="v2").fit(keys, [tables["s21"][k] for k in keys])
    assert pred.regressors_["transattn"].kind_ == "rate"
    # fewer heads than C/16 (XXS: head_dim 36): less score work, a faster attention than the same fit
    # queried the v1 way; every other part unchanged
    pred.mapping = "v1"
    p1 = pred.predict_parts([xxs])[0]
    pred.mapping = "v2"
    p2 = pred.predict_parts([xxs])[0]
    t1 = sum(p.ms for p in p1.parts if p.part == "attention")
    t2 = sum(p.ms for p in p2.parts if p.part == "attention")
    assert 0 < t2 < t1
    assert [p.ms for p in p1.parts if p.part != "attention"] == [p.ms for p in p2.parts if p.part != "attention"]


def test_a_table_with_its_own_attention_blocks_lets_the_data_price_them(tables):
    """v2 fixes attention to the work-count kind for nn-Meter's tables (C/16 heads and the position
    bias everywhere); a device table with its own attention blocks (``_h``, ``_nopos`` keys) gets the
    hybrid, with head count and bias as inputs: a runtime whose one-head attention is slow (LiteRT on
    this project's CPUs) is priced so, where work counts say one head is the cheapest."""
    from predictors.latency.phone.blocks import BlockSpec, block_work
    from predictors.latency.phone.regressors import RateModel

    keys = [k for k in tables["s21"] if k.split("_", 1)[0] in MAPPED_TYPES][::12]
    attn = [parse_key(k) for k in tables["s21"] if k.startswith("transattn_")]
    rate = RateModel(block_types=("transattn",)).fit(attn, [tables["s21"][s.key()] for s in attn])
    own = [BlockSpec("transattn", hw, c, c, v_scale=1.0, heads=h, pos_bias=b)
           for hw in (16, 24, 32, 40, 48, 56, 64) for c in (32, 48, 64, 96) for h in (1, 2) for b in (True, False)]
    y_own = rate.predict_work([block_work(dataclasses.replace(s, pos_bias=True)) for s in own])
    y_own = y_own * np.array([(2.0 if s.heads == 1 else 1.0) * (1.0 if s.pos_bias else 0.7) for s in own])
    blocks = keys + [s.key() for s in own]
    y = [tables["s21"][k] for k in keys] + list(y_own)
    pred = PhoneLatencyPredictor("s21", block_types=MAPPED_TYPES, extrapolation=False, refit_full=False,
                                 mapping="v2").fit(blocks, y)
    reg = pred.regressors_["transattn"]
    assert reg.kind_ == "hybrid" and reg.heads_
    one, two = (BlockSpec("transattn", 44, 80, 80, v_scale=1.0, heads=h) for h in (1, 2))
    p1, p2 = reg.predict([one, two])
    assert p1 / p2 > 1.5 and rate.predict([one])[0] < rate.predict([two])[0]
    back = type(reg).from_dict(json.loads(json.dumps(reg.to_dict())))
    again = type(reg).from_dict(json.loads(json.dumps(back.to_dict())))  # a model saved after loading
    assert again.heads_ and again.nopos_ and np.allclose(again.predict([one, two]), [p1, p2])
    # a table that never measured attention without the position bias (every phone table) prices
    # EdgeViT's bias-free query as the block it holds: the phones' figures do not move
    phone = PhoneLatencyPredictor("s21", block_types=MAPPED_TYPES, extrapolation=False, refit_full=False,
                                  mapping="v2").fit(keys, [tables["s21"][k] for k in keys]).regressors_["transattn"]
    bare = dataclasses.replace(two, pos_bias=False)
    assert not phone.nopos_ and phone.predict([bare])[0] == phone.predict([two])[0]
    # ... while a table that measured both prices the bias
    assert reg.nopos_ and reg.predict([bare])[0] / p2 < 0.85


def test_weight_traffic_adds_one_network_part_of_its_measured_cost(s21):
    """A device that measured its weight traffic (ms per MB) gets one more part per candidate: that times
    the candidate's fp32 weights; 0 keeps nn-Meter's sum of blocks, and a bad value is a one-line error."""
    cfgs = [ss.PRESETS["edgevit_xxs"], ss.PRESETS["edgevit_s"]]
    base = s21.predict_parts(cfgs)
    s21.set_params(weight_ms_per_mb=0.25)
    try:
        more = s21.predict_parts(cfgs)
    finally:
        s21.set_params(weight_ms_per_mb=0.0)
    for b, m, cfg in zip(base, more, cfgs):
        net = [p for p in m.parts if p.provenance == "network"]
        assert len(net) == 1 and net[0].part == "weight_traffic"
        assert net[0].ms == pytest.approx(0.25 * ss.cost(cfg).params * 4 / 1e6, rel=1e-12)
        assert m.total_ms == pytest.approx(b.total_ms + net[0].ms, rel=1e-12) and m.std_ms > b.std_ms
        assert sum(m.share().values()) == pytest.approx(1.0) and m.share()["network"] > 0
    assert all(b.share()["network"] == 0 for b in base)
    with pytest.raises(ValueError, match=r"weight_ms_per_mb=-1.0: allowed: a finite number >= 0"):
        PhoneLatencyPredictor("s21", weight_ms_per_mb=-1.0).fit(*table_blocks("s21"))


def test_a_kernel_beyond_the_table_is_extrapolated_with_the_width_measured_for_it(s21):
    """nn-Meter's conv blocks stop at kernel 5; a kernel-7 LocalAgg is flagged and at least as uncertain
    as the kernel-7 miss measured on LiteRT (KERNEL_BEYOND_TABLE_SIGMA), a kernel-5 one is not."""
    from predictors.latency.phone.model import KERNEL_BEYOND_TABLE_SIGMA

    xxs = ss.PRESETS["edgevit_xxs"]
    for k in (5, 7):
        cfg = ss.EdgeViTConfig.from_dict({**xxs.to_dict(), "stages": [
            {**st.to_dict(), "kernel_size": k} if st.kernel_size else st.to_dict() for st in xxs.stages]})
        dw = [p for p in s21.predict_parts([cfg])[0].parts if p.part == "dw_pw"]
        _assert_floor(dw, KERNEL_BEYOND_TABLE_SIGMA, beyond=k == 7)


def _assert_floor(parts, floor: float, beyond: bool) -> None:
    """Parts beyond their table are flagged and at least ``floor`` wide (relative std); parts within it are narrower."""
    assert parts
    rel = [p.std_ms / p.ms for p in parts]
    if beyond:
        assert all(p.extrapolated for p in parts) and min(rel) >= floor - 1e-12
    else:
        assert max(rel) < floor


def test_auto_selection_scores_every_extrapolation_split_of_the_type(tables):
    # EdgeViT's LocalAgg queries conv below every table's smallest hw (stage 3: 5-8 px); the kind chosen
    # must have been judged there too, not only on the largest hw and channels (issue #14, eighth round).
    from predictors.latency.phone.regressors import EXTRAPOLATION_SPLITS

    rows = [(parse_key(k), v) for k, v in sorted(tables["s21"].items()) if k.startswith("conv_")][::4]
    reg = BlockRegressor("conv", model="auto", n_estimators=40).fit([s for s, _ in rows], [v for _, v in rows])
    for kind, v in reg.validation_.items():
        assert {f"{f}_{d}_p99_rel" for f, d in EXTRAPOLATION_SPLITS["conv"]} <= set(v), kind
    assert reg.validation_[reg.kind_]["score"] == min(v["score"] for v in reg.validation_.values())
    lo = min(s.hw for s, _ in rows)
    edge = min((s for s, _ in rows if s.hw == lo), key=lambda s: (s.cin, s.expansion, s.kernel))
    below = dataclasses.replace(edge, hw=max(lo // 3, 1))
    assert reg.predict([below])[0] < reg.predict([edge])[0]  # a forest would stay flat below its smallest hw


def test_attention_beyond_the_table_is_extrapolated_with_the_width_measured_for_it(s21):
    """nn-Meter's attention blocks stop at 32 x 32 tokens; a stage-0 global attention at 256 px (64 x 64) is
    flagged and at least as uncertain as the misses measured on LiteRT (ATTENTION_BEYOND_TABLE_SIGMA);
    the same network with stage-0 sampling r = 2 (32 x 32) is within the grid and is not."""
    from predictors.latency.phone.model import ATTENTION_BEYOND_TABLE_SIGMA

    xxs = ss.PRESETS["edgevit_xxs"]
    for r in (1, 2):
        d = xxs.to_dict()
        d["resolution"] = 256
        d["stages"][0] = {**d["stages"][0], "sr_ratio": r}
        cfg = ss.EdgeViTConfig.from_dict(d)
        att = [p for p in s21.predict_parts([cfg])[0].parts
               if p.part == "attention" and p.half_block.startswith("stages.0.")]
        _assert_floor(att, ATTENTION_BEYOND_TABLE_SIGMA, beyond=r == 1)
