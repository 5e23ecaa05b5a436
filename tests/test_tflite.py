"""TFLite export (litert-torch) checked against PyTorch, and LiteRT devices measured by the farm's protocol.

Needs the optional extra [tflite] (litert-torch, ai-edge-litert); without it the module is skipped
with one line saying so (CI installs .[test] only). About 40 s on 2 cores: two conversions.
"""
import json
import shutil
import subprocess
import sys

import pytest
import torch

from search_space.tflite import tflite_missing

pytestmark = pytest.mark.skipif(tflite_missing() is not None, reason=f"TFLite tests: {tflite_missing()}")

from device_farm import MeasurementStore, get_profile  # noqa: E402
from device_farm.measure import CANDLE, Farm, MeasureProtocol  # noqa: E402

BEFORE_AFTER = MeasureProtocol(interleave=False, min_repeats=10, target_ci=0.03, max_seconds=3.0, candle_repeats=5,
                               warmup_s=0.1)


def nas(*args):
    exe = shutil.which("nas")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "nas", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The farm's export cache holding the candle's .tflite, written by `nas space export --tflite` as a user would."""
    d = tmp_path_factory.mktemp("cache")
    cfg = d / "candle.json"
    cfg.write_text(json.dumps(CANDLE.to_dict()))
    proc = nas("space", "export", str(cfg), "--tflite", str(d / f"{CANDLE.arch_id}.tflite"))
    assert proc.returncode == 0, proc.stderr
    assert "LiteRT vs PyTorch: max |diff|" in proc.stdout and "(ok," in proc.stdout
    return d


def test_tflite_export_matches_pytorch(cache):
    from search_space.export import module_and_shape
    from search_space.tflite import check_tflite

    model, shape = module_and_shape(CANDLE)  # seed 0: the weights the export used
    chk = check_tflite(model, cache / f"{CANDLE.arch_id}.tflite")
    assert chk.ok and chk.max_abs_diff <= 1e-4 and chk.num_nodes > 20
    off = check_tflite(model, cache / f"{CANDLE.arch_id}.tflite", xnnpack=False)  # TFLite's own kernels agree too
    assert off.max_abs_diff <= 1e-4


def test_a_conv_block_converts_without_layout_transposes(tmp_path):
    """nn-Meter's blocks take NHWC maps; the NCHW permutes inside the PyTorch block cancel in the .tflite."""
    from ai_edge_litert.interpreter import Interpreter

    from predictors.latency.phone.torch_blocks import BlockNetwork
    from search_space.tflite import check_tflite, export_tflite

    net = BlockNetwork("conv_28_24_24_4_1_hard_swish_5_nose")
    path = export_tflite(net, tmp_path / "b.tflite")
    ops = [o["op_name"] for o in Interpreter(model_path=str(path))._get_ops_details()]
    assert "TRANSPOSE" not in ops and ops.count("CONV_2D") == 2 and "DEPTHWISE_CONV_2D" in ops
    assert check_tflite(net, path).ok


def test_a_network_that_does_not_convert_is_one_line(tmp_path):
    from search_space.tflite import TFLiteExportError, export_tflite

    class Eig(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.eigvals(x).real

    with pytest.raises(TFLiteExportError) as e:
        export_tflite(Eig(), tmp_path / "x.tflite", input_shape=(1, 4, 4))
    assert "litert-torch could not convert it" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "x.tflite").exists()


@pytest.mark.parametrize("device", ["host-litert", "host-litert-noxnn"])
def test_litert_device_is_measured_by_the_farm_protocol(cache, tmp_path, device):
    farm = Farm(MeasurementStore(tmp_path / "m.sqlite"), cache_dir=cache, protocol=BEFORE_AFTER)
    m = farm.measure(CANDLE, get_profile(device))
    assert m.status in ("ok", "disturbed"), m.error  # a loaded machine may move the candle: what the protocol detects
    assert (m.runtime, m.threads, m.input_shape) == ("tflite", 1, "1x3x128x128")
    assert m.runtime_version[0].isdigit() and m.env["delegate"] == get_profile(device).delegate
    assert 0 < m.median_ms < 1000 and m.repeats >= BEFORE_AFTER.min_repeats
    assert {"candle_before_ms", "candle_after_ms", "load_before"} <= set(m.env)


def test_worker_times_a_litert_interpreter_like_an_onnxruntime_session(cache):
    from device_farm.worker import LiteRTSession, _time

    s = LiteRTSession(str(cache / f"{CANDLE.arch_id}.tflite"), threads=1, xnnpack=True)
    assert s.shape == [1, 3, 128, 128]
    times = _time(s, None, 3)
    assert len(times) == 3 and all(t > 0 for t in times)
