import pytest
import torch

from search_space import EdgeViT


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    # Two cores are shared with the rest of the machine; one torch thread keeps tests predictable.
    torch.set_num_threads(1)


def counted_macs(model: EdgeViT, resolution: int) -> int:
    """MACs as torch's FlopCounterMode counts them (FLOPs / 2), attention unfused so its matmuls count."""
    from torch.utils.flop_counter import FlopCounterMode

    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.randn(1, 3, resolution, resolution))
    return fc.get_total_flops() // 2


@pytest.fixture(scope="session")
def ray_local():
    """A real embedded Ray that owns ``device:host``, shared by the tests that need one."""
    import ray

    from device_farm.ray_farm import init_ray

    init_ray(None, local_devices=("host",), num_cpus=2)
    yield ray
    ray.shutdown()
