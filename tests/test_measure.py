"""Real measurements on this machine's CPU through onnxruntime, in an isolated worker process."""
import dataclasses

import pytest

from device_farm import MeasurementStore, get_profile
from device_farm.measure import CANDLE, CANDLES, Farm, MeasureProtocol, _closest_pair, onnx_path_for
from search_space import PRESETS

#: Quicker protocols than the default so the suite stays short; the default is exercised by bench/farm_noise.py.
#: QUICK interleaves (the default protocol); BEFORE_AFTER is the protocol of issue #3.
QUICK = MeasureProtocol(anchors=0, session_seconds=1.0, rounds_min=6, ratio_ci=0.03, session_agreement=0.25,
                        drift_window=0.3, warmup_s=0.1,
                        min_repeats=10, target_ci=0.03, max_seconds=4.0, candle_repeats=5)
BEFORE_AFTER = dataclasses.replace(QUICK, interleave=False)
SMALL = PRESETS["edgevit_xxs"].replace(resolution=160)


@pytest.fixture
def farm(tmp_path):
    return Farm(MeasurementStore(tmp_path / "m.sqlite"), protocol=QUICK)


def test_interleaved_measurement_has_ratios_sessions_and_a_normalised_latency(farm):
    m = farm.measure(SMALL, get_profile("host"))
    assert m.status == "ok", m.error
    assert 0 < m.p10_ms <= m.median_ms <= m.p90_ms and m.iqr_ms >= 0
    assert m.input_shape == "1x3x160x160" and m.threads == 1 and m.runtime == "onnxruntime"
    assert {"cpu", "load_before", "load_after", "session_ratios", "candle", "candle_ratios", "stop"} <= set(m.env)
    assert QUICK.sessions <= m.env["sessions"] == len(m.env["session_ratios"]) <= QUICK.max_sessions
    assert m.env["candle"] in {c.name for c in CANDLES} and m.candle_ms > 0 and m.candle_ratio > 0
    # the first measurement of the device sets its reference candles, so its own norm_ms is ratio x candle
    refs = farm.store.candle_references("host", m.runtime_version, 1)
    assert set(refs) == {c.name for c in CANDLES}
    assert m.norm_ms == pytest.approx(m.candle_ratio * refs[m.env["candle"]]) and m.latency_ms == m.norm_ms
    assert m.energy_mj is None or m.energy_source  # energy is measured by a named sensor or unavailable
    (stored,) = farm.store.query(arch_id=SMALL.arch_id)
    assert stored.median_ms == m.median_ms and stored.norm_ms == m.norm_ms and stored.config == SMALL.to_dict()
    # later measurements keep the references: the unit of norm_ms never moves
    m2 = farm.measure(PRESETS["edgevit_xxs"].replace(resolution=192), get_profile("host"))
    assert farm.store.candle_references("host", m.runtime_version, 1) == refs
    assert m2.norm_ms == pytest.approx(m2.candle_ratio * refs[m2.env["candle"]])


def test_sessions_are_judged_by_their_closest_pair():
    s = [{"ratios": [1.00, 0.5], "nearest": 0}, {"ratios": [1.05, 0.5], "nearest": 0}, {"ratios": [1.01, 0.5], "nearest": 0}]
    spread, pair = _closest_pair(s)
    assert pair == (0, 2) and spread == pytest.approx(0.01)
    assert _closest_pair(s[:1]) == (0.0, (0,))


def test_before_after_protocol_still_measures(tmp_path):
    farm = Farm(MeasurementStore(tmp_path / "m.sqlite"), protocol=BEFORE_AFTER)
    m = farm.measure(SMALL, get_profile("host"))
    assert m.status in ("ok", "disturbed"), m.error  # a loaded machine moves its candle: that is what it detects
    assert m.repeats >= BEFORE_AFTER.min_repeats and m.candle_ratio == pytest.approx(m.median_ms / m.candle_ms)
    assert {"candle_before_ms", "candle_after_ms", "stop"} <= set(m.env) and m.norm_ms is None


def test_export_is_cached_by_architecture_id(farm):
    p1 = onnx_path_for(SMALL, farm.cache_dir)
    mtime = p1.stat().st_mtime_ns
    assert onnx_path_for(SMALL, farm.cache_dir) == p1 and p1.stat().st_mtime_ns == mtime
    assert p1.name == f"{SMALL.arch_id}.onnx"


def test_session_creation_failure_is_recorded_with_its_error(farm):
    bad = PRESETS["edgevit_xs"].replace(resolution=128)
    farm.cache_dir.mkdir(parents=True, exist_ok=True)
    (farm.cache_dir / f"{bad.arch_id}.onnx").write_bytes(b"this is not an onnx model")
    m = farm.measure(bad, get_profile("host"))
    assert m.status == "failed" and "session creation failed" in m.error and m.median_ms is None
    assert farm.store.query(arch_id=bad.arch_id)[0].status == "failed"


def test_hanging_worker_times_out_into_a_failure(tmp_path):
    slow = Farm(MeasurementStore(tmp_path / "m.sqlite"), protocol=dataclasses.replace(QUICK, timeout_s=0.5))
    m = slow.measure(SMALL, get_profile("host"))
    assert m.status == "failed" and "timed out after" in m.error


def test_candle_outside_its_band_marks_disturbed_and_remeasures(tmp_path):
    farm = Farm(MeasurementStore(tmp_path / "m.sqlite"), protocol=BEFORE_AFTER)
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


def test_profile_ops_stores_per_operator_times(tmp_path):
    farm = Farm(MeasurementStore(tmp_path / "m.sqlite"), protocol=dataclasses.replace(QUICK, profile_ops=True, profile_runs=5))
    m = farm.measure(CANDLE, get_profile("host"))
    ops = farm.store.op_profile(m.arch_id, "host")
    assert len(ops) > 50 and {"Conv", "MatMul"} & {o["op_type"] for o in ops}
    assert any("self_attn" in o["node"] for o in ops)  # node names carry the PyTorch module path
    assert "op_profile" not in farm.store.query(arch_id=m.arch_id)[0].env


def test_anchor_checks_fix_the_unit_once_and_correct_later_measurements(tmp_path):
    """The first anchor check sets the anchors' references (factor 1); a later check compares against them,
    and every normalised latency carries the factor of the check before it (issue #13)."""
    p = dataclasses.replace(QUICK, anchors=2, anchor_every_s=0.0)  # every measurement checks again
    farm = Farm(MeasurementStore(tmp_path / "m.sqlite"), protocol=p)
    m1 = farm.measure(SMALL, get_profile("host"))
    assert m1.status == "ok", m1.error
    refs = farm.store.anchor_references("host", m1.runtime_version, 1)
    assert len(refs) == 2 and m1.env["anchor"]["k"] == 1.0  # the first check is the unit
    m2 = farm.measure(SMALL, get_profile("host"))
    k = m2.env["anchor"]["k"]
    assert k != 1.0 and 0.7 < k < 1.4 and m2.env["anchor"]["n"] == 2
    cand = farm.store.candle_references("host", m2.runtime_version, 1)
    assert m2.norm_ms == pytest.approx(m2.candle_ratio * cand[m2.env["candle"]] * k)
    assert farm.store.anchor_references("host", m2.runtime_version, 1) == refs  # never moved
    # a check younger than anchor_every_s is reused, also by another process's farm
    again = Farm(MeasurementStore(tmp_path / "m.sqlite"), protocol=dataclasses.replace(p, anchor_every_s=3600.0))
    assert again.anchor_factor(get_profile("host")) == farm.store.last_anchor_check("host", m2.runtime_version, 1)


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
