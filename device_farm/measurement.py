"""The measurement record and the statistics that make a latency number honest.

A latency is a distribution, not a number: the record keeps the median with its spread (p10, p90,
IQR, coefficient of variation), the 95% confidence half-width of the median relative to it, the
repeats behind it, the candle (reference model) timings around it, and the environment it was taken
in. ``status`` says whether a predictor may learn from it: ``ok``, ``disturbed`` (kept for the
record, never used as a clean value) or ``failed`` (with its ``error``).

Two latencies are kept side by side: ``median_ms``, the raw median of the candidate's timings, and
``norm_ms``, the candidate/candle ratio times the device's fixed reference candle, which cancels
what changes the whole machine's speed between runs (``bench/farm_noise.py`` measures how much better
it repeats). :attr:`Measurement.latency_ms` is the one predictors learn: ``norm_ms`` where it exists.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

import numpy as np

__all__ = ["STATUSES", "LatencyStats", "summarize", "median_ci_halfwidth", "Measurement", "KEY_FIELDS"]

STATUSES: tuple[str, ...] = ("ok", "disturbed", "failed")
#: What makes two measurements "the same measurement" (the store's unique key).
KEY_FIELDS: tuple[str, ...] = ("arch_id", "device", "runtime", "runtime_version", "input_shape", "threads", "precision")


def median_ci_halfwidth(times: np.ndarray, z: float = 1.96) -> float:
    """Half-width of the distribution-free confidence interval of the median (order statistics).

    Ranks ``n/2 -+ z*sqrt(n)/2`` bound the median with ~95% coverage for z = 1.96, whatever the
    distribution: latency samples are skewed and heavy-tailed, so a normal-theory interval would lie.
    """
    x = np.sort(np.asarray(times, dtype=float))
    n = len(x)
    if n < 3:
        return math.inf
    lo = max(int(math.floor(n / 2 - z * math.sqrt(n) / 2)), 0)
    hi = min(int(math.ceil(n / 2 + z * math.sqrt(n) / 2)), n - 1)
    return float(x[hi] - x[lo]) / 2


@dataclass(frozen=True)
class LatencyStats:
    median_ms: float
    p10_ms: float
    p90_ms: float
    iqr_ms: float
    cv: float
    ci95_rel: float
    repeats: int


def summarize(times_ms) -> LatencyStats:
    x = np.asarray(times_ms, dtype=float)
    if x.size == 0:
        raise ValueError("times_ms: needs at least one timing")
    med = float(np.median(x))
    q10, q25, q75, q90 = np.percentile(x, [10, 25, 75, 90])
    mean = float(x.mean())
    cv = float(x.std(ddof=1) / mean) if x.size > 1 and mean > 0 else 0.0
    return LatencyStats(med, float(q10), float(q90), float(q75 - q25), cv, median_ci_halfwidth(x) / med, int(x.size))


@dataclass
class Measurement:
    arch_id: str
    device: str
    runtime: str
    runtime_version: str
    input_shape: str  # "1x3x224x224"
    threads: int
    precision: str
    status: str
    median_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    iqr_ms: float | None = None
    cv: float | None = None
    ci95_rel: float | None = None
    repeats: int | None = None
    candle_ms: float | None = None
    candle_ratio: float | None = None  # candidate / candle time, interleaved: the drift-cancelled latency
    norm_ms: float | None = None  # candle_ratio x the device's reference candle (store): the latency predictors learn
    energy_mj: float | None = None
    energy_source: str | None = None  # sensor that measured it; None: energy unavailable
    error: str | None = None
    env: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] | None = None
    source: str = "measured"  # provenance: "measured:<host>", "import:<file>", ...
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status={self.status!r}: allowed: {', '.join(STATUSES)}")

    def key(self) -> tuple:
        return tuple(getattr(self, k) for k in KEY_FIELDS)

    @property
    def latency_ms(self) -> float | None:
        """The latency predictors learn: the drift-normalised one where it exists, else the raw median."""
        return self.norm_ms if self.norm_ms is not None else self.median_ms

    def with_stats(self, stats: LatencyStats) -> "Measurement":
        for f in fields(stats):
            setattr(self, f.name, getattr(stats, f.name))
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Measurement":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
