"""Devices as Ray resources: measurement tasks run on the node that has the device, one at a time.

Every node that owns a device advertises one unit of the custom resource ``device:<id>``
(``nas farm serve --device ID --address HEAD`` starts such a node). A measurement task asks for that
unit, so Ray schedules it on the right node and never runs two measurements of one device at once:
they would disturb each other. The embedded local Ray (the default) advertises ``device:host``.

The driver stays the only writer of the store: tasks return measurement records and the driver
writes them, so a SQLite store needs no network access from the devices.

Network exposure. The embedded Ray (no address) is local: every one of its processes listens on
127.0.0.1 only. Ray binds its gRPC servers to loopback exactly when the node's IP is 127.0.0.1, and
it only keeps that IP when "clusters" are off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, despite the
name honoured on Linux too), which :func:`init_ray` sets for the embedded Ray and checks afterwards.
Joining or serving a cluster is the deliberate opposite: Ray has no bind option for those servers,
so they listen on all interfaces; ``nas farm serve`` asks for ``--bind-all`` to say so. Ray's
token file (``~/.ray/auth_token``) is kept private (0600 in a 0700 folder).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from search_space import EdgeViTConfig
from search_space.networks import Network

from .measure import Farm, MeasureProtocol
from .measurement import Measurement
from .profiles import DeviceProfile, get_profile

__all__ = ["LOOPBACK", "binding_note", "device_resource", "init_ray", "measure_remote", "protect_ray_token",
           "reachable_on_cluster", "serve", "serve_command"]


def device_resource(device_id: str) -> str:
    return f"device:{device_id}"


#: Ray reads this at import and keeps the node's IP at 127.0.0.1 only when it is "0" (no clusters).
_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOOPBACK = "127.0.0.1"


def protect_ray_token(home: str | os.PathLike | None = None) -> Path | None:
    """Make Ray's token folder private (0700) and its token file, if any, readable by its owner only
    (0600): Ray writes ``~/.ray/auth_token`` with the default umask (0644), readable by every user of
    the machine. Creating the folder private first also closes the moment before the chmod."""
    folder = Path(home or Path.home()) / ".ray"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        folder.chmod(0o700)
        token = folder / "auth_token"
        if token.exists():
            token.chmod(0o600)
            return token
    except OSError:  # a home we may not change: Ray's own behaviour stays, nothing more to do here
        pass
    return None


def _loopback_only(enabled: bool) -> None:
    """Turn Ray's "no clusters" mode on (embedded, loopback) or back to its default (joining a cluster)."""
    if enabled:
        os.environ[_CLUSTER_ENV] = "0"
    elif os.environ.get(_CLUSTER_ENV) == "0":
        del os.environ[_CLUSTER_ENV]
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None and hasattr(constants, "ENABLE_RAY_CLUSTER"):  # Ray already imported: same switch
        constants.ENABLE_RAY_CLUSTER = (not enabled) and not getattr(constants, "IS_WINDOWS_OR_OSX", False)


def init_ray(address: str | None = None, local_devices: Iterable[str] = ("host",), num_cpus: int | None = None) -> None:
    """Join ``address`` (``auto`` or ``host:port``) or start an embedded local Ray owning ``local_devices``.

    The embedded Ray listens on 127.0.0.1 only (module docstring); if Ray ever ignores that, it is
    shut down and a ``RuntimeError`` says so rather than running exposed.
    """
    running = sys.modules.get("ray")
    if running is not None and running.is_initialized():
        return
    _loopback_only(not address)  # before Ray is imported where possible: it reads the switch at import
    protect_ray_token()
    import ray

    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(resources={device_resource(d): 1 for d in local_devices}, num_cpus=num_cpus or os.cpu_count(),
                     include_dashboard=False, log_to_driver=False, configure_logging=False,
                     _node_ip_address=LOOPBACK)
            ip = ray.util.get_node_ip_address()
            if ip != LOOPBACK:
                ray.shutdown()
                raise RuntimeError(f"embedded Ray took the node address {ip}, not {LOOPBACK}: it would listen on "
                                   "the network; refusing (this Ray version changed how it binds)")
    finally:
        protect_ray_token()


def reachable_on_cluster(device_id: str) -> bool:
    """Whether a node of the connected cluster advertises the device (False without a running Ray)."""
    try:
        import ray

        return ray.is_initialized() and ray.cluster_resources().get(device_resource(device_id), 0) >= 1
    except Exception:
        return False


def _remote_measure(cfg: str | Network, profile_id: str, protocol: dict, band: list[float]) -> dict:
    # Runs on the device's node: its own export cache, no store (the driver writes). A configuration
    # travels as its JSON (validated again here); another network as the object Ray pickles.
    cache = Path(os.environ.get("EDGEVIT_NAS_CACHE", Path(tempfile.gettempdir()) / "edgevit-nas-onnx"))
    farm = Farm(None, cache_dir=cache, protocol=MeasureProtocol(**protocol))
    net = EdgeViTConfig.from_json(cfg) if isinstance(cfg, str) else cfg
    m = farm.measure(net, get_profile(profile_id), band=band)
    return m.to_dict()


def measure_remote(farm: Farm, cfgs: list[EdgeViTConfig | Network], profile: DeviceProfile) -> Iterator[Measurement]:
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
    pending = [task.options(resources={device_resource(profile.id): 1}).remote(
        c.to_json(indent=None) if isinstance(c, EdgeViTConfig) else c, profile.id, protocol, band) for c in cfgs]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        m = Measurement.from_dict(ray.get(done[0]))
        if farm.store is not None:
            farm.record(m)
        yield m


def serve_command(device_id: str, address: str, num_cpus: int | None = None,
                  node_ip_address: str | None = None) -> list[str]:
    """The ``ray start`` command that joins ``address`` as a worker node owning ``device_id``;
    ``node_ip_address`` is the address the head reaches this machine at (Ray guesses it otherwise)."""
    ray_exe = shutil.which("ray") or "ray"
    cmd = [ray_exe, "start", "--address", address, "--resources", json.dumps({device_resource(device_id): 1}), "--block"]
    if num_cpus is not None:
        cmd += ["--num-cpus", str(num_cpus)]
    if node_ip_address:
        cmd += ["--node-ip-address", node_ip_address]
    return cmd


def binding_note(address: str, node_ip_address: str | None = None) -> str:
    """One line for people: what joining a cluster opens on this machine."""
    node = node_ip_address or "the address Ray picks (--node-ip-address to choose)"
    return (f"joining the Ray cluster at {address} as {node}: Ray's processes on this machine listen on all "
            "interfaces (Ray has no bind option for them); allow only the cluster's machines to reach them "
            "(a firewall, a private network) and keep token authentication on (RAY_AUTH_MODE=token)")


def serve(device_id: str, address: str, num_cpus: int | None = None, node_ip_address: str | None = None) -> int:
    """Join the cluster at ``address`` as the node owning ``device_id``, until interrupted."""
    get_profile(device_id)  # unknown ids fail here, listing the known ones
    protect_ray_token()
    env = {k: v for k, v in os.environ.items() if k != _CLUSTER_ENV}  # a worker node needs clusters on
    return subprocess.call(serve_command(device_id, address, num_cpus, node_ip_address), env=env)
