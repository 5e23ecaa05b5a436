"""Android backend: parsers on recorded tool outputs, and the adb path against a fake `adb`.

The fake is a small executable script written into tmp_path. It logs its argv, keeps the phone's
files in a JSON state, answers like a Snapdragon 888 phone and replays a recorded benchmark output
(tests/data/adb, see the README there). It replays real formats only: nothing here has touched a
real phone.
"""
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from device_farm.adb import (
    AdbBenchmark,
    AdbDevice,
    AdbError,
    BenchmarkParseError,
    measure_on_phone,
    parse_ort_perf_test,
    parse_tflite_benchmark,
)

DATA = Path(__file__).parent / "data" / "adb"
SERIAL = "R5CR10ABCDE"
SD888_KHZ = {0: 1804800, 1: 1804800, 2: 1804800, 3: 1804800, 4: 2419200, 5: 2419200, 6: 2419200, 7: 2841600}
approx = pytest.approx  # exact decimal numbers from the files, converted (us -> ms, s -> ms)


def read(name: str) -> str:
    return (DATA / name).read_text()


# -- parsers -------------------------------------------------------------------------------------

def test_tflite_recent_format_with_percentiles():
    r = parse_tflite_benchmark(read("tflite_android_sd888_xnnpack.txt"))
    assert (r.tool, r.count) == ("tflite", 50)  # the timed runs, not the 10 warm-up runs
    assert r.mean_ms == approx(19.2984)
    assert (r.std_ms, r.min_ms, r.max_ms, r.median_ms) == (approx(0.241), approx(19.042), approx(20.391), approx(19.236))
    assert (r.first_ms, r.init_ms, r.p90_ms) == (approx(24.718), approx(61.394), None)
    assert r.raw.startswith("INFO: STARTING!")


def test_tflite_older_format_without_prefix_or_percentiles():
    r = parse_tflite_benchmark(read("tflite_issue42507_android.txt"))
    assert r.count == 50
    assert r.mean_ms == approx(33.2094)
    assert (r.std_ms, r.min_ms, r.max_ms) == (approx(0.450), approx(32.641), approx(34.005))
    assert r.median_ms is None  # this version prints no percentiles
    assert (r.first_ms, r.init_ms) == (approx(49.060), approx(0.855))


def test_tflite_scientific_notation_and_all_same_warmup():
    r = parse_tflite_benchmark(read("tflite_ti_am62x_cpu.txt"))
    assert r.count == 50
    assert r.mean_ms == approx(1240.27)  # "avg=1.24027e+06"
    assert (r.min_ms, r.max_ms, r.median_ms, r.std_ms) == (approx(1238.588), approx(1252.566), approx(1239.807), approx(2.565))
    assert (r.first_ms, r.init_ms) == (approx(1357.602), approx(5.579))


def test_tflite_all_same_timed_runs():
    text = read("tflite_issue42507_android.txt").replace(
        "count=50 first=32891 curr=33978 min=32641 max=34005 avg=33209.4 std=450", "count=50 curr=33000(all same)"
    ).replace("Inference (avg): 33209.4", "Inference (avg): 33000")
    r = parse_tflite_benchmark(text)
    assert (r.count, r.mean_ms, r.min_ms, r.max_ms, r.std_ms) == (50, approx(33.0), approx(33.0), approx(33.0), 0.0)


def test_tflite_failure_quotes_the_error_line():
    with pytest.raises(BenchmarkParseError) as err:
        parse_tflite_benchmark(read("tflite_issue50641_op_missing.txt"))
    msg = str(err.value)
    assert "Didn't find op for builtin opcode 'MUL' version '5'" in msg
    assert "\n" not in msg
    assert err.value.output.startswith("STARTING!")


