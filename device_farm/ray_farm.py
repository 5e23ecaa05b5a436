"""Devices as Ray resources: measurement tasks run on the node that has the device, one at a time.

Every node that owns a device advertises one unit of the custom resource ``device:<id>``
(``nas farm serve --device ID --address HEAD`` starts such a node). A measurement task asks for that
unit, so Ray schedules it on the right node and never runs two measurements of one device at once:
they would disturb each other. The embedded local Ray (the default) advertises ``device:host``.

The driver stays the only writer of the store: tasks return measurement records and the driver
writes them, so a SQLite store needs no network access from the devices.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from search_space import EdgeViTConfig

from .measure import Farm, MeasureProtocol
from .measurement import Measurement
from .profiles import DeviceProfile, get_profile

__all__ = ["device_resource", "init_ray", "measure_remote", "reachable_on_cluster", "serve_command"]


def device_resource(device_id: str) -> str:
    return f"device:{device_id}"


def init_ray(address: str | None = None, local_devices: Iterable[str] = ("host",), num_cpus: int | None = None) -> None:
    """Join ``address`` (``auto`` or ``host:port``) or start an embedded local Ray owning ``local_devices``."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(resources={device_resource(d): 1 for d in local_devices}, num_cpus=num_cpus or os.cpu_count(),
                 include_dashboard=False, log_to_driver=False, configure_logging=False)


def reachable_on_cluster(device_id: str) -> bool:
    """Whether a node of the connected cluster advertises the device (False without a running Ray)."""
    try:
        import ray

        return ray.is_initialized() and ray.cluster_resources().get(device_resource(device_id), 0) >= 1
    except Exception:
        return False


def _remote_measure(cfg_json: str, profile_id: str, protocol: dict, band: list[float]) -> dict:
    # Runs on the device's node: its own ONNX cache, no store (the driver writes).
    cache = Path(os.environ.get("EDGEVIT_NAS_CACHE", Path(tempfile.gettempdir()) / "edgevit-nas-onnx"))
    farm = Farm(None, cache_dir=cache, protocol=MeasureProtocol(**protocol))
    m = farm.measure(EdgeViTConfig.from_json(cfg_json), get_profile(profile_id), band=band)
    return m.to_dict()


def measure_remote(farm: Farm, cfgs: list[EdgeViTConfig], profile: DeviceProfile) -> Iterator[Measurement]:
    """Measure ``cfgs`` on the node owning ``profile``'s device; yield each record once stored.

    Tasks are submitted all at once; the ``device:<id>`` resource runs them one by one. Results are
    written by this (driver) process in completion order, so an interrupt loses at most the ones
    still running.
    """
    import dataclasses

    import ray

    task = ray.remote(num_cpus=1, max_retries=0)(_remote_measure)
    band = farm.candle_band(profile)
    protocol = dataclasses.asdict(farm.protocol)
    pending = [task.options(resources={device_resource(profile.id): 1}).remote(c.to_json(indent=None), profile.id,
                                                                             protocol, band) for c in cfgs]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        m = Measurement.from_dict(ray.get(done[0]))
        if farm.store is not None:
            farm.record(m)
        yield m


def serve_command(device_id: str, address: str, num_cpus: int | None = None) -> list[str]:
    """The ``ray start`` command that joins ``address`` as a worker node owning ``device_id``."""
    ray_exe = shutil.which("ray") or "ray"
    cmd = [ray_exe, "start", "--address", address, "--resources", json.dumps({device_resource(device_id): 1}), "--block"]
    if num_cpus is not None:
        cmd += ["--num-cpus", str(num_cpus)]
    return cmd


def serve(device_id: str, address: str, num_cpus: int | None = None) -> int:
    """Join the cluster at ``address`` as the node owning ``device_id``, until interrupted."""
    get_profile(device_id)  # unknown ids fail here, listing the known ones
    return subprocess.call(serve_command(device_id, address, num_cpus))
