"""Zero-cost accuracy proxies on NAS-Bench-201 (NAS-Bench-Suite-Zero slice) and their cost on EdgeViT.

Data: shared/data/nb201-zero-cost/zc_nasbench201.json (automl/NASLib @9052f54, branch benchmarks,
naslib/data/zc_nasbench201.json, Apache-2.0): 491 cells per data set with trained val accuracy and
NASLib's stored proxy scores. Keys are op-index tuples, op order (skip, none, conv3x3, conv1x1,
avgpool), edge order 1->2, 1->3, 1->4, 2->3, 2->4, 3->4 (shared/data/README.md); converted here to the
arch-string edge order of predictors/nets.py (node1<-0 | node2<-0, 1 | node3<-0, 1, 2).

Protocol: every cell is built with ``predictors.nets.build_nb201`` at 10 classes (the same network
and scores are correlated against all three data sets; only the classifier width would differ),
input 3x32x32 random Gaussian, seed 0, batch ``--batch`` (default 8 to fit the CPU budget), each of
the 491 cells scored with every proxy. Correlations: Kendall tau and Spearman rho (scipy) against
``val_accuracy``. Our synflow/snip/jacob_cov/grad_norm are also correlated with NASLib's stored
values (which were computed on real data with NASLib's own batch size, so only the ranking is
comparable). The default-score subset is chosen here: every 2..4-subset of the candidate proxies is
aggregated (AZ-NAS rank aggregation) and ranked by mean Kendall tau over the three data sets — a
selection on the evaluation data itself (optimistic).

Run: ``.venv/bin/python bench/proxies_nb201.py [--workers 2] [--limit N]``; writes
bench/results/proxies_nb201.json.
"""
from __future__ import annotations

import argparse
import ast
import itertools
import json
from datetime import datetime, timezone
import math
import os
import platform
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from predictors import proxies as P  # noqa: E402
from predictors.nets import build_nb201, format_nb201  # noqa: E402
from device_farm.measure import cpu_model

DATA = Path(os.environ.get("EDGEVIT_NAS_SHARED_DATA", ROOT.parent / "shared" / "data"))
JSON_PATH = DATA / "nb201-zero-cost" / "zc_nasbench201.json"
DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
#: NASLib op index -> predictors.nets op name (shared/data/README.md op order)
NASLIB_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
#: arch-string edge k comes from NASLib edge NASLIB_EDGE_OF[k] (1->2, 1->3, 2->3, 1->4, 2->4, 3->4)
NASLIB_EDGE_OF = (0, 1, 3, 2, 4, 5)
STORED = {"synflow": "synflow", "snip": "snip", "jacob_cov": "jacov", "grad_norm": "grad_norm"}


def key_to_arch(key: str) -> str:
    idx = ast.literal_eval(key)
    return format_nb201([NASLIB_OPS[idx[e]] for e in NASLIB_EDGE_OF])


def load(path: Path = JSON_PATH) -> dict:
    with open(path) as f:
        return json.load(f)["nasbench201"]


def _init() -> None:
    torch.set_num_threads(1)


def _score_one(args) -> tuple[str, dict, float]:
    key, batch = args
    net = build_nb201(key_to_arch(key), num_classes=10)
    t0 = time.perf_counter()
    s = P.score(net, (3, 32, 32), P.ALL_PROXIES, batch_size=batch, num_classes=10, seed=0)
    return key, s, time.perf_counter() - t0


