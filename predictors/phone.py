"""Phone latency of EdgeViT candidates from nn-Meter's measured block latencies (S21, Pixel 4, Pixel 1).

Data: ``device_farm/data/nnmeter/{xiaomi11,pixel4,pixel1}_lut_ln_v3.json.gz``, 12,116 block latencies
per phone in ms, TFLite fp32 on the phone CPU (microsoft/nn-Meter @9c31e19, branch
dev/hybrid-transformer, ``nn_meter/predictor/transformer_predictor/lut/``, MIT; see PROVENANCE.md
there). The device profile picks the table: ``get_profile("s21").calibration_file()`` is the
Xiaomi Mi 11 table (Snapdragon 888, the S21's SoC). What each block contains was read from the
branch's build scripts (``examples/test_transformer/build_lut/build_lut.py`` and
``build_lut_modules.py``, and the LeViT-style layers they import):

- ``firstconv_{hw}_{cin}_{cout}_{s}_{k}``: dense k x k conv, stride s, BN (folded), h-swish.
- ``conv_{hw}_{cin}_{cout}_{e}_{s}_{act}_{k}_{se|nose}``: MBConv: 1x1 expand to e*cin (absent for
  e = 1), depthwise k x k stride s, optional squeeze-excite, 1x1 project; residual add when s = 1 and
  cin = cout, a 1x1 shortcut conv (after 2x2 average pooling when s = 2) when cin != cout.
- ``transds_{hw}_{cin}_{cout}_{s}_{e}``: the same MBConv with k = 3 and squeeze-excite, on tokens.
- ``transattn_{hw}_{C}_{act}_{v}_ln``: LayerNorm, qkv Linear (no bias) to 2C + vC (head dim 16,
  C/16 heads, value dim 16v), h-swish, Q K^T, relative-position bias, softmax, A V, h-swish, output
  Linear vC -> C on hw*hw tokens. No residual add.
- ``transffn_{hw}_{C}_{e}_{act}_ln``: LayerNorm, Linear C -> eC, h-swish, Linear eC -> C, residual add.
- ``mbpool_{hw}_{cin}_{cout}_{e}_{act}``: 1x1 expand to e*cin, h-swish, global pool, 1x1 to 1984,
  Linear 1984 -> 1000.
``hw`` is always the input side. Every key of the three tables parses (:data:`IGNORED_KEYS` is empty).

Per-block-type regressors
-------------------------
:class:`BlockRegressor` fits one block type. Candidates: ``rate`` (non-negative least squares of
latency on the block's work counts: dense MACs, depthwise MACs, matmul MACs, activation elements,
attention-score elements, kernels, weights; relative weighting), ``ridge`` (ridge on standardised log
features, degree-2 terms when there are >= 200 rows), ``gbm`` and ``rf`` (gradient boosting /
random forest on the features, log target) and ``hybrid`` (the ``rate`` model times
exp(gradient boosting on its log residual): linear-in-work extrapolation, trees for the rest).
``model="auto"`` keeps the candidate with the smallest 99th-percentile relative error on an inner
random validation split of the training rows plus the mean 99th-percentile error on two inner
extrapolation splits (largest hw, largest channels held out): EdgeViT queries leave the measured
grid, and a ridge or tree model that interpolates well can extrapolate badly (on the s21 ``conv``
table, inner validation, ridge had the best random-split 99th-percentile error, 0.083, and 5.8 --
i.e. 580 % -- on the hw split; the hybrid, 0.087 and 0.17, won once extrapolation counted).
:class:`PhoneLatencyPredictor` does this per block type on a random 80 % of a phone's table
(seed fixed), reports the held-out 20 % and extrapolation splits
(train on the smaller values of hw / channels / kernel / expansion / v_scale, test on the largest or
smallest), then refits the chosen kind on every row.

How an EdgeViT candidate maps onto the measured blocks
-------------------------------------------------------
Each half-block of :func:`search_space.operators` (``Op.block``) is cut into parts; every operator
belongs to exactly one part (``PartPrediction.ops``). Provenance labels:

direct -- the part is a measured block type with the same operator sequence:
  * SelfAttn MLP (norm2, fc1, GELU, fc2, add) -> ``transffn`` with hw = side, C = width,
    expansion = mlp_ratio. Differences: GELU instead of h-swish, biases (nn-Meter's Linear has none).
  * SelfAttn attention core (norm1 on the sampled tokens, qkv, softmax(QK^T)V, proj on the sampled
    tokens) -> ``transattn`` with hw = side / r and C = width, *when the head count is within 25 % of
    the measured C/16* (head_dim 16 in this space). The value dimension is C (v_scale = 1), one step
    below the measured v_scale 2..4: the regressor extrapolates in v_scale (its error on the same
    one-step extrapolation, holding out v_scale = 2, is part of the uncertainty). nn-Meter's block
    also has h-swish on qkv and output and a relative-position bias that EdgeViT lacks.

approximate -- mapped onto a measured type that differs in a stated way (uncertainty widened by a
15 % mapping term, a judgment, not a measurement):
  * SelfAttn attention core with heads != C/16 (EdgeViT XXS/XS/S use head_dim 36/48, so 1..8 heads
    against nn-Meter's C/16): same MACs, but fewer, wider heads run a different batched matmul and a
    smaller softmax.
  * LocalAgg aggregation (DWk, PW, residual add) -> ``conv`` MBConv with e = 1 (no expansion conv;
    depthwise k x k, project 1x1, residual), no squeeze-excite, cin = cout = width, k = LocalAgg kernel.
    nn-Meter's block adds BN (folded) and h-swish after the depthwise conv; e = 1 is measured only at
    hw 64..128 and channels 16..24 (the table's conv channels span 16..48 and hw 16..128), so most
    EdgeViT stages are extrapolations of this regressor.
  * LocalAgg conv MLP (BN, PW C -> rC, GELU, PW rC -> C, add) -> ``transffn`` (hw = side, C, r):
    a 1x1 conv on an NHWC map is the same matmul as a Linear on hw*hw tokens; BN instead of
    LayerNorm, GELU instead of h-swish. This beats the MBConv table here because ``transffn`` covers
    C 48..320 while ``conv`` covers 16..48.
  * Stem conv (stage 0 downsample.proj, k = s = 4 on the RGB image) -> ``firstconv`` (3x3, stride 2,
    RGB, cout 16/24) at the same input side, scaled by the MAC ratio of the two convolutions.

transferred -- no measured counterpart; the time is the phone's *rate model* (:class:`RateModel`:
non-negative least squares of the measured conv-like blocks' latencies -- firstconv, conv (MBConv),
transds, mbpool -- on their work counts: dense MACs, depthwise MACs, activation elements, kernels,
weights) applied to the part's operators. Its uncertainty is the larger of its held-out log error on
those blocks and its log error on ``transffn`` blocks, which it was not fitted on (LayerNorm, Linear,
h-swish and add on tokens: the same kind of operators as the transferred parts):
  * position-embedding depthwise 3x3 convs and their adds (LocalAgg and SelfAttn);
  * LocalAgg BN before the aggregation and its first PW conv (conv1; the measured e = 1 MBConv has
    only one 1x1 conv);
  * sparse sampling (strided slice), LocalProp (depthwise transposed conv) and its LayerNorm,
    norm1 and proj on the tokens the attention did not see (N - N/r^2), the attention residual add;
  * downsampling patch-embedding convs of stages 1..3 and every downsample LayerNorm;
  * the head (BatchNorm, global pool, Linear C -> classes).

Uncertainty: a part's relative std is the held-out RMS log error of its regressor; when the query
lies outside the measured range of a feature, the error of the matching extrapolation split, scaled
up by how much further (in log distance) the query lies beyond the range than that split's test
values did. Added in quadrature: 5 % for direct parts (activation and bias differences; a
judgment), 15 % for approximate parts, and for attention the measured one-step v_scale
extrapolation error. Parts sharing a (block type, provenance) have correlated errors and are
summed linearly; groups are combined in quadrature. The sum of block
latencies ignores inter-block effects (nn-Meter's premise); nothing here was measured on a phone by
this project.
"""
from __future__ import annotations

