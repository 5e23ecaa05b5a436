"""One question for the search: "how fast is this candidate on device X, and how sure are we?".

A device's model (:class:`~predictors.latency.device_model.DeviceModel`, in
``runs/predictors/<device>-latency.json``) comes from the best source it has:

1. **measured**: trained on the device's own measurements (``nas predictor train``);
2. **few-shot**: calibrated from about 20 measurements against other devices' models
   (``nas farm calibrate``, :mod:`predictors.latency.fewshot`);
   **block-transfer**: the phone block model on a table mapped from the shipped phones' tables by
   20 blocks measured on the device (``nas farm calibrate --blocks``, :func:`calibrate_device_blocks`);
3. **nn-meter**: for phones not yet measured, nn-Meter's block-latency tables mapped onto EdgeViT's
   sub-blocks (:mod:`predictors.latency.phone`), fitted on first use and saved.

Loading is a registry lookup of the saved estimator's kind, never a switch on strings. Every answer
carries its provenance and the device's calibration status, which ``nas search`` prints.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from device_farm import Measurement, get_profile, load_profiles
from search_space import EdgeViTConfig

from ..base import ModelFileError
from .device_model import DeviceModel, NoDataError, default_path
from .fewshot import FewShotAdapter, calibration_set

__all__ = ["load_device_model", "fit_phone_model", "phone_model", "phone_fingerprint", "available_devices",
           "calibrate_device", "calibrate_device_blocks", "SHIPPED_PHONE_MODELS"]


#: Phone models fitted once and shipped (``bench/ship_phone_models.py``), so that a fresh install
#: does not spend half a minute per phone fitting them on first use.
SHIPPED_PHONE_MODELS = Path(__file__).resolve().parent / "data"


def phone_fingerprint(device: str) -> str:
    """What a fitted phone model rests on: its block table's bytes and the fitting code's version."""
    import hashlib

    from .phone.model import FIT_VERSION

    path = get_profile(device).calibration_file()
    return f"{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}-fit{FIT_VERSION}"


def phone_model(device: str, use_shipped: bool = True) -> DeviceModel:
    """The nn-Meter block model of a phone: the shipped fit when it rests on the same table and fitting
    code, else fitted now."""
    from .phone import fit_phone

    profile = get_profile(device)
    if profile.calibration.get("source") != "nn-meter":
        raise NoDataError(f"device {device}: no nn-Meter calibration data; measure it with 'nas farm sample --device {device}'")
    fingerprint = phone_fingerprint(device)
    shipped = SHIPPED_PHONE_MODELS / f"{device}-latency.json.gz"
    if use_shipped and shipped.is_file():
        import gzip

        from search_space.files import loads

        try:
            model = DeviceModel.from_dict(loads(gzip.decompress(shipped.read_bytes()).decode(), str(shipped)),
                                          where=f"shipped phone model {shipped.name}")
            if model.data_hash == fingerprint and model.device == device:
                return model
        except (ModelFileError, OSError, ValueError):
            pass  # an outdated or broken shipped file: fit instead
    est = fit_phone(device)
    return DeviceModel(device=device, target="latency", estimator=est, source="nn-meter", data_hash=fingerprint,
                       provenance=(f"nn-Meter block latencies measured on {profile.calibration.get('measured_on', '')} "
                                   f"mapped onto EdgeViT sub-blocks ({profile.calibration.get('provenance', '')})"))


def fit_phone_model(device: str, root: str | os.PathLike = "runs/predictors") -> Path:
    """The nn-Meter block model of a phone (:func:`phone_model`), saved as the device's latency model."""
    return phone_model(device).save(default_path(device, "latency", root))


