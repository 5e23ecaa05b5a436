"""Per-block-type latency regressors of one phone, and the rate model for what no block covers.

:class:`BlockRegressor` fits one block type. Candidates: ``rate`` (non-negative least squares of
latency on the block's work counts: dense MACs, depthwise MACs, matmul MACs, activation elements,
attention-score elements, kernels, weights; relative weighting), ``ridge`` (ridge on standardised log
features, degree-2 terms when there are >= 200 rows), ``gbm`` and ``rf`` (gradient boosting /
random forest on the features, log target) and ``hybrid`` (the ``rate`` model times
exp(gradient boosting on its log residual): linear-in-work extrapolation, trees for the rest).
``model="auto"`` keeps the candidate with the smallest 99th-percentile relative error on an inner
random validation split of the training rows plus the mean 99th-percentile error on the type's
inner extrapolation splits (:data:`EXTRAPOLATION_SPLITS`: largest hw and channels for every type;
for ``conv`` also the smallest hw, the largest kernel and the smallest expansion): EdgeViT queries
leave the measured grid, and a ridge or tree model that interpolates well can extrapolate badly (on
the s21 ``conv`` table, inner validation, ridge had the best random-split 99th-percentile error,
0.083, and 5.8 -- i.e. 580 % -- on the hw split; the hybrid, 0.087 and 0.17, won once extrapolation
counted). Every split the type reports counts, not only the largest hw and channels: a LocalAgg at
stage 3 queries conv at hw 5-8, below every table's 16, where a random forest cannot go lower
(issue #14, eighth round: on the Intel Xeon's densified table the selection on two splits chose
a forest that priced such a LocalAgg half-block at 5.9x its measured time after the network-level
scalar; selecting on all five, the hybrid priced it at 1.3x; bench/RESULTS.md).
:class:`PhoneLatencyPredictor` does this per block type on a random 80 % of a phone's table
(seed fixed), reports the held-out 20 % and extrapolation splits
(train on the smaller values of hw / channels / kernel / expansion / v_scale, test on the largest or
smallest), then refits the chosen kind on every row.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.optimize import nnls
from sklearn.base import BaseEstimator
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import Ridge

from ...base import ModelFileError, state_array
from ...metrics import regression_metrics
from ..trees import TreeEnsemble
from .blocks import BLOCK_TYPES, WORK_FIELDS, BlockSpec, Work, block_work

__all__ = ["random_split", "extrapolation_split", "EXTRAPOLATION_SPLITS", "RANGE_FEATURES", "feature_value",
           "MODEL_KINDS", "BlockRegressor", "RateModel"]


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

RANGE_FEATURES = ("hw", "channels", "kernel", "expansion", "v_scale", "stride")


def feature_value(spec: BlockSpec, name: str) -> float:
    return float(spec.channels if name == "channels" else getattr(spec, name))


# ----------------------------------------------------------------------------------------- models
_FEATURES = ("log_hw", "log_cin", "log_cout", "expansion", "stride", "kernel", "se", "v_scale",
             "log_macs", "log_dense", "log_dw", "log_mm", "log_elems", "log_attn", "log_params")


#: Columns appended for attention blocks when a table has its own (:attr:`BlockRegressor.heads_`).
_HEAD_FEATURES = ("log_heads", "log_head_dim", "pos_bias")


def _features(specs: Sequence[BlockSpec], works: Sequence[Work], heads: bool = False) -> np.ndarray:
    """The regressors' inputs; ``heads``: with :data:`_HEAD_FEATURES` (a table with attention of its own)."""
    rows = []
    for s, w in zip(specs, works):
        rows.append([
            math.log(s.hw), math.log(s.cin), math.log(s.cout), s.expansion, s.stride, s.kernel, float(s.se),
            s.v_scale, math.log1p(w.macs), math.log1p(w.dense_macs), math.log1p(w.dw_macs), math.log1p(w.mm_macs),
            math.log1p(w.elems), math.log1p(w.attn_elems), math.log1p(w.params),
        ] + ([math.log(s.attention_heads), math.log(s.cin / s.attention_heads), float(s.pos_bias)] if heads else []))
    return np.asarray(rows, float).reshape(len(rows), len(_FEATURES) + (len(_HEAD_FEATURES) if heads else 0))


