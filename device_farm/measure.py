"""Measure a candidate on a device: export once, time it in an isolated process, judge, store.

The protocol interleaves a fixed reference model, the *candle* (EdgeViT-XXS at 128x128), before and
after each candidate. A candle that moved during the run, or that lies outside its usual band on
this device, marks the measurement disturbed; a disturbed measurement is taken again up to
``retries`` times and, if it stays disturbed, stored as ``disturbed``, never as a clean value. Every
stored latency keeps its ratio to the candle, which predictors may use to cancel slow drift.
"""
from __future__ import annotations

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

from .measurement import Measurement, summarize
from .profiles import DeviceProfile
from .store import MeasurementStore

__all__ = ["CANDLE", "MeasureProtocol", "Farm", "cpu_model", "onnx_path_for"]

#: The reference model timed around every candidate. Fixed forever: changing it invalidates every
#: stored candle ratio.
CANDLE: EdgeViTConfig = PRESETS["edgevit_xxs"].replace(resolution=128, name="candle")


@dataclass(frozen=True)
class MeasureProtocol:
    warmup: int = 5
    warmup_s: float = 0.3
    min_repeats: int = 20
    max_repeats: int = 300
    max_seconds: float = 20.0
    target_ci: float = 0.01  # stop when the 95% CI half-width of the median is under 1% of it
    candle_repeats: int = 15
    candle_drift: float = 0.05  # candle before vs after differing by more: disturbed
    candle_band: float = 0.10  # candle further than this from its usual median on this device: disturbed
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


