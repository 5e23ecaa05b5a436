"""Figure: a measurement taken in the driver agrees with one taken inside a Ray worker.

The same candidates are measured alternately in the driver process and as Ray tasks on the embedded
local Ray (resource ``device:host``), in the same run, so drift affects both sides alike. Reported:
the relative difference per candidate and its median, beside the driver-vs-driver difference of a
repeat (the noise floor measured in the same run).

Run: ``python bench/farm_ray_agreement.py [--n 6]``; writes ``bench/results/farm_ray_agreement.json``.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from benchlib import setup, write_result

setup()
from device_farm import get_profile  # noqa: E402
from device_farm.measure import Farm  # noqa: E402
from device_farm.ray_farm import init_ray, measure_remote  # noqa: E402
from device_farm.sample import plan  # noqa: E402
from search_space import PRESETS  # noqa: E402



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    cfgs = [PRESETS["edgevit_xxs"], *plan(args.n - 1, args.seed)]
    profile = get_profile("host")
    init_ray(None, ("host",), num_cpus=2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EDGEVIT_NAS_CACHE"] = str(Path(tmp) / "onnx")  # Ray tasks reuse the driver's exports
        farm = Farm(None, cache_dir=Path(tmp) / "onnx")
        for cfg in cfgs:
            d1 = farm.measure(cfg, profile)
            (r,) = list(measure_remote(farm, [cfg], profile))
            d2 = farm.measure(cfg, profile)
            rows.append((cfg.arch_id, d1.median_ms, r.median_ms, d2.median_ms, r.status))
            print(f"{cfg.arch_id} driver {d1.median_ms:8.3f}  ray {r.median_ms:8.3f}  driver again {d2.median_ms:8.3f} ms",
                  flush=True)
    ray_diff = np.array([abs(r / ((a + b) / 2) - 1) for _, a, r, b, _ in rows])
    rep_diff = np.array([abs(a / b - 1) for _, a, _, b, _ in rows])
    print(f"\n{'relative difference':28} {'median':>8} {'max':>8}")
    print(f"{'ray task vs driver (mean)':28} {np.median(ray_diff):>8.2%} {ray_diff.max():>8.2%}")
    print(f"{'driver vs driver (repeat)':28} {np.median(rep_diff):>8.2%} {rep_diff.max():>8.2%}")
    write_result("farm_ray_agreement", {
        "rows": [{"id": i, "driver_1": a, "ray": r, "driver_2": b, "ray_status": s} for i, a, r, b, s in rows],
        "ray_vs_driver": {"median": float(np.median(ray_diff)), "max": float(ray_diff.max())},
        "driver_repeat": {"median": float(np.median(rep_diff)), "max": float(rep_diff.max())},
    })


if __name__ == "__main__":
    main()
