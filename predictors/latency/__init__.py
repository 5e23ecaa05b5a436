"""How fast is a candidate on a device, and how sure are we?

- :mod:`.features`: per-operator-kind and whole-graph features of a candidate;
- :mod:`.estimators`: whole-network estimators (MACs, linear, kernel sum, corrected kernel sum, graph trees);
- :mod:`.trees`: tree ensembles as validated JSON;
- :mod:`.phone`: a phone's model from nn-Meter's measured blocks;
- :mod:`.fewshot`: a new device from a handful of measurements;
- :mod:`.device_model` / :mod:`.training` / :mod:`.device`: a device's saved model, how it is trained
  from the store, and how the search loads it.
"""
from .device import available_devices, calibrate_device, fit_phone_model, load_device_model
from .device_model import TARGETS, UNITS, DeviceModel, NoDataError, default_path
from .estimators import METHODS, cross_validate
from .fewshot import FewShotAdapter, calibration_set
from .training import data_hash, dataset, train

__all__ = ["available_devices", "calibrate_device", "fit_phone_model", "load_device_model", "TARGETS", "UNITS",
           "DeviceModel", "NoDataError", "default_path", "METHODS", "cross_validate", "FewShotAdapter",
           "calibration_set", "data_hash", "dataset", "train"]
