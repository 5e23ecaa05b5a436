"""A block table of a device of our own: nn-Meter's block types measured through the farm.

The phone model (:class:`~.model.PhoneLatencyPredictor`) is fitted on a table ``key -> ms``; the
shipped tables come from three phones. Measuring the same keys (same shapes, the blocks built as
the tables describe them: :mod:`.torch_blocks`) on a device the project can reach -- LiteRT on this
CPU (``host-litert``), or a phone over adb -- gives that device a table in the same format, and
with it the one end-to-end check of the phone model: blocks predicted and summed against whole
networks measured on the same device (``bench/phone_validation.py``).

A table of a few hundred keys is enough for the regressors: :func:`stratified_keys` picks them per
block type, spread evenly over the type's input sides (the axis EdgeViT queries leave most often)
and at random within a side. Every block is measured with the farm's protocol (interleaved with
the candles, sessions until two agree) and the device's per-call overhead, measured on a one-add
model (:class:`~.torch_blocks.NullNetwork`), is subtracted: a whole network pays it once, a sum of
blocks once per block.
"""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from search_space.files import atomic_write

from .blocks import BLOCK_TYPES, parse_key
from .torch_blocks import BlockNetwork, NullNetwork

__all__ = ["DEFAULT_PER_TYPE", "quota", "stratified_keys", "latency_of", "measure_block_table", "write_table", "read_table"]

#: Keys per block type: every firstconv (12 in the tables), most mbpool, 50 of the large types.
DEFAULT_PER_TYPE: dict[str, int] = {"firstconv": 12, "conv": 50, "transds": 50, "transattn": 50, "transffn": 50,
                                    "mbpool": 24}
#: A block's time after the overhead is subtracted is kept at least this share of its raw time.
_FLOOR = 0.25


def quota(large: int, small: int) -> dict[str, int]:
    """Keys per type: ``small`` of the few-keyed types (firstconv, mbpool), ``large`` of the others."""
    return {t: (small if t in ("firstconv", "mbpool") else large) for t in DEFAULT_PER_TYPE}


def stratified_keys(keys: Sequence[str], per_type: Mapping[str, int] = DEFAULT_PER_TYPE, seed: int = 0) -> list[str]:
    """``per_type[t]`` keys of each type, round-robin over the type's input sides, random within a side."""
    rng = np.random.default_rng(seed)
    by_type: dict[str, dict[int, list[str]]] = {}
    for k in sorted(keys):
        s = parse_key(k)
        by_type.setdefault(s.type, {}).setdefault(s.hw, []).append(k)
    out: list[str] = []
    for t in BLOCK_TYPES:
        sides = by_type.get(t, {})
        pools = {hw: list(rng.permutation(ks)) for hw, ks in sorted(sides.items())}
        want = min(int(per_type.get(t, 0)), sum(len(v) for v in pools.values()))
        picked: list[str] = []
        while len(picked) < want:
            for hw in list(pools):
                if pools[hw] and len(picked) < want:
                    picked.append(str(pools[hw].pop()))
        out += sorted(picked)
    return out


def latency_of(m, farm) -> tuple[float | None, bool]:
    """(ms, clean) of a measurement: the latency of an ``ok`` row; for a ``disturbed`` one, its candle
    ratios normalised as a clean row's are (``device_farm.measure.normalised_ms``: the same unit,
    marked not clean); None for a failure.

    On a machine other jobs share, the protocol flags many runs disturbed (the candle left its
    drift window); their candle ratio still cancels most of what moved, so a bench may use them
    when it reports how many it used (never a predictor's training data: the store keeps them
    ``disturbed``)."""
    if m.status == "ok":
        return float(m.latency_ms), True
    if m.status == "disturbed" and m.candle_ratio and farm.store is not None:
        from device_farm.measure import normalised_ms

        refs = farm.store.candle_references(m.device, m.runtime_version, m.threads)
        ratios = m.env.get("candle_ratios") or ({m.env["candle"]: m.candle_ratio} if m.env.get("candle") else {})
        ms = normalised_ms(ratios, refs)
        if ms is not None:
            return ms, False
    return None, False


def measure_block_table(farm, profile, keys: Sequence[str],
                        on_result: Callable[[str, object, int, int], None] | None = None,
                        reuse: bool = True) -> tuple[dict[str, float], dict[str, object]]:
    """Measure ``keys`` on ``profile`` through ``farm``; return (key -> ms, info).

    ``ms`` is the measurement's latency (the drift-normalised one where the protocol gives it) minus
    the per-call overhead, floored at a quarter of the raw value. ``reuse``: a key with a clean
    measurement of the same setting in the farm's store is not measured again (a crashed run
    resumes). ``info`` holds the overhead, the raw values, and the keys that failed with why.
    """
    from device_farm.measure import runtime_version

    version = runtime_version(profile)

    def stored(net) -> object | None:
        if not reuse or farm.store is None:
            return None
        rows = farm.store.query(device=profile.id, arch_id=net.arch_id, runtime_version=version, threads=profile.threads)
        rows = [r for r in rows if r.status in ("ok", "disturbed")]
        return rows[-1] if rows else None

    null = NullNetwork()
    m0 = stored(null) or farm.measure(null, profile)
    # A few microseconds against a candle of milliseconds: its ratio is noisy and the protocol may call it
    # disturbed; its raw median is still the overhead to within a microsecond, which is all it is used for.
    if m0.status == "failed":
        raise RuntimeError(f"device {profile.id}: the overhead model did not measure: {m0.error}")
    overhead = float(m0.latency_ms if m0.status == "ok" else m0.median_ms)
    raw: dict[str, float] = {}
    failed: dict[str, str] = {}
    disturbed: list[str] = []
    for i, key in enumerate(keys):
        net = BlockNetwork(key)
        m = stored(net) or farm.measure(net, profile)
        if on_result:
            on_result(key, m, i + 1, len(keys))
        ms, clean = latency_of(m, farm)
        if ms is None:
            failed[key] = f"{m.status}: {m.error}"
            continue
        raw[key] = ms
        if not clean:
            disturbed.append(key)
    table = {k: max(v - overhead, _FLOOR * v) for k, v in raw.items()}
    info = {"device": profile.id, "runtime_version": version, "overhead_ms": overhead, "raw_ms": raw,
            "failed": failed, "disturbed": disturbed, "n": len(table)}
    return table, info


def write_table(path: str | os.PathLike, table: Mapping[str, float]) -> Path:
    """``key -> ms`` as gzip-compressed JSON, the format of the shipped nn-Meter tables."""
    data = json.dumps({k: float(v) for k, v in sorted(table.items())}, indent=0).encode()
    return atomic_write(Path(path), gzip.compress(data, mtime=0))


def read_table(path: str | os.PathLike) -> dict[str, float]:
    with gzip.open(path, "rt") as fh:
        return {str(k): float(v) for k, v in json.load(fh).items()}
