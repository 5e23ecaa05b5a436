"""Real measurements on this machine's CPU through onnxruntime, in an isolated worker process."""
import dataclasses

import numpy as np
import pytest

from device_farm import Measurement, MeasurementStore, get_profile
from device_farm.measure import (CANDLE, CANDLES, LOW_QUANTILES, Farm, MachineMismatch, MeasureProtocol, _closest_pair,
                                 cpu_id, cpu_model, normalised_ms, onnx_path_for)
from search_space import PRESETS

#: Quicker protocols than the default so the suite stays short; the default is exercised by bench/farm_noise.py.
#: QUICK interleaves (the default protocol); BEFORE_AFTER is the protocol of issue #3.
#: Each session is a worker process of its own. The memory probe keeps its default 64 MiB: a smaller one fits
#: the last-level cache (32 MiB here), its ratio swings, and sessions get set aside as "busy" (tried with 8 MiB
#: on 2026-12-03: two tests ended disturbed in one suite run).
QUICK = MeasureProtocol(anchors=0, session_seconds=0.5, rounds_min=4, block_ms=15.0, ratio_ci=0.03,
                        session_agreement=0.25, drift_window=0.3, warmup=2, warmup_s=0.05,
                        memory_probe_runs=3, min_repeats=10, target_ci=0.03, max_seconds=4.0, candle_repeats=5)
BEFORE_AFTER = dataclasses.replace(QUICK, interleave=False)
SMALL = PRESETS["edgevit_xxs"].replace(resolution=160)


@pytest.fixture
def farm(tmp_path, onnx_cache):
    return Farm(MeasurementStore(tmp_path / "m.sqlite"), onnx_cache, protocol=QUICK)


def test_interleaved_measurement_has_ratios_sessions_and_a_normalised_latency(farm):
    m = farm.measure(SMALL, get_profile("host"))
    assert m.status == "ok", m.error
    assert 0 < m.p10_ms <= m.median_ms <= m.p90_ms and m.iqr_ms >= 0
    assert m.input_shape == "1x3x160x160" and m.threads == 1 and m.runtime == "onnxruntime"
    assert {"cpu", "load_before", "load_after", "session_ratios", "candle", "candle_ratios", "stop"} <= set(m.env)
    assert QUICK.sessions <= m.env["sessions"] == len(m.env["session_ratios"]) <= QUICK.max_sessions
    assert m.env["candle"] in {c.name for c in CANDLES} and m.candle_ms > 0 and m.candle_ratio > 0
    # the first measurement of the device sets its reference candles; norm_ms is the ratios x the candles
    refs = farm.store.candle_references("host", m.runtime_version, 1)
    assert set(refs) == {c.name for c in CANDLES}
    assert m.norm_ms == pytest.approx(normalised_ms(m.env["candle_ratios"], refs)) and m.latency_ms == m.norm_ms
    # between the two candles' estimates, each from the ratios norm_ms uses (the median over sessions;
    # m.candle_ratio is the agreeing pair's mean, which differs once a third session was needed: this
    # assertion failed that way beside the other test worker on 2026-12-04)
    near, far = (m.env["candle_ratios"][c] * refs[c] for c in (m.env["candle"], *(set(refs) - {m.env["candle"]})))
    assert min(near, far) <= m.norm_ms <= max(near, far)
    # the fast-end ratios are kept beside the medians (a record, norm_ms does not use them): per candle, the
    # candidate's minimum / the candle's minimum and the same of the 10th percentiles, in the medians' range
    for key in LOW_QUANTILES:
        assert set(m.env[key]) == set(m.env["candle_ratios"])
        for c, r in m.env[key].items():
            assert 0.5 < r / m.env["candle_ratios"][c] < 2.0
    assert m.env["candle_ratios_min"] != m.env["candle_ratios_p10"] != m.env["candle_ratios"]
    assert m.energy_mj is None or m.energy_source  # energy is measured by a named sensor or unavailable
    # the memory probe: a ratio per session, and the first clean measurement fixes the device's reference
    assert len(m.env["session_memory_ratio"]) == m.env["sessions"] and all(r > 0 for r in m.env["session_memory_ratio"])
    assert m.env["memory_reference"] is None  # nothing to judge the first one against
    ref = farm.store.memory_reference("host", m.runtime_version, 1)
    assert ref == pytest.approx(float(np.median(m.env["session_memory_ratio"])))
    (stored,) = farm.store.query(arch_id=SMALL.arch_id)
    assert stored.median_ms == m.median_ms and stored.norm_ms == m.norm_ms and stored.config == SMALL.to_dict()
    # later measurements keep the references: the unit of norm_ms never moves. Beside the other test
    # worker the memory probe can set every session aside, and a disturbed record has no norm_ms
    # (a suite run on 2026-12-04 failed so): measured again, up to three times.
    for _ in range(3):
        m2 = farm.measure(PRESETS["edgevit_xxs"].replace(resolution=192), get_profile("host"))
        assert farm.store.candle_references("host", m.runtime_version, 1) == refs  # disturbed or not
        if m2.status == "ok":
            break
    assert m2.status == "ok", m2.error
    assert m2.norm_ms == pytest.approx(normalised_ms(m2.env["candle_ratios"], refs))
    assert m2.env["memory_reference"] == ref == farm.store.memory_reference("host", m.runtime_version, 1)


