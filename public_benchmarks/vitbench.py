"""ViT-Bench-101: load the records and build every network as a real PyTorch module.

Data (shipped in ``public_benchmarks/data/vit-bench-101/``, read through :mod:`public_benchmarks.data`;
Apache-2.0, from lilujunai/Auto-Prox-AAAI24 @90ed458 ``gt_results/*.pth`` converted to JSON; sources
and hashes in its PROVENANCE.md): three files, each a JSON list of 100 records
``{"arch": {...}, "<metric>_acc": float | null, ...}``.

* ``autoformer`` / ``autoformer_2`` (AutoFormer-Ti space): ``arch = {"hidden_dim": 192|216|240,
  "depth": 12|13|14, "mlp_ratio": [3.5|4.0] * depth, "num_heads": [3|4] * depth}``.
* ``pit`` (PiT-Ti space): ``arch = {"base_dim": 16|24|32|40 (channels per head), "mlp_ratio":
  2|4|6|8 (shared by all blocks), "depth": [d1, d2, d3] (d1 in 1..3, d2 in 4,6,8, d3 in 2,4,6),
  "num_heads": [h1, h2, h3] (each 2|4|8, non-decreasing)}``; stage width ``base_dim * heads[i]``.

Accuracy keys of :attr:`VitBenchRecord.acc` (top-1 in percent; a key is absent when the source
value is null, e.g. ``autoformer_2`` has no non-distilled numbers):

=====================  ==========================  ===========================================
key                    source field                meaning
=====================  ==========================  ===========================================
``cifar100``           ``c100_base_acc``           trained from scratch on CIFAR-100
``cifar100_distill``   ``c100_kd_acc``             same, with knowledge distillation
``flowers``            ``flower_base_acc``         Oxford Flowers-102
``flowers_distill``    ``flower_kd_acc``           Flowers-102 with distillation
``chaoyang``           ``chaoyang_base_acc``       Chaoyang (pathology, 4 classes)
``chaoyang_distill``   ``chaoyang_kd_acc``         Chaoyang with distillation
``imagenet_supernet``  ``imagenet_super_acc``      AutoFormer files only; ImageNet top-1 of the
                                                   subnet (by its name, with weights inherited
                                                   from a supernet; the source does not say more)
=====================  ==========================  ===========================================

The distillation in Auto-Prox's ``*_kd.yaml`` configs is intermediate-feature distillation
(``DISTILLATION.ENABLE_INTER``, linear transform, L2, weight 2.5) from a ResNet-56 teacher run on
32x32 inputs; it adds no distillation token to the student, so one builder serves both variants.

Macro-architecture (read from Auto-Prox ``pycls/models/auto/{autoformer_subnet,pit_subnet,common,
base}.py`` and ``pycls/core/config.py``; re-implemented here):

* input 224x224 (``MODEL.IMG_SIZE = 224``; the patch embedding asserts that size), 3 channels;
* LayerNorm eps 1e-6, GELU MLP with ``int(dim * mlp_ratio)`` hidden units, qkv bias on,
  attention head dim ``dim // num_heads`` (the qkv projection is ``dim -> 3*dim``: unlike the
  original AutoFormer supernet there is no fixed 64-wide head), pre-norm residual blocks,
  stochastic depth rising linearly to ``drop_path_rate`` (0.1 in the training configs);
* AutoFormer: 16x16 non-overlapping patch conv, class token, learned positional embedding of
  ``196 + 1`` tokens, final LayerNorm, classifier on the **mean of all tokens after the class
  token** (Auto-Prox's choice; ``pool="cls"`` gives the usual class-token head);
* PiT: 16x16 conv patch embedding with stride 8 (224 -> 27x27 map), learned 2-D positional
  embedding, class token; between stages a depthwise conv (kernel 3, stride 2, padding 1,
  ``groups = in_channels``, widening to the next stage width) on the map and a linear layer on the
  class token (27 -> 14 -> 7); final LayerNorm on the class token, linear head.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_

from search_space.model import init_vit_weights

from .data import data_path, read_json

__all__ = [
    "ACC_KEYS", "SPACES", "VitBenchRecord", "vitbench_dir", "load_vitbench",
    "Attention", "Block", "AutoFormerNet", "PiTNet",
    "build_autoformer", "build_pit", "build_vitbench", "count_params",
]

#: source field -> key in :attr:`VitBenchRecord.acc`
ACC_KEYS: dict[str, str] = {
    "c100_base_acc": "cifar100",
    "c100_kd_acc": "cifar100_distill",
    "flower_base_acc": "flowers",
    "flower_kd_acc": "flowers_distill",
    "chaoyang_base_acc": "chaoyang",
    "chaoyang_kd_acc": "chaoyang_distill",
    "imagenet_super_acc": "imagenet_supernet",
}
#: benchmark name -> (file name, search space)
SPACES: dict[str, tuple[str, str]] = {
    "autoformer": ("gt_autoformer.json", "autoformer"),
    "autoformer_2": ("gt_autoformer_2.json", "autoformer"),
    "pit": ("gt_pit.json", "pit"),
}
#: classes of the data sets the benchmark trained on
NUM_CLASSES = {"cifar100": 100, "flowers": 102, "chaoyang": 4, "imagenet": 1000}

IMG_SIZE = 224
LN_EPS = 1e-6


# --------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class VitBenchRecord:
    """One ViT-Bench-101 network: ``index`` is its position in the source file."""

    name: str                      # "autoformer" | "autoformer_2" | "pit"
    index: int
    arch: dict[str, Any]
    acc: dict[str, float] = field(default_factory=dict)

    @property
    def space(self) -> str:
        return SPACES[self.name][1]


def vitbench_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The ViT-Bench-101 folder: ``vit-bench-101/`` of ``data_dir`` (a folder with the layout of the
    shipped data), else of ``$EDGEVIT_NAS_SHARED_DATA``, else of the shipped data
    (:func:`public_benchmarks.data.data_path`)."""
    return data_path("vit-bench-101", root=data_dir)


