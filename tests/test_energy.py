"""Energy sensors against fake sysfs trees that replay the real layouts and formats.

Each sysfs attribute is written the way the kernel shows it: a decimal integer (or a label) and a
newline. Files rewritten while a sensor polls them are replaced atomically (``os.replace``), as a
real sysfs read never sees a half-written value.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from device_farm.energy import (
    ENERGY_SENSORS,
    AndroidBatterySensor,
    EnergyResult,
    EnergyUnavailable,
    EnergyWindow,
    Ina3221Sensor,
    NvmlSensor,
    RaplSensor,
    energy_per_inference,
    detect_sensor,
)


def put(path: Path, value: int | str) -> None:
    """Write one sysfs attribute atomically: value + newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{value}\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------
# RAPL
# --------------------------------------------------------------------------------------------------

RAPL_MAX = 262143328850  # max_energy_range_uj as a common Intel server shows it


def rapl_zone(folder: Path, name: str, energy_uj: int, max_uj: int = RAPL_MAX) -> Path:
    put(folder / "name", name)
    put(folder / "energy_uj", energy_uj)
    put(folder / "max_energy_range_uj", max_uj)
    put(folder / "enabled", 1)
    return folder


@pytest.fixture
def rapl_root(tmp_path: Path) -> Path:
    """Two packages, a core sub-zone of package 0 (flat link and nested), dram, psys and mmio zones."""
    root = tmp_path / "powercap"
    put(root / "intel-rapl" / "enabled", 1)  # the control type folder, not a zone
    rapl_zone(root / "intel-rapl:0", "package-0", 1_000_000)
    rapl_zone(root / "intel-rapl:0" / "intel-rapl:0:0", "core", 500_000)
    rapl_zone(root / "intel-rapl:0:0", "core", 500_000)
    rapl_zone(root / "intel-rapl:0:1", "dram", 70_000)
    rapl_zone(root / "intel-rapl:1", "package-1", 2_000_000)
    rapl_zone(root / "intel-rapl:2", "psys", 9_000_000)
    rapl_zone(root / "intel-rapl-mmio:0", "package-0", 1_000_000)
    return root


def test_rapl_sums_packages_only(rapl_root: Path):
    sensor = RaplSensor(root=rapl_root)
    assert sensor.available() and sensor.why_unavailable() is None
    sensor.start()
    put(rapl_root / "intel-rapl:0" / "energy_uj", 1_000_000 + 3_250_000)  # +3.25 J
    put(rapl_root / "intel-rapl:1" / "energy_uj", 2_000_000 + 1_500_000)  # +1.5 J
    # Sub-zones, psys and mmio move a lot: counting any of them would be visible.
    for zone, start in (("intel-rapl:0:0", 500_000), ("intel-rapl:0:1", 70_000), ("intel-rapl:2", 9_000_000),
                        ("intel-rapl-mmio:0", 1_000_000)):
        put(rapl_root / zone / "energy_uj", start + 40_000_000)
    put(rapl_root / "intel-rapl:0" / "intel-rapl:0:0" / "energy_uj", 500_000 + 40_000_000)
    w = sensor.stop()
    assert w.joules == pytest.approx(4.75, abs=1e-9)
    assert w.source == "rapl:package-0+package-1"
    assert w.samples == 2
    assert 0 < w.seconds < 5


def test_rapl_wraparound(rapl_root: Path):
    put(rapl_root / "intel-rapl:0" / "energy_uj", RAPL_MAX - 1_000)
    sensor = RaplSensor(root=rapl_root)
    sensor.start()
    put(rapl_root / "intel-rapl:0" / "energy_uj", 500)  # wrapped: 1000 uJ to the top, then 500
    put(rapl_root / "intel-rapl:1" / "energy_uj", 2_000_000 + 2_000)
    w = sensor.stop()
    assert w.joules == pytest.approx((1_500 + 2_000) / 1e6, abs=1e-12)


def test_rapl_unavailable(tmp_path: Path, rapl_root: Path):
    missing = RaplSensor(root=tmp_path / "no-such-powercap")
    assert missing.available() is False
    assert "no powercap" in missing.why_unavailable()
    with pytest.raises(EnergyUnavailable):
        missing.start()
    # Only sub-zones and psys: nothing that is a package.
    only_parts = tmp_path / "parts"
    rapl_zone(only_parts / "intel-rapl:0:0", "core", 1)
    rapl_zone(only_parts / "intel-rapl:0", "psys", 1)
    assert RaplSensor(root=only_parts).available() is False
    # A corrupt counter is "unavailable", not an exception out of available().
    put(rapl_root / "intel-rapl:1" / "energy_uj", "garbage")
    assert RaplSensor(root=rapl_root).available() is False


