"""Energy per inference, read from real power sensors; with no sensor the energy is *unavailable*.

The project ranks architectures under an energy budget, so an energy number that was guessed (from
TDP, from MACs, from a "typical" board power) would silently poison the store and the predictors
trained on it. This module therefore only reports energy that a sensor on the device measured, and
says so loudly (:class:`EnergyUnavailable`, or ``None`` from :func:`detect_sensor`) otherwise.

Two families of sensor exist and they fail differently, which is why the base classes split them:

* **counter** sensors (Linux RAPL, NVIDIA NVML) expose a cumulative energy counter that the
  hardware integrates for us; we read it at :meth:`~EnergySensor.start` and
  :meth:`~EnergySensor.stop` and subtract. Their limits are the counter's width (RAPL wraps) and its
  refresh period (a window shorter than a few refreshes reads as a quantised step, or zero).
* **sampling** sensors (Jetson INA3221 rails, an Android battery gauge over adb) only expose
  *instantaneous* power; a daemon thread polls it every ``interval_s`` between start and stop and
  integrates with the trapezoid rule. Their limit is the polling interval: anything shorter than
  one interval is never observed, only guessed from the two endpoints.

Energy per inference subtracts the idle power measured just before, on the same sensor, because
every one of these sensors sees the whole package/board/phone, not only the work we launched.

Why one module of ~640 lines: the four sensors share the two base classes, the idle subtraction and
the detection order, and each is a few dozen lines of parsing; split per sensor, every file would
import the same half of this one.
"""
from __future__ import annotations

import glob
import os
import re
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = [
    "ENERGY_SENSORS",
    "EnergyUnavailable",
    "EnergyWindow",
    "EnergyResult",
    "EnergySensor",
    "SamplingSensor",
    "RaplSensor",
    "NvmlSensor",
    "Ina3221Sensor",
    "AndroidBatterySensor",
    "energy_per_inference",
    "detect_sensor",
]

#: The values the ``energy_sensor`` field of a device profile may take (``None``: no sensor).
ENERGY_SENSORS: tuple[str, ...] = ("rapl", "nvml", "ina3221", "android-battery")


class EnergyUnavailable(RuntimeError):
    """No trustworthy energy number can be given; the message is one line saying why and what to do."""


@dataclass(frozen=True)
class EnergyWindow:
    """What a sensor saw between one ``start()`` and the matching ``stop()``.

    ``seconds`` is the span the joules cover (the sensor's own reading times, not the caller's), so
    ``joules / seconds`` is the mean power over exactly that span. ``samples`` counts the readings
    the number is built from: 2 for a counter sensor (start and stop), the number of power readings
    for a sampling sensor; it lets a caller reject windows the sensor could not resolve.
    """

    joules: float
    seconds: float
    samples: int
    source: str


@dataclass(frozen=True)
class EnergyResult:
    """Energy of one inference with the idle power taken out, and the numbers it came from."""

    mj_per_inference: float
    idle_w: float
    active_w: float
    window_s: float
    n: int
    source: str


class EnergySensor(ABC):
    """A real power/energy sensor that measures the energy of a window ``start()`` .. ``stop()``.

    ``min_samples`` and ``min_window_s`` describe the shortest window the sensor can resolve;
    :func:`energy_per_inference` refuses windows below them instead of reporting quantisation noise.
    One sensor object measures one window at a time.
    """

    name: str = ""
    min_samples: int = 2
    min_window_s: float = 0.0

    @abstractmethod
    def why_unavailable(self) -> str | None:
        """``None`` when the sensor can be read now, else a one-line reason (for the user/log)."""

    def available(self) -> bool:
        """Cheap check that the sensor can be read; never raises, so callers can probe freely."""
        try:
            return self.why_unavailable() is None
        except Exception:  # a probe must not take the caller down, whatever the platform does
            return False

    @abstractmethod
    def start(self) -> None:
        """Begin a window; raises :class:`EnergyUnavailable` if the sensor cannot be read."""

    @abstractmethod
    def stop(self) -> EnergyWindow:
        """End the window begun by :meth:`start` and return what was measured."""


