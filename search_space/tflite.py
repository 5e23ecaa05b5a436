"""TFLite export through litert-torch, and the check that LiteRT computes what PyTorch computes.

Phones run TFLite (nn-Meter's block tables were measured with TFLite's ``benchmark_model``), so a
candidate measured on a phone, or with LiteRT on this CPU, must be the same graph: the eval-mode
network at batch 1, float32, NCHW input as in the ONNX export (one transpose to NHWC inside the
graph), converted by ``litert_torch.convert`` (torch.export, then LiteRT's lowering). The check
runs the file in ``ai_edge_litert``'s interpreter (1 thread) and compares outputs with PyTorch on
the same random input.

One rewrite, exact, is applied before converting: EdgeViT's LocalProp (a depthwise
``ConvTranspose2d`` with kernel = stride = r) becomes a per-channel multiply and a depth-to-space
(:class:`DepthToSpaceProp`). litert-torch lowers a grouped transposed convolution to one
TRANSPOSE_CONV per channel (540 of them, and as many SLICEs, in EdgeViT-XXS at 128 px), which no
deployment would keep; the check below compares the file with the original module, so the rewrite
is verified on every export. The ONNX export keeps the ConvTranspose (onnxruntime runs it natively).

Both packages are the optional extra ``[tflite]`` (``pip install -c constraints.txt -e ".[tflite]"``):
the core installs and tests without them; every function here says so in one line when they are
missing (:class:`TFLiteUnavailable`). A network the converter refuses is one
:class:`TFLiteExportError` line naming the network and the converter's own first line.
"""
from __future__ import annotations

import contextlib
import io
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .export import ExportCheck, module_and_shape
from .files import atomic_write

__all__ = ["EXTRA", "TFLiteUnavailable", "TFLiteExportError", "TFLiteCheck", "DepthToSpaceProp", "tflite_missing",
           "deployable", "export_tflite", "check_tflite", "run_tflite"]

#: How to install what this module needs (the optional extra of pyproject.toml).
EXTRA = 'pip install -c constraints.txt -e ".[tflite]"'


class TFLiteUnavailable(ImportError):
    """litert-torch or ai-edge-litert is not installed; one line saying how to install them."""


class TFLiteExportError(RuntimeError):
    """A network the converter refused; one line naming it and the converter's reason."""


def tflite_missing(convert: bool = True) -> str | None:
    """Why TFLite export (``convert``) or only running .tflite files cannot work here, or None."""
    import importlib.util

    need = (("ai_edge_litert", "ai-edge-litert"),) + ((("litert_torch", "litert-torch"),) if convert else ())
    missing = [pkg for mod, pkg in need if importlib.util.find_spec(mod) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (the optional extra [tflite]: {EXTRA})"
    return None


def _require(convert: bool = True) -> None:
    why = tflite_missing(convert)
    if why:
        raise TFLiteUnavailable(why)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # LiteRT's C++ info lines on stderr
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")  # litert-torch's progress tree on stdout


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    line = lines[0] if lines else ""
    return f"{type(e).__name__}: {line[:300]}"


class DepthToSpaceProp(nn.Module):
    """A depthwise ``ConvTranspose2d`` with kernel = stride = r and no padding, computed as what it is:
    each input pixel times its channel's r x r kernel, laid out by depth-to-space (``pixel_shuffle``)."""

    def __init__(self, conv: nn.ConvTranspose2d):
        super().__init__()
        c, r = conv.in_channels, conv.stride[0]
        self.r = r
        self.weight = nn.Parameter(conv.weight.detach().reshape(1, c, r * r, 1, 1).clone(), requires_grad=False)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(c)
        self.bias = nn.Parameter(bias.reshape(1, c, 1, 1).clone(), requires_grad=False)

    def forward(self, x):
        b, c, h, w = x.shape
        y = (x.unsqueeze(2) * self.weight).reshape(b, c * self.r * self.r, h, w)
        return F.pixel_shuffle(y, self.r) + self.bias


def _is_depthwise_unpool(m: nn.Module) -> bool:
    return (isinstance(m, nn.ConvTranspose2d) and m.groups == m.in_channels == m.out_channels
            and m.kernel_size == m.stride and m.kernel_size[0] == m.kernel_size[1] and m.padding == (0, 0)
            and m.output_padding == (0, 0) and m.dilation == (1, 1))


def deployable(model: nn.Module) -> nn.Module:
    """``model`` with every depthwise kernel = stride transposed conv replaced by :class:`DepthToSpaceProp`
    (in place; the same outputs)."""
    for name, m in list(model.named_modules()):
        for child_name, child in list(m.named_children()):
            if _is_depthwise_unpool(child):
                setattr(m, child_name, DepthToSpaceProp(child))
    return model


def export_tflite(model_or_net, path: str | os.PathLike, seed: int = 0,
                  input_shape: tuple[int, ...] | None = None) -> Path:
    """Write ``path`` (float32, batch 1, the input shape of the PyTorch model) and return it.

    ``model_or_net``: what :func:`search_space.export.module_and_shape` takes (an EdgeViT module or
    configuration, a timm network, an nn-Meter block). Written atomically, like the ONNX export.
    """
    _require(convert=True)
    import litert_torch

    model, shape = module_and_shape(model_or_net, seed, input_shape)
    import copy

    model = deployable(copy.deepcopy(model))
    x = torch.randn(*shape)
    label = getattr(model_or_net, "spec", None) or getattr(model_or_net, "arch_id", None) or type(model).__name__
    try:
        # litert-torch prints a progress tree on stdout for every conversion: kept out of the caller's output
        with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            edge = litert_torch.convert(model, (x,))
            data = edge.model_content()
    except Exception as e:  # the converter's failures are many types; all become one line
        raise TFLiteExportError(f"{label}: litert-torch could not convert it ({_first_line(e)})") from None
    return atomic_write(Path(path), data)


def run_tflite(path: str | os.PathLike, x: np.ndarray, threads: int = 1, xnnpack: bool = True) -> np.ndarray:
    """The first output of ``path`` on input ``x`` in LiteRT's interpreter (``xnnpack=False``: built-in kernels only)."""
    _require(convert=False)
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    it = Interpreter(model_path=str(path), num_threads=threads, experimental_op_resolver_type=resolver)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    if tuple(inp["shape"]) != tuple(x.shape):
        raise ValueError(f"input shape {tuple(x.shape)}: the model {path} takes {tuple(inp['shape'])}")
    it.set_tensor(inp["index"], x.astype(np.float32))
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()


@dataclass(frozen=True)
class TFLiteCheck(ExportCheck):
    """:class:`ExportCheck` for a .tflite file: ``num_nodes`` counts its operators; ``seconds`` is the check's wall time."""

    seconds: float = 0.0


def check_tflite(model, path: str | os.PathLike, seed: int = 0, input_shape: tuple[int, ...] | None = None,
                 xnnpack: bool = True) -> TFLiteCheck:
    """Run ``path`` in LiteRT (1 thread) and return the largest absolute difference to ``model``'s output."""
    _require(convert=False)
    from ai_edge_litert.interpreter import Interpreter

    t0 = time.perf_counter()
    module, shape = module_and_shape(model, seed, input_shape)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g)
    with torch.no_grad():
        ref = module(x).numpy()
    out = run_tflite(path, x.numpy(), xnnpack=xnnpack)
    n_ops = len(Interpreter(model_path=str(path))._get_ops_details())
    diff = float(np.max(np.abs(out.reshape(ref.shape) - ref))) if out.size == ref.size else float("inf")
    return TFLiteCheck(str(path), diff, 0, n_ops, time.perf_counter() - t0)
