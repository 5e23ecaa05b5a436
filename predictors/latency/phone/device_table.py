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
from .torch_blocks import BlockNetwork, NullNetwork, WeightStreamNetwork

__all__ = ["DEFAULT_PER_TYPE", "WEIGHT_STREAM_DEPTHS", "quota", "stratified_keys", "latency_of", "measure_block_table",
           "measure_weight_traffic", "kernel_extension_keys", "attention_extension_keys", "neighbour_keys", "stored_row",
           "write_table", "read_table"]

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


def kernel_extension_keys(keys: Sequence[str], kernel: int = 7, n: int = 24, seed: int = 0) -> list[str]:
    """``n`` conv keys of ``keys`` rewritten with a ``kernel`` the table does not hold, spread over the
    input sides as :func:`stratified_keys` spreads them.

    Why: nn-Meter measured MBConv blocks with kernels 3 and 5 only, and the search space's LocalAgg
    also takes 7; a regressor fitted on 3 and 5 cannot know that a runtime's 7x7 depthwise kernel
    may be of another speed class (LiteRT's XNNPACK on this project's CPUs: a LocalAgg three times
    slower at 7 than at 5, bench/RESULTS.md). A device that measures these keys prices 7 from its
    own blocks; the phones' shipped tables cannot, and their k = 7 queries stay extrapolations.
    """
    from dataclasses import replace

    have = set(keys)
    conv = sorted({replace(parse_key(k), kernel=kernel).key() for k in keys if parse_key(k).type == "conv"} - have)
    # A quarter without expansion (e = 1): the shape a LocalAgg maps onto, where the depthwise conv
    # is most of the block; stratified_keys alone would rarely pick one (48 of nn-Meter's 1,788).
    e1 = [k for k in conv if parse_key(k).expansion == 1]
    n_e1 = min(len(e1), n // 4)
    rest = [k for k in conv if parse_key(k).expansion != 1]
    return sorted(stratified_keys(e1, {"conv": n_e1}, seed=seed) + stratified_keys(rest, {"conv": n - n_e1}, seed=seed))


def _shape(spec) -> np.ndarray:
    """A block's shape on log axes (hw, cin, cout, expansion, v_scale): the axes its latency scales on."""
    return np.log([spec.hw, spec.cin, spec.cout, max(spec.expansion, 1.0), max(spec.v_scale, 1.0)])


def neighbour_keys(keys: Sequence[str], queries: Sequence[object], n: int,
                   weights: Sequence[float] | None = None, exclude: Sequence[str] = ()) -> list[str]:
    """The ``n`` keys of ``keys`` nearest the blocks a model queries, the most used first.

    Why: a phone's table holds thousands of keys per block type, so its regressors always have
    measured neighbours near an EdgeViT query; a device table of a few dozen keys per type
    (:func:`stratified_keys`) rarely does, and its regressors' error is then mostly distance, not
    the device. Measuring, for each query, the table key nearest it gives a small table the density
    a phone's has where it matters. Queries are :class:`~.blocks.BlockSpec` (from
    :func:`~.mapping.map_candidate` of a *design* set of candidates, never the networks the table is
    judged on); a key is a neighbour when it has the query's type, stride, squeeze-excite and kernel
    (a conv query with a kernel no key has, e.g. 7, is matched on the keys rewritten to that kernel,
    as :func:`kernel_extension_keys` rewrites them) and the smallest distance on log hw, channels,
    expansion and v_scale. Each neighbour's weight is the sum of its queries' ``weights`` (default 1:
    the query count); the ``n`` heaviest not in ``exclude`` are returned.
    """
    from dataclasses import replace

    if n < 0:
        raise ValueError(f"n={n}: allowed: n >= 0")
    weights = np.ones(len(queries)) if weights is None else np.asarray(weights, float)
    if len(weights) != len(queries):
        raise ValueError(f"weights: expected {len(queries)} values (one per query), got {len(weights)}")
    grid: dict[tuple, tuple[list[str], list[np.ndarray]]] = {}
    specs = [parse_key(k) for k in sorted(set(keys))]

    def group(s) -> tuple:
        return (s.type, s.stride, s.se, s.kernel) if s.type in ("conv", "transds", "firstconv") else (s.type,)

    def candidates(q) -> tuple[list[str], np.ndarray]:
        g = group(q)
        if g not in grid:
            same = [s for s in specs if group(s) == g]
            if not same and q.type == "conv":  # a kernel beyond the table: its keys rewritten to it
                same = [replace(s, kernel=q.kernel) for s in specs if group(replace(s, kernel=q.kernel)) == g]
            grid[g] = ([s.key() for s in same], [_shape(s) for s in same])
        ks, fs = grid[g]
        return ks, (np.array(fs) if fs else np.zeros((0, 5)))

    score: dict[str, float] = {}
    for q, w in zip(queries, weights):
        ks, F = candidates(q)
        if not ks:
            continue
        k = ks[int(np.argmin(((F - _shape(q)) ** 2).sum(axis=1)))]
        score[k] = score.get(k, 0.0) + float(w)
    skip = set(exclude)
    ranked = sorted((k for k in score if k not in skip), key=lambda k: (-score[k], k))
    return ranked[:n]


def attention_extension_keys(queries: Sequence[object], n: int, weights: Sequence[float] | None = None,
                             exclude: Sequence[str] = ()) -> list[str]:
    """``n`` attention blocks exactly as a design set of candidates queries them -- own head count
    (key suffix ``_h``), v_scale 1, any side, and (mapping v2) without nn-Meter's position bias
    (``_nopos``), as EdgeViT runs it -- shared among the queried sides in proportion to the
    weight each side's queries carry (highest averages), the heaviest first within a side.

    Why: nn-Meter's attention blocks all have C/16 heads, v_scale 2..4 and at most 32 x 32 tokens,
    so in every phone table the score work (heads x N^2) is proportional to the matmul work (C x N^2)
    and nothing is measured beyond 1,024 tokens. EdgeViT queries one or two wide heads, v_scale 1,
    and up to 4,096 tokens at stage 0: a device that measures these blocks identifies the split
    between the two rates and prices the large sides from its own blocks instead of extrapolating.
    ``queries`` are :class:`~.blocks.BlockSpec` of a *design* set (never the judged networks); a
    key's weight is the sum of its queries' ``weights`` (default 1); keys in ``exclude`` are skipped.
    """
    if n < 0:
        raise ValueError(f"n={n}: allowed: n >= 0")
    weights = np.ones(len(queries)) if weights is None else np.asarray(weights, float)
    if len(weights) != len(queries):
        raise ValueError(f"weights: expected {len(queries)} values (one per query), got {len(weights)}")
    skip = set(exclude)
    score: dict[str, float] = {}
    for q, w in zip(queries, weights):
        if q.type == "transattn" and q.key() not in skip:
            score[q.key()] = score.get(q.key(), 0.0) + float(w)
    sides: dict[int, list[str]] = {}
    for k in sorted(score, key=lambda k: (-score[k], k)):
        sides.setdefault(parse_key(k).hw, []).append(k)
    total = {hw: sum(score[k] for k in ks) for hw, ks in sides.items()}
    taken = {hw: 0 for hw in sides}
    out: list[str] = []
    while len(out) < n and any(sides.values()):
        # highest averages (D'Hondt): each side gets keys in proportion to the weight its queries carry
        hw = max((h for h in sides if sides[h]), key=lambda h: (total[h] / (taken[h] + 1), -h))
        out.append(sides[hw].pop(0))
        taken[hw] += 1
    return sorted(out)


def stored_row(farm, profile, net, version: str):
    """The latest ``ok`` or ``disturbed`` row of ``net`` on ``profile`` in the farm's store, or None: a
    rerun resumes instead of measuring again."""
    if farm.store is None:
        return None
    rows = [r for r in farm.store.query(device=profile.id, arch_id=net.arch_id, runtime_version=version,
                                        threads=profile.threads) if r.status in ("ok", "disturbed")]
    return rows[-1] if rows else None


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
        return stored_row(farm, profile, net, version) if reuse else None

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


#: Depths of the weight-stream chains (width 256: 0.26 MB of weights per layer): two whose weights stay
#: in a core's caches between runs (0.5 and 2.1 MB; a 4 MiB L2 on this project's Intel Xeon) and two
#: whose weights cannot (12.6 and 25.2 MB). On a phone core (512 KiB L2 on a Cortex-A78) the short
#: pair is partly streamed too, which makes the figure a lower bound there.
WEIGHT_STREAM_DEPTHS: tuple[int, int, int, int] = (2, 8, 48, 96)


def measure_weight_traffic(farm, profile, width: int = 256, tokens: int = 16,
                           depths: Sequence[int] = WEIGHT_STREAM_DEPTHS, reuse: bool = True) -> dict[str, object]:
    """What a whole network pays per MB of weights that a block table, timing each block alone, does not.

    Four chains of Linear layers (:class:`~.torch_blocks.WeightStreamNetwork`), each measured with the
    farm's protocol: the per-layer cost of the short pair (weights cached; the slope, so the per-call
    overhead cancels) and of the long pair (weights fetched on every run); their difference divided by
    one layer's weights is ``ms_per_mb`` (floored at 0). Returns it with the four latencies.
    """
    from device_farm.measure import runtime_version

    if len(depths) != 4 or list(depths) != sorted(set(depths)):
        raise ValueError(f"depths={tuple(depths)!r}: allowed: four increasing chain depths")
    version = runtime_version(profile)
    ms: dict[int, float] = {}
    clean: dict[int, bool] = {}
    for d in depths:
        net = WeightStreamNetwork(int(d), width, tokens)
        m = (stored_row(farm, profile, net, version) if reuse else None) or farm.measure(net, profile)
        v, ok = latency_of(m, farm)
        for _ in range(2):  # a disturbed first measurement in a fresh store has no reference to normalise by
            if v is not None or m.status == "failed":
                break
            m = farm.measure(net, profile)
            v, ok = latency_of(m, farm)
        if v is None:
            raise RuntimeError(f"device {profile.id}: {net.name} did not measure: {m.status} {m.error}")
        ms[int(d)], clean[int(d)] = v, ok
    d0, d1, d2, d3 = (int(d) for d in depths)
    cached = (ms[d1] - ms[d0]) / (d1 - d0)
    streamed = (ms[d3] - ms[d2]) / (d3 - d2)
    layer_mb = WeightStreamNetwork(1, width, tokens).weight_mb
    return {"device": profile.id, "runtime_version": version, "width": width, "tokens": tokens,
            "latency_ms": {str(d): v for d, v in ms.items()}, "clean": {str(d): c for d, c in clean.items()},
            "cached_ms_per_layer": cached, "streamed_ms_per_layer": streamed, "layer_mb": layer_mb,
            "ms_per_mb": max(streamed - cached, 0.0) / layer_mb}


def write_table(path: str | os.PathLike, table: Mapping[str, float]) -> Path:
    """``key -> ms`` as gzip-compressed JSON, the format of the shipped nn-Meter tables."""
    data = json.dumps({k: float(v) for k, v in sorted(table.items())}, indent=0).encode()
    return atomic_write(Path(path), gzip.compress(data, mtime=0))


def read_table(path: str | os.PathLike) -> dict[str, float]:
    with gzip.open(path, "rt") as fh:
        return {str(k): float(v) for k, v in json.load(fh).items()}