def _read_int(path: Path | str) -> int:
    """sysfs attributes are one decimal integer and a newline; ``int`` tolerates the whitespace."""
    with open(path, encoding="ascii") as f:
        return int(f.read().strip())


def _read_str(path: Path | str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read().strip()


# --------------------------------------------------------------------------------------------------
# Counter sensors
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RaplZone:
    name: str
    energy_path: Path
    max_range_uj: int


class RaplSensor(EnergySensor):
    """CPU package energy from the Linux powercap RAPL interface (Intel, and AMD on recent kernels).

    Only top-level ``intel-rapl:N`` zones named ``package-*`` are summed: their ``core``/``uncore``/
    ``dram`` sub-zones (``intel-rapl:N:M``) are parts of, or beside, the package and would be counted
    twice; a top-level ``psys`` zone (laptops) covers the whole platform *including* the packages;
    ``intel-rapl-mmio:N`` repeats the package counter through MMIO. ``energy_uj`` is an unsigned
    microjoule counter that wraps at ``max_energy_range_uj``; one wrap per window is undone, which is
    safe while a window is shorter than one full run of the counter (a common range is ~262 kJ, i.e.
    ~45 min at 100 W per package; far beyond an inference window). Since Linux 5.10
    ``energy_uj`` is readable by root only (CVE-2020-8694); then :meth:`available` is false and
    :meth:`why_unavailable` says so.
    """

    name = "rapl"
    #: The counter refreshes about every millisecond; 0.1 s keeps that quantisation near 1 %.
    min_window_s = 0.1

    _ZONE_RE = re.compile(r"^intel-rapl:(\d+)$")

    def __init__(self, root: str | os.PathLike[str] = "/sys/class/powercap"):
        self.root = Path(root)
        self._zones_in_use: tuple[_RaplZone, ...] | None = None
        self._t0 = 0.0
        self._start_uj: tuple[int, ...] = ()

    def _zones(self) -> tuple[_RaplZone, ...]:
        """The package zones, in index order; raises EnergyUnavailable with the reason if none."""
        if not self.root.is_dir():
            raise EnergyUnavailable(f"rapl: no powercap directory at {self.root} (no RAPL on this machine/VM)")
        found: list[tuple[int, _RaplZone]] = []
        for entry in self.root.iterdir():
            m = self._ZONE_RE.match(entry.name)
            if not m:
                continue
            try:
                zone_name = _read_str(entry / "name")
            except OSError:
                continue
            if not zone_name.startswith("package"):
                continue  # psys: whole platform, overlaps the packages
            try:
                max_range = _read_int(entry / "max_energy_range_uj")
            except (OSError, ValueError) as e:
                raise EnergyUnavailable(f"rapl: cannot read {entry / 'max_energy_range_uj'}: {e}") from e
            found.append((int(m.group(1)), _RaplZone(zone_name, entry / "energy_uj", max_range)))
        if not found:
            raise EnergyUnavailable(f"rapl: no intel-rapl:N package zone under {self.root}")
        return tuple(z for _, z in sorted(found, key=lambda item: item[0]))

    def _read(self, zones: tuple[_RaplZone, ...]) -> tuple[float, tuple[int, ...]]:
        """All counters and the time they were read (midpoint of the reads)."""
        t_before = time.perf_counter()
        try:
            values = tuple(_read_int(z.energy_path) for z in zones)
        except PermissionError as e:
            raise EnergyUnavailable(
                f"rapl: {e.filename} is not readable (root-only since Linux 5.10); run as root or chmod a+r it"
            ) from e
        except (OSError, ValueError) as e:
            raise EnergyUnavailable(f"rapl: cannot read the energy counter: {e}") from e
        return (t_before + time.perf_counter()) / 2, values

    def why_unavailable(self) -> str | None:
        try:
            self._read(self._zones())
        except EnergyUnavailable as e:
            return str(e)
        return None

    def start(self) -> None:
        if self._zones_in_use is not None:
            raise RuntimeError("rapl: start() called twice without stop()")
        zones = self._zones()
        self._t0, self._start_uj = self._read(zones)
        self._zones_in_use = zones

    def stop(self) -> EnergyWindow:
        zones = self._zones_in_use
        if zones is None:
            raise RuntimeError("rapl: stop() called without start()")
        self._zones_in_use = None
        t1, end_uj = self._read(zones)
        total_uj = 0
        for zone, a, b in zip(zones, self._start_uj, end_uj):
            delta = b - a
            if delta < 0:  # the counter wrapped once (more than once cannot be seen from two reads)
                delta += zone.max_range_uj
            total_uj += delta
        source = "rapl:" + "+".join(z.name for z in zones)
        return EnergyWindow(joules=total_uj / 1e6, seconds=t1 - self._t0, samples=2, source=source)


class NvmlSensor(EnergySensor):
    """GPU board energy from NVML's total-energy counter (millijoules since the driver loaded).

    Only the GPU board is measured, not the host CPU feeding it. The counter exists on Volta and
    newer; older GPUs answer NotSupported and the sensor is unavailable. ``pynvml`` (package
    ``nvidia-ml-py``) is imported lazily so machines without NVIDIA software import this module fine;
    ``nvml`` may be given a module-like object instead (tests, or another binding).
    """

    name = "nvml"
    #: The driver refreshes the counter every 20-100 ms on recent GPUs (undocumented, varies); a
    #: window of 1 s spans at least ~10 refreshes, so the refresh step stays near 10 % or less.
    min_window_s = 1.0

    def __init__(self, index: int = 0, nvml: Any | None = None):
        self.index = index
        self._nvml = nvml
        self._handle: Any = None
        self._t0: float | None = None
        self._start_mj = 0

    def _lib(self) -> Any:
        if self._nvml is None:
            import pynvml  # lazily: absent on most machines this project runs on

            self._nvml = pynvml
        return self._nvml

    def _nvml_error(self) -> type[BaseException]:
        return getattr(self._nvml, "NVMLError", Exception) if self._nvml is not None else Exception

    def _read(self) -> tuple[float, int]:
        lib = self._lib()
        if self._handle is None:
            lib.nvmlInit()
            self._handle = lib.nvmlDeviceGetHandleByIndex(self.index)
        t_before = time.perf_counter()
        mj = int(lib.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        return (t_before + time.perf_counter()) / 2, mj

    def _read_or_raise(self) -> tuple[float, int]:
        try:
            return self._read()
        except ImportError as e:
            raise EnergyUnavailable("nvml: pynvml is not installed (pip install nvidia-ml-py)") from e
        except self._nvml_error() as e:
            raise EnergyUnavailable(f"nvml: gpu{self.index}: {e}") from e

    def why_unavailable(self) -> str | None:
        try:
            self._read_or_raise()
        except EnergyUnavailable as e:
            return str(e)
        except Exception as e:  # any binding failure means "cannot read", never a crash in a probe
            return f"nvml: gpu{self.index}: {type(e).__name__}: {e}"
        return None

    def start(self) -> None:
        if self._t0 is not None:
            raise RuntimeError("nvml: start() called twice without stop()")
        self._t0, self._start_mj = self._read_or_raise()

    def stop(self) -> EnergyWindow:
        if self._t0 is None:
            raise RuntimeError("nvml: stop() called without start()")
        t0, self._t0 = self._t0, None
        t1, end_mj = self._read_or_raise()
        # 64-bit millijoules: wrapping would take millions of years, so no wrap handling.
        return EnergyWindow(
            joules=(end_mj - self._start_mj) / 1e3, seconds=t1 - t0, samples=2, source=f"nvml:gpu{self.index}"
        )


# --------------------------------------------------------------------------------------------------
# Sampling sensors
# --------------------------------------------------------------------------------------------------


class SamplingSensor(EnergySensor):
    """A sensor of instantaneous power, integrated by a daemon thread that polls every ``interval_s``.

    One reading is taken synchronously in :meth:`start` and one in :meth:`stop`, so the integral spans
    the whole window; the thread fills in between on a fixed schedule (slots it missed because a read
    was slow are skipped, not bunched). Each reading is time-stamped at the midpoint of the read, which
    matters for adb, where one read takes tens of milliseconds. A window needs ``min_samples = 3``
    readings -- at least one *inside* the window -- because with only the two endpoints the power
    during the window was never observed.
    """

    min_samples = 3

    def __init__(self, interval_s: float):
        if not interval_s > 0:
            raise ValueError(f"interval_s={interval_s!r}: must be > 0")
        self.interval_s = float(interval_s)
        self.min_window_s = self.interval_s
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._samples: list[tuple[float, float]] = []
        self._error: BaseException | None = None

    @abstractmethod
    def read_power_w(self) -> float:
        """One instantaneous power reading in watts; may raise (the window then fails)."""

    @abstractmethod
    def source(self) -> str:
        """The ``source`` string of the windows this sensor returns."""

    def _prepare(self) -> None:
        """Locate the sensor before a window; raise EnergyUnavailable if it cannot be read."""

    def _sample(self) -> tuple[float, float]:
        t_before = time.perf_counter()
        p = self.read_power_w()
        return (t_before + time.perf_counter()) / 2, p

    def _sample_or_raise(self) -> tuple[float, float]:
        try:
            return self._sample()
        except EnergyUnavailable:
            raise
        except Exception as e:
            raise EnergyUnavailable(f"{self.name}: cannot read power: {type(e).__name__}: {e}") from e

    def why_unavailable(self) -> str | None:
        try:
            self._prepare()
            self._sample_or_raise()
        except EnergyUnavailable as e:
            return str(e)
        return None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name}: start() called twice without stop()")
        self._prepare()
        first = self._sample_or_raise()
        self._samples = [first]
        self._error = None
        self._stop_event = threading.Event()
        self._thread = threading.Thread(
            target=self._poll, args=(first[0], self._stop_event), name=f"energy-{self.name}", daemon=True
        )
        self._thread.start()

    def _poll(self, t0: float, stop_event: threading.Event) -> None:
        k = 1
        while True:
            if stop_event.wait(max(0.0, t0 + k * self.interval_s - time.perf_counter())):
                return
            try:
                sample = self._sample()
            except Exception as e:  # reported by stop(); a silent gap would bias the integral
                self._error = e
                return
            self._samples.append(sample)
            # Next slot strictly in the future: a slow read skips slots instead of firing a burst.
            k = max(k + 1, int((time.perf_counter() - t0) / self.interval_s) + 1)

    def stop(self) -> EnergyWindow:
        thread = self._thread
        if thread is None:
            raise RuntimeError(f"{self.name}: stop() called without start()")
        self._stop_event.set()
        thread.join()
        self._thread = None
        if self._error is not None:
            e = self._error
            raise EnergyUnavailable(f"{self.name}: reading power failed mid-window: {type(e).__name__}: {e}")
        samples = [*self._samples, self._sample_or_raise()]
        joules = sum(
            (p0 + p1) / 2 * (t1 - t0) for (t0, p0), (t1, p1) in zip(samples, samples[1:])
        )
        return EnergyWindow(
            joules=joules, seconds=samples[-1][0] - samples[0][0], samples=len(samples), source=self.source()
        )


class Ina3221Sensor(SamplingSensor):
    """Jetson module input power from the on-board INA3221 monitor, read through sysfs.

    Two layouts exist: L4T up to r32 (iio) ``ina3221x/*/iio:device*/rail_name_N`` with power in
    ``in_powerN_input`` (mW); L4T r34+ (hwmon) ``ina3221/*/hwmon/hwmon*/inN_label`` with ``inN_input``
    (mV) and ``currN_input`` (mA). The *total input* rail is used because that is what the battery or
    supply pays for: ``VDD_IN`` (Xavier NX, Orin NX/Nano, TX2), ``VIN_SYS_5V0`` (AGX Orin),
    ``POM_5V_IN`` (Nano); pass ``rail`` to choose another.
    """

    name = "ina3221"
    DEFAULT_RAILS: tuple[str, ...] = ("VDD_IN", "VIN_SYS_5V0", "POM_5V_IN")

    def __init__(
        self,
        rail: str | None = None,
        root: str | os.PathLike[str] = "/sys/bus/i2c/drivers",
        interval_s: float = 0.05,
    ):
        super().__init__(interval_s)
        self.rail = rail
        self.root = Path(root)
        self._rail_name: str | None = None
        self._reader: Callable[[], float] | None = None

    def _channels(self) -> dict[str, Callable[[], float]]:
        """Every labelled rail under root -> a function reading its power in watts (first wins)."""
        channels: dict[str, Callable[[], float]] = {}
        root = glob.escape(str(self.root))
        for label_path in sorted(glob.glob(f"{root}/ina3221x/*/iio:device*/rail_name_*")):
            m = re.search(r"rail_name_(\d+)$", label_path)
            if not m:
                continue
            power = Path(label_path).parent / f"in_power{m.group(1)}_input"
            label = _read_str(label_path)
            if power.exists() and label not in channels:
                channels[label] = lambda power=power: _read_int(power) / 1e3
        for label_path in sorted(glob.glob(f"{root}/ina3221/*/hwmon/hwmon*/in*_label")):
            m = re.search(r"in(\d+)_label$", label_path)
            if not m:
                continue
            folder = Path(label_path).parent
            volts, amps = folder / f"in{m.group(1)}_input", folder / f"curr{m.group(1)}_input"
            label = _read_str(label_path)
            if volts.exists() and amps.exists() and label not in channels:
                channels[label] = lambda volts=volts, amps=amps: _read_int(volts) * _read_int(amps) / 1e6
        return channels

    def _prepare(self) -> None:
        try:
            channels = self._channels()
        except OSError as e:
            raise EnergyUnavailable(f"ina3221: cannot list rails under {self.root}: {e}") from e
        wanted = (self.rail,) if self.rail is not None else self.DEFAULT_RAILS
        for rail in wanted:
            if rail in channels:
                self._rail_name, self._reader = rail, channels[rail]
                return
        have = ", ".join(sorted(channels)) or "none"
        raise EnergyUnavailable(
            f"ina3221: no rail {'/'.join(wanted)} under {self.root} (rails found: {have}); pass rail=NAME"
        )

    def read_power_w(self) -> float:
        if self._reader is None:
            self._prepare()
        assert self._reader is not None
        return self._reader()

    def source(self) -> str:
        return f"ina3221:{self._rail_name}"


def _adb_run(cmd: list[str]) -> str:
    """Default transport: the local ``adb`` binary; a hung device must not hang the poller forever."""
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=10).stdout


