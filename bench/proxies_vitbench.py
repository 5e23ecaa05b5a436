"""Figure: zero-cost proxies against trained accuracy on ViT-Bench-101 (AutoFormer and PiT spaces).

Every network of the benchmark is built as a PyTorch module from its arch dict
(``predictors.vitbench``), scored by every proxy of ``predictors.proxies`` at a reduced input size
(the networks were trained at 224x224; scoring at ``--img-size`` keeps the run to minutes on 2 cores,
and the reduction is part of what this figure measures), then Kendall tau and Spearman rho against
each accuracy column (CIFAR-100 with and without distillation, Flowers, Chaoyang), beside #params,
MACs and the default aggregate score.

Run: ``python bench/proxies_vitbench.py [--img-size 64] [--batch-size 8] [--limit N]``; writes
``bench/results/proxies_vitbench.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr

from device_farm.measure import cpu_model
from predictors import proxies
from predictors.vitbench import build_vitbench, load_vitbench

OUT = Path(__file__).parent / "results" / "proxies_vitbench.json"
SPACES = ("autoformer", "autoformer_2", "pit")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--limit", type=int, default=0, help="networks per space (0: all 100)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    names = list(proxies.ALL_PROXIES)
    results: dict = {}
    for space in SPACES:
        records = load_vitbench(space)
        if args.limit:
            records = records[: args.limit]
        table, seconds = {}, {n: 0.0 for n in names}
        t_space = time.perf_counter()
        for rec in records:
            torch.manual_seed(0)
            model = build_vitbench(space, rec, img_size=args.img_size)
            row = {}
            for n in names:
                t0 = time.perf_counter()
                row.update(proxies.score(model, (3, args.img_size, args.img_size), names=[n],
                                         batch_size=args.batch_size, num_classes=100, seed=0))
                seconds[n] += time.perf_counter() - t0
            table[rec.index] = row
        default = proxies.default_score(table)
        columns = sorted({k for r in records for k in r.acc})
        corr: dict = {}
        for col in columns:
            ids = [r.index for r in records if col in r.acc]
            acc = np.array([next(r.acc[col] for r in records if r.index == i) for i in ids])
            corr[col] = {}
            for n in [*names, "default"]:
                vals = np.array([default[i] if n == "default" else table[i][n] for i in ids], dtype=float)
                ok = np.isfinite(vals)
                corr[col][n] = {"kendall": float(kendalltau(vals[ok], acc[ok])[0]),
                                "spearman": float(spearmanr(vals[ok], acc[ok])[0]), "n": int(ok.sum())}
        results[space] = {"n": len(records), "columns": columns, "correlations": corr,
                          "scores": {str(i): row for i, row in table.items()},
                          "accuracy": {str(r.index): r.acc for r in records},
                          "seconds_per_network": {n: seconds[n] / len(records) for n in names},
                          "wall_s": time.perf_counter() - t_space}
        print(f"\n== {space}: {len(records)} networks, proxies at {args.img_size}x{args.img_size}, batch "
              f"{args.batch_size}; Kendall tau (Spearman) against trained top-1 ==")
        print(f"{'proxy':10} " + " ".join(f"{c:>22}" for c in columns) + f" {'s/net':>7}")
        for n in [*names, "default"]:
            cells = " ".join(f"{corr[c][n]['kendall']:>+13.3f} ({corr[c][n]['spearman']:+.3f})" for c in columns)
            cost = results[space]["seconds_per_network"].get(n)
            mark = "  <- default score" if n == "default" else ""
            print(f"{n:10} {cells} {'' if cost is None else f'{cost:>7.3f}'}{mark}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": 1},
                               "img_size": args.img_size, "batch_size": args.batch_size,
                               "default_proxies": list(proxies.DEFAULT_PROXIES), "results": results}, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
