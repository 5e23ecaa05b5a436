"""Figure: zero-cost proxies against trained accuracy on ViT-Bench-101 (AutoFormer and PiT spaces).

A thin wrapper over :func:`public_benchmarks.proxy_eval.evaluate` (``nas proxy eval --bench vit-bench-101``
is the same computation). Every network of the benchmark (shipped in public_benchmarks/data/vit-bench-101/,
Auto-Prox-AAAI24 @90ed458, Apache-2.0) is built as a PyTorch module from its arch dict
(``public_benchmarks.vitbench``), scored by every proxy of ``predictors.accuracy.proxies`` at a reduced input
size (the networks were trained at 224x224; scoring at ``--img-size`` keeps the run to minutes on 2
cores, and the reduction is part of what this figure measures), then Kendall tau and Spearman rho
against each accuracy column (CIFAR-100 with and without distillation, Flowers, Chaoyang, and the
AutoFormer files' supernet ImageNet column), beside #params, MACs and the default score
(``aggregate`` of ``predictors.accuracy.proxies.DEFAULT_PROXIES``, read at run time).

Run: ``python bench/proxies_vitbench.py [--img-size 64] [--batch-size 8] [--limit N] [--workers 1]``
(about 10 minutes), or ``--scores-from bench/results/proxies_vitbench.json`` to recompute every table
from the stored raw scores in seconds (``--cost-networks``: networks per space whose cost is measured
again, default 10; 0 keeps the file's). Writes ``bench/results/proxies_vitbench.json`` (``--out``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from public_benchmarks.proxy_eval import VITBENCH_SPACES, EvalResult, evaluate  # noqa: E402

OUT = ROOT / "bench" / "results" / "proxies_vitbench.json"
SPACES = VITBENCH_SPACES


def report(r: EvalResult) -> None:
    for g in r.groups.values():
        print(f"\n== {g.name}: {g.n} networks, proxies at {r.img_size}x{r.img_size}, batch {r.batch_size}; "
              f"Kendall tau (Spearman) against trained top-1 ==")
        print(f"{'proxy':24} " + " ".join(f"{c:>22}" for c in g.targets) + f" {'s/net':>7}")
        for n in r.rows:
            c = g.correlations[n]
            cells = " ".join(f"{c[t].kendall:>+13.3f} ({c[t].spearman:+.3f})" for t in g.targets)
            mark = "  <- default score" if n == r.default_name else ""
            print(f"{n:24} {cells} {g.seconds_per_network[n]:>7.3f}{mark}")
        print(f"s/net: {g.cost_source}")
        wins = r.beats_params()[g.name]
        print("default beats #params: " + ", ".join(f"{t} {'yes' if wins[t] else 'no'}" for t in g.targets))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--img-size", type=int, help="default 64 (with --scores-from: the file's)")
    ap.add_argument("--batch-size", type=int, help="default 8 (with --scores-from: the file's)")
    ap.add_argument("--limit", type=int, default=0, help="networks per space (0: all 100)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--cost-networks", type=int, default=10)
    ap.add_argument("--scores-from", default="", help="reuse the 'scores' of an earlier result JSON")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    torch.set_num_threads(1)
    r = evaluate("vit-bench-101", limit=args.limit, img_size=args.img_size, batch_size=args.batch_size,
                 workers=args.workers, scores_from=args.scores_from or None, cost_networks=args.cost_networks,
                 progress=lambda g, done, total: print(f"\r{g}: {done}/{total}", end="", file=sys.stderr))
    print(file=sys.stderr)
    report(r)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r.to_dict(), indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
