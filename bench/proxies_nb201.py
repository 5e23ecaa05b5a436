"""Zero-cost accuracy proxies on NAS-Bench-201 (NAS-Bench-Suite-Zero slice) and their cost on EdgeViT.

A thin wrapper over :func:`public_benchmarks.proxy_eval.evaluate` (``nas proxy eval --bench nb201`` is the
same computation), plus two analyses of this figure only: the best rank-aggregated proxy subsets on
these cells, and the default score's cost on EdgeViT-XXS at a few settings.

Data: nb201-zero-cost/zc_nasbench201.json, shipped in public_benchmarks/data/ (automl/NASLib
@9052f54, branch benchmarks, naslib/data/zc_nasbench201.json, Apache-2.0; PROVENANCE.md beside it):
491 cells per data set with trained val accuracy and NASLib's stored proxy scores. Keys are op-index
tuples, op order (skip, none, conv3x3, conv1x1, avgpool), edge order 1->2, 1->3, 1->4, 2->3, 2->4,
3->4; converted to the arch-string edge order of public_benchmarks/nb201.py by
``public_benchmarks.proxy_eval.key_to_arch``.

Protocol: every cell is built with ``public_benchmarks.nb201.build_nb201`` at 10 classes (the same network
and scores are correlated against all three data sets; only the classifier width would differ),
seeded (seed 0) before it is built, input 3x32x32 random Gaussian, seed 0, batch ``--batch``
(default 8 to fit the CPU budget), each cell scored with every proxy in one call. Correlations:
Kendall tau and Spearman rho (scipy) against ``val_accuracy``. Our synflow/snip/jacob_cov/grad_norm
are also correlated with NASLib's stored values (computed on real data with NASLib's own batch size,
so only the ranking is comparable). The subset table aggregates every 2..4-subset of the candidate
proxies (AZ-NAS rank aggregation) and ranks them by mean Kendall tau over the three data sets — a
selection on the evaluation data itself (optimistic; the default set is chosen on held-out halves by
``bench/proxy_selection.py``).

Run: ``.venv/bin/python bench/proxies_nb201.py [--workers 2] [--limit N]`` (about 5 minutes), or
``--scores-from bench/results/proxies_nb201.json`` to recompute from the stored raw scores;
writes bench/results/proxies_nb201.json (``--out``).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from predictors.accuracy import proxies as P  # noqa: E402
from public_benchmarks.proxy_eval import (  # noqa: E402
    NB201_DATASETS, EvalResult, correlation, evaluate, key_to_arch, load_nb201,
)

DATASETS = NB201_DATASETS
SUBSET_CANDIDATES = ("synflow", "snip", "grad_norm", "jacob_cov", "naswot", "zico", "meco", "dss", "macs", "params")

__all__ = ["key_to_arch", "load", "corr", "subsets", "edgevit_cost", "main"]


def load(data_dir: Path | None = None) -> dict:
    """The NAS-Bench-Suite-Zero slice (shipped, or from ``data_dir`` with the shipped layout)."""
    return load_nb201(data_dir)


def corr(x, y) -> tuple[float, float]:
    c = correlation(x, y)
    return c.kendall, c.spearman


def subsets(r: EvalResult, candidates=SUBSET_CANDIDATES, sizes=(2, 3, 4)) -> list[tuple[float, tuple[str, ...], list[float]]]:
    """Every subset of ``candidates`` aggregated, by mean Kendall tau over the data sets (best first)."""
    g = r.groups["nb201"]
    keys = list(g.scores)
    out = []
    for k in sizes:
        for sub in itertools.combinations(candidates, k):
            agg = P.aggregate(g.scores, sub)
            taus = [corr([agg[key] for key in keys], [g.accuracy[key][ds] for key in keys])[0] for ds in DATASETS]
            out.append((float(np.mean(taus)), sub, taus))
    out.sort(key=lambda t: -t[0])
    return out


def edgevit_cost(repeats: int = 1) -> dict:
    import search_space as ss

    model = ss.build_model(ss.PRESETS["edgevit_xxs"])
    out = {"model": "edgevit_xxs (search_space.PRESETS)", "per_proxy_224_b16_s": P.proxy_cost(
        model, (3, 224, 224), P.ALL_PROXIES, batch_size=16, num_classes=1000, repeats=repeats, combined=P.DEFAULT_PROXIES)}
    settings = []
    for res, b in ((224, 16), (224, 8), (192, 8), (160, 8), (128, 8)):
        t = P.proxy_cost(model, (3, res, res), (), batch_size=b, num_classes=1000, repeats=max(2, repeats),
                         combined=P.DEFAULT_PROXIES)
        settings.append({"resolution": res, "batch": b, "default_score_s": list(t.values())[0]})
    out["default_score_settings"] = settings
    return out


def report(r: EvalResult, subs: list, ev: dict | None) -> None:
    g = r.groups["nb201"]
    src = f"scores from {r.scores_from}" if r.scores_from else "scored"
    print(f"NAS-Bench-201, {g.n} cells, input 3x{r.img_size}x{r.img_size}, {r.num_classes} classes, batch {r.batch_size}, "
          f"seed {r.seed}; {src} in {g.wall_s:.0f} s with {r.workers} worker(s) x 1 thread")
    print(f"{'proxy':42s} " + " ".join(f"{ds + ' tau/rho':>22s}" for ds in DATASETS) + "   s/net  nan")
    for n in r.rows:
        c = g.correlations[n]
        mark = "  <- default score" if n == r.default_name else ""
        print(f"{n:42s} " + " ".join(f"{c[ds].kendall:>10.3f} /{c[ds].spearman:>9.3f}" for ds in DATASETS)
              + f" {g.seconds_per_network[n]:7.3f}  {g.nan_count[n]}{mark}")
    print(f"s/net: {g.cost_source}")
    print("NASLib stored scores (same cells, their protocol), for reference:")
    for n, c in r.naslib_reference.items():
        print(f"  naslib {n:33s} " + " ".join(f"{c[ds].kendall:>10.3f} /{c[ds].spearman:>9.3f}" for ds in DATASETS))
    print("Spearman of ours vs NASLib stored score of the same name:")
    for n, c in r.stored_check.items():
        print(f"  {n:40s} " + " ".join(f"{c[ds]:>22.3f}" for ds in DATASETS))
    print("Best rank-aggregated subsets by mean Kendall tau (selected on this data):")
    for m, sub, taus in subs[:8]:
        print(f"  {m:.3f}  {'+'.join(sub):40s} " + " ".join(f"{t:.3f}" for t in taus))
    if g.network_seconds:
        print(f"mean scoring time per cell (all proxies, shared gradient pass, {r.workers} workers sharing the cores): "
              f"{np.mean(list(g.network_seconds.values())):.3f} s")
    if ev:
        print("EdgeViT-XXS proxy cost, 224x224 batch 16, 1 thread (s):")
        for n, t in ev["per_proxy_224_b16_s"].items():
            print(f"  {n:40s} {t:.3f}")
        print("default score cost on EdgeViT-XXS:")
        for s in ev["default_score_settings"]:
            print(f"  {s['resolution']}x{s['resolution']} batch {s['batch']}: {s['default_score_s']:.3f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", "--batch-size", dest="batch", type=int, help="default 8 (with --scores-from: the file's)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="score only the first N cells (0 = all 491)")
    ap.add_argument("--cost-networks", type=int, default=10, help="cells on which each proxy's cost is measured")
    ap.add_argument("--scores-from", default="", help="reuse the 'scores' table of an earlier result JSON")
    ap.add_argument("--no-edgevit-cost", action="store_true", help="skip the EdgeViT-XXS cost (bench/proxy_cost.py has more)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "proxies_nb201.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    r = evaluate("nb201", limit=args.limit, batch_size=args.batch, workers=args.workers,
                 scores_from=args.scores_from or None, cost_networks=args.cost_networks,
                 progress=lambda g, done, total: print(f"\r{g}: {done}/{total}", end="", file=sys.stderr))
    print(file=sys.stderr)
    subs = subsets(r)
    ev = None if args.no_edgevit_cost else edgevit_cost()
    report(r, subs, ev)
    out = r.to_dict()
    out["subsets_top60"] = [{"proxies": list(s), "mean_kendall": m, "kendall": t} for m, s, t in subs[:60]]
    if ev:
        out["edgevit_cost"] = ev
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