def test_sessions_beside_a_busy_memory_system_are_set_aside_and_a_measurement_of_only_those_is_disturbed(farm):
    """A reference far below any real ratio stands for a neighbour copying memory the whole time: every
    session is set aside, the measurement is disturbed, names the memory system and keeps its timings;
    one far above sets nothing aside. Either way the device's stored reference is not touched."""
    profile = get_profile("host")
    first = farm.measure(SMALL, profile)
    ref = farm.store.memory_reference("host", first.runtime_version, 1)
    busy = farm.measure(PRESETS["edgevit_xxs"].replace(resolution=128), profile, memory_ref=ref / 100)
    assert busy.status == "disturbed" and "busy memory system" in busy.error
    assert busy.env["memory_busy_sessions"] == busy.env["sessions"] == QUICK.max_sessions
    assert all(r > 1 + QUICK.memory_band for r in busy.env["memory_busy_ratios"])
    assert busy.median_ms > 0 and busy.norm_ms is None and busy.env["candle_ratios"]  # kept, never a clean value
    calm = farm.measure(PRESETS["edgevit_xxs"].replace(resolution=192), profile, memory_ref=ref * 100)
    assert calm.status == "ok" and "memory_busy_sessions" not in calm.env
    assert farm.store.memory_reference("host", first.runtime_version, 1) == ref
    # no probe: nothing to judge, nothing recorded
    off = Farm(farm.store, farm.cache_dir, protocol=dataclasses.replace(QUICK, memory_probe_mib=0))
    m = off.measure(PRESETS["edgevit_xxs"].replace(resolution=224), profile, memory_ref=ref / 100)
    assert m.status == "ok" and m.env["session_memory_ratio"] == [None] * m.env["sessions"]


def test_a_store_measured_on_another_cpu_is_another_device_and_its_unit_is_never_mixed(farm):
    """The first clean measurement fixes the CPU of the device's references. The same store on a machine
    with another CPU (a copy carried over, a cloud machine back on another CPU) refuses to measure
    before timing anything, in one line; a record that arrives from another CPU (a Ray node under the
    same device id) is kept as failed, never normalised with these references."""
    profile = get_profile("host")
    m = farm.measure(SMALL, profile)
    assert m.status == "ok" and farm.store.reference_cpu("host", m.runtime_version, 1) == cpu_id() == m.env["cpu_id"]
    assert m.env["cpu"] == cpu_model() and cpu_id().startswith(cpu_model())
    farm.check_machine(profile)  # this machine: nothing to say
    with pytest.raises(MachineMismatch, match="another device") as e:
        farm.check_machine(profile, cpu="Some Other CPU @ 1.0GHz")
    assert "\n" not in str(e.value) and cpu_id() in str(e.value) and "--store" in str(e.value)
    other = Measurement.from_dict({**m.to_dict(), "arch_id": "0" * 12, "norm_ms": None,
                                   "env": {**m.env, "cpu_id": "Some Other CPU @ 1.0GHz"}})
    farm.record(other)
    (stored,) = farm.store.query(arch_id="0" * 12)
    assert stored.status == "failed" and stored.norm_ms is None and "another device" in stored.error
    assert stored.median_ms == m.median_ms  # the timings are kept
    assert farm.store.reference_cpu("host", m.runtime_version, 1) == cpu_id()


