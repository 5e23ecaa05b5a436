"""Measure a model's latency on an Android phone over adb.

The phone runs a stock benchmark binary, not our code: TensorFlow Lite's ``benchmark_model`` for
``.tflite`` files and onnxruntime's ``onnxruntime_perf_test`` for ``.onnx``/``.ort`` files. Both are
what their projects use to publish mobile numbers, so a latency measured here can be compared with
theirs. :func:`measure_on_phone` pushes the binary (only when the phone lacks it) and the model, runs
the binary pinned with ``taskset`` to a core set (by default the fastest cores: on a big.LITTLE SoC
an unpinned run lands on whichever cluster the scheduler picks, and the result measures the governor,
not the model), parses what the binary printed into a :class:`BenchmarkReport` and removes the model.

Everything that talks to the phone goes through one injectable ``run`` hook of :class:`AdbDevice`,
so the tests replay recorded outputs (``tests/data/adb``) without a phone or an adb binary.

**Not verified on hardware.** This path has only run against a fake ``adb`` that replays real
output formats (taken from the tools' sources and from logs posted in their issue trackers; see
``tests/data/adb/README.md``). It has never driven a real phone.

Known limits:

* ``onnxruntime_perf_test`` always runs exactly one untimed warm-up inference; it has no flag for
  more, so ``warmup`` only applies to ``benchmark_model``.
* A binary built against a shared ``libonnxruntime.so`` needs that library on the phone and
  ``LD_LIBRARY_PATH``; only self-contained (statically linked) binaries are handled.
* Exit codes reach us only through adb's shell protocol v2 (Android 7+); on older phones a failed
  run is still caught because its output has no timing line.
"""
from __future__ import annotations

import math
import posixpath
import re
import shlex
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

__all__ = [
    "TOOLS", "AdbError", "BenchmarkParseError", "BenchmarkReport", "AdbDevice", "AdbBenchmark",
    "parse_tflite_benchmark", "parse_ort_perf_test", "measure_on_phone",
]

#: Benchmark tools and the model suffixes each one loads. The names match ``DeviceProfile.runtime``.
TOOLS: dict[str, tuple[str, ...]] = {"tflite": (".tflite",), "onnxruntime": (".onnx", ".ort")}

_DEFAULT_REMOTE_DIR = "/data/local/tmp"  # the one place `adb shell` may write and execute on stock Android
_MAX_QUOTE = 240  # characters of a device line quoted in an error message

RunHook = Callable[[list[str], float], subprocess.CompletedProcess]


class AdbError(RuntimeError):
    """adb failed or is missing; one line naming the command and what came back."""


class BenchmarkParseError(ValueError):
    """A benchmark's output holds no usable timing; one line quoting the first error line.

    The whole output stays on ``.output`` for whoever needs more than that line.
    """

    def __init__(self, message: str, output: str = ""):
        super().__init__(message)
        self.output = output


@dataclass(frozen=True)
class BenchmarkReport:
    """What one benchmark run printed, in milliseconds.

    Each tool prints a different set of statistics; a field is ``None`` where the tool does not
    print it rather than filled with an estimate. ``benchmark_model`` gives std/min/max (and the
    median in recent versions), ``onnxruntime_perf_test`` gives min/max/P50/P90 but no std.
    ``first_ms`` is the first (cold) inference, ``init_ms`` the time to load the model and build
    the interpreter or session. ``raw`` keeps the full output for audits.
    """

    tool: str
    count: int
    mean_ms: float
    std_ms: float | None
    min_ms: float | None
    max_ms: float | None
    median_ms: float | None
    p90_ms: float | None
    first_ms: float | None
    init_ms: float | None
    raw: str = field(repr=False)


# -- parsing -------------------------------------------------------------------------------------

# Numbers as C++ iostreams print them: integers, "33209.4", "1.24027e+06", and "nan"/"-nan" for an
# empty statistic.
_NUM = r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)"

_TFLITE_TIMINGS = re.compile(
    rf"Inference timings in us:\s*Init:\s*(?P<init>{_NUM}),\s*First inference:\s*(?P<first>{_NUM}),"
    rf"\s*Warmup \(avg\):\s*(?P<warmup>{_NUM}),\s*Inference \(avg\):\s*(?P<avg>{_NUM})"
)
_TFLITE_RUN_HEADER = re.compile(r"Running benchmark for at least")
_TFLITE_STAT = re.compile(r"^(?:INFO:\s*)?count=\d+")
_KEY_VALUE = re.compile(rf"(\w+)=({_NUM})")

