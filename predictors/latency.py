"""Latency (and energy) predictors for one device, learned from its measurements.

Four estimators over the same feature path (:mod:`predictors.features`), compared on the same data
by :func:`cross_validate`, because on light ViTs MACs alone already rank CPU latency well and a
learned model is only worth shipping where it beats them:

- ``macs``: a power law in MACs (``log y = a log MACs + b``); the trivial baseline.
- ``linear``: a linear fit on MACs and parameters; the other trivial baseline.
- ``kernel``: the nn-Meter idea applied to whole-network measurements: latency is a sum over
  operator kinds of non-negative costs per MAC, per element moved and per launch (non-negative least
  squares on the per-kind sums).
- ``kernel_corr``: the same sum times a learned correction (gradient-boosted trees on the log ratio,
  from whole-graph features) for what the sum misses: fusion, cache effects, threading.
- ``graph``: gradient-boosted trees on whole-graph features; the whole-graph baseline.

Every estimator follows scikit-learn's contract (constructor stores parameters; ``fit`` returns self;
fitted state ends in ``_``), predicts with an uncertainty (``predict_with_std``: the relative spread
of its own cross-validated residuals), and persists to JSON (``to_dict`` / ``predictor_from_dict``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy.optimize import nnls
from scipy.stats import kendalltau, spearmanr
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.model_selection import KFold

from search_space import EdgeViTConfig

from .features import GRAPH_FEATURE_NAMES, KERNEL_FEATURE_NAMES, feature_matrix
from .trees import TreeEnsemble, gbr_to_dict

__all__ = ["METHODS", "MacsPredictor", "LinearPredictor", "KernelPredictor", "CorrectedKernelPredictor", "GraphPredictor", "Metrics", "metrics",
           "cross_validate", "predictor_from_dict"]


def _check_y(y: Sequence[float], n: int) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    if y.shape != (n,):
        raise ValueError(f"y: expected {n} values, got shape {y.shape}")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("y: latencies must be finite and > 0")
    return y


class _Base:
    name = "base"

    def __init__(self, n_folds_sigma: int = 5, random_state: int = 0):
        self.n_folds_sigma = n_folds_sigma
        self.random_state = random_state

    # Subclasses implement _fit(kf, gf, y) and _predict(kf, gf).
    def fit(self, cfgs: list[EdgeViTConfig], y: Sequence[float]) -> "_Base":
        kf, gf = feature_matrix(list(cfgs))
        y = _check_y(y, len(kf))
        self.rel_sigma_ = self._cv_sigma(kf, gf, y)
        self._fit(kf, gf, y)
        self.n_train_ = len(y)
        return self

    def _cv_sigma(self, kf, gf, y) -> float:
        """Spread of log residuals under K-fold CV: the predictor's own uncertainty estimate."""
        if self.n_folds_sigma < 2 or len(y) < 2 * self.n_folds_sigma:
            return float("nan")
        res = []
        for tr, te in KFold(self.n_folds_sigma, shuffle=True, random_state=self.random_state).split(kf):
            self._fit(kf[tr], gf[tr], y[tr])
            res.append(np.log(self._predict(kf[te], gf[te]) / y[te]))
        return float(np.std(np.concatenate(res)))

    def predict(self, cfgs: list[EdgeViTConfig]) -> np.ndarray:
        kf, gf = feature_matrix(list(cfgs))
        return self._predict(kf, gf)

    def predict_with_std(self, cfgs: list[EdgeViTConfig]) -> tuple[np.ndarray, np.ndarray]:
        pred = self.predict(cfgs)
        return pred, pred * self.rel_sigma_

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.name, "params": {"n_folds_sigma": self.n_folds_sigma, "random_state": self.random_state},
                "rel_sigma": self.rel_sigma_, "n_train": self.n_train_, "state": self._state()}

    def _load(self, d: dict[str, Any]) -> "_Base":
        self.rel_sigma_ = d["rel_sigma"]
        self.n_train_ = d["n_train"]
        self._set_state(d["state"])
        return self


def _log_macs(kf: np.ndarray) -> np.ndarray:
    return np.log(kf[:, 0::4].sum(axis=1))


def _macs_params(kf: np.ndarray) -> np.ndarray:
    return np.stack([kf[:, 0::4].sum(axis=1) / 1e9, kf[:, 3::4].sum(axis=1) / 1e6, np.ones(len(kf))], axis=1)


class MacsPredictor(_Base):
    """``log latency = a log MACs + b``: what "MACs alone" predicts."""

    name = "macs"

    def _fit(self, kf, gf, y):
        self.coef_ = np.polyfit(_log_macs(kf), np.log(y), 1)

    def _predict(self, kf, gf):
        return np.exp(np.polyval(self.coef_, _log_macs(kf)))

    def _state(self):
        return {"coef": self.coef_.tolist()}

    def _set_state(self, s):
        self.coef_ = np.asarray(s["coef"])


class LinearPredictor(_Base):
    """``latency = a GMACs + b Mparams + c`` by least squares: the linear fit on MACs and params."""

    name = "linear"

    def _fit(self, kf, gf, y):
        self.coef_ = np.linalg.lstsq(_macs_params(kf), y, rcond=None)[0]

    def _predict(self, kf, gf):
        return np.maximum(_macs_params(kf) @ self.coef_, 1e-6)

    def _state(self):
        return {"coef": self.coef_.tolist()}

    def _set_state(self, s):
        self.coef_ = np.asarray(s["coef"])