import functools
import gzip
import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "BLOCK_TYPES",
    "IGNORED_KEYS",
    "PROVENANCES",
    "BlockSpec",
    "KeyFormatError",
    "UnknownDeviceError",
    "Work",
    "parse_key",
    "block_work",
    "op_work",
    "phone_devices",
    "load_table",
    "latency_metrics",
    "random_split",
    "extrapolation_split",
    "RateModel",
    "BlockRegressor",
    "MappedPart",
    "map_candidate",
    "PartPrediction",
    "PhonePrediction",
    "PhoneLatencyPredictor",
    "predict_phone_latency",
    "predict_phone_latency_batch",
]

BLOCK_TYPES: tuple[str, ...] = ("firstconv", "conv", "transds", "transattn", "transffn", "mbpool")
#: Keys present in the tables that are deliberately not parsed (none: every key of the three tables parses).
IGNORED_KEYS: frozenset[str] = frozenset()
PROVENANCES: tuple[str, ...] = ("direct", "approximate", "transferred")
#: ``block_type`` of transferred parts: the per-phone rate model, not a measured block type.
RATE = "rate"

#: Relative mapping uncertainty added (in quadrature) to approximate parts. A judgment, not measured.
APPROX_SIGMA = 0.15
#: Relative uncertainty added (in quadrature) to direct parts for the operator differences a direct
#: mapping keeps (GELU for h-swish, biases, EdgeViT's exporter against nn-Meter's Keras graph). A judgment.
DIRECT_SIGMA = 0.05
#: A head count within this relative distance of nn-Meter's C/16 counts as matching (direct).
HEADS_TOLERANCE = 0.25
_NNMETER_HEAD_DIM = 16  # nn-Meter build_lut_modules.py transformer_attn: head_dim = 16


class KeyFormatError(ValueError):
    """A table key that matches none of the block formats; one line naming the key."""


class UnknownDeviceError(ValueError):
    """A device id without an nn-Meter block table; one line naming the field and the allowed values."""


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

    @property
    def tokens(self) -> int:
        return self.hw * self.hw

    @property
    def channels(self) -> int:
        """The channel count the extrapolation split uses (cin for mbpool, whose cout is fixed)."""
        return self.cin if self.type == "mbpool" else max(self.cin, self.cout)

    def key(self) -> str:
        """The table key this spec would have (exact for parsed keys)."""
        e = _num(self.expansion)
        if self.type == "firstconv":
            return f"firstconv_{self.hw}_{self.cin}_{self.cout}_{self.stride}_{self.kernel}"
        if self.type == "conv":
            return (f"conv_{self.hw}_{self.cin}_{self.cout}_{e}_{self.stride}_{self.act}_{self.kernel}_"
                    f"{'se' if self.se else 'nose'}")
        if self.type == "transds":
            return f"transds_{self.hw}_{self.cin}_{self.cout}_{self.stride}_{e}"
        if self.type == "transattn":
            return f"transattn_{self.hw}_{self.cin}_{self.act}_{_num(self.v_scale)}_ln"
        if self.type == "transffn":
            return f"transffn_{self.hw}_{self.cin}_{e}_{self.act}_ln"
        if self.type == "mbpool":
            return f"mbpool_{self.hw}_{self.cin}_{self.cout}_{e}_{self.act}"
        raise KeyFormatError(f"type={self.type!r}: unknown block type; allowed: {', '.join(BLOCK_TYPES)}")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