def onnx_path_for(cfg: EdgeViTConfig, cache_dir: Path) -> Path:
    """The candidate's ONNX file, exported once and cached by architecture id."""
    path = cache_dir / f"{cfg.arch_id}.onnx"
    if not path.exists():
        from search_space.export import export_onnx

        export_onnx(cfg, path)
    return path


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
    def measure(self, cfg: EdgeViTConfig, profile: DeviceProfile, band: list[float] | None = None) -> Measurement:
        """Measure ``cfg`` on ``profile``; failures come back as ``status='failed'`` records, not exceptions.

        ``band``: the device's recent clean candle latencies (read from the store when None). A Ray task on
        another node gets it from the driver, which also writes the result (the store stays single-writer).
        """
        if profile.backend == "adb":
            m = self._measure_adb(cfg, profile)
        else:
            m = self._measure_local(cfg, profile, band)
        if self.store is not None:
            self.record(m)
        return m

    def record(self, m: Measurement) -> None:
        """Write ``m`` (and its per-operator profile, if any) to the store."""
        ops = m.env.pop("op_profile", None)
        self.store.put(m)
        if ops:
            self.store.put_op_profile(m, ops)

    # ------------------------------------------------------------------ local (onnxruntime)
    def _request(self, cfg: EdgeViTConfig, profile: DeviceProfile, workdir: str) -> dict[str, Any]:
        p = self.protocol
        return {
            "onnx_path": str(onnx_path_for(cfg, self.cache_dir)),
            "candle_path": str(onnx_path_for(CANDLE, self.cache_dir)),
            "threads": profile.threads,
            "graph_optimization": profile.graph_optimization,
            "provider": "cuda" if profile.backend == "onnxruntime-cuda" else "cpu",
            "warmup": p.warmup, "warmup_s": p.warmup_s, "min_repeats": p.min_repeats, "max_repeats": p.max_repeats,
            "max_seconds": p.max_seconds, "target_ci": p.target_ci, "candle_repeats": p.candle_repeats,
            "profile_ops": p.profile_ops, "profile_runs": p.profile_runs, "profile_dir": workdir,
            "energy_sensor": profile.energy_sensor, "energy_runs": p.energy_runs, "energy_idle_s": p.energy_idle_s,
        }

    def _run_worker(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            proc = subprocess.run([sys.executable, "-m", "device_farm.worker"], input=json.dumps(request),
                                  capture_output=True, text=True, timeout=self.protocol.timeout_s,
                                  env={**os.environ, "OMP_NUM_THREADS": str(request["threads"])})
        except subprocess.TimeoutExpired:
            return {"status": "failed", "error": f"worker timed out after {self.protocol.timeout_s:.0f} s"}
        if proc.returncode != 0 or not proc.stdout.strip():
            why = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
            tail = (proc.stderr.strip().splitlines() or [""])[-1]
            return {"status": "failed", "error": f"worker crashed ({why}): {tail}".rstrip(": ")}
        return json.loads(proc.stdout)

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
        import onnxruntime as ort

        if self.store is None:
            return []
        return self.store.recent_candles(profile.id, profile.threads, ort.__version__)

    def _measure_local(self, cfg: EdgeViTConfig, profile: DeviceProfile, band: list[float] | None) -> Measurement:
        import onnxruntime as ort

        base = dict(arch_id=cfg.arch_id, device=profile.id, runtime="onnxruntime", runtime_version=ort.__version__,
                    input_shape=f"1x3x{cfg.resolution}x{cfg.resolution}", threads=profile.threads,
                    precision=profile.precision, config=cfg.to_dict(), source=f"measured:{socket.gethostname()}")
        env = {"cpu": cpu_model(), "cpus": os.cpu_count(), "hostname": socket.gethostname(),
               "python": platform.python_version(), "backend": profile.backend}
        band = self.candle_band(profile) if band is None else band
        attempts: list[dict[str, Any]] = []
        t0 = time.time()
        for attempt in range(self.protocol.retries + 1):
            with tempfile.TemporaryDirectory(prefix="farm-") as work:
                try:
                    request = self._request(cfg, profile, work)
                except Exception as e:  # export failed: a failure record, with its reason
                    return Measurement(**base, status="failed", error=f"export failed: {type(e).__name__}: {e}", env=env)
                res = self._run_worker(request)
            if res.get("status") != "ok":
                env.update(seconds=round(time.time() - t0, 2), attempts=attempt + 1)
                return Measurement(**base, status="failed", error=res.get("error", "unknown failure"), env=env)
            reasons = self._judge(res, band)
            attempts.append({"load_before": res["load_before"], "load_after": res["load_after"], "disturbed": reasons})
            if not reasons:
                break
        stats = summarize(res["times_ms"])
        candle = (float(np.median(res["candle_before"])) + float(np.median(res["candle_after"]))) / 2
        env.update(
            seconds=round(time.time() - t0, 2), attempts=len(attempts), attempt_log=attempts, stop=res.get("stop"),
            load_before=res["load_before"], load_after=res["load_after"],
            candle_before_ms=float(np.median(res["candle_before"])), candle_after_ms=float(np.median(res["candle_after"])),
            candle_band_ms=float(np.median(band)) if len(band) >= self.protocol.band_min_history else None,
            protocol=asdict(self.protocol),
        )
        if "energy_note" in res:
            env["energy_note"] = res["energy_note"]
        if "energy_idle_w" in res:
            env.update(energy_idle_w=res["energy_idle_w"], energy_active_w=res["energy_active_w"])
        if res.get("op_profile"):
            env["op_profile"] = res["op_profile"]
        m = Measurement(**base, status="disturbed" if reasons else "ok", candle_ms=candle,
                        energy_mj=res.get("energy_mj"), energy_source=res.get("energy_source"),
                        error="; ".join(reasons) or None, env=env)
        m.with_stats(stats)
        m.candle_ratio = stats.median_ms / candle
        return m

    # ------------------------------------------------------------------ phones over adb
    def _measure_adb(self, cfg: EdgeViTConfig, profile: DeviceProfile) -> Measurement:
        from . import adb

        binary = Path(profile.benchmark_binary) if profile.benchmark_binary else None
        # The phone's runtime version is that of the benchmark binary: identify the build by its hash.
        version = f"sha256:{hashlib.sha256(binary.read_bytes()).hexdigest()[:12]}" if binary and binary.is_file() else "unknown"
        base = dict(arch_id=cfg.arch_id, device=profile.id, runtime=profile.runtime, runtime_version=version,
                    input_shape=f"1x3x{cfg.resolution}x{cfg.resolution}", threads=profile.threads,
                    precision=profile.precision, config=cfg.to_dict(), source=f"measured:adb:{profile.serial}")
        if not profile.serial:
            return Measurement(**base, status="failed", error=(
                f"device {profile.id}: no adb serial; set serial = \"...\" in a user profile "
                f"({profile.id}.toml in the user device folder)"))
        if profile.runtime != "onnxruntime":
            return Measurement(**base, status="failed", error=(
                f"device {profile.id}: runtime={profile.runtime!r} needs a .tflite model, and ONNX-to-TFLite "
                "conversion is not part of this package; set runtime = \"onnxruntime\" and benchmark_binary to an "
                "Android build of onnxruntime_perf_test"))
        if binary is None or not binary.is_file():
            return Measurement(**base, status="failed",
                               error=f"device {profile.id}: benchmark_binary={profile.benchmark_binary!r} is not a file")
        dev = adb.AdbDevice(profile.serial, adb=profile.adb)
        try:
            report = adb.measure_on_phone(dev, onnx_path_for(cfg, self.cache_dir),
                                          adb.AdbBenchmark(binary_local=binary, tool="onnxruntime"),
                                          threads=profile.threads, cores=list(profile.pin_cores) or None)
        except Exception as e:
            return Measurement(**base, status="failed", error=f"{type(e).__name__}: {e}")
        return Measurement(**base, status="ok", median_ms=report.median_ms or report.mean_ms, p90_ms=report.p90_ms,
                           repeats=report.count, cv=(report.std_ms / report.mean_ms) if report.std_ms else None,
                           env={"tool": report.tool, "mean_ms": report.mean_ms, "min_ms": report.min_ms,
                                "max_ms": report.max_ms,
                                "energy_note": "energy over adb (android-battery) is not wired into phone runs yet"})
