"""Figure: choosing the default proxy set on held-out data, and how it compares with #params.

Choosing a subset of proxies on the data it is then evaluated on overstates it. This script chooses
on one half and scores on the other:

- targets: the eight public columns with trained accuracy and raw proxy scores of every network,
  read from the stored raw scores of ``bench/proxies_vitbench.py`` (ViT-Bench-101: AutoFormer and PiT
  CIFAR-100 with and without distillation, AutoFormer-2 CIFAR-100 distilled) and
  ``bench/proxies_nb201.py`` (NAS-Bench-201 cifar10 / cifar100 / ImageNet16-120, 491 cells);
- candidates: every subset of 1 to 3 of the ten proxies, aggregated as the package does
  (:func:`predictors.accuracy.proxies.aggregate`, sum of log normalised ranks);
- criterion: the worst (minimum over targets) Kendall-tau margin over #params on the selection half;
- admissible subsets: those whose percentile (``predictors.accuracy.ProxyAccuracy``, the score the
  search uses) orders EdgeViT-XXS < XS < S among the reference population of random EdgeViTs, as the
  paper's ImageNet-1k top-1 does (74.4 / 77.5 / 81.0): the only EdgeViT ground truth in public. Raw
  scores of every proxy on that population: ``bench/results/edgevit_reference_proxies.json`` (scored
  with the accuracy model's settings; recreate with ``--score-reference``);
- protocol: 20 random half-splits of every target (seeds 0..19), and leave-one-benchmark-group-out.

It prints the full-data table of the chosen default beside #params and the selection counts, and
writes ``bench/results/proxy_selection.json``.
Run: ``python bench/proxy_selection.py`` (seconds; no network is re-scored).
"""
from __future__ import annotations

import itertools
import json
from collections import Counter

import numpy as np
from scipy.stats import kendalltau

from benchlib import RESULTS, setup, write_result

setup()
from predictors.accuracy import ProxyAccuracy, proxy_input_side, reference_configs  # noqa: E402
from predictors.accuracy.proxies import ALL_PROXIES, DEFAULT_PROXIES, rank_normalised, score  # noqa: E402
from public_benchmarks.data import read_json  # noqa: E402
from search_space import PRESETS, build_model  # noqa: E402

NB201_SETS = ("cifar10", "cifar100", "ImageNet16-120")
SPLITS = 20


def load_targets() -> dict[str, tuple[dict[str, np.ndarray], np.ndarray]]:
    """target name -> (proxy -> raw scores, accuracies), from the stored raw scores."""
    out = {}
    vb = json.loads((RESULTS / "proxies_vitbench.json").read_text())["results"]
    for space in ("autoformer", "autoformer_2", "pit"):
        r = vb[space]
        for col in ("cifar100", "cifar100_distill"):
            ks = [k for k in r["scores"] if r["accuracy"][k].get(col) is not None]
            if ks:
                out[f"{space}/{col}"] = ({p: np.array([r["scores"][k][p] for k in ks], float) for p in ALL_PROXIES},
                                         np.array([r["accuracy"][k][col] for k in ks], float))
    nb_scores = json.loads((RESULTS / "proxies_nb201.json").read_text())["scores"]
    acc = read_json("nb201-zero-cost", "zc_nasbench201.json")["nasbench201"]
    keys = sorted(nb_scores)
    for ds in NB201_SETS:
        out[f"nb201/{ds}"] = ({p: np.array([nb_scores[k][p] for k in keys], float) for p in ALL_PROXIES},
                              np.array([acc[ds][k]["val_accuracy"] for k in keys], float))
    return out


def score_reference() -> None:
    """Score every proxy on the accuracy model's reference population (about 2 s per network)."""
    import torch

    torch.set_num_threads(1)
    out = {}
    for c in reference_configs():
        torch.manual_seed(0)
        side = proxy_input_side(c)
        out[c.arch_id] = {"name": c.name or "", "side": side,
                          "scores": score(build_model(c), (3, side, side), ALL_PROXIES, batch_size=8, num_classes=1000, seed=0)}
    write_result("edgevit_reference_proxies", {
        "protocol": "reference_configs() (3 presets + 64 random, seed 20221023), every proxy at proxy_input_side(cfg), "
                    "batch 8, seed 0, 1000 classes", "scores": out})


def anchor_percentiles(names: tuple[str, ...], ref: dict) -> list[float]:
    """The search's proxy percentile of EdgeViT-XXS, -XS, -S for the proxy subset ``names``."""
    r = ProxyAccuracy(names)
    r._set_state({"key": "", "scores": {a: v["scores"] for a, v in ref.items()}})
    return [r.score_raw(ref[PRESETS[k].arch_id]["scores"]) for k in ("edgevit_xxs", "edgevit_xs", "edgevit_s")]


def agg(scores: dict[str, np.ndarray], names: tuple[str, ...], idx: np.ndarray | None = None) -> np.ndarray:
    """The package's aggregate (sum of log normalised ranks) on the rows ``idx``."""
    total = 0.0
    for n in names:
        x = scores[n] if idx is None else scores[n][idx]
        total = total + np.log(rank_normalised(x))
    return total


