"""Table: per-block-type latency regressors on nn-Meter's measured phone blocks, and EdgeViT on three phones.

For each phone (s21 = Xiaomi Mi 11 / Snapdragon 888 table, pixel4, pixel1) prints:

0. A data check: how often 8 more channels made a measured block faster (noise / kernel effects).
1. Held-out random 20 % (seed 0) per block type: n, within 5 %, within 10 %, RMSE (ms), Kendall
   tau, Spearman rho, for the chosen regressor and, on the same split, a linear fit on MACs and
   params and the rank correlation of MACs alone.
2. Extrapolation splits (train on the smaller values of a feature, test on the largest, or the
   other way round): the chosen regressor and the linear baseline.
3. The rate model that prices "transferred" parts: its rates and its error per block type.
4. EdgeViT-XXS/XS/S: predicted total latency +- std, and the share of direct / approximate /
   transferred parts and of parts whose query lies outside the measured ranges.

Writes ``bench/results/phone_blocks.json`` (date, machine, versions, everything printed).

Run: ``python bench/phone_blocks.py [--phones s21 pixel4 pixel1] [--random 200]``
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy.stats import kendalltau, spearmanr

from benchlib import setup, write_result

setup()
import search_space as ss  # noqa: E402
from predictors.latency.phone import (BLOCK_TYPES, PROVENANCES, PhoneLatencyPredictor, fit_phone,  # noqa: E402
                                      load_table, parse_key, table_provenance)

#: Published S21 latencies of the presets. The EdgeViT paper (Pan et al., ECCV 2022, arXiv:2205.03436)
#: reports on-device latency on a Samsung Galaxy S21, but its tables could not be retrieved with the
#: project's search tool (only abstracts came back), so no paper number is printed.
PAPER_S21_MS: dict[str, float] = {}
#: A secondary, unverified figure: a third-party notes file found through the search tool's code
#: index lists "Snapdragon 888 | EdgeViT-XXS | 32.8ms | 74.4%", citing the survey arXiv:2503.02891,
#: not the EdgeViT paper. Printed only with that label; XS and S were not found anywhere.
SECONDARY_SD888_MS: dict[str, tuple[float, str]] = {
    "edgevit_xxs": (32.8, "secondary, unverified: third-party notes citing arXiv:2503.02891 (survey), "
                          "not the EdgeViT paper"),
}


def _f(x: float, nd: int = 3) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def metrics_row(label: str, m: dict | None, rank: dict | None = None) -> str:
    if m is None:  # rank-only row
        return (f"  {label:<26} {'':>5} {'-':>6} {'-':>6} {'-':>9} {_f(rank['kendall_tau']):>7} "
                f"{_f(rank['spearman']):>7}")
    return (f"  {label:<26} {m['n']:>5} {_f(m['within_5']):>6} {_f(m['within_10']):>6} {_f(m['rmse'], 4):>9} "
            f"{_f(m['kendall_tau']):>7} {_f(m['spearman']):>7}")


HEADER = f"  {'regressor':<26} {'n':>5} {'<=5%':>6} {'<=10%':>6} {'RMSE ms':>9} {'tau':>7} {'rho':>7}"


def monotonicity(table: dict[str, float]) -> dict[str, dict[str, float]]:
    """Data check: how often adding 8 channels (all else equal) makes a measured block faster."""
    out = {}
    for btype in ("transds", "transattn", "transffn"):
        idx = {}
        for k, v in table.items():
            if k.startswith(btype + "_"):
                s = parse_key(k)
                idx[(s.hw, s.cin, s.cout, s.expansion, s.stride, s.v_scale)] = v
        n = dec = dec5 = 0
        for (hw, ci, co, e, st, vs), t in idx.items():
            nxt = (hw, ci, co + 8, e, st, vs) if btype == "transds" else (hw, ci + 8, co + 8, e, st, vs)
            if nxt in idx:
                n += 1
                dec += idx[nxt] < t
                dec5 += idx[nxt] < 0.95 * t
        out[btype] = {"pairs": n, "faster": dec / n, "faster_by_5pct": dec5 / n}
    return out


def report_phone(device: str, pred: PhoneLatencyPredictor, mono: dict) -> None:
    print(f"\n=== {device}: {table_provenance(device)}")
    print(f"    {pred.n_keys_} measured blocks; random split 80/20, seed {pred.random_state}")
    print("\n  [0] data check: share of (+8 channels, all else equal) pairs where the measured block got faster")
    print("      " + "; ".join(f"{t}: {m['faster']:.3f} ({m['faster_by_5pct']:.3f} by >5 %) of {m['pairs']}"
                              for t, m in mono.items()))
    print("\n  [1] held-out random 20 %")
    print(HEADER)
    for t in BLOCK_TYPES:
        h = pred.heldout_.get(t)
        if h is None:
            continue
        print(f" {t} (train n={h['n_train']}, chosen: {h['kind']})")
        print(metrics_row(f"chosen ({h['kind']})", h["model"]))
        print(metrics_row("linear MACs+params", h["linear_macs_params"]))
        print(metrics_row("MACs alone (rank only)", None, h["macs_rank"]))
    print("\n  [2] extrapolation splits (held-out values listed; chosen kind refitted on the rest)")
    print(HEADER)
    for t in BLOCK_TYPES:
        for name, e in pred.extrapolation_.get(t, {}).items():
            vals = ",".join(e["held_out_values"])
            print(f" {t} {name}: held out {vals} (trained up to {e['train_bound']:g})"
                  if name.endswith("max") else f" {t} {name}: held out {vals} (trained from {e['train_bound']:g})")
            print(metrics_row(f"chosen ({pred.heldout_[t]['kind']})", e["model"]))
            print(metrics_row("linear MACs+params", e["linear_macs_params"]))
            print(metrics_row("MACs alone (rank only)", None, e["macs_rank"]))
    r = pred.rate_.to_dict()
    print(f"\n  [3] rate model (fitted on {', '.join(r['block_types'])}); rates: "
          + ", ".join(f"{k}={v:.3g}" for k, v in r["rates"].items()))
    print(f"  {'block type':<12} {'n':>5} {'<=10%':>6} {'rms log':>8} {'bias log':>9}")
    for t, m in pred.rate_heldout_.items():
        print(f"  {t:<12} {m['n']:>5} {_f(m['within_10']):>6} {_f(m['rms_log']):>8} {_f(m.get('bias_log', float('nan'))):>9}")
    print(f"  transferred parts get relative std {pred.transfer_sigma_:.3f} (max of fitted-types and transffn rms log)")


def preset_rows(device: str, pred: PhoneLatencyPredictor) -> list[dict]:
    rows = []
    for name, cfg in ss.PRESETS.items():
        p = pred.predict_parts([cfg])[0]
        sh = p.share()
        ext = sum(x.ms for x in p.parts if x.extrapolated) / p.total_ms
        parts = [{"half_block": x.half_block, "part": x.part, "ms": round(x.ms, 5), "std_ms": round(x.std_ms, 5),
                  "provenance": x.provenance, "block_type": x.block_type, "extrapolated": x.extrapolated,
                  "detail": x.detail} for x in p.parts]
        rows.append({"device": device, "preset": name, "total_ms": p.total_ms, "std_ms": p.std_ms,
                     "share": sh, "extrapolated_share": ext, "parts": parts})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phones", nargs="+", default=["s21", "pixel4", "pixel1"])
    ap.add_argument("--random", type=int, default=200, help="random candidates for the MACs-vs-latency rank check")
    args = ap.parse_args()

    started = time.perf_counter()
    results: dict = {"phones": {}}
    presets: list[dict] = []
    cands = ss.DEFAULT_SPACE.sample_random(args.random, seed=0) if args.random else []
    macs = np.array([ss.cost(c).macs for c in cands], float)
    rank_rows = []
    for device in args.phones:
        t0 = time.perf_counter()
        pred = fit_phone(device)
        fit_s = time.perf_counter() - t0
        mono = monotonicity(load_table(device))
        report_phone(device, pred, mono)
        print(f"  fit time {fit_s:.1f} s on this machine")
        presets += preset_rows(device, pred)
        entry = {"source": table_provenance(device), "fit_seconds": fit_s, "monotonicity": mono, "heldout": pred.heldout_,
                 "extrapolation": pred.extrapolation_, "rate": pred.rate_.to_dict(), "rate_heldout": pred.rate_heldout_,
                 "transfer_sigma": pred.transfer_sigma_, "sigma": pred.sigma_}
        if cands:
            t0 = time.perf_counter()
            parts = pred.predict_parts(cands)
            lat = np.array([p.total_ms for p in parts])
            pred_s = time.perf_counter() - t0
            sh = np.array([[p.share()[k] for k in PROVENANCES] for p in parts])
            entry["random_candidates"] = {
                "n": len(cands), "seed": 0, "predict_seconds": pred_s,
                "kendall_tau_vs_macs": float(kendalltau(lat, macs)[0]), "spearman_vs_macs": float(spearmanr(lat, macs)[0]),
                "latency_ms_percentiles_0_50_100": np.percentile(lat, [0, 50, 100]).tolist(),
                "mean_share": dict(zip(PROVENANCES, sh.mean(axis=0).tolist()))}
            rank_rows.append((device, entry["random_candidates"]))
        results["phones"][device] = entry

    print("\n=== EdgeViT presets (224x224, 1000 classes): predicted latency = sum of mapped parts")
    print(f"  {'phone':<7} {'preset':<12} {'pred ms':>8} {'+-std':>7} {'direct':>7} {'approx':>7} {'transf':>7} "
          f"{'extrap':>7}  reference")
    for r in presets:
        sh = r["share"]
        ref = ""
        if r["device"] == "s21":
            if r["preset"] in PAPER_S21_MS:
                ref = f"{PAPER_S21_MS[r['preset']]} ms (EdgeViT paper, S21)"
            elif r["preset"] in SECONDARY_SD888_MS:
                v, src = SECONDARY_SD888_MS[r["preset"]]
                ref = f"{v} ms ({src})"
            else:
                ref = "paper number not found"
        print(f"  {r['device']:<7} {r['preset']:<12} {r['total_ms']:>8.2f} {r['std_ms']:>7.2f} {sh['direct']:>7.3f} "
              f"{sh['approximate']:>7.3f} {sh['transferred']:>7.3f} {r['extrapolated_share']:>7.3f}  {ref}")
    print("  shares are fractions of the predicted total; 'extrap' = share from parts whose query lies outside the")
    print("  measured range of some feature. EdgeViT paper S21 numbers: not retrievable with the search tool, none printed.")
    if rank_rows:
        print(f"\n=== {len(cands)} random candidates of the default space (seed 0): predicted latency vs MACs")
        print(f"  {'phone':<7} {'tau':>7} {'rho':>7} {'min ms':>8} {'median':>8} {'max ms':>9} {'direct':>7} {'approx':>7} "
              f"{'transf':>7} {'pred s':>7}")
        for device, rc in rank_rows:
            lo, med, hi = rc["latency_ms_percentiles_0_50_100"]
            ms = rc["mean_share"]
            print(f"  {device:<7} {rc['kendall_tau_vs_macs']:>7.3f} {rc['spearman_vs_macs']:>7.3f} {lo:>8.1f} {med:>8.1f} "
                  f"{hi:>9.1f} {ms['direct']:>7.3f} {ms['approximate']:>7.3f} {ms['transferred']:>7.3f} "
                  f"{rc['predict_seconds']:>7.2f}")
    results["presets"] = presets
    results["reference"] = {"paper_s21_ms": PAPER_S21_MS,
                            "paper_note": "EdgeViT paper tables not retrievable with the search tool; none printed",
                            "secondary_sd888_ms": {k: {"ms": v, "source": s} for k, (v, s) in SECONDARY_SD888_MS.items()}}
    results["seconds"] = time.perf_counter() - started
    write_result("phone_blocks", results)


if __name__ == "__main__":
    main()
