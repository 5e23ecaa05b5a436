"""A new device from a handful of measurements: the one few-shot adapter (the HELP idea, made simple).

A device nobody has measured before is described by how it relates to devices already modelled:
its latency is regressed on the latencies the other devices' models predict (the *bases*) and on
a cost profile of the network (log MACs for EdgeViT; any callable for other spaces), from a fixed
reference set of candidates (always the same ones, so devices are comparable, as HELP's hardware
embedding) plus a few random ones. What it learns is a handful of coefficients, so 20 measurements
are enough; what it knows about architectures comes from the bases, which were trained on
thousands of measurements.

The regression is Bayesian ridge (:class:`sklearn.linear_model.BayesianRidge`: the penalty is
chosen by maximising the marginal likelihood of the few measurements, empirical Bayes) or ridge
with the penalty chosen by leave-one-out error (:class:`sklearn.linear_model.RidgeCV`), on
standardised feature groups, each scaled by its weight (a group's effective penalty is
``alpha / weight**2``). Columns are standardised over an unlabelled *pool* of architectures when one
is given (``fit(X, y, pool=...)``: no latency of the new device is used), else over the
measurements themselves. The uncertainty is the spread of the adapter's own leave-one-out log
residuals on the measurements (:func:`sklearn.model_selection.cross_val_predict`).

A base can also be learned from the few measurements themselves (``local_bases``): the
operator-level model (:mod:`predictors.latency.operators`) fitted on the operator profiles of the 20
measured networks, which are thousands of operator timings of the new device. Such a base enters
the adapter's own fit through out-of-fold predictions (K-fold over the measurements), so the adapter
weighs it by how it predicts networks it did not see, and predicts with the base refitted on all.

The same estimator serves EdgeViT candidates (``nas farm calibrate``: bases are other devices'
latency models, saved inside the adapter's file) and the HELP benchmark's NAS-Bench-201 and FBNet
networks (:mod:`public_benchmarks.help`: bases are meta-train devices' surrogates, the profile is a
callable, nothing is saved).

Settings, measured on both benchmarks (``bench/fewshot_host.py``, ``bench/help_fewshot.py``, 20
measurements, 5 seeds; ``bench/RESULTS.md``): the defaults (log bases, log target, ridge by
leave-one-out, log MACs, standardised over the measurements) are the better ones for EdgeViT on the
host (77.9 % within 10 %, against 47.3 % for the HELP-style settings below); HELP's linear
surrogates are better served by linear bases, a ratio target, Bayesian ridge and the full cost
profile standardised over the bank's pool (NAS-Bench-201 Spearman 0.950 against 0.939), which
``bench/help_fewshot.py`` passes explicitly.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import BayesianRidge, RidgeCV
from sklearn.model_selection import KFold, LeaveOneOut, cross_val_predict

from search_space import EdgeViTConfig, cost, reference_set

from ..base import Estimator, LatencyEstimator, ModelFileError, check_targets, fitted, register, state_array, \
    state_number

__all__ = ["PROFILES", "FewShotAdapter", "calibration_set"]


def _log_macs(cfgs: Sequence[EdgeViTConfig]) -> np.ndarray:
    return np.log([[cost(c).macs] for c in cfgs])


def _no_profile(items: Sequence[Any]) -> np.ndarray:
    return np.zeros((len(items), 0))


#: Named cost profiles of EdgeViT candidates (a saved adapter names its profile; a callable cannot be saved).
PROFILES: dict[str, Callable[[Sequence[Any]], np.ndarray]] = {"log_macs": _log_macs, "none": _no_profile}
_PROFILE_WIDTH = {"log_macs": 1, "none": 0}

MIN_SHOTS = 5
#: Smallest base prediction (ms) taken into a log: below it, a prediction is noise, not latency.
LOG_FLOOR_MS = 1e-3


def calibration_set(n: int = 20, seed: int = 0) -> list[EdgeViTConfig]:
    """What a new device measures: the first 10 reference candidates (:func:`search_space.reference_set`)
    plus ``n - 10`` further random ones (distinct from them) drawn with ``seed``."""
    from device_farm.sample import plan

    refs = reference_set(min(n, 10))
    ids = {c.arch_id for c in refs}
    extra = [c for c in plan(n + 10, seed + 1) if c.arch_id not in ids]
    return refs + extra[: max(n - len(refs), 0)]


def _base_predict(base: Any, X: Any) -> np.ndarray:
    out = base.predict(X)[0] if isinstance(base, Estimator) else base(X)
    return np.asarray(out, dtype=float).reshape(-1)


@register
class FewShotAdapter(LatencyEstimator):
    """Latency of a new device from ``bases`` (other devices' predictions) and a cost profile.

    Parameters
    ----------
    bases : mapping of name -> fitted estimator or callable ``X -> latency``
        Never a model of the device being calibrated.
    local_bases : mapping of name -> unfitted estimator
        Fitted inside :meth:`fit` on the new device's own measurements (module docstring); an
        estimator that learns from operator profiles gets ``fit(..., profiles=...)``.
    profile : ``"log_macs"``, ``"none"`` or a callable ``X -> (n, k)`` matrix
    base_transform : ``"log"`` or ``"linear"``
        Whether base predictions enter as log latencies or as latencies.
    base_weight, profile_weight : float
        Scale of each standardised group; ``0`` drops it.
    target : ``"log"`` (log latency) or ``"ratio"`` (latency over the mean measured latency)
    select : ``"evidence"`` (BayesianRidge) or ``"loo"`` (RidgeCV over ``alphas``)
    offset : name of a base or local base, or None
        With a log target, the regression learns the log ratio of the latency to this base's
        prediction (the base stays a feature too): shrinkage then pulls the adapter towards that base
        rescaled by one factor, instead of towards a constant, so that with weak evidence it is that
        base and the other bases only correct it where the measurements say so.
    """

    kind = "fewshot"

    def __init__(self, bases: Mapping[str, Any] | None = None, profile: str | Callable = "log_macs",
                 base_transform: str = "log", base_weight: float = 1.0, profile_weight: float = 1.0,
                 target: str = "log", select: str = "loo", alphas: Sequence[float] = (0.01, 0.1, 1.0, 10.0, 100.0),
                 local_bases: Mapping[str, Any] | None = None, local_folds: int = 5, offset: str | None = None):
        self.bases = bases
        self.offset = offset
        self.local_bases = local_bases
        self.local_folds = local_folds
        self.profile = profile
        self.base_transform = base_transform
        self.base_weight = base_weight
        self.profile_weight = profile_weight
        self.target = target
        self.select = select
        self.alphas = alphas

    # -- features
    def _check_params(self) -> None:
        for name, value, allowed in (("base_transform", self.base_transform, ("log", "linear")),
                                     ("target", self.target, ("log", "ratio")),
                                     ("select", self.select, ("evidence", "loo"))):
            if value not in allowed:
                raise ValueError(f"{name}={value!r}: allowed: {', '.join(allowed)}")
        if isinstance(self.profile, str) and self.profile not in PROFILES:
            raise ValueError(f"profile={self.profile!r}: allowed: {', '.join(PROFILES)} or a callable")
        if not self.bases and not self.local_bases and self.profile_weight <= 0:
            raise ValueError("bases: needs at least one base, or a profile with profile_weight > 0")
        if self.offset is not None:
            names = [*(self.bases or {}), *(self.local_bases or {})]
            if self.offset not in names:
                raise ValueError(f"offset={self.offset!r}: allowed: None or a base's name ({', '.join(sorted(names))})")
            if self.target != "log":
                raise ValueError(f"offset={self.offset!r}: needs target='log', got target={self.target!r}")

    def _offset_key(self) -> str | None:
        if self.offset is None:
            return None
        return self.offset if self.offset in (self.bases or {}) else f"local:{self.offset}"

    def _log_offset(self, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """The log of the offset base's predictions (zeros without an offset)."""
        key = self._offset_key()
        if key is None:
            return np.zeros(n)
        return np.log(np.maximum(np.asarray(columns[key], dtype=float), LOG_FLOOR_MS))

    def _base_columns(self, X: Any) -> dict[str, np.ndarray]:
        cols = {name: _base_predict(b, X) for name, b in (self.bases or {}).items()}
        cols.update({f"local:{name}": _base_predict(b, X) for name, b in getattr(self, "local_fitted_", {}).items()})
        return cols

    def _raw(self, X: Any, columns: Mapping[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The unstandardised feature columns and each column's group weight (``columns``: base
        predictions already made, e.g. out of fold)."""
        cols = []
        if self.base_weight > 0:
            given = self._base_columns(X) if columns is None else columns
            for name in sorted(given):
                p = np.asarray(given[name], dtype=float)
                if self.base_transform == "log":
                    # A linear surrogate can predict <= 0 ms; 1 us keeps its log finite and not extreme.
                    p = np.log(np.maximum(p, LOG_FLOOR_MS))
                cols.append(p[:, None])
        n_base = len(cols)
        if self.profile_weight > 0:
            prof = PROFILES[self.profile] if isinstance(self.profile, str) else self.profile
            cols.append(np.asarray(prof(X), dtype=float).reshape(len(X), -1))
        A = np.hstack(cols) if cols else np.zeros((len(X), 0))
        w = np.r_[np.full(n_base, float(self.base_weight)), np.full(A.shape[1] - n_base, float(self.profile_weight))]
        return A, w

    def _design(self, X: Any, columns: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        A, w = self._raw(X, columns)
        return (A - self.mean_) / self.scale_ * w

    def _fit_local(self, X: Any, y: np.ndarray, profiles: Sequence | None) -> dict[str, np.ndarray]:
        """Fit each local base on all measurements; return its out-of-fold predictions on them."""
        from .estimators import fit_method_instance

        self.local_fitted_: dict[str, Any] = {}
        oof: dict[str, np.ndarray] = {}
        folds = min(self.local_folds, len(y))
        for name, est in sorted((self.local_bases or {}).items()):
            pred = np.zeros(len(y))
            for tr, te in KFold(folds, shuffle=True, random_state=0).split(y):
                sub = fit_method_instance(clone(est), [X[i] for i in tr], y[tr],
                                          [profiles[i] for i in tr] if profiles is not None else None)
                pred[te] = _base_predict(sub, [X[i] for i in te])
            oof[f"local:{name}"] = pred
            self.local_fitted_[name] = fit_method_instance(clone(est), X, y, profiles)
        return oof

    def _regressor(self):
        if self.select == "evidence":
            return BayesianRidge(fit_intercept=True)
        # A list: with a single alpha, scikit-learn's RidgeCV writes the checked value back into alphas[0].
        return RidgeCV(alphas=[float(a) for a in self.alphas], fit_intercept=True)

    def _to_target(self, y: np.ndarray) -> np.ndarray:
        return np.log(y) if self.target == "log" else y / self.y_scale_

    def _from_target(self, t: np.ndarray) -> np.ndarray:
        return np.exp(t) if self.target == "log" else np.maximum(t * self.y_scale_, 1e-9)

    # -- fit / predict
    def fit(self, X: Any, y: Sequence[float], pool: Any = None, profiles: Sequence | None = None) -> "FewShotAdapter":
        """``X``: the measured items (EdgeViT configurations, or whatever the bases and profile take);
        ``y``: their latencies; ``pool``: unlabelled items to standardise the columns over;
        ``profiles``: the measurements' operator profiles, for local bases that learn from them."""
        self._check_params()
        X = list(X) if not isinstance(X, np.ndarray) else X
        y = check_targets(y, len(X))
        if len(y) < MIN_SHOTS:
            raise ValueError(f"y: need >= {MIN_SHOTS} positive latencies, got {len(y)}")
        oof = self._fit_local(X, y, profiles)
        self.base_names_ = tuple(sorted([*(self.bases or {}), *oof]))
        self.y_scale_ = float(np.mean(y))
        columns = {**{name: _base_predict(b, X) for name, b in (self.bases or {}).items()}, **oof}
        A_pool, _ = self._raw(pool, None) if pool is not None else self._raw(X, columns)
        self.mean_ = A_pool.mean(axis=0)
        self.scale_ = A_pool.std(axis=0) + 1e-12
        Z = self._design(X, columns)
        off = self._log_offset(columns, len(y))
        t = self._to_target(y) - off
        reg = self._regressor()
        model = clone(reg).fit(Z, t)
        self.coef_ = np.asarray(model.coef_, dtype=float)
        self.intercept_ = float(model.intercept_)
        self.alpha_ = float(model.alpha_ if self.select == "loo" else model.lambda_ / model.alpha_)
        # Leave-one-out residuals: the adapter's own uncertainty from the few points it has.
        loo = self._from_target(cross_val_predict(clone(reg), Z, t, cv=LeaveOneOut()) + off)
        self.rel_sigma_ = float(np.std(np.log(loo / y)))
        self.n_train_ = int(len(y))
        return self

    def predict(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        fitted(self)
        X = list(X) if not isinstance(X, np.ndarray) else X
        if not len(X):
            return np.zeros(0), np.zeros(0)
        if self.offset is None:
            mean = self._from_target(self._design(X) @ self.coef_ + self.intercept_)
        else:
            columns = self._base_columns(X)
            mean = self._from_target(self._design(X, columns) @ self.coef_ + self.intercept_
                                     + self._log_offset(columns, len(X)))
        return mean, mean * self.rel_sigma_

    def describe(self) -> str:
        groups = ", ".join(self.base_names_) or "no bases"
        prof = self.profile if isinstance(self.profile, str) else "custom profile"
        rel = f", relative to {self.offset}" if self.offset else ""
        return (f"few-shot adapter on {self.n_train_} measurements over {groups} and {prof}{rel} "
                f"(leave-one-out relative sigma {self.rel_sigma_:.3f})")

    # -- persistence
    def _get_state(self) -> dict[str, Any]:
        return {"local": {k: v.to_dict() for k, v in self.local_fitted_.items()},
                "base_names": list(self.base_names_), "mean": self.mean_.tolist(), "scale": self.scale_.tolist(),
                "coef": self.coef_.tolist(), "intercept": self.intercept_, "alpha": self.alpha_,
                "y_scale": self.y_scale_, "rel_sigma": self.rel_sigma_, "n_train": self.n_train_}

    def _set_state(self, s: Mapping[str, Any]) -> None:
        self._check_params()
        local = s.get("local", {})
        if not isinstance(local, dict) or set(local) != set(self.local_bases or {}):
            raise ModelFileError("state.local: does not match the local bases")
        self.local_fitted_ = {k: LatencyEstimator.from_dict(v) for k, v in local.items()}
        self.base_names_ = tuple(str(b) for b in s["base_names"])
        if self.base_names_ != tuple(sorted([*(self.bases or {}), *(f"local:{k}" for k in local)])):
            raise ModelFileError("state.base_names: do not match the saved bases")
        if not isinstance(self.profile, str):
            raise ModelFileError("profile: a saved adapter names its profile")
        n = (len(self.base_names_) if self.base_weight > 0 else 0) + (
            _PROFILE_WIDTH[self.profile] if self.profile_weight > 0 else 0)
        self.mean_ = state_array(s, "mean", ndim=1, size=n)
        self.scale_ = state_array(s, "scale", ndim=1, size=n)
        self.coef_ = state_array(s, "coef", ndim=1, size=n)
        if np.any(self.scale_ <= 0):
            raise ModelFileError("state.scale: must be > 0")
        self.intercept_ = state_number(s, "intercept")
        self.alpha_ = state_number(s, "alpha", 0.0)
        self.y_scale_ = state_number(s, "y_scale", 0.0)
        self.rel_sigma_ = state_number(s, "rel_sigma", 0.0, 100.0)
        self.n_train_ = int(state_number(s, "n_train", MIN_SHOTS, 1e9))
