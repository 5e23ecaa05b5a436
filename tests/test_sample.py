"""`farm sample`: resumable after an interrupt, through Ray or not."""
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

from device_farm import MeasurementStore, get_profile
from device_farm.measure import CANDLES, Farm, onnx_path_for
from device_farm.sample import plan, sample_and_measure

from test_measure import QUICK

#: Seeds whose first two candidates are small (0.17-0.25 GMACs; seed 9's second is 4.3): these tests check the
#: bookkeeping of sampling, and a measurement's time grows with the network.
SEED_KILL, SEED_RERUN, SEED_RAY = 305, 195, 191


def test_plan_is_deterministic_and_distinct():
    a, b = plan(12, seed=3), plan(12, seed=3)
    assert [c.arch_id for c in a] == [c.arch_id for c in b] and len({c.arch_id for c in a}) == 12
    assert [c.arch_id for c in plan(5, seed=3)] == [c.arch_id for c in a[:5]]


def test_rerun_skips_what_is_stored(tmp_path, onnx_cache):
    farm = Farm(MeasurementStore(tmp_path / "m.sqlite"), onnx_cache, protocol=QUICK)
    seen = []
    rep = sample_and_measure(farm, get_profile("host"), n=1, seed=SEED_RERUN, on_result=lambda m, d, t: seen.append((d, t)))
    assert rep.skipped == 0 and len(rep.measured) == 1 and seen == [(1, 1)]
    rep = sample_and_measure(farm, get_profile("host"), n=2, seed=SEED_RERUN, on_result=lambda m, d, t: seen.append((d, t)))
    assert rep.skipped == 1 and len(rep.measured) == 1 and seen[1:] == [(1, 1)]  # progress counts what is left
    assert len(farm.store) == 2 and {m.arch_id for m in farm.store} == {c.arch_id for c in plan(2, seed=SEED_RERUN)}


def test_sampling_through_ray_stores_on_the_driver(tmp_path, ray_local, onnx_cache):
    farm = Farm(MeasurementStore(tmp_path / "m.sqlite"), onnx_cache, protocol=QUICK)
    rep = sample_and_measure(farm, get_profile("host"), n=2, seed=SEED_RAY, use_ray=True)
    assert len(rep.measured) == 2 and all(m.status == "ok" for m in rep.measured)
    assert {m.arch_id for m in farm.store} == {c.arch_id for c in plan(2, seed=SEED_RAY)}


def test_kill_9_during_sample_loses_at_most_the_measurement_in_flight(tmp_path, onnx_cache):
    store = tmp_path / "m.sqlite"
    (tmp_path / "onnx").mkdir()  # the CLI's export cache, beside its store: the candles exported once for the suite
    for c in CANDLES:
        shutil.copy(onnx_path_for(c, onnx_cache), tmp_path / "onnx")
    cmd = [sys.executable, "-m", "nas", "farm", "sample", "--device", "host", "-n", "2", "--seed", str(SEED_KILL), "--quick",
           "--store", str(store)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    rows = 0
    while time.time() < deadline and proc.poll() is None:
        if store.exists():
            try:
                rows = sqlite3.connect(store).execute("SELECT COUNT(*) FROM measurements").fetchone()[0]
            except sqlite3.OperationalError:
                rows = 0
            if rows >= 1:
                break
        time.sleep(0.2)
    assert rows >= 1, "no measurement was stored before the deadline"
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its measuring worker process
    proc.wait()
    before = {m.arch_id for m in MeasurementStore(store)}
    assert len(before) == 1  # the first stored, the second killed in flight
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"already stored {len(before)}" in out.stdout
    after = MeasurementStore(store)
    assert {m.arch_id for m in after} == {c.arch_id for c in plan(2, seed=SEED_KILL)} and len(after) == 2
    assert sqlite3.connect(store).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
