"""Measure a candidate on a device: export once, time it in an isolated process, judge, store.

What is measured is any :class:`~search_space.networks.Network` (an EdgeViT configuration, a timm
model by name, an nn-Meter block), exported once per id into the cache: ``<id>.onnx`` for
onnxruntime devices, ``<id>.tflite`` beside it for TFLite ones (LiteRT on this CPU, phones over adb).

The protocol interleaves a fixed reference model, the *candle* (EdgeViT-XXS at 128x128), before and
after each candidate. A candle that moved during the run, or that lies outside its usual band on
this device, marks the measurement disturbed; a disturbed measurement is taken again up to
``retries`` times and, if it stays disturbed, stored as ``disturbed``, never as a clean value. Every
stored latency keeps its ratio to the candle, which predictors may use to cancel slow drift.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search_space import PRESETS, EdgeViTConfig
from search_space.networks import Network, as_network

from .measurement import Measurement, summarize
from .profiles import DeviceProfile
from .store import MeasurementStore

__all__ = ["CANDLE", "CANDLE_LARGE", "CANDLES", "MeasureProtocol", "Farm", "MachineMismatch", "cpu_model", "cpu_id", "onnx_path_for",
           "tflite_path_for", "model_path_for", "runtime_version"]

#: The reference models timed beside every candidate. Fixed forever: changing one invalidates every
#: stored candle ratio. The small one (about 5 ms here) is the base; the large one (about 30 ms) serves
#: candidates nearer its latency, because a large model slows more than a small one when a neighbour
#: competes for the caches and memory, and a ratio cancels that only between models of similar size
#: (issue #13: a 90 ms candidate repeated to 2.2% against the small candle, 1.2% against the large).
CANDLE: EdgeViTConfig = PRESETS["edgevit_xxs"].replace(resolution=128, name="candle")
CANDLE_LARGE: EdgeViTConfig = PRESETS["edgevit_s"].replace(name="candle_large")
CANDLES: tuple[EdgeViTConfig, ...] = (CANDLE, CANDLE_LARGE)


class MachineMismatch(ValueError):
    """This machine's CPU is not the one the store's references for the device were measured on."""


@dataclass(frozen=True)
class MeasureProtocol:
    """How a latency is measured on an onnxruntime device (``bench/farm_noise.py`` measures it).

    Interleaved (the default since issue #13): in each of ``sessions`` worker processes, candle and
    candidate alternate in blocks of about ``block_ms`` (ABBA order), one candidate/candle ratio per
    round, rounds in a drift window (candle further than ``drift_window`` from the session's median)
    left out, until the median ratio's 95% CI is under ``ratio_ci``. Sessions whose ratios differ by
    more than ``session_agreement`` are followed by another, up to ``max_sessions``; the stored ratios
    (one per candle) are medians over sessions, and ``norm_ms`` is :func:`normalised_ms`: each candle's
    ratio times its reference (fixed per device in the store), the two weighted by where the
    candidate lies between the candles in log latency.
    The *anchor check* (opt-in, ``anchors=5``): every ``anchor_every_s`` the first ``anchors``
    reference candidates (:func:`search_space.reference_set`) are measured again, one session each,
    and the median of their reference ``norm_ms`` over their ``norm_ms`` now (the factor ``k``) is
    stored with the check and in each measurement's ``env["anchor"]``, a record of how far the
    device's unit moved. It was on by default and multiplied ``norm_ms`` until issue #13's second
    round, when two data sets showed it adding noise (one session per anchor; bench/RESULTS.md,
    farm_noise): ``apply_anchor=True`` restores that.
    ``interleave=False`` is the protocol of issue #3 (candle before and after).
    ``pin_cpus``: CPUs the worker is pinned to (``()``: the profile's ``pin_cores``, else none).
    The *memory probe* (issue #13): before and after each session's rounds the worker times
    ``memory_probe_runs`` copies of ``memory_probe_mib`` MiB (:class:`device_farm.worker.MemoryProbe`);
    their median over the session's base-candle latency is the session's memory ratio. The device's
    first clean measurement fixes its reference (:meth:`MeasurementStore.memory_reference`); a session
    whose ratio lies more than ``memory_band`` above it ran beside a neighbour on the memory system,
    which shifts memory-heavy candidates against the compute-bound candles, and is not counted: another
    session is run instead, up to ``max_sessions``, and a measurement left with fewer than ``sessions``
    such sessions is ``disturbed``. ``memory_probe_mib=0`` turns the probe off.
    """

    interleave: bool = True
    anchors: int = 0
    anchor_every_s: float = 600.0
    apply_anchor: bool = False
    sessions: int = 2
    max_sessions: int = 4
    session_agreement: float = 0.015
    session_seconds: float = 3.0
    block_ms: float = 40.0
    rounds_min: int = 12
    rounds_max: int = 200
    ratio_ci: float = 0.01
    drift_window: float = 0.08
    pin_cpus: tuple[int, ...] = ()
    memory_probe_mib: int = 64
    memory_probe_runs: int = 5
    memory_band: float = 0.15
    warmup: int = 5
    warmup_s: float = 0.3
    min_repeats: int = 20
    max_repeats: int = 300
    max_seconds: float = 20.0
    target_ci: float = 0.01  # before/after protocol: stop when the median's 95% CI half-width is under 1%
    candle_repeats: int = 15
    candle_drift: float = 0.05  # before/after protocol: candle before vs after differing by more: disturbed
    candle_band: float = 0.10  # before/after protocol: candle further than this from its usual median: disturbed
    band_min_history: int = 5  # clean measurements needed before the band is trusted
    retries: int = 2
    timeout_s: float = 300.0
    profile_ops: bool = False
    profile_runs: int = 20
    energy_runs: int = 50
    energy_idle_s: float = 1.0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: Vector extensions that decide which kernels onnxruntime and XNNPACK run.
_VECTOR_FLAGS: tuple[str, ...] = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def cpu_id() -> str:
    """The CPU as exactly as the machine states it: model name, family / model / stepping, and the vector
    extensions that decide the kernels. A cloud machine may call several generations just "AMD EPYC"
    (two such machines of this project ran LiteRT 2.1x apart: bench/RESULTS.md, eleventh round)."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break  # the first processor's block is enough
            k, _, v = line.partition(":")
            info[k.strip()] = v.strip()
    except OSError:
        return cpu_model()
    flags = set(info.get("flags", "").split())
    vec = "+".join(f for f in _VECTOR_FLAGS if f in flags) or "no avx2"
    return f"{cpu_model()} (family {info.get('cpu family', '?')}, model {info.get('model', '?')}, " \
           f"stepping {info.get('stepping', '?')}; {vec})"


def onnx_path_for(cfg: EdgeViTConfig | Network, cache_dir: Path) -> Path:
    """The candidate's ONNX file, exported once and cached by architecture id."""
    net = as_network(cfg)
    path = cache_dir / f"{net.arch_id}.onnx"
    if not path.exists():
        from search_space.export import export_onnx

        export_onnx(net, path)
    return path


def tflite_path_for(cfg: EdgeViTConfig | Network, cache_dir: Path) -> Path:
    """The candidate's .tflite file (litert-torch), exported once and cached by id beside its ONNX file."""
    net = as_network(cfg)
    path = cache_dir / f"{net.arch_id}.tflite"
    if not path.exists():
        from search_space.tflite import export_tflite

        export_tflite(net, path)
    return path


def normalised_ms(candle_ratios: dict[str, float], refs: dict[str, float]) -> float | None:
    """The drift-cancelled latency of a candidate from its ratios to the candles and their references.

    Each candle ``c`` gives an estimate ``ratio_c x ref_c``; with two, they are weighted by where the
    candidate lies between the candles in log latency (all weight on a candle at or beyond it), so the
    nearer candle counts most -- a ratio cancels a neighbour's load best between models of similar
    size -- and no candidate flips from one candle to the other between runs. Before issue #13's
    second round the nearer candle alone was used: a 10 ms candidate, halfway between the candles,
    flipped between runs and its value with it by 7% (``bench/farm_noise.py`` prints both).
    None when no candle has a reference.
    """
    est = sorted((refs[c], float(r) * refs[c]) for c, r in candle_ratios.items() if c in refs and r and r > 0)
    if not est:
        return None
    if len(est) == 1:
        return est[0][1]
    logs = np.log([e for _, e in est])
    at = float(np.exp(logs.mean()))  # where the candidate lies, from all candles
    pos = np.log([r for r, _ in est])
    return float(np.exp(np.interp(np.log(at), pos, logs)))


#: What ``norm_ms`` means in rows this version writes (``env["norm"]``): :func:`normalised_ms`. Rows
#: without it were normalised by the nearer candle alone times the anchor factor; :func:`renormalise`
#: brings them to this definition from the ratios they stored.
NORM_VERSION = "candles-weighted"


def renormalise(store, device: str | None = None) -> int:
    """Recompute ``norm_ms`` of the interleaved rows written before :data:`NORM_VERSION` (from their stored
    candle ratios and the store's reference candles); the previous value is kept in
    ``env["norm_ms_before"]``. Returns how many rows changed; rows already current are left alone."""
    changed = []
    for m in store.query(device=device):
        if not _stale(m):
            continue
        ms = normalised_ms(m.env["candle_ratios"], store.candle_references(m.device, m.runtime_version, m.threads))
        if ms is None:
            continue
        m.env["norm_ms_before"], m.env["norm"] = m.norm_ms, NORM_VERSION
        m.norm_ms = ms
        changed.append(m)
    return store.put_many(changed)


def _stale(m) -> bool:
    return m.norm_ms is not None and bool(m.env.get("candle_ratios")) and m.env.get("norm") != NORM_VERSION


def stale_norm(rows) -> int:
    """How many of ``rows`` carry a ``norm_ms`` of an earlier definition (see :func:`renormalise`)."""
    return sum(map(_stale, rows))


def model_path_for(cfg: EdgeViTConfig | Network, profile: DeviceProfile, cache_dir: Path) -> Path:
    """The file ``profile``'s device runs: .tflite for TFLite runtimes, .onnx otherwise."""
    return tflite_path_for(cfg, cache_dir) if profile.runtime == "tflite" else onnx_path_for(cfg, cache_dir)


def runtime_version(profile: DeviceProfile) -> str:
    """The version of the runtime a local profile measures with (the store keeps it in every key)."""
    from importlib.metadata import PackageNotFoundError, version

    dist = "ai-edge-litert" if profile.backend == "litert" else "onnxruntime"
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not-installed"


class Farm:
    """Measures configurations on device profiles and writes the results to a store.

    ``measure`` is safe to call from a Ray task: each call opens its own store connection and its own
    worker process.
    """

    def __init__(self, store: MeasurementStore | None, cache_dir: Path | None = None,
                 protocol: MeasureProtocol = MeasureProtocol()):
        if store is None and cache_dir is None:
            raise ValueError("cache_dir: required when there is no store to put the ONNX cache beside")
        self.store = store
        self.cache_dir = Path(cache_dir) if cache_dir else store.path.parent / "onnx"
        self.protocol = protocol

    # ------------------------------------------------------------------ public
    def measure(self, cfg: EdgeViTConfig | Network, profile: DeviceProfile, band: list[float] | None = None,
                memory_ref: float | None = None) -> Measurement:
        """Measure ``cfg`` (a configuration or any :class:`Network`) on ``profile``; failures come back as
        ``status='failed'`` records, not exceptions.

        ``band``: the device's recent clean candle latencies, ``memory_ref`` its memory-probe reference
        (both read from the store when None). A Ray task on another node gets them from the driver,
        which also writes the result (the store stays single-writer).
        """
        net = as_network(cfg)
        if profile.backend == "adb":
            m = self._measure_adb(net, profile)
        else:
            self.check_machine(profile)
            anchor = self.anchor_factor(profile) if self._anchoring() else None
            if memory_ref is None:
                memory_ref = self.memory_reference(profile)
            m = self._measure_local(net, profile, band, memory_ref)
            if anchor is not None:
                m.env["anchor"] = anchor
        if self.store is not None:
            self.record(m)
        return m

    # ------------------------------------------------------------------ anchors
    def _anchoring(self) -> bool:
        return self.protocol.interleave and self.protocol.anchors > 0 and self.store is not None

    def anchor_factor(self, profile: DeviceProfile) -> dict[str, Any]:
        """The device's current anchor factor (:class:`MeasureProtocol`), checked again when older than
        ``anchor_every_s`` (a check by another process within that time is reused from the store)."""
        import onnxruntime as ort

        from search_space import reference_set

        rv, threads = ort.__version__, profile.threads
        last = self.store.last_anchor_check(profile.id, rv, threads)
        if last is not None and time.time() - last["time"] < self.protocol.anchor_every_s:
            return last
        anchors = reference_set(self.protocol.anchors)
        refs = self.store.anchor_references(profile.id, rv, threads)
        now: dict[str, float] = {}
        # one clean session per anchor (their median over several anchors is what counts); up to three, so
        # that a session the memory probe sets aside is replaced rather than losing the anchor for the check
        saved = self.protocol
        self.protocol = dataclasses.replace(saved, sessions=1, max_sessions=3, profile_ops=False)
        try:
            results = [(cfg, self._measure_local(as_network(cfg), profile, None)) for cfg in anchors]
        finally:
            self.protocol = saved
        for cfg, m in results:
            if m.status != "ok":
                continue
            cand = self.store.candle_references(profile.id, rv, threads, propose=m.env.get("session_candle_ms_median"))
            ms = normalised_ms(m.env.get("candle_ratios") or {}, cand)
            if ms is not None:
                now[cfg.arch_id] = ms
        if not refs and len(now) == len(anchors):
            self.store.set_anchor_references(profile.id, rv, threads, now)  # the device's unit, fixed once
            refs = now
        shared = [a for a in now if a in refs]
        if len(shared) * 2 < len(anchors):  # too few clean anchors to say anything: no correction
            check = {"time": time.time(), "k": 1.0, "n": len(shared), "spread": float("nan"), "note": "too few anchors"}
        else:
            ks = np.array([refs[a] / now[a] for a in shared])
            check = {"time": time.time(), "k": float(np.median(ks)), "n": len(shared),
                     "spread": float(np.percentile(ks, 90) / np.percentile(ks, 10) - 1)}
        self.store.put_anchor_check(profile.id, rv, threads, check)
        return check

    def record(self, m: Measurement) -> None:
        """Write ``m`` (and its per-operator profile, if any) to the store.

        Here, where the store is, the candle ratio becomes ``norm_ms`` against the device's reference
        candle (established by the first clean measurement of the device in this store), whichever
        node measured it.
        """
        ops = m.env.pop("op_profile", None)
        cpu = (m.env.get("cpu_id") or m.env.get("cpu")) if m.env.get("candle_ratios") else None  # a local one names its CPU
        ref_cpu = self.store.reference_cpu(m.device, m.runtime_version, m.threads) if cpu else None
        if cpu and ref_cpu and cpu != ref_cpu:  # e.g. a Ray node on another CPU under the same device id
            m.status, m.norm_ms = "failed", None
            m.error = (f"measured on a {cpu}; the store's references for {m.device} were measured on a {ref_cpu}: "
                       "another device, not normalised")
        if m.status == "ok" and cpu and not ref_cpu:
            self.store.reference_cpu(m.device, m.runtime_version, m.threads, propose=cpu)
        if m.status == "ok" and m.candle_ratio is not None and m.norm_ms is None and m.env.get("candle_ratios"):
            refs = self.store.candle_references(m.device, m.runtime_version, m.threads,
                                                propose=m.env.get("session_candle_ms_median"))
            ms = normalised_ms(m.env["candle_ratios"], refs)
            if ms is not None:
                k = float(m.env.get("anchor", {}).get("k", 1.0)) if self.protocol.apply_anchor else 1.0
                m.norm_ms = ms * k
                m.env["reference_candles_ms"], m.env["norm"] = refs, NORM_VERSION
        if m.status == "ok" and m.env.get("session_memory_ratio"):
            mine = [r for r in m.env["session_memory_ratio"] if r]
            if mine:  # the first clean measurement that timed the probe fixes the device's reference
                self.store.memory_reference(m.device, m.runtime_version, m.threads, propose=float(np.median(mine)))
        self.store.put(m)
        if ops:
            self.store.put_op_profile(m, ops)

    # ------------------------------------------------------------------ local (onnxruntime, LiteRT)
    def _request(self, net: Network, profile: DeviceProfile, workdir: str) -> dict[str, Any]:
        p = self.protocol
        return {
            "runtime": profile.runtime, "delegate": profile.delegate,
            "model_path": str(model_path_for(net, profile, self.cache_dir)),
            "candle_path": str(model_path_for(CANDLE, profile, self.cache_dir)),
            "candle_paths": [str(model_path_for(c, profile, self.cache_dir)) for c in CANDLES] if p.interleave else None,
            "threads": profile.threads,
            "graph_optimization": profile.graph_optimization,
            "provider": "cuda" if profile.backend == "onnxruntime-cuda" else "cpu",
            "warmup": p.warmup, "warmup_s": p.warmup_s, "min_repeats": p.min_repeats, "max_repeats": p.max_repeats,
            "max_seconds": p.session_seconds if p.interleave else p.max_seconds, "candle_repeats": p.candle_repeats,
            "interleave": p.interleave, "block_ms": p.block_ms, "rounds_min": p.rounds_min, "rounds_max": p.rounds_max,
            "target_ci": p.ratio_ci if p.interleave else p.target_ci, "drift_window": p.drift_window,
            "pin_cpus": list(p.pin_cpus or profile.pin_cores),
            "memory_probe_mib": p.memory_probe_mib if p.interleave else 0, "memory_probe_runs": p.memory_probe_runs,
            "profile_ops": p.profile_ops, "profile_runs": p.profile_runs, "profile_dir": workdir,
            "energy_sensor": profile.energy_sensor, "energy_runs": p.energy_runs, "energy_idle_s": p.energy_idle_s,
        }

    def _run_worker(self, request: dict[str, Any]) -> dict[str, Any]:
        t_wait = time.perf_counter()
        try:
            with _machine_lock(self.protocol.timeout_s):
                waited = time.perf_counter() - t_wait
                proc = subprocess.run([sys.executable, "-m", "device_farm.worker"], input=json.dumps(request),
                                      capture_output=True, text=True, timeout=self.protocol.timeout_s,
                                      env={**os.environ, "OMP_NUM_THREADS": str(request["threads"])})
        except subprocess.TimeoutExpired:
            return {"status": "failed", "error": f"worker timed out after {self.protocol.timeout_s:.0f} s"}
        except TimeoutError as e:
            return {"status": "failed", "error": str(e)}
        if proc.returncode != 0 or not proc.stdout.strip():
            why = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
            tail = (proc.stderr.strip().splitlines() or [""])[-1]
            return {"status": "failed", "error": f"worker crashed ({why}): {tail}".rstrip(": ")}
        res = json.loads(proc.stdout)
        res["waited_s"] = round(waited, 3)
        return res

    def _judge(self, res: dict[str, Any], band: list[float]) -> list[str]:
        """Reasons this run is disturbed (empty: clean)."""
        p = self.protocol
        before, after = float(np.median(res["candle_before"])), float(np.median(res["candle_after"]))
        reasons = []
        drift = abs(after / before - 1)
        if drift > p.candle_drift:
            reasons.append(f"candle moved {drift:.1%} during the run ({before:.3f} -> {after:.3f} ms)")
        if len(band) >= p.band_min_history:
            usual = float(np.median(band))
            off = (before + after) / 2 / usual - 1
            if abs(off) > p.candle_band:
                reasons.append(f"candle {off:+.1%} off its usual {usual:.3f} ms on this device")
        return reasons

    def candle_band(self, profile: DeviceProfile) -> list[float]:
        if self.store is None:
            return []
        return self.store.recent_candles(profile.id, profile.threads, runtime_version(profile))

    def check_machine(self, profile: DeviceProfile, cpu: str | None = None) -> None:
        """Raise :class:`MachineMismatch` when ``cpu`` (this machine's) is not the CPU the store's references
        for ``profile`` were measured on: its timings would be normalised in another device's unit."""
        if self.store is None:
            return
        ref = self.store.reference_cpu(profile.id, runtime_version(profile), profile.threads)
        cpu = cpu or cpu_id()
        if ref and ref != cpu:
            raise MachineMismatch(f"device {profile.id}: the store {self.store.path} holds its measurements from a {ref}, "
                                  f"this machine is a {cpu}: another device; measure into another store (--store) "
                                  "or under another device id")

    def memory_reference(self, profile: DeviceProfile) -> float | None:
        """The device's memory-probe reference in the store (None: no store, or not set yet)."""
        if self.store is None:
            return None
        return self.store.memory_reference(profile.id, runtime_version(profile), profile.threads)

    def _measure_local(self, net: Network, profile: DeviceProfile, band: list[float] | None,
                       memory_ref: float | None = None) -> Measurement:
        base = dict(arch_id=net.arch_id, device=profile.id, runtime=profile.runtime,
                    runtime_version=runtime_version(profile), input_shape="x".join(map(str, net.input_shape)),
                    threads=profile.threads, precision=profile.precision, config=net.config_dict(),
                    source=f"measured:{socket.gethostname()}")
        env = {"cpu": cpu_model(), "cpu_id": cpu_id(), "cpus": os.cpu_count(), "hostname": socket.gethostname(),
               "python": platform.python_version(), "backend": profile.backend, "protocol": asdict(self.protocol)}
        if net.config_dict() is None:
            env["model"] = net.spec
        if profile.delegate:
            env["delegate"] = profile.delegate
        t0 = time.time()

        def failed(res: dict[str, Any], attempts: int) -> Measurement:
            env.update(seconds=round(time.time() - t0, 2), attempts=attempts)
            return Measurement(**base, status="failed", error=res.get("error", "unknown failure"), env=env)

        def worker(profile_ops: bool) -> dict[str, Any]:
            with tempfile.TemporaryDirectory(prefix="farm-") as work:
                try:
                    request = self._request(net, profile, work)
                except Exception as e:  # export failed: a failure record, with its reason
                    line = (str(e).splitlines() or [""])[0]
                    return {"status": "failed", "error": f"export failed: {type(e).__name__}: {line}"}
                request["profile_ops"] = profile_ops
                started = time.time()
                return {**self._run_worker(request), "started": round(started, 2)}

        if self.protocol.interleave:
            return self._interleaved(base, env, worker, failed, t0, memory_ref)
        band = self.candle_band(profile) if band is None else band
        attempts: list[dict[str, Any]] = []
        for attempt in range(self.protocol.retries + 1):
            res = worker(self.protocol.profile_ops)
            if res.get("status") != "ok":
                return failed(res, attempt + 1)
            reasons = self._judge(res, band)
            attempts.append({"load_before": res["load_before"], "load_after": res["load_after"], "disturbed": reasons})
            if not reasons:
                break
        stats = summarize(res["times_ms"])
        candle = (float(np.median(res["candle_before"])) + float(np.median(res["candle_after"]))) / 2
        env.update(
            seconds=round(time.time() - t0, 2), attempts=len(attempts), attempt_log=attempts, stop=res.get("stop"),
            load_before=res["load_before"], load_after=res["load_after"], pinned_cpus=res.get("cpus"),
            candle_before_ms=float(np.median(res["candle_before"])), candle_after_ms=float(np.median(res["candle_after"])),
            candle_band_ms=float(np.median(band)) if len(band) >= self.protocol.band_min_history else None,
        )
        m = self._record_of(base, env, res, reasons)
        m.with_stats(stats)
        m.candle_ms = candle
        m.candle_ratio = stats.median_ms / candle
        return m

    def _interleaved(self, base: dict[str, Any], env: dict[str, Any], worker, failed, t0: float,
                     memory_ref: float | None = None) -> Measurement:
        """Sessions of the interleaved protocol until two agree (:class:`MeasureProtocol`); a session
        beside a busy memory system (its memory ratio above ``memory_ref`` by ``memory_band``) is set
        aside and another run in its place."""
        p = self.protocol
        sessions: list[dict[str, Any]] = []
        busy: list[dict[str, Any]] = []
        limit = memory_ref * (1 + p.memory_band) if memory_ref else None
        while len(sessions) + len(busy) < p.max_sessions:
            res = worker(p.profile_ops and not (sessions or busy))  # operator profile once, in the first session
            if res.get("status") != "ok":
                return failed(res, len(sessions) + len(busy) + 1)
            res["memory_ratio"] = memory_ratio(res)
            if limit is not None and res["memory_ratio"] is not None and res["memory_ratio"] > limit:
                busy.append(res)
                continue
            sessions.append(res)
            if len(sessions) >= p.sessions and _closest_pair(sessions)[0] <= p.session_agreement:
                break
        reasons = []
        if busy:
            env["memory_busy_sessions"] = len(busy)
            env["memory_busy_ratios"] = [round(s["memory_ratio"] / memory_ref, 4) for s in busy]
            if len(sessions) < p.sessions:
                worst = max(env["memory_busy_ratios"])
                reasons.append(f"{len(busy)} of {len(busy) + len(sessions)} sessions beside a busy memory system "
                               f"(copy / candle up to {worst:.2f}x the device's reference; > {1 + p.memory_band:.2f}x)")
                sessions = sessions + busy  # the values a disturbed record keeps: every session timed
        near = int(np.median([s["nearest"] for s in sessions]) + 0.5)
        spread, pair = _closest_pair(sessions, near)
        ratios = [s["ratios"][near] for s in sessions]
        if spread > p.session_agreement:
            reasons.append(f"{len(sessions)} sessions: the closest two ratios differ by {spread:.1%} "
                           f"(> {p.session_agreement:.1%})")
        kept = sum(s["rounds_kept"] for s in sessions) / max(1, sum(len(s["rounds"]) for s in sessions))
        env["waited_for_other_measurements_s"] = round(sum(s.get("waited_s", 0.0) for s in sessions), 2)
        if kept < 0.5:
            reasons.append(f"only {kept:.0%} of the rounds outside drift windows")
        times = [t for s in sessions for t in s["times_ms"]]
        env.update(
            seconds=round(time.time() - t0, 2), sessions=len(sessions), pinned_cpus=sessions[0].get("cpus"),
            candle=CANDLES[near].name, session_ratios=ratios,
            session_candle_ms=[s["candle_ms"] for s in sessions],
            session_candle_ms_median={c.name: float(np.median([s["candle_ms"][j] for s in sessions]))
                                      for j, c in enumerate(CANDLES)},
            candle_ratios={c.name: float(np.median([s["ratios"][j] for s in sessions])) for j, c in enumerate(CANDLES)},
            session_candle_ratios=[{c.name: float(s["ratios"][j]) for j, c in enumerate(CANDLES)} for s in sessions],
            session_started=[s.get("started") for s in sessions],
            session_ratio_ci_rel=[s["ratio_ci_rel"][near] for s in sessions], rounds=[len(s["rounds"]) for s in sessions],
            rounds_kept=[s["rounds_kept"] for s in sessions], blocks=[s["blocks"] for s in sessions],
            stop=[s.get("stop") for s in sessions], load_before=sessions[0]["load_before"],
            load_after=sessions[-1]["load_after"],
            session_memory_ratio=[s["memory_ratio"] for s in sessions],
            memory_reference=memory_ref,
            **low_quantile_ratios(sessions),
        )
        profiled = next((s for s in [*sessions, *busy] if s.get("op_profile")), sessions[0])
        m = self._record_of(base, env, {**sessions[0], "op_profile": profiled.get("op_profile")}, reasons)
        m.with_stats(summarize(times))
        # The agreeing pair decides (a third or fourth session was run because one of the first disagreed).
        m.candle_ratio = float(np.mean([ratios[i] for i in pair]))
        m.candle_ms = float(np.median([s["candle_ms"][near] for s in sessions]))
        return m

    @staticmethod
    def _record_of(base: dict[str, Any], env: dict[str, Any], res: dict[str, Any], reasons: list[str]) -> Measurement:
        if "energy_note" in res:
            env["energy_note"] = res["energy_note"]
        if "energy_idle_w" in res:
            env.update(energy_idle_w=res["energy_idle_w"], energy_active_w=res["energy_active_w"])
        if res.get("op_profile"):
            env["op_profile"] = res["op_profile"]
        return Measurement(**base, status="disturbed" if reasons else "ok", energy_mj=res.get("energy_mj"),
                           energy_source=res.get("energy_source"), error="; ".join(reasons) or None, env=env)

    # ------------------------------------------------------------------ phones over adb
    def _measure_adb(self, net: Network, profile: DeviceProfile) -> Measurement:
        """The phone runs its runtime's stock benchmark binary on the cached export: ``benchmark_model``
        on the .tflite (``runtime = "tflite"``, the tool and file nn-Meter's tables were measured with),
        ``onnxruntime_perf_test`` on the .onnx; pinned to ``pin_cores`` (default: the fastest cores)."""
        from . import adb

        binary = Path(profile.benchmark_binary) if profile.benchmark_binary else None
        # The phone's runtime version is that of the benchmark binary: identify the build by its hash.
        version = f"sha256:{hashlib.sha256(binary.read_bytes()).hexdigest()[:12]}" if binary and binary.is_file() else "unknown"
        base = dict(arch_id=net.arch_id, device=profile.id, runtime=profile.runtime, runtime_version=version,
                    input_shape="x".join(map(str, net.input_shape)), threads=profile.threads,
                    precision=profile.precision, config=net.config_dict(), source=f"measured:adb:{profile.serial}")
        if not profile.serial:
            return Measurement(**base, status="failed", error=(
                f"device {profile.id}: no adb serial; set serial = \"...\" in a user profile "
                f"({profile.id}.toml in the user device folder)"))
        if profile.runtime not in adb.TOOLS:
            return Measurement(**base, status="failed", error=(
                f"device {profile.id}: runtime={profile.runtime!r}: allowed over adb: {', '.join(adb.TOOLS)}"))
        if binary is None or not binary.is_file():
            tool = "benchmark_model" if profile.runtime == "tflite" else "onnxruntime_perf_test"
            return Measurement(**base, status="failed", error=(
                f"device {profile.id}: benchmark_binary={profile.benchmark_binary!r} is not a file (an Android "
                f"build of {tool})"))
        try:
            model = model_path_for(net, profile, self.cache_dir)
        except Exception as e:  # export failed: a failure record, with its reason
            line = (str(e).splitlines() or [""])[0]
            return Measurement(**base, status="failed", error=f"export failed: {type(e).__name__}: {line}")
        dev = adb.AdbDevice(profile.serial, adb=profile.adb)
        bench = adb.AdbBenchmark(binary_local=binary, tool=profile.runtime,
                                 use_xnnpack=None if not profile.delegate else profile.delegate == "xnnpack")
        try:
            report = adb.measure_on_phone(dev, model, bench, threads=profile.threads,
                                          cores=list(profile.pin_cores) or None)
        except Exception as e:
            return Measurement(**base, status="failed", error=f"{type(e).__name__}: {e}")
        env = {"tool": report.tool, "mean_ms": report.mean_ms, "min_ms": report.min_ms, "max_ms": report.max_ms,
               "cores": list(profile.pin_cores) or "fastest", "delegate": profile.delegate or "tool default",
               "energy_note": "energy over adb (android-battery) is not wired into phone runs yet"}
        if net.config_dict() is None:
            env["model"] = net.spec
        return Measurement(**base, status="ok", median_ms=report.median_ms or report.mean_ms, p90_ms=report.p90_ms,
                           repeats=report.count, cv=(report.std_ms / report.mean_ms) if report.std_ms else None, env=env)


#: Low quantiles of the timings, kept beside the median ratios: ``env[key]`` holds, per candle, the
#: median over sessions of (candidate's q-th percentile / candle's q-th percentile).
LOW_QUANTILES: dict[str, float] = {"candle_ratios_p10": 10.0, "candle_ratios_min": 0.0}


def low_quantile_ratios(sessions: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Candidate / candle ratios of the *fast* end of each session's timings (issue #13 item 1).

    A shared machine only ever adds time: a neighbour's load, a cache another tenant evicted, a lower
    clock. The medians of candle and candidate cancel what slows both alike; where the slowdown hits
    them differently (a memory-heavy candidate beside a compute-bound candle) the ratio of medians
    moves with it. The ratio of low quantiles compares both at their least disturbed, so it might
    repeat better across runs. On two repeat pairs it did not (bench/RESULTS.md, farm_noise, sixth
    round: p90 1.84-2.82% against the medians' 1.65-1.72%), so ``norm_ms`` does not use it; it is kept
    in ``env`` so that ``bench/farm_noise.py`` can judge it on other machines from the same timings
    (the per-run timings themselves are not stored).
    """
    out: dict[str, dict[str, float]] = {}
    for key, q in LOW_QUANTILES.items():
        per = {}
        for j, c in enumerate(CANDLES):
            r = [np.percentile(s["times_ms"], q) / np.percentile(s["candle_times_ms"][j], q)
                 for s in sessions if s.get("times_ms") and len(s.get("candle_times_ms") or []) > j
                 and s["candle_times_ms"][j]]
            if r:
                per[c.name] = float(np.median(r))
        if per:
            out[key] = per
    return out


def memory_ratio(res: dict[str, Any]) -> float | None:
    """A session's memory ratio: the median time of its probe copies over its base candle's median
    latency (None without a probe). Both slow with the whole machine; only the copy slows much when a
    neighbour takes the memory bandwidth."""
    probe = res.get("memory_probe_ms")
    if not probe or not res.get("candle_ms"):
        return None
    return float(np.median(probe)) / float(res["candle_ms"][0])


def _closest_pair(sessions: list[dict[str, Any]], near: int | None = None) -> tuple[float, tuple[int, ...]]:
    """The relative difference of the two closest session ratios (to candle ``near``), and their indices."""
    if near is None:
        near = int(np.median([s["nearest"] for s in sessions]) + 0.5)
    r = [s["ratios"][near] for s in sessions]
    if len(r) < 2:
        return 0.0, (0,)
    return min((max(r[i], r[j]) / min(r[i], r[j]) - 1.0, (i, j)) for i in range(len(r)) for j in range(i + 1, len(r)))


#: One measurement at a time on a machine: every local device (onnxruntime, a CPU's other runtimes)
#: shares its cores, and two workers timing at once slowed each other by 19-26% (issue #17).
MACHINE_LOCK = Path(tempfile.gettempdir()) / "edgevit-nas-measure.lock"


class _machine_lock:
    """Hold :data:`MACHINE_LOCK` while a worker times; another farm process waits its turn (up to
    ``timeout_s``), so concurrent ``nas farm`` commands take turns instead of disturbing each other."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.fd: int | None = None

    def __enter__(self) -> "_machine_lock":
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return self
        self.fd = os.open(MACHINE_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    self.fd = None
                    raise TimeoutError(f"another measurement held this machine for more than {self.timeout_s:.0f} s "
                                       f"({MACHINE_LOCK}); run measurements one at a time") from None
                time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
