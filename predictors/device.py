"""One question for the search: "how fast is this candidate on device X, and how sure are we?".

A device's latency model comes from the best source it has, in this order:

1. **measured**: a predictor trained on the device's own measurements (``nas predictor train``),
   saved as ``runs/predictors/<device>-latency.json``;
2. **nn-meter blocks**: for phones not yet measured, the block-latency tables of nn-Meter mapped onto
   EdgeViT's sub-blocks (:mod:`predictors.phone`), fitted on first use and cached beside it.

Every answer carries its provenance and the device's calibration status (how many real
measurements, from where), which ``nas search`` prints.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device_farm import get_profile
from search_space import EdgeViTConfig

from .trained import NoDataError, TrainedPredictor, default_path

__all__ = ["DeviceLatencyModel", "load_device_model", "fit_phone_model", "available_devices", "calibrate_device"]

PHONE_KIND = "phone-blocks"
FEWSHOT_KIND = "fewshot"


def _base_functions(bases: dict[str, "DeviceLatencyModel"]):
    return {d: (lambda cfgs, m=m: m.predict(cfgs)[0]) for d, m in bases.items()}


@dataclass
class DeviceLatencyModel:
    device: str
    kind: str  # "measured" or "phone-blocks"
    model: Any
    calibration: str  # one line for people: what the numbers rest on

    def predict(self, cfgs: list[EdgeViTConfig]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (ms) for each candidate."""
        if self.kind == "measured":
            return self.model.predict_with_std(cfgs)
        if self.kind == FEWSHOT_KIND:
            adapter, bases = self.model
            mean = adapter.predict(list(cfgs), _base_functions(bases))
            return mean, mean * adapter.rel_sigma_
        preds = self.model.predict_many(list(cfgs))
        return np.array([p.total_ms for p in preds]), np.array([p.std_ms for p in preds])


def fit_phone_model(device: str, root: str | os.PathLike = "runs/predictors") -> Path:
    """Fit the nn-Meter block predictor of a phone and save it as the device's latency model."""
    from .phone import PhoneLatencyPredictor

    profile = get_profile(device)
    if profile.calibration.get("source") != "nn-meter":
        raise NoDataError(f"device {device}: no nn-Meter calibration data; measure it with 'nas farm sample --device {device}'")
    model = PhoneLatencyPredictor(device).fit()
    path = default_path(device, "latency", root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"kind": PHONE_KIND, "device": device, "provenance": profile.calibration.get("provenance", ""),
                               "measured_on": profile.calibration.get("measured_on", ""), "model": model.to_dict()}))
    os.replace(tmp, path)
    return path


def load_device_model(device: str, root: str | os.PathLike = "runs/predictors", fit_missing: bool = True) -> DeviceLatencyModel:
    """The device's latency model from ``root``; a phone's block model is fitted on first use."""
    profile = get_profile(device)  # unknown ids fail here with the list of known ones
    path = default_path(device, "latency", root)
    if not path.exists():
        if fit_missing and profile.calibration.get("source") == "nn-meter":
            fit_phone_model(device, root)
        else:
            raise NoDataError(f"device {device}: no latency predictor at {path}; run 'nas farm sample --device {device} "
                              f"-n 300' then 'nas predictor train --device {device}'")
    d = json.loads(path.read_text())
    if d.get("kind") == FEWSHOT_KIND:
        from .calibrate import FewShotAdapter

        adapter = FewShotAdapter.from_dict(d["adapter"])
        bases = {b: load_device_model(b, root, fit_missing) for b in adapter.base_devices_}
        return DeviceLatencyModel(device, FEWSHOT_KIND, (adapter, bases),
                                  f"{adapter.n_train_} measurements on {device} (few-shot over "
                                  f"{', '.join(adapter.base_devices_)}; {d['provenance']})")
    if d.get("kind") == PHONE_KIND:
        from .phone import PhoneLatencyPredictor

        return DeviceLatencyModel(device, PHONE_KIND, PhoneLatencyPredictor.from_dict(d["model"]),
                                  f"0 measurements on {device}; nn-Meter block latencies measured on {d['measured_on']} "
                                  f"mapped onto EdgeViT sub-blocks ({d['provenance']})")
    p = TrainedPredictor.from_dict(d)
    return DeviceLatencyModel(device, "measured", p.model,
                              f"{p.n_train} measurements on {device} ({p.provenance}), method {p.method}")


def available_devices(root: str | os.PathLike = "runs/predictors", exclude: str | None = None) -> list[str]:
    """Devices whose latency model exists in ``root`` or can be fitted from shipped calibration data."""
    from device_farm import load_profiles

    out = []
    for dev, prof in sorted(load_profiles().items()):
        if dev == exclude:
            continue
        if default_path(dev, "latency", root).exists() or prof.calibration.get("source") == "nn-meter":
            out.append(dev)
    return out


def calibrate_device(device: str, farm, n: int = 20, seed: int = 0, root: str | os.PathLike = "runs/predictors",
                     on_result=None, bases: list[str] | None = None) -> tuple[Path, "object"]:
    """Measure the calibration set on ``device`` and save a few-shot latency model for it.

    Returns the saved path and the fitted :class:`~predictors.calibrate.FewShotAdapter`. Base models are
    every other device with a model (measured or nn-Meter), never one built on ``device`` itself.
    """
    from .calibrate import FewShotAdapter, calibration_set

    if n < 10:
        raise ValueError(f"n={n}: needs >= 10 (the reference set) and at most a few dozen")
    profile = get_profile(device)
    names = bases if bases is not None else available_devices(root, exclude=device)
    if device in names:
        raise ValueError(f"bases: must not contain the device being calibrated ({device})")
    cfgs = calibration_set(n, seed)
    measured = []
    for i, cfg in enumerate(cfgs):
        m = farm.measure(cfg, profile)
        if on_result:
            on_result(m, i + 1, len(cfgs))
        if m.status == "ok":
            measured.append((cfg, m.median_ms))
    if len(measured) < 5:
        raise NoDataError(f"device {device}: only {len(measured)} of {len(cfgs)} calibration measurements succeeded")
    bases = {b: load_device_model(b, root) for b in names}
    bases = {b: m for b, m in bases.items() if not (m.kind == FEWSHOT_KIND and device in m.model[0].base_devices_)}
    if not bases:
        raise NoDataError(f"device {device}: no other device has a latency model to calibrate against")
    adapter = FewShotAdapter().fit([c for c, _ in measured], [y for _, y in measured], _base_functions(bases))
    path = default_path(device, "latency", root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"kind": FEWSHOT_KIND, "device": device, "adapter": adapter.to_dict(),
                               "provenance": f"calibrated on {len(measured)} measurements, seed {seed}",
                               "arch_ids": [c.arch_id for c, _ in measured]}))
    os.replace(tmp, path)
    return path, adapter
