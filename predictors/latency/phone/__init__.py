"""Phone latency from nn-Meter's measured block latencies, one module per job:

- :mod:`.blocks`: the table key format, block shapes, and the work each block (or EdgeViT operator) does;
- :mod:`.tables`: the phones' shipped tables, found through their device profiles;
- :mod:`.regressors`: per-block-type regressors and the rate model, with their validation splits;
- :mod:`.mapping`: how a candidate's half-blocks map onto measured block types (direct, approximate,
  transferred);
- :mod:`.model`: the phone's latency model (``fit(blocks, y)``, ``predict(cfgs) -> (mean, std)``).
"""
from .blocks import BLOCK_TYPES, IGNORED_KEYS, BlockSpec, KeyFormatError, Work, block_work, op_work, parse_key
from .mapping import PROVENANCES, MappedPart, map_candidate
from .model import (PartPrediction, PhoneLatencyPredictor, PhonePrediction, fit_phone, predict_phone_latency,
                    predict_phone_latency_batch, table_blocks)
from .regressors import BlockRegressor, RateModel, extrapolation_split, random_split
from .tables import UnknownDeviceError, load_table, phone_devices, table_provenance

__all__ = [
    "BLOCK_TYPES", "IGNORED_KEYS", "BlockSpec", "KeyFormatError", "Work", "block_work", "op_work", "parse_key",
    "PROVENANCES", "MappedPart", "map_candidate",
    "PartPrediction", "PhoneLatencyPredictor", "PhonePrediction", "fit_phone", "predict_phone_latency",
    "predict_phone_latency_batch", "table_blocks",
    "BlockRegressor", "RateModel", "extrapolation_split", "random_split",
    "UnknownDeviceError", "load_table", "phone_devices", "table_provenance",
]
