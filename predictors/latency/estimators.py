"""Whole-network latency (and energy) estimators for one device, learned from its measurements.

Five estimators over the same feature path (:mod:`predictors.latency.features`), compared on the
same data by :func:`cross_validate`, because on light ViTs MACs alone already rank CPU latency well
and a learned model is only worth shipping where it beats them:

- ``macs``: a power law in MACs (``log y = a log MACs + b``); the trivial baseline.
- ``linear``: a linear fit on MACs and parameters; the other trivial baseline.
- ``kernel``: the nn-Meter idea applied to whole-network measurements: latency is a sum over
  operator kinds of non-negative costs per MAC, per element moved and per launch (non-negative least
  squares on the per-kind sums).
- ``kernel_corr``: the same sum times a learned correction (gradient-boosted trees on the log ratio,
  from whole-graph features) for what the sum misses: fusion, cache effects, threading.
- ``graph``: gradient-boosted trees on whole-graph features; the whole-graph baseline.

Each follows :mod:`predictors.base`: ``fit(cfgs, y)``, ``predict(cfgs) -> (mean, std)`` where the
std is the prediction times the spread of the estimator's own K-fold cross-validated log residuals.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from scipy.optimize import nnls
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.model_selection import KFold

from search_space import EdgeViTConfig

from ..base import (LatencyEstimator, ModelFileError, check_configs, check_targets, fitted, register, state_array,
                    state_number)
from ..metrics import Metrics, regression_metrics
from .features import GRAPH_FEATURE_NAMES, KERNEL_FEATURE_NAMES, feature_matrix
from .operators import OperatorLatencyModel
from .trees import TreeEnsemble

__all__ = ["METHODS", "MacsPredictor", "LinearPredictor", "KernelPredictor", "CorrectedKernelPredictor",
           "GraphPredictor", "OperatorLatencyModel", "cross_validate", "fit_method"]


class _FeaturePredictor(LatencyEstimator):
    """Shared fit/predict over (kernel features, graph features); subclasses implement ``_fit`` and
    ``_predict`` on the feature matrices."""

    name = "base"

    def __init__(self, n_folds_sigma: int = 5, random_state: int = 0):
        self.n_folds_sigma = n_folds_sigma
        self.random_state = random_state

    def fit(self, cfgs: Sequence[EdgeViTConfig], y: Sequence[float]) -> "_FeaturePredictor":
        cfgs = check_configs(cfgs)
        y = check_targets(y, len(cfgs))
        kf, gf = feature_matrix(cfgs)
        self.rel_sigma_ = self._cv_sigma(kf, gf, y)
        self._fit(kf, gf, y)
        self.n_train_ = len(y)
        return self

    def _cv_sigma(self, kf: np.ndarray, gf: np.ndarray, y: np.ndarray) -> float:
        """Spread of log residuals under K-fold CV: the predictor's own uncertainty estimate."""
        if self.n_folds_sigma < 2 or len(y) < 2 * self.n_folds_sigma:
            return float("nan")
        res = []
        for tr, te in KFold(self.n_folds_sigma, shuffle=True, random_state=self.random_state).split(kf):
            self._fit(kf[tr], gf[tr], y[tr])
            res.append(np.log(self._predict(kf[te], gf[te]) / y[te]))
        return float(np.std(np.concatenate(res)))

    def predict(self, cfgs: Sequence[EdgeViTConfig]) -> tuple[np.ndarray, np.ndarray]:
        fitted(self)
        cfgs = check_configs(cfgs)
        if not cfgs:
            return np.zeros(0), np.zeros(0)
        kf, gf = feature_matrix(cfgs)
        mean = self._predict(kf, gf)
        return mean, mean * self.rel_sigma_

    def describe(self) -> str:
        return (f"{self.kind} latency model on {self.n_train_} measurements, cross-validated relative sigma "
                f"{self.rel_sigma_:.3f}")

    def _get_state(self) -> dict[str, Any]:
        return {"rel_sigma": self.rel_sigma_, "n_train": self.n_train_, **self._state()}

    def _set_state(self, s: Mapping[str, Any]) -> None:
        self.rel_sigma_ = state_number(s, "rel_sigma", 0.0, 100.0, allow_nan=True)
        self.n_train_ = int(state_number(s, "n_train", 0, 1e9))
        self._load(s)

    # subclasses
    def _fit(self, kf: np.ndarray, gf: np.ndarray, y: np.ndarray) -> None:
        raise NotImplementedError

    def _predict(self, kf: np.ndarray, gf: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _load(self, s: Mapping[str, Any]) -> None:
        raise NotImplementedError


def _macs(kf: np.ndarray) -> np.ndarray:
    return kf[:, 0::4].sum(axis=1)


def _macs_params(kf: np.ndarray) -> np.ndarray:
    return np.stack([_macs(kf) / 1e9, kf[:, 3::4].sum(axis=1) / 1e6, np.ones(len(kf))], axis=1)


@register
class MacsPredictor(_FeaturePredictor):
    """``log latency = a log MACs + b``: what "MACs alone" predicts."""

    kind = "macs"

    def _fit(self, kf, gf, y):
        self.coef_ = np.polyfit(np.log(_macs(kf)), np.log(y), 1)

    def _predict(self, kf, gf):
        return np.exp(np.polyval(self.coef_, np.log(_macs(kf))))

    def _state(self):
        return {"coef": self.coef_.tolist()}

    def _load(self, s):
        self.coef_ = state_array(s, "coef", ndim=1, size=2)


@register
class LinearPredictor(_FeaturePredictor):
    """``latency = a GMACs + b Mparams + c`` by least squares: the linear fit on MACs and params."""

    kind = "linear"

    def _fit(self, kf, gf, y):
        self.coef_ = np.linalg.lstsq(_macs_params(kf), y, rcond=None)[0]

    def _predict(self, kf, gf):
        return np.maximum(_macs_params(kf) @ self.coef_, 1e-6)

    def _state(self):
        return {"coef": self.coef_.tolist()}

    def _load(self, s):
        self.coef_ = state_array(s, "coef", ndim=1, size=3)


def _gbr(random_state: int, n_estimators: int, max_depth: int) -> GradientBoostingRegressor:
    return GradientBoostingRegressor(n_estimators=n_estimators, max_depth=max_depth, learning_rate=0.05,
                                     subsample=0.8, min_samples_leaf=5, random_state=random_state)


_KERNEL_SCALE = np.tile([1e-9, 1e-6, 1.0, 0.0], len(KERNEL_FEATURE_NAMES) // 4)
_KERNEL_KEEP = _KERNEL_SCALE > 0


@register
class KernelPredictor(_FeaturePredictor):
    """Sum of per-kernel-kind costs (NNLS), optionally times a learned correction (boosted trees on
    the log ratio, ``correction=True``)."""

    kind = "kernel"

    def __init__(self, correction: bool = False, n_estimators: int = 100, max_depth: int = 2, n_folds_sigma: int = 5,
                 random_state: int = 0):
        super().__init__(n_folds_sigma, random_state)
        self.correction = correction
        self.n_estimators = n_estimators
        self.max_depth = max_depth

    @staticmethod
    def _design(kf: np.ndarray) -> np.ndarray:
        # Per-kind features scaled to comparable magnitudes (GMACs, M elements, counts), plus a constant.
        return np.hstack([kf[:, _KERNEL_KEEP] * _KERNEL_SCALE[_KERNEL_KEEP], np.ones((len(kf), 1))])

    def _fit(self, kf, gf, y):
        A = self._design(kf)
        w = 1.0 / y  # rows weighted by 1/y: the fit minimises relative, not absolute, error
        self.weights_, _ = nnls(A * w[:, None], y * w)
        self.trees_ = None
        if self.correction:
            base = np.maximum(A @ self.weights_, 1e-6)
            model = _gbr(self.random_state, self.n_estimators, self.max_depth).fit(gf, np.log(y / base))
            self.trees_ = TreeEnsemble.from_gbr(model)

    def sum_of_kernels(self, kf: np.ndarray) -> np.ndarray:
        return np.maximum(self._design(kf) @ self.weights_, 1e-6)

    def _predict(self, kf, gf):
        base = self.sum_of_kernels(kf)
        return base * np.exp(self.trees_.predict(gf)) if self.trees_ is not None else base

    def kernel_costs(self) -> dict[str, float]:
        """The non-zero fitted costs by feature name (ms per GMAC, per M elements, per launch)."""
        names = [n for n, k in zip(KERNEL_FEATURE_NAMES, _KERNEL_KEEP) if k] + ["constant"]
        return {n: float(w) for n, w in zip(names, self.weights_) if w > 0}

    def _state(self):
        return {"weights": self.weights_.tolist(), "feature_names": list(KERNEL_FEATURE_NAMES),
                "trees": self.trees_.to_dict() if self.trees_ is not None else None}

    def _load(self, s):
        if list(s.get("feature_names", [])) != list(KERNEL_FEATURE_NAMES):
            raise ModelFileError("state.feature_names: saved with other kernel features; retrain the model")
        self.weights_ = state_array(s, "weights", ndim=1, size=int(_KERNEL_KEEP.sum()) + 1)
        self.trees_ = TreeEnsemble.from_dict(s["trees"]) if s["trees"] else None
        if self.trees_ is not None and self.trees_.n_features != len(GRAPH_FEATURE_NAMES):
            raise ModelFileError("state.trees: n_features does not match the graph features")


@register
class CorrectedKernelPredictor(KernelPredictor):
    """The kernel sum with its learned correction switched on; compared as its own method, since
    whether the correction helps depends on the device and on how much data there is."""

    kind = "kernel_corr"

    def __init__(self, correction: bool = True, n_estimators: int = 100, max_depth: int = 2, n_folds_sigma: int = 5,
                 random_state: int = 0):
        super().__init__(correction, n_estimators, max_depth, n_folds_sigma, random_state)


@register
class GraphPredictor(_FeaturePredictor):
    """Boosted trees on whole-graph features, predicting log latency."""

    kind = "graph"

    def __init__(self, n_estimators: int = 400, max_depth: int = 3, n_folds_sigma: int = 5, random_state: int = 0):
        super().__init__(n_folds_sigma, random_state)
        self.n_estimators = n_estimators
        self.max_depth = max_depth

    def _fit(self, kf, gf, y):
        model = _gbr(self.random_state, self.n_estimators, self.max_depth).fit(gf, np.log(y))
        self.trees_ = TreeEnsemble.from_gbr(model)

    def _predict(self, kf, gf):
        return np.exp(self.trees_.predict(gf))

    def _state(self):
        return {"trees": self.trees_.to_dict(), "feature_names": list(GRAPH_FEATURE_NAMES)}

    def _load(self, s):
        if list(s.get("feature_names", [])) != list(GRAPH_FEATURE_NAMES):
            raise ModelFileError("state.feature_names: saved with other graph features; retrain the model")
        self.trees_ = TreeEnsemble.from_dict(s["trees"])
        if self.trees_.n_features != len(GRAPH_FEATURE_NAMES):
            raise ModelFileError("state.trees: n_features does not match the graph features")


METHODS: dict[str, type[LatencyEstimator]] = {
    c.kind: c for c in (MacsPredictor, LinearPredictor, KernelPredictor, CorrectedKernelPredictor, GraphPredictor,
                        OperatorLatencyModel)
}


def fit_method(method: str, cfgs: Sequence[EdgeViTConfig], y: Sequence[float], profiles: Sequence | None = None,
               **params: Any) -> LatencyEstimator:
    """``METHODS[method](**params)`` fitted; the operator profiles go to the methods that learn from them."""
    if method not in METHODS:
        raise ValueError(f"method={method!r}: allowed: {', '.join(METHODS)}")
    return fit_method_instance(METHODS[method](**params), cfgs, y, profiles)


def fit_method_instance(est: LatencyEstimator, cfgs: Sequence[EdgeViTConfig], y: Sequence[float],
                        profiles: Sequence | None = None) -> LatencyEstimator:
    """``est.fit`` with the operator profiles when it learns from them."""
    if getattr(est, "needs_profiles", False):
        return est.fit(cfgs, y, profiles=profiles)
    return est.fit(cfgs, y)


def cross_validate(method: str, cfgs: Sequence[EdgeViTConfig], y: Sequence[float], folds: int = 5, seed: int = 0,
                   profiles: Sequence | None = None, **params: Any) -> tuple[Metrics, np.ndarray]:
    """Out-of-fold predictions of ``method`` and their metrics (every candidate predicted once, unseen)."""
    cfgs = check_configs(cfgs)
    y = check_targets(y, len(cfgs))
    pred = np.zeros(len(y))
    for tr, te in KFold(folds, shuffle=True, random_state=seed).split(y):
        est = fit_method(method, [cfgs[i] for i in tr], y[tr], [profiles[i] for i in tr] if profiles else None,
                         n_folds_sigma=0, **params)
        pred[te] = est.predict([cfgs[i] for i in te])[0]
    return regression_metrics(y, pred), pred
