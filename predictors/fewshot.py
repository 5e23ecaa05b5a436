"""Few-shot latency prediction for a new device from a bank of known devices.

Two estimators, both scikit-learn style (the constructor only stores parameters, ``fit`` returns
``self``, fitted state ends in ``_``) with JSON persistence (``to_dict`` / ``from_dict``; no pickle):

``DeviceBank``
    One linear surrogate per known ("meta-train") device, fitted on many measured architectures:
    ridge regression of latency (ms) on the architecture encoding (one-hot choice per edge / layer)
    and optionally products of pairs of choices (pairwise interactions). All devices share one
    design matrix, so all surrogates come from a single linear solve.

``FewShotLatency``
    Adapts to a new device from a handful of measurements (the HELP protocol allows 20). Its
    features are the bank's predicted latencies on every known device, standardized over the bank's
    training pool, the network's cost profile counted on the real module (MACs by operator kind,
    tensor sizes, call counts, parameters; :mod:`predictors.nets`) and the one-hot encoding; a ridge
    regression maps them to the new device's latency, normalized by the mean measured latency. Each feature group has its own
    penalty weight; the overall strength is chosen on the few measurements by maximum marginal
    likelihood (empirical Bayes; leave-one-out error is the alternative), both in closed form.
    Idea: a new device's latency is close to a combination of known devices' latencies, and what no
    known device explains is mostly a re-weighting of the kinds of work the network does.

Everything that describes an architecture arrives as one matrix ``X = [encoding | profile]``; the
first ``n_layers * n_choices`` columns are the one-hot encoding, the rest the cost profile.
"""
from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

__all__ = ["DeviceBank", "FewShotLatency", "pairwise_features", "HELP_SPLITS", "ENCODING_SHAPE", "HelpData",
           "shared_data_dir", "load_help", "query_indices", "support_indices", "trimmed_spearman"]


def _arr(a: Any) -> list:
    return np.asarray(a, dtype=float).tolist()


def pairwise_features(enc: np.ndarray, n_layers: int, n_choices: int, mode: str) -> np.ndarray:
    """Products of the one-hot choices of pairs of layers (edges).

    ``mode``: ``"none"`` (no columns), ``"all"`` (every pair of layers), ``"adjacent"`` (layer l with
    l + 1 only). For a pair (l, m) the columns are the n_choices**2 indicators "l chose a and m
    chose b".
    """
    if mode == "none":
        return np.zeros((enc.shape[0], 0))
    e = enc.reshape(enc.shape[0], n_layers, n_choices)
    if mode == "all":
        pairs = [(l, m) for l in range(n_layers) for m in range(l + 1, n_layers)]
    elif mode == "adjacent":
        pairs = [(l, l + 1) for l in range(n_layers - 1)]
    else:
        raise ValueError(f"pairwise must be 'none', 'all' or 'adjacent', not {mode!r}")
    cols = [np.einsum("na,nb->nab", e[:, l], e[:, m]).reshape(enc.shape[0], -1) for l, m in pairs]
    return np.hstack(cols)


