"""nn-Meter's block types rebuilt in PyTorch, so a device can measure them as the phones did.

The phone tables (``device_farm/data/nnmeter``) hold block latencies measured with TFLite; to check
the phone model where no phone is (LiteRT on this CPU) and to give a new phone a table of its own,
the same blocks must run on the device. Each class here builds the layers of one block type as
nn-Meter's build scripts do (microsoft/nn-Meter @9c31e19, branch dev/hybrid-transformer,
``examples/test_transformer/build_lut/build_lut_modules.py``: ``first_conv_layer``, ``dsconv``,
``transformer_ds``, ``transformer_attn``, ``transformer_ffn``, ``mbpool_layer``; the attention and
MLP layers from the LeViT-style ``mhsa_with_multi_head_position_windows_layer_norm`` and
``res_mlp_block_layer_norm`` of the keras_cv_attention_models copy on that branch), with the same
input layout: an NHWC map (``[1, hw, hw, cin]``) for ``firstconv`` and ``conv``, tokens
(``[1, hw*hw, cin]``) for the transformer blocks and ``mbpool``. What differs, on purpose:

- BatchNorm after a convolution is a bias (what TFLite's converter folds it into);
- TF's ``SAME`` padding of a stride-2 convolution pads one row/column at the end; here it is an
  explicit asymmetric pad, the same output shape and arithmetic;
- the relative-position bias of the attention (a gather of learned values by fixed indices, folded
  to a constant by the converter) is a constant ``[heads, N, N]`` tensor.

Convolutions run on NCHW inside the module between two permutes of the NHWC input and output;
litert-torch's layout pass turns the graph to NHWC and cancels them (checked by
``tests/test_tflite.py``: a converted conv block holds no TRANSPOSE), so the .tflite file has
nn-Meter's operator sequence. :class:`BlockNetwork` makes a table key a
:class:`search_space.networks.Network`, which the farm exports and measures like any candidate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from search_space.networks import spec_id

from .blocks import NNMETER_HEAD_DIM, BlockSpec, parse_key

__all__ = ["BLOCK_SPEC_PREFIX", "BlockNetwork", "NullNetwork", "WeightStreamNetwork", "build_block", "block_input_shape"]

#: Spec prefix of a measured block (``nnmeter:<table key>``); its id is :func:`spec_id` of the spec.
BLOCK_SPEC_PREFIX = "nnmeter:"
#: Classes of nn-Meter's classifier (build_lut_modules.py mbpool_layer: Dense(1000)).
_CLASSES = 1000


def _same_pad(k: int, s: int, size: int) -> tuple[int, int]:
    """TF's SAME padding (before, after) of one spatial side."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class _ConvSame(nn.Module):
    """Conv2d with TF SAME padding; bias stands for the folded BatchNorm."""

    def __init__(self, cin: int, cout: int, k: int, s: int, size: int, groups: int = 1, bias: bool = True):
        super().__init__()
        lo, hi = _same_pad(k, s, size)
        self.pad = (lo, hi, lo, hi) if lo != hi else None
        self.conv = nn.Conv2d(cin, cout, k, s, padding=0 if self.pad else lo, groups=groups, bias=bias)

    def forward(self, x):
        if self.pad is not None:
            x = F.pad(x, self.pad)
        return self.conv(x)