def _gbr(random_state: int, n_estimators: int, max_depth: int) -> GradientBoostingRegressor:
    return GradientBoostingRegressor(n_estimators=n_estimators, max_depth=max_depth, learning_rate=0.05,
                                     subsample=0.8, min_samples_leaf=5, random_state=random_state)


class KernelPredictor(_Base):
    """Sum of per-kernel-kind costs (NNLS) times a learned correction (boosted trees on the log ratio)."""

    name = "kernel"

    def __init__(self, correction: bool = False, n_estimators: int = 100, max_depth: int = 2, n_folds_sigma: int = 5,
                 random_state: int = 0):
        super().__init__(n_folds_sigma, random_state)
        self.correction = correction
        self.n_estimators = n_estimators
        self.max_depth = max_depth

    def _design(self, kf):
        # Per-kind features scaled to comparable magnitudes (GMACs, M elements, counts), plus a constant.
        scale = np.tile([1e-9, 1e-6, 1.0, 0.0], len(kf[0]) // 4)
        keep = scale > 0
        return np.hstack([kf[:, keep] * scale[keep], np.ones((len(kf), 1))])

    def _fit(self, kf, gf, y):
        A = self._design(kf)
        # Weight rows by 1/y so the fit minimises relative, not absolute, error.
        w = 1.0 / y
        self.weights_, _ = nnls(A * w[:, None], y * w)
        self.trees_ = None
        if self.correction:
            base = np.maximum(A @ self.weights_, 1e-6)
            model = _gbr(self.random_state, self.n_estimators, self.max_depth).fit(gf, np.log(y / base))
            self.trees_ = TreeEnsemble(gbr_to_dict(model))

    def sum_of_kernels(self, kf: np.ndarray) -> np.ndarray:
        return np.maximum(self._design(kf) @ self.weights_, 1e-6)

    def _predict(self, kf, gf):
        base = self.sum_of_kernels(kf)
        return base * np.exp(self.trees_.predict(gf)) if self.trees_ is not None else base

    def to_dict(self):
        d = super().to_dict()
        d["params"].update(correction=self.correction, n_estimators=self.n_estimators, max_depth=self.max_depth)
        return d

    def _state(self):
        return {"weights": self.weights_.tolist(), "feature_names": list(KERNEL_FEATURE_NAMES),
                "trees": self.trees_.to_dict() if self.trees_ is not None else None}

    def _set_state(self, s):
        self.weights_ = np.asarray(s["weights"])
        self.trees_ = TreeEnsemble(s["trees"]) if s["trees"] else None


class CorrectedKernelPredictor(KernelPredictor):
    """The kernel sum with its learned correction switched on; compared as its own method, since
    whether the correction helps depends on the device and on how much data there is."""

    name = "kernel_corr"

    def __init__(self, correction: bool = True, n_estimators: int = 100, max_depth: int = 2, n_folds_sigma: int = 5,
                 random_state: int = 0):
        super().__init__(correction, n_estimators, max_depth, n_folds_sigma, random_state)


class GraphPredictor(_Base):
    """Boosted trees on whole-graph features, predicting log latency."""

    name = "graph"

    def __init__(self, n_estimators: int = 400, max_depth: int = 3, n_folds_sigma: int = 5, random_state: int = 0):
        super().__init__(n_folds_sigma, random_state)
        self.n_estimators = n_estimators
        self.max_depth = max_depth

    def _fit(self, kf, gf, y):
        model = _gbr(self.random_state, self.n_estimators, self.max_depth).fit(gf, np.log(y))
        self.trees_ = TreeEnsemble(gbr_to_dict(model))

    def _predict(self, kf, gf):
        return np.exp(self.trees_.predict(gf))

    def to_dict(self):
        d = super().to_dict()
        d["params"].update(n_estimators=self.n_estimators, max_depth=self.max_depth)
        return d

    def _state(self):
        return {"trees": self.trees_.to_dict(), "feature_names": list(GRAPH_FEATURE_NAMES)}

    def _set_state(self, s):
        self.trees_ = TreeEnsemble(s["trees"])


METHODS: dict[str, type[_Base]] = {
    c.name: c for c in (MacsPredictor, LinearPredictor, KernelPredictor, CorrectedKernelPredictor, GraphPredictor)
}


def predictor_from_dict(d: dict[str, Any]) -> _Base:
    if d.get("method") not in METHODS:
        raise ValueError(f"method={d.get('method')!r}: allowed: {', '.join(METHODS)}")
    return METHODS[d["method"]](**d["params"])._load(d)


@dataclass(frozen=True)
class Metrics:
    n: int
    within_5: float
    within_10: float
    rmse_ms: float
    kendall: float
    spearman: float

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def metrics(pred: np.ndarray, y: np.ndarray) -> Metrics:
    rel = np.abs(pred / y - 1)
    return Metrics(len(y), float(np.mean(rel <= 0.05)), float(np.mean(rel <= 0.10)),
                   float(np.sqrt(np.mean((pred - y) ** 2))), float(kendalltau(pred, y)[0]), float(spearmanr(pred, y)[0]))


def cross_validate(method: str, cfgs: list[EdgeViTConfig], y: Sequence[float], folds: int = 5, seed: int = 0,
                   **params: Any) -> tuple[Metrics, np.ndarray]:
    """Out-of-fold predictions of ``method`` and their metrics (every candidate predicted once, unseen)."""
    y = np.asarray(y, dtype=float)
    pred = np.zeros(len(y))
    for tr, te in KFold(folds, shuffle=True, random_state=seed).split(y):
        est = METHODS[method](n_folds_sigma=0, **params).fit([cfgs[i] for i in tr], y[tr])
        pred[te] = est.predict([cfgs[i] for i in te])
    return metrics(pred, y), pred
