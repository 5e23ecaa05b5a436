"""ONNX export: onnxruntime computes what PyTorch computes (max |diff| <= 1e-4), opset >= 17."""
import onnx
import pytest
import torch

from search_space import DEFAULT_SPACE, PRESETS, build_model
from search_space.export import check_onnx, export_onnx

CASES = list(PRESETS.values()) + DEFAULT_SPACE.sample_random(6, seed=5)


@pytest.mark.parametrize("cfg", CASES, ids=lambda c: c.name or c.arch_id)
def test_onnx_export_matches_pytorch(cfg, tmp_path):
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    path = export_onnx(model, tmp_path / "m.onnx")
    chk = check_onnx(model, path)
    assert chk.max_abs_diff <= 1e-4, chk
    assert chk.opset >= 17
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["image"]
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, cfg.resolution, cfg.resolution]


def test_export_is_atomic_and_refuses_old_opsets(tmp_path):
    with pytest.raises(ValueError, match="opset=13"):
        export_onnx(PRESETS["edgevit_xxs"], tmp_path / "x.onnx", opset=13)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_dynamic_batch_export_runs_batches(tmp_path):
    import numpy as np
    import onnxruntime as ort

    path = export_onnx(PRESETS["edgevit_xxs"], tmp_path / "d.onnx", dynamic_batch=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"image": np.random.rand(3, 3, 224, 224).astype("float32")})[0]
    assert out.shape == (3, 1000)
