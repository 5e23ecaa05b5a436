"""NAS-Bench-201 cells and FBNet networks as real PyTorch modules, and the features the few-shot
latency predictor reads from them: MACs, parameters, a per-operator-kind cost profile and the
architecture encoding (one-hot op per edge / block per layer).

These are the two search spaces of the HELP benchmark (Lee et al., "HELP: Hardware-Adaptive
Efficient Latency Prediction for NAS via Meta-Learning", NeurIPS 2021), whose measured latencies
live in ``shared/data/help/``. They are used here to check, on public data with a published
yardstick, the few-shot latency predictor the project applies to EdgeViT candidates. MACs are
counted the way the project counts EdgeViT MACs: on the real module, with
``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2); parameters are ``numel`` of the module.
:class:`CostTable` gives the same numbers for a whole space in about a second by adding up the
profiles of each network's parts, each profiled on its real module.

NAS-Bench-201 (CIFAR-10 macro skeleton, 32x32 input). Checked against HW-NAS-Bench's copy of the
NAS-Bench-201 code (GATECH-EIC/HW-NAS-Bench @6c67e04, hw_nas_bench_api/nas_201_models/cell_infers/
cells.py; its cell_operations.py read from a fork, Badar-e-Alam/Neural-Architecture-Search @ea569bd)
and NAS-Bench-201's TinyNetwork macro (layer_channels / layer_reductions, lastact): stem 3x3 conv
(3->16, no bias) + BN; three stages of N=5 cells at 16/32/64 channels with a ResNet basic block of
stride 2 between stages (ReLU-Conv3x3(s2)-BN, ReLU-Conv3x3-BN, shortcut AvgPool2x2(s2) + 1x1 conv
without BN); then BN, ReLU, global average pool, Linear(64, 10). A cell has 4 nodes; node j sums
op(node i) over i < j; the cell's output is node 3. Ops: ``none`` (x * 0), ``skip_connect``
(identity: inside a cell C_in == C_out and stride 1), ``nor_conv_1x1`` / ``nor_conv_3x3``
(ReLU-Conv(no bias)-BN), ``avg_pool_3x3`` (AvgPool 3x3, stride 1, padding 1,
count_include_pad=False). Arch strings list the edges as node1<-0 | node2<-0, 1 | node3<-0, 1, 2.

FBNet (ImageNet, 224x224), the FBNet paper's Table 1 (Wu et al., CVPR 2019) as HW-NAS-Bench builds
it for ImageNet (hw_nas_bench_api/fbnet_models/model_infer.py @6c67e04, "FBNetv1 setting"): stem 3x3
conv stride 2 to 16 channels + BN + ReLU; 22 searchable layers in stages (channels, layers, stride) =
(16,1,1), (24,4,2), (32,4,2), (64,4,2), (112,4,1), (184,4,2), (352,1,1), the stride on a stage's first
layer; a 1x1 conv to 1984 + BN + ReLU; global average pool; Linear(1984, 1000). Block ``kK_eE[_g2]``:
1x1 conv (groups 2 when ``_g2``) expanding by E + BN + ReLU, channel shuffle when grouped (after the
expansion, where HW-NAS-Bench places it), KxK depthwise conv with the layer's stride + BN + ReLU, 1x1
conv (same groups) projecting + BN, residual add when C_in == C_out and stride 1. Padding
ceil((K - stride) / 2), i.e. 1 for K=3 and 2 for K=5, so the output side is ceil(input / stride).
``skip``: identity, or 1x1 conv (with the stride) + BN + ReLU where the shape changes.
"""
from __future__ import annotations

import ast
import hashlib
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "NB201_OPS", "NB201_EDGES", "parse_nb201", "format_nb201", "NB201Cell", "ResidualReduction",
    "NB201Network", "build_nb201", "nb201_encoding",
    "FBNET_BLOCKS", "FBNET_STAGES", "parse_fbnet", "format_fbnet", "MBConv", "FBNetSkip",
    "ChannelShuffle", "FBNetNetwork", "build_fbnet", "fbnet_encoding", "fbnet_layer_shapes",
    "profile_module", "profile_network", "check_profile", "count_macs_params", "CostTable",
    "space_features", "default_cache_dir", "SPACES",
]

