"""The phones' measured block tables, found through their device profiles.

``device_farm/data/nnmeter/{xiaomi11,pixel4,pixel1}_lut_ln_v3.json.gz`` hold 12,116 block
latencies per phone in ms (microsoft/nn-Meter @9c31e19, branch dev/hybrid-transformer, MIT; see
PROVENANCE.md there). The device profile picks the table: ``get_profile("s21").calibration_file()``
is the Xiaomi Mi 11 table (Snapdragon 888, the S21's SoC).
"""
from __future__ import annotations

import gzip
import json

__all__ = ["UnknownDeviceError", "phone_devices", "check_device", "load_table", "table_provenance"]


class UnknownDeviceError(ValueError):
    """A device id without an nn-Meter block table; one line naming the field and the allowed values."""


def phone_devices() -> tuple[str, ...]:
    """Device ids whose profile ships an nn-Meter block table."""
    from device_farm import load_profiles

    out = []
    for pid, p in load_profiles().items():
        f = p.calibration_file()
        if p.calibration.get("source") == "nn-meter" and f is not None and f.is_file():
            out.append(pid)
    return tuple(sorted(out))


def check_device(device_id: str) -> None:
    allowed = phone_devices()
    if device_id not in allowed:
        raise UnknownDeviceError(
            f"device_id={device_id!r}: no nn-Meter block table for this device; allowed: {', '.join(allowed)}"
        )


def load_table(device_id: str) -> dict[str, float]:
    """The device's measured block latencies (ms) by key, read from its profile's calibration file."""
    from device_farm import get_profile

    check_device(device_id)
    path = get_profile(device_id).calibration_file()
    with gzip.open(path, "rt") as fh:
        return {str(k): float(v) for k, v in json.load(fh).items()}


def table_provenance(device_id: str) -> str:
    from device_farm import get_profile

    check_device(device_id)
    p = get_profile(device_id)
    return f"{p.calibration.get('measured_on', '')}; {p.calibration.get('provenance', '')}".strip("; ")

