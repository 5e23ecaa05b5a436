"""Whether a device can be measured now, and how or why not.

Above both ways of measuring (:mod:`device_farm.measure` in this process, :mod:`device_farm.ray_farm`
on a cluster node): it asks the cluster first, then this machine and adb, so neither of those
modules needs the other's import to answer it.
"""
from __future__ import annotations

from .profiles import DeviceProfile
from .ray_farm import device_resource, reachable_on_cluster

__all__ = ["reachable"]


def reachable(profile: DeviceProfile) -> tuple[bool, str]:
    """Whether ``profile``'s device can be measured now, and how or why not (one phrase).

    A Ray node advertising ``device:<id>`` counts first (only when this process is connected to
    Ray); then this machine's CPU (onnxruntime, or LiteRT where ai-edge-litert is installed), a
    local CUDA provider, or an attached adb phone.
    """
    if reachable_on_cluster(profile.id):
        return True, f"a Ray node offers {device_resource(profile.id)}"
    if profile.backend == "onnxruntime":
        return True, "this machine"
    if profile.backend == "litert":
        import importlib.util

        if importlib.util.find_spec("ai_edge_litert") is None:
            return False, 'ai-edge-litert not installed (the optional extra [tflite]: pip install -c constraints.txt -e ".[tflite]")'
        return True, "this machine (LiteRT)"
    if profile.backend == "onnxruntime-cuda":
        import onnxruntime as ort

        ok = "CUDAExecutionProvider" in ort.get_available_providers()
        return ok, "local GPU" if ok else "no CUDA provider in onnxruntime"
    if not profile.serial:
        return False, (f"no adb serial in its profile and no Ray node offers device:{profile.id} "
                       f"(set serial in a user profile, or 'nas farm serve --device {profile.id}' on its host)")
    from .adb import AdbDevice

    if AdbDevice(profile.serial, adb=profile.adb).reachable():
        return True, f"adb {profile.serial}"
    return False, f"adb {profile.serial} is not attached"

