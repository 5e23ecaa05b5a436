"""The operators a candidate executes, with shapes and closed-form costs, and their networkx graph.

This list is the one source of analytic cost: :mod:`search_space.cost` sums it, the predictors read
its graph, and the tests check it against what torch counts on the built model. Operator names are
the module paths of :class:`search_space.model.EdgeViT` (``stages.2.blocks.0.self_attn.attn.qkv``),
so per-module parameter counts can be compared one to one.

Multiply-accumulates (MACs) count convolutions, transposed convolutions, linear layers and the two
attention matmuls (Q K^T and A V); norms, activations, softmax, sampling, pooling and additions have
zero MACs but are listed because runtimes spend time in them. Shapes omit the batch dimension:
feature maps are ``(C, H, W)``, token sequences ``(N, C)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from .config import STAGE_STRIDES, EdgeViTConfig, StageConfig

__all__ = ["Op", "OP_KINDS", "operators", "to_networkx", "downsample_ops", "local_agg_ops", "self_attn_ops", "head_ops"]

#: Operator kinds; the kernel-level latency predictors regress one model per kind.
OP_KINDS: tuple[str, ...] = (
    "conv",  # dense strided convolution (stem and down-sampling)
    "dwconv",  # depthwise k x k convolution
    "pwconv",  # 1x1 convolution
    "conv_transpose",  # LocalProp: depthwise transposed convolution
    "linear",
    "attention",  # softmax(Q K^T * scale) V on the sampled tokens
    "sample",  # sparse sampling: one token per r x r window
    "layernorm",
    "batchnorm",
    "gelu",
    "add",
    "pool",
)


@dataclass(frozen=True)
class Op:
    name: str
    kind: str
    inputs: tuple[str, ...]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    params: int = 0
    macs: int = 0
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def stage(self) -> int | None:
        """0-based stage index, ``None`` for the head."""
        parts = self.name.split(".")
        return int(parts[1]) if parts[0] == "stages" else None

    @property
    def block(self) -> str:
        """The half-block (or downsample / head) the op belongs to: the grouping key for cost tables."""
        parts = self.name.split(".")
        if parts[0] != "stages":
            return "head"
        if parts[2] == "downsample":
            return ".".join(parts[:3])
        return ".".join(parts[:5])


class _Builder:
    """Appends ops and remembers the last output, so block functions read like the forward pass."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.last = "input"

    def add(self, name: str, kind: str, in_shape, out_shape, params=0, macs=0, inputs=None, **attrs) -> str:
        self.ops.append(
            Op(name, kind, tuple(inputs or (self.last,)), tuple(in_shape), tuple(out_shape), int(params), int(macs), attrs)
        )
        self.last = name
        return name

    # -- typed helpers: each returns the op name and encodes one cost formula
    def conv(self, name, cin, cout, k, stride, groups, side_in, kind):
        side_out = side_in // stride
        params = cout * (cin // groups) * k * k + cout
        macs = side_out * side_out * cout * (cin // groups) * k * k
        return self.add(name, kind, (cin, side_in, side_in), (cout, side_out, side_out), params, macs,
                        kernel=k, stride=stride, groups=groups)

    def linear(self, name, tokens, cin, cout):
        return self.add(name, "linear", (tokens, cin), (tokens, cout), cin * cout + cout, tokens * cin * cout)

    def norm(self, name, kind, shape):
        channels = shape[0] if kind == "batchnorm" else shape[-1]
        return self.add(name, kind, shape, shape, 2 * channels)

    def act(self, name, shape):
        return self.add(name, "gelu", shape, shape)

    def residual(self, name, skip, shape):
        return self.add(name, "add", shape, shape, inputs=(skip, self.last))


def _local_agg(b: _Builder, p: str, st: StageConfig, side: int) -> None:
    c, hid, k = st.width, st.mlp_hidden, st.kernel_size
    fmap = (c, side, side)
    x = b.last
    b.conv(p + "pos_embed", c, c, 3, 1, c, side, "dwconv")
    x = b.residual(p + "add_pos", x, fmap)
    b.norm(p + "norm1", "batchnorm", fmap)
    b.conv(p + "conv1", c, c, 1, 1, 1, side, "pwconv")
    b.conv(p + "conv_dw", c, c, k, 1, c, side, "dwconv")
    b.conv(p + "conv2", c, c, 1, 1, 1, side, "pwconv")
    x = b.residual(p + "add_agg", x, fmap)
    b.norm(p + "norm2", "batchnorm", fmap)
    b.conv(p + "mlp.fc1", c, hid, 1, 1, 1, side, "pwconv")
    b.act(p + "mlp.act", (hid, side, side))
    b.conv(p + "mlp.fc2", hid, c, 1, 1, 1, side, "pwconv")
    b.residual(p + "add_mlp", x, fmap)


def _self_attn(b: _Builder, p: str, st: StageConfig, side: int) -> None:
    c, hid, r, heads = st.width, st.mlp_hidden, st.sr_ratio, st.heads
    fmap, n = (c, side, side), side * side
    tokens = (n, c)
    x = b.last
    b.conv(p + "pos_embed", c, c, 3, 1, c, side, "dwconv")
    x = b.residual(p + "add_pos", x, fmap)
    b.norm(p + "norm1", "layernorm", tokens)
    a = p + "attn."
    ns = (side // r) ** 2  # tokens seen by attention
    if r > 1:
        b.add(a + "sample", "sample", tokens, (ns, c), stride=r)
    b.linear(a + "qkv", ns, c, 3 * c)
    b.add(a + "core", "attention", (ns, 3 * c), (ns, c), macs=2 * ns * ns * c,
          heads=heads, head_dim=st.head_dim, tokens=ns)
    if r > 1:
        # LocalProp: each sampled token spreads over its r x r window (MACs = output pixels x C).
        b.add(a + "local_prop", "conv_transpose", (c, side // r, side // r), fmap, c * r * r + c, n * c,
              kernel=r, stride=r, groups=c)
        b.norm(a + "norm", "layernorm", tokens)
    b.linear(a + "proj", n, c, c)
    x = b.residual(p + "add_attn", x, tokens)
    b.norm(p + "norm2", "layernorm", tokens)
    b.linear(p + "mlp.fc1", n, c, hid)
    b.act(p + "mlp.act", (n, hid))
    b.linear(p + "mlp.fc2", n, hid, c)
    b.residual(p + "add_mlp", x, tokens)


def _ops(emit, source: str, *args) -> list[Op]:
    b = _Builder()
    b.last = source
    emit(b, *args)
    return b.ops


def downsample_ops(cin: int, cout: int, stride: int, side_in: int, prefix: str = "", source: str = "input") -> list[Op]:
    """A stage's patch embedding: strided conv (kernel = stride) then LayerNorm over channels."""

    def emit(b: _Builder) -> None:
        b.conv(prefix + "proj", cin, cout, stride, stride, 1, side_in, "conv")
        side = side_in // stride
        b.norm(prefix + "norm", "layernorm", (side * side, cout))

    return _ops(emit, source)


def local_agg_ops(stage: StageConfig, side: int, prefix: str = "", source: str = "input") -> list[Op]:
    """The LocalAgg half of a block of ``stage`` on a ``side x side`` map."""
    return _ops(_local_agg, source, prefix, stage, side)


def self_attn_ops(stage: StageConfig, side: int, prefix: str = "", source: str = "input") -> list[Op]:
    """The attention half (SelfAttn with GlobalSparseAttn and LocalProp) of a block of ``stage``."""
    return _ops(_self_attn, source, prefix, stage, side)


def head_ops(cin: int, side: int, num_classes: int, source: str = "input") -> list[Op]:
    """BatchNorm on the last map, global average pool, and the classifier (when ``num_classes``)."""

    def emit(b: _Builder) -> None:
        b.norm("norm", "batchnorm", (cin, side, side))
        b.add("pool", "pool", (cin, side, side), (cin,))
        if num_classes:
            b.add("head", "linear", (cin,), (num_classes,), cin * num_classes + num_classes, cin * num_classes)

    return _ops(emit, source)


def operators(cfg: EdgeViTConfig, in_chans: int = 3) -> list[Op]:
    """Every operator of ``cfg`` in execution order, with shapes, parameters and MACs."""
    ops: list[Op] = []

    def extend(new: list[Op]) -> str:
        ops.extend(new)
        return new[-1].name

    last, cin, side = "input", in_chans, cfg.resolution
    for i, st in enumerate(cfg.stages):
        stride = STAGE_STRIDES[0] if i == 0 else 2
        p = f"stages.{i}."
        last = extend(downsample_ops(cin, st.width, stride, side, p + "downsample.", last))
        side //= stride
        for j, kind in enumerate(st.blocks):
            q = f"{p}blocks.{j}."
            if kind in ("lgl", "local"):
                last = extend(local_agg_ops(st, side, q + "local_agg.", last))
            if kind in ("lgl", "global"):
                last = extend(self_attn_ops(st, side, q + "self_attn.", last))
        cin = st.width
    extend(head_ops(cin, side, cfg.num_classes, last))
    return ops


def to_networkx(cfg: EdgeViTConfig, in_chans: int = 3) -> nx.DiGraph:
    """The operator graph: a node per :class:`Op` (attributes: kind, shapes, params, macs, attrs) plus ``input``.

    Edges follow data flow, residual additions included, so the graph is a DAG from ``input`` to the
    last op. Graph-level metadata (id, resolution) sits in ``G.graph``.
    """
    g = nx.DiGraph(arch_id=cfg.arch_id, resolution=cfg.resolution, num_classes=cfg.num_classes)
    g.add_node("input", kind="input", in_shape=(in_chans, cfg.resolution, cfg.resolution),
               out_shape=(in_chans, cfg.resolution, cfg.resolution), params=0, macs=0, stage=None)
    for op in operators(cfg, in_chans):
        g.add_node(op.name, kind=op.kind, in_shape=op.in_shape, out_shape=op.out_shape,
                   params=op.params, macs=op.macs, stage=op.stage, **op.attrs)
        for src in op.inputs:
            g.add_edge(src, op.name)
    return g
