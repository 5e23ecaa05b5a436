"""FBNet-space networks as real PyTorch modules: the arch parser, the network, the encoding.

FBNet is the second search space of the HELP latency benchmark (:mod:`.help`); building the real
module lets the project count its cost on the module, as it does for EdgeViT (:mod:`.profiling`).

ImageNet, 224x224: the FBNet paper's Table 1 (Wu et al., CVPR 2019) as HW-NAS-Bench builds it for
ImageNet (GATECH-EIC/HW-NAS-Bench @6c67e04, hw_nas_bench_api/fbnet_models/model_infer.py, "FBNetv1
setting"): stem 3x3 conv stride 2 to 16 channels + BN + ReLU; 22 searchable layers in stages
(channels, layers, stride) = (16,1,1), (24,4,2), (32,4,2), (64,4,2), (112,4,1), (184,4,2), (352,1,1),
the stride on a stage's first layer; a 1x1 conv to 1984 + BN + ReLU; global average pool;
Linear(1984, 1000). Block ``kK_eE[_g2]``: 1x1 conv (groups 2 when ``_g2``) expanding by E + BN +
ReLU, channel shuffle when grouped (after the expansion, where HW-NAS-Bench places it), KxK
depthwise conv with the layer's stride + BN + ReLU, 1x1 conv (same groups) projecting + BN,
residual add when C_in == C_out and stride 1. Padding ceil((K - stride) / 2), i.e. 1 for K=3 and 2
for K=5, so the output side is ceil(input / stride). ``skip``: identity, or 1x1 conv (with the
stride) + BN + ReLU where the shape changes.
"""
from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
import torch.nn as nn

__all__ = ["FBNET_BLOCKS", "FBNET_STAGES", "FBNET_STEM", "FBNET_HEAD", "parse_fbnet", "format_fbnet",
           "fbnet_layer_shapes", "ChannelShuffle", "MBConv", "FBNetSkip", "fbnet_block", "FBNetNetwork", "build_fbnet",
           "fbnet_encoding"]

#: Block vocabulary in the order used by the one-hot encoding (HW-NAS-Bench's PRIMITIVES order).
FBNET_BLOCKS: tuple[str, ...] = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")
#: (channels, layers, stride of the first layer) per stage, FBNet paper Table 1 (ImageNet).
FBNET_STAGES: tuple[tuple[int, int, int], ...] = (
    (16, 1, 1), (24, 4, 2), (32, 4, 2), (64, 4, 2), (112, 4, 1), (184, 4, 2), (352, 1, 1))
#: stem and head widths, FBNet paper Table 1
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
    """Interleave the channels of ``groups`` groups (after a grouped 1x1 expansion)."""

    #: leaf-operator kind in cost profiles (:func:`public_benchmarks.profiling.profile_module`)
    cost_kind: ClassVar[str] = "shuffle"

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


def fbnet_block(name: str, c_in: int, c_out: int, stride: int) -> nn.Module:
    """The module of one searchable layer (a block of :data:`FBNET_BLOCKS`)."""
    if name == "skip":
        return FBNetSkip(c_in, c_out, stride)
    if name not in FBNET_BLOCKS:
        raise ValueError(f"unknown FBNet block {name!r}; allowed: {FBNET_BLOCKS}")
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
            fbnet_block(b, c_in, c_out, stride)
            for b, (c_in, c_out, stride, _) in zip(self.block_names, fbnet_layer_shapes(self.input_size))
        ))
        self.head = _conv_bn(FBNET_STAGES[-1][0], FBNET_HEAD, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(FBNET_HEAD, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.layers(self.stem(x)))
        return self.classifier(self.pool(x).flatten(1))


def build_fbnet(arch: str | Sequence[str], num_classes: int = 1000) -> FBNetNetwork:
    """Network for an arch (the data files' list literal, or a sequence of 22 block names)."""
    return FBNetNetwork(parse_fbnet(arch), num_classes=num_classes)


def fbnet_encoding(arch: str | Sequence[str]) -> np.ndarray:
    """One-hot block choice per layer: 22 layers x 9 choices = 198 values (layer-major)."""
    blocks = parse_fbnet(arch)
    enc = np.zeros((len(blocks), len(FBNET_BLOCKS)), dtype=np.float32)
    for i, b in enumerate(blocks):
        enc[i, FBNET_BLOCKS.index(b)] = 1.0
    return enc.ravel()
