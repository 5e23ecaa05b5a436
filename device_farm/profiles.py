"""Device profiles: what a device is and how to measure on it, as small TOML files.

Built-in profiles ship in ``device_farm/devices/``; a user adds or overrides one by dropping a TOML
file into the user folder (``$EDGEVIT_NAS_DEVICES``, default ``~/.config/edgevit-nas/devices``).
A profile with the id of a built-in replaces it, e.g. to set the adb ``serial`` of a real S21.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["BACKENDS", "DELEGATES", "CALIBRATION_FACTS", "DeviceProfile", "ProfileError", "user_device_dir", "load_profiles", "get_profile"]

#: ``onnxruntime``: this machine's CPU; ``onnxruntime-cuda``: a local NVIDIA GPU through onnxruntime's
#: CUDA provider; ``litert``: this machine's CPU through ai-edge-litert's TFLite interpreter (.tflite
#: files, the optional extra ``[tflite]``); ``adb``: an Android phone over adb (benchmark binary
#: pushed and run on the phone).
BACKENDS: tuple[str, ...] = ("onnxruntime", "onnxruntime-cuda", "litert", "adb")
#: TFLite delegates a profile may ask for: ``xnnpack`` (TFLite's default CPU delegate), ``none``
#: (built-in kernels only: ``--use_xnnpack=false`` / ``BUILTIN_WITHOUT_DEFAULT_DELEGATES``), or empty
#: for runtimes without delegates (onnxruntime).
DELEGATES: tuple[str, ...] = ("", "xnnpack", "none")
#: What a phone's calibration table says about how it was measured (``[calibration]`` keys shown by
#: ``nas search`` and ``nas farm devices``), each with its evidence in ``evidence``.
CALIBRATION_FACTS: tuple[str, ...] = ("runtime", "threads", "cores", "delegate", "precision")
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
GRAPH_LEVELS: tuple[str, ...] = ("disable", "basic", "extended", "all")


class ProfileError(ValueError):
    """A bad or unknown profile; one line naming the field and what is allowed."""


@dataclass(frozen=True)
class DeviceProfile:
    id: str
    name: str
    backend: str
    runtime: str
    threads: int = 1
    precision: str = "fp32"
    soc: str = ""
    cores: int = 0
    graph_optimization: str = "all"
    energy_sensor: str | None = None
    serial: str = ""
    #: adb backend: the benchmark tool built for the phone (``benchmark_model`` for ``runtime = "tflite"``,
    #: ``onnxruntime_perf_test`` for ``runtime = "onnxruntime"``) and the cores to pin it to (empty: big cores).
    benchmark_binary: str = ""
    adb: str = "adb"  # the adb executable (a path where it is not on PATH)
    pin_cores: tuple[int, ...] = ()
    #: TFLite delegate (``runtime = "tflite"``): one of :data:`DELEGATES`.
    delegate: str = ""
    #: Where the device's latency knowledge comes from until it is measured: ``source`` (``live``,
    #: ``nn-meter``), and for shipped data ``data`` (path inside ``device_farm/data``), ``measured_on``
    #: and ``provenance``.
    calibration: dict[str, str] = field(default_factory=dict)
    path: str = ""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ProfileError(f"device {self.id}: backend={self.backend!r}: allowed: {', '.join(BACKENDS)}")
        if self.precision not in PRECISIONS:
            raise ProfileError(f"device {self.id}: precision={self.precision!r}: allowed: {', '.join(PRECISIONS)}")
        if self.graph_optimization not in GRAPH_LEVELS:
            raise ProfileError(
                f"device {self.id}: graph_optimization={self.graph_optimization!r}: allowed: {', '.join(GRAPH_LEVELS)}"
            )
        if not isinstance(self.threads, int) or self.threads < 1:
            raise ProfileError(f"device {self.id}: threads={self.threads!r}: must be an integer >= 1")
        if self.delegate not in DELEGATES:
            raise ProfileError(f"device {self.id}: delegate={self.delegate!r}: allowed: xnnpack, none (or empty)")
        if self.backend == "litert" and self.runtime != "tflite":
            raise ProfileError(f"device {self.id}: runtime={self.runtime!r}: the litert backend runs tflite")

    @property
    def is_local(self) -> bool:
        """Measured by a process on this machine (as opposed to a phone behind adb)."""
        return self.backend in ("onnxruntime", "onnxruntime-cuda", "litert")

    @property
    def model_suffix(self) -> str:
        """The file the device runs: ``.tflite`` for TFLite runtimes, ``.onnx`` otherwise."""
        return ".tflite" if self.runtime == "tflite" else ".onnx"

    def calibration_summary(self) -> str:
        """One line: what this device's latency figures mean (runtime, threads, cores, delegate of the
        data its model rests on), or of live measurements, the profile's own settings."""
        cal = self.calibration
        if any(cal.get(k) for k in CALIBRATION_FACTS):
            facts = [f"{k} {cal[k]}" for k in CALIBRATION_FACTS if cal.get(k)]
            where = cal.get("measured_on", "")
            return f"{where}: " * bool(where) + "; ".join(facts)
        return self.live_summary()

    def live_summary(self) -> str:
        """One line: what a measurement taken through this profile means (its runtime, threads, precision
        and delegate), whatever data the shipped calibration came from: the meaning of figures measured
        or calibrated on the user's own device."""
        delegate = f", delegate {self.delegate}" if self.delegate else ""
        return f"{self.runtime} on {self.name}, {self.threads} thread(s), {self.precision}{delegate}"

    def calibration_file(self) -> Path | None:
        data = self.calibration.get("data")
        if not data:
            return None
        return Path(str(resources.files("device_farm") / "data" / data))

    @classmethod
    def from_toml(cls, path: Path) -> "DeviceProfile":
        try:
            raw: dict[str, Any] = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ProfileError(f"{path}: not valid TOML ({e})") from None
        known = {f.name for f in fields(cls)} - {"path"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ProfileError(f"{path}: unknown field {unknown[0]!r}; allowed: {', '.join(sorted(known))}")
        for key in ("id", "name", "backend", "runtime"):
            if key not in raw:
                raise ProfileError(f"{path}: field {key!r} is required")
        if raw.get("energy_sensor") in ("", "none"):
            raw["energy_sensor"] = None
        if "pin_cores" in raw:
            raw["pin_cores"] = tuple(raw["pin_cores"])
        try:
            return cls(**raw, path=str(path))
        except TypeError as e:
            raise ProfileError(f"{path}: {e}") from None


def user_device_dir() -> Path:
    return Path(os.environ.get("EDGEVIT_NAS_DEVICES", Path.home() / ".config" / "edgevit-nas" / "devices"))


def load_profiles(user_dir: Path | None = None) -> dict[str, DeviceProfile]:
    """Built-in profiles, then the user's (a user profile with a built-in id replaces it)."""
    out: dict[str, DeviceProfile] = {}
    builtin = resources.files("device_farm") / "devices"
    for entry in sorted(builtin.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            p = DeviceProfile.from_toml(Path(str(entry)))
            out[p.id] = p
    folder = user_device_dir() if user_dir is None else user_dir
    if folder.is_dir():
        for path in sorted(folder.glob("*.toml")):
            p = DeviceProfile.from_toml(path)
            out[p.id] = p
    return out


def get_profile(device: str, user_dir: Path | None = None) -> DeviceProfile:
    profiles = load_profiles(user_dir)
    if device not in profiles:
        raise ProfileError(f"device={device!r}: unknown; known devices: {', '.join(sorted(profiles))}")
    return profiles[device]
