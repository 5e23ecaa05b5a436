"""A new phone's block table from at most 20 measured blocks and the other phones' tables.

Calibrating a new device from whole networks (:mod:`predictors.latency.fewshot`) needs networks
measured on it; a phone reached over adb runs nn-Meter's blocks as cheaply, and a block table is
what the phone model (:class:`~.model.PhoneLatencyPredictor`) is fitted on. So: measure a few
blocks chosen once, without looking at any phone's latencies (:func:`choose_blocks`: stratified by
block type, spread over each type's range of work), and map every other block from the phones
already measured (:class:`BlockTransfer`):

- ``global``: one scale, new = s * source (geometric mean of the source phones), fitted on the chosen blocks;
- ``type_scale``: one scale per block type;
- ``type_affine``: per block type, log new = a + b log source (least squares in log; b = 1 when a
  type has fewer than 3 chosen blocks);
- ``shared`` (the default): per block type an offset, plus slopes shared by all types on three
  features: log source (the geometric mean), log s1 - log s2 (where the two source phones disagree,
  the new one is likely to differ too) and log hw; fitted on the within-type deviations (a
  fixed-effects fit), so 20 blocks fit 6 offsets and 3 slopes, not 6 x 3 parameters;
- ``macs``: the trivial baseline, new = s * MACs of the block (one scale).

Every fit is on the chosen blocks only; the figure of merit is the share of the new phone's other
blocks predicted within 10 % (``bench/phone_transfer.py`` runs leave-one-phone-out over the three
shipped tables). The quota and the ``shared`` features were chosen on those same three folds
(there is no fourth phone to confirm them on).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .blocks import BLOCK_TYPES, block_work, parse_key

__all__ = ["TRANSFER_METHODS", "DEFAULT_QUOTA", "choose_blocks", "BlockTransfer", "transfer_table"]

TRANSFER_METHODS: tuple[str, ...] = ("global", "type_scale", "type_affine", "shared", "macs")
#: Blocks measured per type (20 in all), roughly by how many shapes a type spans: transds is 64 % of a
#: table's keys; firstconv (12 keys) and mbpool (63) vary little between phones once scaled.
DEFAULT_QUOTA: dict[str, int] = {"firstconv": 1, "conv": 4, "transds": 8, "transattn": 3, "transffn": 3, "mbpool": 1}


def choose_blocks(keys: Sequence[str], quota: Mapping[str, int] = DEFAULT_QUOTA) -> list[str]:
    """The blocks to measure: per type, ``quota[type]`` keys at evenly spaced quantiles of log MACs.

    Deterministic and independent of every phone's latencies (only the keys' shapes are read), so
    the same blocks serve any new phone. Quantiles run from the 10th to the 90th percentile: the
    extremes of a type are the blocks most likely to be unlike the rest.
    """
    by_type: dict[str, list[tuple[float, str]]] = {}
    for k in keys:
        s = parse_key(k)
        by_type.setdefault(s.type, []).append((float(np.log1p(block_work(s).macs)), k))
    out: list[str] = []
    for t in BLOCK_TYPES:
        n = int(quota.get(t, 0))
        rows = sorted(by_type.get(t, []))
        if n <= 0 or not rows:
            continue
        qs = np.linspace(0.1, 0.9, n) if n > 1 else np.array([0.5])
        picked: list[str] = []
        for q in qs:
            i = int(round(q * (len(rows) - 1)))
            # the nearest key not yet taken (a type with few keys may repeat a quantile)
            for j in sorted(range(len(rows)), key=lambda j: abs(j - i)):
                if rows[j][1] not in picked:
                    picked.append(rows[j][1])
                    break
        out += picked
    return out


def _geo_mean(tables: Sequence[Mapping[str, float]], keys: Sequence[str]) -> np.ndarray:
    return np.exp(np.mean([[np.log(t[k]) for k in keys] for t in tables], axis=0))


@dataclass
class BlockTransfer:
    """Maps source phones' measured blocks onto a new phone (module docstring for ``method``)."""

    method: str = "shared"
    params_: dict[str, tuple[float, float]] = field(default_factory=dict)
    slopes_: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.method not in TRANSFER_METHODS:
            raise ValueError(f"method={self.method!r}: allowed: {', '.join(TRANSFER_METHODS)}")

    def _x(self, sources: Sequence[Mapping[str, float]], keys: Sequence[str]) -> np.ndarray:
        if self.method == "macs":
            return np.array([max(block_work(parse_key(k)).macs, 1.0) for k in keys])
        return _geo_mean(sources, keys)

    @staticmethod
    def _features(sources: Sequence[Mapping[str, float]], keys: Sequence[str], lx: np.ndarray) -> np.ndarray:
        """The ``shared`` method's features: log source, the sources' disagreement, log hw."""
        cols = [lx]
        if len(sources) >= 2:
            cols.append(np.array([np.log(sources[0][k]) - np.log(sources[1][k]) for k in keys]))
        cols.append(np.log([parse_key(k).hw for k in keys]))
        return np.column_stack(cols)

    def fit(self, sources: Sequence[Mapping[str, float]], measured: Mapping[str, float]) -> "BlockTransfer":
        """Fit on the new phone's measured blocks (key -> ms) against the source tables."""
        keys = list(measured)
        if not keys:
            raise ValueError("measured: needs at least one block")
        lx = np.log(self._x(sources, keys))
        ly = np.log(np.array([measured[k] for k in keys], float))
        types = np.array([k.split("_", 1)[0] for k in keys])
        self.params_ = {"*": (float(np.mean(ly - lx)), 1.0)}
        self.slopes_ = []
        if self.method == "shared":
            Z = self._features(sources, keys, lx)
            r = ly - lx
            Zd, rd = Z.copy(), r.copy()
            for t in set(types):
                m = types == t
                Zd[m] -= Z[m].mean(axis=0)
                rd[m] -= r[m].mean()
            beta = np.linalg.lstsq(Zd, rd, rcond=None)[0] if len(keys) > Z.shape[1] else np.zeros(Z.shape[1])
            self.slopes_ = [float(b) for b in beta]
            for t in set(types):
                m = types == t
                self.params_[t] = (float(r[m].mean() - Z[m].mean(axis=0) @ beta), 1.0)
        elif self.method in ("type_scale", "type_affine"):
            for t in set(types):
                idx = np.where(types == t)[0]
                a, b = float(np.mean(ly[idx] - lx[idx])), 1.0
                if self.method == "type_affine" and len(idx) >= 3 and np.ptp(lx[idx]) > 0:
                    b, a = (float(v) for v in np.polyfit(lx[idx], ly[idx], 1))
                self.params_[t] = (a, b)
        return self

    def predict(self, sources: Sequence[Mapping[str, float]], keys: Sequence[str]) -> np.ndarray:
        """The new phone's latency (ms) of ``keys``; a type without a chosen block uses the global offset."""
        lx = np.log(self._x(sources, keys))
        extra = self._features(sources, keys, lx) @ np.array(self.slopes_) if self.slopes_ else np.zeros(len(keys))
        out = np.empty(len(keys))
        for i, k in enumerate(keys):
            a, b = self.params_.get(k.split("_", 1)[0], self.params_["*"])
            out[i] = np.exp(a + b * lx[i] + extra[i])
        return out


def transfer_table(sources: Sequence[Mapping[str, float]], measured: Mapping[str, float],
                   method: str = "shared") -> dict[str, float]:
    """A whole block table for the new phone: its measured blocks as measured, every other key of
    the sources mapped (ready for ``PhoneLatencyPredictor.fit(keys, ms)``)."""
    keys = sorted(set.intersection(*(set(t) for t in sources)))
    tr = BlockTransfer(method).fit(sources, measured)
    table = dict(zip(keys, tr.predict(sources, keys).tolist()))
    table.update({k: float(v) for k, v in measured.items()})
    return table