def test_rapl_stop_without_start(rapl_root: Path):
    with pytest.raises(RuntimeError):
        RaplSensor(root=rapl_root).stop()


# --------------------------------------------------------------------------------------------------
# NVML (module injected: pynvml is not installed on the test machine)
# --------------------------------------------------------------------------------------------------


class FakeNvml:
    """Replays pynvml's calls; the energy counter integrates a power the test controls."""

    class NVMLError(Exception):
        pass

    def __init__(self, idle_w: float = 2.0, supported: bool = True):
        self.idle_w = idle_w
        self.supported = supported
        self.extra_mj = 0.0
        self.t0 = time.perf_counter()
        self.inits = 0

    def nvmlInit(self) -> None:
        self.inits += 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        if index != 0:
            raise self.NVMLError("Invalid Argument")
        return "handle0"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        if not self.supported:
            raise self.NVMLError("Not Supported")
        assert handle == "handle0"
        return int(self.idle_w * 1e3 * (time.perf_counter() - self.t0) + self.extra_mj)


def test_nvml_counter_window():
    fake = FakeNvml(idle_w=0.0)
    sensor = NvmlSensor(nvml=fake)
    assert sensor.available()
    sensor.start()
    fake.extra_mj += 1234
    w = sensor.stop()
    assert w.joules == pytest.approx(1.234, abs=1e-9)
    assert w.source == "nvml:gpu0" and w.samples == 2
    assert fake.inits == 1  # NVML initialised once per sensor, not per read


def test_nvml_unavailable(monkeypatch: pytest.MonkeyPatch):
    assert NvmlSensor(nvml=FakeNvml(supported=False)).available() is False  # pre-Volta: NotSupported
    assert NvmlSensor(index=3, nvml=FakeNvml()).available() is False
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    sensor = NvmlSensor()
    assert sensor.available() is False
    assert "nvidia-ml-py" in sensor.why_unavailable()
    with pytest.raises(EnergyUnavailable, match="not installed"):
        sensor.start()


# --------------------------------------------------------------------------------------------------
# INA3221
# --------------------------------------------------------------------------------------------------