def test_ort_summary_and_percentiles():
    r = parse_ort_perf_test(read("ort_android_sd888_cpu.txt"))
    assert (r.tool, r.count) == ("onnxruntime", 50)
    assert r.mean_ms == approx(42.8794)
    assert (r.min_ms, r.max_ms, r.median_ms, r.p90_ms) == (approx(41.9853), approx(46.1207), approx(42.7139), approx(43.5402))
    assert (r.first_ms, r.init_ms, r.std_ms) == (approx(52.0), approx(412.816), None)


def test_ort_newest_wording():
    r = parse_ort_perf_test(read("ort_arm_learning_path_sme2.txt"))
    assert r.count == 5
    assert r.mean_ms == approx(98.961997)  # "Average inference time cost total:"
    assert (r.min_ms, r.max_ms, r.median_ms, r.p90_ms) == (approx(95.8204), approx(101.519), approx(99.5086), approx(101.519))
    assert (r.first_ms, r.init_ms) == (approx(196.0), approx(217.932))


def test_ort_legacy_wording():
    r = parse_ort_perf_test(read("ort_issue17313_legacy.txt"))
    assert r.count == 1000  # "Total iterations:"
    assert r.mean_ms == approx(58.8053)
    assert (r.min_ms, r.max_ms, r.median_ms, r.p90_ms) == (approx(55.9777), approx(62.3472), approx(58.7108), approx(59.9845))
    assert (r.first_ms, r.init_ms) == (None, None)


def test_ort_failure_quotes_the_error_line():
    with pytest.raises(BenchmarkParseError, match="Failed to load model because protobuf parsing failed"):
        parse_ort_perf_test(read("ort_model_load_failure.txt"))


def test_parsers_do_not_accept_each_others_output():
    with pytest.raises(BenchmarkParseError, match="Average inference time cost"):
        parse_ort_perf_test(read("tflite_android_sd888_xnnpack.txt"))
    with pytest.raises(BenchmarkParseError, match="Inference timings in us"):
        parse_tflite_benchmark(read("ort_android_sd888_cpu.txt"))
    with pytest.raises(BenchmarkParseError, match="the output is empty"):
        parse_tflite_benchmark("")


# -- the fake adb ----------------------------------------------------------------------------------

FAKE_ADB = r'''#!{python} -S
import json, os, re, shlex, sys
here = os.path.dirname(os.path.abspath(__file__))
cfg = json.load(open(os.path.join(here, "fake_adb.json")))
state_path = os.path.join(here, "fake_phone.json")
files = json.load(open(state_path)) if os.path.exists(state_path) else {{}}
argv = sys.argv[1:]
with open(os.path.join(here, "adb.log"), "a") as log:
    log.write(json.dumps(argv) + "\n")

def done(out="", err="", rc=0):
    sys.stdout.write(out); sys.stderr.write(err)
    json.dump(files, open(state_path, "w"))
    sys.exit(rc)

if argv[:2] != ["-s", cfg["serial"]]:
    done(err="error: device '%s' not found\n" % (argv[1:2] or [""])[0], rc=1)
cmd = argv[2:]
if cmd == ["get-state"]:
    done("device\n")
if cmd[0] == "push":
    size = os.path.getsize(cmd[1])
    files[cmd[2]] = size
    done("%s: 1 file pushed, 0 skipped. 31.4 MB/s (%d bytes in 0.012s)\n" % (cmd[1], size))
if cmd[0] != "shell" or len(cmd) != 2:
    done(err="fake adb: unhandled %r\n" % cmd, rc=2)
words = shlex.split(cmd[1])
if words == ["cat", "/sys/devices/system/cpu/online"]:
    done(cfg["online"] + "\n")
freq = [re.fullmatch(r"/sys/devices/system/cpu/cpu(\d+)/cpufreq/cpuinfo_max_freq", w) for w in words[1:]]
if words[0] == "cat" and freq and all(freq):
    done("".join("%d\n" % cfg["khz"][m.group(1)] for m in freq))
if words[0] == "getprop":
    done(cfg["props"].get(words[1], "") + "\n")
if words[:3] == ["stat", "-c", "%s"]:
    if words[3] in files:
        done("%d\n" % files[words[3]])
    done(err="stat: '%s': No such file or directory\n" % words[3], rc=1)
if words[0] == "chmod":
    done()
if words[:2] == ["rm", "-f"]:
    files.pop(words[2], None)
    done()
if words[0] == "taskset" and words[-1] == "2>&1":
    binary = words[2]
    if binary not in files:
        done("/system/bin/sh: %s: inaccessible or not found\n" % binary, rc=127)
    model = next((w.split("=", 1)[1] for w in words if w.startswith("--graph=")), words[-2])
    if model not in files:
        done("model %s is not on the fake phone\n" % model, rc=1)
    done(open(cfg["bench_output"]).read(), rc=cfg["bench_rc"])
done(err="fake adb: unhandled shell %r\n" % cmd[1], rc=2)
'''