class _DSConv(nn.Module):
    """nn-Meter's ``dsconv`` (MBConv) on an NCHW map: expand, depthwise, optional SE, project, shortcut."""

    def __init__(self, hw: int, cin: int, cout: int, e: float, s: int, k: int, se: bool):
        super().__init__()
        mid = int(cin * e)
        self.expand = _ConvSame(cin, mid, 1, 1, hw) if e > 1 else None
        self.dw = _ConvSame(mid, mid, k, s, hw, groups=mid)
        self.se = se
        if se:
            self.se1 = nn.Conv2d(mid, mid // 4, 1)
            self.se2 = nn.Conv2d(mid // 4, mid, 1)
        self.project = _ConvSame(mid, cout, 1, 1, -(-hw // s))
        self.residual = s == 1 and cin == cout
        self.shortcut = None
        if cin != cout:
            self.pool_pad = hw % 2 if s == 2 else 0
            self.pool = nn.AvgPool2d(2) if s == 2 else None
            self.shortcut = nn.Conv2d(cin, cout, 1, bias=False)
        self.act = nn.Hardswish()

    def forward(self, x):
        y = self.act(self.expand(x)) if self.expand is not None else x
        y = self.act(self.dw(y))
        if self.se:
            w = y.mean(dim=(2, 3), keepdim=True)
            w = F.relu(self.se1(w))
            w = F.relu6(self.se2(w) + 3.0) / 6.0
            y = w * y
        y = self.project(y)
        if self.residual:
            y = y + x
        if self.shortcut is not None:
            z = x
            if self.pool is not None:
                if self.pool_pad:
                    z = F.pad(z, (1, 1, 1, 1))
                z = self.pool(z)
            y = y + self.shortcut(z)
        return y


class _NHWC(nn.Module):
    """Runs an NCHW module on an NHWC map ([1, h, w, c] in and out), as the Keras block does."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):
        return self.body(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class _Tokens2Map(nn.Module):
    """Tokens [1, hw*hw, c] -> NHWC map -> an NCHW body -> tokens, as nn-Meter's ``tf.reshape``s do."""

    def __init__(self, hw: int, body: nn.Module):
        super().__init__()
        self.hw, self.body = hw, body

    def forward(self, x):
        b, n, c = x.shape
        y = self.body(x.reshape(b, self.hw, self.hw, c).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return y.reshape(b, -1, y.shape[-1])


class _FirstConv(nn.Module):
    def __init__(self, hw: int, cin: int, cout: int, s: int, k: int):
        super().__init__()
        self.conv = _ConvSame(cin, cout, k, s, hw)
        self.act = nn.Hardswish()

    def forward(self, x):
        return self.act(self.conv(x))


class _TransAttn(nn.Module):
    """LeViT-style attention of nn-Meter's ``transformer_attn`` (layer-norm variant); no residual add.
    ``heads``: 0 for nn-Meter's C/16 heads of dim 16; else that many heads of dim C/heads (a key's ``_h``);
    ``pos_bias``: False for a key's ``_nopos`` (EdgeViT's attention has no position bias)."""

    def __init__(self, hw: int, c: int, v_scale: float, heads: int = 0, pos_bias: bool = True):
        super().__init__()
        d = c // heads if heads else NNMETER_HEAD_DIM
        self.heads = heads or max(c // d, 1)
        self.d, self.vd = d, int(d * v_scale)
        self.n = hw * hw
        self.norm = nn.LayerNorm(c, eps=1e-5)
        self.qkv = nn.Linear(c, self.heads * (2 * d + self.vd), bias=False)
        # nn-Meter's relative-position bias: a constant [heads, N, N] added to the scores (``_nopos``: none)
        self.register_buffer("pos", torch.randn(self.heads, self.n, self.n) * 0.02 if pos_bias else None)
        self.out = nn.Linear(self.heads * self.vd, c, bias=False)
        self.act = nn.Hardswish()

    def forward(self, x):
        b, n, _ = x.shape
        qkv = self.act(self.qkv(self.norm(x))).reshape(b, n, self.heads, -1).transpose(1, 2)
        q, k, v = torch.split(qkv, [self.d, self.d, self.vd], dim=-1)
        a = (q @ k.transpose(-2, -1)) / math.sqrt(self.d)
        if self.pos is not None:
            a = a + self.pos
        y = a.softmax(dim=-1) @ v
        y = self.act(y.transpose(1, 2).reshape(b, n, self.heads * self.vd))
        return self.out(y)


class _TransFFN(nn.Module):
    """``res_mlp_block_layer_norm``: LN, Linear, h-swish, Linear, add (to the normalised input, as there)."""

    def __init__(self, c: int, e: float):
        super().__init__()
        self.norm = nn.LayerNorm(c, eps=1e-5)
        self.fc1 = nn.Linear(c, int(c * e), bias=False)
        self.fc2 = nn.Linear(int(c * e), c, bias=False)
        self.act = nn.Hardswish()

    def forward(self, x):
        x = self.norm(x)
        return x + self.fc2(self.act(self.fc1(x)))


class _MBPool(nn.Module):
    """``mbpool_layer``: 1x1 expand + h-swish, global pool, 1x1 to ``cout`` (no bias), classifier."""

    def __init__(self, cin: int, cout: int, e: float):
        super().__init__()
        mid = int(cin * e)
        self.expand = nn.Conv2d(cin, mid, 1)
        self.act = nn.Hardswish()
        self.head = nn.Conv2d(mid, cout, 1, bias=False)
        self.classifier = nn.Linear(cout, _CLASSES)

    def forward(self, x):  # NCHW
        y = self.act(self.expand(x)).mean(dim=(2, 3), keepdim=True)
        y = self.head(y).permute(0, 2, 3, 1)  # [1, 1, 1, cout] as the Keras graph keeps it
        return self.classifier(y)


def build_block(spec: BlockSpec | str) -> nn.Module:
    """The eval-mode PyTorch module of one nn-Meter block (a spec or a table key), input as :func:`block_input_shape`."""
    s = parse_key(spec) if isinstance(spec, str) else spec
    if s.type == "firstconv":
        m: nn.Module = _NHWC(_FirstConv(s.hw, s.cin, s.cout, s.stride, s.kernel))
    elif s.type == "conv":
        m = _NHWC(_DSConv(s.hw, s.cin, s.cout, s.expansion, s.stride, s.kernel, s.se))
    elif s.type == "transds":
        m = _Tokens2Map(s.hw, _DSConv(s.hw, s.cin, s.cout, s.expansion, s.stride, 3, True))
    elif s.type == "transattn":
        m = _TransAttn(s.hw, s.cin, s.v_scale, s.heads, s.pos_bias)
    elif s.type == "transffn":
        m = _TransFFN(s.cin, s.expansion)
    elif s.type == "mbpool":
        m = _MBPoolTokens(s.hw, _MBPool(s.cin, s.cout, s.expansion))
    else:  # parse_key admits only the types above
        raise ValueError(f"type={s.type!r}: no PyTorch block")
    return m.eval()


class _MBPoolTokens(nn.Module):
    """Tokens [1, hw*hw, c] -> NCHW map -> :class:`_MBPool` (whose output is the classifier's, not a map)."""

    def __init__(self, hw: int, body: _MBPool):
        super().__init__()
        self.hw, self.body = hw, body

    def forward(self, x):
        b, n, c = x.shape
        return self.body(x.reshape(b, self.hw, self.hw, c).permute(0, 3, 1, 2))


def block_input_shape(spec: BlockSpec | str) -> tuple[int, ...]:
    """The block's input as nn-Meter built it: NHWC for firstconv/conv, tokens for the others."""
    s = parse_key(spec) if isinstance(spec, str) else spec
    if s.type in ("firstconv", "conv"):
        return (1, s.hw, s.hw, s.cin)
    return (1, s.hw * s.hw, s.cin)


@dataclass(frozen=True)
class BlockNetwork:
    """One table key as a :class:`search_space.networks.Network` (spec ``nnmeter:<key>``)."""

    key: str

    def __post_init__(self) -> None:
        parse_key(self.key)  # one-line KeyFormatError for a key of no block type

    @property
    def spec(self) -> str:
        return BLOCK_SPEC_PREFIX + self.key

    @property
    def arch_id(self) -> str:
        return spec_id(self.spec)

    @property
    def name(self) -> str:
        return self.key

    @property
    def input_shape(self) -> tuple[int, ...]:
        return block_input_shape(self.key)

    def config_dict(self) -> None:
        return None

    def build(self, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return build_block(self.key)


class NullBlock(nn.Module):
    """One element-wise add on a [1, 1, 8] tensor: a model whose latency is the runtime's per-call overhead."""

    def forward(self, x):
        return x + 1.0


@dataclass(frozen=True)
class NullNetwork:
    """:class:`NullBlock` as a :class:`search_space.networks.Network`: the per-invoke overhead a
    block table subtracts (a network pays it once, a sum of blocks once per block)."""

    @property
    def spec(self) -> str:
        return BLOCK_SPEC_PREFIX + "null"

    @property
    def arch_id(self) -> str:
        return spec_id(self.spec)

    @property
    def name(self) -> str:
        return "null"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, 1, 8)

    def config_dict(self) -> None:
        return None

    def build(self, seed: int = 0) -> nn.Module:
        return NullBlock().eval()


class _LinearChain(nn.Module):
    """``depth`` Linear(width, width) layers on tokens, each with its own weights (no activation: the
    layers' weights are the only thing that grows with depth)."""

    def __init__(self, depth: int, width: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


@dataclass(frozen=True)
class WeightStreamNetwork:
    """A chain of ``depth`` Linear(width, width) layers on ``tokens`` tokens, every layer its own weights.

    Why: a block table times each block alone, run after run, so a block's weights stay in the
    core's caches; inside a whole network every block's weights are fetched again on each run once
    the network's weights exceed the caches. Two chains, one short enough that its weights stay
    cached and one long enough that they cannot, measure that cost per byte on the device itself
    (:func:`~.device_table.measure_weight_traffic`), with nothing fitted on whole networks.
    """

    depth: int
    width: int = 256
    tokens: int = 16

    def __post_init__(self) -> None:
        for name in ("depth", "width", "tokens"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"WeightStreamNetwork.{name}={v!r}: allowed: a positive integer")

    @property
    def weight_mb(self) -> float:
        """fp32 weights and biases of the chain, in MB (10^6 bytes)."""
        return self.depth * (self.width * self.width + self.width) * 4 / 1e6

    @property
    def spec(self) -> str:
        return f"{BLOCK_SPEC_PREFIX}weightstream_{self.depth}_{self.width}_{self.tokens}"

    @property
    def arch_id(self) -> str:
        return spec_id(self.spec)

    @property
    def name(self) -> str:
        return f"weightstream_{self.depth}x{self.width}"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, self.tokens, self.width)

    def config_dict(self) -> None:
        return None

    def build(self, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return _LinearChain(self.depth, self.width).eval()
