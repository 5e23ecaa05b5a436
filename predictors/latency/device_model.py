"""A device's saved latency (or energy) model: one estimator plus what it rests on.

The file ``runs/predictors/<device>-<target>.json`` holds a :class:`DeviceModel`: the estimator
(any registered kind, :mod:`predictors.base`), where its data came from (``source``: ``measured``
on the device itself, ``nn-meter`` block tables, ``few-shot`` calibration), how many measurements
of the device it saw, the hash of its training rows, the cross-validated comparison that chose it,
and the versions that wrote it. Loading is a registry lookup of the estimator's kind; a tampered,
truncated or outdated file fails with one line that says how to rebuild it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from search_space import EdgeViTConfig
from search_space.files import FileFormatError, read_json, write_json

from ..base import FORMAT_VERSION, LatencyEstimator, ModelFileError

__all__ = ["TARGETS", "UNITS", "SOURCES", "NoDataError", "DeviceModel", "default_path"]

#: Target name -> the measurement column it learns.
TARGETS: dict[str, str] = {"latency": "latency_ms", "energy": "energy_mj"}  # latency_ms: norm_ms, else the raw median
UNITS: dict[str, str] = {"latency": "ms", "energy": "mJ"}
#: Where a device model's data came from; ``measured`` models are retrained on the store after a
#: search measures new candidates, the others get a run-level scale correction. ``block-transfer``:
#: the phone block model fitted on a table mapped from the shipped phones' tables by about 20 blocks
#: measured on the device (``nas farm calibrate --blocks``, issue #14 item 6).
SOURCES: tuple[str, ...] = ("measured", "nn-meter", "few-shot", "block-transfer")


class NoDataError(ValueError):
    """Not enough data to build a model; the message says what would provide it."""


def default_path(device: str, target: str = "latency", root: str | os.PathLike = "runs/predictors") -> Path:
    return Path(root) / f"{device}-{target}.json"


def _versions() -> dict[str, str]:
    import onnxruntime
    import sklearn

    return {"scikit-learn": sklearn.__version__, "onnxruntime": onnxruntime.__version__}


#: The figures of each method in a saved comparison (``nas predictor show`` prints them).
_COMPARISON_KEYS = ("n", "within_5", "within_10", "rmse", "kendall_tau", "spearman")


def _check_comparison(comparison: Any) -> dict[str, dict[str, float]]:
    """A saved cross-validation comparison: ``{method: {figure: number}}`` with the figures people read."""
    if not isinstance(comparison, dict) or len(comparison) > 100:
        raise TypeError("comparison must be a JSON object of at most 100 methods")
    for method, figures in comparison.items():
        if not isinstance(figures, dict):
            raise TypeError(f"comparison.{method[:40]} must be a JSON object of figures")
        for key in _COMPARISON_KEYS:
            v = figures.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"comparison.{method[:40]}.{key} must be a number")
    return comparison


@dataclass
class DeviceModel:
    """What the search asks "how fast on this device, and how sure?"; ``predict`` gives (mean, std)."""

    device: str
    target: str
    estimator: LatencyEstimator
    source: str
    provenance: str
    n_measurements: int = 0
    data_hash: str = ""
    comparison: dict[str, dict[str, float]] = field(default_factory=dict)
    held_out: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target={self.target!r}: allowed: {', '.join(TARGETS)}")
        if self.source not in SOURCES:
            raise ValueError(f"source={self.source!r}: allowed: {', '.join(SOURCES)}")

    @property
    def unit(self) -> str:
        return UNITS[self.target]

    @property
    def method(self) -> str:
        return self.estimator.kind

    @property
    def calibration(self) -> str:
        """One line for people: what the numbers rest on."""
        return f"{self.n_measurements} measurements on {self.device}; {self.provenance}"

    def predict(self, cfgs: Sequence[EdgeViTConfig]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (in :attr:`unit`) for each candidate."""
        return self.estimator.predict(cfgs)

    def describe(self) -> str:
        return f"{self.device} {self.target}: {self.estimator.describe()}; {self.calibration}"

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "device": self.device, "target": self.target,
                "source": self.source, "provenance": self.provenance, "n_measurements": self.n_measurements,
                "data_hash": self.data_hash, "comparison": self.comparison, "held_out": self.held_out,
                "created_at": self.created_at,
                "versions": _versions(), "estimator": self.estimator.to_dict()}

    @classmethod
    def from_dict(cls, d: Any, where: str = "model file") -> "DeviceModel":
        if not isinstance(d, dict):
            raise ModelFileError(f"{where}: expected a JSON object")
        if d.get("format_version") != FORMAT_VERSION:
            raise ModelFileError(f"{where}: format_version={str(d.get('format_version'))[:20]}, this package reads "
                                 f"{FORMAT_VERSION}; rebuild it ('nas predictor train --device ...')")
        try:
            fields_ = {k: d[k] for k in ("device", "target", "source", "provenance")}
            if not all(isinstance(v, str) for v in fields_.values()):
                raise TypeError("device, target, source and provenance must be strings")
            n = d.get("n_measurements", 0)
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise TypeError("n_measurements must be a non-negative integer")
            comparison = _check_comparison(d.get("comparison", {}))
            held_out = d.get("held_out", {})
            if not isinstance(held_out, dict):
                raise TypeError("held_out must be a JSON object")
            est = LatencyEstimator.from_dict(d["estimator"])
            return cls(**fields_, estimator=est, n_measurements=n, data_hash=str(d.get("data_hash", "")),
                       comparison=comparison, held_out=held_out, created_at=str(d.get("created_at", "")))
        except ModelFileError as e:
            raise ModelFileError(f"{where}: {e}") from None
        except (KeyError, TypeError, ValueError) as e:
            raise ModelFileError(f"{where}: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None

    def save(self, path: str | os.PathLike) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DeviceModel":
        """Read a saved model (JSON only; :class:`ModelFileError` or ``FileFormatError`` in one line)."""
        path = Path(path)
        if not path.is_file() and not path.exists():
            raise FileNotFoundError(f"predictor={str(path)!r}: no such file; train one with 'nas predictor train'")
        try:
            d = read_json(path, what="predictor")
        except FileFormatError as e:
            raise ModelFileError(str(e)) from None
        return cls.from_dict(d, where=f"predictor {path}")
