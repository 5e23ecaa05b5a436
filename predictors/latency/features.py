"""Feature vectors of candidates for the latency/energy predictors, fast enough for a search.

Two views of one candidate, both derived from :func:`search_space.graph.operators` so that the
predictors see exactly the operators the model executes:

- **kernel features**: for each operator kind (conv, dwconv, pwconv, linear, attention, ...), the sum
  over the candidate's operators of that kind of (MACs, memory traffic in elements, count). A latency
  that is a sum of per-kernel costs is linear in these, which is what the kernel-level predictor fits.
- **graph features**: whole-network descriptors (resolution, totals, per-stage width, depth, kinds,
  tokens seen by attention) for the whole-graph baseline and for the learned correction.

Speed: blocks of one kind within a stage are identical, so operators are enumerated once per
(stage, half-block kind) and multiplied by their count, not once per block.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from search_space import OP_KINDS, EdgeViTConfig, StageConfig
from search_space.config import STAGE_STRIDES
from search_space.graph import downsample_ops, head_ops, local_agg_ops, operators, self_attn_ops

__all__ = ["KERNEL_FEATURE_NAMES", "GRAPH_FEATURE_NAMES", "kernel_features", "graph_features", "feature_matrix"]

_PER_KIND = ("macs", "elems", "count", "params")
_W = len(_PER_KIND)
KERNEL_FEATURE_NAMES: tuple[str, ...] = tuple(f"{k}.{f}" for k in OP_KINDS for f in _PER_KIND)
_KIND_INDEX = {k: i for i, k in enumerate(OP_KINDS)}


def _elems(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _ops_vector(ops) -> np.ndarray:
    v = np.zeros(len(KERNEL_FEATURE_NAMES))
    for op in ops:
        i = _W * _KIND_INDEX[op.kind]
        v[i] += op.macs
        v[i + 1] += _elems(op.in_shape) + _elems(op.out_shape) + op.params  # elements read and written
        v[i + 2] += 1
        v[i + 3] += op.params
    return v


@lru_cache(maxsize=65536)
def _local_vector(width: int, mlp_ratio: float, kernel: int, side: int) -> np.ndarray:
    # Keyed by the few numbers a LocalAgg half depends on, so the cache hits across candidates.
    return _ops_vector(local_agg_ops(StageConfig(width, ("local",), mlp_ratio, kernel_size=kernel), side))


@lru_cache(maxsize=65536)
def _attn_vector(width: int, mlp_ratio: float, head_dim: int, sr: int, side: int) -> np.ndarray:
    stage = StageConfig(width, ("global",), mlp_ratio, head_dim=head_dim, sr_ratio=sr)
    return _ops_vector(self_attn_ops(stage, side))


@lru_cache(maxsize=65536)
def _edge_vector(cin: int, cout: int, stride: int, side_in: int) -> np.ndarray:
    return _ops_vector(downsample_ops(cin, cout, stride, side_in))


@lru_cache(maxsize=4096)
def _head_vector(cin: int, side: int, num_classes: int) -> np.ndarray:
    return _ops_vector(head_ops(cin, side, num_classes))


def kernel_features(cfg: EdgeViTConfig) -> np.ndarray:
    """Per-kind (MACs, elements moved, count, params) sums; equals summing :func:`operators` (tested)."""
    v = np.zeros(len(KERNEL_FEATURE_NAMES))
    cin, side = 3, cfg.resolution
    for i, st in enumerate(cfg.stages):
        stride = STAGE_STRIDES[0] if i == 0 else 2
        v += _edge_vector(cin, st.width, stride, side)
        side //= stride
        n_local = sum(k in ("lgl", "local") for k in st.blocks)
        n_attn = sum(k in ("lgl", "global") for k in st.blocks)
        if n_local:
            v += n_local * _local_vector(st.width, st.mlp_ratio, st.kernel_size, side)
        if n_attn:
            v += n_attn * _attn_vector(st.width, st.mlp_ratio, st.head_dim, st.sr_ratio, side)
        cin = st.width
    v += _head_vector(cin, side, cfg.num_classes)
    return v


GRAPH_FEATURE_NAMES: tuple[str, ...] = (
    "resolution", "log_macs", "log_params", "log_elems", "n_ops",
    *[f"s{i + 1}.{f}" for i in range(4) for f in ("width", "depth", "n_local", "n_attn", "attn_tokens", "mlp_ratio",
                                                  "kernel", "head_dim")],
)


def graph_features(cfg: EdgeViTConfig, kf: np.ndarray | None = None) -> np.ndarray:
    kf = kernel_features(cfg) if kf is None else kf
    macs, elems, n_ops, params = (kf[j::_W].sum() for j in range(_W))
    out = [cfg.resolution, np.log(macs), np.log(params), np.log(elems), n_ops]
    for i, st in enumerate(cfg.stages):
        side = cfg.feature_side(i)
        out += [st.width, st.depth, sum(k in ("lgl", "local") for k in st.blocks),
                sum(k in ("lgl", "global") for k in st.blocks),
                (side // st.sr_ratio) ** 2 if st.has_attention else 0, st.mlp_ratio, st.kernel_size or 0,
                st.head_dim or 0]
    return np.asarray(out, dtype=float)


def feature_matrix(cfgs: list[EdgeViTConfig]) -> tuple[np.ndarray, np.ndarray]:
    """``(kernel features, graph features)`` for a batch, one row per candidate."""
    kf = np.stack([kernel_features(c) for c in cfgs])
    gf = np.stack([graph_features(c, k) for c, k in zip(cfgs, kf)])
    return kf, gf


def _reference_kernel_features(cfg: EdgeViTConfig) -> np.ndarray:
    """Slow path over every operator; the tests check the fast path against it."""
    return _ops_vector(operators(cfg))