def legacy_ina(root: Path, rails: dict[str, int]) -> dict[str, Path]:
    """L4T r32 iio layout; returns rail -> in_powerN_input path (milliwatts)."""
    dev = root / "ina3221x" / "1-0040" / "iio:device0"
    paths = {}
    for i, (rail, mw) in enumerate(rails.items()):
        put(dev / f"rail_name_{i}", rail)
        put(dev / f"in_power{i}_input", mw)
        put(dev / f"in_current{i}_input", mw * 1000 // 5000)
        put(dev / f"in_voltage{i}_input", 5000)
        paths[rail] = dev / f"in_power{i}_input"
    return paths


def hwmon_ina(root: Path, rails: dict[str, tuple[int, int]]) -> dict[str, tuple[Path, Path]]:
    """L4T r34+ hwmon layout; rail -> (inN_input mV, currN_input mA), channels numbered from 1."""
    dev = root / "ina3221" / "1-0040" / "hwmon" / "hwmon3"
    paths = {}
    for i, (rail, (mv, ma)) in enumerate(rails.items(), start=1):
        put(dev / f"in{i}_label", rail)
        put(dev / f"in{i}_input", mv)
        put(dev / f"curr{i}_input", ma)
        put(dev / f"in{i + 3}_input", 40)  # shunt voltage channel, unlabelled
        paths[rail] = (dev / f"in{i}_input", dev / f"curr{i}_input")
    put(dev / "in7_label", "sum of shunt voltages")
    put(dev / "in7_input", 120)
    return paths


def test_ina3221_constant_power_legacy_layout(tmp_path: Path):
    legacy_ina(tmp_path, {"VDD_CPU_GPU_CV": 7000, "VDD_IN": 1500, "VDD_SOC": 900})
    sensor = Ina3221Sensor(root=tmp_path, interval_s=0.01)
    assert sensor.available()
    sensor.start()
    time.sleep(0.2)
    w = sensor.stop()
    assert w.source == "ina3221:VDD_IN"
    assert w.joules == pytest.approx(1.5 * w.seconds, rel=1e-9)  # the input rail, not CPU_GPU_CV (7 W)
    assert 0.19 < w.seconds < 1.0
    assert w.samples >= 10


def test_ina3221_changing_power_hwmon_layout(tmp_path: Path):
    """Power ramps 1 W -> 5 W over the window: the integral must follow the exact one.

    The test rewrites ``curr1_input`` every millisecond and keeps what it wrote, so the exact integral
    of the (finely stepped) power it produced is known. At the default 50 ms interval a rectangle rule
    would be off by ~4 W * 0.05 s / 2 = 0.1 J; the trapezoid is exact on a ramp up to the edges.
    """
    paths = hwmon_ina(tmp_path, {"VIN_SYS_5V0": (5000, 200), "VDD_GPU_SOC": (5000, 900)})
    volts, amps = paths["VIN_SYS_5V0"]
    sensor = Ina3221Sensor(root=tmp_path)  # default interval, 0.05 s
    t_before = time.perf_counter()
    sensor.start()  # first reading somewhere in [t_before, t_a]
    t_a = time.perf_counter()
    written = [(t_a, 1.0)]  # (time from which the power holds, watts)
    while (elapsed := time.perf_counter() - t_a) < 0.4:
        ma = round((1.0 + 10.0 * elapsed) / 5.0 * 1000)
        put(amps, ma)
        written.append((time.perf_counter(), 5.0 * ma / 1000))
        time.sleep(0.001)
    t_b = time.perf_counter()
    w = sensor.stop()
    assert w.source == "ina3221:VIN_SYS_5V0"
    exact = sum(p * (t1 - t0) for (t0, p), (t1, _) in zip(written, [*written[1:], (t_b, 0.0)]))
    assert 1.1 < exact < 1.3  # the ramp really happened
    # The sensor's window is its first to its last reading: it adds `pre` seconds at 1 W before t_a
    # (at most t_a - t_before) and the rest after t_b at the last power written -- milliseconds on an
    # idle machine, tens of them on a loaded one. Bound the exact integral over that window.
    extra = w.seconds - (t_b - t_a)
    hi = exact + written[-1][1] * extra
    lo = hi - (written[-1][1] - 1.0) * min(extra, t_a - t_before)
    assert w.samples >= 7
    # Tolerance from the readings the sensor really took: what the trapezoid adds over a rectangle
    # rule on the same readings (0.1 J at the nominal 50 ms spacing, more when a loaded machine
    # delayed the polling thread). A trapezoid must land within half of that of the exact integral,
    # and never closer than 0.03 J is asked for: a reading is stamped at its midpoint, not its instant.
    readings = [*sensor._samples, (sensor._samples[0][0] + w.seconds, written[-1][1])]
    rectangle = sum(p0 * (t1 - t0) for (t0, p0), (t1, _) in zip(readings, readings[1:]))
    tol = max(0.03, 0.5 * (w.joules - rectangle))
    assert w.joules - rectangle > 0.05  # the ramp was sampled, and the trapezoid differs from a rectangle
    assert lo - tol <= w.joules <= hi + tol, (lo, w.joules, hi, tol)


def test_ina3221_rail_choice_and_unavailable(tmp_path: Path):
    legacy_ina(tmp_path / "a", {"POM_5V_IN": 4000, "POM_5V_GPU": 100})
    assert Ina3221Sensor(root=tmp_path / "a").available()  # Nano's input rail is a default
    named = Ina3221Sensor(rail="POM_5V_GPU", root=tmp_path / "a", interval_s=0.01)
    assert named.read_power_w() == pytest.approx(0.1)
    assert named.source() == "ina3221:POM_5V_GPU"

    assert Ina3221Sensor(root=tmp_path / "missing").available() is False
    legacy_ina(tmp_path / "b", {"GPU": 1000, "CPU": 1000})  # AGX Xavier: no total-input rail
    sensor = Ina3221Sensor(root=tmp_path / "b")
    assert sensor.available() is False
    assert "GPU" in sensor.why_unavailable() and "rail=" in sensor.why_unavailable()


def test_sampling_failure_mid_window_is_reported(tmp_path: Path):
    paths = legacy_ina(tmp_path, {"VDD_IN": 1000})
    sensor = Ina3221Sensor(root=tmp_path, interval_s=0.01)
    sensor.start()
    paths["VDD_IN"].unlink()
    time.sleep(0.05)
    with pytest.raises(EnergyUnavailable, match="mid-window"):
        sensor.stop()


# --------------------------------------------------------------------------------------------------
# Android battery over adb
# --------------------------------------------------------------------------------------------------


class FakeAdb:
    def __init__(self, current: str, voltage: str, fail: bool = False):
        self.current, self.voltage, self.fail = current, voltage, fail
        self.calls: list[list[str]] = []

    def __call__(self, cmd: list[str]) -> str:
        self.calls.append(list(cmd))
        if self.fail:
            raise subprocess.CalledProcessError(1, cmd, stderr="adb: device 'R58M' not found")
        out = ""
        for path in cmd[5:]:
            out += {"current_now": self.current, "voltage_now": self.voltage}[path.rsplit("/", 1)[1]]
        return out


@pytest.mark.parametrize("current", ["-352000\n", "352000\n", "-352000\r\n"])  # two sign conventions, CRLF
def test_android_battery_power(current: str):
    adb = FakeAdb(current, "3850000\n" if "\r" not in current else "3850000\r\n")
    sensor = AndroidBatterySensor("R58M", run=adb, interval_s=0.02)
    assert sensor.available()
    assert sensor.read_power_w() == pytest.approx(0.352 * 3.85, rel=1e-12)
    sensor.start()
    time.sleep(0.1)
    w = sensor.stop()
    assert w.joules == pytest.approx(0.352 * 3.85 * w.seconds, rel=1e-9)
    assert w.source == "android-battery:R58M"
    assert w.samples >= 4
    assert adb.calls[0] == ["adb", "-s", "R58M", "shell", "cat",
                            "/sys/class/power_supply/battery/current_now",
                            "/sys/class/power_supply/battery/voltage_now"]


def test_android_battery_unavailable():
    assert AndroidBatterySensor("R58M", run=FakeAdb("", "", fail=True)).available() is False
    no_file = "cat: /sys/class/power_supply/battery/current_now: No such file or directory\n"
    sensor = AndroidBatterySensor("R58M", run=FakeAdb(no_file, "3850000\n"))
    assert sensor.available() is False
    assert "two integers" in sensor.why_unavailable()


# --------------------------------------------------------------------------------------------------
# energy_per_inference
# --------------------------------------------------------------------------------------------------


def test_energy_per_inference_counter_subtracts_idle():
    """Counter integrates 2 W idle + 40 mJ per inference: the result must be 40 mJ, not 40 + idle."""
    fake = FakeNvml(idle_w=2.0)
    sensor = NvmlSensor(nvml=fake)

    def run_once() -> None:
        fake.extra_mj += 40.0
        time.sleep(0.06)

    r = energy_per_inference(sensor, run_once, n=20, idle_s=1.0)
    assert isinstance(r, EnergyResult)
    assert r.mj_per_inference == pytest.approx(40.0, rel=0.02)  # without subtraction: ~100 mJ
    assert r.idle_w == pytest.approx(2.0, rel=0.01)
    assert r.active_w == pytest.approx(2.0 + 0.8 / r.window_s, rel=0.01)
    assert r.window_s >= 1.2 and r.n == 20 and r.source == "nvml:gpu0"


def test_energy_per_inference_sampling_subtracts_idle(tmp_path: Path):
    """INA3221 file at 2 W idle, rewritten to 5 W by the first inference: 3 W net over the window."""
    power = legacy_ina(tmp_path, {"VDD_IN": 2000})["VDD_IN"]
    sensor = Ina3221Sensor(root=tmp_path, interval_s=0.005)

    def run_once() -> None:
        put(power, 5000)
        time.sleep(0.02)

    r = energy_per_inference(sensor, run_once, n=20, idle_s=0.3)
    assert r.idle_w == pytest.approx(2.0, rel=1e-9)
    # 5 %: the first poll after the 2 W -> 5 W switch smears the edge; no subtraction would be 67 % off.
    assert r.mj_per_inference == pytest.approx(3.0 * r.window_s / 20 * 1e3, rel=0.05)
    assert 4.8 < r.active_w <= 5.0
    assert r.source == "ina3221:VDD_IN"


def test_energy_per_inference_net_not_positive(tmp_path: Path, rapl_root: Path):
    power = legacy_ina(tmp_path, {"VDD_IN": 3000})["VDD_IN"]
    constant = Ina3221Sensor(root=tmp_path, interval_s=0.01)
    with pytest.raises(EnergyUnavailable, match=r"<= 0.*n=5"):
        energy_per_inference(constant, lambda: time.sleep(0.03), n=5, idle_s=0.1)

    def lower() -> None:  # the device draws less than idle while "running": no energy can be claimed
        put(power, 1000)
        time.sleep(0.03)

    with pytest.raises(EnergyUnavailable, match="<= 0"):
        energy_per_inference(Ina3221Sensor(root=tmp_path, interval_s=0.01), lower, n=5, idle_s=0.1)

    # A counter that never moves (e.g. a frozen RAPL) is unavailable, not 0 mJ.
    with pytest.raises(EnergyUnavailable, match="<= 0"):
        energy_per_inference(RaplSensor(root=rapl_root), lambda: time.sleep(0.03), n=5, idle_s=0.1)


def test_energy_per_inference_window_too_short(tmp_path: Path):
    legacy_ina(tmp_path, {"VDD_IN": 2000})
    sensor = Ina3221Sensor(root=tmp_path, interval_s=0.1)
    with pytest.raises(EnergyUnavailable, match=r"active window .*run more inferences per window \(n=1 now\)"):
        energy_per_inference(sensor, lambda: None, n=1, idle_s=0.25)
    with pytest.raises(EnergyUnavailable, match="raise idle_s"):
        energy_per_inference(sensor, lambda: None, n=1, idle_s=0.01)
    # The message is one line.
    try:
        energy_per_inference(sensor, lambda: None, n=1, idle_s=0.01)
    except EnergyUnavailable as e:
        assert "\n" not in str(e)


def test_energy_per_inference_stops_sensor_when_run_fails(tmp_path: Path):
    legacy_ina(tmp_path, {"VDD_IN": 2000})
    sensor = Ina3221Sensor(root=tmp_path, interval_s=0.01)

    def boom() -> None:
        raise RuntimeError("inference failed")

    with pytest.raises(RuntimeError, match="inference failed"):
        energy_per_inference(sensor, boom, n=3, idle_s=0.05)
    sensor.start()  # would raise "start() called twice" had the window been left open
    assert isinstance(sensor.stop(), EnergyWindow)
    assert not any(t.name == "energy-ina3221" for t in threading.enumerate())


def test_energy_per_inference_argument_checks(tmp_path: Path):
    legacy_ina(tmp_path, {"VDD_IN": 2000})
    sensor = Ina3221Sensor(root=tmp_path)
    with pytest.raises(ValueError, match="n="):
        energy_per_inference(sensor, lambda: None, n=0)
    with pytest.raises(ValueError, match="idle_s"):
        energy_per_inference(sensor, lambda: None, n=1, idle_s=0)


# --------------------------------------------------------------------------------------------------
# detect_sensor
# --------------------------------------------------------------------------------------------------


def test_detect_sensor(tmp_path: Path, rapl_root: Path):
    assert ENERGY_SENSORS == ("rapl", "nvml", "ina3221", "android-battery")
    assert detect_sensor(None) is None
    assert isinstance(detect_sensor("rapl", root=rapl_root), RaplSensor)
    assert detect_sensor("rapl", root=tmp_path / "none") is None
    assert isinstance(detect_sensor("nvml", nvml=FakeNvml()), NvmlSensor)
    assert detect_sensor("nvml", nvml=FakeNvml(supported=False)) is None
    assert detect_sensor("ina3221", root=tmp_path / "none") is None
    legacy_ina(tmp_path / "jetson", {"VDD_IN": 2000})
    assert isinstance(detect_sensor("ina3221", root=tmp_path / "jetson"), Ina3221Sensor)
    assert detect_sensor("android-battery", serial="X", run=FakeAdb("", "", fail=True)) is None
    phone = detect_sensor("android-battery", serial="X", run=FakeAdb("-1000\n", "3800000\n"))
    assert isinstance(phone, AndroidBatterySensor)


@pytest.mark.parametrize("kind", ["RAPL", "intel-rapl", "", "battery", 3])
def test_detect_sensor_unknown_kind(kind):
    with pytest.raises(ValueError) as info:
        detect_sensor(kind)
    msg = str(info.value)
    assert msg.startswith("energy_sensor=") and "\n" not in msg
    assert all(repr(k) in msg for k in ENERGY_SENSORS)
