"""Predictions the search optimises, in two rooms that answer two questions:

- :mod:`predictors.latency`: how fast is a candidate on a device (and how much energy)? Learned
  from measurements, nn-Meter's phone blocks, or a few-shot calibration of a new device.
- :mod:`predictors.accuracy`: how accurate will it be? Zero-cost proxies placed in a fixed reference
  population, and a predictor learned from real training results.

Every predictor follows one protocol (:mod:`predictors.base`): a scikit-learn estimator with
``fit(X, y)``, ``predict(X) -> (mean, std)``, ``describe()`` and JSON persistence through a registry
of kinds; figures come from one function (:mod:`predictors.metrics`). Nothing is ever unpickled.
"""
from .base import (AccuracyEstimator, Estimator, LatencyEstimator, ModelFileError, estimator_from_dict,
                   registered_kinds)
from .metrics import Metrics, regression_metrics

__all__ = ["AccuracyEstimator", "Estimator", "LatencyEstimator", "ModelFileError", "estimator_from_dict",
           "registered_kinds", "Metrics", "regression_metrics"]
