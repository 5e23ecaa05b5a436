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
token file (``~/.ray/auth_token``) is kept private (0600 in a 0700 folder). A head started by ``ray
start --head`` turns token authentication on by itself when that file exists, but a process joining it
does not (Ray 2.60): :func:`use_token_auth` turns it on for the joining side the same way, so that
``nas search --ray-address`` and ``nas farm serve`` reach such a head.

A node that leaves the cluster (killed, network gone) fails its running measurement and leaves the
others unschedulable: :func:`measure_remote` records them as ``failed`` with the reason instead of
waiting for a node that will not come back.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

from search_space import EdgeViTConfig
from search_space.networks import Network, as_network

from .measure import Farm, MeasureProtocol
from .measurement import Measurement
from .profiles import DeviceProfile, get_profile

__all__ = ["LOOPBACK", "binding_note", "device_resource", "init_ray", "measure_remote", "protect_ray_token",
           "reachable_on_cluster", "serve", "serve_command", "use_token_auth"]


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


_AUTH_ENV = "RAY_AUTH_MODE"


def use_token_auth(home: str | os.PathLike | None = None) -> bool:
    """Turn Ray's token authentication on for a process about to join a cluster, exactly where Ray's own
    head would have turned it on: the mode is not set and a token exists (``RAY_AUTH_TOKEN``,
    ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``). An explicit ``RAY_AUTH_MODE`` is left alone."""
    if os.environ.get(_AUTH_ENV) is not None:
        return os.environ[_AUTH_ENV].lower() == "token"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path(home or Path.home()) / ".ray" / "auth_token"
    if not (os.environ.get("RAY_AUTH_TOKEN") or Path(path).is_file()):
        return False
    os.environ[_AUTH_ENV] = "token"
    if "ray._raylet" in sys.modules:  # Ray read its configuration at import: make it read the mode again
        try:
            sys.modules["ray._raylet"].Config.initialize("")
        except Exception:  # another Ray version: the environment alone then has to do
            pass
    return True


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
    if address:
        use_token_auth()
    import ray

    try:
        if address:
            check_cluster(address)
            ray.init(address=address, log_to_driver=False)
        else:
            # address="local": a new embedded Ray even when another one runs on this machine (ray.init
            # without an address would join the cluster of the last `ray start`, e.g. another user's)
            ray.init(address="local", resources={device_resource(d): 1 for d in local_devices},
                     num_cpus=num_cpus or os.cpu_count(),
                     include_dashboard=False, log_to_driver=False, configure_logging=False,
                     _node_ip_address=LOOPBACK)
            ip = ray.util.get_node_ip_address()
            if ip != LOOPBACK:
                ray.shutdown()
                raise RuntimeError(f"embedded Ray took the node address {ip}, not {LOOPBACK}: it would listen on "
                                   "the network; refusing (this Ray version changed how it binds)")
    finally:
        protect_ray_token()


#: How long a cluster address may stay silent before ``--ray-address`` is refused (Ray itself retries for minutes).
CLUSTER_TIMEOUT_S = 30.0


def check_cluster(address: str, timeout_s: float = CLUSTER_TIMEOUT_S) -> None:
    """Refuse, in one line and within ``timeout_s``, a cluster address nobody answers at.

    ``auto`` is the cluster ``ray start --head`` started on this machine (its address file); a
    ``host:port`` must accept a TCP connection to its GCS port.
    """
    import socket

    from search_space.config import ConfigError

    target = address
    if address == "auto":
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        target = current.read_text().strip() if current.is_file() else ""
        if not target:
            raise ConfigError("ray_address", address, "no Ray cluster was started on this machine ('ray start --head' "
                                                      "starts one; or give host:port)")
    host, _, port = target.rpartition(":")
    if target.startswith("ray://") or not port.isdigit():
        return  # a Ray client or a form Ray resolves itself: let ray.init judge it
    deadline = time.monotonic() + timeout_s
    err: OSError | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=min(5.0, timeout_s)):
                return
        except OSError as e:
            err = e
            time.sleep(1.0)
    raise ConfigError("ray_address", address, f"nothing answers at {target} after {timeout_s:.0f} s ({err}); start the "
                                              "head with 'ray start --head' or drop --ray-address to use a local Ray")


