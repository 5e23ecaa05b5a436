"""Train, compare, persist and load a device's latency or energy predictor.

``train`` reads a device's clean measurements from the store, cross-validates every method of
:mod:`predictors.latency` on the same folds, keeps the most accurate (within-10% first, then RMSE;
measured, not assumed) and fits it on all the data. The saved JSON carries the comparison, the
training-data hash and the versions, so a predictor loaded against a store that has changed since
says so.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from device_farm import Measurement, MeasurementStore
from search_space import EdgeViTConfig

from .latency import METHODS, cross_validate, predictor_from_dict

__all__ = ["TARGETS", "NoDataError", "TrainedPredictor", "dataset", "data_hash", "train", "default_path", "load"]

TARGETS: dict[str, str] = {"latency": "median_ms", "energy": "energy_mj"}
UNITS = {"latency": "ms", "energy": "mJ"}
FORMAT_VERSION = 1

_ENERGY_HELP = (
    "energy needs measurements with energy_mj: measure on a device whose profile names an energy_sensor that "
    "exists there (rapl: a Linux host with readable /sys/class/powercap; nvml: an NVIDIA GPU; ina3221: a Jetson; "
    "android-battery: a phone over adb), or import readings from an external power meter with "
    "'nas farm import FILE.csv' (column energy_mj)"
)


class NoDataError(ValueError):
    """Not enough clean measurements to train; the message says what would provide them."""


def dataset(store: MeasurementStore, device: str, target: str = "latency") -> tuple[list[EdgeViTConfig], np.ndarray, list[Measurement]]:
    if target not in TARGETS:
        raise ValueError(f"target={target!r}: allowed: {', '.join(TARGETS)}")
    col = TARGETS[target]
    rows = [r for r in store.query(device=device, status="ok") if getattr(r, col) is not None and r.config]
    return [EdgeViTConfig.from_dict(r.config) for r in rows], np.array([getattr(r, col) for r in rows]), rows


def data_hash(rows: list[Measurement], target: str) -> str:
    col = TARGETS[target]
    items = sorted((r.arch_id, r.runtime_version, r.threads, round(getattr(r, col), 6)) for r in rows)
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


@dataclass
class TrainedPredictor:
    device: str
    target: str
    method: str
    model: Any
    data_hash: str
    n_train: int
    comparison: dict[str, dict[str, float]] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    provenance: str = ""

    @property
    def unit(self) -> str:
        return UNITS[self.target]

    def predict_with_std(self, cfgs: list[EdgeViTConfig]) -> tuple[np.ndarray, np.ndarray]:
        return self.model.predict_with_std(cfgs)

    def to_dict(self) -> dict[str, Any]:
        import onnxruntime
        import sklearn

        return {"format_version": FORMAT_VERSION, "device": self.device, "target": self.target, "method": self.method,
                "data_hash": self.data_hash, "n_train": self.n_train, "comparison": self.comparison,
                "created_at": self.created_at, "provenance": self.provenance,
                "versions": {"scikit-learn": sklearn.__version__, "onnxruntime": onnxruntime.__version__},
                "model": self.model.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainedPredictor":
        if d.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format_version={d.get('format_version')!r}: this package reads {FORMAT_VERSION}")
        return cls(device=d["device"], target=d["target"], method=d["method"], model=predictor_from_dict(d["model"]),
                   data_hash=d["data_hash"], n_train=d["n_train"], comparison=d["comparison"],
                   created_at=d["created_at"], provenance=d.get("provenance", ""))

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict()))
        os.replace(tmp, path)
        return path


def default_path(device: str, target: str = "latency", root: str | os.PathLike = "runs/predictors") -> Path:
    return Path(root) / f"{device}-{target}.json"


def train(store: MeasurementStore, device: str, target: str = "latency", method: str = "auto", folds: int = 5,
          seed: int = 0, min_rows: int = 20) -> TrainedPredictor:
    """Cross-validate the methods on ``device``'s clean measurements and fit the chosen one on all of them."""
    if method != "auto" and method not in METHODS:
        raise ValueError(f"method={method!r}: allowed: auto, {', '.join(METHODS)}")
    cfgs, y, rows = dataset(store, device, target)
    if len(y) < min_rows:
        if target == "energy" and not y.size:
            raise NoDataError(f"device {device}: no energy measurements in {store.path}; {_ENERGY_HELP}")
        raise NoDataError(f"device {device}: {len(y)} clean {target} measurements in {store.path}, need >= {min_rows}; "
                          f"run 'nas farm sample --device {device} -n 300' (or import measurements)")
    comparison = {m: cross_validate(m, cfgs, y, folds=folds, seed=seed)[0].as_dict() for m in METHODS}
    if method == "auto":
        method = max(comparison, key=lambda m: (comparison[m]["within_10"], comparison[m]["within_5"],
                                                 -comparison[m]["rmse_ms"]))
    model = METHODS[method](random_state=seed).fit(cfgs, y)
    return TrainedPredictor(device=device, target=target, method=method, model=model, data_hash=data_hash(rows, target),
                            n_train=len(y), comparison=comparison, provenance=f"trained on {store.path}")


def load(path: str | os.PathLike, store: MeasurementStore | None = None) -> TrainedPredictor:
    """Read a saved predictor (JSON only); with ``store``, warn when its data no longer matches."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictor={str(path)!r}: no such file; train one with 'nas predictor train'")
    p = TrainedPredictor.from_dict(json.loads(path.read_text()))
    if store is not None:
        _, _, rows = dataset(store, p.device, p.target)
        current = data_hash(rows, p.target)
        if current != p.data_hash:
            warnings.warn(f"{path}: trained on data {p.data_hash} ({p.n_train} rows) but {store.path} now holds "
                          f"{current} ({len(rows)} rows); retrain with 'nas predictor train --device {p.device}'",
                          stacklevel=2)
    return p
