import random
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

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


HOST_DATA = Path(__file__).parent / "data" / "host_measurements.csv"


@pytest.fixture(scope="session")
def host_store(tmp_path_factory) -> Path:
    """The shipped real host measurements imported into a store, shared by the tests that read them."""
    from device_farm import MeasurementStore

    path = tmp_path_factory.mktemp("store") / "m.sqlite"
    MeasurementStore(path).import_csv(HOST_DATA)
    return path


@pytest.fixture(scope="session")
def host_root(tmp_path_factory, host_store) -> Path:
    """A predictor folder holding a host latency model trained on the 287 real host measurements."""
    from device_farm import MeasurementStore
    from predictors.latency import default_path, train

    root = tmp_path_factory.mktemp("predictors")
    train(MeasurementStore(host_store), "host", method="kernel").save(default_path("host", "latency", root))
    return root


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory) -> Path:
    """One ONNX export cache for the tests that measure: exporting a network takes about a second, and
    several tests measure the same presets and candles (``Farm(store, onnx_cache)``)."""
    return tmp_path_factory.mktemp("onnx")


HOST_V2 = Path(__file__).parent / "data" / "host_v2.csv"
HOST_V2_OPS = Path(__file__).parent / "data" / "host_v2_op_profiles.csv.gz"


@pytest.fixture(scope="session")
def host_ops(tmp_path_factory):
    """Real host measurements with onnxruntime's per-operator profiles (the second host data set):
    ``(cfgs, y, profiles)`` of the sampled candidates, for the estimators that learn from profiles."""
    from device_farm import MeasurementStore
    from device_farm.store import import_op_profiles
    from predictors.latency import dataset
    from predictors.latency.training import profiles_of

    store = MeasurementStore(tmp_path_factory.mktemp("ops") / "m.sqlite")
    store.import_csv(HOST_V2)
    import_op_profiles(store, HOST_V2_OPS)
    cfgs, y, rows = dataset(store, "host")
    return cfgs, y, profiles_of(store, rows)


SHAPES = ("circle", "cross", "square", "triangle")
N_TRAIN, N_VAL = 80, 20  # per class: 320 training and 80 validation images


def _shape(kind: str, rng: random.Random, size: int = 32) -> Image.Image:
    """A bright shape of random colour, size and place on a dark background of random colour."""
    img = Image.new("RGB", (size, size), tuple(rng.randint(0, 90) for _ in range(3)))
    fg = tuple(rng.randint(140, 255) for _ in range(3))
    d = ImageDraw.Draw(img)
    r = rng.randint(size // 4, size // 2 - 2)
    cx, cy = rng.randint(r, size - r), rng.randint(r, size - r)
    if kind == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif kind == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif kind == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fg)
    else:
        w = max(2, r // 3)
        d.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fg)
        d.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fg)
    return img


@pytest.fixture(scope="session")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "shapes"
    rng = random.Random(0)
    for split, n in (("train", N_TRAIN), ("val", N_VAL)):
        for kind in SHAPES:
            (root / split / kind).mkdir(parents=True)
            for i in range(n):
                _shape(kind, rng).save(root / split / kind / f"{i:03d}.png")
    return root