def test_sessions_are_judged_by_their_closest_pair():
    s = [{"ratios": [1.00, 0.5], "nearest": 0}, {"ratios": [1.05, 0.5], "nearest": 0}, {"ratios": [1.01, 0.5], "nearest": 0}]
    spread, pair = _closest_pair(s)
    assert pair == (0, 2) and spread == pytest.approx(0.01)
    assert _closest_pair(s[:1]) == (0.0, (0,))


def test_before_after_protocol_still_measures(tmp_path, onnx_cache):
    farm = Farm(MeasurementStore(tmp_path / "m.sqlite"), onnx_cache, protocol=BEFORE_AFTER)
    m = farm.measure(SMALL, get_profile("host"))
    assert m.status in ("ok", "disturbed"), m.error  # a loaded machine moves its candle: that is what it detects
    assert m.repeats >= BEFORE_AFTER.min_repeats and m.candle_ratio == pytest.approx(m.median_ms / m.candle_ms)
    assert {"candle_before_ms", "candle_after_ms", "stop"} <= set(m.env) and m.norm_ms is None


def test_export_is_cached_by_architecture_id(farm):
    p1 = onnx_path_for(SMALL, farm.cache_dir)
    mtime = p1.stat().st_mtime_ns
    assert onnx_path_for(SMALL, farm.cache_dir) == p1 and p1.stat().st_mtime_ns == mtime
    assert p1.name == f"{SMALL.arch_id}.onnx"


def test_session_creation_failure_is_recorded_with_its_error(tmp_path):
    farm = Farm(MeasurementStore(tmp_path / "m.sqlite"), protocol=QUICK)  # its own cache: it plants a bad file
    bad = PRESETS["edgevit_xs"].replace(resolution=128)
    farm.cache_dir.mkdir(parents=True, exist_ok=True)
    (farm.cache_dir / f"{bad.arch_id}.onnx").write_bytes(b"this is not an onnx model")
    m = farm.measure(bad, get_profile("host"))
    assert m.status == "failed" and "session creation failed" in m.error and m.median_ms is None
    assert farm.store.query(arch_id=bad.arch_id)[0].status == "failed"


def test_hanging_worker_times_out_into_a_failure(tmp_path, monkeypatch):
    # a lock of its own: with the suite on two workers, the other may be measuring, and the 0.5 s
    # timeout would then expire in the wait for the machine lock, not in the worker
    monkeypatch.setattr("device_farm.measure.MACHINE_LOCK", tmp_path / "measure.lock")
    slow = Farm(MeasurementStore(tmp_path / "m.sqlite"), protocol=dataclasses.replace(QUICK, timeout_s=0.5))
    m = slow.measure(SMALL, get_profile("host"))
    assert m.status == "failed" and "timed out after" in m.error


def test_candle_outside_its_band_marks_disturbed_and_remeasures(tmp_path, onnx_cache):
    farm = Farm(MeasurementStore(tmp_path / "m.sqlite"), onnx_cache, protocol=BEFORE_AFTER)
    # Seed the device's history with clean candles at 0.1 ms: the real candle (a few ms) is far off it.
    from device_farm import Measurement

    for i in range(6):
        farm.store.put(Measurement(arch_id=f"h{i}", device="host", runtime="onnxruntime",
                                   runtime_version=__import__("onnxruntime").__version__, input_shape="1x3x224x224",
                                   threads=1, precision="fp32", status="ok", median_ms=1.0, candle_ms=0.1))
    m = farm.measure(SMALL, get_profile("host"))
    assert m.status == "disturbed" and "off its usual" in m.error
    assert m.env["attempts"] == BEFORE_AFTER.retries + 1
    assert farm.store.query(arch_id=SMALL.arch_id)[0].status == "disturbed"