class DeviceBank:
    """Per-device ridge surrogates of latency (ms) on the architecture encoding.

    Parameters
    ----------
    n_layers, n_choices : int
        The encoding is ``n_layers`` one-hot blocks of ``n_choices`` (NAS-Bench-201: 6 x 5; FBNet:
        22 x 9). ``X`` may carry further (profile) columns after it; the bank ignores them.
    pairwise : "none" | "all" | "adjacent"
        Interaction columns added to the encoding (:func:`pairwise_features`).
    alpha : float
        Ridge penalty (on the unscaled 0/1 design).
    """

    def __init__(self, n_layers: int = 6, n_choices: int = 5, pairwise: str = "none", alpha: float = 1.0):
        self.n_layers = n_layers
        self.n_choices = n_choices
        self.pairwise = pairwise
        self.alpha = alpha

    def get_params(self) -> dict[str, Any]:
        return {"n_layers": self.n_layers, "n_choices": self.n_choices, "pairwise": self.pairwise, "alpha": self.alpha}

    def _design(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        enc = X[:, : self.n_layers * self.n_choices]
        return np.hstack([enc, pairwise_features(enc, self.n_layers, self.n_choices, self.pairwise)])

    def fit(self, X: np.ndarray, Y: np.ndarray, devices: Sequence[str] | None = None) -> "DeviceBank":
        """``X``: (n, >= n_layers * n_choices) architectures; ``Y``: (n, D) latencies in ms."""
        Y = np.asarray(Y, dtype=float)
        if Y.ndim == 1:
            Y = Y[:, None]
        A = self._design(X)
        if A.shape[0] != Y.shape[0]:
            raise ValueError(f"X has {A.shape[0]} rows, Y has {Y.shape[0]}")
        a_mean, y_mean = A.mean(0), Y.mean(0)
        Ac = A - a_mean
        G = Ac.T @ Ac + self.alpha * np.eye(A.shape[1])
        W = np.linalg.solve(G, Ac.T @ (Y - y_mean))
        self.coef_ = W
        self.intercept_ = y_mean - a_mean @ W
        self.devices_ = list(devices) if devices is not None else [f"device_{i}" for i in range(Y.shape[1])]
        if len(self.devices_) != Y.shape[1]:
            raise ValueError("one device name per column of Y")
        P = A @ W + self.intercept_
        # statistics of the surrogates over the pool they were fitted on, for standardizing
        self.pred_mean_ = P.mean(0)
        self.pred_std_ = P.std(0) + 1e-12
        self.train_rmse_ = np.sqrt(((P - Y) ** 2).mean(0))
        self.n_train_ = int(A.shape[0])
        return self

    def predict(self, X: np.ndarray, devices: Sequence[str] | None = None) -> np.ndarray:
        """(n, D) predicted latencies in ms (columns: ``devices`` or all of ``devices_``)."""
        P = self._design(X) @ self.coef_ + self.intercept_
        if devices is None:
            return P
        return P[:, [self.devices_.index(d) for d in devices]]

    def to_dict(self) -> dict[str, Any]:
        return {"type": "DeviceBank", "params": self.get_params(), "coef_": _arr(self.coef_),
                "intercept_": _arr(self.intercept_), "devices_": self.devices_, "pred_mean_": _arr(self.pred_mean_),
                "pred_std_": _arr(self.pred_std_), "train_rmse_": _arr(self.train_rmse_), "n_train_": self.n_train_}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DeviceBank":
        if d.get("type") != "DeviceBank":
            raise ValueError("not a DeviceBank dict")
        self = cls(**d["params"])
        self.coef_ = np.asarray(d["coef_"], dtype=float)
        self.intercept_ = np.asarray(d["intercept_"], dtype=float)
        self.devices_ = list(d["devices_"])
        self.pred_mean_ = np.asarray(d["pred_mean_"], dtype=float)
        self.pred_std_ = np.asarray(d["pred_std_"], dtype=float)
        self.train_rmse_ = np.asarray(d["train_rmse_"], dtype=float)
        self.n_train_ = int(d["n_train_"])
        return self


class FewShotLatency:
    """Latency on a new device from a few measurements, through a fitted :class:`DeviceBank`.

    Parameters
    ----------
    bank : DeviceBank
        Fitted on the known devices (never on the new one).
    devices : sequence of str or None
        Which of the bank's devices to use as features (default: all).
    profile_columns : sequence of int or None
        Columns of the cost profile (indices *after* the encoding in ``X``) used as features.
    profile_mean, profile_std : sequences of float or None
        Standardization of those columns (e.g. over the bank's pool); default: from the support set.
    bank_weight, profile_weight, encoding_weight : float
        Per-group feature scale; a group's effective ridge penalty is ``alpha / weight**2``.
        ``0`` drops the group.
    alphas : sequence of float
        Candidate overall penalties ``a`` (ridge penalty on the normalized target).
    select : "evidence" | "loo"
        How ``a`` is chosen on the support set: maximum marginal likelihood of the Bayesian reading
        of ridge (empirical Bayes, the default) or leave-one-out squared error (both closed form).
    log_target : bool
        Regress log latency instead of latency / mean latency.
    """

    def __init__(self, bank: DeviceBank | None = None, devices: Sequence[str] | None = None,
                 profile_columns: Sequence[int] | None = None, profile_mean: Sequence[float] | None = None,
                 profile_std: Sequence[float] | None = None, bank_weight: float = 1.0, profile_weight: float = 0.1,
                 encoding_weight: float = 0.1, alphas: Sequence[float] = tuple(np.logspace(-4, 3, 29)),
                 select: str = "evidence", log_target: bool = False):
        self.bank = bank
        self.devices = devices
        self.profile_columns = profile_columns
        self.profile_mean = profile_mean
        self.profile_std = profile_std
        self.bank_weight = bank_weight
        self.profile_weight = profile_weight
        self.encoding_weight = encoding_weight
        self.alphas = alphas
        self.select = select
        self.log_target = log_target

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters except ``bank`` (JSON-ready)."""
        return {"devices": None if self.devices is None else list(self.devices),
                "profile_columns": None if self.profile_columns is None else [int(c) for c in self.profile_columns],
                "profile_mean": None if self.profile_mean is None else _arr(self.profile_mean),
                "profile_std": None if self.profile_std is None else _arr(self.profile_std),
                "bank_weight": float(self.bank_weight), "profile_weight": float(self.profile_weight),
                "encoding_weight": float(self.encoding_weight), "alphas": _arr(self.alphas),
                "select": self.select, "log_target": bool(self.log_target)}

    # -- features ------------------------------------------------------------------------------

    def _features(self, X: np.ndarray, fitting: bool = False) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        bank = self.bank
        n_enc = bank.n_layers * bank.n_choices
        groups = []
        if self.bank_weight > 0:
            devs = self.devices if self.devices is not None else bank.devices_
            idx = [bank.devices_.index(d) for d in devs]
            S = (bank.predict(X)[:, idx] - bank.pred_mean_[idx]) / bank.pred_std_[idx]
            groups.append(self.bank_weight * S)
        if self.profile_weight > 0 and self.profile_columns is not None and len(self.profile_columns):
            P = X[:, [n_enc + c for c in self.profile_columns]]
            if fitting:
                if self.profile_mean is not None:
                    self.p_mean_ = np.asarray(self.profile_mean, dtype=float)
                    self.p_std_ = np.asarray(self.profile_std, dtype=float)
                else:
                    self.p_mean_, self.p_std_ = P.mean(0), P.std(0) + 1e-12
            groups.append(self.profile_weight * (P - self.p_mean_) / self.p_std_)
        if self.encoding_weight > 0:
            groups.append(self.encoding_weight * X[:, :n_enc])
        if not groups:
            raise ValueError("all feature groups are switched off")
        return np.hstack(groups)

    def _target(self, y: np.ndarray) -> np.ndarray:
        return np.log(y) if self.log_target else y / self.y_scale_

    # -- fit / predict ---------------------------------------------------------------------------

    def fit(self, X: np.ndarray, y: np.ndarray) -> "FewShotLatency":
        """``X``: (n, encoding + profile) of the measured architectures; ``y``: latencies in ms."""
        if self.bank is None or not hasattr(self.bank, "coef_"):
            raise ValueError("FewShotLatency needs a fitted DeviceBank")
        y = np.asarray(y, dtype=float).ravel()
        if np.any(y <= 0):
            raise ValueError("latencies must be positive")
        self.y_scale_ = float(y.mean())
        Z = self._features(X, fitting=True)
        t = self._target(y)
        z_mean, t_mean = Z.mean(0), t.mean()
        Zc, tc = Z - z_mean, t - t_mean
        U, s, Vt = np.linalg.svd(Zc, full_matrices=False)
        keep = s > 1e-10 * max(float(s.max()), 1e-300)
        U, s, Vt = U[:, keep], s[keep], Vt[keep]
        Ut = U.T @ tc
        m = len(t) - 1  # degrees of freedom left after the intercept
        best = None
        for a in self.alphas:
            a = float(a)
            f = s**2 / (s**2 + a)
            if self.select == "loo":
                # Leave-one-out error in closed form: with an unpenalized intercept the hat matrix is
                # 11'/n + Zc (Zc'Zc + a I)^-1 Zc', so loo_i = r_i / (1 - 1/n - sum_j U_ij^2 f_j).
                h = (U**2 * f).sum(1)
                loo = (tc - U @ (f * Ut)) / np.clip(1.0 - 1.0 / len(t) - h, 1e-6, None)
                crit = float(np.mean(loo**2))
            elif self.select == "evidence":
                # Negative log marginal likelihood of t ~ N(0, tau^2 Zc Zc' + sigma^2 I) with
                # a = sigma^2 / tau^2 and sigma^2 at its maximum-likelihood value (empirical Bayes).
                c = Ut**2
                d = s**2 / a + 1.0
                resid = max(float(tc @ tc - c.sum()), 0.0)
                sigma2 = max((float(np.sum(c / d)) + resid) / m, 1e-300)
                crit = 0.5 * (float(np.sum(np.log(d))) + m * np.log(sigma2) + m)
            else:
                raise ValueError(f"select must be 'evidence' or 'loo', not {self.select!r}")
            if best is None or crit < best[0] - 1e-12:
                best = (crit, a)
        self.alpha_ = best[1]
        self.criterion_ = best[0]
        self.coef_ = Vt.T @ ((s / (s**2 + self.alpha_)) * Ut)
        self.intercept_ = float(t_mean - z_mean @ self.coef_)
        self.n_support_ = int(len(y))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted latency in ms."""
        t = self._features(X) @ self.coef_ + self.intercept_
        return np.exp(t) if self.log_target else t * self.y_scale_

    # -- JSON ------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "FewShotLatency", "params": self.get_params(),
                             "bank": None if self.bank is None else self.bank.to_dict()}
        if hasattr(self, "coef_"):
            d["fitted"] = {"coef_": _arr(self.coef_), "intercept_": self.intercept_, "alpha_": self.alpha_,
                           "criterion_": self.criterion_, "y_scale_": self.y_scale_, "n_support_": self.n_support_,
                           "p_mean_": _arr(getattr(self, "p_mean_", [])), "p_std_": _arr(getattr(self, "p_std_", []))}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FewShotLatency":
        if d.get("type") != "FewShotLatency":
            raise ValueError("not a FewShotLatency dict")
        bank = None if d.get("bank") is None else DeviceBank.from_dict(d["bank"])
        self = cls(bank=bank, **d["params"])
        f = d.get("fitted")
        if f is not None:
            self.coef_ = np.asarray(f["coef_"], dtype=float)
            self.intercept_ = float(f["intercept_"])
            self.alpha_ = float(f["alpha_"])
            self.criterion_ = float(f["criterion_"])
            self.y_scale_ = float(f["y_scale_"])
            self.n_support_ = int(f["n_support_"])
            if len(f["p_mean_"]):
                self.p_mean_ = np.asarray(f["p_mean_"], dtype=float)
                self.p_std_ = np.asarray(f["p_std_"], dtype=float)
        return self