_ORT_MEAN = re.compile(rf"^Average (?:inference )?time cost(?: total)?:\s*({_NUM})\s*ms", re.M)
_ORT_COUNT = re.compile(r"^(?:Total inference requests|Total iterations|Runs):\s*(\d+)", re.M)
_ORT_FIRST = re.compile(rf"^First inference time cost:\s*({_NUM})\s*ms", re.M)
_ORT_INIT = re.compile(rf"^Session creation time cost:\s*({_NUM})\s*s", re.M)
_ORT_LATENCY = re.compile(rf"^(Min|Max|P50|P90) Latency(?::| is)\s*({_NUM})\s*s", re.M)

_ERROR_PREFIX = re.compile(r"^(?:ERROR|FATAL)\b")
_ERROR_WORDS = re.compile(
    r"\b(?:error|fatal|failed|failure|exception|abort(?:ed)?|segmentation fault|not found|"
    r"no such file|permission denied|cannot|can't|unable to)\b",
    re.I,
)


def _float(s: str) -> float | None:
    v = float(s)
    return None if math.isnan(v) else v


def _quote(line: str) -> str:
    return repr(line if len(line) <= _MAX_QUOTE else line[:_MAX_QUOTE] + "...")


def _first_error_line(text: str) -> str | None:
    """The line most likely to say why a run failed.

    A line that starts with a severity (``ERROR:``) beats one that merely contains an error word,
    because successful TFLite runs can print warnings such as "Failed to get the input model file
    size" before the real cause.
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if _ERROR_PREFIX.match(ln):
            return ln
    for ln in lines:
        if _ERROR_WORDS.search(ln):
            return ln
    return None


def _explain(text: str) -> str:
    line = _first_error_line(text)
    if line is not None:
        return f"first error line: {_quote(line)}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return f"no error line either; last line: {_quote(lines[-1])}" if lines else "the output is empty"


def _no_timing(tool: str, what: str, text: str) -> BenchmarkParseError:
    return BenchmarkParseError(f"{tool}: no {what} in the output; {_explain(text)}", text)


def parse_tflite_benchmark(text: str) -> BenchmarkReport:
    """Parse the log of TensorFlow Lite's ``benchmark_model``.

    The mean, first inference and init time come from the ``Inference timings in us:`` summary; the
    count, std, min, max and (when printed) median from the statistics line of the timed runs, which
    is the first ``count=`` line after the last ``Running benchmark for at least ...`` header (the
    earlier one belongs to the warm-up runs). Handles the ``INFO: `` prefix of recent versions, the
    ``count=N curr=X(all same)`` form and scientific notation. All values are microseconds in the
    log and milliseconds in the report.
    """
    lines = [ln.strip() for ln in text.splitlines()]
    timing_at, timings = None, None
    for i, ln in enumerate(lines):
        m = _TFLITE_TIMINGS.search(ln)
        if m:
            timing_at, timings = i, m
    if timings is None:
        raise _no_timing("benchmark_model", "'Inference timings in us' line", text)

    headers = [i for i in range(timing_at) if _TFLITE_RUN_HEADER.search(lines[i])]
    start = headers[-1] + 1 if headers else 0
    stats = [i for i in range(start, timing_at) if _TFLITE_STAT.match(lines[i])]
    if not stats:
        raise _no_timing("benchmark_model", "'count=' statistics line before the timing line", text)
    kv = {k: v for k, v in _KEY_VALUE.findall(lines[stats[0] if headers else stats[-1]])}

    count = int(kv["count"])
    mean_us = _float(timings["avg"])
    if count == 0 or mean_us is None:
        raise BenchmarkParseError(f"benchmark_model: no inference run was timed (count={count}); {_explain(text)}", text)
    if "min" in kv:
        lo, hi, std = _float(kv["min"]), _float(kv["max"]), _float(kv["std"])
    else:  # "count=N curr=X(all same)": every run took X
        lo = hi = _float(kv["curr"])
        std = 0.0
    median = _float(kv["median"]) if "median" in kv else None

    def ms(us: float | None) -> float | None:
        return None if us is None else us / 1000.0

    return BenchmarkReport(
        tool="tflite", count=count, mean_ms=mean_us / 1000.0, std_ms=ms(std), min_ms=ms(lo), max_ms=ms(hi),
        median_ms=ms(median), p90_ms=None, first_ms=ms(_float(timings["first"])),
        init_ms=ms(_float(timings["init"])), raw=text,
    )


def parse_ort_perf_test(text: str) -> BenchmarkReport:
    """Parse the output of onnxruntime's ``onnxruntime_perf_test``.

    The mean comes from ``Average inference time cost: X ms`` (``... cost total:`` in the newest
    versions, ``Average time cost:`` in old ones); min, max, median and P90 from the
    ``Min/Max/P50/P90 Latency: X s`` lines that are printed when no result file is given. The tool
    prints no standard deviation. Its P50 is the upper median (``sorted[n/2]``), and its first
    inference is printed in whole milliseconds.
    """
    mean = _ORT_MEAN.search(text)
    if mean is None:
        raise _no_timing("onnxruntime_perf_test", "'Average inference time cost' line", text)
    count = _ORT_COUNT.search(text)
    if count is None:
        raise _no_timing("onnxruntime_perf_test", "request count ('Total inference requests' or 'Runs')", text)
    mean_ms = _float(mean.group(1))
    if int(count.group(1)) == 0 or mean_ms is None:
        raise BenchmarkParseError(f"onnxruntime_perf_test: no inference run was timed; {_explain(text)}", text)

    latency_ms = {name: float(v) * 1000.0 for name, v in _ORT_LATENCY.findall(text)}
    first = _ORT_FIRST.search(text)
    init = _ORT_INIT.search(text)
    return BenchmarkReport(
        tool="onnxruntime", count=int(count.group(1)), mean_ms=mean_ms, std_ms=None,
        min_ms=latency_ms.get("Min"), max_ms=latency_ms.get("Max"), median_ms=latency_ms.get("P50"),
        p90_ms=latency_ms.get("P90"), first_ms=float(first.group(1)) if first else None,
        init_ms=float(init.group(1)) * 1000.0 if init else None, raw=text,
    )


_PARSERS: dict[str, Callable[[str], BenchmarkReport]] = {
    "tflite": parse_tflite_benchmark, "onnxruntime": parse_ort_perf_test,
}


# -- the phone -----------------------------------------------------------------------------------

def _subprocess_run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout)


def _show(args: list[str]) -> str:
    """An adb argument list as one shell-quoted line, cut short: error messages stay one line."""
    line = shlex.join(args).replace("\n", " ")
    return line if len(line) <= 160 else line[:160] + "..."


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _parse_cpu_list(text: str) -> list[int]:
    """``0-3,5,7`` (the kernel's cpulist format) as ``[0, 1, 2, 3, 5, 7]``."""
    cores: list[int] = []
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        cores.extend(range(int(lo), int(hi or lo) + 1))
    return cores


class AdbDevice:
    """One phone, addressed by its adb serial.

    ``run`` executes a host command (the adb argv) with a timeout in seconds and returns the
    completed process; it defaults to :func:`subprocess.run` with captured text output and is the
    only way this class reaches the phone, so tests pass a fake.
    """

    def __init__(self, serial: str, adb: str = "adb", run: RunHook | None = None):
        self.serial = serial
        self.adb = adb
        self._run = run or _subprocess_run
        self._installed: set[tuple[str, str, int]] = set()  # (remote, local, size) known to be on the phone

    def __repr__(self) -> str:
        return f"AdbDevice(serial={self.serial!r}, adb={self.adb!r})"

    def _adb(self, args: list[str], timeout: float) -> subprocess.CompletedProcess:
        cmd = [self.adb, "-s", self.serial, *args]
        try:
            return self._run(cmd, timeout)
        except FileNotFoundError:
            raise AdbError(f"adb executable not found: {self.adb!r}") from None
        except subprocess.TimeoutExpired:
            raise AdbError(f"adb -s {self.serial} {_show(args)} timed out after {timeout:g} s") from None

    def _check(self, args: list[str], res: subprocess.CompletedProcess) -> None:
        if res.returncode != 0:
            said = (_one_line(res.stderr) or _one_line(res.stdout) or "(no output)")[:_MAX_QUOTE]
            raise AdbError(f"adb -s {self.serial} {_show(args)} exited {res.returncode}: {said}")

    def reachable(self) -> bool:
        """True when adb sees the phone online and authorized (``get-state`` says ``device``).

        Never raises: a missing adb, a timeout or an unplugged phone all mean "not reachable", which
        is what a scheduler deciding where to send work needs to know.
        """
        try:
            res = self._run([self.adb, "-s", self.serial, "get-state"], 10.0)
        except Exception:  # noqa: BLE001 - a probe: any failure is an answer, not an error
            return False
        return res.returncode == 0 and res.stdout.strip() == "device"

    def shell_result(self, cmd: str, timeout: float) -> subprocess.CompletedProcess:
        """Run ``cmd`` in the phone's shell and return the completed process whatever its exit status.

        For callers that must read the output of a failed command (a benchmark that could not load
        its model). Raises :class:`AdbError` only when adb itself is missing or times out.
        """
        return self._adb(["shell", cmd], timeout)

    def shell(self, cmd: str, timeout: float = 30.0) -> str:
        """Run ``cmd`` in the phone's shell and return its stdout; :class:`AdbError` on a non-zero exit."""
        res = self.shell_result(cmd, timeout)
        self._check(["shell", cmd], res)
        return res.stdout

    def push(self, local: Path, remote: str, timeout: float = 300.0) -> None:
        """Copy ``local`` to ``remote`` on the phone."""
        local = Path(local)
        if not local.is_file():
            raise FileNotFoundError(f"cannot push {str(local)!r}: no such file")
        args = ["push", str(local), remote]
        self._check(args, self._adb(args, timeout))

    def install(self, local: Path, remote: str, timeout: float = 300.0) -> bool:
        """Make ``remote`` an executable copy of ``local``; return whether anything was pushed.

        Binaries are tens of megabytes and change rarely, so the file is pushed only when the phone
        has no file of the same size there (checked once per device object and file). A same-size
        different build would be missed; delete it on the phone, or rename the binary, to force a push.
        """
        local = Path(local)
        size = local.stat().st_size
        key = (remote, str(local.resolve()), size)
        if key in self._installed:
            return False
        on_phone = self.shell_result(f"stat -c %s {shlex.quote(remote)}", 30.0)
        pushed = not (on_phone.returncode == 0 and on_phone.stdout.strip() == str(size))
        if pushed:
            self.push(local, remote, timeout)
            self.shell(f"chmod 755 {shlex.quote(remote)}")
        self._installed.add(key)
        return pushed

    def cpu_online(self) -> list[int]:
        """The cores the kernel has online (``/sys/devices/system/cpu/online``)."""
        text = self.shell("cat /sys/devices/system/cpu/online")
        try:
            return _parse_cpu_list(text)
        except ValueError:
            raise AdbError(f"{self.serial}: unexpected /sys/devices/system/cpu/online: {_quote(text.strip())}") from None

    def cpu_max_freq_khz(self) -> dict[int, int]:
        """Each online core's maximum frequency in kHz (``cpufreq/cpuinfo_max_freq``), read in one call."""
        cores = self.cpu_online()
        paths = [f"/sys/devices/system/cpu/cpu{c}/cpufreq/cpuinfo_max_freq" for c in cores]
        values = self.shell("cat " + " ".join(paths)).split()
        if len(values) != len(cores) or not all(v.isdigit() for v in values):
            raise AdbError(f"{self.serial}: expected {len(cores)} cpuinfo_max_freq values, got {_quote(' '.join(values))}")
        return dict(zip(cores, map(int, values)))

    def big_cores(self) -> list[int]:
        """The cores with the highest maximum frequency (the "prime" core alone on a Snapdragon 888)."""
        freqs = self.cpu_max_freq_khz()
        top = max(freqs.values())
        return sorted(c for c, f in freqs.items() if f == top)

    def getprop(self, name: str) -> str:
        """An Android system property, e.g. ``ro.product.model`` or ``ro.board.platform``."""
        return self.shell(f"getprop {shlex.quote(name)}").strip()


# -- measuring -----------------------------------------------------------------------------------

@dataclass
class AdbBenchmark:
    """A benchmark binary built for the phone, and where it lives there.

    ``tool`` is ``"tflite"`` (TensorFlow Lite ``benchmark_model``) or ``"onnxruntime"``
    (``onnxruntime_perf_test``). ``binary_remote`` defaults to the binary's file name under
    ``/data/local/tmp``; pushed models go next to it. ``use_xnnpack`` (``benchmark_model`` only):
    ``True`` / ``False`` pass ``--use_xnnpack=true|false``, ``None`` leaves the tool's default (what
    nn-Meter's profiler did unless asked to close XNNPACK). ``extra_args`` are appended to the
    tool's flags (e.g. ``("-e", "xnnpack")`` for onnxruntime).
    """

    binary_local: Path
    tool: str
    binary_remote: str = ""
    extra_args: tuple[str, ...] = ()
    use_xnnpack: bool | None = True

    def __post_init__(self) -> None:
        self.binary_local = Path(self.binary_local)
        if self.tool not in TOOLS:
            raise ValueError(f"tool={self.tool!r}: allowed: {', '.join(TOOLS)}")
        if not self.binary_remote:
            self.binary_remote = posixpath.join(_DEFAULT_REMOTE_DIR, self.binary_local.name)
        self.extra_args = tuple(self.extra_args)


def _command(bench: AdbBenchmark, remote_model: str, threads: int, warmup: int, runs: int) -> str:
    q = shlex.quote
    if bench.tool == "tflite":
        # The *_secs floors default to 0.5 s and 1 s: left alone they add runs beyond the counts asked
        # for, so a fast model would be timed hundreds of times and a slow one 50.
        xnn = [] if bench.use_xnnpack is None else [f"--use_xnnpack={'true' if bench.use_xnnpack else 'false'}"]
        args = [f"--graph={remote_model}", f"--num_threads={threads}", f"--warmup_runs={warmup}",
                "--warmup_min_secs=0", f"--num_runs={runs}", "--min_secs=0", *xnn, *bench.extra_args]
    else:
        # `-m times -r N`: N timed runs (the default mode is a 600 s duration). `-I`: random inputs
        # instead of test_data_set_* folders. `-s`: print the percentile lines. The model path goes
        # last: both the old getopt parser and the newer absl one take it as the positional argument.
        args = ["-e", "cpu", "-m", "times", "-r", str(runs), "-x", str(threads), "-I", "-s",
                *bench.extra_args, remote_model]
    return " ".join([q(bench.binary_remote), *map(q, args)])


def _default_cores(device: AdbDevice, threads: int) -> list[int]:
    """The fastest cluster(s) holding at least ``threads`` cores.

    Starts from :meth:`AdbDevice.big_cores` and adds the next-fastest cluster while there are fewer
    cores than threads: more threads than cores would be time-sliced, and the result would measure
    the scheduler rather than the model.
    """
    freqs = device.cpu_max_freq_khz()
    chosen: list[int] = []
    for f in sorted(set(freqs.values()), reverse=True):
        chosen += [c for c in freqs if freqs[c] == f]
        if len(chosen) >= threads:
            break
    return sorted(chosen)


def measure_on_phone(device: AdbDevice, model: Path, bench: AdbBenchmark, threads: int = 1,
                     cores: list[int] | None = None, warmup: int = 10, runs: int = 50,
                     timeout: float = 600) -> BenchmarkReport:
    """Time ``model`` on the phone with ``bench`` pinned to ``cores`` and return what the tool reported.

    ``cores`` defaults to the fastest cores (see :func:`_default_cores`). ``warmup`` untimed runs
    precede ``runs`` timed ones (``onnxruntime_perf_test`` always does exactly one warm-up run). The
    binary is pushed only if the phone lacks it; the model is pushed for this run and removed after
    it, also when the run fails. Raises :class:`BenchmarkParseError` when the tool printed no usable
    timing or exited non-zero, quoting its first error line.
    """
    model = Path(model)
    allowed = TOOLS[bench.tool]
    if model.suffix not in allowed:
        raise ValueError(f"model={model.name!r}: suffix for tool={bench.tool!r} must be one of: {', '.join(allowed)}")
    for name, value, least in (("threads", threads, 1), ("warmup", warmup, 1), ("runs", runs, 1)):
        if not isinstance(value, int) or value < least:
            raise ValueError(f"{name}={value!r}: must be an integer >= {least}")
    if cores is not None:
        if not cores or any(not isinstance(c, int) or c < 0 for c in cores) or len(set(cores)) != len(cores):
            raise ValueError(f"cores={cores!r}: must be distinct core numbers >= 0, at least one")
    if not model.is_file():
        raise FileNotFoundError(f"model {str(model)!r}: no such file")

    cores = sorted(cores) if cores is not None else _default_cores(device, threads)
    mask = format(sum(1 << c for c in cores), "x")  # toybox taskset takes a hex mask without 0x
    device.install(bench.binary_local, bench.binary_remote)
    remote_model = posixpath.join(posixpath.dirname(bench.binary_remote), model.name)
    device.push(model, remote_model)
    try:
        # 2>&1 on the phone keeps the tool's errors in order with its log.
        cmd = f"taskset {mask} {_command(bench, remote_model, threads, warmup, runs)} 2>&1"
        res = device.shell_result(cmd, timeout)
    finally:
        try:
            device.shell(f"rm -f {shlex.quote(remote_model)}")
        except AdbError as e:
            warnings.warn(f"could not remove {remote_model} from {device.serial}: {e}", RuntimeWarning, stacklevel=2)

    text = res.stdout + (res.stderr or "")
    name = posixpath.basename(bench.binary_remote)
    try:
        report = _PARSERS[bench.tool](text)
    except BenchmarkParseError as e:
        raise BenchmarkParseError(f"{e} (exit status {res.returncode}, cores {cores})", text) from None
    if res.returncode != 0:
        raise BenchmarkParseError(f"{name} exited {res.returncode} after printing timings; {_explain(text)}", text)
    return report