def reachable_on_cluster(device_id: str) -> bool:
    """Whether a node of the connected cluster advertises the device (False without a running Ray)."""
    try:
        import ray

        return ray.is_initialized() and ray.cluster_resources().get(device_resource(device_id), 0) >= 1
    except Exception:
        return False


def _remote_measure(cfg: str | Network, profile_id: str, protocol: dict, band: list[float],
                    memory_ref: float | None = None) -> dict:
    # Runs on the device's node: its own export cache, no store (the driver writes). A configuration
    # travels as its JSON (validated again here); another network as the object Ray pickles.
    cache = Path(os.environ.get("EDGEVIT_NAS_CACHE", Path(tempfile.gettempdir()) / "edgevit-nas-onnx"))
    farm = Farm(None, cache_dir=cache, protocol=MeasureProtocol(**protocol))
    net = EdgeViTConfig.from_json(cfg) if isinstance(cfg, str) else cfg
    m = farm.measure(net, get_profile(profile_id), band=band, memory_ref=memory_ref)
    return m.to_dict()


#: How often a measurement waiting on a node checks that the node is still in the cluster.
NODE_CHECK_S = 2.0


def measure_remote(farm: Farm, cfgs: list[EdgeViTConfig | Network], profile: DeviceProfile) -> Iterator[Measurement]:
    """Measure ``cfgs`` on the node owning ``profile``'s device; yield each record once stored.

    Tasks are submitted all at once; the ``device:<id>`` resource runs them one by one. Results are
    written by this (driver) process in completion order, so an interrupt loses at most the ones
    still running. A task whose node dies comes back as a ``failed`` record naming the Ray error; once
    no node offers the device any more, the tasks still waiting are cancelled and recorded ``failed``
    too, rather than waited for.
    """
    import dataclasses

    import ray

    task = ray.remote(num_cpus=1, max_retries=0)(_remote_measure)
    band, memory_ref = farm.candle_band(profile), farm.memory_reference(profile)
    protocol = dataclasses.asdict(farm.protocol)
    refs = {task.options(resources={device_resource(profile.id): 1}).remote(
        c.to_json(indent=None) if isinstance(c, EdgeViTConfig) else c, profile.id, protocol, band, memory_ref): c for c in cfgs}
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1, timeout=NODE_CHECK_S)
        if done:
            try:
                m = Measurement.from_dict(ray.get(done[0]))
            except ray.exceptions.RayError as e:  # the node or its worker died under the measurement
                first = (str(e).strip().splitlines() or [""])[0][:200]
                m = _lost(refs[done[0]], profile, f"{type(e).__name__} on the node owning {profile.id}: {first}")
            lost = [m]
        elif not reachable_on_cluster(profile.id):
            for ref in pending:
                ray.cancel(ref, force=True)
            lost = [_lost(refs[ref], profile, f"no node of the cluster offers {device_resource(profile.id)} any more "
                                              "(the node left); not measured") for ref in pending]
            pending = []
        else:
            continue
        for m in lost:
            if farm.store is not None:
                farm.record(m)
            yield m


def _lost(cfg: EdgeViTConfig | Network, profile: DeviceProfile, why: str) -> Measurement:
    """The record of a measurement its node never returned."""
    net = as_network(cfg)
    m = Measurement(arch_id=net.arch_id, device=profile.id, runtime=profile.runtime, runtime_version="unknown",
                    input_shape="x".join(map(str, net.input_shape)), threads=profile.threads,
                    precision=profile.precision, status="failed", error=why, config=net.config_dict(),
                    source="measured:ray")
    if net.config_dict() is None:
        m.env["model"] = net.spec
    return m


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
    use_token_auth()
    env = {k: v for k, v in os.environ.items() if k != _CLUSTER_ENV}  # a worker node needs clusters on
    return subprocess.call(serve_command(device_id, address, num_cpus, node_ip_address), env=env)