def _check_arch(space: str, arch: dict[str, Any]) -> dict[str, Any]:
    if space == "autoformer":
        d = int(arch["depth"])
        a = {"hidden_dim": int(arch["hidden_dim"]), "depth": d,
             "mlp_ratio": [float(r) for r in arch["mlp_ratio"]],
             "num_heads": [int(h) for h in arch["num_heads"]]}
        if len(a["mlp_ratio"]) != d or len(a["num_heads"]) != d:
            raise ValueError(f"per-layer lists do not match depth {d}: {arch}")
        if any(a["hidden_dim"] % h for h in a["num_heads"]):
            raise ValueError(f"hidden_dim not divisible by heads: {arch}")
    else:
        a = {"base_dim": int(arch["base_dim"]), "mlp_ratio": float(arch["mlp_ratio"]),
             "depth": [int(x) for x in arch["depth"]], "num_heads": [int(h) for h in arch["num_heads"]]}
        if len(a["depth"]) != len(a["num_heads"]) or not a["depth"]:
            raise ValueError(f"depth/num_heads stage counts differ: {arch}")
        h = a["num_heads"]
        if any(h[i + 1] % h[i] for i in range(len(h) - 1)):
            # the depthwise pooling conv needs out_channels divisible by in_channels
            raise ValueError(f"PiT heads must grow by integer factors: {arch}")
    return a


