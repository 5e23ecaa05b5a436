"""Real measurement on real devices, the durable measurement store, device profiles and energy sensors.

Kept free of torch at import time: ``python -m device_farm.worker`` (the measuring process) must start
with nothing but onnxruntime and numpy loaded.
"""
from .measurement import KEY_FIELDS, STATUSES, LatencyStats, Measurement, summarize
from .profiles import BACKENDS, DeviceProfile, ProfileError, get_profile, load_profiles
from .store import DEFAULT_STORE, MeasurementStore, StoreError

__all__ = [
    "KEY_FIELDS", "STATUSES", "LatencyStats", "Measurement", "summarize",
    "BACKENDS", "DeviceProfile", "ProfileError", "get_profile", "load_profiles",
    "DEFAULT_STORE", "MeasurementStore", "StoreError",
]
