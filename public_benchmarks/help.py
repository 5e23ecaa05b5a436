"""The HELP few-shot latency benchmark (Lee et al., NeurIPS 2021): its devices, data, protocol, and the
bank of known devices the few-shot adapter transfers from.

``DeviceBank``
    One linear surrogate per known ("meta-train") device, fitted on many measured architectures:
    ridge regression (:class:`sklearn.linear_model.Ridge`, one multi-output solve) of latency (ms)
    on the architecture encoding (one-hot choice per edge / layer) and optionally products of pairs
    of choices (pairwise interactions).

A new device is then adapted with :class:`predictors.latency.fewshot.FewShotAdapter`: its bases are
the bank's surrogates of the meta-train devices, its profile the network's cost profile counted on
the real module (:mod:`public_benchmarks.profiling`), as ``bench/help_fewshot.py`` does.

Everything that describes an architecture arrives as one matrix ``X = [encoding | profile]``; the
first ``n_layers * n_choices`` columns are the one-hot encoding, the rest the cost profile
(:func:`public_benchmarks.profiling.space_features`). :class:`ProfileColumns` turns such rows into
the adapter's profile.

Data: ``public_benchmarks/data/help/`` (HayeonLee/HELP @45f70eb, MIT; sources and hashes in its
PROVENANCE.md), read by :func:`load_help`.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.base import BaseEstimator
from sklearn.linear_model import Ridge
from sklearn.utils.validation import check_is_fitted

from .data import read_csv_rows, read_json

__all__ = ["DeviceBank", "pairwise_features", "ProfileColumns", "profile_columns", "HELP_SPLITS", "ENCODING_SHAPE",
           "HelpData", "load_help", "query_indices", "support_indices", "trimmed_spearman"]


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


class DeviceBank(BaseEstimator):
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
        self.devices_ = list(devices) if devices is not None else [f"device_{i}" for i in range(Y.shape[1])]
        if len(self.devices_) != Y.shape[1]:
            raise ValueError("one device name per column of Y")
        ridge = Ridge(alpha=self.alpha, fit_intercept=True, solver="cholesky").fit(A, Y)
        self.coef_ = ridge.coef_.T  # (features, devices)
        self.intercept_ = np.asarray(ridge.intercept_, dtype=float)
        P = A @ self.coef_ + self.intercept_
        # statistics of the surrogates over the pool they were fitted on, for standardizing
        self.pred_mean_ = P.mean(0)
        self.pred_std_ = P.std(0) + 1e-12
        self.train_rmse_ = np.sqrt(((P - Y) ** 2).mean(0))
        self.n_train_ = int(A.shape[0])
        return self

    def surrogate(self, device: str) -> Callable[[np.ndarray], np.ndarray]:
        """``X -> latency`` of one device: a base for :class:`~predictors.latency.fewshot.FewShotAdapter`.
        Raises :class:`sklearn.exceptions.NotFittedError` (a ``ValueError``) on an unfitted bank."""
        check_is_fitted(self)
        if device not in self.devices_:
            raise ValueError(f"device {device!r}: not in the bank ({', '.join(self.devices_)})")
        j = self.devices_.index(device)
        coef, intercept = self.coef_[:, j], float(self.intercept_[j])
        # one column only: an adapter calls every base on every row, so a whole-bank predict per base
        # would cost the number of devices over again
        return lambda X: self._design(X) @ coef + intercept

    def predict(self, X: np.ndarray, devices: Sequence[str] | None = None) -> np.ndarray:
        """(n, D) predicted latencies in ms (columns: ``devices`` or all of ``devices_``)."""
        check_is_fitted(self)
        P = self._design(X) @ self.coef_ + self.intercept_
        if devices is None:
            return P
        return P[:, [self.devices_.index(d) for d in devices]]

    def to_dict(self) -> dict[str, Any]:
        return {"type": "DeviceBank", "params": self.get_params(deep=False), "coef_": _arr(self.coef_),
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


def profile_columns(keys: Sequence[str]) -> list[int]:
    """The cost-profile columns a HELP adapter reads: MACs per operator kind, output sizes, call
    counts and parameters (``keys`` as :func:`public_benchmarks.profiling.space_features` names them)."""
    return [i for i, k in enumerate(keys) if k.startswith(("macs_", "out_", "n_")) or k == "params"]


@dataclass(frozen=True)
class ProfileColumns:
    """The ``profile`` callable of a :class:`~predictors.latency.fewshot.FewShotAdapter` on rows
    ``X = [encoding | profile]``: the cost-profile columns ``columns`` (their natural log when ``log``),
    then the one-hot encoding itself when ``encoding``.

    A dataclass rather than a closure so the adapter's parameters print and compare by value.
    """

    n_encoding: int
    columns: tuple[int, ...]
    log: bool = False
    encoding: bool = False

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        P = X[:, [self.n_encoding + c for c in self.columns]]
        if self.log:
            P = np.log(np.maximum(P, 1e-300))
        return np.hstack([P, X[:, : self.n_encoding]]) if self.encoding else P


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


@dataclass(frozen=True)
class HelpData:
    space: str
    archs: list[str]
    devices: list[str]
    latency: dict[str, np.ndarray]  # device -> latency (ms) of every architecture, row order
    reference: list[int]  # HELP's 10 reference architectures (hardware_embedding_index)


def load_help(space: str, data_dir: str | os.PathLike | None = None) -> HelpData:
    """``help/<space>/latency_ms.csv`` and ``reference_indices.json`` from the shipped data (or
    ``data_dir``, a folder with the same layout: :mod:`public_benchmarks.data`); rows must be index
    0..n-1."""
    if space not in ENCODING_SHAPE:
        raise ValueError(f"unknown HELP space {space!r}; known: {sorted(ENCODING_SHAPE)}")
    rows = read_csv_rows("help", space, "latency_ms.csv", root=data_dir)
    if not rows or [int(r["index"]) for r in rows] != list(range(len(rows))):
        raise ValueError(f"help/{space}/latency_ms.csv: rows are not in index order 0..n-1")
    devices = [k for k in rows[0] if k not in ("index", "arch")]
    latency = {d: np.array([float(r[d]) for r in rows]) for d in devices}
    reference = read_json("help", space, "reference_indices.json", root=data_dir)["hardware_embedding_index"]
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
