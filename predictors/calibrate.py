"""Few-shot calibration of a new device from 10 to 20 measurements (the HELP idea, made simple).

A device nobody has measured before is described by how it relates to devices we already model:
its log latency is regressed on the log latencies the other devices' models predict (plus log MACs)
with ridge regression, from a fixed reference set of candidates (always the same ten, so devices are
comparable, as HELP's hardware embedding) plus a few random samples. What it learns is a handful of
coefficients, so 20 measurements are enough; what it knows about architectures comes from the
other devices' models, which were trained on thousands of measurements.

``nas farm calibrate --device D -n 20`` measures the set on D through the farm and saves the result as
D's latency model; :func:`predictors.device.load_device_model` loads it with its base models.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import LeaveOneOut, cross_val_predict

from search_space import PRESETS, EdgeViTConfig, cost

__all__ = ["REFERENCE_SEED", "reference_set", "calibration_set", "FewShotAdapter"]

#: Seed of the fixed reference candidates. Never change it: calibrations taken with different
#: reference sets are not comparable.
REFERENCE_SEED = 20221023


def reference_set(n: int = 10) -> list[EdgeViTConfig]:
    """The fixed reference candidates: the three released EdgeViTs, then seeded random draws."""
    from device_farm.sample import plan

    refs = list(PRESETS.values())
    return (refs + [c for c in plan(n + len(refs), REFERENCE_SEED) if c.arch_id not in {r.arch_id for r in refs}])[:n]


def calibration_set(n: int = 20, seed: int = 0) -> list[EdgeViTConfig]:
    """The reference set plus ``n - 10`` further random candidates (distinct from it)."""
    from device_farm.sample import plan

    refs = reference_set(min(n, 10))
    ids = {c.arch_id for c in refs}
    extra = [c for c in plan(n + 10, seed + 1) if c.arch_id not in ids]
    return refs + extra[: max(n - len(refs), 0)]


BasePredict = Callable[[list[EdgeViTConfig]], np.ndarray]


class FewShotAdapter:
    """Ridge regression of a device's log latency on base devices' predicted log latencies and log MACs.

    ``fit(cfgs, y, bases)`` with ``bases``: ``{device id: predict function (configs -> ms)}``.
    """

    def __init__(self, alphas: Sequence[float] = (0.01, 0.1, 1.0, 10.0, 100.0)):
        self.alphas = tuple(alphas)

    def _design(self, cfgs: list[EdgeViTConfig], bases: dict[str, BasePredict]) -> np.ndarray:
        cols = [np.log(bases[d](cfgs)) for d in self.base_devices_]
        cols.append(np.log([cost(c).macs for c in cfgs]))
        return np.stack(cols, axis=1)

    def fit(self, cfgs: list[EdgeViTConfig], y: Sequence[float], bases: dict[str, BasePredict]) -> "FewShotAdapter":
        y = np.asarray(y, dtype=float)
        if len(y) < 5 or np.any(y <= 0):
            raise ValueError(f"y: need >= 5 positive latencies, got {len(y)}")
        self.base_devices_ = tuple(sorted(bases))
        X = self._design(cfgs, bases)
        self.mean_ = X.mean(axis=0)
        self.scale_ = X.std(axis=0) + 1e-9
        Z = (X - self.mean_) / self.scale_
        model = RidgeCV(alphas=self.alphas).fit(Z, np.log(y))
        # Leave-one-out residuals: the adapter's own uncertainty from the few points it has.
        loo = cross_val_predict(RidgeCV(alphas=self.alphas), Z, np.log(y), cv=LeaveOneOut())
        self.rel_sigma_ = float(np.std(loo - np.log(y)))
        self.coef_, self.intercept_, self.alpha_ = model.coef_, float(model.intercept_), float(model.alpha_)
        self.n_train_ = len(y)
        return self

    def predict(self, cfgs: list[EdgeViTConfig], bases: dict[str, BasePredict]) -> np.ndarray:
        Z = (self._design(cfgs, bases) - self.mean_) / self.scale_
        return np.exp(Z @ self.coef_ + self.intercept_)

    def to_dict(self) -> dict[str, Any]:
        return {"alphas": list(self.alphas), "base_devices": list(self.base_devices_), "mean": self.mean_.tolist(),
                "scale": self.scale_.tolist(), "coef": self.coef_.tolist(), "intercept": self.intercept_,
                "alpha": self.alpha_, "rel_sigma": self.rel_sigma_, "n_train": self.n_train_}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FewShotAdapter":
        a = cls(d["alphas"])
        a.base_devices_ = tuple(d["base_devices"])
        a.mean_, a.scale_, a.coef_ = (np.asarray(d[k]) for k in ("mean", "scale", "coef"))
        a.intercept_, a.alpha_, a.rel_sigma_, a.n_train_ = d["intercept"], d["alpha"], d["rel_sigma"], d["n_train"]
        return a
