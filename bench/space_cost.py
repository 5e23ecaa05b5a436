"""Figure: the search space reproduces the released EdgeViTs, and its analytic cost is fast and exact.

Prints two tables and writes ``bench/results/space_cost.json``:

1. Presets: parameters and MACs from the closed-form cost, from torch (parameter count, and
   FlopCounterMode with attention unfused), and the reference numbers (released code / paper).
2. Throughput on the same random candidates, measured in one run: analytic cost per candidate
   against the baseline a search would otherwise use (build the PyTorch model and count with torch),
   plus sampling and ONNX export time.

Run: ``python bench/space_cost.py [--n 200] [--seed 0]``
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchlib import RESULTS, setup, write_result

setup()
from search_space import DEFAULT_SPACE, PRESETS, REFERENCE, build_model, cost  # noqa: E402
from search_space.cost import cost as cached_cost  # noqa: E402
from search_space.export import export_onnx  # noqa: E402

OUT = RESULTS / "space_cost.json"


def torch_counts(cfg) -> tuple[int, int]:
    model = build_model(cfg).eval()
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.randn(1, 3, cfg.resolution, cfg.resolution))
    return sum(p.numel() for p in model.parameters()), fc.get_total_flops() // 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="random candidates for the throughput rows")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)

    presets = []
    for name, cfg in PRESETS.items():
        c = cost(cfg)
        tp, tm = torch_counts(cfg)
        ref = REFERENCE[name]
        presets.append({
            "name": name, "id": cfg.arch_id, "params": c.params, "params_torch": tp, "params_reference": ref["params"],
            "gmacs": c.macs / 1e9, "gmacs_torch": tm / 1e9, "gmacs_reference": ref["gmacs"],
            "gmacs_rel_err": (c.macs / 1e9 - ref["gmacs"]) / ref["gmacs"], "paper_params_m": ref["paper_params_m"],
        })
    print(f"{'preset':12} {'params':>11} {'torch':>11} {'reference':>11} {'GMACs':>7} {'torch':>7} {'ref':>6} {'err':>7}")
    for r in presets:
        print(f"{r['name']:12} {r['params']:>11,} {r['params_torch']:>11,} {r['params_reference']:>11,} "
              f"{r['gmacs']:>7.4f} {r['gmacs_torch']:>7.4f} {r['gmacs_reference']:>6.3f} {r['gmacs_rel_err']:>+7.2%}")

    # Throughput, all on the same candidates in this run.
    t0 = time.perf_counter()
    cfgs = DEFAULT_SPACE.sample_random(args.n, seed=args.seed)
    sample_us = (time.perf_counter() - t0) / args.n * 1e6
    cached_cost.cache_clear()
    t0 = time.perf_counter()
    for cfg in cfgs:
        cost(cfg)
    analytic_us = (time.perf_counter() - t0) / args.n * 1e6
    torch_s = []
    mismatches = 0
    for cfg in cfgs[: min(args.n, 50)]:
        t0 = time.perf_counter()
        tp, tm = torch_counts(cfg)
        torch_s.append(time.perf_counter() - t0)
        mismatches += (tp, tm) != (cost(cfg).params, cost(cfg).macs)
    export_s = []
    tmp = Path(OUT.parent / ".tmp_export.onnx")
    for cfg in cfgs[:10]:
        t0 = time.perf_counter()
        export_onnx(cfg, tmp)
        export_s.append(time.perf_counter() - t0)
    tmp.unlink(missing_ok=True)
    torch_us = statistics.mean(torch_s) * 1e6
    rows = [
        ("sample one candidate (random)", sample_us, args.n),
        ("analytic cost (params + MACs)", analytic_us, args.n),
        ("baseline: build model + torch count", torch_us, len(torch_s)),
        ("ONNX export (TorchScript exporter)", statistics.mean(export_s) * 1e6, len(export_s)),
    ]
    print(f"\n{'per candidate':40} {'mean':>12} {'n':>5}")
    for label, us, n in rows:
        print(f"{label:40} {us / 1e3:>9.3f} ms {n:>5}")
    print(f"analytic cost is {torch_us / analytic_us:,.0f}x faster than the torch baseline; "
          f"mismatches against torch: {mismatches}/{len(torch_s)}")
    size = DEFAULT_SPACE.size()
    print(f"default space: {size:,} distinct architectures")

    write_result("space_cost", {
        "presets": presets,
        "throughput_us": {label: us for label, us, _ in rows},
        "torch_mismatches": mismatches,
        "space_size": size,

    }, torch_threads=1)


if __name__ == "__main__":
    main()