class FakePhone:
    def __init__(self, root: Path, output: str = "tflite_android_sd888_xnnpack.txt", rc: int = 0):
        self.root = root
        self.adb = root / "adb"
        self.adb.write_text(FAKE_ADB.format(python=sys.executable))
        self.adb.chmod(self.adb.stat().st_mode | stat.S_IXUSR)
        self.configure(output, rc)

    def configure(self, output: str, rc: int = 0) -> None:
        cfg = {"serial": SERIAL, "online": "0-7", "khz": {str(c): f for c, f in SD888_KHZ.items()},
               "props": {"ro.product.model": "M2011K2G", "ro.board.platform": "lahaina"},
               "bench_output": str(DATA / output), "bench_rc": rc}
        (self.root / "fake_adb.json").write_text(json.dumps(cfg))

    def calls(self) -> list[list[str]]:
        log = self.root / "adb.log"
        return [json.loads(ln)[2:] for ln in log.read_text().splitlines()] if log.exists() else []

    def shell_calls(self, first_word: str) -> list[str]:
        return [c[1] for c in self.calls() if c[0] == "shell" and c[1].split()[0] == first_word]

    def files(self) -> dict[str, int]:
        path = self.root / "fake_phone.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def device(self) -> AdbDevice:
        return AdbDevice(SERIAL, adb=str(self.adb))


@pytest.fixture
def phone(tmp_path) -> FakePhone:
    return FakePhone(tmp_path)


@pytest.fixture
def tflite_model(tmp_path) -> Path:
    p = tmp_path / "host" / "edgevit_xxs.tflite"
    p.parent.mkdir()
    p.write_bytes(b"TFL3" + bytes(2000))
    return p


@pytest.fixture
def bench(tmp_path) -> AdbBenchmark:
    b = tmp_path / "host" / "benchmark_model"
    b.parent.mkdir(exist_ok=True)
    b.write_bytes(b"\x7fELF" + bytes(5000))
    return AdbBenchmark(b, tool="tflite")


# -- AdbDevice -----------------------------------------------------------------------------------

def test_reachable_false_when_adb_is_missing(tmp_path):
    assert AdbDevice(SERIAL, adb=str(tmp_path / "no-such-adb")).reachable() is False


def test_reachable_through_fake_adb(phone):
    assert phone.device().reachable() is True
    assert phone.calls() == [["get-state"]]
    assert AdbDevice("OTHER-SERIAL", adb=str(phone.adb)).reachable() is False  # "device not found", exit 1


def test_reachable_false_when_unauthorized_or_hook_fails():
    unauthorized = subprocess.CompletedProcess([], 1, "", "error: device unauthorized.\n")
    assert AdbDevice(SERIAL, run=lambda cmd, t: unauthorized).reachable() is False

    def broken(cmd, timeout):
        raise subprocess.TimeoutExpired(cmd, timeout)

    assert AdbDevice(SERIAL, run=broken).reachable() is False


def test_cpu_topology_of_a_snapdragon_888(phone):
    dev = phone.device()
    assert dev.cpu_online() == list(range(8))
    assert dev.cpu_max_freq_khz() == SD888_KHZ
    assert dev.big_cores() == [7]
    assert dev.getprop("ro.board.platform") == "lahaina"