# ----------------------------------------------------------------------------------------------
# The HELP few-shot protocol (Lee et al., NeurIPS 2021; HayeonLee/HELP @11970ec, loader.py and
# parser.py): devices, query set, support set, score.
# ----------------------------------------------------------------------------------------------

#: Device splits. NAS-Bench-201: HELP's own (parser.py defaults / README). FBNet: HELP's validation
#: and test devices; meta-train = every other device of the data file (HELP itself meta-trained on
#: the 9 devices listed under ``help_meta_train``).
HELP_SPLITS: dict[str, dict[str, list[str]]] = {
    "nasbench201": {
        "meta_train": ["1080ti_1", "1080ti_32", "1080ti_256", "silver_4114", "silver_4210r", "samsung_a50",
                       "pixel3", "essential_ph_1", "samsung_s7"],
        "meta_valid": ["titanx_1", "titanx_32", "titanx_256", "gold_6240"],
        "meta_test": ["titan_rtx_256", "gold_6226", "fpga", "pixel2", "raspi4", "eyeriss"],
    },
    "fbnet": {
        "meta_train": ["1080ti_1", "1080ti_32", "1080ti_64", "2080ti_1", "2080ti_32", "2080ti_64", "essential_ph_1",
                       "gold_6226", "pixel2", "pixel3", "samsung_a50", "samsung_s7", "silver_4114", "silver_4210r",
                       "titan_rtx_1", "titan_rtx_32", "titan_rtx_64", "titanxp_1", "titanxp_32", "titanxp_64"],
        "help_meta_train": ["1080ti_1", "1080ti_32", "1080ti_64", "silver_4114", "silver_4210r", "samsung_a50",
                            "pixel3", "essential_ph_1", "samsung_s7"],
        "meta_valid": ["titanx_1", "titanx_32", "titanx_64", "gold_6240"],
        "meta_test": ["raspi4", "eyeriss", "fpga"],
    },
}