def _work_matrix(works: Sequence[Work]) -> np.ndarray:
    return np.asarray([w.vector() for w in works], float).reshape(len(works), len(WORK_FIELDS))


def _nnls_rates(W: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Non-negative rates minimising the (weighted) squared relative error of ``W @ rates`` against ``y``."""
    sw = np.ones(len(y)) if weights is None else np.sqrt(np.asarray(weights, float))
    A = W / y[:, None] * sw[:, None]
    scale = np.abs(A).max(axis=0)
    scale[scale == 0] = 1.0
    coef, _ = nnls(A / scale, sw)
    return coef / scale


def _poly2(Z: np.ndarray, degree: int) -> np.ndarray:
    if degree == 1:
        return Z
    i, j = np.triu_indices(Z.shape[1])
    return np.hstack([Z, Z[:, i] * Z[:, j]])


MODEL_KINDS: tuple[str, ...] = ("rate", "ridge", "gbm", "rf", "hybrid")


class BlockRegressor(BaseEstimator):
    """Latency (ms) of one block type from its shape; a scikit-learn estimator with JSON persistence.

    ``model``: one of :data:`MODEL_KINDS` or ``"auto"``: the kind with the smallest score = the
    99th-percentile relative error on an inner random validation split (``val_size`` of the rows
    given to ``fit``) plus the mean 99th-percentile error of the type's inner extrapolation splits
    (:data:`EXTRAPOLATION_SPLITS`, each with >= 20 training rows). ``validation_`` keeps every candidate's numbers. A component of
    :class:`~predictors.latency.phone.model.PhoneLatencyPredictor`, which persists it in its state.
    """

    def __init__(self, block_type: str = "conv", model: str = "auto", val_size: float = 0.2, random_state: int = 0,
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

    # -- fitting one kind
    def _fit_kind(self, kind: str, specs, works, y) -> dict[str, Any]:
        X = _features(specs, works, self.heads_)
        ly = np.log(y)
        st: dict[str, Any] = {"kind": kind, "heads": self.heads_, "nopos": self.nopos_}
        if kind in ("rate", "hybrid"):
            st["rates"] = _nnls_rates(_work_matrix(works), y)
            if kind == "rate":
                return st
            base = np.maximum(_work_matrix(works) @ st["rates"], 1e-9)
            ly = ly - np.log(base)
        if kind == "ridge":
            mu, sd = X.mean(axis=0), X.std(axis=0)
            sd[sd == 0] = 1.0
            degree = 2 if len(y) >= 200 else 1
            r = Ridge(alpha=self.ridge_alpha).fit(_poly2((X - mu) / sd, degree), ly)
            st.update(mu=mu, sd=sd, degree=degree, coef=r.coef_.astype(float), intercept=float(r.intercept_))
            return st
        if kind in ("gbm", "hybrid"):
            if len(y) < 4:  # nothing to boost: keep the mean residual
                st["trees"] = TreeEnsemble([], float(np.mean(ly)), 1.0, len(_FEATURES))
                return st
            g = GradientBoostingRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                          learning_rate=self.learning_rate, subsample=self.subsample,
                                          max_features=self.max_features, random_state=self.random_state).fit(X, ly)
            st["trees"] = TreeEnsemble.from_gbr(g)
            return st
        if kind == "rf":
            f = RandomForestRegressor(n_estimators=self.rf_estimators, min_samples_leaf=2, max_features=0.6,
                                      random_state=self.random_state, n_jobs=1).fit(X, ly)
            st["trees"] = TreeEnsemble.from_forest(f)
            return st
        raise ValueError(f"model={kind!r}: allowed: auto, {', '.join(MODEL_KINDS)}")

    @staticmethod
    def _predict_state(st: Mapping[str, Any], specs, works) -> np.ndarray:
        kind = st["kind"]
        if kind == "rate":
            return np.maximum(_work_matrix(works) @ st["rates"], 1e-9)
        X = _features(specs, works, st.get("heads", False))
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
        if len(specs) != len(y) or not len(y) or not np.all(np.isfinite(y)) or np.any(y <= 0):
            raise ValueError(f"y: expected {len(specs)} finite latencies > 0, got {len(y)}")
        works = [block_work(s) for s in specs]
        # In nn-Meter's tables every attention block has C/16 heads (a function of C) and the position
        # bias: head count and bias are inputs only where the table varies them (a device's own
        # attention blocks, key suffixes _h and _nopos).
        self.heads_ = self.block_type == "transattn" and any(s.heads or not s.pos_bias for s in specs)
        self.nopos_ = self.block_type == "transattn" and any(not s.pos_bias for s in specs)
        self.validation_: dict[str, dict[str, float]] = {}
        if self.model == "auto":
            small = len(y) < 40
            kinds = ("rate", "ridge", "hybrid") if small else MODEL_KINDS
            # Inner splits of the rows given to fit: a random one and, for enough rows, the type's
            # extrapolation splits, since candidates leave the grid in each of those directions.
            splits = {"random": random_split(len(y), self.val_size, self.random_state + 1)}
            if not small:
                for feat, direction in EXTRAPOLATION_SPLITS.get(self.block_type, ()):
                    etr, eva = extrapolation_split([feature_value(s, feat) for s in specs], direction)
                    if len(eva) and len(etr) >= 20:
                        splits[f"{feat}_{direction}"] = (etr, eva)
            best, best_score = None, math.inf
            for kind in kinds:
                scores = {}
                for name, (tr, va) in splits.items():
                    st = self._fit_kind(kind, [specs[i] for i in tr], [works[i] for i in tr], y[tr])
                    pred = self._predict_state(st, [specs[i] for i in va], [works[i] for i in va])
                    scores[name] = regression_metrics(y[va], pred)
                extra = [m.p99_rel for n, m in scores.items() if n != "random"]
                score = scores["random"].p99_rel + (float(np.mean(extra)) if extra else 0.0)
                self.validation_[kind] = {"score": score, **{f"{n}_p99_rel": m.p99_rel for n, m in scores.items()}}
                if best is None or score < best_score:
                    best, best_score = kind, score
            kind = best
        else:
            kind = self.model
        self.kind_ = kind
        self.state_ = self._fit_kind(kind, specs, works, y)
        self.n_train_ = int(len(y))
        self.ranges_ = {f: [min(feature_value(s, f) for s in specs), max(feature_value(s, f) for s in specs)]
                        for f in RANGE_FEATURES}
        return self

    def predict(self, specs: Sequence[BlockSpec]) -> np.ndarray:
        """ms per block; an attention query without the position bias is priced with it where the table
        never measured one without (every phone table): the block the table holds, as before ``_nopos``."""
        specs = [s if s.pos_bias or self.nopos_ else replace(s, pos_bias=True) for s in specs]
        if not specs:
            return np.zeros(0)
        return self._predict_state(self.state_, specs, [block_work(s) for s in specs])

    def out_of_range(self, spec: BlockSpec) -> list[tuple[str, str]]:
        """(feature, 'max'|'min') for every feature of ``spec`` outside the range this regressor was fitted on."""
        out = []
        for f, (lo, hi) in self.ranges_.items():
            v = feature_value(spec, f)
            if v > hi:
                out.append((f, "max"))
            elif v < lo:
                out.append((f, "min"))
        return out

    # -- persistence (inside the phone model's state)
    def to_dict(self) -> dict[str, Any]:
        st = {}
        for k, v in self.state_.items():
            if isinstance(v, np.ndarray):
                st[k] = v.tolist()
            elif isinstance(v, TreeEnsemble):
                st[k] = v.to_dict()
            else:
                st[k] = v
        return {"params": self.get_params(), "kind": self.kind_, "n_train": self.n_train_, "ranges": self.ranges_,
                "validation": self.validation_, "state": st}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BlockRegressor":
        params = dict(d["params"])
        unknown = set(params) - set(cls._get_param_names())
        if unknown:
            raise ModelFileError(f"block regressor: unknown parameter {sorted(unknown)[0]!r}")
        self = cls(**params)
        kind = d["kind"]
        if kind not in MODEL_KINDS:
            raise ModelFileError(f"block regressor kind={str(kind)[:20]!r}: allowed: {', '.join(MODEL_KINDS)}")
        self.kind_, self.n_train_ = kind, int(d["n_train"])
        self.ranges_ = {k: [float(a) for a in d["ranges"][k]] for k in RANGE_FEATURES}
        self.validation_ = {k: dict(v) for k, v in d["validation"].items()}
        raw = d["state"]
        self.heads_ = bool(raw.get("heads", False))
        self.nopos_ = bool(raw.get("nopos", False))
        st: dict[str, Any] = {"kind": kind, "heads": self.heads_, "nopos": self.nopos_}
        n_feat = len(_FEATURES) + (len(_HEAD_FEATURES) if self.heads_ else 0)
        if kind in ("rate", "hybrid"):
            st["rates"] = state_array(raw, "rates", ndim=1, size=len(WORK_FIELDS))
        if kind == "ridge":
            st["degree"] = int(raw["degree"])
            if st["degree"] not in (1, 2):
                raise ModelFileError("block regressor: ridge degree must be 1 or 2")
            n_coef = n_feat if st["degree"] == 1 else n_feat + n_feat * (n_feat + 1) // 2
            st["mu"] = state_array(raw, "mu", ndim=1, size=n_feat)
            st["sd"] = state_array(raw, "sd", ndim=1, size=n_feat)
            st["coef"] = state_array(raw, "coef", ndim=1, size=n_coef)
            st["intercept"] = float(raw["intercept"])
        if kind in ("gbm", "hybrid", "rf"):
            st["trees"] = TreeEnsemble.from_dict(raw["trees"])
            if st["trees"].n_features != n_feat:
                raise ModelFileError(f"block regressor: trees expect {st['trees'].n_features} features, not {n_feat}")
        self.state_ = st
        return self


class RateModel(BaseEstimator):
    """Per-phone rates (ms per dense MAC, depthwise MAC, matmul MAC, element, score element, kernel, weight).

    Non-negative least squares on the relative error of the phone's measured conv-like blocks
    (``firstconv``, ``conv``, ``transds``, ``mbpool``: dense, depthwise and 1x1 convs, Linear on one
    token, element-wise ops), each block type weighted equally. Applied to EdgeViT operators that no
    measured block covers ("transferred"). The matmul and score-element rates stay 0 (no attention
    in these blocks); no transferred part contains attention.
    """

    def __init__(self, block_types: Sequence[str] = ("firstconv", "conv", "transds", "mbpool")):
        self.block_types = block_types

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
        types = [t for t in d["block_types"] if t in BLOCK_TYPES]
        if len(types) != len(d["block_types"]):
            raise ModelFileError(f"rate model: block_types must be among {', '.join(BLOCK_TYPES)}")
        self = cls(tuple(types))
        self.rates_ = state_array({"rates": [d["rates"][f] for f in WORK_FIELDS]}, "rates", ndim=1)
        if np.any(self.rates_ < 0):
            raise ModelFileError("rate model: rates must be >= 0")
        self.n_train_ = int(d["n_train"])
        return self
