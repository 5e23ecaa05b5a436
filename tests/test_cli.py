"""The ``nas`` commands as a user runs them: once through the installed console script in a real
subprocess (the wiring), the rest through the same entry point (``nas.cli.main``) in this process,
output captured, which saves a torch import per command."""
import contextlib
import io
import json
from pathlib import Path
import shutil
import subprocess
import sys
from types import SimpleNamespace

from nas.cli import main
from search_space import PRESETS, EdgeViTConfig


def nas_subprocess(*args, check=True):
    exe = shutil.which("nas")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "nas", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def nas(*args, check=True):
    """``nas ARGS`` through ``nas.cli.main`` in this process: exit status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse's usage errors
            code = e.code if isinstance(e.code, int) else 2
    proc = SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_space_show_prints_a_stage_table():
    out = nas_subprocess("space", "show", "edgevit_xxs").stdout  # the installed console script, for real
    assert "1b499e80b07e" in out or PRESETS["edgevit_xxs"].arch_id in out
    assert "4.068M" in out and "0.551G" in out
    assert out.count("lgl") >= 3 and "global×2" in out


def test_space_show_json_is_the_canonical_config():
    data = json.loads(nas("space", "show", "edgevit_s", "--json").stdout)
    assert data["params"] == 13_108_168
    assert EdgeViTConfig.from_dict(data["config"]) == PRESETS["edgevit_s"]


def test_space_sample_writes_valid_files(tmp_path):
    proc = nas("space", "sample", "-n", "5", "--seed", "0", "--out", str(tmp_path))
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 5
    for f in files:
        assert EdgeViTConfig.from_json(f.read_text()).arch_id == f.stem
        assert f.stem in proc.stdout
    again = nas("space", "sample", "-n", "5", "--seed", "0", "--json").stdout.splitlines()
    assert sorted(EdgeViTConfig.from_json(line).arch_id for line in again) == [f.stem for f in files]


def test_space_validate_reports_ok_and_bad_fields(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(PRESETS["edgevit_xs"].to_json())
    assert "ok, id" in nas("space", "validate", str(good)).stdout
    bad = json.loads(PRESETS["edgevit_xs"].to_json())
    bad["resolution"] = 250
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    proc = nas("space", "validate", str(tmp_path / "bad.json"), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "resolution=250" in proc.stderr and "multiple of 32" in proc.stderr


def test_unknown_preset_lists_the_known_ones():
    proc = nas("space", "show", "edgevit_xl", check=False)
    assert proc.returncode == 2 and "edgevit_xxs, edgevit_xs, edgevit_s" in proc.stderr


def test_space_export_writes_a_checked_onnx_file(tmp_path):
    out = tmp_path / "xxs.onnx"
    proc = nas("space", "export", "edgevit_xxs", "--onnx", str(out))
    assert out.stat().st_size > 10_000_000  # 4.07 M float32 weights
    assert "(ok," in proc.stdout


def test_space_size_reports_the_count():
    out = nas("space", "size").stdout
    assert "distinct architectures:" in out and "10^19" in out


def test_predictor_train_show_predict_on_real_measurements(tmp_path):
    store = tmp_path / "m.sqlite"
    data = Path(__file__).parent / "data" / "host_measurements.csv"
    nas("farm", "import", str(data), "--store", str(store))
    out = tmp_path / "host.json"
    train = nas("predictor", "train", "--device", "host", "--store", str(store), "--method", "kernel", "--out", str(out))
    assert "(chosen)" in train.stdout and out.exists()
    show = nas("predictor", "show", str(out)).stdout
    assert "method kernel" in show and "287" in show and "kernel costs" in show
    # beside the figures, the instrument's repeat over every recorded pair (bench/farm_noise.py --tally)
    tally = json.loads((Path(__file__).parents[1] / "bench" / "results" / "farm_noise_tally.json").read_text())
    assert f"within 1.5% / 4% on {tally['met']} of {tally['pairs']} pairs" in " ".join(show.split())
    energy = nas("predictor", "train", "--device", "host", "--store", str(store), "--target", "energy", check=False)
    assert energy.returncode == 2 and "no energy measurements" in energy.stderr


def test_farm_devices_lists_builtins_and_counts(tmp_path):
    store = tmp_path / "m.sqlite"
    nas("farm", "import", str(Path(__file__).parent / "data" / "host_measurements.csv"), "--store", str(store))
    out = nas("farm", "devices", "--store", str(store)).stdout
    assert "host" in out and "s21" in out and "287" in out and "no (no adb" in out and "host-litert" in out


def test_proxy_score_prints_each_proxy_and_rejects_unknown_names():
    out = nas("proxy", "score", "edgevit_xxs", "edgevit_xs", "--resolution", "64", "--batch-size", "4").stdout
    assert "zico" in out and "dss" in out and "aggregate" in out and "edgevit_xs" in out
    bad = nas("proxy", "score", "edgevit_xxs", "--proxies", "synflow,foo", check=False)
    assert bad.returncode == 2 and "--proxies='foo'" in bad.stderr and "naswot" in bad.stderr


def test_calibrate_blocks_refuses_a_source_without_a_block_table_in_one_line(tmp_path):
    store = tmp_path / "m.sqlite"
    proc = nas("farm", "calibrate", "--device", "host", "--blocks", "--bases", "s21,mybox", "--store", store, check=False)
    assert proc.returncode != 0 and proc.stderr.strip().count("\n") == 0
    assert "--bases 'mybox'" in proc.stderr and proc.stderr.strip().endswith("pixel1, pixel4, s21")
    from device_farm import MeasurementStore

    assert not store.exists() or not MeasurementStore(store).query()  # nothing measured


def test_the_command_line_and_the_space_load_without_torch():
    """``nas --help``, the parser of every command and ``import search_space`` never import torch or
    timm (about 4 s of the 8 s that ``nas --help`` took on 2 cores), nor do the search driver and the
    farm (scikit-learn they need); a command that needs torch loads it itself, and
    ``search_space.EdgeViT`` loads the model (registering the presets with timm)."""
    code = ("import sys, search_space, nas.cli\n"
            "nas.cli.build_parser()\n"
            "heavy = sorted(m for m in ('torch', 'timm', 'sklearn', 'ray', 'onnxruntime') if m in sys.modules)\n"
            "assert not heavy, heavy\n"
            "import nas.search, predictors.accuracy, predictors.latency, device_farm.measure, device_farm.ray_farm\n"
            "heavy = sorted(m for m in ('torch', 'timm') if m in sys.modules)\n"
            "assert not heavy, ('the search driver and the farm', heavy)\n"
            "import timm\n"
            "assert 'edgevit_xxs' not in timm.list_models('edgevit_*')\n"
            "assert search_space.EdgeViT.__name__ == 'EdgeViT' and 'edgevit_xxs' in timm.list_models('edgevit_*')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = nas_subprocess("--help").stdout
    assert all(cmd in out for cmd in ("space", "farm", "predictor", "search", "train"))