# ----------------------------------------------------------------------------------------------
# NAS-Bench-201
# ----------------------------------------------------------------------------------------------

#: Op vocabulary in the order used by the one-hot encoding.
NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: The six edges as (to_node, from_node), in the order they appear in an arch string.
NB201_EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


def parse_nb201(arch: str) -> tuple[str, ...]:
    """``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` -> the six op names in string (edge) order.

    Raises ``ValueError`` on anything that is not a NAS-Bench-201 cell string.
    """
    nodes = arch.strip().split("+")
    if len(nodes) != 3:
        raise ValueError(f"NAS-Bench-201 arch needs 3 nodes separated by '+': {arch!r}")
    ops: list[str] = []
    for j, node in enumerate(nodes, start=1):
        if not (node.startswith("|") and node.endswith("|")):
            raise ValueError(f"node {j} must be wrapped in '|': {node!r}")
        items = node[1:-1].split("|")
        if len(items) != j:
            raise ValueError(f"node {j} needs {j} inputs, got {len(items)}: {node!r}")
        for i, item in enumerate(items):
            op, sep, src = item.partition("~")
            if not sep or src != str(i):
                raise ValueError(f"edge {item!r} of node {j} must read 'op~{i}'")
            if op not in NB201_OPS:
                raise ValueError(f"unknown op {op!r}; allowed: {NB201_OPS}")
            ops.append(op)
    return tuple(ops)


def format_nb201(ops: Sequence[str]) -> str:
    """Inverse of :func:`parse_nb201`."""
    ops = list(ops)
    if len(ops) != 6 or any(o not in NB201_OPS for o in ops):
        raise ValueError(f"need 6 ops from {NB201_OPS}: {ops!r}")
    groups, k = [], 0
    for j in (1, 2, 3):
        groups.append("|" + "|".join(f"{ops[k + i]}~{i}" for i in range(j)) + "|")
        k += j
    return "+".join(groups)


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class Zero(nn.Module):
    """The ``none`` op: zeros of the input's shape (a cell keeps channels and resolution)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def _nb201_op(name: str, channels: int) -> nn.Module:
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NAS-Bench-201 op {name!r}")


class NB201Cell(nn.Module):
    """A NAS-Bench-201 cell: node j = sum over i < j of edge_op[j <- i](node i); output node 3."""

    def __init__(self, ops: Sequence[str], channels: int):
        super().__init__()
        self.op_names = tuple(ops)
        self.edges = nn.ModuleList(_nb201_op(o, channels) for o in self.op_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        k = 0
        for j in (1, 2, 3):
            acc = None
            for i in range(j):
                y = self.edges[k](nodes[i])
                acc = y if acc is None else acc + y
                k += 1
            nodes.append(acc)
        return nodes[3]


class ResidualReduction(nn.Module):
    """ResNet basic block of stride 2 between NAS-Bench-201 stages."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, stride=1)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.downsample(x)


class NB201Network(nn.Module):
    """The CIFAR-10 NAS-Bench-201 network for one cell (the same cell in all 15 positions)."""

    input_size = 32

    def __init__(self, ops: Sequence[str], channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10):
        super().__init__()
        self.op_names = tuple(ops)
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        layers: list[nn.Module] = []
        c_prev = channels
        for stage in range(3):
            c = channels * 2 ** stage
            if stage > 0:
                layers.append(ResidualReduction(c_prev, c))
            layers.extend(NB201Cell(self.op_names, c) for _ in range(cells_per_stage))
            c_prev = c
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(self.pool(x).flatten(1))


def build_nb201(arch: str | Sequence[str], num_classes: int = 10) -> NB201Network:
    """Network for an arch string (or a sequence of six op names)."""
    ops = parse_nb201(arch) if isinstance(arch, str) else tuple(arch)
    if len(ops) != 6:
        raise ValueError(f"need 6 ops, got {len(ops)}")
    return NB201Network(ops, num_classes=num_classes)


def nb201_encoding(arch: str | Sequence[str]) -> np.ndarray:
    """One-hot op per edge: 6 edges x 5 ops = 30 values (edge-major, ops in ``NB201_OPS`` order)."""
    ops = parse_nb201(arch) if isinstance(arch, str) else tuple(arch)
    enc = np.zeros((6, len(NB201_OPS)), dtype=np.float32)
    for e, o in enumerate(ops):
        enc[e, NB201_OPS.index(o)] = 1.0
    return enc.ravel()


