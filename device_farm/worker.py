"""The measuring process: ``python -m device_farm.worker`` reads one JSON request on stdin and
writes one JSON result on stdout.

It runs in its own process so that a runtime that hangs or crashes becomes a recorded failure (the
parent kills it at its timeout) and never takes the caller down, and so that nothing the caller
has loaded (torch, Ray, other threads) shares the cores while it times. It imports only the
runtime of the request (onnxruntime for ``.onnx``, ai-edge-litert's interpreter for ``.tflite``:
``"runtime": "tflite"``), numpy and the torch-free parts of ``device_farm`` (the median's
confidence interval is :func:`device_farm.measurement.median_ci_halfwidth`, the one the records use).
Both runtimes are timed through the same ``run(None, feed)`` call (:class:`LiteRTSession` gives the
interpreter onnxruntime's shape), so the protocol below is one and the same for both.

Protocol, per request: pin the process to the requested CPUs, open the candidate and candle
sessions (one intra-op thread by default), warm both up, then time them interleaved in rounds
(:func:`_interleaved`, the default since issue #13) until the 95% confidence half-width of the median
candidate/candle ratio is under ``target_ci``; ``interleave: false`` keeps the older protocol (candle
before, candidate until its median converges, candle after). The parent combines sessions, judges
disturbance and decides whether to measure again.
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


class LiteRTSession:
    """A TFLite interpreter (ai-edge-litert) with its input set once, timed as ``run(None, feed)``.

    ``xnnpack=False`` opens it with ``BUILTIN_WITHOUT_DEFAULT_DELEGATES`` (TFLite's own kernels, what
    ``benchmark_model --use_xnnpack=false`` runs); otherwise TFLite applies its default XNNPACK
    delegate. ``num_threads`` sets both the interpreter's and XNNPACK's threads.
    """

    def __init__(self, path: str, threads: int, xnnpack: bool = True):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        self.interpreter = Interpreter(model_path=path, num_threads=int(threads), experimental_op_resolver_type=resolver)
        self.interpreter.allocate_tensors()
        inp = self.interpreter.get_input_details()[0]
        self.shape = [int(d) for d in inp["shape"]]
        x = np.random.default_rng(0).standard_normal(self.shape, dtype=np.float32)
        self.interpreter.set_tensor(inp["index"], x)
        self._invoke = self.interpreter.invoke

    def run(self, _outputs, _feed) -> None:
        self._invoke()


def _litert_session(path: str, req: dict[str, Any]):
    sess = LiteRTSession(path, req["threads"], xnnpack=req.get("delegate", "xnnpack") != "none")
    return sess, None, sess.shape


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
    sess, feed, _ = _session(ort, req.get("model_path") or req["onnx_path"], req, profile_prefix=prefix)
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


def _pin(req: dict[str, Any]) -> list[int] | None:
    """Pin this process to ``req["pin_cpus"]`` (where the platform allows); the CPUs it then runs on."""
    cpus = req.get("pin_cpus")
    if not hasattr(os, "sched_setaffinity"):
        return None
    if cpus:
        allowed = os.sched_getaffinity(0)
        chosen = {int(c) for c in cpus} & allowed
        if chosen:
            os.sched_setaffinity(0, chosen)
    return sorted(os.sched_getaffinity(0))


class MemoryProbe:
    """Times copies of an array larger than the last-level cache: a clock for the memory system alone.

    The candles are compute-bound EdgeViTs: a neighbour that takes the memory bandwidth (not the
    core) slows them less than a candidate with a wide attention, so their ratio moves and nothing in
    the rounds shows it (issue #13, bench/RESULTS.md, farm_contention: +2-8% normalised, no run
    flagged). A copy is bound by that bandwidth alone: on this kind of machine a neighbour copying
    256 MB on the other core doubles its time while the candles move by a few percent. Timed before
    and after a session's rounds, never between them, so the rounds (the stored protocol) are unchanged.
    """

    def __init__(self, mib: int):
        self.src = np.ones(mib * 2 ** 20 // 8)
        self.dst = np.empty_like(self.src)
        np.copyto(self.dst, self.src)  # touch every page once: no page faults in the timed copies

    def __call__(self, n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            np.copyto(self.dst, self.src)
            out.append((time.perf_counter() - t0) * 1e3)
        return out


def _interleaved(sess, feed, candles: list, req: dict[str, Any], result: dict[str, Any]) -> list[float]:
    """The candidate and the candles in alternating blocks, one ratio per candle per round.

    A round times ``k_j`` runs of each candle ``j`` and ``m`` runs of the candidate, each block about
    ``block_ms`` long, in an order that reverses every round (c0 x c1, c1 x c0), so that all see the
    same machine state; the ratio of block medians cancels what changed the whole machine's speed
    (frequency, a neighbour's load). A round whose base-candle median lies further than
    ``drift_window`` from the session's median is a drift window and is left out. The session stops
    once the 95% CI of the median ratio to the candle nearest the candidate in latency is under
    ``target_ci`` (at least ``rounds_min`` rounds), or at ``rounds_max`` / ``max_seconds``.
    """
    t_x = float(np.median(_time(sess, feed, 3)))
    t_c = [float(np.median(_time(c, f, 3))) for c, f in candles]
    block = float(req.get("block_ms", 40.0))
    m = int(min(max(round(block / t_x), 1), 50))
    ks = [int(min(max(round(block / t), 1), 50)) for t in t_c]
    near = int(np.argmin([abs(np.log(t_x / t)) for t in t_c]))
    rounds_min, rounds_max = int(req.get("rounds_min", 12)), int(req.get("rounds_max", 200))
    target, max_s = float(req.get("target_ci", 0.01)), float(req.get("max_seconds", 20.0))
    window = float(req.get("drift_window", 0.08))
    rounds: list[list[float]] = []  # per round: candle medians..., candidate median
    times: list[float] = []
    candle_times: list[list[float]] = [[] for _ in candles]
    t_start = time.perf_counter()
    result["stop"] = "rounds_max"
    items = [0, -1, *range(1, len(candles))]  # candle 0, the candidate (-1), the other candles
    while len(rounds) < rounds_max:
        med = [0.0] * len(candles)
        for j in items if len(rounds) % 2 == 0 else items[::-1]:
            if j < 0:
                x = _time(sess, feed, m)
                continue
            c = _time(candles[j][0], candles[j][1], ks[j])
            candle_times[j] += c
            med[j] = float(np.median(c))
        times += x
        rounds.append(med + [float(np.median(x))])
        if len(rounds) >= rounds_min:
            ratios = _kept_ratios(rounds, window, near)
            if len(ratios) >= max(3, rounds_min // 2) and median_ci_halfwidth(ratios) / float(np.median(ratios)) < target:
                result["stop"] = "converged"
                break
        if time.perf_counter() - t_start > max_s and len(rounds) >= 3:
            result["stop"] = "max_seconds"
            break
    per = []
    for j in range(len(candles)):
        r = _kept_ratios(rounds, window, j)
        if not len(r):  # every round drifted: keep them all and let the parent judge
            r = np.array([row[-1] / row[j] for row in rounds])
        per.append(r)
    result.update(rounds=rounds, blocks=[*ks, m], candle_times_ms=candle_times, nearest=near,
                  ratios=[float(np.median(r)) for r in per],
                  ratio_ci_rel=[float(median_ci_halfwidth(r) / np.median(r)) for r in per],
                  rounds_kept=int(len(_kept_ratios(rounds, window, near))),
                  candle_ms=[float(np.median([row[j] for row in rounds])) for j in range(len(candles))])
    return times


def _kept_ratios(rounds: list[list[float]], window: float, j: int) -> np.ndarray:
    """Candidate / candle ``j`` ratios of the rounds outside drift windows (judged on candle 0)."""
    c0 = np.array([r[0] for r in rounds])
    cj = np.array([r[j] for r in rounds])
    x = np.array([r[-1] for r in rounds])
    keep = np.abs(c0 / np.median(c0) - 1.0) <= window
    return x[keep] / cj[keep]


def _before_after(sess, feed, candle, candle_feed, req: dict[str, Any], result: dict[str, Any]) -> list[float]:
    """The protocol of issue #3: the candle before and after, the candidate until its median's CI converges."""
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
    result["candle_after"] = _time(candle, candle_feed, n_candle)
    return times


def _runtime(req: dict[str, Any]):
    """(version, open(path) -> (session, feed, input shape)) of the request's runtime."""
    if req.get("runtime", "onnxruntime") == "tflite":
        from importlib.metadata import version

        return version("ai-edge-litert"), lambda path: _litert_session(path, req)
    import onnxruntime as ort

    return ort.__version__, lambda path: _session(ort, path, req)


def run(req: dict[str, Any]) -> dict[str, Any]:
    try:
        version, open_model = _runtime(req)
    except ImportError as e:  # the runtime's package is missing: a result saying which, not a crash
        return {"status": "failed", "error": f"runtime unavailable: {type(e).__name__}: {e}"}
    result: dict[str, Any] = {"runtime_version": version, "load_before": os.getloadavg()[0],
                              "cpus": _pin(req)}
    try:
        sess, feed, shape = open_model(req.get("model_path") or req["onnx_path"])
        paths = req.get("candle_paths") or [req["candle_path"]]
        candles = [open_model(p)[:2] for p in paths]
        candle, candle_feed = candles[0]
    except Exception as e:  # a model the runtime refuses is a result, not a crash
        result.update(status="failed", error=f"session creation failed: {type(e).__name__}: {(str(e).splitlines() or [''])[0]}")
        return result
    result["input_shape"] = "x".join(str(d) for d in shape)
    warm_until = time.perf_counter() + float(req.get("warmup_s", 0.3))
    _time(sess, feed, int(req.get("warmup", 5)))
    _time(candle, candle_feed, int(req.get("warmup", 5)))
    for c, f in candles[1:]:
        _time(c, f, int(req.get("warmup", 5)))
    while time.perf_counter() < warm_until:
        _time(sess, feed, 1)
        for c, f in candles:
            _time(c, f, 1)
    if req.get("interleave", True):
        mib, runs = int(req.get("memory_probe_mib", 0)), int(req.get("memory_probe_runs", 5))
        probe = MemoryProbe(mib) if mib > 0 and runs > 0 else None
        before = probe(runs) if probe else []
        result["times_ms"] = _interleaved(sess, feed, candles, req, result)
        if probe:
            result["memory_probe_ms"] = before + probe(runs)
    else:
        result["times_ms"] = _before_after(sess, feed, candle, candle_feed, req, result)
    result["load_after"] = os.getloadavg()[0]
    if req.get("energy_sensor"):
        result.update(_energy(req, sess, feed))
    if req.get("profile_ops") and req.get("runtime", "onnxruntime") == "onnxruntime":
        import onnxruntime as ort

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
