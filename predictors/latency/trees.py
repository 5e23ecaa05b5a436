"""Tree ensembles of scikit-learn as plain JSON arrays, checked before use, predicted with numpy.

A fitted ``GradientBoostingRegressor`` or ``RandomForestRegressor`` is an offset plus a scale times
the sum of its trees' leaf values; each tree is fully described by five public arrays of ``tree_``
(children left/right, split feature, threshold, leaf value). :class:`TreeEnsemble` keeps exactly
those, evaluates them as scikit-learn does (float32 features against float64 thresholds, ``<=``
goes left), so a model read back from JSON predicts what the fitted one predicted.

Reading a file validates its structure first: array lengths, index ranges, finite numbers, sizes,
and that every child's index is larger than its parent's (scikit-learn builds trees depth first, so
this always holds for a real tree). The last check makes every root-to-leaf walk end: a tampered
tree whose nodes form a cycle is refused instead of looping forever.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..base import ModelFileError

__all__ = ["TreeEnsemble", "MAX_TREES", "MAX_NODES"]

#: Limits of what a saved ensemble may declare (the project's largest is 400 trees of depth 4).
MAX_TREES = 20_000
MAX_NODES = 5_000_000

_DTYPES = {"left": np.int64, "right": np.int64, "feature": np.int64, "threshold": np.float64, "value": np.float64}


class TreeEnsemble:
    """``predict(X) = offset + scale * sum over trees of the leaf value X falls into``."""

    def __init__(self, trees: Sequence[Mapping[str, np.ndarray]], offset: float, scale: float, n_features: int):
        self.trees = [dict(t) for t in trees]
        self.offset = float(offset)
        self.scale = float(scale)
        self.n_features = int(n_features)

    @classmethod
    def from_sklearn(cls, estimators: Any, offset: float, scale: float, n_features: int) -> "TreeEnsemble":
        """From fitted scikit-learn trees (``GradientBoostingRegressor.estimators_[:, 0]``, a forest's
        ``estimators_``)."""
        trees = []
        for est in estimators:
            t = est.tree_
            trees.append({"left": t.children_left.astype(np.int64), "right": t.children_right.astype(np.int64),
                          "feature": t.feature.astype(np.int64), "threshold": t.threshold.astype(np.float64),
                          "value": t.value.reshape(t.node_count).astype(np.float64)})
        return cls(trees, offset, scale, n_features)

    @classmethod
    def from_gbr(cls, model: Any) -> "TreeEnsemble":
        """A fitted ``GradientBoostingRegressor`` with the default constant initial estimator."""
        init = model.init_
        if not hasattr(init, "constant_"):
            raise ValueError("init: only the default constant initial estimator is supported")
        return cls.from_sklearn(model.estimators_[:, 0], float(np.ravel(init.constant_)[0]), model.learning_rate,
                                model.n_features_in_)

    @classmethod
    def from_forest(cls, model: Any) -> "TreeEnsemble":
        """A fitted ``RandomForestRegressor`` (the mean of its trees)."""
        return cls.from_sklearn(model.estimators_, 0.0, 1.0 / len(model.estimators_), model.n_features_in_)

    def _packed(self) -> tuple[np.ndarray, ...]:
        """The trees as padded (n_trees, max_nodes) arrays, built once: every tree walks in one step."""
        pack = self.__dict__.get("_pack")
        if pack is None:
            T, M = len(self.trees), max(len(t["left"]) for t in self.trees)
            left, right = np.full((T, M), -1, np.int64), np.full((T, M), -1, np.int64)
            feature, threshold, value = np.zeros((T, M), np.int64), np.zeros((T, M)), np.zeros((T, M))
            for i, t in enumerate(self.trees):
                k = len(t["left"])
                left[i, :k], right[i, :k], feature[i, :k] = t["left"], t["right"], t["feature"]
                threshold[i, :k], value[i, :k] = t["threshold"], t["value"]
            pack = self._pack = (left, right, feature, threshold, value)
        return pack

    def predict(self, X: np.ndarray) -> np.ndarray:
        X32 = np.asarray(X, dtype=np.float32)
        if X32.ndim != 2 or X32.shape[1] != self.n_features:
            raise ValueError(f"X: expected shape (n, {self.n_features}), got {X32.shape}")
        n = len(X32)
        if not self.trees or n == 0:
            return np.full(n, self.offset)
        left, right, feature, threshold, value = self._packed()
        trees = np.arange(left.shape[0])[None, :]
        rows = np.arange(n)[:, None]
        node = np.zeros((n, left.shape[0]), dtype=np.int64)
        # All trees step together, one level per pass. Children have larger indices than their
        # parents (checked on load), so a walk ends within max_nodes passes.
        for _ in range(left.shape[1]):
            lft = left[trees, node]
            inner = lft >= 0
            if not inner.any():
                break
            f = np.where(inner, feature[trees, node], 0)
            go_left = X32[rows, f] <= threshold[trees, node]
            node = np.where(inner, np.where(go_left, lft, right[trees, node]), node)
        return self.offset + self.scale * value[trees, node].sum(axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {"offset": self.offset, "scale": self.scale, "n_features": self.n_features,
                "trees": [{k: np.asarray(t[k]).tolist() for k in _DTYPES} for t in self.trees]}

    @classmethod
    def from_dict(cls, d: Any) -> "TreeEnsemble":
        """Read and validate (module docstring); :class:`ModelFileError` names the first problem."""
        if not isinstance(d, Mapping):
            raise ModelFileError("trees: expected a JSON object")
        for k in ("offset", "scale", "n_features", "trees"):
            if k not in d:
                raise ModelFileError(f"trees: missing {k!r}")
        offset, scale, nf = d["offset"], d["scale"], d["n_features"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in (offset, scale)):
            raise ModelFileError("trees: offset and scale must be finite numbers")
        if isinstance(nf, bool) or not isinstance(nf, int) or not 1 <= nf <= 100_000:
            raise ModelFileError(f"trees: n_features={str(nf)[:20]} must be an integer in [1, 100000]")
        raw = d["trees"]
        if not isinstance(raw, list) or len(raw) > MAX_TREES:
            raise ModelFileError(f"trees: expected a list of at most {MAX_TREES} trees")
        trees, total = [], 0
        for i, t in enumerate(raw):
            if not isinstance(t, Mapping) or set(t) != set(_DTYPES):
                raise ModelFileError(f"trees[{i}]: expected the keys {', '.join(_DTYPES)}")
            lengths = {len(t[k]) if isinstance(t[k], list) else -1 for k in _DTYPES}
            if len(lengths) != 1 or -1 in lengths or 0 in lengths:
                raise ModelFileError(f"trees[{i}]: the five arrays must be non-empty lists of one length")
            total += lengths.pop()
            if total > MAX_NODES:
                raise ModelFileError(f"trees: more than {MAX_NODES} nodes in all")
            try:
                arr = {k: np.asarray(t[k], dtype=dt) for k, dt in _DTYPES.items()}
            except (TypeError, ValueError, OverflowError):
                raise ModelFileError(f"trees[{i}]: arrays must hold numbers") from None
            _check_tree(arr, nf, i)
            trees.append(arr)
        return cls(trees, offset, scale, nf)


def _check_tree(t: dict[str, np.ndarray], n_features: int, i: int) -> None:
    n = len(t["left"])
    idx = np.arange(n)
    left, right = t["left"], t["right"]
    leaf = left == -1
    if np.any(leaf != (right == -1)):
        raise ModelFileError(f"trees[{i}]: a node has one child")
    inner = ~leaf
    if np.any(inner & ((left <= idx) | (right <= idx) | (left >= n) | (right >= n))):
        raise ModelFileError(f"trees[{i}]: a child index points backwards or outside the tree (cycle or corruption)")
    if np.any(inner & ((t["feature"] < 0) | (t["feature"] >= n_features))):
        raise ModelFileError(f"trees[{i}]: a split feature is outside 0..{n_features - 1}")
    if not np.all(np.isfinite(t["threshold"][inner])) or not np.all(np.isfinite(t["value"])):
        raise ModelFileError(f"trees[{i}]: thresholds and values must be finite")