def load_vitbench(name: str, data_dir: str | os.PathLike | None = None) -> list[VitBenchRecord]:
    """All records of ``name`` in {"autoformer", "autoformer_2", "pit"}, in file order (``data_dir``:
    a folder with the layout of the shipped data, as for :func:`vitbench_dir`)."""
    if name not in SPACES:
        raise ValueError(f"unknown ViT-Bench-101 file {name!r}; expected one of {sorted(SPACES)}")
    fname, space = SPACES[name]
    raw = read_json("vit-bench-101", fname, root=data_dir)
    path = f"vit-bench-101/{fname}"
    if not isinstance(raw, list):
        raise ValueError(f"{path}: expected a JSON list of records")
    out = []
    for i, r in enumerate(raw):
        unknown = set(r) - set(ACC_KEYS) - {"arch"}
        if unknown:
            raise ValueError(f"{path}[{i}]: unexpected fields {sorted(unknown)}")
        acc = {ACC_KEYS[k]: float(v) for k, v in r.items() if k in ACC_KEYS and v is not None}
        out.append(VitBenchRecord(name=name, index=i, arch=_check_arch(space, r["arch"]), acc=acc))
    return out


# ------------------------------------------------------------------------------------ modules


class Attention(nn.Module):
    """Multi-head self-attention whose heads split ``dim`` (head dim ``dim // num_heads``)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.fused_attn = True   # False: explicit matmuls (so FLOP counters see them)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        p = self.attn_drop if self.training else 0.0
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        else:
            a = (q * self.scale) @ k.transpose(-2, -1)
            a = F.dropout(a.softmax(dim=-1), p=p, training=self.training)
            x = a @ v
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


class Block(nn.Module):
    """Pre-norm transformer layer: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class AutoFormerNet(nn.Module):
    """Single-stage ViT with per-layer ``num_heads`` and ``mlp_ratio`` (one AutoFormer subnet)."""

    def __init__(self, hidden_dim: int, num_heads: Sequence[int], mlp_ratio: Sequence[float],
                 num_classes: int = 100, img_size: int = IMG_SIZE, patch_size: int = 16,
                 in_chans: int = 3, pool: str = "mean", qkv_bias: bool = True,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1):
        super().__init__()
        if len(num_heads) != len(mlp_ratio):
            raise ValueError("num_heads and mlp_ratio need one entry per layer")
        if pool not in ("mean", "cls"):
            raise ValueError(f"pool must be 'mean' or 'cls', not {pool!r}")
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} not a multiple of patch_size {patch_size}")
        depth = len(num_heads)
        self.img_size, self.patch_size, self.pool = img_size, patch_size, pool
        self.embed_dim = hidden_dim
        self.num_patches = (img_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(in_chans, hidden_dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, hidden_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = torch.linspace(0, drop_path_rate, depth).tolist() if depth > 1 else [0.0]
        self.blocks = nn.Sequential(*[
            Block(hidden_dim, int(num_heads[i]), float(mlp_ratio[i]), qkv_bias,
                  drop_rate, attn_drop_rate, dpr[i]) for i in range(depth)])
        self.norm = nn.LayerNorm(hidden_dim, eps=LN_EPS)
        self.head = nn.Linear(hidden_dim, num_classes) if num_classes > 0 else nn.Identity()
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        self.apply(init_vit_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.blocks(self.pos_drop(x + self.pos_embed))
        x = self.norm(x)
        return x[:, 1:].mean(dim=1) if self.pool == "mean" else x[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


class _PiTPool(nn.Module):
    """Halve the map with a depthwise strided conv (widening channels); map the class token by a linear."""

    def __init__(self, in_dim: int, out_dim: int, stride: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, kernel_size=stride + 1, stride=stride,
                              padding=stride // 2, groups=in_dim)
        self.fc = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor, cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.conv(x), self.fc(cls)


class _PiTStage(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float, qkv_bias: bool,
                 drop: float, attn_drop: float, dpr: Sequence[float]):
        super().__init__()
        self.blocks = nn.Sequential(*[
            Block(dim, num_heads, mlp_ratio, qkv_bias, drop, attn_drop, dpr[i]) for i in range(depth)])

    def forward(self, x: torch.Tensor, cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        t = cls.shape[1]
        y = self.blocks(torch.cat([cls, x.flatten(2).transpose(1, 2)], dim=1))
        return y[:, t:].transpose(1, 2).reshape(b, c, h, w), y[:, :t]


class PiTNet(nn.Module):
    """Pooling-based ViT: stages of width ``base_dim * num_heads[i]`` joined by strided depthwise convs."""

    def __init__(self, base_dim: int, depth: Sequence[int], num_heads: Sequence[int], mlp_ratio: float,
                 num_classes: int = 100, img_size: int = IMG_SIZE, patch_size: int = 16, stride: int = 8,
                 in_chans: int = 3, qkv_bias: bool = True, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1):
        super().__init__()
        if len(depth) != len(num_heads):
            raise ValueError("depth and num_heads need one entry per stage")
        self.img_size, self.patch_size, self.stride = img_size, patch_size, stride
        dims = [base_dim * h for h in num_heads]
        self.dims = dims
        self.embed_dim = dims[-1]
        side = math.floor((img_size - patch_size) / stride + 1)
        self.patch_embed = nn.Conv2d(in_chans, dims[0], kernel_size=patch_size, stride=stride)
        self.pos_embed = nn.Parameter(torch.zeros(1, dims[0], side, side))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dims[0]))
        self.pos_drop = nn.Dropout(drop_rate)
        total = sum(depth)
        dpr = [drop_path_rate * i / total for i in range(total)]
        self.stages, self.pools = nn.ModuleList(), nn.ModuleList()
        start = 0
        for s, d in enumerate(depth):
            self.stages.append(_PiTStage(dims[s], int(d), int(num_heads[s]), float(mlp_ratio), qkv_bias,
                                         drop_rate, attn_drop_rate, dpr[start:start + d]))
            start += d
            if s < len(depth) - 1:
                self.pools.append(_PiTPool(dims[s], dims[s + 1], stride=2))
        self.norm = nn.LayerNorm(dims[-1], eps=LN_EPS)
        self.head = nn.Linear(dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        # Auto-Prox/PiT keep PyTorch's default init for Linear/Conv and reset only LayerNorm.
        for m in self.modules():
            if isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pos_drop(self.patch_embed(x) + self.pos_embed)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        for s, stage in enumerate(self.stages):
            x, cls = stage(x, cls)
            if s < len(self.pools):
                x, cls = self.pools[s](x, cls)
        return self.norm(cls)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


# ----------------------------------------------------------------------------------- builders


def build_autoformer(arch: dict[str, Any], num_classes: int = 100, img_size: int = IMG_SIZE,
                     patch_size: int = 16, **kwargs: Any) -> AutoFormerNet:
    """AutoFormer subnet from ``{"hidden_dim", "depth", "mlp_ratio": [...], "num_heads": [...]}``.

    ``kwargs`` go to :class:`AutoFormerNet` (``pool``, ``drop_path_rate``, ``qkv_bias`` ...).
    """
    a = _check_arch("autoformer", arch)
    return AutoFormerNet(a["hidden_dim"], a["num_heads"], a["mlp_ratio"], num_classes=num_classes,
                         img_size=img_size, patch_size=patch_size, **kwargs)


def build_pit(arch: dict[str, Any], num_classes: int = 100, img_size: int = IMG_SIZE,
              patch_size: int = 16, stride: int = 8, **kwargs: Any) -> PiTNet:
    """PiT subnet from ``{"base_dim", "mlp_ratio", "depth": [...], "num_heads": [...]}``."""
    a = _check_arch("pit", arch)
    return PiTNet(a["base_dim"], a["depth"], a["num_heads"], a["mlp_ratio"], num_classes=num_classes,
                  img_size=img_size, patch_size=patch_size, stride=stride, **kwargs)


def build_vitbench(name: str, record: VitBenchRecord | dict[str, Any], num_classes: int = 100,
                   **kwargs: Any) -> nn.Module:
    """Build a record (or a bare arch dict) of benchmark ``name`` ("autoformer", "autoformer_2", "pit")."""
    if name not in SPACES:
        raise ValueError(f"unknown ViT-Bench-101 file {name!r}")
    arch = record.arch if isinstance(record, VitBenchRecord) else record
    build = build_pit if SPACES[name][1] == "pit" else build_autoformer
    return build(arch, num_classes=num_classes, **kwargs)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