def test_shell_error_is_one_line_and_names_the_command():
    seen = []

    def offline(cmd, timeout):
        seen.append((cmd, timeout))
        return subprocess.CompletedProcess(cmd, 1, "", "error: device offline\nretry later\n")

    dev = AdbDevice(SERIAL, adb="/opt/adb", run=offline)
    with pytest.raises(AdbError) as err:
        dev.shell("getprop ro.product.model", timeout=5)
    assert str(err.value) == f"adb -s {SERIAL} shell 'getprop ro.product.model' exited 1: error: device offline"
    assert seen == [(["/opt/adb", "-s", SERIAL, "shell", "getprop ro.product.model"], 5)]


def test_shell_without_adb_raises_adb_error(tmp_path):
    with pytest.raises(AdbError, match="adb executable not found"):
        AdbDevice(SERIAL, adb=str(tmp_path / "no-such-adb")).shell("true")


# -- measure_on_phone ----------------------------------------------------------------------------

def test_measure_tflite_on_big_core(phone, tflite_model, bench):
    report = measure_on_phone(phone.device(), tflite_model, bench)

    assert report == parse_tflite_benchmark(read("tflite_android_sd888_xnnpack.txt"))
    pushes = [c for c in phone.calls() if c[0] == "push"]
    assert pushes == [["push", str(bench.binary_local), "/data/local/tmp/benchmark_model"],
                      ["push", str(tflite_model), "/data/local/tmp/edgevit_xxs.tflite"]]
    (run,) = phone.shell_calls("taskset")
    assert run == ("taskset 80 /data/local/tmp/benchmark_model --graph=/data/local/tmp/edgevit_xxs.tflite "
                   "--num_threads=1 --warmup_runs=10 --warmup_min_secs=0 --num_runs=50 --min_secs=0 "
                   "--use_xnnpack=true 2>&1")
    assert phone.shell_calls("chmod") == ["chmod 755 /data/local/tmp/benchmark_model"]
    assert phone.shell_calls("rm") == ["rm -f /data/local/tmp/edgevit_xxs.tflite"]
    assert phone.files() == {"/data/local/tmp/benchmark_model": bench.binary_local.stat().st_size}


def test_binary_is_pushed_once(phone, tflite_model, bench):
    dev = phone.device()
    measure_on_phone(dev, tflite_model, bench)
    measure_on_phone(dev, tflite_model, bench, runs=20)
    pushed = [c[2] for c in phone.calls() if c[0] == "push"]
    assert pushed.count("/data/local/tmp/benchmark_model") == 1
    assert pushed.count("/data/local/tmp/edgevit_xxs.tflite") == 2
    assert len(phone.shell_calls("stat")) == 1  # the second run trusts what this device object installed
    assert "--num_runs=20" in phone.shell_calls("taskset")[1]


def test_binary_already_on_phone_is_not_pushed(phone, tflite_model, bench):
    state = {"/data/local/tmp/benchmark_model": bench.binary_local.stat().st_size}
    (phone.root / "fake_phone.json").write_text(json.dumps(state))
    measure_on_phone(phone.device(), tflite_model, bench)
    assert [c[2] for c in phone.calls() if c[0] == "push"] == ["/data/local/tmp/edgevit_xxs.tflite"]
    assert phone.shell_calls("stat") == ["stat -c %s /data/local/tmp/benchmark_model"]


