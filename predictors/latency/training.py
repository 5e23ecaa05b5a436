"""Train, compare and choose a device's latency or energy model from its measurements.

``train`` reads a device's clean measurements from the store, cross-validates every method of
:mod:`predictors.latency.estimators` on the same folds, keeps the most accurate (within-10% first,
then within-5%, then RMSE; measured, not assumed) and fits it on all the data. The returned
:class:`~predictors.latency.device_model.DeviceModel` carries the comparison and the training-data
hash, so a model loaded against a store that has changed since says so.

Measurements of :func:`search_space.held_out.held_out_set` (constructor-like networks, the presets,
the width/depth extremes: ``nas farm measure --device D held-out``) are never trained on: every
method is fitted on the rest and judged on them, as they are and after one scalar rescale (the
geometric mean of measured over predicted, what a single reference measurement on another machine
would give). Cross-validation says how a method does on the distribution it was trained on; the
held-out set, drawn differently, says how it does on the networks users ask about.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from device_farm import Measurement, MeasurementStore
from search_space import EdgeViTConfig
from search_space.held_out import held_out_set

from ..metrics import regression_metrics

from .device_model import TARGETS, DeviceModel, NoDataError
from .estimators import METHODS, cross_validate, fit_method

__all__ = ["dataset", "data_hash", "profiles_of", "train", "held_out_figures", "check_data"]

_ENERGY_HELP = (
    "energy needs measurements with energy_mj: measure on a device whose profile names an energy_sensor that "
    "exists there (rapl: a Linux host with readable /sys/class/powercap; nvml: an NVIDIA GPU; ina3221: a Jetson; "
    "android-battery: a phone over adb), or import readings from an external power meter with "
    "'nas farm import FILE.csv' (column energy_mj)"
)


#: Held-out networks in the store needed to choose the method on them rather than by cross-validation.
HELD_OUT_MIN = 20


def dataset(store: MeasurementStore, device: str, target: str = "latency"
            ) -> tuple[list[EdgeViTConfig], np.ndarray, list[Measurement]]:
    """The device's clean (``ok``) rows that carry ``target``: configurations, values, rows."""
    if target not in TARGETS:
        raise ValueError(f"target={target!r}: allowed: {', '.join(TARGETS)}")
    col = TARGETS[target]
    rows = [r for r in store.query(device=device, status="ok") if getattr(r, col) is not None and r.config]
    if target == "latency":
        from device_farm.measure import stale_norm

        n = stale_norm(rows)
        if n:  # two definitions of norm_ms in one data set would train on two units
            raise NoDataError(f"device {device}: {n} of {len(rows)} rows in {store.path} carry norm_ms of an earlier "
                              f"definition; run 'nas farm renormalise --store {store.path}' (keeps the old values)")
    return [EdgeViTConfig.from_dict(r.config) for r in rows], np.array([getattr(r, col) for r in rows]), rows


def profiles_of(store: MeasurementStore, rows: list[Measurement]) -> list[list[dict]] | None:
    """The stored operator profile of every row, or None when any row has none (measured without
    ``--profile-ops``): the operator-level model then sits out the comparison."""
    out = []
    for r in rows:
        prof = [p for p in store.op_profile(r.arch_id, r.device)
                if p["runtime_version"] == r.runtime_version and p["threads"] == r.threads]
        if not prof:
            return None
        out.append(prof)
    return out


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
    profiles = profiles_of(store, rows) if target == "latency" else None
    methods = [m for m in METHODS if profiles is not None or not getattr(METHODS[m], "needs_profiles", False)]
    if method != "auto" and method not in methods:
        raise NoDataError(f"method={method}: needs operator profiles of every measurement; measure with "
                          f"'nas farm sample --device {device} --profile-ops'")
    held = {c.arch_id for c in held_out_set()}
    keep = [i for i, c in enumerate(cfgs) if c.arch_id not in held]
    out = [i for i, c in enumerate(cfgs) if c.arch_id in held]
    if len(keep) < min_rows:
        raise NoDataError(f"device {device}: {len(keep)} clean {target} measurements outside the held-out set, "
                          f"need >= {min_rows}; run 'nas farm sample --device {device} -n 300'")
    tr_cfgs, tr_y, tr_rows = [cfgs[i] for i in keep], y[keep], [rows[i] for i in keep]
    tr_prof = [profiles[i] for i in keep] if profiles is not None else None
    comparison = {m: cross_validate(m, tr_cfgs, tr_y, folds=folds, seed=seed, profiles=tr_prof)[0].as_dict()
                  for m in methods}
    held_out = held_out_figures(methods, tr_cfgs, tr_y, tr_prof, [cfgs[i] for i in out], y[out], seed) if out else {}
    chosen_by = "given"
    if method == "auto" and len(out) >= HELD_OUT_MIN:
        # Chosen on the networks never trained on, not by cross-validation: on the host (issue #13)
        # in-distribution CV ranked the operator model first and it generalised worst of the
        # kernel-sum family to the constructor-like held-out set. The chosen model's held-out figure
        # is then slightly optimistic (the best of len(methods)); the CV table stays beside it.
        method = max(methods, key=lambda m: (held_out[m]["rescaled"]["within_10"], held_out[m]["rescaled"]["within_5"],
                                             held_out[m]["rescaled"]["kendall_tau"]))
        chosen_by = f"held-out ({len(out)} networks)"
    elif method == "auto":
        method = max(comparison, key=lambda m: (comparison[m]["within_10"], comparison[m]["within_5"],
                                                 -comparison[m]["rmse"]))
        chosen_by = f"{folds}-fold cross-validation"
    est = fit_method(method, tr_cfgs, tr_y, tr_prof, random_state=seed)
    return DeviceModel(device=device, target=target, estimator=est, source="measured",
                       provenance=f"trained on {store.path}, method {method} (chosen by {chosen_by})", n_measurements=len(tr_y),
                       data_hash=data_hash(tr_rows, target), comparison=comparison, held_out=held_out)


def held_out_figures(methods, cfgs, y, profiles, held_cfgs, held_y, seed: int = 0) -> dict[str, Any]:
    """Every method fitted on (``cfgs``, ``y``) and judged on the held-out networks: as predicted and
    after one scalar rescale (the geometric mean of measured over predicted)."""
    out: dict[str, Any] = {"n": len(held_y), "arch_ids": [c.arch_id for c in held_cfgs]}
    for m in methods:
        pred = fit_method(m, cfgs, y, profiles, n_folds_sigma=0, random_state=seed).predict(held_cfgs)[0]
        scale = float(np.exp(np.mean(np.log(held_y / pred))))
        out[m] = {"as_predicted": regression_metrics(held_y, pred).as_dict(),
                  "rescaled": regression_metrics(held_y, pred * scale).as_dict(), "scale": scale}
    return out


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
