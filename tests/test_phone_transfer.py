"""nn-Meter's blocks as a device measures them: PyTorch blocks counted as the tables count them, the
stratified key choice, and a new phone's table from <= 20 measured blocks (issue #14)."""
import dataclasses
import json

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from predictors.latency.phone import BLOCK_TYPES, block_work, load_table, parse_key
from predictors.latency.phone.blocks import BlockSpec
from predictors.latency.phone.device_table import (attention_extension_keys, kernel_extension_keys, neighbour_keys,
                                                   stratified_keys)
from predictors.latency.phone.torch_blocks import BlockNetwork, NullNetwork, block_input_shape
from predictors.latency.phone.transfer import DEFAULT_QUOTA, TRANSFER_METHODS, BlockTransfer, choose_blocks, transfer_table

KEYS = ["firstconv_224_3_16_2_3", "conv_56_24_24_4_1_hard_swish_5_nose", "conv_48_16_32_6_2_hard_swish_3_se",
        "transds_28_32_64_2_4", "transattn_14_96_hard_swish_2_ln", "transattn_14_96_hard_swish_1_ln_h2",
        "transattn_14_96_hard_swish_1_ln_h2_nopos",
        "transffn_14_96_3_hard_swish_ln",
        "mbpool_7_160_1984_6_hard_swish"]


@pytest.fixture(scope="module")
def s21_keys():
    return sorted(load_table("s21"))