# ----------------------------------------------------------------------------------------------
# FBNet
# ----------------------------------------------------------------------------------------------

#: Block vocabulary in the order used by the one-hot encoding (HW-NAS-Bench's PRIMITIVES order).
FBNET_BLOCKS: tuple[str, ...] = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")
#: (channels, layers, stride of the first layer) per stage, FBNet paper Table 1 (ImageNet).
FBNET_STAGES: tuple[tuple[int, int, int], ...] = (
    (16, 1, 1), (24, 4, 2), (32, 4, 2), (64, 4, 2), (112, 4, 1), (184, 4, 2), (352, 1, 1))
FBNET_STEM = 16
FBNET_HEAD = 1984


def parse_fbnet(arch: str | Sequence[str]) -> tuple[str, ...]:
    """``"['k5_e6', 'skip', ...]"`` (a Python list literal, 22 items) -> tuple of block names."""
    blocks = ast.literal_eval(arch) if isinstance(arch, str) else arch
    if not isinstance(blocks, (list, tuple)):
        raise ValueError(f"FBNet arch must be a list of block names: {arch!r}")
    blocks = tuple(blocks)
    n = sum(s[1] for s in FBNET_STAGES)
    if len(blocks) != n:
        raise ValueError(f"FBNet arch needs {n} blocks, got {len(blocks)}")
    for b in blocks:
        if b not in FBNET_BLOCKS:
            raise ValueError(f"unknown FBNet block {b!r}; allowed: {FBNET_BLOCKS}")
    return blocks


def format_fbnet(blocks: Sequence[str]) -> str:
    """Inverse of :func:`parse_fbnet` (the format of the data files: ``str`` of a Python list)."""
    return str(list(parse_fbnet(list(blocks))))