def test_judge_flags_a_candle_that_moved_during_the_run(farm):
    res = {"candle_before": [2.0] * 5, "candle_after": [2.5] * 5}
    assert "candle moved 25.0%" in farm._judge(res, [])[0]
    assert farm._judge({"candle_before": [2.0] * 5, "candle_after": [2.02] * 5}, [2.0] * 10) == []


def test_profile_ops_stores_per_operator_times(tmp_path, onnx_cache):
    farm = Farm(MeasurementStore(tmp_path / "m.sqlite"), onnx_cache, protocol=dataclasses.replace(QUICK, profile_ops=True, profile_runs=5))
    m = farm.measure(CANDLE, get_profile("host"))
    ops = farm.store.op_profile(m.arch_id, "host")
    assert len(ops) > 50 and {"Conv", "MatMul"} & {o["op_type"] for o in ops}
    assert any("self_attn" in o["node"] for o in ops)  # node names carry the PyTorch module path
    assert "op_profile" not in farm.store.query(arch_id=m.arch_id)[0].env


def test_anchor_checks_fix_the_unit_once_and_correct_later_measurements(tmp_path, onnx_cache):
    """The first anchor check sets the anchors' references (factor 1); a later check compares against them,
    and every normalised latency carries the factor of the check before it (issue #13)."""
    # every measurement checks again; no memory probe: beside the other test worker its sessions were all
    # set aside (up to 1.81x the reference, 2026-12-03), and the probe has its own test above
    p = dataclasses.replace(QUICK, anchors=2, anchor_every_s=0.0, memory_probe_mib=0)
    farm = Farm(MeasurementStore(tmp_path / "m.sqlite"), onnx_cache, protocol=p)
    # Beside the other test worker an anchor can still end disturbed (a drift window, sessions that
    # disagree), leaving the check without references
    # (first) or without a factor (later); a disturbed measurement has no norm_ms. Each is measured
    # again, up to three times (two suite runs failed so on 2026-12-03, a slow evening).
    for _ in range(3):
        m1 = farm.measure(SMALL, get_profile("host"))
        refs = farm.store.anchor_references("host", m1.runtime_version, 1)
        if m1.status == "ok" and len(refs) == 2:
            break
    assert m1.status == "ok", m1.error
    assert len(refs) == 2 and m1.env["anchor"]["k"] == 1.0  # the first check is the unit
    for _ in range(3):
        m2 = farm.measure(SMALL, get_profile("host"))
        if m2.status == "ok" and m2.env["anchor"]["n"] == 2:
            break
    assert m2.status == "ok", m2.error
    k = m2.env["anchor"]["k"]
    assert k != 1.0 and 0.7 < k < 1.4 and m2.env["anchor"]["n"] == 2
    cand = farm.store.candle_references("host", m2.runtime_version, 1)
    # the factor is recorded, not applied (it added noise: issue #13), unless the protocol asks for it
    assert m2.norm_ms == pytest.approx(normalised_ms(m2.env["candle_ratios"], cand))
    assert m2.env["reference_candles_ms"] == cand
    # with apply_anchor the factor multiplies it (recorded here on a copy of m2: no new measurement)
    again = dataclasses.replace(m2, norm_ms=None, env={k: v for k, v in m2.env.items() if k != "norm"})
    Farm(farm.store, protocol=dataclasses.replace(p, apply_anchor=True)).record(again)
    assert again.norm_ms == pytest.approx(normalised_ms(m2.env["candle_ratios"], cand) * k)
    assert farm.store.anchor_references("host", m2.runtime_version, 1) == refs  # never moved
    # a check younger than anchor_every_s is reused, also by another process's farm
    again = Farm(MeasurementStore(tmp_path / "m.sqlite"), protocol=dataclasses.replace(p, anchor_every_s=3600.0))
    assert again.anchor_factor(get_profile("host")) == farm.store.last_anchor_check("host", m2.runtime_version, 1)


