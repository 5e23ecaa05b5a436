"""Device profiles: built-ins, shipped calibration data with provenance, user overrides, errors."""
import gzip
import json

import pytest

from device_farm import ProfileError, get_profile, load_profiles


def test_builtin_devices_are_host_and_three_phones():
    profiles = load_profiles()
    assert {"host", "host-litert", "host-litert-noxnn", "s21", "pixel4", "pixel1"} <= set(profiles)
    for pid, delegate in (("host-litert", "xnnpack"), ("host-litert-noxnn", "none")):
        p = profiles[pid]
        assert (p.backend, p.runtime, p.threads, p.delegate, p.model_suffix) == ("litert", "tflite", 1, delegate, ".tflite")
        assert p.is_local
    host = profiles["host"]
    assert host.backend == "onnxruntime" and host.threads == 1 and host.is_local
    s21 = profiles["s21"]
    assert s21.backend == "adb" and "888" in s21.soc and not s21.is_local


@pytest.mark.parametrize("device,phone", [("s21", "xiaomi11"), ("pixel4", "pixel4"), ("pixel1", "pixel1")])
def test_phone_calibration_data_ships_with_license_and_provenance(device, phone):
    p = get_profile(device)
    path = p.calibration_file()
    assert path is not None and path.name == f"{phone}_lut_ln_v3.json.gz"
    table = json.loads(gzip.decompress(path.read_bytes()))
    assert len(table) > 4000 and all(v > 0 for v in table.values())
    assert any(k.startswith("transattn_") for k in table)
    assert (path.parent / "LICENSE").read_text().strip().startswith("MIT License")
    assert "9c31e19" in p.calibration["provenance"] and "9c31e19" in (path.parent / "PROVENANCE.md").read_text()


def test_user_profile_adds_and_overrides(tmp_path):
    (tmp_path / "s21.toml").write_text(
        'id = "s21"\nname = "My S21"\nbackend = "adb"\nruntime = "onnxruntime"\nserial = "R5CR1234"\n'
        'benchmark_binary = "/opt/ort/onnxruntime_perf_test"\npin_cores = [7]\n')
    (tmp_path / "pi.toml").write_text('id = "rpi4"\nname = "Raspberry Pi 4"\nbackend = "onnxruntime"\nruntime = "onnxruntime"\nthreads = 4\n')
    profiles = load_profiles(tmp_path)
    assert profiles["s21"].serial == "R5CR1234" and profiles["s21"].pin_cores == (7,)
    assert profiles["rpi4"].threads == 4
    assert profiles["host"].backend == "onnxruntime"


@pytest.mark.parametrize("body,words", [
    ('id = "x"\nname = "x"\nbackend = "tpu"\nruntime = "r"\n', "backend='tpu': allowed: onnxruntime, onnxruntime-cuda, litert, adb"),
    ('id = "x"\nname = "x"\nbackend = "adb"\nruntime = "tflite"\ndelegate = "gpu"\n', "delegate='gpu': allowed: xnnpack, none"),
    ('id = "x"\nname = "x"\nbackend = "litert"\nruntime = "onnxruntime"\n', "the litert backend runs tflite"),
    ('id = "x"\nname = "x"\nbackend = "adb"\nruntime = "r"\ncolour = 1\n', "unknown field 'colour'"),
    ('id = "x"\nbackend = "adb"\nruntime = "r"\n', "field 'name' is required"),
    ('id = "x"\nname = "x"\nbackend = "adb"\nruntime = "r"\nthreads = 0\n', "threads=0"),
    ('id = "x"\nname = \n', "not valid TOML"),
])
def test_bad_profile_gets_one_line_error(tmp_path, body, words):
    (tmp_path / "x.toml").write_text(body)
    with pytest.raises(ProfileError) as e:
        load_profiles(tmp_path)
    assert words in str(e.value) and "\n" not in str(e.value).strip()


def test_unknown_device_lists_the_known_ones():
    with pytest.raises(ProfileError, match="device='s22': unknown; known devices: host, host-litert, host-litert-noxnn, pixel1, pixel4, s21"):
        get_profile("s22")


@pytest.mark.parametrize("device", ["s21", "pixel4", "pixel1"])
def test_a_phone_says_what_its_figures_mean(device):
    """Runtime, threads, cores and delegate of the calibration data, with the evidence (issue #14)."""
    p = get_profile(device)
    for fact in ("runtime", "threads", "cores", "delegate", "precision", "evidence"):
        assert p.calibration.get(fact), fact
    assert p.calibration["threads"] == "1" and "tflite_profiler.py" in p.calibration["evidence"]
    line = p.calibration_summary()
    assert "benchmark_model" in line and "threads 1" in line and "\n" not in line
    assert p.runtime == "tflite" and p.threads == 1 and p.delegate == "xnnpack"


def test_s21_is_measured_on_the_cores_its_table_was():
    s21 = get_profile("s21")
    assert s21.pin_cores == (4, 5, 6)  # taskset 70: the Cortex-A78s of a Snapdragon 888
    assert "taskset 70" in s21.calibration["cores"] and "A78" in s21.calibration["cores"]
