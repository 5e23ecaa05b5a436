"""ONNX export of a candidate, and the check that onnxruntime computes what PyTorch computes.

The export is what every device measures, so it is the deployment graph: eval mode, batch 1 by
default, opset 17 or newer, weights inside the file. The check runs a real onnxruntime session on
the CPU and compares logits with the PyTorch model on the same random input.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import EdgeViTConfig
from .files import atomic_write
from .model import EdgeViT

__all__ = ["DEFAULT_OPSET", "ExportCheck", "export_onnx", "check_onnx", "module_and_shape"]

DEFAULT_OPSET = 18


@dataclass(frozen=True)
class ExportCheck:
    path: str
    max_abs_diff: float
    opset: int
    num_nodes: int

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= 1e-4


def module_and_shape(model_or_net, seed: int = 0, input_shape: tuple[int, ...] | None = None):
    """The eval-mode module to export and its input shape (batch 1).

    Takes an EdgeViT module, an :class:`EdgeViTConfig`, a :class:`~search_space.networks.Network`
    (built with random weights from ``seed``: latency does not depend on the values), or any module
    with ``input_shape`` given.
    """
    from .networks import Network, as_network

    if isinstance(model_or_net, EdgeViTConfig) or isinstance(model_or_net, Network):
        net = as_network(model_or_net)
        return net.build(seed).eval(), tuple(input_shape or net.input_shape)
    if input_shape is None:
        cfg = getattr(model_or_net, "cfg", None)
        if not isinstance(cfg, EdgeViTConfig):
            raise ValueError("input_shape: required for a module that is not an EdgeViT")
        input_shape = (1, 3, cfg.resolution, cfg.resolution)
    return model_or_net.eval(), tuple(input_shape)


def export_onnx(model_or_cfg, path: str | os.PathLike, batch_size: int = 1,
                opset: int = DEFAULT_OPSET, dynamic_batch: bool = False, seed: int = 0,
                input_shape: tuple[int, ...] | None = None) -> Path:
    """Write ``path`` (input ``image``: float32 NCHW, output ``logits``) and return it.

    ``model_or_cfg``: what :func:`module_and_shape` takes (an EdgeViT module or configuration, a
    timm network, a block). A configuration is built with random weights from ``seed`` (latency
    does not depend on the values). The file is written next to its destination and renamed, so a
    crash never leaves a truncated model where a measurement could pick it up.
    """
    if opset < 17:
        raise ValueError(f"opset={opset}: must be >= 17 (LayerNormalization is native from 17)")
    model, shape = module_and_shape(model_or_cfg, seed, input_shape)
    x = torch.randn(batch_size, *shape[1:])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic = {"image": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None

    def write(f) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(model, (x,), f, input_names=["image"], output_names=["logits"],
                              opset_version=opset, dynamo=False, dynamic_axes=dynamic)

    return atomic_write(path, write)


def check_onnx(model: EdgeViT, path: str | os.PathLike, seed: int = 0,
               input_shape: tuple[int, ...] | None = None) -> ExportCheck:
    """Run ``path`` in onnxruntime (CPU) and return the largest absolute difference to ``model``."""
    import onnx
    import onnxruntime as ort

    model, shape = module_and_shape(model, seed, input_shape)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g)
    with torch.no_grad():
        ref = model(x).numpy()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    proto = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), -1)
    return ExportCheck(str(path), float(np.max(np.abs(out - ref))), opset, len(proto.graph.node))
