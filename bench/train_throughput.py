"""Figure: training throughput (images per second) of EdgeViT-XXS on this machine, per resolution.

Each row times the real training step of ``nas train`` (:func:`nas.train.train_step`: Mixup/CutMix,
forward, loss, backward, AdamW, weight EMA, per-update schedule) with the released recipe, on
synthetic batches, so it measures the step and not the JPEG decoding or augmentation of a data
loader (on a CPU the step dominates; on a GPU the loader usually does, see the README). Two warm-up
steps, then ``--steps`` timed ones; the median step time gives images per second.

Run: ``python bench/train_throughput.py [--steps 5] [--batch-size 32] [--threads N]``; writes
``bench/results/train_throughput.json``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from benchlib import setup, write_result

setup()
from device_farm.measure import cpu_model  # noqa: E402
from nas.train import DistEnv, TrainConfig, build_state, train_step  # noqa: E402
from search_space import PRESETS, cost  # noqa: E402

RESOLUTIONS = (224, 160, 128, 96)


def time_steps(resolution: int, batch: int, steps: int, seed: int = 0) -> dict:
    cfg = PRESETS["edgevit_xxs"].replace(resolution=resolution)
    tc = TrainConfig(batch_size=batch, epochs=10, seed=seed)
    state = build_state(cfg, tc, updates_per_epoch=100, env=DistEnv())
    state.ddp.train()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, resolution, resolution, generator=g)
    y = torch.randint(0, cfg.num_classes, (batch,), generator=g)
    times = []
    for i in range(2 + steps):
        t0 = time.perf_counter()
        loss = train_step(state, x, y)
        loss.item()
        if state.device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"resolution": resolution, "batch_size": batch, "steps": steps, "step_s_median": med,
            "step_s_min": min(times), "step_s_max": max(times), "images_per_s": batch / med,
            "gmacs_per_image": cost(cfg).macs / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    ap.add_argument("--resolutions", type=int, nargs="+", default=list(RESOLUTIONS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = DistEnv().device
    rows = [time_steps(r, args.batch_size, args.steps) for r in args.resolutions]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{cpu_model()}, {args.threads} threads"
    print(f"\nEdgeViT-XXS training step (released recipe: Mixup/CutMix, AdamW, EMA), batch {args.batch_size}, "
          f"on {where}; median of {args.steps} steps after 2 warm-up")
    print(f"{'resolution':>10} {'GMACs/img':>10} {'step s':>8} {'min':>7} {'max':>7} {'img/s':>8}")
    for r in rows:
        print(f"{r['resolution']:>10} {r['gmacs_per_image']:>10.3f} {r['step_s_median']:>8.3f} {r['step_s_min']:>7.3f} "
              f"{r['step_s_max']:>7.3f} {r['images_per_s']:>8.1f}")
    xxs = next((r for r in rows if r["resolution"] == 224), None)
    if xxs:
        days = 1_281_167 * 300 / xxs["images_per_s"] / 86400
        print(f"at this rate, 300 ImageNet-1k epochs of XXS at 224 would take {days:,.0f} days here")
    write_result("train_throughput", {"model": "edgevit_xxs", "recipe": "released (TrainConfig defaults)",
                                      "rows": rows}, torch_threads=args.threads, device=str(device))


if __name__ == "__main__":
    main()
