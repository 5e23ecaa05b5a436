"""How an EdgeViT candidate maps onto a phone's measured blocks.

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
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .blocks import NNMETER_HEAD_DIM, BlockSpec, Work, block_work, format_number, op_work

__all__ = ["PROVENANCES", "RATE", "HEADS_TOLERANCE", "MAPPINGS", "DEFAULT_MAPPING", "BLOCK_KINDS", "OWN_ATTENTION_KIND",
           "MappedPart", "map_candidate"]

#: ``network``: not a part of any half-block, what a whole network pays beyond its blocks timed alone
#: (the weight traffic of :class:`~.model.PhoneLatencyPredictor`; absent unless the device measured it).
PROVENANCES: tuple[str, ...] = ("direct", "approximate", "transferred", "network")
#: ``block_type`` of transferred parts: the per-phone rate model, not a measured block type.
RATE = "rate"
#: A head count within this relative distance of nn-Meter's C/16 counts as matching (direct).
HEADS_TOLERANCE = 0.25
#: Versions of the mapping: ``v1`` is the mapping of issue #4 described above; later versions
#: change it where a measured check showed it wrong (``bench/phone_validation.py`` prints each).
#: ``v2`` (issue #14): the attention core is queried with the candidate's own head count
#: (:attr:`BlockSpec.heads`), and the ``transattn`` regressor is the work-count (``rate``) model, the
#: one kind in which heads act through the work (the score tensor, heads x N^2) and which extrapolates
#: linearly in work beyond the tables' 1,024 tokens. On LiteRT on this CPU, v1 over-predicted
#: global attention on 2,304-4,096 tokens with 2 heads (against nn-Meter's C/16 = 8) up to 3.3x.
#: ``v2`` is the default since it beat ``v1`` on two CPUs, each with its own block table and the same
#: 72 networks (bench/RESULTS.md, phone_validation: AMD EPYC 59.7% within 10% / tau 0.897 against
#: 52.8% / 0.870; Intel Xeon 45.8% / 0.869 against 36.1% / 0.838). ``mapping="v1"`` keeps the old one.
#: Since the ninth round v2 also queries attention without nn-Meter's position bias (EdgeViT has
#: none: :attr:`BlockSpec.pos_bias`); a table that never measured it without prices it with it, so
#: every phone's figures are unchanged.
MAPPINGS: tuple[str, ...] = ("v1", "v2")
DEFAULT_MAPPING = "v2"
#: Regressor kind a mapping version fixes per block type (others: the predictor's ``model``, ``auto``).
#: v2's ``rate`` for attention holds for tables whose attention blocks are all nn-Meter's (C/16 heads,
#: position bias: every phone table); a table with its own gets :data:`OWN_ATTENTION_KIND`.
BLOCK_KINDS: dict[str, dict[str, str]] = {"v1": {}, "v2": {"transattn": "rate"}}
#: v2's attention kind for a table with attention blocks of its own (``_h``, ``_nopos`` keys): the
#: work counts times a learned residual on shape, head count and bias. Work counts alone cannot price
#: a runtime whose one-head attention is lowered to another op (LiteRT: 1.7-1.9x slower than two heads
#: at 4,096 tokens), and the inner selection flipped between rate and hybrid on two measurements of
#: the same 24 keys (bench/RESULTS.md, phone_validation, ninth round). The hybrid beat ``rate`` on the
#: two network sets it was chosen on (same CPU as the tables); the tenth round's "held-out draws" on
#: which it lost were measured on another CPU than the tables (corrected in bench/RESULTS.md), so no
#: same-device held-out comparison exists yet. No phone table has such blocks; only the bench's
#: extended host-litert tables do.
OWN_ATTENTION_KIND = "hybrid"


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


def map_candidate(cfg, mapping: str = DEFAULT_MAPPING) -> list[MappedPart]:
    """Cut every half-block of ``cfg`` into parts mapped onto nn-Meter block types (see the module doc).

    Every operator of :func:`search_space.operators` is listed in exactly one part's ``ops``.
    ``mapping``: one of :data:`MAPPINGS`.
    """
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping={mapping!r}: allowed: {', '.join(MAPPINGS)}")
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
                                        detail=f"conv MLP as transffn hw={side}, C={c}, e={format_number(st.mlp_ratio)} "
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
                nn_heads = max(c // NNMETER_HEAD_DIM, 1)
                heads = st.heads
                v2 = mapping == "v2"  # the candidate's own heads, and no position bias (EdgeViT has none)
                spec = BlockSpec("transattn", side // r, c, c, v_scale=1.0, heads=heads if v2 else 0, pos_bias=not v2)
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
                                        detail=f"transffn hw={side}, C={c}, e={format_number(st.mlp_ratio)} (GELU for h-swish)"))
    head = list(groups["head"].values())
    parts.append(MappedPart("head", "head", "transferred", RATE, tuple(o.name for o in head), work=_sum_work(head),
                            detail="BatchNorm, global pool, Linear; rate model"))
    return parts

