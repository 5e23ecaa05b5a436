"""Figure: every accuracy score against real ImageNet-1k top-1 of light networks (issue #15).

``public_benchmarks.imagenet_light.evaluate`` (protocol and selection rule in its docstring): one
network per architecture of the shipped table (light networks timm builds with a published
ImageNet-1k-only top-1, plus EdgeViT-XXS/XS/S), random weights, every proxy at 128x128, batch 8,
seed 0; Kendall / Spearman with 95% family-bootstrap intervals, within and across families, with and
without distilled weights. Writes ``bench/results/proxies_imagenet.json`` (raw scores included).

Run: ``python bench/proxies_imagenet.py`` (scores every network: about 10-20 minutes on one thread)
or ``python bench/proxies_imagenet.py --scores-from bench/results/proxies_imagenet.json`` (seconds;
``--rescore-failed`` scores the networks the file lists as failed and keeps the others' scores).
"""
from __future__ import annotations

import argparse
import time

from benchlib import setup, write_result

setup()
from public_benchmarks import imagenet_light as L  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scores-from")
    ap.add_argument("--bootstrap", type=int, default=L.N_BOOT)
    ap.add_argument("--rescore-failed", action="store_true", help="with --scores-from: score the failed networks now")
    args = ap.parse_args()
    t0 = time.perf_counter()

    def progress(group: str, done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            print(f"  {done}/{total} scored ({time.perf_counter() - t0:.0f} s)", flush=True)

    r = L.evaluate(scores_from=args.scores_from, n_boot=args.bootstrap, progress=progress,
                   rescore_failed=args.rescore_failed)
    if r.sides:
        print(f"scored at their published resolution (cannot run at 128 px): {r.sides}")
    print(r.to_markdown())
    if r.failed:
        print(f"not scored: {r.failed}")
    secs = [v for v in r.seconds.values() if v == v]
    if secs:
        print(f"proxy seconds per network (all ten, one call): median {sorted(secs)[len(secs) // 2]:.2f}, max {max(secs):.2f}")
    for row in (L.PRIOR_ROW, "params", f"proxies {'+'.join(r.default_proxies)} (--proxies default)"):
        fam = r.per_family.get(row, {})
        print(f"within-family Kendall per family, {row}: " + ", ".join(f"{k} {v:+.2f}" for k, v in fam.items()))
    write_result("proxies_imagenet", {**r.to_dict(), "wall_s": time.perf_counter() - t0})


if __name__ == "__main__":
    main()
