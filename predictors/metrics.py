"""The one set of figures every predictor is judged by, computed in one place.

Arguments come in scikit-learn's order, ``(y_true, y_pred)``. Relative error is ``|pred / true - 1|``,
so "within 10%" means the prediction lies within 10% of the measurement.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy.stats import kendalltau, spearmanr

__all__ = ["Metrics", "regression_metrics"]


@dataclass(frozen=True)
class Metrics:
    """n, share within 5 % / 10 %, RMSE (in the target's unit), Kendall tau, Spearman rho, RMS log
    error, 99th percentile of the relative error. Rank correlations are NaN when either side is constant."""

    n: int
    within_5: float
    within_10: float
    rmse: float
    kendall_tau: float
    spearman: float
    rms_log: float
    p99_rel: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def __getitem__(self, key: str) -> float:  # reports index figures by name
        return getattr(self, key)


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> Metrics:
    """Figures of ``y_pred`` against ``y_true`` (both positive: latencies, energies)."""
    yt = np.asarray(y_true, dtype=float)
    yp = np.asarray(y_pred, dtype=float)
    if yt.shape != yp.shape or yt.ndim != 1:
        raise ValueError(f"y_true, y_pred: expected two vectors of one length, got {yt.shape} and {yp.shape}")
    if not len(yt):
        nan = float("nan")
        return Metrics(0, nan, nan, nan, nan, nan, nan, nan)
    rel = np.abs(yp / yt - 1.0)
    ranked = len(yt) > 1 and np.ptp(yt) > 0 and np.ptp(yp) > 0
    return Metrics(
        n=int(len(yt)),
        within_5=float(np.mean(rel <= 0.05)),
        within_10=float(np.mean(rel <= 0.10)),
        rmse=float(np.sqrt(np.mean((yp - yt) ** 2))),
        kendall_tau=float(kendalltau(yt, yp)[0]) if ranked else float("nan"),
        spearman=float(spearmanr(yt, yp)[0]) if ranked else float("nan"),
        rms_log=float(np.sqrt(np.mean(np.log(np.maximum(yp, 1e-12) / yt) ** 2))),
        p99_rel=float(np.quantile(rel, 0.99)),
    )