def load_device_model(device: str, root: str | os.PathLike = "runs/predictors", fit_missing: bool = True,
                      target: str = "latency") -> DeviceModel:
    """The device's saved model from ``root``; a phone's block model is fitted on first use (and refitted
    when the saved one was written by another version of this package)."""
    profile = get_profile(device)  # unknown ids fail here with the list of known ones
    path = default_path(device, target, root)
    derivable = target == "latency" and fit_missing and profile.calibration.get("source") == "nn-meter"
    if not path.exists():
        if derivable:
            fit_phone_model(device, root)
        elif target == "energy":
            raise NoDataError(f"device {device}: no energy predictor at {path}; 'nas predictor train --device "
                              f"{device} --target energy' explains what provides one")
        else:
            raise NoDataError(f"device {device}: no latency predictor at {path}; run 'nas farm sample --device {device} "
                              f"-n 300' then 'nas predictor train --device {device}'")
    try:
        model = DeviceModel.load(path)
    except ModelFileError:
        if not derivable:
            raise
        fit_phone_model(device, root)  # rebuilt from the shipped table
        model = DeviceModel.load(path)
    if derivable and model.source == "nn-meter" and model.data_hash != phone_fingerprint(device):
        fit_phone_model(device, root)  # fitted from another table or by other code: refit
        model = DeviceModel.load(path)
    if model.device != device or model.target != target:
        raise ModelFileError(f"predictor {path}: holds {model.device} {model.target}, not {device} {target}")
    return model


def available_devices(root: str | os.PathLike = "runs/predictors", exclude: str | None = None) -> list[str]:
    """Devices whose latency model exists in ``root`` or can be fitted from shipped calibration data."""
    out = []
    for dev, prof in sorted(load_profiles().items()):
        if dev == exclude:
            continue
        if default_path(dev, "latency", root).exists() or prof.calibration.get("source") == "nn-meter":
            out.append(dev)
    return out


def calibrate_device(device: str, farm, n: int = 20, seed: int = 0, root: str | os.PathLike = "runs/predictors",
                     on_result: Callable[[Measurement, int, int], None] | None = None,
                     bases: list[str] | None = None) -> tuple[Path, FewShotAdapter]:
    """Measure the calibration set on ``device`` and save a few-shot latency model for it.

    Returns the saved path and the fitted :class:`~predictors.latency.fewshot.FewShotAdapter`. Base
    models are every other device with a model (measured, nn-Meter or few-shot), never one built on
    ``device`` itself; they are saved inside the adapter, so later changes to them do not silently
    change what the adapter learned against. Where the device's runtime profiles operators
    (onnxruntime), the measurements carry their operator profiles and the operator-level model fitted
    on them is one more base (``bench/fewshot_host.py`` shows what it adds).
    """
    import dataclasses

    from .operators import OperatorLatencyModel

    if n < 10:
        raise ValueError(f"n={n}: needs >= 10 (the reference set) and at most a few dozen")
    profile = get_profile(device)
    profiling = profile.backend == "onnxruntime" and farm.store is not None
    if profiling and not farm.protocol.profile_ops:
        farm = type(farm)(farm.store, farm.cache_dir, dataclasses.replace(farm.protocol, profile_ops=True))
    names = bases if bases is not None else available_devices(root, exclude=device)
    if device in names:
        raise ValueError(f"bases: must not contain the device being calibrated ({device})")
    cfgs = calibration_set(n, seed)
    measured: list[tuple[EdgeViTConfig, float]] = []
    rows = []
    for i, cfg in enumerate(cfgs):
        m = farm.measure(cfg, profile)
        if on_result:
            on_result(m, i + 1, len(cfgs))
        if m.status == "ok":
            measured.append((cfg, m.latency_ms))
            rows.append(m)
    if len(measured) < 5:
        raise NoDataError(f"device {device}: only {len(measured)} of {len(cfgs)} calibration measurements succeeded")
    models = {b: load_device_model(b, root) for b in names}
    models = {b: m for b, m in models.items() if not _built_on(m, device)}
    if not models:
        raise NoDataError(f"device {device}: no other device has a latency model to calibrate against")
    from .training import profiles_of

    profiles = profiles_of(farm.store, rows) if profiling else None
    local = {"operators": OperatorLatencyModel(n_folds_sigma=0)} if profiles is not None else None
    adapter = FewShotAdapter(bases={b: m.estimator for b, m in models.items()}, local_bases=local).fit(
        [c for c, _ in measured], [y for _, y in measured], profiles=profiles)
    model = DeviceModel(device=device, target="latency", estimator=adapter, source="few-shot",
                        provenance=(f"few-shot over {', '.join(sorted(models))}; calibrated on {len(measured)} "
                                    f"measurements, seed {seed}"), n_measurements=len(measured))
    return model.save(default_path(device, "latency", root)), adapter