@pytest.mark.parametrize("key", KEYS)
def test_torch_block_does_the_work_the_table_counts(key):
    """MACs of the PyTorch block (torch's own count) equal the block's counted MACs: the same layers."""
    net = BlockNetwork(key)
    model = net.build()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        y = model(torch.randn(*net.input_shape))
    assert fc.get_total_flops() // 2 == pytest.approx(block_work(parse_key(key)).macs, rel=1e-9)
    s = parse_key(key)
    if s.type in ("transattn", "transffn"):
        assert y.shape == (1, s.hw * s.hw, s.cout)
    elif s.type in ("firstconv", "conv"):
        o = -(-s.hw // s.stride)
        assert y.shape == (1, o, o, s.cout)
    assert net.arch_id == BlockNetwork(key).arch_id and net.config_dict() is None
    assert block_input_shape(key) == net.input_shape


def test_null_network_is_one_add():
    net = NullNetwork()
    assert net.build()(torch.zeros(net.input_shape)).eq(1).all()


def test_stratified_keys_cover_every_side_of_every_type(s21_keys):
    keys = stratified_keys(s21_keys, {"firstconv": 12, "conv": 30, "transattn": 30}, seed=0)
    assert keys == stratified_keys(s21_keys, {"firstconv": 12, "conv": 30, "transattn": 30}, seed=0)
    types = [k.split("_", 1)[0] for k in keys]
    assert types.count("firstconv") == 12 and types.count("conv") == 30 and types.count("transattn") == 30
    for t in ("conv", "transattn"):
        sides_all = {parse_key(k).hw for k in s21_keys if k.startswith(t + "_")}
        sides = {parse_key(k).hw for k in keys if k.startswith(t + "_")}
        assert sides == sides_all  # round-robin over sides: each appears when the quota allows


def test_attention_extension_keys_are_the_queries_own_blocks_shared_by_side_weight():
    big = [BlockSpec("transattn", 64, 128, 128, v_scale=1.0, heads=h) for h in (1, 2, 4)]
    small = [BlockSpec("transattn", 14, 96, 96, v_scale=1.0, heads=h) for h in (1, 2)]
    ffn = BlockSpec("transffn", 14, 96, 96, expansion=4.0)
    queries = big + small + [big[1], ffn]
    weights = [10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 5.0]  # side 64 carries 40 of 60 attention weight units
    keys = attention_extension_keys(queries, 3, weights)
    # the queries' own blocks (head counts in the key), never another type; keys in proportion to weight
    assert all(parse_key(k).type == "transattn" and parse_key(k).v_scale == 1 for k in keys)
    assert sorted(parse_key(k).hw for k in keys) == [14, 64, 64]
    assert "transattn_64_128_hard_swish_1_ln_h2" in keys  # used twice: the heaviest of its side
    assert "transattn_14_96_hard_swish_1_ln_h1" in keys or "transattn_14_96_hard_swish_1_ln_h2" in keys
    assert len(attention_extension_keys(queries, 10, weights)) == 5  # no more than the distinct blocks
    assert "transattn_64_128_hard_swish_1_ln_h2" not in attention_extension_keys(
        queries, 5, weights, exclude=["transattn_64_128_hard_swish_1_ln_h2"])
    with pytest.raises(ValueError, match="n=-1"):
        attention_extension_keys(queries, -1)


def test_neighbour_keys_are_the_table_keys_nearest_the_queries_most_used_first(s21_keys):
    q_attn = parse_key("transattn_14_96_hard_swish_2_ln")
    exact = [q_attn, q_attn, parse_key("transffn_14_96_3_hard_swish_ln")]
    # a query that is a key is its own neighbour; two uses outweigh one
    assert neighbour_keys(s21_keys, exact, 5) == ["transattn_14_96_hard_swish_2_ln", "transffn_14_96_3_hard_swish_ln"]
    assert neighbour_keys(s21_keys, exact, 5, weights=[1, 1, 5])[0] == "transffn_14_96_3_hard_swish_ln"
    assert neighbour_keys(s21_keys, exact, 1, exclude=["transattn_14_96_hard_swish_2_ln"]) == \
        ["transffn_14_96_3_hard_swish_ln"]
    # off the grid: C 100 -> the nearest measured C (96 or 104) at the same side, v_scale 1 -> 2 (the grid's lowest)
    off = BlockSpec(type="transattn", hw=14, cin=100, cout=100, v_scale=1.0, heads=3)
    (k,) = neighbour_keys(s21_keys, [off], 3)
    s = parse_key(k)
    assert s.type == "transattn" and s.hw == 14 and s.cin in (96, 104) and s.v_scale == 2
    # a conv query with a kernel no key has: matched on the keys rewritten to that kernel
    local_agg = parse_key("conv_56_36_36_1_1_hard_swish_7_nose")
    (k7,) = neighbour_keys(s21_keys, [local_agg], 1)
    assert parse_key(k7).kernel == 7 and parse_key(k7).expansion == 1 and k7 not in s21_keys
    assert k7 in kernel_extension_keys(s21_keys, 7, n=10_000)
    with pytest.raises(ValueError, match="weights"):
        neighbour_keys(s21_keys, exact, 2, weights=[1.0])


def test_twenty_blocks_are_chosen_by_type_from_shapes_alone(s21_keys):
    chosen = choose_blocks(s21_keys)
    assert len(chosen) == sum(DEFAULT_QUOTA.values()) == 20 and len(set(chosen)) == 20
    assert chosen == choose_blocks(list(reversed(s21_keys)))
    for t in BLOCK_TYPES:
        assert sum(k.startswith(t + "_") for k in chosen) == DEFAULT_QUOTA[t]


def test_a_phone_twice_as_slow_is_recovered_exactly(s21_keys):
    src = load_table("s21")
    new = {k: 2.0 * v for k, v in src.items()}
    chosen = choose_blocks(s21_keys)
    for method in ("global", "type_scale", "type_affine", "shared"):
        tr = BlockTransfer(method).fit([src], {k: new[k] for k in chosen})
        pred = tr.predict([src], s21_keys[:500])
        assert np.allclose(pred, [new[k] for k in s21_keys[:500]], rtol=1e-9), method
    table = transfer_table([src, src], {k: new[k] for k in chosen})
    assert set(table) == set(s21_keys) and table[chosen[0]] == new[chosen[0]]
    with pytest.raises(ValueError, match="allowed: " + ", ".join(TRANSFER_METHODS)):
        BlockTransfer("nearest")


def test_leave_one_phone_out_beats_one_scale_and_macs(s21_keys):
    """Pixel 1 held out, s21 and pixel4 as sources (bench/phone_transfer.py prints all three folds)."""
    tables = {p: load_table(p) for p in ("s21", "pixel4", "pixel1")}
    chosen = choose_blocks(s21_keys)
    rest = [k for k in s21_keys if k not in set(chosen)]
    y = np.array([tables["pixel1"][k] for k in rest])
    share = {}
    for method in ("shared", "global", "macs"):
        tr = BlockTransfer(method).fit([tables["s21"], tables["pixel4"]], {k: tables["pixel1"][k] for k in chosen})
        share[method] = np.mean(np.abs(tr.predict([tables["s21"], tables["pixel4"]], rest) / y - 1) <= 0.10)
    assert share["shared"] >= 0.95 and share["shared"] > share["global"] + 0.1 and share["shared"] > share["macs"] + 0.5


def test_weight_stream_network_counts_its_weights_and_refuses_bad_sizes():
    from predictors.latency.phone.torch_blocks import WeightStreamNetwork

    net = WeightStreamNetwork(3, width=32, tokens=4)
    model = net.build()
    assert sum(p.numel() for p in model.parameters()) * 4 / 1e6 == pytest.approx(net.weight_mb, rel=1e-12)
    assert model(torch.randn(*net.input_shape)).shape == (1, 4, 32)
    assert net.arch_id != WeightStreamNetwork(4, width=32, tokens=4).arch_id and net.config_dict() is None
    with pytest.raises(ValueError, match=r"WeightStreamNetwork.depth=0: allowed: a positive integer"):
        WeightStreamNetwork(0)


def test_weight_traffic_is_measured_by_the_farm_and_resumes(tmp_path, onnx_cache):
    """Four real chains measured through the farm (onnxruntime here: the function is the same for LiteRT
    and a phone); the cost per MB is the difference of two slopes, and a rerun takes the stored rows."""
    from device_farm import MeasurementStore, get_profile
    from device_farm.measure import Farm
    from predictors.latency.phone.device_table import measure_weight_traffic

    from test_measure import QUICK

    one = dataclasses.replace(QUICK, sessions=1, max_sessions=2, memory_probe_mib=0)  # what is checked is the slopes' arithmetic and the resume
    farm = Farm(MeasurementStore(tmp_path / "m.sqlite"), onnx_cache, protocol=one)  # the suite's export cache: candles exported once
    host = get_profile("host")
    r = measure_weight_traffic(farm, host, width=128, depths=(1, 2, 16, 32))
    ms = {int(k): v for k, v in r["latency_ms"].items()}
    assert set(ms) == {1, 2, 16, 32} and all(v > 0 for v in ms.values())
    assert ms[32] > ms[1]  # 32 layers of work take longer than one, whatever the caches do
    assert r["ms_per_mb"] >= 0 and r["layer_mb"] == pytest.approx((128 * 128 + 128) * 4 / 1e6)
    assert r["ms_per_mb"] == pytest.approx(max(r["streamed_ms_per_layer"] - r["cached_ms_per_layer"], 0) / r["layer_mb"])
    n = len(farm.store.query(device=host.id))
    again = measure_weight_traffic(farm, host, width=128, depths=(1, 2, 16, 32))
    assert len(farm.store.query(device=host.id)) == n and again["latency_ms"] == r["latency_ms"]
    with pytest.raises(ValueError, match="four increasing chain depths"):
        measure_weight_traffic(farm, host, depths=(8, 2, 48, 96))


def test_a_new_device_from_a_few_measured_blocks_gets_a_saved_phone_block_model(tmp_path, onnx_cache):
    """``nas farm calibrate --blocks``'s function on a real device (onnxruntime here; a phone over adb
    runs the same blocks): the chosen blocks are measured through the farm, the phones' tables mapped
    onto them, the block model fitted and saved as the device's latency model, its table beside it;
    the measured blocks keep their measured values; bad sources are refused before anything is measured."""
    from device_farm import MeasurementStore
    from device_farm.measure import Farm
    from predictors.latency import load_device_model
    from predictors.latency.device import calibrate_device_blocks
    from predictors.latency.phone.device_table import read_table
    from search_space import PRESETS

    from test_measure import QUICK

    # the suite's export cache (candles exported once); one session per block and no memory probe:
    # this test checks the calibration path (13 worker sessions for 4 measurements before, 2026-12-03)
    fast = dataclasses.replace(QUICK, sessions=1, max_sessions=2, memory_probe_mib=0)
    farm = Farm(MeasurementStore(tmp_path / "m.sqlite"), onnx_cache, protocol=fast)
    root = tmp_path / "predictors"
    with pytest.raises(ValueError, match="sources=nope: allowed: "):
        calibrate_device_blocks("host", farm, root=root, sources=["nope"])
    with pytest.raises(ValueError, match="must not contain the device"):
        calibrate_device_blocks("s21", farm, root=root, sources=["s21", "pixel4"])
    assert not farm.store.query(device="host")  # refused before measuring
    seen = []
    path, summary = calibrate_device_blocks(
        "host", farm, root=root, quota={"conv": 1, "transds": 1, "transffn": 1}, sources=["s21", "pixel4"],
        on_result=lambda key, m, d, t: seen.append((key, d, t)), model="rate", extrapolation=False, refit_full=False)
    assert [d for _, d, _ in seen] == [1, 2, 3] and {t for *_, t in seen} == {3}
    assert sorted(k.split("_", 1)[0] for k in summary["measured"]) == ["conv", "transds", "transffn"]
    table = read_table(summary["table"])
    assert summary["keys"] == len(table) > 10_000
    assert all(table[k] == pytest.approx(v) for k, v in summary["measured"].items())
    model = load_device_model("host", root)
    assert model.source == "block-transfer" and model.n_measurements == 3 and "s21, pixel4" in model.provenance
    mean, std = model.estimator.predict([PRESETS["edgevit_xxs"], PRESETS["edgevit_s"]])
    assert 0 < mean[0] < mean[1] and (std > 0).all()
    # what was measured is in the store (the three blocks and the per-call overhead model), so a rerun
    # resumes from it (measure_block_table's reuse)
    assert len(farm.store.query(device="host")) == 4 and path == root / "host-latency.json"
    # what `nas search` prints a figure means: a phone calibrated by the user (here the saved model under
    # s21's id) means the profile's own runtime on the user's phone, never nn-Meter's shipped data
    from nas.search_cli import _figure_meaning

    assert "benchmark_model" in _figure_meaning("s21", tmp_path / "nothing saved")
    doc = json.loads(path.read_text())
    (root / "s21-latency.json").write_text(json.dumps({**doc, "device": "s21"}))
    line = _figure_meaning("s21", root)
    assert line.startswith("tflite on ") and "calibrated here (block-transfer" in line and "benchmark_model" not in line
