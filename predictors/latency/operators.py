"""Operator-level latency: the nn-Meter idea for this space, learned from per-operator profiles.

nn-Meter (Zhang et al., MobiSys 2021) predicts a network's latency as the sum of its kernels'
latencies, each from a regressor per kernel type on the kernel's shape, because kernels generalise to
networks never measured while whole-network models do not. Here the kernels' times come from the
profiles the farm stores beside each measurement (``nas farm sample --profile-ops``: onnxruntime's
per-node times, the median of 20 profiled runs):

1. :func:`attribute` maps every profiled ONNX node onto the operator of
   :func:`search_space.operators` it implements, by the module path in the node's name
   (``/stages/stages.0/blocks/blocks.0/local_agg/conv1/...`` -> ``stages.0.blocks.0.local_agg.conv1``);
   nodes inside a module that is not itself an operator go to the operator that does its work
   (softmax, matmuls and reshapes of ``attn`` to ``attn.core``, its slice to ``attn.sample``, the
   adds of a half-block shared among its residual adds, a downsample's transposes to its LayerNorm).
   Nodes the graph optimiser created without a module path (layout reorders, transposes and reshapes
   around fused GEMMs) are the network's *glue*.
2. Each operator's target is its share of the profiled time times the network's measured latency:
   profiling inflates small nodes, so the profile says how the time splits, the measurement how much
   there is. The inflation is a roughly fixed cost per profiled node (the profiler's own timing and
   bookkeeping); :func:`profiling_overhead_us` estimates it from the training profiles (the time of
   the nodes that do no work) and it is taken off every node before the split. Without it a network
   of many small nodes -- narrow and deep -- was predicted 31 % too slow on the held-out set of issue
   #13 (``bench/latency_predictors.py``).
3. One regressor per operator kind (:class:`KindRegressor`): non-negative rates on MACs, elements
   moved and a launch, so that it extrapolates like work does, times boosted trees on the log
   residual from the operator's shape (channels, tokens, kernel, stride, heads). The glue is
   non-negative rates on the network's operator counts per kind.
4. The network is the sum; a whole-network affine map (``a * sum + b``, relative least squares)
   absorbs what the sum misses on average (the session's per-run overhead).

Fast enough for a search: operators are enumerated once per distinct half-block shape and their
predicted times cached per model, as :mod:`predictors.latency.features` does for features.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import nnls
from sklearn.base import BaseEstimator
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.model_selection import KFold

from search_space import OP_KINDS, EdgeViTConfig, Op, StageConfig, operators
from search_space.config import STAGE_STRIDES
from search_space.graph import downsample_ops, head_ops, local_agg_ops, self_attn_ops

from ..base import LatencyEstimator, ModelFileError, check_configs, check_targets, fitted, register, state_array, \
    state_number
from .trees import TreeEnsemble

__all__ = ["module_path", "attribute", "op_features", "KindRegressor", "OperatorLatencyModel", "OP_FEATURES",
           "NO_WORK_OPS", "profiling_overhead_us"]


# ----------------------------------------------------------------------------------------- attribution
def module_path(node: str) -> str:
    """The dotted PyTorch module path in an ONNX node name exported by torch (``""``: top level or none).

    ``/stages/stages.0/blocks/blocks.0/local_agg/conv1/Conv_output_0_nchwc`` ->
    ``stages.0.blocks.0.local_agg.conv1``: the exporter writes each module both as its attribute
    (``stages``) and its indexed name (``stages.0``); the last part is the node itself.
    """
    if not node.startswith("/"):
        return ""
    parts = node[1:].split("/")[:-1]
    out: list[str] = []
    for p in parts:
        if out and p.startswith(out[-1].rsplit(".", 1)[-1] + ".") and p.rsplit(".", 1)[-1].isdigit():
            out[-1] = out[-1] + "." + p.rsplit(".", 1)[-1]
        elif p:
            out.append(p)
    return ".".join(out)


#: ONNX op types that the optimiser fuses and renames without a module path, but that implement one
#: operator kind: their total time is shared among that kind's operators by element count.
_UNNAMED_KINDS = {"Gelu": "gelu", "FastGelu": "gelu"}


def attribute(cfg: EdgeViTConfig, nodes: Sequence[Mapping[str, Any]]) -> tuple[dict[str, float], float]:
    """Time (the nodes' ``median_us``) per operator of ``cfg``, and the glue time (module docstring)."""
    ops = {op.name: op for op in operators(cfg)}
    adds: dict[str, list[str]] = {}
    for op in ops.values():
        if op.kind == "add":
            adds.setdefault(op.name.rsplit(".", 1)[0], []).append(op.name)
    per = dict.fromkeys(ops, 0.0)
    glue = 0.0
    unnamed: dict[str, float] = {}
    for node in nodes:
        t = float(node["median_us"])
        op_type = str(node.get("op_type", ""))
        path = module_path(str(node["node"]))
        if not path and op_type in _UNNAMED_KINDS:
            unnamed[_UNNAMED_KINDS[op_type]] = unnamed.get(_UNNAMED_KINDS[op_type], 0.0) + t
            continue
        target = None
        while path:  # the deepest module on the path that names an operator (or does one's work)
            if path in ops:
                target = path
            elif path.endswith(".attn") and path + ".core" in ops:
                target = path + ".sample" if op_type == "Slice" and path + ".sample" in ops else path + ".core"
            elif path in adds:
                if op_type == "Add":  # the residual adds of a half-block have one shape: share equally
                    for name in adds[path]:
                        per[name] += t / len(adds[path])
                    target = ""
            elif path.endswith(".downsample") and path + ".norm" in ops:
                target = path + ".norm"  # the permutes around LayerNorm over channels
            if target is not None or path in adds:
                break
            path = path.rsplit(".", 1)[0] if "." in path else ""
        if target is None and not path and op_type in ("ReduceMean", "GlobalAveragePool", "Flatten") and "pool" in ops:
            target = "pool"
        if target is None:
            glue += t
        elif target:
            per[target] += t
    for kind, t in unnamed.items():
        group = [op for op in ops.values() if op.kind == kind]
        if not group:
            glue += t
            continue
        sizes = np.array([float(np.prod(op.out_shape)) for op in group])
        for op, share in zip(group, sizes / sizes.sum()):
            per[op.name] += t * share
    return per, glue


#: onnxruntime ops that only relabel a tensor (their output aliases the input): their profiled time is
#: what profiling and dispatch cost a node that does no work.
NO_WORK_OPS: tuple[str, ...] = ("Squeeze", "Unsqueeze", "Identity")


def profiling_overhead_us(profiles: Sequence[Sequence[Mapping[str, Any]]], y: Sequence[float]) -> float:
    """The profiler's cost per node (us), taken off every node before a profile splits a measurement.

    The median profiled time of the nodes that do no work (:data:`NO_WORK_OPS`) when the profiles
    hold at least 20 of them; otherwise ``d`` of ``sum(node us) = a * measured ms * 1000 + d * nodes + c``
    (relative least squares over the networks; noisier, as the measured latency and the profile come
    from different runs). Clipped to [0, the 10th percentile of all node times].
    """
    times = np.array([float(n["median_us"]) for p in profiles for n in p])
    if not len(times):
        return 0.0
    idle = [float(n["median_us"]) for p in profiles for n in p if n.get("op_type") in NO_WORK_OPS]
    if len(idle) >= 20:
        d = float(np.median(idle))
    else:
        total = np.array([sum(float(n["median_us"]) for n in p) for p in profiles])
        count = np.array([len(p) for p in profiles], float)
        y = np.asarray(y, float)
        if len(total) < 5 or np.ptp(count) == 0:
            return 0.0
        w = 1.0 / total
        A = np.stack([y * 1e3, count, np.ones(len(y))], axis=1) * w[:, None]
        d = float(np.linalg.lstsq(A, total * w, rcond=None)[0][1])
    return float(np.clip(d, 0.0, np.percentile(times, 10)))


def _without_overhead(nodes: Sequence[Mapping[str, Any]], d_us: float) -> list[dict[str, Any]]:
    """``nodes`` with ``d_us`` taken off each node's time (kept at least a quarter of it)."""
    if d_us <= 0:
        return list(nodes)
    return [{**n, "median_us": max(float(n["median_us"]) - d_us, 0.25 * float(n["median_us"]))} for n in nodes]


# ----------------------------------------------------------------------------------------- features
OP_FEATURES: tuple[str, ...] = ("log_macs", "log_in", "log_out", "log_params", "log_cin", "log_cout", "log_spatial",
                                "kernel", "stride", "log_heads", "log_head_dim")


def _channels_spatial(op: Op) -> tuple[float, float, float]:
    """(input channels, output channels, spatial positions) from the operator's shapes."""
    i, o = op.in_shape, op.out_shape
    if op.kind in ("conv", "dwconv", "pwconv", "conv_transpose", "batchnorm") or (len(i) == 3 and op.kind != "attention"):
        cin = i[0] if len(i) == 3 else i[-1]
        cout = o[0] if len(o) == 3 else o[-1]
        spatial = o[1] * o[2] if len(o) == 3 else (o[0] if len(o) == 2 else 1)
        return cin, cout, spatial
    if len(i) == 2:  # tokens x channels
        return i[1], o[-1], o[0] if len(o) == 2 else 1
    return i[-1], o[-1], 1


def op_features(op: Op) -> list[float]:
    cin, cout, spatial = _channels_spatial(op)
    a = op.attrs
    return [math.log1p(op.macs), math.log(max(int(np.prod(op.in_shape)), 1)), math.log(max(int(np.prod(op.out_shape)), 1)),
            math.log1p(op.params), math.log(max(cin, 1)), math.log(max(cout, 1)), math.log(max(spatial, 1)),
            float(a.get("kernel", 0)), float(a.get("stride", 0)), math.log(max(a.get("heads", 1), 1)),
            math.log(max(a.get("head_dim", 1), 1))]


def _work(op: Op) -> list[float]:
    """What the rate part multiplies: MACs, elements read and written, one launch."""
    return [float(op.macs), float(np.prod(op.in_shape) + np.prod(op.out_shape)), 1.0]


def _nnls_rel(W: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative rates minimising the squared relative error of ``W @ rates`` against ``y``."""
    A = W / y[:, None]
    scale = np.abs(A).max(axis=0)
    scale[scale == 0] = 1.0
    coef, _ = nnls(A / scale, np.ones(len(y)))
    return coef / scale


class KindRegressor(BaseEstimator):
    """Time (ms) of one operator kind: non-negative rates on its work times exp(boosted trees on the
    log residual from its shape). Part of :class:`OperatorLatencyModel`, persisted in its state."""

    def __init__(self, n_estimators: int = 150, max_depth: int = 3, learning_rate: float = 0.05,
                 random_state: int = 0):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.random_state = random_state

    def fit(self, W: np.ndarray, X: np.ndarray, y: np.ndarray) -> "KindRegressor":
        self.rates_ = _nnls_rel(W, y)
        base = np.maximum(W @ self.rates_, 1e-9)
        resid = np.log(y / base)
        if len(y) >= 20:
            gbm = GradientBoostingRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                            learning_rate=self.learning_rate, subsample=0.8, min_samples_leaf=5,
                                            random_state=self.random_state).fit(X, resid)
            self.trees_ = TreeEnsemble.from_gbr(gbm)
        else:  # too few samples to learn a shape effect: keep the mean residual
            self.trees_ = TreeEnsemble([], float(np.mean(resid)), 1.0, X.shape[1])
        return self

    def predict(self, W: np.ndarray, X: np.ndarray) -> np.ndarray:
        return np.maximum(W @ self.rates_, 1e-9) * np.exp(self.trees_.predict(X))

    def to_dict(self) -> dict[str, Any]:
        return {"params": self.get_params(), "rates": self.rates_.tolist(), "trees": self.trees_.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "KindRegressor":
        params = dict(d["params"])
        if set(params) - set(cls._get_param_names()):
            raise ModelFileError("kind regressor: unknown parameter")
        self = cls(**params)
        self.rates_ = state_array(d, "rates", ndim=1, size=3)
        if np.any(self.rates_ < 0):
            raise ModelFileError("kind regressor: rates must be >= 0")
        self.trees_ = TreeEnsemble.from_dict(d["trees"])
        if self.trees_.n_features != len(OP_FEATURES):
            raise ModelFileError("kind regressor: trees expect another feature count")
        return self


# ----------------------------------------------------------------------------------------- the model
def _half_blocks(cfg: EdgeViTConfig) -> list[tuple[tuple, Any]]:
    """(cache key, builder) per half-block of ``cfg``: the keys repeat across candidates."""
    out: list[tuple[tuple, Any]] = []
    cin, side = 3, cfg.resolution
    for i, st in enumerate(cfg.stages):
        stride = STAGE_STRIDES[0] if i == 0 else 2
        out.append((("edge", cin, st.width, stride, side), lambda c=cin, w=st.width, s=stride, sd=side:
                    downsample_ops(c, w, s, sd)))
        side //= stride
        for kind in st.blocks:
            if kind in ("lgl", "local"):
                out.append((("local", st.width, st.mlp_ratio, st.kernel_size, side),
                            lambda s=st, sd=side: local_agg_ops(StageConfig(s.width, ("local",), s.mlp_ratio,
                                                                            kernel_size=s.kernel_size), sd)))
            if kind in ("lgl", "global"):
                out.append((("attn", st.width, st.mlp_ratio, st.head_dim, st.sr_ratio, side),
                            lambda s=st, sd=side: self_attn_ops(StageConfig(s.width, ("global",), s.mlp_ratio,
                                                                            head_dim=s.head_dim,
                                                                            sr_ratio=s.sr_ratio), sd)))
        cin = st.width
    out.append((("head", cin, side, cfg.num_classes), lambda c=cin, sd=side, n=cfg.num_classes: head_ops(c, sd, n)))
    return out


def _kind_counts(cfg: EdgeViTConfig) -> np.ndarray:
    counts = np.zeros(len(OP_KINDS) + 1)
    for op in operators(cfg):
        counts[OP_KINDS.index(op.kind)] += 1
    counts[-1] = 1.0
    return counts


@register
class OperatorLatencyModel(LatencyEstimator):
    """Sum of per-operator-kind regressors, fitted on per-operator profiles (module docstring).

    ``fit(cfgs, y, profiles)``: ``profiles[i]`` is the list of profiled nodes (``node``, ``op_type``,
    ``median_us``) of ``cfgs[i]``, as :meth:`device_farm.MeasurementStore.op_profile` returns them.
    ``predict(cfgs)`` needs no profile: it enumerates the candidate's operators.
    """

    kind = "operators"
    needs_profiles = True

    def __init__(self, n_estimators: int = 150, max_depth: int = 3, n_folds_sigma: int = 5, random_state: int = 0):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.n_folds_sigma = n_folds_sigma
        self.random_state = random_state

    # -- fit
    def fit(self, cfgs: Sequence[EdgeViTConfig], y: Sequence[float],
            profiles: Sequence[Sequence[Mapping[str, Any]]] | None = None) -> "OperatorLatencyModel":
        cfgs = check_configs(cfgs)
        y = check_targets(y, len(cfgs))
        if profiles is None or len(profiles) != len(cfgs) or any(not p for p in profiles):
            raise ValueError("profiles: the operator model needs one non-empty operator profile per configuration "
                             "(measure with --profile-ops)")
        self.rel_sigma_ = self._cv_sigma(cfgs, y, profiles)
        self._fit(cfgs, y, profiles)
        self.n_train_ = len(y)
        return self

    def _cv_sigma(self, cfgs, y, profiles) -> float:
        if self.n_folds_sigma < 2 or len(y) < 2 * self.n_folds_sigma:
            return float("nan")
        res = []
        for tr, te in KFold(self.n_folds_sigma, shuffle=True, random_state=self.random_state).split(y):
            self._fit([cfgs[i] for i in tr], y[tr], [profiles[i] for i in tr])
            res.append(np.log(self._predict_mean([cfgs[i] for i in te]) / y[te]))
        return float(np.std(np.concatenate(res)))

    def _fit(self, cfgs, y, profiles) -> None:
        W: dict[str, list] = {k: [] for k in OP_KINDS}
        X: dict[str, list] = {k: [] for k in OP_KINDS}
        T: dict[str, list] = {k: [] for k in OP_KINDS}
        glue_t, counts = [], []
        self.profiling_overhead_us_ = profiling_overhead_us(profiles, y)
        for cfg, yi, prof in zip(cfgs, y, profiles):
            per, glue = attribute(cfg, _without_overhead(prof, self.profiling_overhead_us_))
            total = sum(per.values()) + glue
            scale = yi / total  # ms per profiled us: the profile splits the time, the measurement sizes it
            for op in operators(cfg):
                t = per[op.name] * scale
                if t > 0:
                    W[op.kind].append(_work(op))
                    X[op.kind].append(op_features(op))
                    T[op.kind].append(t)
            glue_t.append(max(glue * scale, 1e-6))
            counts.append(_kind_counts(cfg))
        self.kinds_: dict[str, KindRegressor] = {}
        for k in OP_KINDS:
            if len(T[k]) >= 3:
                self.kinds_[k] = KindRegressor(self.n_estimators, self.max_depth, random_state=self.random_state).fit(
                    np.array(W[k]), np.array(X[k]), np.array(T[k]))
        self.glue_ = _nnls_rel(np.array(counts), np.array(glue_t))
        self._cache = {}
        s = self._op_sum(cfgs)
        w = 1.0 / y  # relative least squares for y = a * s + b
        A = np.stack([s, np.ones(len(s))], axis=1) * w[:, None]
        self.affine_ = np.linalg.lstsq(A, y * w, rcond=None)[0]

    # -- predict
    def _op_sum(self, cfgs: Sequence[EdgeViTConfig]) -> np.ndarray:
        cache = self.__dict__.setdefault("_cache", {})
        out = np.zeros(len(cfgs))
        for i, cfg in enumerate(cfgs):
            total = 0.0
            for key, build in _half_blocks(cfg):
                if key not in cache:
                    cache[key] = self._ops_time(build())
                total += cache[key]
            out[i] = total + float(_kind_counts(cfg) @ self.glue_)
        return out

    def _ops_time(self, ops: list[Op]) -> float:
        total = 0.0
        by_kind: dict[str, list[Op]] = {}
        for op in ops:
            by_kind.setdefault(op.kind, []).append(op)
        for k, group in by_kind.items():
            reg = self.kinds_.get(k)
            if reg is None:
                continue  # a kind never seen in a profile costs what the glue and the affine map give it
            total += float(reg.predict(np.array([_work(o) for o in group]),
                                       np.array([op_features(o) for o in group])).sum())
        return total

    def _predict_mean(self, cfgs: Sequence[EdgeViTConfig]) -> np.ndarray:
        a, b = self.affine_
        return np.maximum(a * self._op_sum(cfgs) + b, 1e-6)

    def predict(self, cfgs: Sequence[EdgeViTConfig]) -> tuple[np.ndarray, np.ndarray]:
        fitted(self)
        cfgs = check_configs(cfgs)
        if not cfgs:
            return np.zeros(0), np.zeros(0)
        mean = self._predict_mean(cfgs)
        return mean, mean * self.rel_sigma_

    def describe(self) -> str:
        return (f"operator-level latency model: {len(self.kinds_)} kind regressors fitted on the operator profiles of "
                f"{self.n_train_} measured networks (profiler cost {self.profiling_overhead_us_:.1f} us per node taken off), "
                f"cross-validated relative sigma {self.rel_sigma_:.3f}")

    # -- persistence
    def _get_state(self) -> dict[str, Any]:
        return {"kinds": {k: r.to_dict() for k, r in self.kinds_.items()}, "glue": self.glue_.tolist(),
                "affine": self.affine_.tolist(), "rel_sigma": self.rel_sigma_, "n_train": self.n_train_,
                "profiling_overhead_us": self.profiling_overhead_us_,
                "op_kinds": list(OP_KINDS), "features": list(OP_FEATURES)}

    def _set_state(self, s: Mapping[str, Any]) -> None:
        if list(s.get("op_kinds", [])) != list(OP_KINDS) or list(s.get("features", [])) != list(OP_FEATURES):
            raise ModelFileError("state: saved with other operator kinds or features; retrain the model")
        kinds = s["kinds"]
        if not isinstance(kinds, dict) or not set(kinds) <= set(OP_KINDS):
            raise ModelFileError(f"state.kinds: expected a JSON object keyed by operator kinds ({', '.join(OP_KINDS)})")
        self.kinds_ = {k: KindRegressor.from_dict(v) for k, v in kinds.items()}
        self.glue_ = state_array(s, "glue", ndim=1, size=len(OP_KINDS) + 1)
        self.affine_ = state_array(s, "affine", ndim=1, size=2)
        self.rel_sigma_ = state_number(s, "rel_sigma", 0.0, 100.0, allow_nan=True)
        self.n_train_ = int(state_number(s, "n_train", 1, 1e9))
        # fitted before the correction existed: no node time was taken off
        self.profiling_overhead_us_ = (state_number(s, "profiling_overhead_us", 0.0, 1e6)
                                       if "profiling_overhead_us" in s else 0.0)
        self._cache = {}