def test_normalised_latency_weights_the_candles_by_where_the_candidate_lies():
    refs = {"candle": 5.0, "candle_large": 30.0}
    # a candidate at or beyond a candle takes that candle's estimate alone
    assert normalised_ms({"candle": 0.5, "candle_large": 0.09}, refs) == pytest.approx(2.5)  # below the small one
    assert normalised_ms({"candle": 20.0, "candle_large": 3.2}, refs) == pytest.approx(96.0)  # above the large one
    # between them the weight moves smoothly: the two estimates (12 ms, 13.2 ms) blend, nothing flips
    mid = normalised_ms({"candle": 2.4, "candle_large": 0.44}, refs)
    assert 12.0 < mid < 13.2
    a = normalised_ms({"candle": 2.4 * 0.999, "candle_large": 0.44 * 0.999}, refs)
    assert abs(a / mid - 0.999) < 1e-3  # a 0.1% change in the ratios is a 0.1% change, never a jump
    assert normalised_ms({"candle": 2.0}, refs) == 10.0 and normalised_ms({"other": 2.0}, refs) is None


def test_a_second_measurement_on_this_machine_waits_its_turn(farm):
    """Two farm processes timing at once slow each other; the machine lock makes them take turns (issue #17)."""
    import fcntl
    import os
    import threading
    import time

    from device_farm.measure import MACHINE_LOCK

    for cfg in (SMALL, *CANDLES):  # exported first: the export itself takes about a second
        onnx_path_for(cfg, farm.cache_dir)
    fd = os.open(MACHINE_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX)  # "another process" is measuring
    threading.Timer(1.5, lambda: os.close(fd)).start()
    t0 = time.perf_counter()
    m = farm.measure(SMALL, get_profile("host"))
    assert m.status == "ok", m.error
    assert m.env["waited_for_other_measurements_s"] >= 1.0 and time.perf_counter() - t0 >= 1.5


def test_renormalise_brings_old_rows_to_the_current_definition_and_training_refuses_a_mix(tmp_path):
    from device_farm import Measurement
    from device_farm.measure import NORM_VERSION, renormalise
    from predictors.latency import dataset
    from predictors.latency.device_model import NoDataError

    store = MeasurementStore(tmp_path / "m.sqlite")
    store.candle_references("host", "1.0", 1, propose={"candle": 5.0, "candle_large": 30.0})
    cfgs = [PRESETS["edgevit_xxs"], PRESETS["edgevit_xs"]]
    for cfg, ratios in zip(cfgs, ({"candle": 2.0, "candle_large": 0.36}, {"candle": 3.0, "candle_large": 0.5})):
        # written by the earlier version: the nearer candle x an anchor factor, no env["norm"]
        store.put(Measurement(cfg.arch_id, "host", "onnxruntime", "1.0", "1x3x224x224", 1, "fp32", "ok",
                              median_ms=11.0, candle_ratio=ratios["candle"], norm_ms=ratios["candle"] * 5.0 * 1.01,
                              env={"candle": "candle", "candle_ratios": ratios}, config=cfg.to_dict()))
    with pytest.raises(NoDataError, match="nas farm renormalise") as e:
        dataset(store, "host")
    assert "\n" not in str(e.value)
    assert renormalise(store) == 2 and renormalise(store) == 0  # once, then nothing left to do
    rows = {r.arch_id: r for r in store.query(device="host")}
    r = rows[cfgs[0].arch_id]
    assert r.norm_ms == pytest.approx(normalised_ms(r.env["candle_ratios"], {"candle": 5.0, "candle_large": 30.0}))
    assert r.env["norm_ms_before"] == pytest.approx(10.1) and r.env["norm"] == NORM_VERSION
    assert r.median_ms == 11.0  # no timing changes
    _, y, _ = dataset(store, "host")
    assert sorted(y) == sorted(x.norm_ms for x in rows.values())