def test_measure_onnxruntime_four_threads_on_the_fast_clusters(phone, tmp_path):
    phone.configure("ort_android_sd888_cpu.txt")
    binary = tmp_path / "onnxruntime_perf_test"
    binary.write_bytes(b"\x7fELF" + bytes(3000))
    model = tmp_path / "edgevit xxs.onnx"  # a space, to check the quoting
    model.write_bytes(b"\x08\x07" + bytes(100))
    bench = AdbBenchmark(binary, tool="onnxruntime", binary_remote="/data/local/tmp/ort/onnxruntime_perf_test")

    report = measure_on_phone(phone.device(), model, bench, threads=4, runs=50)

    assert (report.tool, report.count, report.median_ms) == ("onnxruntime", 50, approx(42.7139))
    (run,) = phone.shell_calls("taskset")
    # 4 threads: the prime core alone is too few, so its cluster plus the next one (cores 4-7).
    assert run == ("taskset f0 /data/local/tmp/ort/onnxruntime_perf_test -e cpu -m times -r 50 -x 4 -I -s "
                   "'/data/local/tmp/ort/edgevit xxs.onnx' 2>&1")
    assert phone.files() == {"/data/local/tmp/ort/onnxruntime_perf_test": 3004}


def test_explicit_cores_set_the_mask(phone, tflite_model, bench):
    measure_on_phone(phone.device(), tflite_model, bench, threads=2, cores=[1, 0])
    (run,) = phone.shell_calls("taskset")
    assert run.startswith("taskset 3 /data/local/tmp/benchmark_model ")
    assert "--num_threads=2" in run
    assert not phone.shell_calls("cat")  # no topology query when the cores are given


def test_failed_run_raises_and_still_removes_the_model(phone, tflite_model, bench):
    phone.configure("tflite_issue50641_op_missing.txt", rc=1)
    with pytest.raises(BenchmarkParseError) as err:
        measure_on_phone(phone.device(), tflite_model, bench)
    assert "Didn't find op for builtin opcode 'MUL'" in str(err.value)
    assert "exit status 1" in str(err.value)
    assert "\n" not in str(err.value)
    assert phone.shell_calls("rm") == ["rm -f /data/local/tmp/edgevit_xxs.tflite"]
    assert "/data/local/tmp/edgevit_xxs.tflite" not in phone.files()


def test_nonzero_exit_after_timings_is_an_error(tmp_path, tflite_model, bench):
    phone = FakePhone(tmp_path, "tflite_android_sd888_xnnpack.txt", rc=1)
    with pytest.raises(BenchmarkParseError, match="exited 1 after printing timings"):
        measure_on_phone(phone.device(), tflite_model, bench, cores=[7])


def test_model_suffix_must_match_the_tool(phone, tmp_path, bench):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(ValueError) as err:
        measure_on_phone(phone.device(), onnx, bench)
    assert str(err.value) == "model='m.onnx': suffix for tool='tflite' must be one of: .tflite"
    assert phone.calls() == []  # refused before touching the phone


def test_bad_arguments_are_refused(phone, tflite_model, bench):
    with pytest.raises(ValueError, match="tool='tvm': allowed: tflite, onnxruntime"):
        AdbBenchmark(Path("benchmark_model"), tool="tvm")
    with pytest.raises(ValueError, match="threads=0"):
        measure_on_phone(phone.device(), tflite_model, bench, threads=0)
    with pytest.raises(ValueError, match="cores="):
        measure_on_phone(phone.device(), tflite_model, bench, cores=[])
    assert phone.calls() == []


def test_default_remote_path_follows_the_binary_name():
    assert AdbBenchmark(Path("/build/benchmark_model"), "tflite").binary_remote == "/data/local/tmp/benchmark_model"
    assert os.fspath(AdbBenchmark("/b/onnxruntime_perf_test", "onnxruntime").binary_local) == "/b/onnxruntime_perf_test"


# -- the farm on a phone profile ----------------------------------------------------------------