class AndroidBatterySensor(SamplingSensor):
    """Phone power from the battery fuel gauge, polled over adb: ``|current_now| * voltage_now``.

    Both files are read by one ``cat`` so current and voltage come from the same instant and one adb
    round trip. ``current_now`` is in microamps on mainline kernels, with a vendor-specific sign
    (discharge negative on some, positive on others), hence the absolute value; a few vendors report
    milliamps, which this class does not guess at. The gauge measures *battery* current: while USB
    charges the phone, the battery current is not the phone's power, so measure with charging off
    (adb over Wi-Fi, or a hub that cuts VBUS). ``run(cmd) -> stdout`` is the adb transport.
    """

    name = "android-battery"

    def __init__(
        self,
        serial: str,
        run: Callable[[list[str]], str] | None = None,
        interval_s: float = 0.25,
        supply_dir: str = "/sys/class/power_supply/battery",
    ):
        super().__init__(interval_s)
        self.serial = serial
        self.run = run if run is not None else _adb_run
        self.supply_dir = supply_dir.rstrip("/")

    def command(self) -> list[str]:
        """The adb command one reading runs; its stdout is the two values, one per line."""
        files = [f"{self.supply_dir}/current_now", f"{self.supply_dir}/voltage_now"]
        return ["adb", "-s", self.serial, "shell", "cat", *files]

    def read_power_w(self) -> float:
        out = self.run(self.command())
        parts = out.split()  # also strips the \r of old adb shells' CRLF output
        try:
            current_ua, voltage_uv = (int(p) for p in parts)
        except ValueError:
            raise ValueError(f"expected current_now and voltage_now as two integers, got {out.strip()!r}") from None
        if voltage_uv <= 0:
            raise ValueError(f"voltage_now={voltage_uv} uV is not a battery voltage")
        return abs(current_ua) * 1e-6 * voltage_uv * 1e-6

    def source(self) -> str:
        return f"android-battery:{self.serial}"


