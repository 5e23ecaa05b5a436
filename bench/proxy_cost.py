"""Figure: what each zero-cost proxy, and the default score, costs per EdgeViT candidate on this CPU.

Settings are the accuracy model's (``predictors.accuracy``): input side
``proxy_input_side(cfg)`` (the candidate's resolution x 128/224, on the grid its strides and
sampling ratios need), batch 8, seed 0, one torch thread, the model's own class count (1000).

* Per proxy: :func:`predictors.accuracy.proxies.proxy_cost` (each proxy alone on an already built model,
  including the model copy every proxy makes).
* Default score: the whole call the accuracy model makes, ``build_model(cfg)`` followed by one
  :func:`~predictors.accuracy.proxies.score` over ``predictors.accuracy.proxies.DEFAULT_PROXIES`` (read at run time),
  timed from before the build to after the score.

On EdgeViT-XXS/XS/S (best of ``--repeats``, default 3: the machine is shared, the best run is the
least disturbed) and on 20 random candidates of ``search_space.DEFAULT_SPACE.sample_random(20,
seed=0)`` (per proxy once, the default score best of 2); median and max over the candidates, and
whether the default stays under 1 s. The load average is recorded before and after. For comparison,
the cost per network on NAS-Bench-201 cells and ViT-Bench-101 networks is read from
``bench/results/proxies_nb201.json`` and ``proxies_vitbench.json`` (their protocols: 32x32 and
64x64, batch 8; model build excluded).

Run: ``python bench/proxy_cost.py [--repeats 3] [--candidates 20]``; writes
``bench/results/proxy_cost.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

from benchlib import RESULTS, setup, write_result

setup()
import search_space as ss  # noqa: E402
from predictors.accuracy import proxies as P  # noqa: E402
from predictors.accuracy import proxy_input_side  # noqa: E402

BATCH = 8
SEED = 0


def default_cost(cfg: ss.EdgeViTConfig, repeats: int) -> dict[str, float]:
    """Best of ``repeats``: wall seconds to build the model and score it with the default set, the build
    alone, and the process CPU seconds of that run (one thread: what an idle core would take, about)."""
    side = proxy_input_side(cfg)
    best = {"total_s": float("inf"), "build_s": float("inf"), "cpu_s": float("inf")}
    for _ in range(max(1, repeats)):
        c0, t0 = time.process_time(), time.perf_counter()
        torch.manual_seed(SEED)
        model = ss.build_model(cfg)
        t1 = time.perf_counter()
        P.score(model, (3, side, side), P.DEFAULT_PROXIES, batch_size=BATCH, num_classes=cfg.num_classes, seed=SEED)
        t2, c2 = time.perf_counter(), time.process_time()
        if t2 - t0 < best["total_s"]:
            best = {"total_s": t2 - t0, "build_s": t1 - t0, "cpu_s": c2 - c0}
    return best


def per_proxy_cost(cfg: ss.EdgeViTConfig, repeats: int) -> dict[str, float]:
    side = proxy_input_side(cfg)
    torch.manual_seed(SEED)
    model = ss.build_model(cfg)
    return P.proxy_cost(model, (3, side, side), P.ALL_PROXIES, batch_size=BATCH, num_classes=cfg.num_classes,
                        seed=SEED, repeats=repeats, combined=None)


def measure(cfg: ss.EdgeViTConfig, name: str, repeats_proxy: int, repeats_default: int) -> dict:
    c = ss.cost(cfg)
    return {"name": name, "arch_id": cfg.arch_id, "resolution": cfg.resolution, "input_side": proxy_input_side(cfg),
            "params": int(c.params), "macs": int(c.macs), "per_proxy_s": per_proxy_cost(cfg, repeats_proxy),
            "default": default_cost(cfg, repeats_default), "loadavg": os.getloadavg()[0]}


def from_benchmarks() -> dict:
    """Per-network proxy cost recorded by the two benchmark figures (their own protocols)."""
    out: dict = {}
    nb = RESULTS / "proxies_nb201.json"
    if nb.exists():
        d = json.loads(nb.read_text())
        out["nb201"] = {"source": "bench/results/proxies_nb201.json cost_per_net_nb201_s", "input": 32,
                        "batch": d["protocol"]["batch"], "date": d.get("date"), "per_proxy_s": d["cost_per_net_nb201_s"],
                        "cost_source": d.get("cost_source", "")}
    vb = RESULTS / "proxies_vitbench.json"
    if vb.exists():
        d = json.loads(vb.read_text())
        for space, r in d["results"].items():
            out[f"vitbench:{space}"] = {"source": f"bench/results/proxies_vitbench.json results.{space}.seconds_per_network",
                                        "input": d["img_size"], "batch": d["batch_size"], "date": d.get("date"),
                                        "per_proxy_s": r["seconds_per_network"], "cost_source": r.get("cost_source", "")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="runs per preset (best kept)")
    ap.add_argument("--candidates", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    default_key = "+".join(P.DEFAULT_PROXIES)
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    presets = {}
    for name in ("edgevit_xxs", "edgevit_xs", "edgevit_s"):
        presets[name] = measure(ss.PRESETS[name], name, args.repeats, args.repeats)
        print(f"{name}: default {presets[name]['default']['total_s']:.3f} s (load {presets[name]['loadavg']:.2f})",
              file=sys.stderr)
    cands = []
    for i, cfg in enumerate(ss.DEFAULT_SPACE.sample_random(args.candidates, seed=0)):
        cands.append(measure(cfg, f"random-{i}", 1, 2))
        print(f"candidate {i}: res {cfg.resolution} side {cands[-1]['input_side']} default "
              f"{cands[-1]['default']['total_s']:.3f} s", file=sys.stderr)
    load_after = os.getloadavg()
    totals = [c["default"]["total_s"] for c in cands]
    summary = {
        "n": len(cands),
        "per_proxy_median_s": {n: statistics.median(c["per_proxy_s"][n] for c in cands) for n in P.ALL_PROXIES},
        "per_proxy_max_s": {n: max(c["per_proxy_s"][n] for c in cands) for n in P.ALL_PROXIES},
        "default_median_s": statistics.median(totals), "default_max_s": max(totals),
        "default_under_1s_all": max(totals) < 1.0, "default_under_1s_count": sum(t < 1.0 for t in totals),
        "build_median_s": statistics.median(c["default"]["build_s"] for c in cands),
        "default_cpu_median_s": statistics.median(c["default"]["cpu_s"] for c in cands),
        "default_cpu_max_s": max(c["default"]["cpu_s"] for c in cands),
        "default_cpu_under_1s_count": sum(c["default"]["cpu_s"] < 1.0 for c in cands),
    }
    bench = from_benchmarks()

    cols = ["XXS", "XS", "S", "cand med", "cand max"] + list(bench)
    print(f"\nseconds per network, 1 torch thread, batch {BATCH}; EdgeViT at proxy_input_side(cfg) "
          f"(XXS/XS/S best of {args.repeats}); load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"{'proxy':24s}" + "".join(f"{c.replace('vitbench:', 'VB '):>16s}" for c in cols))
    for n in [*P.ALL_PROXIES, default_key]:
        if n == default_key:
            vals = [presets[p]["default"]["total_s"] for p in presets] + [summary["default_median_s"], summary["default_max_s"]]
        else:
            vals = [presets[p]["per_proxy_s"][n] for p in presets] + [summary["per_proxy_median_s"][n],
                                                                         summary["per_proxy_max_s"][n]]
        vals += [b["per_proxy_s"].get(n, float("nan")) for b in bench.values()]
        label = f"default ({default_key})" if n == default_key else n
        print(f"{label:24s}" + "".join(f"{v:>16.3f}" for v in vals))
    print(f"default score on EdgeViT includes the model build (median {summary['build_median_s']:.3f} s over the "
          f"candidates); on NB201 / ViT-Bench-101 it does not.")
    print(f"default under 1 s: {summary['default_under_1s_count']}/{len(cands)} candidates "
          f"(median {summary['default_median_s']:.3f} s, max {summary['default_max_s']:.3f} s); "
          + ", ".join(f"{p} {presets[p]['default']['total_s']:.3f} s" for p in presets))
    print(f"process CPU time of the same calls: {summary['default_cpu_under_1s_count']}/{len(cands)} under 1 s "
          f"(median {summary['default_cpu_median_s']:.3f} s, max {summary['default_cpu_max_s']:.3f} s); "
          + ", ".join(f"{p} {presets[p]['default']['cpu_s']:.3f} s" for p in presets))
    sides = sorted({c["input_side"] for c in cands})
    print("default (wall) by input side: " + "; ".join(
        f"{s}: median {statistics.median(c['default']['total_s'] for c in cands if c['input_side'] == s):.3f} s "
        f"(n={sum(c['input_side'] == s for c in cands)})" for s in sides))

    out = {
        "load": {"torch_threads": 1, "loadavg_before": load_before, "loadavg_after": load_after},
        "settings": {"input_side": "predictors.accuracy.proxy_input_side(cfg)", "batch": BATCH, "seed": SEED,
                     "repeats_presets": args.repeats, "repeats_candidates": {"per_proxy": 1, "default": 2},
                     "candidates": f"search_space.DEFAULT_SPACE.sample_random({args.candidates}, seed=0)"},
        "default_proxies": list(P.DEFAULT_PROXIES),
        "default_includes_build": True,
        "presets": presets, "candidates_summary": summary, "candidates": cands, "benchmarks": bench,
        "wall_s": time.perf_counter() - t_start,
    }
    write_result("proxy_cost", out)


if __name__ == "__main__":
    main()