def test_farm_measures_on_an_adb_profile_and_stores_it(phone, tmp_path):
    """The whole path a user takes: a user profile naming the phone, `Farm.measure`, the store."""
    from device_farm import MeasurementStore, load_profiles
    from device_farm.measure import Farm
    from search_space import PRESETS

    phone.configure("ort_android_sd888_cpu.txt")
    binary = tmp_path / "onnxruntime_perf_test"
    binary.write_bytes(b"\x7fELF" + bytes(3000))
    users = tmp_path / "devices"
    users.mkdir()
    (users / "s21.toml").write_text(
        f'id = "s21"\nname = "S21"\nbackend = "adb"\nruntime = "onnxruntime"\nserial = "{SERIAL}"\n'
        f'adb = "{phone.adb}"\nbenchmark_binary = "{binary}"\n')
    profile = load_profiles(users)["s21"]
    farm = Farm(MeasurementStore(tmp_path / "m.sqlite"))
    cfg = PRESETS["edgevit_xxs"].replace(resolution=128)
    m = farm.measure(cfg, profile)
    assert m.status == "ok", m.error
    assert m.median_ms == approx(42.7139) and m.runtime == "onnxruntime" and m.runtime_version.startswith("sha256:")
    (run,) = phone.shell_calls("taskset")
    assert run.startswith("taskset 80 ") and f"{cfg.arch_id}.onnx" in run
    assert farm.store.query(device="s21")[0].source == f"measured:adb:{SERIAL}"


def test_farm_on_a_phone_without_serial_records_why(tmp_path):
    from device_farm import MeasurementStore, get_profile
    from device_farm.measure import Farm
    from search_space import PRESETS

    m = Farm(MeasurementStore(tmp_path / "m.sqlite")).measure(PRESETS["edgevit_xxs"], get_profile("s21"))
    assert m.status == "failed" and "no adb serial" in m.error


def test_a_real_s21_is_measured_as_its_calibration_table_was(phone, tmp_path):
    """The shipped s21 profile with a serial: benchmark_model on the cached .tflite export, one thread pinned to
    the A78s (taskset 70), 10 warm-up and 50 timed runs, XNNPACK -- what nn-Meter's profiler ran (issue #14)."""
    from device_farm import MeasurementStore, get_profile, load_profiles
    from device_farm.measure import Farm
    from search_space import PRESETS

    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF" + bytes(4000))
    users = tmp_path / "devices"
    users.mkdir()
    shipped = get_profile("s21").path
    text = open(shipped).read().replace('serial = ""', f'serial = "{SERIAL}"\nadb = "{phone.adb}"').replace(
        'benchmark_binary = ""', f'benchmark_binary = "{binary}"')
    (users / "s21.toml").write_text(text)
    profile = load_profiles(users)["s21"]
    farm = Farm(MeasurementStore(tmp_path / "m.sqlite"))
    cfg = PRESETS["edgevit_xxs"]
    # the export cache already holds the model (converting needs the [tflite] extra; the fake phone never reads it)
    farm.cache_dir.mkdir(parents=True, exist_ok=True)
    (farm.cache_dir / f"{cfg.arch_id}.tflite").write_bytes(b"TFL3" + bytes(3000))
    m = farm.measure(cfg, profile)
    assert m.status == "ok", m.error
    assert (m.runtime, m.threads, m.repeats) == ("tflite", 1, 50) and m.median_ms == approx(19.236)
    assert m.env["delegate"] == "xnnpack" and m.env["cores"] == [4, 5, 6]
    (run,) = phone.shell_calls("taskset")
    assert run == (f"taskset 70 /data/local/tmp/benchmark_model --graph=/data/local/tmp/{cfg.arch_id}.tflite "
                   "--num_threads=1 --warmup_runs=10 --warmup_min_secs=0 --num_runs=50 --min_secs=0 "
                   "--use_xnnpack=true 2>&1")
    assert farm.store.query(device="s21")[0].median_ms == approx(19.236)


def test_the_delegate_of_a_profile_reaches_benchmark_model(phone, tflite_model, bench):
    off = AdbBenchmark(bench.binary_local, tool="tflite", use_xnnpack=False)
    default = AdbBenchmark(bench.binary_local, tool="tflite", use_xnnpack=None)
    measure_on_phone(phone.device(), tflite_model, off)
    measure_on_phone(phone.device(), tflite_model, default)
    first, second = phone.shell_calls("taskset")
    assert "--use_xnnpack=false" in first and "use_xnnpack" not in second