def fbnet_layer_shapes(resolution: int = 224) -> list[tuple[int, int, int, int]]:
    """(c_in, c_out, stride, input side) of each of the 22 searchable layers."""
    out = []
    side = -(-resolution // 2)  # stem stride 2
    c_prev = FBNET_STEM
    for c, n, s in FBNET_STAGES:
        for i in range(n):
            stride = s if i == 0 else 1
            out.append((c_prev, c, stride, side))
            side = -(-side // stride)
            c_prev = c
    return out


def _conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    pad = max(0, -(-(k - stride) // 2))
    mods: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, stride=stride, padding=pad, groups=groups, bias=False),
                             nn.BatchNorm2d(c_out)]
    if relu:
        mods.append(nn.ReLU(inplace=True))
    return nn.Sequential(*mods)


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = self.groups
        return x.reshape(n, g, c // g, h, w).transpose(1, 2).reshape(n, c, h, w)


class MBConv(nn.Module):
    """FBNet block ``kK_eE[_g2]``: group 1x1 expand, [shuffle], KxK depthwise, group 1x1 project."""

    def __init__(self, c_in: int, c_out: int, kernel: int, expansion: int, stride: int, groups: int = 1):
        super().__init__()
        mid = c_in * expansion
        self.expand = _conv_bn(c_in, mid, 1, groups=groups)
        self.shuffle = ChannelShuffle(groups) if groups > 1 else nn.Identity()
        self.depthwise = _conv_bn(mid, mid, kernel, stride=stride, groups=mid)
        self.project = _conv_bn(mid, c_out, 1, groups=groups, relu=False)
        self.residual = c_in == c_out and stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.shuffle(self.expand(x))))
        return x + y if self.residual else y


class FBNetSkip(nn.Module):
    """``skip``: identity, or 1x1 conv + BN + ReLU when channels or resolution change."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.proj = _conv_bn(c_in, c_out, 1, stride=stride) if (stride != 1 or c_in != c_out) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def _fbnet_block(name: str, c_in: int, c_out: int, stride: int) -> nn.Module:
    if name == "skip":
        return FBNetSkip(c_in, c_out, stride)
    parts = name.split("_")
    kernel, expansion = int(parts[0][1:]), int(parts[1][1:])
    groups = int(parts[2][1:]) if len(parts) > 2 else 1
    return MBConv(c_in, c_out, kernel, expansion, stride, groups)


class FBNetNetwork(nn.Module):
    """FBNet-space ImageNet network (224x224 input) for one list of 22 blocks."""

    input_size = 224

    def __init__(self, blocks: Sequence[str], num_classes: int = 1000):
        super().__init__()
        self.block_names = parse_fbnet(list(blocks))
        self.stem = _conv_bn(3, FBNET_STEM, 3, stride=2)
        self.layers = nn.Sequential(*(
            _fbnet_block(b, c_in, c_out, stride)
            for b, (c_in, c_out, stride, _) in zip(self.block_names, fbnet_layer_shapes(self.input_size))
        ))
        self.head = _conv_bn(FBNET_STAGES[-1][0], FBNET_HEAD, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(FBNET_HEAD, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.layers(self.stem(x)))
        return self.classifier(self.pool(x).flatten(1))


def build_fbnet(arch: str | Sequence[str], num_classes: int = 1000) -> FBNetNetwork:
    return FBNetNetwork(parse_fbnet(arch), num_classes=num_classes)


def fbnet_encoding(arch: str | Sequence[str]) -> np.ndarray:
    """One-hot block choice per layer: 22 layers x 9 choices = 198 values (layer-major)."""
    blocks = parse_fbnet(arch)
    enc = np.zeros((len(blocks), len(FBNET_BLOCKS)), dtype=np.float32)
    for i, b in enumerate(blocks):
        enc[i, FBNET_BLOCKS.index(b)] = 1.0
    return enc.ravel()


# ----------------------------------------------------------------------------------------------
# Cost on the real module: MACs, parameters and a per-operator-kind profile
# ----------------------------------------------------------------------------------------------

def _conv_kind(m: nn.Conv2d) -> str:
    k = m.kernel_size[0]
    if m.groups == 1:
        return f"conv{k}"
    if m.groups == m.in_channels == m.out_channels:
        return f"dw{k}"
    return f"gconv{k}"


def _leaf_kind(m: nn.Module) -> str | None:
    if isinstance(m, nn.Conv2d):
        return _conv_kind(m)
    if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.MaxPool2d)):
        return "pool"
    if isinstance(m, nn.BatchNorm2d):
        return "bn"
    if isinstance(m, nn.ReLU):
        return "relu"
    if isinstance(m, nn.Linear):
        return "linear"
    if isinstance(m, Zero):
        return "zero"
    if isinstance(m, ChannelShuffle):
        return "shuffle"
    return None  # identity and containers: no cost of their own


def profile_module(model: nn.Module, input_shape: Sequence[int]) -> dict[str, float]:
    """Run ``model`` once on zeros of ``input_shape`` (CPU, eval, no grad) and count its cost.

    Returns ``macs`` (``FlopCounterMode`` FLOPs / 2, as the project counts EdgeViT), ``params``
    (parameter count) and, per leaf-operator kind (``conv3``, ``conv1``, ``gconv1``, ``dw3``, ``dw5``,
    ``pool``, ``bn``, ``relu``, ``linear``, ``zero``, ``shuffle``): ``n_<kind>`` (calls),
    ``in_<kind>`` / ``out_<kind>`` (input / output tensor elements) and, for convs and linears,
    ``macs_<kind>`` (output elements x input channels per group x kernel area). The per-kind conv
    and linear MACs add up to ``macs``; :func:`check_profile` asserts it.
    """
    prof: dict[str, float] = {}

    def hook(mod: nn.Module, args, out) -> None:
        kind = _leaf_kind(mod)
        if kind is None:
            return
        x = args[0]
        prof[f"n_{kind}"] = prof.get(f"n_{kind}", 0) + 1
        prof[f"in_{kind}"] = prof.get(f"in_{kind}", 0) + x.numel()
        prof[f"out_{kind}"] = prof.get(f"out_{kind}", 0) + out.numel()
        if isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            macs = out.numel() * (mod.in_channels // mod.groups) * kh * kw
        elif isinstance(mod, nn.Linear):
            macs = out.numel() * mod.in_features
        else:
            return
        prof[f"macs_{kind}"] = prof.get(f"macs_{kind}", 0) + macs

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            model.eval()(torch.zeros(*input_shape))
    finally:
        for h in handles:
            h.remove()
    prof["macs"] = fc.get_total_flops() // 2
    prof["params"] = sum(p.numel() for p in model.parameters())
    return prof


def check_profile(prof: dict[str, float]) -> None:
    """The per-kind MACs must add up to FlopCounterMode's total."""
    parts = sum(v for k, v in prof.items() if k.startswith("macs_"))
    if parts != prof["macs"]:
        raise AssertionError(f"per-kind MACs {parts} != FlopCounterMode MACs {prof['macs']}")


def count_macs_params(model: nn.Module, input_size: int) -> tuple[int, int]:
    """(MACs, parameters) of ``model`` for one ``input_size`` x ``input_size`` RGB image."""
    p = profile_module(model, (1, 3, input_size, input_size))
    return int(p["macs"]), int(p["params"])


def profile_network(space: str, arch: str | Sequence[str]) -> dict[str, float]:
    """:func:`profile_module` of the whole network for ``arch`` (``space``: nasbench201 | fbnet)."""
    build, _, size = SPACES[space]
    return profile_module(build(arch), (1, 3, size, size))


def _add(acc: dict[str, float], prof: dict[str, float], times: float = 1.0) -> None:
    for k, v in prof.items():
        acc[k] = acc.get(k, 0) + times * v


class CostTable:
    """Exact network profiles by composition, for whole spaces at once.

    A network's profile is the sum of the profiles of its parts, because every count in it is a sum
    over leaf operators. The table profiles each *part* on its real module at the shape it sees in
    the network (NAS-Bench-201: the skeleton without cells, and each op at each stage; FBNet: stem,
    head and classifier, and each of the 9 blocks at each of the 22 layers), then adds them up.
    ``profile_network`` on the whole module gives the same numbers (tests and the bench check this);
    the table is ~10^4 times faster, which is what makes counting all 20,625 networks cheap.
    """

    def __init__(self, space: str):
        if space not in SPACES:
            raise ValueError(f"unknown space {space!r}; known: {sorted(SPACES)}")
        self.space = space
        self.base: dict[str, float] = {}
        self.parts: dict[tuple[int, str], dict[str, float]] = {}
        if space == "nasbench201":
            _add(self.base, profile_module(NB201Network(NB201_OPS[:1] * 6, cells_per_stage=0), (1, 3, 32, 32)))
            for stage in range(3):
                c, r = 16 * 2 ** stage, 32 // 2 ** stage
                for op in NB201_OPS:
                    self.parts[(stage, op)] = profile_module(_nb201_op(op, c), (1, c, r, r))
        else:
            net = FBNetNetwork(("skip",) * 22)
            last = fbnet_layer_shapes()[-1]
            side = -(-last[3] // last[2])
            for mod, shape in ((net.stem, (1, 3, 224, 224)), (net.head, (1, FBNET_STAGES[-1][0], side, side)),
                               (net.pool, (1, FBNET_HEAD, side, side)), (net.classifier, (1, FBNET_HEAD))):
                _add(self.base, profile_module(mod, shape))
            for layer, (c_in, c_out, stride, side) in enumerate(fbnet_layer_shapes()):
                for b in FBNET_BLOCKS:
                    self.parts[(layer, b)] = profile_module(_fbnet_block(b, c_in, c_out, stride), (1, c_in, side, side))
        keys = set(self.base)
        for p in self.parts.values():
            keys |= set(p)
        self.keys: tuple[str, ...] = tuple(["macs", "params"] + sorted(keys - {"macs", "params"}))

    def profile(self, arch: str | Sequence[str]) -> dict[str, float]:
        acc = dict(self.base)
        if self.space == "nasbench201":
            ops = parse_nb201(arch) if isinstance(arch, str) else tuple(arch)
            for stage in range(3):
                for op in ops:
                    _add(acc, self.parts[(stage, op)], times=5)
        else:
            for layer, b in enumerate(parse_fbnet(arch)):
                _add(acc, self.parts[(layer, b)])
        return acc

    def matrix(self, archs: Sequence[str]) -> np.ndarray:
        """Profiles of ``archs`` as a float64 matrix, columns in ``self.keys`` order (vectorised)."""
        kidx = {k: i for i, k in enumerate(self.keys)}

        def vec(p: dict[str, float]) -> np.ndarray:
            v = np.zeros(len(self.keys))
            for k, x in p.items():
                v[kidx[k]] = x
            return v

        base = vec(self.base)
        if self.space == "nasbench201":
            # parts[stage, op] summed over stages, times 5 cells; then counts of each op over 6 edges
            per_op = np.stack([5 * sum(vec(self.parts[(s, op)]) for s in range(3)) for op in NB201_OPS])
            counts = np.stack([nb201_encoding(a).reshape(6, -1).sum(0) for a in archs])
            return base + counts @ per_op
        tab = np.stack([[vec(self.parts[(l, b)]) for b in FBNET_BLOCKS] for l in range(22)])  # (22, 9, K)
        onehot = np.stack([fbnet_encoding(a).reshape(22, -1) for a in archs])  # (N, 22, 9)
        return base + np.einsum("nlb,lbk->nk", onehot, tab)


SPACES = {
    "nasbench201": (build_nb201, nb201_encoding, 32),
    "fbnet": (build_fbnet, fbnet_encoding, 224),
}


# ----------------------------------------------------------------------------------------------
# Features for a whole space, and the cache of the whole-module path
# ----------------------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """``$EDGEVIT_NAS_FEATURE_CACHE`` or ``<tmp>/edgevit_nas_help_features``."""
    env = os.environ.get("EDGEVIT_NAS_FEATURE_CACHE")
    return Path(env) if env else Path(tempfile.gettempdir()) / "edgevit_nas_help_features"


_CACHE_VERSION = 2  # bump when a module or the counting changes


def _archs_digest(archs: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(archs).encode()).hexdigest()


def space_features(space: str, archs: Sequence[str], method: str = "table",
                   cache_dir: str | Path | None = None, verbose: bool = False) -> dict:
    """Cost profiles and encodings of ``archs``: ``{"keys", "profile" (N x K float64),
    "encoding" (N x E float32), "seconds"}``.

    ``method="table"``: :class:`CostTable` (exact, about a second for a whole space).
    ``method="module"``: :func:`profile_network` on every whole network (measured on this
    project's 2-core machine: 40-80 ms per NAS-Bench-201 network, 90-180 ms per FBNet network,
    i.e. 10-20 minutes per space); the result is cached in
    ``cache_dir`` (default :func:`default_cache_dir`) as ``<space>_v2.npz`` keyed by a digest of
    ``archs``. ``seconds`` is the time it took to count (0.0 when read from the cache).
    """
    archs = list(archs)
    encode = SPACES[space][1]
    enc = np.stack([encode(a) for a in archs]).astype(np.float32)
    t0 = time.perf_counter()
    if method == "table":
        table = CostTable(space)
        return {"keys": table.keys, "profile": table.matrix(archs), "encoding": enc,
                "seconds": time.perf_counter() - t0}
    if method != "module":
        raise ValueError(f"method must be 'table' or 'module', not {method!r}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / f"{space}_v{_CACHE_VERSION}.npz"
    digest = _archs_digest(archs)
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            if str(z["digest"]) == digest:
                return {"keys": tuple(str(k) for k in z["keys"]), "profile": z["profile"],
                        "encoding": enc, "seconds": 0.0}
    profs = []
    for i, a in enumerate(archs):
        profs.append(profile_network(space, a))
        if verbose and (i + 1) % 1000 == 0:
            print(f"[features] {space}: {i + 1}/{len(archs)} in {time.perf_counter() - t0:.0f} s", flush=True)
    keys = set()
    for p in profs:
        keys |= set(p)
    keys = tuple(["macs", "params"] + sorted(keys - {"macs", "params"}))
    mat = np.array([[p.get(k, 0) for k in keys] for p in profs], dtype=np.float64)
    dt = time.perf_counter() - t0
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, digest=np.array(digest), keys=np.array(keys), profile=mat, seconds=np.array(dt))
    os.replace(tmp, path)
    if verbose:
        print(f"[features] {space}: counted {len(archs)} whole networks in {dt:.1f} s; cached at {path}")
    return {"keys": keys, "profile": mat, "encoding": enc, "seconds": dt}