def tau(x: np.ndarray, y: np.ndarray) -> float:
    return float(kendalltau(x, y)[0])


def margin(target, names, idx) -> float:
    s, a = target
    return tau(agg(s, names, idx), a[idx]) - tau(agg(s, ("params",), idx), a[idx])


def main() -> None:
    import sys

    if "--score-reference" in sys.argv:
        score_reference()
    targets = load_targets()
    tnames = list(targets)
    ref = json.loads((RESULTS / "edgevit_reference_proxies.json").read_text())["scores"]
    every = [c for r in (1, 2, 3) for c in itertools.combinations(ALL_PROXIES, r)]
    anchors = {"+".join(c): anchor_percentiles(c, ref) for c in every}
    combos = [c for c in every if anchors["+".join(c)][0] < anchors["+".join(c)][1] < anchors["+".join(c)][2]]
    print(f"{len(combos)} of {len(every)} subsets order EdgeViT-XXS < XS < S as the paper does")
    full = {"+".join(c): [tau(agg(targets[t][0], c), targets[t][1]) for t in tnames] for c in every}

    rng = np.random.default_rng(0)
    splits, counts, wins = [], Counter(), 0
    for seed in range(SPLITS):
        halves = {}
        for t in tnames:
            p = rng.permutation(len(targets[t][1]))
            halves[t] = (p[: len(p) // 2], p[len(p) // 2:])
        best = max(combos, key=lambda c: min(margin(targets[t], c, halves[t][0]) for t in tnames))
        held = [margin(targets[t], best, halves[t][1]) for t in tnames]
        dflt = [margin(targets[t], DEFAULT_PROXIES, halves[t][1]) for t in tnames]
        counts["+".join(best)] += 1
        wins += sum(m > 0 for m in held)
        splits.append({"seed": seed, "chosen": list(best), "held_out_margin": dict(zip(tnames, held)),
                       "default_held_out_margin": dict(zip(tnames, dflt))})

    groups = {"autoformer": ["autoformer/cifar100", "autoformer/cifar100_distill"],
              "autoformer_2": ["autoformer_2/cifar100_distill"], "pit": ["pit/cifar100", "pit/cifar100_distill"],
              "nb201": [f"nb201/{d}" for d in NB201_SETS]}
    logo = []
    for g, held in groups.items():
        rest = [t for t in tnames if t not in held]
        best = max(combos, key=lambda c: min(full["+".join(c)][tnames.index(t)] - full["params"][tnames.index(t)]
                                             for t in rest))
        logo.append({"held_out": g, "chosen": list(best), "margin": {t: full["+".join(best)][tnames.index(t)]
                                                                      - full["params"][tnames.index(t)] for t in held}})

    dkey = "+".join(DEFAULT_PROXIES)
    print(f"Kendall tau on all networks (default = {dkey})")
    print(f"{'proxies':28s}" + "".join(f"{t:>30s}" for t in tnames))
    for key in ["params", "macs", "synflow", "zico", "dss", "synflow+zico", dkey, "synflow+jacob_cov+meco"]:
        vals = full.get(key) or [tau(agg(targets[t][0], tuple(key.split("+"))), targets[t][1]) for t in tnames]
        a = anchors.get(key) or anchor_percentiles(tuple(key.split("+")), ref)
        mark = " <- default" if key == dkey else ""
        print(f"{key:28s}" + "".join(f"{v:30.3f}" for v in vals) + f"   XXS/XS/S {a[0]:.3f}/{a[1]:.3f}/{a[2]:.3f}" + mark)
    print(f"\nheld-out selection over {SPLITS} half-splits: chosen {dict(counts.most_common())}")
    print(f"chosen subset beats #params on the held-out half in {wins} of {SPLITS * len(tnames)} (split, target) pairs")
    d_wins = sum(m > 0 for s in splits for m in s["default_held_out_margin"].values())
    print(f"the default ({dkey}) beats #params on the held-out half in {d_wins} of {SPLITS * len(tnames)}")
    for t in tnames:
        ms = [s["default_held_out_margin"][t] for s in splits]
        print(f"  {t:30s} median held-out margin {np.median(ms):+.3f}  (min {min(ms):+.3f})")
    print("\nleave one benchmark group out (choose on the others, score on it):")
    for row in logo:
        print(f"  {row['held_out']:13s} chose {'+'.join(row['chosen']):28s} margins "
              + ", ".join(f"{k}: {v:+.3f}" for k, v in row["margin"].items()))

    out = {"targets": tnames, "default": list(DEFAULT_PROXIES), "kendall_full": full, "selection_counts": dict(counts),
           "chosen_wins": wins, "default_wins": d_wins, "pairs": SPLITS * len(tnames), "splits": splits,
           "leave_one_group_out": logo, "anchor_percentiles": anchors,
           "admissible": ["+".join(c) for c in combos],
           "sources": {"vit-bench-101": "bench/results/proxies_vitbench.json (raw scores)",
                       "nb201": "bench/results/proxies_nb201.json (raw scores) + public_benchmarks/data/nb201-zero-cost"}}
    write_result("proxy_selection", out)


if __name__ == "__main__":
    main()
