"""nn-Meter's measured blocks: key format, shapes, and the work each block does.

Data: ``device_farm/data/nnmeter/{xiaomi11,pixel4,pixel1}_lut_ln_v3.json.gz``, 12,116 block latencies
per phone in ms, TFLite fp32 on the phone CPU (microsoft/nn-Meter @9c31e19, branch
dev/hybrid-transformer, ``nn_meter/predictor/transformer_predictor/lut/``, MIT; see PROVENANCE.md
there). What each block contains was read from the
branch's build scripts (``examples/test_transformer/build_lut/build_lut.py`` and
``build_lut_modules.py``, and the LeViT-style layers they import):

- ``firstconv_{hw}_{cin}_{cout}_{s}_{k}``: dense k x k conv, stride s, BN (folded), h-swish.
- ``conv_{hw}_{cin}_{cout}_{e}_{s}_{act}_{k}_{se|nose}``: MBConv: 1x1 expand to e*cin (absent for
  e = 1), depthwise k x k stride s, optional squeeze-excite, 1x1 project; residual add when s = 1 and
  cin = cout, a 1x1 shortcut conv (after 2x2 average pooling when s = 2) when cin != cout.
- ``transds_{hw}_{cin}_{cout}_{s}_{e}``: the same MBConv with k = 3 and squeeze-excite, on tokens.
- ``transattn_{hw}_{C}_{act}_{v}_ln``: LayerNorm, qkv Linear (no bias) to 2C + vC (head dim 16,
  C/16 heads, value dim 16v), h-swish, Q K^T, relative-position bias, softmax, A V, h-swish, output
  Linear vC -> C on hw*hw tokens. No residual add. Our own extension (not in nn-Meter's tables): a
  suffix ``_h{heads}`` for a head count other than C/16, head dim C/heads (value dim v C/heads), so
  a device's table can measure the fewer, wider heads EdgeViT uses (:attr:`BlockSpec.heads`), and
  ``_nopos`` for the block without the relative-position bias, which EdgeViT's attention does not
  have (:attr:`BlockSpec.pos_bias`).
- ``transffn_{hw}_{C}_{e}_{act}_ln``: LayerNorm, Linear C -> eC, h-swish, Linear eC -> C, residual add.
- ``mbpool_{hw}_{cin}_{cout}_{e}_{act}``: 1x1 expand to e*cin, h-swish, global pool, 1x1 to 1984,
  Linear 1984 -> 1000.
``hw`` is always the input side. Every key of the three tables parses (:data:`IGNORED_KEYS` is empty).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BLOCK_TYPES", "IGNORED_KEYS", "KeyFormatError", "BlockSpec", "parse_key", "WORK_FIELDS", "Work",
           "block_work", "op_work", "NNMETER_HEAD_DIM", "format_number"]

BLOCK_TYPES: tuple[str, ...] = ("firstconv", "conv", "transds", "transattn", "transffn", "mbpool")
#: Keys present in the tables that are deliberately not parsed (none: every key of the three tables parses).
IGNORED_KEYS: frozenset[str] = frozenset()
NNMETER_HEAD_DIM = 16  # nn-Meter build_lut_modules.py transformer_attn: head_dim = 16


class KeyFormatError(ValueError):
    """A table key that matches none of the block formats; one line naming the key."""


# ----------------------------------------------------------------------------------------- keys
@dataclass(frozen=True)
class BlockSpec:
    """One measured (or queried) block: its type and shape. ``hw`` is the input side (tokens = hw^2)."""

    type: str
    hw: int
    cin: int
    cout: int
    expansion: float = 1.0
    stride: int = 1
    kernel: int = 0
    se: bool = False
    v_scale: float = 0.0
    act: str = "hard_swish"
    #: transattn only: the head count of a queried block (0: nn-Meter's C/16, what every table key has).
    #: Heads change no MAC of the attention (Q K^T and A V are N^2 x C either way) but the score
    #: tensor, heads x N^2, which dominates at thousands of tokens. Part of the key (``_h{heads}``)
    #: only where it differs from C/16: nn-Meter's keys never carry it.
    heads: int = 0
    #: transattn only: nn-Meter's relative-position bias, a heads x N x N constant added to the scores
    #: (every table key has it; EdgeViT's attention has none: key suffix ``_nopos`` without it).
    pos_bias: bool = True

    @property
    def tokens(self) -> int:
        return self.hw * self.hw

    @property
    def attention_heads(self) -> int:
        """transattn: the head count the block runs (its own, else nn-Meter's C/16)."""
        return self.heads or max(self.cin // NNMETER_HEAD_DIM, 1)

    @property
    def channels(self) -> int:
        """The channel count the extrapolation split uses (cin for mbpool, whose cout is fixed)."""
        return self.cin if self.type == "mbpool" else max(self.cin, self.cout)

    def key(self) -> str:
        """The table key this spec would have (exact for parsed keys)."""
        e = format_number(self.expansion)
        if self.type == "firstconv":
            return f"firstconv_{self.hw}_{self.cin}_{self.cout}_{self.stride}_{self.kernel}"
        if self.type == "conv":
            return (f"conv_{self.hw}_{self.cin}_{self.cout}_{e}_{self.stride}_{self.act}_{self.kernel}_"
                    f"{'se' if self.se else 'nose'}")
        if self.type == "transds":
            return f"transds_{self.hw}_{self.cin}_{self.cout}_{self.stride}_{e}"
        if self.type == "transattn":
            own = self.heads and self.heads != max(self.cin // NNMETER_HEAD_DIM, 1)  # not C/16
            return (f"transattn_{self.hw}_{self.cin}_{self.act}_{format_number(self.v_scale)}_ln"
                    + (f"_h{self.heads}" if own else "") + ("" if self.pos_bias else "_nopos"))
        if self.type == "transffn":
            return f"transffn_{self.hw}_{self.cin}_{e}_{self.act}_ln"
        if self.type == "mbpool":
            return f"mbpool_{self.hw}_{self.cin}_{self.cout}_{e}_{self.act}"
        raise KeyFormatError(f"type={self.type!r}: unknown block type; allowed: {', '.join(BLOCK_TYPES)}")


def format_number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


_I = r"(\d+)"
_ACT = r"([a-z][a-z_]*?)"
_KEY_RE: dict[str, re.Pattern[str]] = {
    "firstconv": re.compile(rf"firstconv_{_I}_{_I}_{_I}_{_I}_{_I}"),
    "conv": re.compile(rf"conv_{_I}_{_I}_{_I}_{_I}_{_I}_{_ACT}_{_I}_(se|nose)"),
    "transds": re.compile(rf"transds_{_I}_{_I}_{_I}_{_I}_{_I}"),
    "transattn": re.compile(rf"transattn_{_I}_{_I}_{_ACT}_{_I}_ln(?:_h{_I})?(_nopos)?"),
    "transffn": re.compile(rf"transffn_{_I}_{_I}_{_I}_{_ACT}_ln"),
    "mbpool": re.compile(rf"mbpool_{_I}_{_I}_{_I}_{_I}_{_ACT}"),
}
_KEY_FORMATS = {
    "firstconv": "firstconv_{hw}_{cin}_{cout}_{stride}_{k}",
    "conv": "conv_{hw}_{cin}_{cout}_{expansion}_{stride}_{act}_{k}_{se|nose}",
    "transds": "transds_{hw}_{cin}_{cout}_{stride}_{ds_expansion}",
    "transattn": "transattn_{hw}_{C}_{act}_{v_scale}_ln[_h{heads}][_nopos]",
    "transffn": "transffn_{hw}_{C}_{expansion}_{act}_ln",
    "mbpool": "mbpool_{hw}_{cin}_{cout}_{expansion}_{act}",
}


def parse_key(key: str) -> BlockSpec:
    """The block type and shape of one nn-Meter table key; :class:`KeyFormatError` if it fits no format."""
    btype = key.split("_", 1)[0]
    pattern = _KEY_RE.get(btype)
    m = pattern.fullmatch(key) if pattern else None
    if m is None:
        expected = _KEY_FORMATS.get(btype) or "one of " + ", ".join(_KEY_FORMATS.values())
        raise KeyFormatError(f"key={key!r}: not an nn-Meter block key; expected {expected}")
    g = m.groups()
    if btype == "firstconv":
        hw, cin, cout, s, k = map(int, g)
        return BlockSpec("firstconv", hw, cin, cout, stride=s, kernel=k)
    if btype == "conv":
        hw, cin, cout, e, s = map(int, g[:5])
        return BlockSpec("conv", hw, cin, cout, expansion=e, stride=s, act=g[5], kernel=int(g[6]), se=g[7] == "se")
    if btype == "transds":
        hw, cin, cout, s, e = map(int, g)
        # build_lut_modules.py transformer_ds: dsconv with kernel 3 and squeeze-excite always on
        return BlockSpec("transds", hw, cin, cout, expansion=e, stride=s, kernel=3, se=True)
    if btype == "transattn":
        heads = int(g[4]) if g[4] else 0
        if g[4] and (heads < 1 or int(g[1]) % heads):
            raise KeyFormatError(f"key={key!r}: heads={heads} must divide C={g[1]}; allowed: a divisor of C")
        return BlockSpec("transattn", int(g[0]), int(g[1]), int(g[1]), act=g[2], v_scale=int(g[3]), heads=heads,
                         pos_bias=not g[5])
    if btype == "transffn":
        return BlockSpec("transffn", int(g[0]), int(g[1]), int(g[1]), expansion=int(g[2]), act=g[3])
    hw, cin, cout, e = map(int, g[:4])
    return BlockSpec("mbpool", hw, cin, cout, expansion=e, act=g[4])


# ----------------------------------------------------------------------------------------- work
WORK_FIELDS: tuple[str, ...] = ("dense_macs", "dw_macs", "mm_macs", "elems", "attn_elems", "ops", "params")


@dataclass(frozen=True)
class Work:
    """Work counts of a block or a part: what the rate model multiplies by per-phone rates.

    ``elems`` counts activation elements read plus written by every operator (a memory-traffic
    proxy; LayerNorm counts 3 passes, as it reads its input for the mean, the variance and the
    normalisation); ``attn_elems`` counts passes over the heads x N x N score tensor; ``ops`` counts
    kernels (a fixed per-kernel cost); ``params`` counts weights (read once per inference, which
    dominates a Linear on one token). BatchNorm right after a conv is folded (TFLite converter).
    """

    dense_macs: float = 0.0
    dw_macs: float = 0.0
    mm_macs: float = 0.0
    elems: float = 0.0
    attn_elems: float = 0.0
    ops: float = 0.0
    params: float = 0.0

    def __add__(self, other: "Work") -> "Work":
        return Work(*(a + b for a, b in zip(astuple_work(self), astuple_work(other))))

    def scaled(self, f: float, ops: bool = True) -> "Work":
        return Work(self.dense_macs * f, self.dw_macs * f, self.mm_macs * f, self.elems * f, self.attn_elems * f,
                    self.ops * f if ops else 0.0, self.params * f)

    @property
    def macs(self) -> float:
        return self.dense_macs + self.dw_macs + self.mm_macs

    def vector(self) -> np.ndarray:
        return np.array([getattr(self, f) for f in WORK_FIELDS], dtype=float)


def astuple_work(w: Work) -> tuple[float, ...]:
    return (w.dense_macs, w.dw_macs, w.mm_macs, w.elems, w.attn_elems, w.ops, w.params)


_LN_PASSES = 3


class _Acc:
    """Accumulates work op by op, so each block function reads like the layer it counts."""

    def __init__(self) -> None:
        self.v = dict.fromkeys(("dense_macs", "dw_macs", "mm_macs", "elems", "attn_elems", "ops", "params"), 0.0)

    def dense(self, pixels, cin, cout, k=1, n_in=None, bias=True):
        self.v["dense_macs"] += pixels * cin * cout * k * k
        self.v["elems"] += (n_in if n_in is not None else pixels * cin) + pixels * cout
        self.v["params"] += cin * cout * k * k + (cout if bias else 0)
        self.v["ops"] += 1

    def dw(self, pixels_out, ch, k, n_in):
        self.v["dw_macs"] += pixels_out * ch * k * k
        self.v["elems"] += n_in + pixels_out * ch
        self.v["params"] += ch * k * k + ch
        self.v["ops"] += 1

    def mm(self, macs, n_in, n_out):
        self.v["mm_macs"] += macs
        self.v["elems"] += n_in + n_out
        self.v["ops"] += 1

    def elem(self, n, passes=1.0, ops=1, reads=1):
        self.v["elems"] += passes * (reads + 1) * n
        self.v["ops"] += ops

    def scores(self, n, passes):
        self.v["attn_elems"] += passes * n
        self.v["ops"] += 1

    def norm(self, n, ch):
        self.elem(n, passes=_LN_PASSES, ops=2)
        self.v["params"] += 2 * ch

    def work(self) -> Work:
        return Work(**self.v)


def _mbconv(a: _Acc, hw, cin, cout, e, s, k, se) -> None:
    # build_lut_modules.py dsconv (nn-Meter @ dev/hybrid-transformer)
    o = -(-hw // s)
    mid = int(cin * e)
    if e > 1:
        a.dense(hw * hw, cin, mid, bias=False)
        a.elem(hw * hw * mid)  # h-swish
    a.dw(o * o, mid, k, hw * hw * mid)
    a.elem(o * o * mid)  # h-swish
    if se:
        a.elem(o * o * mid, reads=0)  # global average pool (reads the map once)
        a.dense(1, mid, max(mid // 4, 1))
        a.dense(1, max(mid // 4, 1), mid)
        a.elem(mid, ops=3)  # relu6(x + 3) / 6
        a.elem(o * o * mid, reads=2)  # multiply
    a.dense(o * o, mid, cout, bias=False)
    if s == 1 and cin == cout:
        a.elem(o * o * cout, reads=2)  # residual add
    if cin != cout:
        if s == 2:
            a.elem(o * o * cin, ops=1, reads=0)  # 2x2 average pool
            a.v["elems"] += hw * hw * cin
        a.dense(o * o, cin, cout, bias=False)
        a.elem(o * o * cout, reads=2)


def block_work(spec: BlockSpec) -> Work:
    """Work counts of one nn-Meter block, following the layers the branch's build scripts create."""
    a = _Acc()
    hw, t = spec.hw, spec.type
    n = hw * hw
    if t == "firstconv":
        o = -(-hw // spec.stride)
        a.dense(o * o, spec.cin, spec.cout, k=spec.kernel, n_in=n * spec.cin, bias=False)
        a.elem(o * o * spec.cout)  # h-swish
    elif t in ("conv", "transds"):
        _mbconv(a, hw, spec.cin, spec.cout, spec.expansion, spec.stride, spec.kernel, spec.se)
    elif t == "transattn":
        c, v = spec.cin, spec.v_scale
        heads = spec.attention_heads
        hd = c / spec.heads if spec.heads else NNMETER_HEAD_DIM  # head dim: the query's own when it has heads
        qk = hd * heads
        vd = qk * v
        qkv = 2 * qk + vd
        a.norm(n * c, c)
        a.dense(n, c, qkv, bias=False)
        a.elem(n * qkv)  # h-swish
        a.elem(n * qkv)  # transpose
        a.mm(heads * n * n * hd, 2 * n * qk, heads * n * n)
        a.scores(heads * n * n, passes=5 if spec.pos_bias else 4)  # scale, position bias, softmax (3 passes)
        a.mm(heads * n * n * hd * v, heads * n * n + n * vd, n * vd)
        a.elem(n * vd)  # transpose
        a.elem(n * vd)  # h-swish
        a.dense(n, vd, c, bias=False)
    elif t == "transffn":
        c = spec.cin
        hid = int(c * spec.expansion)
        a.norm(n * c, c)
        a.dense(n, c, hid, bias=False)
        a.elem(n * hid)  # h-swish
        a.dense(n, hid, c, bias=False)
        a.elem(n * c, reads=2)  # residual add
    elif t == "mbpool":
        mid = int(spec.cin * spec.expansion)
        a.dense(n, spec.cin, mid, bias=False)
        a.elem(n * mid)  # h-swish
        a.elem(n * mid, reads=0)  # global pool
        a.dense(1, mid, spec.cout, bias=False)
        a.dense(1, spec.cout, 1000)  # classifier, 1000 classes in the build script
    else:
        raise KeyFormatError(f"type={t!r}: unknown block type; allowed: {', '.join(BLOCK_TYPES)}")
    return a.work()


def op_work(op: Any) -> Work:
    """Work counts of one EdgeViT operator (:class:`search_space.Op`), counted as :func:`block_work` counts."""
    n_in = int(np.prod(op.in_shape))
    n_out = int(np.prod(op.out_shape))
    k = op.kind
    if k in ("conv", "pwconv", "linear"):
        return Work(dense_macs=op.macs, elems=n_in + n_out, ops=1, params=op.params)
    if k in ("dwconv", "conv_transpose"):
        return Work(dw_macs=op.macs, elems=n_in + n_out, ops=1, params=op.params)
    if k == "attention":
        heads, t = op.attrs["heads"], op.attrs["tokens"]
        return Work(mm_macs=op.macs, elems=n_in + n_out + 2 * heads * t * t, attn_elems=4 * heads * t * t, ops=4)
    if k == "layernorm":
        return Work(elems=_LN_PASSES * (n_in + n_out), ops=2, params=op.params)
    if k == "add":
        return Work(elems=3 * n_out, ops=1)
    if k == "sample":
        return Work(elems=2 * n_out, ops=1)
    if k in ("batchnorm", "gelu", "pool"):
        return Work(elems=n_in + n_out, ops=1, params=op.params)
    raise ValueError(f"op.kind={k!r}: no work rule")