#: Encoding shape (layers/edges, choices) per space.
ENCODING_SHAPE = {"nasbench201": (6, 5), "fbnet": (22, 9)}


def shared_data_dir() -> Path:
    """``$EDGEVIT_NAS_SHARED_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get("EDGEVIT_NAS_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class HelpData:
    space: str
    archs: list[str]
    devices: list[str]
    latency: dict[str, np.ndarray]  # device -> latency (ms) of every architecture, row order
    reference: list[int]  # HELP's 10 reference architectures (hardware_embedding_index)


def load_help(space: str, data_dir: str | Path | None = None) -> HelpData:
    """Read ``help/<space>/latency_ms.csv`` and ``reference_indices.json``; rows must be index 0..n-1."""
    root = Path(data_dir) if data_dir is not None else shared_data_dir()
    folder = root / "help" / space
    with open(folder / "latency_ms.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if [int(r["index"]) for r in rows] != list(range(len(rows))):
        raise ValueError(f"{folder}/latency_ms.csv: rows are not in index order 0..n-1")
    devices = [k for k in rows[0] if k not in ("index", "arch")]
    latency = {d: np.array([float(r[d]) for r in rows]) for d in devices}
    reference = json.loads((folder / "reference_indices.json").read_text())["hardware_embedding_index"]
    return HelpData(space, [r["arch"] for r in rows], devices, latency, [int(i) for i in reference])


def query_indices(latency: np.ndarray, start: int = 900, size: int = 1000, trim: float = 0.1) -> np.ndarray:
    """HELP's query set: indices ``start .. start+size-1`` without the ``trim`` fraction of lowest and
    of highest latencies on the device (loader.py: ``argsort(latency[valid_idx])[0.1 n : 0.9 n]``)."""
    q = np.arange(start, start + size)
    order = np.argsort(np.asarray(latency)[q], kind="stable")
    return q[order[int(size * trim): int(size * (1 - trim))]]


def support_indices(reference: Sequence[int], seed: int, n_total: int = 20, pool_end: int = 900,
                    query: tuple[int, int] = (900, 1900)) -> np.ndarray:
    """The architectures measured on the new device: the reference architectures plus random ones
    from ``0 .. pool_end-1`` (``numpy.random.default_rng(seed)``), ``n_total`` in all.

    A reference architecture inside the query range ``[query[0], query[1])`` is left out and
    replaced by one more random architecture, so no query architecture is ever a training target.
    """
    ref = [int(r) for r in reference if not (query[0] <= r < query[1])]
    rng = np.random.default_rng(seed)
    cand = np.setdiff1d(np.arange(pool_end), ref)
    cand = cand[(cand < query[0]) | (cand >= query[1])]
    extra = rng.choice(cand, n_total - len(ref), replace=False)
    return np.array(ref + sorted(int(i) for i in extra))


def trimmed_spearman(pred: np.ndarray, latency: np.ndarray, query: np.ndarray) -> float:
    """Spearman's rho between predictions and measured latencies over the query indices."""
    return float(spearmanr(np.asarray(pred)[query], np.asarray(latency)[query])[0])