def calibrate_device_blocks(device: str, farm, root: str | os.PathLike = "runs/predictors",
                            quota: dict[str, int] | None = None, sources: list[str] | None = None,
                            on_result: Callable[[str, Measurement, int, int], None] | None = None,
                            **params) -> tuple[Path, dict]:
    """Measure about 20 blocks on ``device``, map the phones' tables onto it, save its block model.

    A phone over adb runs a block as cheaply as a network, and its block model needs a whole table
    (12,000 keys): the blocks of :func:`~.phone.transfer.choose_blocks` (``quota`` per type, 20 by
    default, chosen from the keys' shapes only) are measured through ``farm`` (the farm's protocol,
    the device's per-call overhead subtracted: :func:`~.phone.device_table.measure_block_table`), every
    other key is mapped from the ``sources`` (the shipped phone tables but the device's own) by
    :func:`~.phone.transfer.transfer_table`, and :class:`~.phone.PhoneLatencyPredictor` (``params``)
    is fitted on the result. Leave-one-phone-out, the mapped blocks land within 10% for 92-98% of a
    held-out phone's blocks (``bench/phone_transfer.py``). Saved as the device's latency model
    (source ``block-transfer``) and the table beside it (``<device>-blocks.json.gz``); returns the
    model's path and a summary (measured blocks, failures, sources).
    """
    from .phone import PhoneLatencyPredictor, load_table, phone_devices
    from .phone.blocks import IGNORED_KEYS
    from .phone.device_table import measure_block_table, write_table
    from .phone.transfer import DEFAULT_QUOTA, choose_blocks, transfer_table

    profile = get_profile(device)
    names = sources if sources is not None else [d for d in phone_devices() if d != device]
    if device in names:
        raise ValueError(f"sources: must not contain the device being calibrated ({device})")
    unknown = sorted(set(names) - set(phone_devices()))
    if unknown or not names:
        raise ValueError(f"sources={','.join(unknown) or '(none)'}: allowed: {', '.join(phone_devices())}")
    tables = [load_table(d) for d in names]
    keys = sorted(set.intersection(*(set(t) for t in tables)) - set(IGNORED_KEYS))
    chosen = choose_blocks(keys, quota if quota is not None else DEFAULT_QUOTA)
    measured, info = measure_block_table(farm, profile, chosen, on_result=on_result)
    if len(measured) < max(3, len(chosen) // 2):
        raise NoDataError(f"device {device}: only {len(measured)} of {len(chosen)} blocks measured "
                          f"({'; '.join(f'{k}: {why}' for k, why in list(info['failed'].items())[:3])})")
    table = transfer_table(tables, measured)
    rows = [k for k in table if k not in IGNORED_KEYS]
    est = PhoneLatencyPredictor(device, **params).fit(rows, [table[k] for k in rows])
    table_path = write_table(Path(root) / f"{device}-blocks.json.gz", table)
    model = DeviceModel(device=device, target="latency", estimator=est, source="block-transfer",
                        provenance=(f"phone block model on a table mapped from {', '.join(names)} by {len(measured)} "
                                    f"blocks measured on {device} ({profile.runtime}, {info['runtime_version']}; "
                                    f"overhead {info['overhead_ms']:.3f} ms subtracted; {len(info['disturbed'])} of them "
                                    f"disturbed, candle-normalised); table {table_path.name}"),
                        n_measurements=len(measured))
    summary = {"measured": measured, "failed": info["failed"], "disturbed": info["disturbed"], "sources": names,
               "table": str(table_path), "keys": len(table)}
    return model.save(default_path(device, "latency", root)), summary


def _built_on(model: DeviceModel, device: str) -> bool:
    """Whether ``model`` rests on ``device``'s own measurements (a few-shot model with it as a base)."""
    est = model.estimator
    return isinstance(est, FewShotAdapter) and device in (est.bases or {})
