"""EdgeViT (Pan et al., "EdgeViTs: Competing Light-weight CNNs on Mobile Devices with Vision
Transformers", ECCV 2022) built from any :class:`~search_space.config.EdgeViTConfig`.

Read top to bottom: the blocks named as in the paper (``LocalAgg``, ``GlobalSparseAttn`` with its
``LocalProp``), the attention half (``SelfAttn``), the ``LGLBlock`` that combines them, a stage, the
network, the timm default config and one ``@register_model`` function per released size.

Numerics follow the released code (saic-fi/edgevit, src/edgevit.py) so that parameter counts and
MACs match it exactly: LayerNorm eps 1e-5 after each patch embedding and after LocalProp, eps 1e-6
in the transformer half; biases everywhere; GELU; head = BatchNorm2d, global average pool, Linear.
Two deliberate equivalences: sparse sampling is strided slicing (the released AvgPool2d with kernel
1 and stride r computes exactly that) and attention is ``F.scaled_dot_product_attention`` (same
softmax(QK^T / sqrt(head_dim)) V, faster on CPU).

Dropout (``drop_rate``) sits where the released code puts it, so that a recipe tuned on it means the
same here: once after the first patch embedding (the released ``pos_drop``), inside every MLP --
LocalAgg's conv MLP and the transformer MLP, after the activation and after the second layer -- and
after the attention projection; none before the classifier. Checkpoints of the released code load
with :func:`search_space.official.load_official`.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, LayerNorm2d, Mlp, trunc_normal_, use_fused_attn
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from .config import STAGE_STRIDES, EdgeViTConfig, StageConfig
from .presets import PRESETS

__all__ = ["init_vit_weights", "LocalAgg", "LocalProp", "GlobalSparseAttn", "SelfAttn", "LGLBlock", "EdgeViTStage", "EdgeViT", "build_model"]


def init_vit_weights(m: nn.Module) -> None:
    """The ViT/DeiT initialisation the released code uses: truncated normal (std 0.02) for linear
    weights, zero biases, unit LayerNorms; convolutions keep PyTorch's default."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class LocalAgg(nn.Module):
    """Local aggregation: conditional position encoding, a depthwise-separable conv, a conv MLP.

    ``x += DW3x3(x); x += PW(DWk(PW(BN(x)))); x += PW(GELU(PW(BN(x))))``, no activation inside the
    aggregation branch, as released.
    """

    def __init__(self, dim: int, mlp_hidden: int, kernel_size: int = 5, drop_path: float = 0.0, drop: float = 0.0):
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.BatchNorm2d(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.conv_dw = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = Mlp(dim, mlp_hidden, act_layer=nn.GELU, drop=drop, use_conv=True)  # the released CMlp
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        x = x + self.drop_path(self.conv2(self.conv_dw(self.conv1(self.norm1(x)))))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class LocalProp(nn.ConvTranspose2d):
    """Local propagation: a depthwise transposed conv (kernel = stride = r) that spreads each
    attended token back over its r x r window."""

    def __init__(self, dim: int, sr_ratio: int):
        super().__init__(dim, dim, sr_ratio, stride=sr_ratio, groups=dim)


class GlobalSparseAttn(nn.Module):
    """Multi-head self-attention among one token per r x r window (all tokens when r = 1)."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int = 1, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.sr_ratio = sr_ratio
        self.scale = (dim // num_heads) ** -0.5
        # timm's switch: fused F.scaled_dot_product_attention, or the explicit matmuls of the
        # released code (which FLOP counters and some exporters see through).
        self.fused_attn = use_fused_attn()
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3)
        if sr_ratio > 1:
            self.local_prop = LocalProp(dim, sr_ratio)
            self.norm = nn.LayerNorm(dim, eps=1e-5)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        b, n, c = x.shape
        r = self.sr_ratio
        if r > 1:
            x = x.transpose(1, 2).reshape(b, c, height, width)[:, :, ::r, ::r]
            x = x.flatten(2).transpose(1, 2)
        qkv = self.qkv(x).reshape(b, -1, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        else:
            attn = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
            x = F.dropout(attn, self.attn_drop, self.training) @ v
        x = x.transpose(1, 2).reshape(b, -1, c)
        if r > 1:
            x = x.transpose(1, 2).reshape(b, c, height // r, width // r)
            x = self.local_prop(x).flatten(2).transpose(1, 2)
            x = self.norm(x)
        return self.proj_drop(self.proj(x))


class SelfAttn(nn.Module):
    """The transformer half of an LGL block: position encoding, sparse attention, MLP on tokens."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, sr_ratio: int = 1, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = GlobalSparseAttn(dim, num_heads, sr_ratio, attn_drop, drop)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_hidden, act_layer=nn.GELU, drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        t = t + self.drop_path(self.attn(self.norm1(t), h, w))
        t = t + self.drop_path(self.mlp(self.norm2(t)))
        return t.transpose(1, 2).reshape(b, c, h, w)


class LGLBlock(nn.Module):
    """Local-Global-Local block; ``kind`` selects the halves: ``lgl`` both, ``local`` or ``global`` one."""

    def __init__(self, kind: str, stage: StageConfig, drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.kind = kind
        dim, hidden = stage.width, stage.mlp_hidden
        self.local_agg = (LocalAgg(dim, hidden, stage.kernel_size, drop_path, drop) if kind in ("lgl", "local")
                          else nn.Identity())
        self.self_attn = (
            SelfAttn(dim, stage.heads, hidden, stage.sr_ratio, drop, attn_drop, drop_path)
            if kind in ("lgl", "global")
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.self_attn(self.local_agg(x))


class PatchEmbed(nn.Module):
    """Non-overlapping strided conv (kernel = stride) then LayerNorm over channels (eps 1e-5)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chs, out_chs, stride, stride=stride)
        self.norm = LayerNorm2d(out_chs, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class EdgeViTStage(nn.Module):
    """A patch embedding, then the stage's blocks; ``embed_drop`` is dropout right after the embedding
    (the released code's ``pos_drop``, used on the first stage only)."""

    def __init__(self, in_chs: int, stage: StageConfig, stride: int, drop_path: list[float], drop: float = 0.0,
                 attn_drop: float = 0.0, embed_drop: float = 0.0):
        super().__init__()
        self.downsample = PatchEmbed(in_chs, stage.width, stride)
        self.pos_drop = nn.Dropout(embed_drop) if embed_drop > 0 else nn.Identity()
        self.blocks = nn.Sequential(
            *[LGLBlock(kind, stage, drop, attn_drop, dp) for kind, dp in zip(stage.blocks, drop_path)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.pos_drop(self.downsample(x)))


class EdgeViT(nn.Module):
    """The network for one configuration. ``drop_path_rate`` grows linearly over all blocks
    (both halves of a block share the rate); the training recipe uses 0.1. ``drop_rate`` is dropout
    where the released code has it (module docstring), ``attn_drop_rate`` on the attention weights."""

    def __init__(self, cfg: EdgeViTConfig, in_chans: int = 3, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, num_classes: int | None = None, img_size: int | None = None):
        super().__init__()
        # timm's factory passes num_classes / img_size as keywords; they override the configuration.
        changes = {k: v for k, v in (("num_classes", num_classes), ("resolution", img_size)) if v is not None}
        cfg = cfg.replace(**changes) if changes else cfg
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        self.num_features = cfg.stages[-1].width
        dpr = torch.linspace(0, drop_path_rate, cfg.num_blocks).tolist() if cfg.num_blocks > 1 else [0.0]
        stages, cin, start = [], in_chans, 0
        for i, st in enumerate(cfg.stages):
            stride = STAGE_STRIDES[0] if i == 0 else 2
            stages.append(EdgeViTStage(cin, st, stride, dpr[start:start + st.depth], drop_rate, attn_drop_rate,
                                       embed_drop=drop_rate if i == 0 else 0.0))
            cin, start = st.width, start + st.depth
        self.stages = nn.Sequential(*stages)
        self.norm = nn.BatchNorm2d(self.num_features)
        self.head = nn.Linear(self.num_features, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self.apply(init_vit_weights)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return {"stem": r"^stages\.0\.downsample", "blocks": r"^stages\.(\d+)" if coarse else r"^stages\.(\d+)\.blocks\.(\d+)"}

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.cfg = self.cfg.replace(num_classes=num_classes)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.stages(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean((2, 3))  # no dropout before the classifier, as released
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_model(cfg: EdgeViTConfig, **kwargs: Any) -> EdgeViT:
    """The PyTorch model of ``cfg`` (``drop_path_rate``, ``drop_rate``, ``in_chans`` pass through)."""
    return EdgeViT(cfg, **kwargs)


# ---------------------------------------------------------------------------------------- timm
def _cfg(cfg: EdgeViTConfig, **kwargs: Any) -> dict[str, Any]:
    return {
        "num_classes": cfg.num_classes,
        "input_size": (3, cfg.resolution, cfg.resolution),
        "pool_size": (cfg.resolution // 32, cfg.resolution // 32),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": (0.485, 0.456, 0.406),  # ImageNet statistics, as timm's IMAGENET_DEFAULT_MEAN/STD
        "std": (0.229, 0.224, 0.225),
        "first_conv": "stages.0.downsample.proj",
        "classifier": "head",
        "license": "apache-2.0",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({name: _cfg(cfg) for name, cfg in PRESETS.items()})


def _create_edgevit(variant: str, cfg: EdgeViTConfig, pretrained: bool = False, **kwargs: Any) -> EdgeViT:
    if pretrained:
        raise ValueError(
            f"pretrained=True: no weights are bundled for {variant}; build with pretrained=False and load "
            "a checkpoint with timm's checkpoint_path"
        )
    return build_model_with_cfg(EdgeViT, variant, pretrained=False, model_cfg=cfg, **kwargs)


@register_model
def edgevit_xxs(pretrained: bool = False, **kwargs: Any) -> EdgeViT:
    return _create_edgevit("edgevit_xxs", PRESETS["edgevit_xxs"], pretrained, **kwargs)


@register_model
def edgevit_xs(pretrained: bool = False, **kwargs: Any) -> EdgeViT:
    return _create_edgevit("edgevit_xs", PRESETS["edgevit_xs"], pretrained, **kwargs)


@register_model
def edgevit_s(pretrained: bool = False, **kwargs: Any) -> EdgeViT:
    return _create_edgevit("edgevit_s", PRESETS["edgevit_s"], pretrained, **kwargs)
