"""A real two-node Ray cluster on this machine (issue #16): ``ray start --head`` plus a node that offers
``device:host`` through ``nas farm serve``; ``nas search --ray-address ... --measure 2`` measures on that
node, and the node is killed with SIGKILL in the middle of a measurement.

What must hold: the search finishes (exit 0, its outputs written), the lost measurements are recorded
as ``failed`` with the reason, and the store keeps every row it had. The cluster runs with Ray's token
authentication (a token in a private HOME, as ``ray get-auth-token --generate`` makes it), which the
joining processes turn on by themselves (``device_farm.ray_farm.use_token_auth``).
Skipped, with the reason, only where Ray cannot start a head here.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from device_farm import MeasurementStore

RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    # Outside Ray's default worker-port range (10002-19999), where the GCS port would collide.
    for port in range(26000, 27000):
        with socket.socket() as s:
            try:
                s.bind(("", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port in 26000-26999 for the Ray head")


def _descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid`` (Ray's workers may leave its process group, not its tree): pid -> command line."""
    parent, cmd = {}, {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                parent[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
                cmd[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, IndexError, ValueError):
                continue
    out, todo = {}, [pid]
    while todo:
        p = todo.pop()
        for child, par in parent.items():
            if par == p and child not in out:
                out[child] = cmd.get(child, "")
                todo.append(child)
    return out


def _kill_tree(p: subprocess.Popen) -> None:
    for pid in list(_descendants(p.pid)) + [p.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait(timeout=30)


def _node_is_measuring(node: subprocess.Popen) -> bool:
    """Whether a farm worker (the onnxruntime timing process) runs below the node's process."""
    return any("device_farm.worker" in c for c in _descendants(node.pid).values())


@pytest.fixture
def cluster(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_MODE",
                                                            "RAY_ADDRESS")}
    env["HOME"] = str(home)
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, capture_output=True, timeout=60, check=True)
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    head = subprocess.Popen([RAY, "start", "--head", "--port", str(port), "--num-cpus", "1", "--include-dashboard=false",
                             "--temp-dir", temp, "--block"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    node = None
    try:
        deadline = time.monotonic() + 60
        while True:  # the head is up when its GCS port answers
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if head.poll() is not None or time.monotonic() > deadline:
                    pytest.skip("Ray could not start a head here: " + head.stderr.read().decode()[-200:].strip())
                time.sleep(0.5)
        address = f"127.0.0.1:{port}"
        node = subprocess.Popen([sys.executable, "-m", "nas", "farm", "serve", "--device", "host", "--address", address,
                                 "--bind-all", "--num-cpus", "1"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        yield address, env, node
    finally:
        if node is not None:
            _kill_tree(node)
        _kill_tree(head)


def test_search_measures_on_a_second_node_and_survives_its_death(cluster, tmp_path, host_root, host_store):
    address, env, node = cluster
    store = tmp_path / "m.sqlite"
    store.write_bytes(host_store.read_bytes())
    before = {(m.arch_id, m.status, m.median_ms) for m in MeasurementStore(store).query(device="host")}
    cmd = [sys.executable, "-m", "nas", "search", "--device", "host", "--proxies", "params", "--budget-ms", "12",
           "--trials", "12", "--no-presets", "--predictors", str(host_root), "--out", str(tmp_path), "--run-id", "r",
           "--ray-address", address, "--measure", "2", "--store", str(store)]
    search = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not _node_is_measuring(node):  # the node has taken the first measurement task
            assert search.poll() is None, "the search ended before measuring on the node:\n" + search.stdout.read()[-1500:]
            assert time.monotonic() < deadline, "no measurement started on the node within 240 s"
            time.sleep(0.3)
        time.sleep(1.0)
        _kill_tree(node)  # SIGKILL to the whole node: raylet, its workers, the timing process
        out, _ = search.communicate(timeout=240)
    finally:
        if search.poll() is None:
            search.kill()
    assert search.returncode == 0, out[-2000:]
    run = tmp_path / "r"
    assert (run / "candidates.csv").is_file() and (run / "report.md").is_file()
    measured = json.loads((run / "measured.json").read_text())
    assert measured and all(m["status"] == "failed" for m in measured), measured
    assert any("node" in (m["error"] or "") for m in measured), [m["error"] for m in measured]
    after = MeasurementStore(store).query(device="host")
    assert before <= {(m.arch_id, m.status, m.median_ms) for m in after}  # nothing stored was lost
    failed = {m.arch_id for m in after if m.status == "failed"}
    assert {m["arch_id"] for m in measured} <= failed | {a for a, s, _ in before if s == "ok"}
