"""JSON persistence for scikit-learn gradient-boosted trees, so no predictor is ever unpickled.

A fitted ``GradientBoostingRegressor`` is a constant plus a learning rate times a sum of regression
trees, each fully described by five public arrays of ``tree_``. They are written as lists and read
back into :class:`TreeEnsemble`, which predicts with numpy and agrees with scikit-learn exactly.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor

__all__ = ["gbr_to_dict", "TreeEnsemble"]


def gbr_to_dict(model: GradientBoostingRegressor) -> dict[str, Any]:
    if model.loss not in ("squared_error", "absolute_error", "huber", "quantile"):
        raise ValueError(f"loss={model.loss!r}: unsupported")
    init = model.init_
    if hasattr(init, "constant_"):
        base = float(np.ravel(init.constant_)[0])
    else:
        raise ValueError("init: only the default constant initial estimator is supported")
    trees = []
    for est in model.estimators_[:, 0]:
        t = est.tree_
        trees.append({
            "left": t.children_left.tolist(), "right": t.children_right.tolist(), "feature": t.feature.tolist(),
            "threshold": t.threshold.tolist(), "value": t.value[:, 0, 0].tolist(),
        })
    return {"kind": "gbr", "base": base, "learning_rate": float(model.learning_rate), "trees": trees,
            "n_features": int(model.n_features_in_)}


class TreeEnsemble:
    """Prediction from :func:`gbr_to_dict` output."""

    def __init__(self, d: dict[str, Any]):
        self.base = d["base"]
        self.learning_rate = d["learning_rate"]
        self.n_features = d["n_features"]
        self.trees = [{k: np.asarray(v) for k, v in t.items()} for t in d["trees"]]
        self._dict = d

    def to_dict(self) -> dict[str, Any]:
        return self._dict

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32).astype(float)  # sklearn compares float32 features to thresholds
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X: expected shape (n, {self.n_features}), got {X.shape}")
        out = np.full(len(X), self.base)
        rows = np.arange(len(X))
        for t in self.trees:
            node = np.zeros(len(X), dtype=int)
            while True:
                leaf = t["left"][node] == -1
                if leaf.all():
                    break
                f = t["feature"][node]
                go_left = X[rows, np.where(leaf, 0, f)] <= t["threshold"][node]
                node = np.where(leaf, node, np.where(go_left, t["left"][node], t["right"][node]))
            out += self.learning_rate * t["value"][node]
        return out
