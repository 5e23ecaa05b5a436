"""Figure: the measurement noise floor on the host, and measurement throughput.

The same N candidates are measured in two separate passes (each measurement in its own worker
process, the default protocol). Reported: the median and 90th percentile of the relative difference
between the passes, for raw medians and for candle ratios (latency / candle latency, which cancels
slow drift of the machine); clean measurements per minute; how many came out disturbed or failed.
A predictor cannot be checked to better than this floor.

Run: ``python bench/farm_noise.py [--n 20] [--seed 0]``; writes ``bench/results/farm_noise.json``.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchlib import setup, write_result

setup()
from device_farm import MeasurementStore, get_profile  # noqa: E402
from device_farm.measure import Farm  # noqa: E402
from device_farm.sample import plan  # noqa: E402



def one_pass(cfgs, work: Path, tag: str) -> tuple[dict, float]:
    farm = Farm(MeasurementStore(work / f"{tag}.sqlite"), cache_dir=work / "onnx")
    profile = get_profile("host")
    t0 = time.perf_counter()
    out = {}
    for i, cfg in enumerate(cfgs):
        m = farm.measure(cfg, profile)
        out[cfg.arch_id] = m
        print(f"  {tag} {i + 1:>2}/{len(cfgs)} {cfg.arch_id} {m.status:9} "
              f"{(m.median_ms or float('nan')):8.3f} ms  ci {m.ci95_rel or float('nan'):.3%}  n={m.repeats}", flush=True)
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfgs = plan(args.n, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # Export first so neither pass pays for it.
        from device_farm.measure import CANDLE, onnx_path_for

        t0 = time.perf_counter()
        for cfg in [CANDLE, *cfgs]:
            onnx_path_for(cfg, work / "onnx")
        export_s = time.perf_counter() - t0
        a, ta = one_pass(cfgs, work, "pass1")
        b, tb = one_pass(cfgs, work, "pass2")
    ids = [c.arch_id for c in cfgs if a[c.arch_id].status == "ok" and b[c.arch_id].status == "ok"]
    raw = np.array([abs(a[i].median_ms / b[i].median_ms - 1) for i in ids])
    ratio = np.array([abs(a[i].candle_ratio / b[i].candle_ratio - 1) for i in ids])
    lat = np.array([a[i].median_ms for i in ids])
    statuses = {s: sum(m.status == s for m in [*a.values(), *b.values()]) for s in ("ok", "disturbed", "failed")}
    clean_per_min = statuses["ok"] / ((ta + tb) / 60)
    rows = [("raw median", raw), ("candle ratio", ratio)]
    print(f"\n{len(ids)} candidates clean in both passes; latency {lat.min():.1f}-{lat.max():.1f} ms (median {np.median(lat):.1f})")
    print(f"{'relative difference':22} {'median':>8} {'p90':>8} {'max':>8}")
    for label, x in rows:
        print(f"{label:22} {np.median(x):>8.2%} {np.percentile(x, 90):>8.2%} {x.max():>8.2%}")
    print(f"statuses over both passes: {statuses}")
    print(f"throughput: {clean_per_min:.1f} clean measurements per minute (export excluded: "
          f"{export_s / (len(cfgs) + 1):.2f} s per model)")
    write_result("farm_noise", {
        "n": args.n, "seed": args.seed, "clean_in_both": len(ids),
        "raw_rel_diff": {"median": float(np.median(raw)), "p90": float(np.percentile(raw, 90)), "max": float(raw.max())},
        "candle_ratio_rel_diff": {"median": float(np.median(ratio)), "p90": float(np.percentile(ratio, 90)),
                                  "max": float(ratio.max())},
        "statuses": statuses, "clean_per_minute": clean_per_min, "export_s_per_model": export_s / (len(cfgs) + 1),
        "latency_ms": {"min": float(lat.min()), "median": float(np.median(lat)), "max": float(lat.max())},
        "per_candidate": {i: {"pass1": a[i].median_ms, "pass2": b[i].median_ms} for i in ids},
    }, threads=1)


if __name__ == "__main__":
    main()
