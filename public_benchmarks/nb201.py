"""NAS-Bench-201 cells as real PyTorch modules: the arch-string parser, the network, the encoding.

NAS-Bench-201 is one of the two search spaces of the HELP latency benchmark (:mod:`.help`) and the
space of NAS-Bench-Suite-Zero's zero-cost scores (:mod:`.proxy_eval`). Building the real module is
what lets the project count its cost the way it counts EdgeViT's (:mod:`.profiling`) and score it
with the same proxies, so both public yardsticks check the project's own code paths.

CIFAR-10 macro skeleton, 32x32 input. Checked against HW-NAS-Bench's copy of the NAS-Bench-201 code
(GATECH-EIC/HW-NAS-Bench @6c67e04, hw_nas_bench_api/nas_201_models/cell_infers/cells.py; its
cell_operations.py read from a fork, Badar-e-Alam/Neural-Architecture-Search @ea569bd) and
NAS-Bench-201's TinyNetwork macro (layer_channels / layer_reductions, lastact): stem 3x3 conv
(3->16, no bias) + BN; three stages of N=5 cells at 16/32/64 channels with a ResNet basic block of
stride 2 between stages (ReLU-Conv3x3(s2)-BN, ReLU-Conv3x3-BN, shortcut AvgPool2x2(s2) + 1x1 conv
without BN); then BN, ReLU, global average pool, Linear(64, 10). A cell has 4 nodes; node j sums
op(node i) over i < j; the cell's output is node 3. Ops: ``none`` (x * 0), ``skip_connect``
(identity: inside a cell C_in == C_out and stride 1), ``nor_conv_1x1`` / ``nor_conv_3x3``
(ReLU-Conv(no bias)-BN), ``avg_pool_3x3`` (AvgPool 3x3, stride 1, padding 1,
count_include_pad=False). Arch strings list the edges as node1<-0 | node2<-0, 1 | node3<-0, 1, 2.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
import torch.nn as nn

__all__ = ["NB201_OPS", "NB201_EDGES", "parse_nb201", "format_nb201", "ReLUConvBN", "Zero", "nb201_op", "NB201Cell",
           "ResidualReduction", "NB201Network", "build_nb201", "nb201_encoding"]

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

    #: leaf-operator kind in cost profiles (:func:`public_benchmarks.profiling.profile_module`)
    cost_kind: ClassVar[str] = "zero"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def nb201_op(name: str, channels: int) -> nn.Module:
    """The module of one cell edge (an op of :data:`NB201_OPS` at ``channels``)."""
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
        self.edges = nn.ModuleList(nb201_op(o, channels) for o in self.op_names)

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
