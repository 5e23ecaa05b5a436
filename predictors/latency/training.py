"""Train, compare and choose a device's latency or energy model from its measurements.

``train`` reads a device's clean measurements from the store, cross-validates every method of
:mod:`predictors.latency.estimators` on the same folds, keeps the most accurate (within-10% first,
then within-5%, then RMSE; measured, not assumed) and fits it on all the data. The returned
:class:`~predictors.latency.device_model.DeviceModel` carries the comparison and the training-data
hash, so a model loaded against a store that has changed since says so.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from device_farm import Measurement, MeasurementStore
from search_space import EdgeViTConfig

from .device_model import TARGETS, DeviceModel, NoDataError
from .estimators import METHODS, cross_validate

__all__ = ["dataset", "data_hash", "train", "check_data"]

_ENERGY_HELP = (
    "energy needs measurements with energy_mj: measure on a device whose profile names an energy_sensor that "
    "exists there (rapl: a Linux host with readable /sys/class/powercap; nvml: an NVIDIA GPU; ina3221: a Jetson; "
    "android-battery: a phone over adb), or import readings from an external power meter with "
    "'nas farm import FILE.csv' (column energy_mj)"
)


def dataset(store: MeasurementStore, device: str, target: str = "latency"
            ) -> tuple[list[EdgeViTConfig], np.ndarray, list[Measurement]]:
    """The device's clean (``ok``) rows that carry ``target``: configurations, values, rows."""
    if target not in TARGETS:
        raise ValueError(f"target={target!r}: allowed: {', '.join(TARGETS)}")
    col = TARGETS[target]
    rows = [r for r in store.query(device=device, status="ok") if getattr(r, col) is not None and r.config]
    return [EdgeViTConfig.from_dict(r.config) for r in rows], np.array([getattr(r, col) for r in rows]), rows


def data_hash(rows: list[Measurement], target: str) -> str:
    col = TARGETS[target]
    items = sorted((r.arch_id, r.runtime_version, r.threads, round(getattr(r, col), 6)) for r in rows)
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


def train(store: MeasurementStore, device: str, target: str = "latency", method: str = "auto", folds: int = 5,
          seed: int = 0, min_rows: int = 20) -> DeviceModel:
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
                                                 -comparison[m]["rmse"]))
    est = METHODS[method](random_state=seed).fit(cfgs, y)
    return DeviceModel(device=device, target=target, estimator=est, source="measured",
                       provenance=f"trained on {store.path}, method {method}", n_measurements=len(y),
                       data_hash=data_hash(rows, target), comparison=comparison)


def check_data(model: DeviceModel, store: MeasurementStore, path: str | os.PathLike = "") -> None:
    """Warn when ``store`` no longer holds the rows ``model`` was trained on."""
    if model.source != "measured":
        return
    _, _, rows = dataset(store, model.device, model.target)
    current = data_hash(rows, model.target)
    if current != model.data_hash:
        warnings.warn(f"{Path(path) if path else model.device}: trained on data {model.data_hash} "
                      f"({model.n_measurements} rows) but {store.path} now holds {current} ({len(rows)} rows); "
                      f"retrain with 'nas predictor train --device {model.device}'", stacklevel=2)
