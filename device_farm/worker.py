"""The measuring process: ``python -m device_farm.worker`` reads one JSON request on stdin and
writes one JSON result on stdout.

It runs in its own process so that a runtime that hangs or crashes becomes a recorded failure (the
parent kills it at its timeout) and never takes the caller down, and so that nothing the caller
has loaded (torch, Ray, other threads) shares the cores while it times. It imports only
onnxruntime, numpy and the torch-free parts of ``device_farm`` (the median's confidence interval
is :func:`device_farm.measurement.median_ci_halfwidth`, the one the records use).

Protocol, per request: open the candidate and candle sessions (one intra-op thread by default),
warm both up, time the candle, time the candidate in rounds until the 95% confidence half-width of
the median is under ``target_ci`` (or ``max_repeats`` / ``max_seconds`` is reached), time the candle
again. The parent judges disturbance from the candle and decides whether to re-measure.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any

import numpy as np

from device_farm.measurement import median_ci_halfwidth

_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
           "all": "ORT_ENABLE_ALL"}


def _session(ort, path: str, req: dict[str, Any], profile_prefix: str | None = None):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(req["threads"])
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[req.get("graph_optimization", "all")])
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    providers = ["CUDAExecutionProvider"] if req.get("provider") == "cuda" else ["CPUExecutionProvider"]
    if providers[0] not in ort.get_available_providers():
        raise RuntimeError(f"{providers[0]} is not available in onnxruntime {ort.__version__} "
                           f"(available: {', '.join(ort.get_available_providers())})")
    sess = ort.InferenceSession(path, opts, providers=providers)
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    feed = {inp.name: np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}
    return sess, feed, shape


def _time(sess, feed, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        sess.run(None, feed)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def _op_profile(ort, req: dict[str, Any], runs: int) -> list[dict[str, Any]]:
    """Median time per graph node from onnxruntime's profiler (JSON trace events of category Node)."""
    prefix = os.path.join(req["profile_dir"], "ort_profile")
    sess, feed, _ = _session(ort, req["onnx_path"], req, profile_prefix=prefix)
    for _ in range(runs):
        sess.run(None, feed)
    trace = sess.end_profiling()
    with open(trace) as f:
        events = json.load(f)
    os.remove(trace)
    per_node: dict[str, list[float]] = {}
    op_type: dict[str, str] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            node = e["name"][: -len("_kernel_time")]
            per_node.setdefault(node, []).append(float(e["dur"]))
            op_type[node] = e.get("args", {}).get("op_name", "")
    # The first run includes allocation; drop it where there are enough runs.
    return [{"node": k, "op_type": op_type[k], "median_us": float(np.median(v[1:] if len(v) > 2 else v)), "runs": len(v)}
            for k, v in per_node.items()]


def run(req: dict[str, Any]) -> dict[str, Any]:
    import onnxruntime as ort

    result: dict[str, Any] = {"runtime_version": ort.__version__, "load_before": os.getloadavg()[0]}
    try:
        sess, feed, shape = _session(ort, req["onnx_path"], req)
        candle, candle_feed, _ = _session(ort, req["candle_path"], req)
    except Exception as e:  # a model the runtime refuses is a result, not a crash
        result.update(status="failed", error=f"session creation failed: {type(e).__name__}: {str(e).splitlines()[0]}")
        return result
    result["input_shape"] = "x".join(str(d) for d in shape)
    warm_until = time.perf_counter() + float(req.get("warmup_s", 0.3))
    _time(sess, feed, int(req.get("warmup", 5)))
    _time(candle, candle_feed, int(req.get("warmup", 5)))
    while time.perf_counter() < warm_until:
        _time(sess, feed, 1)
    n_candle = int(req.get("candle_repeats", 15))
    result["candle_before"] = _time(candle, candle_feed, n_candle)
    times: list[float] = []
    t_start = time.perf_counter()
    min_r, max_r = int(req.get("min_repeats", 20)), int(req.get("max_repeats", 300))
    target, max_s = float(req.get("target_ci", 0.01)), float(req.get("max_seconds", 20.0))
    while True:
        times += _time(sess, feed, 5)
        n = len(times)
        if n >= min_r and median_ci_halfwidth(times) / float(np.median(times)) < target:
            result["stop"] = "converged"
            break
        if n >= max_r:
            result["stop"] = "max_repeats"
            break
        if time.perf_counter() - t_start > max_s and n >= 5:
            result["stop"] = "max_seconds"
            break
    result["times_ms"] = times
    result["candle_after"] = _time(candle, candle_feed, n_candle)
    result["load_after"] = os.getloadavg()[0]
    if req.get("energy_sensor"):
        result.update(_energy(req, sess, feed))
    if req.get("profile_ops"):
        result["op_profile"] = _op_profile(ort, req, int(req.get("profile_runs", 20)))
    result["status"] = "ok"
    return result


def _energy(req: dict[str, Any], sess, feed) -> dict[str, Any]:
    """Energy per inference from the profile's sensor; ``energy_mj`` None with the reason when unavailable."""
    try:
        from .energy import EnergyUnavailable, detect_sensor, energy_per_inference
    except ImportError as e:
        return {"energy_mj": None, "energy_note": f"energy module unavailable: {e}"}
    try:
        sensor = detect_sensor(req["energy_sensor"])
    except (TypeError, ValueError) as e:  # e.g. a phone's sensor named in a local profile
        return {"energy_mj": None, "energy_note": f"energy sensor {req['energy_sensor']!r} unusable here: {e}"}
    if sensor is None:
        return {"energy_mj": None, "energy_note": f"sensor {req['energy_sensor']} not available on this machine"}
    n = int(req.get("energy_runs", 50))
    try:
        e = energy_per_inference(sensor, lambda: sess.run(None, feed), n=n, idle_s=float(req.get("energy_idle_s", 1.0)))
    except EnergyUnavailable as err:
        return {"energy_mj": None, "energy_note": str(err)}
    return {"energy_mj": e.mj_per_inference, "energy_source": e.source, "energy_idle_w": e.idle_w,
            "energy_active_w": e.active_w}


def main() -> int:
    req = json.loads(sys.stdin.read())
    try:
        out = run(req)
    except Exception as e:
        out = {"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    sys.stdout.write(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