_I = r"(\d+)"
_ACT = r"([a-z][a-z_]*?)"
_KEY_RE: dict[str, re.Pattern[str]] = {
    "firstconv": re.compile(rf"firstconv_{_I}_{_I}_{_I}_{_I}_{_I}"),
    "conv": re.compile(rf"conv_{_I}_{_I}_{_I}_{_I}_{_I}_{_ACT}_{_I}_(se|nose)"),
    "transds": re.compile(rf"transds_{_I}_{_I}_{_I}_{_I}_{_I}"),
    "transattn": re.compile(rf"transattn_{_I}_{_I}_{_ACT}_{_I}_ln"),
    "transffn": re.compile(rf"transffn_{_I}_{_I}_{_I}_{_ACT}_ln"),
    "mbpool": re.compile(rf"mbpool_{_I}_{_I}_{_I}_{_I}_{_ACT}"),
}
_KEY_FORMATS = {
    "firstconv": "firstconv_{hw}_{cin}_{cout}_{stride}_{k}",
    "conv": "conv_{hw}_{cin}_{cout}_{expansion}_{stride}_{act}_{k}_{se|nose}",
    "transds": "transds_{hw}_{cin}_{cout}_{stride}_{ds_expansion}",
    "transattn": "transattn_{hw}_{C}_{act}_{v_scale}_ln",
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
        return BlockSpec("transattn", int(g[0]), int(g[1]), int(g[1]), act=g[2], v_scale=int(g[3]))
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
        heads = max(c // _NNMETER_HEAD_DIM, 1)
        qk = _NNMETER_HEAD_DIM * heads
        vd = qk * v
        qkv = 2 * qk + vd
        a.norm(n * c, c)
        a.dense(n, c, qkv, bias=False)
        a.elem(n * qkv)  # h-swish
        a.elem(n * qkv)  # transpose
        a.mm(heads * n * n * _NNMETER_HEAD_DIM, 2 * n * qk, heads * n * n)
        a.scores(heads * n * n, passes=5)  # scale, position bias, softmax (3 passes)
        a.mm(heads * n * n * _NNMETER_HEAD_DIM * v, heads * n * n + n * vd, n * vd)
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


# ----------------------------------------------------------------------------------------- tables
def phone_devices() -> tuple[str, ...]:
    """Device ids whose profile ships an nn-Meter block table."""
    from device_farm import load_profiles

    out = []
    for pid, p in load_profiles().items():
        f = p.calibration_file()
        if p.calibration.get("source") == "nn-meter" and f is not None and f.is_file():
            out.append(pid)
    return tuple(sorted(out))


def _check_device(device_id: str) -> None:
    allowed = phone_devices()
    if device_id not in allowed:
        raise UnknownDeviceError(
            f"device_id={device_id!r}: no nn-Meter block table for this device; allowed: {', '.join(allowed)}"
        )


def load_table(device_id: str) -> dict[str, float]:
    """The device's measured block latencies (ms) by key, read from its profile's calibration file."""
    from device_farm import get_profile

    _check_device(device_id)
    path = get_profile(device_id).calibration_file()
    with gzip.open(path, "rt") as fh:
        return {str(k): float(v) for k, v in json.load(fh).items()}


def table_provenance(device_id: str) -> str:
    from device_farm import get_profile

    _check_device(device_id)
    p = get_profile(device_id)
    return f"{p.calibration.get('measured_on', '')}; {p.calibration.get('provenance', '')}".strip("; ")


# ----------------------------------------------------------------------------------------- metrics
def latency_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    """n, within 5 % / 10 %, RMSE (ms), Kendall tau, Spearman rho, RMS log error, 99th percentile relative error."""
    from scipy.stats import kendalltau, spearmanr

    yt = np.asarray(y_true, float)
    yp = np.asarray(y_pred, float)
    rel = np.abs(yp / yt - 1.0)
    ok = len(yt) > 1 and np.ptp(yt) > 0 and np.ptp(yp) > 0
    return {
        "n": int(len(yt)),
        "within_5": float(np.mean(rel <= 0.05)),
        "within_10": float(np.mean(rel <= 0.10)),
        "rmse_ms": float(np.sqrt(np.mean((yp - yt) ** 2))),
        "kendall_tau": float(kendalltau(yt, yp)[0]) if ok else float("nan"),
        "spearman": float(spearmanr(yt, yp)[0]) if ok else float("nan"),
        "rms_log": float(np.sqrt(np.mean(np.log(np.maximum(yp, 1e-9) / yt) ** 2))),
        "p99_rel": float(np.quantile(rel, 0.99)),
    }


def random_split(n: int, test_size: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train and test row indices: a seeded permutation, the first ``round(test_size * n)`` rows are test."""
    idx = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(test_size * n))) if n > 1 else 0
    return np.sort(idx[n_test:]), np.sort(idx[:n_test])


def extrapolation_split(values: Sequence[float], direction: str = "max", frac: float = 0.2):
    """Hold out the rows with the largest (``max``) or smallest (``min``) distinct values until >= ``frac`` of rows."""
    vals = np.asarray(values, float)
    order = np.unique(vals)[::-1] if direction == "max" else np.unique(vals)
    mask = np.zeros(len(vals), bool)
    for v in order[:-1]:  # always leave at least one value for training
        if mask.mean() >= frac:
            break
        mask |= vals == v
    return np.where(~mask)[0], np.where(mask)[0]


#: Extrapolation splits per block type: (feature, direction). All types get the largest hw and channels.
EXTRAPOLATION_SPLITS: dict[str, tuple[tuple[str, str], ...]] = {
    t: (("hw", "max"), ("channels", "max")) for t in BLOCK_TYPES
}
EXTRAPOLATION_SPLITS["conv"] += (("hw", "min"), ("kernel", "max"), ("expansion", "min"))
EXTRAPOLATION_SPLITS["transattn"] += (("hw", "min"), ("v_scale", "min"))
EXTRAPOLATION_SPLITS["transffn"] += (("hw", "min"),)

_RANGE_FEATURES = ("hw", "channels", "kernel", "expansion", "v_scale", "stride")


def _feature_value(spec: BlockSpec, name: str) -> float:
    return float(spec.channels if name == "channels" else getattr(spec, name))


# ----------------------------------------------------------------------------------------- models
_FEATURES = ("log_hw", "log_cin", "log_cout", "expansion", "stride", "kernel", "se", "v_scale",
             "log_macs", "log_dense", "log_dw", "log_mm", "log_elems", "log_attn", "log_params")


def _features(specs: Sequence[BlockSpec], works: Sequence[Work]) -> np.ndarray:
    rows = []
    for s, w in zip(specs, works):
        rows.append([
            math.log(s.hw), math.log(s.cin), math.log(s.cout), s.expansion, s.stride, s.kernel, float(s.se),
            s.v_scale, math.log1p(w.macs), math.log1p(w.dense_macs), math.log1p(w.dw_macs), math.log1p(w.mm_macs),
            math.log1p(w.elems), math.log1p(w.attn_elems), math.log1p(w.params),
        ])
    return np.asarray(rows, float).reshape(len(rows), len(_FEATURES))


def _work_matrix(works: Sequence[Work]) -> np.ndarray:
    return np.asarray([w.vector() for w in works], float).reshape(len(works), len(WORK_FIELDS))


def _nnls_rates(W: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Non-negative rates minimising the (weighted) squared relative error of ``W @ rates`` against ``y``."""
    from scipy.optimize import nnls

    sw = np.ones(len(y)) if weights is None else np.sqrt(np.asarray(weights, float))
    A = W / y[:, None] * sw[:, None]
    scale = np.abs(A).max(axis=0)
    scale[scale == 0] = 1.0
    coef, _ = nnls(A / scale, sw)
    return coef / scale


class _Trees:
    """A sklearn tree ensemble as plain arrays: pred = offset + scale * sum(tree leaf values).

    Evaluated here (float32 features against float64 thresholds, as sklearn does), so a model read
    back from JSON predicts bit for bit what the fitted one predicted.
    """

    def __init__(self, trees: list[dict[str, np.ndarray]], offset: float, scale: float):
        self.trees, self.offset, self.scale = trees, float(offset), float(scale)

    @classmethod
    def from_sklearn(cls, est, offset: float, scale: float) -> "_Trees":
        trees = []
        for t in est:
            tr = t.tree_
            trees.append({
                "left": tr.children_left.astype(np.int64), "right": tr.children_right.astype(np.int64),
                "feature": tr.feature.astype(np.int64), "threshold": tr.threshold.astype(np.float64),
                "value": tr.value.reshape(tr.node_count).astype(np.float64),
            })
        return cls(trees, offset, scale)

    def predict(self, X: np.ndarray) -> np.ndarray:
        X32 = np.asarray(X, np.float32)
        n = len(X32)
        rows = np.arange(n)
        total = np.zeros(n)
        for t in self.trees:
            node = np.zeros(n, np.int64)
            while True:
                left = t["left"][node]
                inner = left >= 0
                if not inner.any():
                    break
                f = np.where(inner, t["feature"][node], 0)
                go_left = X32[rows, f] <= t["threshold"][node]
                node = np.where(inner, np.where(go_left, left, t["right"][node]), node)
            total += t["value"][node]
        return self.offset + self.scale * total

    def to_dict(self) -> dict[str, Any]:
        return {"offset": self.offset, "scale": self.scale,
                "trees": [{k: v.tolist() for k, v in t.items()} for t in self.trees]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "_Trees":
        dtypes = {"left": np.int64, "right": np.int64, "feature": np.int64, "threshold": np.float64, "value": np.float64}
        trees = [{k: np.asarray(t[k], dtypes[k]) for k in dtypes} for t in d["trees"]]
        return cls(trees, d["offset"], d["scale"])


def _poly2(Z: np.ndarray, degree: int) -> np.ndarray:
    if degree == 1:
        return Z
    i, j = np.triu_indices(Z.shape[1])
    return np.hstack([Z, Z[:, i] * Z[:, j]])


MODEL_KINDS: tuple[str, ...] = ("rate", "ridge", "gbm", "rf", "hybrid")


class BlockRegressor:
    """Latency (ms) of one block type from its shape; scikit-learn style, JSON persistence.

    ``model``: one of :data:`MODEL_KINDS` or ``"auto"``: the kind with the smallest score = the
    99th-percentile relative error on an inner random validation split (``val_size`` of the rows
    given to ``fit``) plus the mean 99th-percentile error of two inner extrapolation splits (largest
    hw, largest channels held out). ``validation_`` keeps every candidate's numbers.
    """

    def __init__(self, block_type: str, model: str = "auto", val_size: float = 0.2, random_state: int = 0,
                 n_estimators: int = 150, max_depth: int = 4, learning_rate: float = 0.2, subsample: float = 0.5,
                 max_features: float = 0.6, rf_estimators: int = 30, ridge_alpha: float = 1e-3):
        self.block_type = block_type
        self.model = model
        self.val_size = val_size
        self.random_state = random_state
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.max_features = max_features
        self.rf_estimators = rf_estimators
        self.ridge_alpha = ridge_alpha

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("block_type", "model", "val_size", "random_state", "n_estimators",
                                              "max_depth", "learning_rate", "subsample", "max_features", "rf_estimators",
                                              "ridge_alpha")}

    # -- fitting one kind
    def _fit_kind(self, kind: str, specs, works, y) -> dict[str, Any]:
        X = _features(specs, works)
        ly = np.log(y)
        st: dict[str, Any] = {"kind": kind}
        if kind in ("rate", "hybrid"):
            st["rates"] = _nnls_rates(_work_matrix(works), y)
            if kind == "rate":
                return st
            base = np.maximum(_work_matrix(works) @ st["rates"], 1e-9)
            ly = ly - np.log(base)
        if kind == "ridge":
            from sklearn.linear_model import Ridge

            mu, sd = X.mean(axis=0), X.std(axis=0)
            sd[sd == 0] = 1.0
            degree = 2 if len(y) >= 200 else 1
            r = Ridge(alpha=self.ridge_alpha).fit(_poly2((X - mu) / sd, degree), ly)
            st.update(mu=mu, sd=sd, degree=degree, coef=r.coef_.astype(float), intercept=float(r.intercept_))
            return st
        if kind in ("gbm", "hybrid"):
            from sklearn.ensemble import GradientBoostingRegressor

            if len(y) < 4:  # nothing to boost: keep the mean residual
                st["trees"] = _Trees([], float(np.mean(ly)), 1.0)
                return st
            g = GradientBoostingRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                          learning_rate=self.learning_rate, subsample=self.subsample,
                                          max_features=self.max_features, random_state=self.random_state).fit(X, ly)
            st["trees"] = _Trees.from_sklearn(g.estimators_[:, 0], float(g.init_.constant_.ravel()[0]), g.learning_rate)
            return st
        if kind == "rf":
            from sklearn.ensemble import RandomForestRegressor

            f = RandomForestRegressor(n_estimators=self.rf_estimators, min_samples_leaf=2, max_features=0.6,
                                      random_state=self.random_state, n_jobs=1).fit(X, ly)
            st["trees"] = _Trees.from_sklearn(f.estimators_, 0.0, 1.0 / len(f.estimators_))
            return st
        raise ValueError(f"model={kind!r}: allowed: auto, {', '.join(MODEL_KINDS)}")

    @staticmethod
    def _predict_state(st: Mapping[str, Any], specs, works) -> np.ndarray:
        kind = st["kind"]
        if kind == "rate":
            return np.maximum(_work_matrix(works) @ st["rates"], 1e-9)
        X = _features(specs, works)
        if kind == "ridge":
            Z = _poly2((X - st["mu"]) / st["sd"], st["degree"])
            return np.exp(Z @ st["coef"] + st["intercept"])
        out = st["trees"].predict(X)
        if kind == "hybrid":
            return np.maximum(_work_matrix(works) @ st["rates"], 1e-9) * np.exp(out)
        return np.exp(out)

    def fit(self, specs: Sequence[BlockSpec], y: Sequence[float]) -> "BlockRegressor":
        specs = list(specs)
        y = np.asarray(y, float)
        works = [block_work(s) for s in specs]
        self.validation_: dict[str, dict[str, float]] = {}
        if self.model == "auto":
            small = len(y) < 40
            kinds = ("rate", "ridge", "hybrid") if small else MODEL_KINDS
            # Inner splits of the rows given to fit: a random one and, for enough rows, the two
            # extrapolation splits (largest hw, largest channels), since candidates leave the grid.
            splits = {"random": random_split(len(y), self.val_size, self.random_state + 1)}
            if not small:
                for feat in ("hw", "channels"):
                    etr, eva = extrapolation_split([_feature_value(s, feat) for s in specs], "max")
                    if len(eva) and len(etr) >= 20:
                        splits[f"{feat}_max"] = (etr, eva)
            best, best_score = None, math.inf
            for kind in kinds:
                scores = {}
                for name, (tr, va) in splits.items():
                    st = self._fit_kind(kind, [specs[i] for i in tr], [works[i] for i in tr], y[tr])
                    pred = self._predict_state(st, [specs[i] for i in va], [works[i] for i in va])
                    scores[name] = latency_metrics(y[va], pred)
                extra = [m["p99_rel"] for n, m in scores.items() if n != "random"]
                score = scores["random"]["p99_rel"] + (float(np.mean(extra)) if extra else 0.0)
                self.validation_[kind] = {"score": score, **{f"{n}_p99_rel": m["p99_rel"] for n, m in scores.items()}}
                if best is None or score < best_score:
                    best, best_score = kind, score
            kind = best
        else:
            kind = self.model
        self.kind_ = kind
        self.state_ = self._fit_kind(kind, specs, works, y)
        self.n_train_ = int(len(y))
        self.ranges_ = {f: [min(_feature_value(s, f) for s in specs), max(_feature_value(s, f) for s in specs)]
                        for f in _RANGE_FEATURES}
        return self

    def predict(self, specs: Sequence[BlockSpec]) -> np.ndarray:
        specs = list(specs)
        if not specs:
            return np.zeros(0)
        return self._predict_state(self.state_, specs, [block_work(s) for s in specs])

    def out_of_range(self, spec: BlockSpec) -> list[tuple[str, str]]:
        """(feature, 'max'|'min') for every feature of ``spec`` outside the range this regressor was fitted on."""
        out = []
        for f, (lo, hi) in self.ranges_.items():
            v = _feature_value(spec, f)
            if v > hi:
                out.append((f, "max"))
            elif v < lo:
                out.append((f, "min"))
        return out

    # -- persistence
    def to_dict(self) -> dict[str, Any]:
        st = {}
        for k, v in self.state_.items():
            if isinstance(v, np.ndarray):
                st[k] = v.tolist()
            elif isinstance(v, _Trees):
                st[k] = v.to_dict()
            else:
                st[k] = v
        return {"params": self.get_params(), "kind": self.kind_, "n_train": self.n_train_, "ranges": self.ranges_,
                "validation": self.validation_, "state": st}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BlockRegressor":
        self = cls(**d["params"])
        self.kind_, self.n_train_ = d["kind"], int(d["n_train"])
        self.ranges_ = {k: list(v) for k, v in d["ranges"].items()}
        self.validation_ = {k: dict(v) for k, v in d["validation"].items()}
        st: dict[str, Any] = {}
        for k, v in d["state"].items():
            if k == "trees":
                st[k] = _Trees.from_dict(v)
            elif k in ("rates", "mu", "sd", "coef"):
                st[k] = np.asarray(v, float)
            else:
                st[k] = v
        self.state_ = st
        return self


class RateModel:
    """Per-phone rates (ms per dense MAC, depthwise MAC, matmul MAC, element, score element, kernel, weight).

    Non-negative least squares on the relative error of the phone's measured conv-like blocks
    (``firstconv``, ``conv``, ``transds``, ``mbpool``: dense, depthwise and 1x1 convs, Linear on one
    token, element-wise ops), each block type weighted equally. Applied to EdgeViT operators that no
    measured block covers ("transferred"). The matmul and score-element rates stay 0 (no attention
    in these blocks); no transferred part contains attention.
    """

    def __init__(self, block_types: Sequence[str] = ("firstconv", "conv", "transds", "mbpool")):
        self.block_types = tuple(block_types)

    def fit(self, specs: Sequence[BlockSpec], y: Sequence[float]) -> "RateModel":
        keep = [i for i, s in enumerate(specs) if s.type in self.block_types]
        types = [specs[i].type for i in keep]
        counts = {t: types.count(t) for t in set(types)}
        W = _work_matrix([block_work(specs[i]) for i in keep])
        self.rates_ = _nnls_rates(W, np.asarray(y, float)[keep], np.array([1.0 / counts[t] for t in types]))
        self.n_train_ = len(keep)
        return self

    def predict_work(self, works: Sequence[Work]) -> np.ndarray:
        return _work_matrix(list(works)) @ self.rates_

    def predict(self, specs: Sequence[BlockSpec]) -> np.ndarray:
        return np.maximum(self.predict_work([block_work(s) for s in specs]), 1e-9)

    def to_dict(self) -> dict[str, Any]:
        return {"block_types": list(self.block_types), "rates": dict(zip(WORK_FIELDS, self.rates_.tolist())),
                "n_train": self.n_train_}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RateModel":
        self = cls(d["block_types"])
        self.rates_ = np.asarray([d["rates"][f] for f in WORK_FIELDS], float)
        self.n_train_ = int(d["n_train"])
        return self


# ----------------------------------------------------------------------------------------- mapping
@dataclass(frozen=True)
class MappedPart:
    """One part of a half-block and how it is predicted.

    ``spec`` is the measured-type query (direct / approximate); ``work`` the counts the rate model
    prices (transferred, and the MAC ratio of the stem); ``scale`` multiplies the block prediction.
    """

    half_block: str
    part: str
    provenance: str
    block_type: str
    ops: tuple[str, ...]
    spec: BlockSpec | None = None
    work: Work | None = None
    scale: float = 1.0
    detail: str = ""


def _group_ops(ops) -> dict[str, dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for op in ops:
        groups.setdefault(op.block, {})[op.name] = op
    return groups


def _sum_work(ops) -> Work:
    w = Work()
    for op in ops:
        w = w + op_work(op)
    return w


def map_candidate(cfg) -> list[MappedPart]:
    """Cut every half-block of ``cfg`` into parts mapped onto nn-Meter block types (see the module doc).

    Every operator of :func:`search_space.operators` is listed in exactly one part's ``ops``.
    """
    from search_space import operators
    from search_space.config import STAGE_STRIDES

    groups = _group_ops(operators(cfg))
    parts: list[MappedPart] = []
    side = cfg.resolution
    for i, st in enumerate(cfg.stages):
        stride = STAGE_STRIDES[0] if i == 0 else 2
        side_in, side = side, side // stride
        hb = f"stages.{i}.downsample"
        g = groups[hb]
        proj, norm = g[hb + ".proj"], g[hb + ".norm"]
        if i == 0:
            cq = int(min(max(st.width, 16), 24))  # firstconv measured at cout 16 and 24
            fc = BlockSpec("firstconv", side_in, 3, cq, stride=2, kernel=3)
            ratio = proj.macs / block_work(fc).dense_macs
            parts.append(MappedPart(hb, "stem_conv", "approximate", "firstconv", (proj.name,), spec=fc, scale=ratio,
                                    detail=f"firstconv 3x3/s2 at hw={side_in}, cout={cq}, scaled by MACs x{ratio:.3f} "
                                           f"to the {proj.attrs['kernel']}x{proj.attrs['kernel']}/s{stride} stem"))
        else:
            parts.append(MappedPart(hb, "patch_conv", "transferred", RATE, (proj.name,), work=op_work(proj),
                                    detail="2x2/s2 patch-embedding conv priced by the rate model"))
        parts.append(MappedPart(hb, "norm", "transferred", RATE, (norm.name,), work=op_work(norm),
                                detail="LayerNorm priced by the rate model"))
        c = st.width
        for j, kind in enumerate(st.blocks):
            if kind in ("lgl", "local"):
                hb = f"stages.{i}.blocks.{j}.local_agg"
                g = groups[hb]
                p = hb + "."
                pos = [g[p + "pos_embed"], g[p + "add_pos"]]
                parts.append(MappedPart(hb, "pos_embed", "transferred", RATE, tuple(o.name for o in pos),
                                        work=_sum_work(pos), detail="DW3x3 position embedding + add, rate model"))
                pre = [g[p + "norm1"], g[p + "conv1"]]
                parts.append(MappedPart(hb, "bn_conv1", "transferred", RATE, tuple(o.name for o in pre),
                                        work=_sum_work(pre), detail="BN + first 1x1 conv of the aggregation, rate model"))
                agg = [g[p + "conv_dw"], g[p + "conv2"], g[p + "add_agg"]]
                spec = BlockSpec("conv", side, c, c, expansion=1, stride=1, kernel=st.kernel_size, se=False)
                parts.append(MappedPart(hb, "dw_pw", "approximate", "conv", tuple(o.name for o in agg), spec=spec,
                                        detail=f"MBConv e=1 k={st.kernel_size} no SE at hw={side}, C={c} "
                                               "(adds BN+h-swish after the DW conv)"))
                mlp = [g[p + n] for n in ("norm2", "mlp.fc1", "mlp.act", "mlp.fc2", "add_mlp")]
                spec = BlockSpec("transffn", side, c, c, expansion=float(st.mlp_hidden) / c)
                parts.append(MappedPart(hb, "conv_mlp", "approximate", "transffn", tuple(o.name for o in mlp), spec=spec,
                                        detail=f"conv MLP as transffn hw={side}, C={c}, e={_num(st.mlp_ratio)} "
                                               "(BN for LN, 1x1 conv for Linear, GELU for h-swish)"))
            if kind in ("lgl", "global"):
                hb = f"stages.{i}.blocks.{j}.self_attn"
                g = groups[hb]
                p = hb + "."
                r = st.sr_ratio
                n_all, n_s = side * side, (side // r) ** 2
                frac_rest = (n_all - n_s) / n_all
                pos = [g[p + "pos_embed"], g[p + "add_pos"]]
                parts.append(MappedPart(hb, "pos_embed", "transferred", RATE, tuple(o.name for o in pos),
                                        work=_sum_work(pos), detail="DW3x3 position embedding + add, rate model"))
                att = [g[p + n] for n in ("norm1", "attn.qkv", "attn.core", "attn.proj")]
                spec = BlockSpec("transattn", side // r, c, c, v_scale=1.0)
                nn_heads = max(c // _NNMETER_HEAD_DIM, 1)
                heads = st.heads
                match = abs(heads / nn_heads - 1.0) <= HEADS_TOLERANCE
                parts.append(MappedPart(
                    hb, "attention", "direct" if match else "approximate", "transattn", tuple(o.name for o in att),
                    spec=spec,
                    detail=(f"transattn hw={side // r} ({n_s} tokens), C={c}, v_scale=1 (extrapolated from 2..4); "
                            f"heads {heads} vs measured {nn_heads}" + ("" if match else " (mismatch)")
                            + (f"; covers norm1/proj on the {n_s} sampled tokens only" if r > 1 else ""))))
                rest_names = [p + n for n in ("attn.sample", "attn.local_prop", "attn.norm", "add_attn") if p + n in g]
                rest = [g[n] for n in rest_names]
                w = _sum_work(rest)
                if frac_rest > 0:
                    w = w + op_work(g[p + "norm1"]).scaled(frac_rest, ops=False)
                    w = w + op_work(g[p + "attn.proj"]).scaled(frac_rest, ops=False)
                detail = ("sampling, LocalProp, its LayerNorm, norm1+proj on the other "
                          f"{n_all - n_s} tokens, residual add; rate model" if r > 1 else "residual add, rate model")
                parts.append(MappedPart(hb, "attn_rest", "transferred", RATE, tuple(rest_names), work=w, detail=detail))
                mlp = [g[p + n] for n in ("norm2", "mlp.fc1", "mlp.act", "mlp.fc2", "add_mlp")]
                spec = BlockSpec("transffn", side, c, c, expansion=float(st.mlp_hidden) / c)
                parts.append(MappedPart(hb, "mlp", "direct", "transffn", tuple(o.name for o in mlp), spec=spec,
                                        detail=f"transffn hw={side}, C={c}, e={_num(st.mlp_ratio)} (GELU for h-swish)"))
    head = list(groups["head"].values())
    parts.append(MappedPart("head", "head", "transferred", RATE, tuple(o.name for o in head), work=_sum_work(head),
                            detail="BatchNorm, global pool, Linear; rate model"))
    return parts


# ----------------------------------------------------------------------------------------- predictions
@dataclass(frozen=True)
class PartPrediction:
    half_block: str
    ms: float
    provenance: str
    block_type: str
    part: str = ""
    std_ms: float = 0.0
    extrapolated: bool = False
    detail: str = ""
    ops: tuple[str, ...] = ()


@dataclass(frozen=True)
class PhonePrediction:
    device_id: str
    arch_id: str
    total_ms: float
    std_ms: float
    parts: tuple[PartPrediction, ...] = field(default_factory=tuple)

    def share(self) -> dict[str, float]:
        """Fraction of the total predicted from direct / approximate / transferred parts."""
        out = dict.fromkeys(PROVENANCES, 0.0)
        for p in self.parts:
            out[p.provenance] += p.ms
        return {k: v / self.total_ms for k, v in out.items()}

    def half_blocks(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for p in self.parts:
            out[p.half_block] = out.get(p.half_block, 0.0) + p.ms
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["parts"] = [asdict(p) for p in self.parts]
        return d


class PhoneLatencyPredictor:
    """Block regressors, held-out and extrapolation reports, and the EdgeViT mapping for one phone.

    ``fit(table=None)`` reads the device's table (``load_table``). ``refit_full``: after the held-out
    evaluation, refit the chosen kind on every row (the evaluated model is the 80 % one).
    """

    def __init__(self, device_id: str = "s21", model: str = "auto", test_size: float = 0.2, random_state: int = 0,
                 extrapolation: bool = True, refit_full: bool = True, block_types: Sequence[str] = BLOCK_TYPES,
                 n_estimators: int = 150):
        self.device_id = device_id
        self.model = model
        self.test_size = test_size
        self.random_state = random_state
        self.extrapolation = extrapolation
        self.refit_full = refit_full
        self.block_types = tuple(block_types)
        self.n_estimators = n_estimators

    def get_params(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "model": self.model, "test_size": self.test_size,
                "random_state": self.random_state, "extrapolation": self.extrapolation,
                "refit_full": self.refit_full, "block_types": list(self.block_types), "n_estimators": self.n_estimators}

    def _reg(self, btype: str, model: str) -> BlockRegressor:
        return BlockRegressor(btype, model=model, random_state=self.random_state, n_estimators=self.n_estimators)

    def fit(self, table: Mapping[str, float] | None = None) -> "PhoneLatencyPredictor":
        from sklearn.linear_model import LinearRegression
        from scipy.stats import kendalltau, spearmanr

        for t in self.block_types:
            if t not in BLOCK_TYPES:
                raise ValueError(f"block_types={t!r}: allowed: {', '.join(BLOCK_TYPES)}")
        if table is None:
            table = load_table(self.device_id)
            self.source_ = table_provenance(self.device_id)
        else:
            self.source_ = "table given to fit"
        by_type: dict[str, list[tuple[BlockSpec, float]]] = {t: [] for t in BLOCK_TYPES}
        for k, v in table.items():
            if k in IGNORED_KEYS:
                continue
            s = parse_key(k)
            by_type[s.type].append((s, float(v)))
        self.regressors_: dict[str, BlockRegressor] = {}
        self.heldout_: dict[str, dict[str, Any]] = {}
        self.extrapolation_: dict[str, dict[str, Any]] = {}
        self.sigma_: dict[str, dict[str, float]] = {}
        pooled_tr: list[tuple[BlockSpec, float]] = []
        pooled_te: list[tuple[BlockSpec, float]] = []

        def baseline(specs_tr, y_tr, specs_te, y_te):
            w_tr = [block_work(s) for s in specs_tr]
            w_te = [block_work(s) for s in specs_te]
            X_tr = np.array([[w.macs, w.params] for w in w_tr])
            X_te = np.array([[w.macs, w.params] for w in w_te])
            lin = LinearRegression().fit(X_tr, y_tr)
            m = latency_metrics(y_te, np.maximum(lin.predict(X_te), 1e-6))
            macs = np.array([w.macs for w in w_te])
            ok = len(y_te) > 1 and np.ptp(macs) > 0
            rank = {"kendall_tau": float(kendalltau(y_te, macs)[0]) if ok else float("nan"),
                    "spearman": float(spearmanr(y_te, macs)[0]) if ok else float("nan")}
            return m, rank

        for t in self.block_types:
            rows = by_type[t]
            if not rows:
                continue
            specs = [s for s, _ in rows]
            y = np.array([v for _, v in rows])
            tr, te = random_split(len(y), self.test_size, self.random_state)
            reg = self._reg(t, self.model).fit([specs[i] for i in tr], y[tr])
            pred = reg.predict([specs[i] for i in te])
            lin_m, rank = baseline([specs[i] for i in tr], y[tr], [specs[i] for i in te], y[te])
            self.heldout_[t] = {"kind": reg.kind_, "n_train": int(len(tr)), "model": latency_metrics(y[te], pred),
                                "linear_macs_params": lin_m, "macs_rank": rank, "validation": reg.validation_}
            pooled_tr += [rows[i] for i in tr]
            pooled_te += [rows[i] for i in te]
            sig = {"random": self.heldout_[t]["model"]["rms_log"]}
            if self.extrapolation:
                self.extrapolation_[t] = {}
                for feat, direction in EXTRAPOLATION_SPLITS[t]:
                    etr, ete = extrapolation_split([_feature_value(s, feat) for s in specs], direction)
                    if len(ete) == 0 or len(etr) < 2:
                        continue
                    ereg = self._reg(t, reg.kind_).fit([specs[i] for i in etr], y[etr])
                    em = latency_metrics(y[ete], ereg.predict([specs[i] for i in ete]))
                    elin, erank = baseline([specs[i] for i in etr], y[etr], [specs[i] for i in ete], y[ete])
                    held = sorted({_feature_value(specs[i], feat) for i in ete})
                    trained = [_feature_value(specs[i], feat) for i in etr]
                    bound = max(trained) if direction == "max" else min(trained)
                    far = held[-1] if direction == "max" else held[0]
                    self.extrapolation_[t][f"{feat}_{direction}"] = {
                        "held_out_values": [_num(v) for v in held], "train_bound": bound, "far": far,
                        "model": em, "linear_macs_params": elin, "macs_rank": erank}
                    sig[f"{feat}_{direction}"] = em["rms_log"]
            self.sigma_[t] = sig
            self.regressors_[t] = self._reg(t, reg.kind_).fit(specs, y) if self.refit_full else reg
        # rate model: held-out on the pooled split of its block types, transfer to the others, refit on all
        rm = RateModel().fit([s for s, _ in pooled_tr], [v for _, v in pooled_tr])
        te_specs = [s for s, _ in pooled_te]
        te_y = np.array([v for _, v in pooled_te])
        te_pred = rm.predict(te_specs)
        fitted = [i for i, s in enumerate(te_specs) if s.type in rm.block_types]
        self.rate_heldout_ = {}
        if fitted:
            m = latency_metrics(te_y[fitted], te_pred[fitted])
            m["bias_log"] = float(np.mean(np.log(te_pred[fitted] / te_y[fitted])))
            self.rate_heldout_["fitted_types"] = m
        for t in self.block_types:
            idx = [i for i, s in enumerate(te_specs) if s.type == t]
            if idx:
                m = latency_metrics(te_y[idx], te_pred[idx])
                m["bias_log"] = float(np.mean(np.log(te_pred[idx] / te_y[idx])))
                self.rate_heldout_[t] = m
        # Transferred parts are token-wise LayerNorms, adds, Linear/1x1 convs and depthwise convs: the
        # rate model's error on transffn (LayerNorm, Linear, h-swish, add on tokens; not fitted on)
        # measures that transfer; the held-out error on its own block types is the floor.
        cands = [self.rate_heldout_[k]["rms_log"] for k in ("fitted_types", "transffn") if k in self.rate_heldout_]
        self.transfer_sigma_ = float(max(cands)) if cands else 0.5
        all_rows = [r for t in self.block_types for r in by_type[t]]
        self.rate_ = RateModel().fit([s for s, _ in all_rows], [v for _, v in all_rows]) if self.refit_full else rm
        self.n_keys_ = int(sum(len(by_type[t]) for t in self.block_types))
        return self

    # -- uncertainty of one measured-type query
    def _sigma(self, spec: BlockSpec) -> tuple[float, bool]:
        """Relative std of one block prediction and whether it extrapolates.

        Inside the measured ranges: the random-split RMS log error. Outside: the error of the
        matching extrapolation split, scaled up by how much further the query lies beyond the
        fitted range than that split's farthest test value lay beyond its training range (in log
        distance; never scaled down). With no matching split, the largest error of the type.
        """
        reg = self.regressors_[spec.type]
        sig = self.sigma_.get(spec.type, {})
        ext = self.extrapolation_.get(spec.type, {})
        s = sig.get("random", 0.1)
        oor = reg.out_of_range(spec)
        for feat, direction in oor:
            name = f"{feat}_{direction}"
            if name not in sig:
                s = max(s, max(sig.values()) if sig else 0.3)
                continue
            lo, hi = reg.ranges_[feat]
            v = _feature_value(spec, feat)
            e = ext.get(name, {})
            bound, far = e.get("train_bound"), e.get("far")
            factor = 1.0
            if bound and far and bound > 0 and far > 0 and v > 0 and far != bound:
                edge = hi if direction == "max" else lo
                factor = max(1.0, abs(math.log(v / edge)) / abs(math.log(far / bound)))
            s = max(s, sig[name] * factor)
        return s, bool(oor)

    def predict_blocks(self, specs_or_keys: Iterable[BlockSpec | str]) -> np.ndarray:
        """Predicted latency (ms) of measured-type blocks (specs or table keys)."""
        specs = [parse_key(s) if isinstance(s, str) else s for s in specs_or_keys]
        out = np.zeros(len(specs))
        for t in {s.type for s in specs}:
            idx = [i for i, s in enumerate(specs) if s.type == t]
            if t not in self.regressors_:
                raise ValueError(f"block type={t!r}: not fitted; fitted: {', '.join(self.regressors_)}")
            out[idx] = self.regressors_[t].predict([specs[i] for i in idx])
        return out

    def predict(self, cfg) -> PhonePrediction:
        return self.predict_many([cfg])[0]

    def predict_many(self, cfgs: Sequence[Any]) -> list[PhonePrediction]:
        """Batched: one regressor call per block type over all parts of all configurations."""
        mapped = [map_candidate(c) for c in cfgs]
        flat = [(ci, p) for ci, parts in enumerate(mapped) for p in parts]
        queries = [p.spec for _, p in flat if p.spec is not None]
        block_ms = iter(self.predict_blocks(queries)) if queries else iter(())
        trans_idx = [k for k, (_, p) in enumerate(flat) if p.spec is None]
        trans_ms = self.rate_.predict_work([flat[k][1].work for k in trans_idx]) if trans_idx else np.zeros(0)
        trans_map = dict(zip(trans_idx, trans_ms))
        rate_sigma = self.transfer_sigma_
        v_sigma = self.sigma_.get("transattn", {}).get("v_scale_min", 0.0)
        results: list[list[PartPrediction]] = [[] for _ in cfgs]
        for k, (ci, p) in enumerate(flat):
            if p.spec is None:
                ms = float(max(trans_map[k], 0.0))
                sig, extrap = rate_sigma, False
            else:
                ms = float(next(block_ms)) * p.scale
                v_min = self.regressors_[p.spec.type].ranges_["v_scale"][0]
                if p.spec.type == "transattn" and p.spec.v_scale < v_min:
                    # v_scale = 1 is always one step below the grid: its error is the measured
                    # one-step error (v_scale_min split), added once; hw / C decide "extrapolated".
                    sig, extrap = self._sigma(replace(p.spec, v_scale=v_min))
                    sig = math.hypot(sig, v_sigma)
                else:
                    sig, extrap = self._sigma(p.spec)
                if p.provenance == "approximate":
                    sig = math.hypot(sig, APPROX_SIGMA)
                elif p.provenance == "direct":
                    sig = math.hypot(sig, DIRECT_SIGMA)
            results[ci].append(PartPrediction(p.half_block, ms, p.provenance, p.block_type, p.part, ms * sig, extrap,
                                              p.detail, p.ops))
        out = []
        for cfg, parts in zip(cfgs, results):
            total = float(sum(p.ms for p in parts))
            groups: dict[tuple[str, str], float] = {}
            for p in parts:
                groups[(p.block_type, p.provenance)] = groups.get((p.block_type, p.provenance), 0.0) + p.std_ms
            std = float(math.sqrt(sum(v * v for v in groups.values())))
            out.append(PhonePrediction(self.device_id, cfg.arch_id, total, std, tuple(parts)))
        return out

    # -- persistence
    def to_dict(self) -> dict[str, Any]:
        return {"params": self.get_params(), "source": self.source_, "n_keys": self.n_keys_,
                "regressors": {t: r.to_dict() for t, r in self.regressors_.items()},
                "heldout": self.heldout_, "extrapolation": self.extrapolation_, "sigma": self.sigma_,
                "rate": self.rate_.to_dict(), "rate_heldout": self.rate_heldout_,
                "transfer_sigma": self.transfer_sigma_}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PhoneLatencyPredictor":
        p = d["params"]
        self = cls(**{**p, "block_types": tuple(p["block_types"])})
        self.source_, self.n_keys_ = d["source"], int(d["n_keys"])
        self.regressors_ = {t: BlockRegressor.from_dict(r) for t, r in d["regressors"].items()}
        self.heldout_, self.extrapolation_ = dict(d["heldout"]), dict(d["extrapolation"])
        self.sigma_ = {t: dict(v) for t, v in d["sigma"].items()}
        self.rate_ = RateModel.from_dict(d["rate"])
        self.rate_heldout_ = dict(d["rate_heldout"])
        self.transfer_sigma_ = float(d["transfer_sigma"])
        return self


# ----------------------------------------------------------------------------------------- entry points
@functools.lru_cache(maxsize=None)
def _fitted(device_id: str, cache_dir: str | None) -> PhoneLatencyPredictor:
    path = Path(cache_dir) / f"phone_{device_id}.json" if cache_dir else None
    if path is not None and path.is_file():
        return PhoneLatencyPredictor.from_dict(json.loads(path.read_text()))
    pred = PhoneLatencyPredictor(device_id).fit()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(pred.to_dict()))
        tmp.replace(path)
    return pred


def predict_phone_latency(cfg, device_id: str = "s21", cache_dir: str | None = None) -> PhonePrediction:
    """Predicted latency of ``cfg`` on a phone (``s21``, ``pixel4``, ``pixel1``), per half-block with provenance.

    The first call per device fits its predictor (seconds); ``cache_dir`` keeps the fitted
    predictor as JSON (delete the file after changing the data or this module).
    """
    _check_device(device_id)
    return _fitted(device_id, cache_dir).predict(cfg)


def predict_phone_latency_batch(cfgs: Sequence[Any], device_id: str = "s21",
                                cache_dir: str | None = None) -> list[PhonePrediction]:
    _check_device(device_id)
    return _fitted(device_id, cache_dir).predict_many(list(cfgs))