def corr(x, y) -> tuple[float, float]:
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    return float(kendalltau(x[ok], y[ok])[0]), float(spearmanr(x[ok], y[ok])[0])


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="score only the first N cells (0 = all 491)")
    ap.add_argument("--scores-from", default="", help="reuse the 'scores' table of an earlier result JSON")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "proxies_nb201.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load()
    keys = sorted(data["cifar10"])
    if args.limit:
        keys = keys[: args.limit]
    t0 = time.perf_counter()
    table, secs = {}, {}
    if args.scores_from:
        prev = json.load(open(args.scores_from))
        table, secs = prev["scores"], prev.get("seconds_per_cell", {})
        keys = [k for k in keys if k in table]
        wall, args.batch, args.workers = prev["protocol"]["wall_s"], prev["protocol"]["batch"], prev["protocol"]["workers"]
    else:
        with get_context("fork").Pool(args.workers, initializer=_init) as pool:
            for key, s, dt in pool.imap_unordered(_score_one, [(k, args.batch) for k in keys], chunksize=4):
                table[key], secs[key] = s, dt
        wall = time.perf_counter() - t0
    names = list(P.ALL_PROXIES)
    n_nan = {n: int(sum(not math.isfinite(table[k][n]) for k in keys)) for n in names}

    # per-proxy cost on NB201 (each alone, 10 cells)
    cost_nb = {n: 0.0 for n in names}
    for k in keys[:10]:
        c = P.proxy_cost(build_nb201(key_to_arch(k)), (3, 32, 32), names, batch_size=args.batch, num_classes=10,
                         combined=None)
        for n in names:
            cost_nb[n] += c[n] / min(10, len(keys))

    res: dict = {}
    for n in names:
        res[n] = {ds: corr([table[k][n] for k in keys], [data[ds][k]["val_accuracy"] for k in keys]) for ds in DATASETS}
    # subsets for the default score
    cands = ["synflow", "snip", "grad_norm", "jacob_cov", "naswot", "zico", "meco", "dss", "macs", "params"]
    subsets = []
    for r in (2, 3, 4):
        for sub in itertools.combinations(cands, r):
            agg = P.aggregate({k: table[k] for k in keys}, sub)
            taus = [corr([agg[k] for k in keys], [data[ds][k]["val_accuracy"] for k in keys])[0] for ds in DATASETS]
            subsets.append((float(np.mean(taus)), sub, taus))
    subsets.sort(key=lambda t: -t[0])
    agg = P.aggregate({k: table[k] for k in keys}, P.DEFAULT_PROXIES)
    res["DEFAULT(" + "+".join(P.DEFAULT_PROXIES) + ")"] = {
        ds: corr([agg[k] for k in keys], [data[ds][k]["val_accuracy"] for k in keys]) for ds in DATASETS}
    stored = {}
    for ours, theirs in STORED.items():
        stored[ours] = {ds: corr([table[k][ours] for k in keys], [data[ds][k][theirs] for k in keys])[1]
                        for ds in DATASETS}
    naslib_ref = {}
    for theirs in ("synflow", "snip", "jacov", "grad_norm", "params", "flops"):
        naslib_ref[theirs] = {ds: corr([data[ds][k][theirs] for k in keys], [data[ds][k]["val_accuracy"] for k in keys])
                              for ds in DATASETS}

    print(f"NAS-Bench-201, {len(keys)} cells, input 3x32x32, 10 classes, batch {args.batch}, seed 0; "
          f"scored in {wall:.0f} s with {args.workers} worker(s) x 1 thread")
    print(f"{'proxy':42s} " + " ".join(f"{ds + ' tau/rho':>22s}" for ds in DATASETS) + "   s/net  nan")
    for n, r in res.items():
        cost = f"{cost_nb[n]:7.3f}" if n in cost_nb else "       "
        print(f"{n:42s} " + " ".join(f"{r[ds][0]:>10.3f} /{r[ds][1]:>9.3f}" for ds in DATASETS)
              + f" {cost}  {n_nan.get(n, '')}")
    print("NASLib stored scores (same 491 cells, their protocol), for reference:")
    for n, r in naslib_ref.items():
        print(f"  naslib {n:33s} " + " ".join(f"{r[ds][0]:>10.3f} /{r[ds][1]:>9.3f}" for ds in DATASETS))
    print("Spearman of ours vs NASLib stored score of the same name:")
    for n, r in stored.items():
        print(f"  {n:40s} " + " ".join(f"{r[ds]:>22.3f}" for ds in DATASETS))
    print("Best rank-aggregated subsets by mean Kendall tau (selected on this data):")
    for m, sub, taus in subsets[:8]:
        print(f"  {m:.3f}  {'+'.join(sub):40s} " + " ".join(f"{t:.3f}" for t in taus))
    if secs:
        print(f"mean scoring time per cell (all proxies, shared gradient pass, {args.workers} workers sharing the cores): "
              f"{np.mean(list(secs.values())):.3f} s")

    ev = edgevit_cost()
    print("EdgeViT-XXS proxy cost, 224x224 batch 16, 1 thread (s):")
    for n, t in ev["per_proxy_224_b16_s"].items():
        print(f"  {n:40s} {t:.3f}")
    print("default score cost on EdgeViT-XXS:")
    for s in ev["default_score_settings"]:
        print(f"  {s['resolution']}x{s['resolution']} batch {s['batch']}: {s['default_score_s']:.3f} s")

    out = {
        "source": "shared/data/nb201-zero-cost/zc_nasbench201.json (automl/NASLib @9052f54 naslib/data/zc_nasbench201.json)",
        "protocol": {"cells": len(keys), "input": [3, 32, 32], "num_classes": 10, "batch": args.batch, "seed": 0,
                     "workers": args.workers, "torch_threads": 1, "wall_s": wall},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__},
        "correlation_vs_val_accuracy": {n: {ds: {"kendall": r[ds][0], "spearman": r[ds][1]} for ds in DATASETS}
                                        for n, r in res.items()},
        "naslib_stored_vs_val_accuracy": {n: {ds: {"kendall": r[ds][0], "spearman": r[ds][1]} for ds in DATASETS}
                                          for n, r in naslib_ref.items()},
        "spearman_ours_vs_naslib_stored": stored,
        "nan_count": n_nan,
        "cost_per_net_nb201_s": cost_nb,
        "default_proxies": list(P.DEFAULT_PROXIES),
        "subsets_top60": [{"proxies": list(s), "mean_kendall": m, "kendall": t} for m, s, t in subsets[:60]],
        "edgevit_cost": ev,
        "scores": table,
        "seconds_per_cell": secs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
