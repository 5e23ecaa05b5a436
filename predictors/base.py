"""The one shape of every predictor: a scikit-learn estimator that predicts with an uncertainty and
persists to JSON through a registry of kinds.

Every latency, energy and accuracy model of the project -- a power law in MACs, a kernel sum with
boosted-tree correction, a phone's block model, a few-shot adapter, a proxy score, a Gaussian
process on training results -- follows the same contract, so that a new one drops in and
``bench/`` compares them all on the same data:

- the constructor stores parameters only (``get_params`` / ``set_params`` / ``clone`` come from
  :class:`sklearn.base.BaseEstimator`); ``fit(X, y)`` returns ``self`` and sets the fitted state,
  in attributes whose names end with ``_``; ``predict`` refuses an unfitted estimator
  (:func:`sklearn.utils.validation.check_is_fitted`);
- ``predict(X) -> (mean, std)``: two float arrays, ``std`` NaN where the model has no uncertainty;
- ``describe()``: one line for people (what it rests on, how it was validated);
- ``to_dict()`` / :func:`estimator_from_dict`: plain JSON with the ``kind``, the format version,
  the constructor parameters and the fitted state. Loading looks the kind up in the registry
  (:func:`register`); nothing is ever unpickled, and a tampered file fails with one
  :class:`ModelFileError` line instead of a traceback or a hang.

``X`` is what the model was measured on: EdgeViT configurations for whole-network models, block
specifications for a phone's block model (whose ``predict`` then takes configurations, because it
composes blocks into networks).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

__all__ = ["FORMAT_VERSION", "ModelFileError", "Estimator", "LatencyEstimator", "AccuracyEstimator", "register",
           "registered_kinds", "estimator_from_dict", "check_configs", "check_targets", "state_array",
           "state_number"]

#: Version of the JSON layout written by :meth:`Estimator.to_dict`; files of another version are refused
#: with a message that says how to rebuild them.
FORMAT_VERSION = 2

_REGISTRY: dict[str, type["Estimator"]] = {}


class ModelFileError(ValueError):
    """A saved model that cannot be used (unknown kind, other version, tampered or truncated state)."""


def register(cls: type["Estimator"]) -> type["Estimator"]:
    """Class decorator: make ``cls.kind`` loadable by :func:`estimator_from_dict`."""
    if not cls.kind:
        raise TypeError(f"{cls.__name__}: a registered estimator needs a non-empty 'kind'")
    other = _REGISTRY.get(cls.kind)
    if other is not None and (other.__module__, other.__qualname__) != (cls.__module__, cls.__qualname__):
        raise TypeError(f"kind={cls.kind!r}: registered twice ({other.__qualname__}, {cls.__qualname__})")
    _REGISTRY[cls.kind] = cls
    return cls


def registered_kinds() -> tuple[str, ...]:
    _import_builtin_kinds()
    return tuple(sorted(_REGISTRY))


def _import_builtin_kinds() -> None:
    # The registry fills as modules are imported; a file may be read before its module was.
    from .accuracy import model as _acc  # noqa: F401
    from .latency import estimators as _est, fewshot as _fs, operators as _ops  # noqa: F401
    from .latency.phone import model as _phone  # noqa: F401


def _is_fitted(est: "Estimator") -> bool:
    return any(v.endswith("_") and not v.startswith("__") for v in vars(est))


def _encode(value: Any, name: str) -> Any:
    if isinstance(value, Estimator):
        if not _is_fitted(value):  # a template (e.g. a base fitted later): its kind and parameters only
            return {"template": {"kind": value.kind,
                                 "params": {k: _encode(v, f"{name}.{k}") for k, v in value.get_params(deep=False).items()}}}
        return {"estimator": value.to_dict()}
    if isinstance(value, Mapping):
        return {"mapping": {str(k): _encode(v, f"{name}.{k}") for k, v in value.items()}}
    if isinstance(value, (tuple, list)):
        return [_encode(v, name) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ModelFileError(f"parameter {name}={value!r}: cannot be saved as JSON (pass data, not a function)")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"estimator"}:
            return estimator_from_dict(value["estimator"])
        if set(value) == {"template"} and isinstance(value["template"], dict):
            t = value["template"]
            _import_builtin_kinds()
            cls = _REGISTRY.get(t.get("kind"))
            params = t.get("params")
            if cls is None or not isinstance(params, dict) or set(params) - set(cls._get_param_names()):
                raise ModelFileError(f"parameter template {str(t)[:60]}: not a known estimator template")
            return cls(**{k: _decode(v) for k, v in params.items()})
        if set(value) == {"mapping"} and isinstance(value["mapping"], dict):
            return {k: _decode(v) for k, v in value["mapping"].items()}
        raise ModelFileError(f"parameter value {str(value)[:60]}: not a saved parameter")
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)
    return value


def estimator_from_dict(d: Any) -> "Estimator":
    """The estimator saved by :meth:`Estimator.to_dict`, looked up by its ``kind``."""
    if not isinstance(d, Mapping):
        raise ModelFileError(f"model: expected a JSON object, got {type(d).__name__}")
    kind = d.get("kind")
    _import_builtin_kinds()
    if kind not in _REGISTRY:
        raise ModelFileError(f"kind={str(kind)[:40]!r}: not a model kind; allowed: {', '.join(sorted(_REGISTRY))}")
    if d.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"format_version={str(d.get('format_version'))[:20]}: this package reads version "
                             f"{FORMAT_VERSION}; rebuild the model with this version")
    cls = _REGISTRY[kind]
    params, state = d.get("params"), d.get("state")
    if not isinstance(params, dict) or not isinstance(state, dict):
        raise ModelFileError(f"{kind}: 'params' and 'state' must be JSON objects")
    allowed = set(cls._get_param_names())
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ModelFileError(f"{kind}: unknown parameter {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")
    try:
        est = cls(**{k: _decode(v) for k, v in params.items()})
        est._set_state(state)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelFileError(f"{kind}: invalid saved state ({type(e).__name__}: {msg[:200]})") from None
    return est


class Estimator(BaseEstimator):
    """Base of every predictor (module docstring). Subclasses set ``kind`` and implement ``fit``,
    ``predict``, ``describe``, ``_get_state`` and ``_set_state``."""

    kind: ClassVar[str] = ""

    def fit(self, X: Any, y: Any) -> "Estimator":
        raise NotImplementedError

    def predict(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def _get_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _set_state(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        check_is_fitted(self)
        params = {k: _encode(v, k) for k, v in self.get_params(deep=False).items()}
        return {"kind": self.kind, "format_version": FORMAT_VERSION, "params": params, "state": self._get_state()}

    @classmethod
    def from_dict(cls, d: Any) -> "Estimator":
        est = estimator_from_dict(d)
        if not isinstance(est, cls):
            raise ModelFileError(f"kind={est.kind!r}: expected a {cls.__name__}")
        return est


class LatencyEstimator(Estimator):
    """``predict(cfgs) -> (mean, std)`` in the unit of its training target (ms, or mJ for energy)."""


class AccuracyEstimator(Estimator):
    """``predict(cfgs) -> (mean, std)``; higher is better; ``unit`` says what the number is."""

    unit: ClassVar[str] = ""


# ---------------------------------------------------------------------------------------------- validation
def check_configs(cfgs: Any, name: str = "cfgs") -> list:
    """``cfgs`` as a list of :class:`search_space.EdgeViTConfig` (a single one is refused)."""
    from search_space import EdgeViTConfig

    if isinstance(cfgs, EdgeViTConfig) or not isinstance(cfgs, Sequence) and not hasattr(cfgs, "__iter__"):
        raise TypeError(f"{name}: expected a sequence of EdgeViTConfig, got {type(cfgs).__name__}")
    out = list(cfgs)
    for i, c in enumerate(out):
        if not isinstance(c, EdgeViTConfig):
            raise TypeError(f"{name}[{i}]: expected an EdgeViTConfig, got {type(c).__name__}")
    return out


def check_targets(y: Any, n: int, name: str = "y", positive: bool = True) -> np.ndarray:
    """``y`` as a float vector of length ``n``: finite, and > 0 when ``positive`` (latency, energy)."""
    y = np.asarray(y, dtype=float)
    if y.shape != (n,):
        raise ValueError(f"{name}: expected {n} values, got shape {y.shape}")
    if not np.all(np.isfinite(y)) or (positive and np.any(y <= 0)):
        raise ValueError(f"{name}: values must be finite{' and > 0' if positive else ''}")
    return y


def state_array(state: Mapping[str, Any], key: str, ndim: int | None = None, dtype: type = float,
                size: int | None = None, finite: bool = True, max_size: int = 50_000_000) -> np.ndarray:
    """A numeric array from a saved state, checked (shape, finiteness, size) before anyone uses it."""
    raw = state[key]
    if not isinstance(raw, (list, int, float)):
        raise ModelFileError(f"state.{key}: expected numbers, got {type(raw).__name__}")
    a = np.asarray(raw, dtype=dtype)
    if a.size > max_size:
        raise ModelFileError(f"state.{key}: {a.size} values, more than {max_size} allowed")
    if ndim is not None and a.ndim != ndim:
        raise ModelFileError(f"state.{key}: expected {ndim} dimension(s), got {a.ndim}")
    if size is not None and a.shape[-1 if a.ndim else 0:] != (size,) and a.size != size:
        raise ModelFileError(f"state.{key}: expected {size} values, got {a.size}")
    if finite and a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise ModelFileError(f"state.{key}: values must be finite")
    return a


def state_number(state: Mapping[str, Any], key: str, lo: float = -math.inf, hi: float = math.inf,
                 allow_nan: bool = False) -> float:
    v = state[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ModelFileError(f"state.{key}: expected a number, got {type(v).__name__}")
    v = float(v)
    if math.isnan(v) and allow_nan:
        return v
    if not (lo <= v <= hi):
        raise ModelFileError(f"state.{key}={v}: must lie in [{lo}, {hi}]")
    return v


def fitted(est: Estimator) -> None:
    """:func:`sklearn.utils.validation.check_is_fitted`, re-exported for the subclasses."""
    check_is_fitted(est)