# --------------------------------------------------------------------------------------------------
# Energy per inference
# --------------------------------------------------------------------------------------------------


def _check_resolved(sensor: EnergySensor, window: EnergyWindow, what: str, remedy: str) -> None:
    if window.samples < sensor.min_samples or window.seconds < sensor.min_window_s or window.seconds <= 0:
        raise EnergyUnavailable(
            f"{what} window of {window.seconds:.3g} s with {window.samples} readings is shorter than "
            f"{window.source} can resolve (needs >= {sensor.min_samples} readings and >= "
            f"{sensor.min_window_s:.3g} s); {remedy}"
        )


def _stop_quietly(sensor: EnergySensor) -> None:
    """End a window whose result is discarded, keeping the caller's exception the one raised."""
    try:
        sensor.stop()
    except Exception:
        pass


def energy_per_inference(
    sensor: EnergySensor, run_once: Callable[[], None], n: int, idle_s: float = 1.0
) -> EnergyResult:
    """Measure idle power for ``idle_s`` seconds, then the energy of ``n`` calls of ``run_once``.

    Every supported sensor sees a whole package, board or phone, so the energy of the inferences is
    the window's energy minus what the device would have drawn idle over the same time:
    ``(joules - idle_w * seconds) / n``. Idle is measured right before, on the same sensor, so slow
    drifts (temperature, background daemons) largely cancel. Raises :class:`EnergyUnavailable` when a
    window is too short for the sensor or the net energy is not positive -- a number that noise
    produced is worse than none. ``run_once`` should include any synchronisation (e.g. CUDA) needed
    for the work to have happened when it returns.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r}: must be an integer >= 1")
    if not idle_s > 0:
        raise ValueError(f"idle_s={idle_s!r}: must be > 0 (the idle power is subtracted)")

    sensor.start()
    try:
        time.sleep(idle_s)
    except BaseException:  # e.g. Ctrl-C: do not leave a polling thread behind
        _stop_quietly(sensor)
        raise
    idle = sensor.stop()
    _check_resolved(sensor, idle, "idle", f"raise idle_s (now {idle_s:g})")

    sensor.start()
    try:
        for _ in range(n):
            run_once()
    except BaseException:
        _stop_quietly(sensor)
        raise
    active = sensor.stop()
    _check_resolved(sensor, active, "active", f"run more inferences per window (n={n} now)")

    idle_w = idle.joules / idle.seconds
    active_w = active.joules / active.seconds
    net_j = active.joules - idle_w * active.seconds
    # Relative guard: equal idle and active power must not pass as a rounding-error positive.
    if not net_j > 1e-9 * abs(active.joules):
        raise EnergyUnavailable(
            f"net energy {net_j:.3g} J <= 0 ({active_w:.4g} W active vs {idle_w:.4g} W idle over "
            f"{active.seconds:.3g} s on {active.source}): the work is lost in idle noise; run more "
            f"inferences per window (n={n} now) or a heavier workload"
        )
    return EnergyResult(
        mj_per_inference=net_j / n * 1e3,
        idle_w=idle_w,
        active_w=active_w,
        window_s=active.seconds,
        n=n,
        source=active.source,
    )


# --------------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------------

_SENSOR_CLASSES: dict[str, Callable[..., EnergySensor]] = {
    "rapl": RaplSensor,
    "nvml": NvmlSensor,
    "ina3221": Ina3221Sensor,
    "android-battery": AndroidBatterySensor,
}


def detect_sensor(kind: str | None, **kwargs: Any) -> EnergySensor | None:
    """The sensor a device profile names in ``energy_sensor``, or ``None`` if it cannot be read.

    ``None`` means none configured. A known kind that is not available here also gives ``None`` (the
    caller records energy as unavailable rather than failing the latency measurement); an unknown
    kind is a configuration error. ``kwargs`` go to the sensor's constructor (``root``, ``rail``,
    ``serial``, ``run``, ``index``, ``interval_s`` ...).
    """
    if kind is None:
        return None
    if not isinstance(kind, str) or kind not in _SENSOR_CLASSES:
        allowed = ", ".join(repr(k) for k in ENERGY_SENSORS)
        raise ValueError(f"energy_sensor={kind!r}: must be one of {allowed} or null (no sensor)")
    sensor = _SENSOR_CLASSES[kind](**kwargs)
    return sensor if sensor.available() else None
