"""Table: the phone model checked end to end where it can be, on a device of our own (LiteRT on this CPU).

The s21 model is nn-Meter's block table (TFLite on a phone) fitted by per-type regressors, EdgeViT
cut into parts mapped onto those blocks, and the parts summed. No phone is reachable here, but the
same chain runs on this CPU: nn-Meter's block types (same keys, same shapes, built as the tables
describe them: predictors/latency/phone/torch_blocks.py) are measured with LiteRT through the farm,
the project's phone predictor is fitted on that table exactly as on s21's
(``PhoneLatencyPredictor(device).fit(keys, ms)``), and its whole-network predictions are compared
with whole networks measured on the same device by the same protocol.

Printed:

1. the block table: keys per type, the per-call overhead subtracted, failures;
1b. with ``--extend-kernel 7`` and/or ``--weights``: conv blocks at kernel 7 (nn-Meter's grid stops at
   5; the search space's LocalAgg has 7), the device's weight traffic (ms per MB of weights a whole
   network fetches and a block timed alone keeps cached), and, with ``--table``, the bridge that puts
   them in the earlier table's unit; the mapping is then judged on the extended table, and with the
   weight traffic as one more part (rows ``v2 +k7`` and ``v2 +k7 +w``);
2. the block regressors' held-out random 20 % per type (as bench/phone_blocks.py prints for phones);
3. whole networks (the three presets, ``--random`` draws of the default space, and ``--held-out``
   constructor-like networks of search_space.held_out, drawn differently), per mapping version:
   the median measured/predicted ratio, then after one scalar rescale (the median ratio) the share
   within 10 % and 5 %, Kendall tau and Spearman rho; beside it MACs with one scalar, and a linear fit
   on MACs and params by 5-fold cross-validation on the measured networks (which the block model
   never sees); subsets, each with its own scalar: networks with a kernel-7 LocalAgg or without
   (``k7_local``, ``no_k7``), and networks whose attention stays within the table's attention
   blocks' side or goes beyond it (``attn_in``, ``attn_beyond``: nn-Meter's grid stops at 32 x 32
   tokens; a stage-0 global attention at 160-256 px attends over 40 x 40 to 64 x 64);
4. where the error sits: the mean share of the prediction from direct / approximate / transferred
   parts, and non-negative least squares of the measured latency on each group's predicted time
   (a coefficient of 1 means that group is right on average; 1.5 that it is 1.5x too low);
5. the presets: measured, predicted, shares;
6. part by part (``--parts``: the presets and that many random networks): every half-block measured
   on its own (``search_space.networks.HalfBlockNetwork``, overhead subtracted; the blocks of a stage
   are identical, so the first of each kind stands for the others) against its predicted time, summed
   by kind (stem, patch embedding, LocalAgg, attention half with r > 1 and r = 1, head), the sum
   of the parts against the whole network, and that sum as a predictor (with ``--weights``, plus the
   measured weight traffic): the ceiling of any model that sums blocks timed alone.

Run: ``python bench/phone_validation.py --device host-litert`` (needs the [tflite] extra; resumes
from the store: measured blocks and networks are not measured again). Writes
bench/results/phone_validation.json and the table bench/results/<device>_blocks.json.gz.
``--table bench/results/host-litert_blocks.json.gz --parts -1``: the block table an earlier run wrote,
used as it is; only the networks are measured (fresh draws with another ``--seed``: a check of a
mapping change on networks that did not suggest it); writes bench/results/phone_validation_table.json.
With ``--parts N`` the half-blocks are measured too (and the per-call overhead, once).
``--recorded RUN --repeat RUN2``: judged against the geometric mean of two runs of the same networks
(RUN2 written by ``--table`` with the same ``--seed``), with the first run as a predictor of the
second printed as the instrument's ceiling.
``--recorded bench/results/phone_validation.json``: no measurement; every mapping version refitted on
the written block table and judged on the networks' latencies recorded in that file (sections 3 and
4, and 6 from the half-blocks the file recorded; writes bench/results/phone_validation_recorded.json): how a mapping change is checked without
measuring again. With ``--table T`` too, the run's networks are judged with another device's
block table T (writes phone_validation_recorded[_<tag>]_cross.json).
"""
from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

import numpy as np
from scipy.optimize import nnls
from scipy.stats import kendalltau, spearmanr
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import KFold

from benchlib import RESULTS, setup, write_result

setup()
import search_space as ss  # noqa: E402
from device_farm import MeasurementStore, get_profile  # noqa: E402
from device_farm.measure import Farm, runtime_version  # noqa: E402
import predictors.latency.phone.model as phone_model  # noqa: E402
from predictors.latency.phone import PROVENANCES, PhoneLatencyPredictor, load_table  # noqa: E402
from predictors.latency.phone.device_table import (attention_extension_keys, kernel_extension_keys,  # noqa: E402
                                                   latency_of, quota,
                                                   measure_block_table, measure_weight_traffic, neighbour_keys,
                                                   read_table, stratified_keys, write_table)
from predictors.latency.phone.device_table import stored_row as stored  # noqa: E402
from predictors.latency.phone.blocks import parse_key  # noqa: E402
from predictors.latency.phone.grid import (attention_side, local_agg_kernel, stage_attention_side,  # noqa: E402,F401
                                           table_attention_side)
from predictors.latency.phone.mapping import MAPPINGS, map_candidate  # noqa: E402
from predictors.latency.phone.model import fp32_weight_mb  # noqa: E402
from predictors.latency.phone.torch_blocks import NullNetwork  # noqa: E402
from search_space.held_out import HELD_OUT_SEED, official_like  # noqa: E402
from search_space.networks import HalfBlockNetwork, half_blocks  # noqa: E402


def measure_once(farm, profile, net):
    """One measurement (the protocol itself runs up to four sessions before it calls one disturbed)."""
    return farm.measure(net, profile)


def networks(n_random: int, n_held: int, seed: int) -> list[tuple[str, ss.EdgeViTConfig]]:
    out = [("preset", ss.PRESETS[k]) for k in ("edgevit_xxs", "edgevit_xs", "edgevit_s")]
    out += [("random", c) for c in ss.DEFAULT_SPACE.sample_random(n_random, seed=seed)]
    out += [("held_out", c) for c in official_like(n_held, HELD_OUT_SEED)]
    seen, uniq = set(), []
    for s, c in out:
        if c.arch_id not in seen:
            seen.add(c.arch_id)
            uniq.append((s, c))
    return uniq


def rescaled(meas: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Figures after one scalar rescale (the median ratio; a rank needs none)."""
    ratio = meas / pred
    s = float(np.median(ratio))
    rel = np.abs(s * pred / meas - 1)
    return {"n": int(len(meas)), "median_ratio": s, "within_10": float(np.mean(rel <= 0.10)),
            "within_5": float(np.mean(rel <= 0.05)), "kendall_tau": float(kendalltau(meas, pred)[0]),
            "spearman": float(spearmanr(meas, pred)[0]), "rms_log": float(np.sqrt(np.mean(np.log(s * pred / meas) ** 2))),
            "max_rel": float(rel.max())}


#: One-sided standard normal quantiles (scipy.stats.norm.ppf(0.90) and ppf(0.95)).
Z90, Z95 = 1.2816, 1.6449


def coverage(meas: np.ndarray, pred: np.ndarray, std: np.ndarray) -> dict[str, float]:
    """Is the predictor's sigma honest? After the same scalar rescale as :func:`rescaled`, the share of
    networks inside the nominal intervals (two-sided 80% and 90%), below the one-sided 90% and 95%
    bounds (what a budget check ``mean + z sigma <= budget`` relies on), and the factor sigma would
    need for the two-sided 90% interval to hold 90% of them (1: honest; above 1: too narrow)."""
    s = float(np.median(meas / pred))
    z = (meas - s * pred) / np.maximum(s * std, 1e-9)
    return {"n": int(len(meas)), "two_sided_80": float(np.mean(np.abs(z) <= Z90)),
            "two_sided_90": float(np.mean(np.abs(z) <= Z95)), "below_90": float(np.mean(z <= Z90)),
            "below_95": float(np.mean(z <= Z95)), "median_abs_z": float(np.median(np.abs(z))),
            "sigma_factor_90": float(np.quantile(np.abs(z), 0.9) / Z95),
            "median_rel_sigma": float(np.median(std / pred))}


def coverage_row(label: str, c: dict, subset: str = "all") -> None:
    print(f"    {label:<26} {subset:<9} {c['n']:>3}  80%: {c['two_sided_80']:.0%}  90%: {c['two_sided_90']:.0%}  "
          f"below 90%: {c['below_90']:.0%}  below 95%: {c['below_95']:.0%}  sigma x{c['sigma_factor_90']:.2f} "
          f"for 90%  (sigma/mean {c['median_rel_sigma']:.2f})")


def linear_cv(meas: np.ndarray, X: np.ndarray, seed: int = 0) -> dict[str, float]:
    pred = np.zeros_like(meas)
    for tr, te in KFold(min(5, len(meas)), shuffle=True, random_state=seed).split(X):
        pred[te] = LinearRegression().fit(X[tr], meas[tr]).predict(X[te])
    pred = np.maximum(pred, 1e-3)
    rel = np.abs(pred / meas - 1)
    return {"n": int(len(meas)), "within_10": float(np.mean(rel <= 0.10)), "within_5": float(np.mean(rel <= 0.05)),
            "kendall_tau": float(kendalltau(meas, pred)[0]), "spearman": float(spearmanr(meas, pred)[0])}


def attribution(meas: np.ndarray, parts: list) -> dict:
    """Shares of the prediction by provenance, and NNLS coefficients of measured on each group's time."""
    prov = np.array([[sum(x.ms for x in p.parts if x.provenance == k) for k in PROVENANCES] for p in parts])
    share = (prov / prov.sum(axis=1, keepdims=True)).mean(axis=0)
    c_prov, _ = nnls(prov / meas[:, None], np.ones(len(meas)))
    groups = sorted({(x.block_type, x.provenance) for p in parts for x in p.parts})
    G = np.array([[sum(x.ms for x in p.parts if (x.block_type, x.provenance) == g) for g in groups] for p in parts])
    c_grp, _ = nnls(G / meas[:, None], np.ones(len(meas)))
    gshare = (G / G.sum(axis=1, keepdims=True)).mean(axis=0)
    return {"share": dict(zip(PROVENANCES, share.tolist())), "nnls_by_provenance": dict(zip(PROVENANCES, c_prov.tolist())),
            "groups": [{"block_type": g[0], "provenance": g[1], "share": float(s), "nnls": float(c)}
                       for g, s, c in zip(groups, gshare, c_grp)]}


def part_kind(cfg: ss.EdgeViTConfig, hb: str) -> str:
    if hb == "head":
        return "head"
    i = int(hb.split(".")[1])
    if hb.endswith("downsample"):
        return "stem" if i == 0 else "patch_embed"
    if hb.endswith("local_agg"):
        return "local_agg"
    return "attn_r1" if cfg.stages[i].sr_ratio == 1 else "attn_r>1"


def measure_parts(farm, profile, cfg: ss.EdgeViTConfig, overhead: float, version: str) -> dict[str, float]:
    """Measured ms of every half-block of ``cfg``: the first of each (stage, kind) measured, the rest copied."""
    out: dict[str, float] = {}
    first: dict[tuple[str, str], str] = {}
    for hb in half_blocks(cfg):
        parts = hb.split(".")
        key = (parts[1], parts[-1]) if hb.startswith("stages") and "blocks" in hb else (hb, "")
        if key in first:
            out[hb] = out[first[key]]
            continue
        first[key] = hb
        net = HalfBlockNetwork(cfg, hb)
        m = stored(farm, profile, net, version) or measure_once(farm, profile, net)
        ms, _ = latency_of(m, farm)
        if ms is None:
            raise RuntimeError(f"{cfg.arch_id} {hb}: {m.status} {m.error}")
        out[hb] = max(ms - overhead, 0.25 * ms)
    return out


def row(label: str, r: dict, subset: str = "all") -> None:
    """One line of the whole-network table (section 3)."""
    ratio = f"{r['median_ratio']:.3f}" if "median_ratio" in r else "-"
    print(f"  {label:<28} {subset:<9} {r['n']:>3} {ratio:>6} {r['within_10']:>6.1%} {r['within_5']:>6.1%} "
          f"{r['kendall_tau']:>6.3f} {r['spearman']:>6.3f}")


def has_kernel7_local_agg(cfg: ss.EdgeViTConfig) -> bool:
    """Whether a stage of ``cfg`` has a LocalAgg at kernel 7 (beyond nn-Meter's conv kernels 3 and 5)."""
    return local_agg_kernel(cfg) == 7


def attention_subsets(kept: list, table: dict) -> dict[str, np.ndarray]:
    """``attn_in`` / ``attn_beyond``: the networks whose attention stays within the table's attention
    blocks' side, or goes beyond it (nn-Meter's grid stops at 32 x 32 tokens)."""
    beyond = np.array([attention_side(c) > table_attention_side(table) for c in kept], bool)
    return {"attn_in": ~beyond, "attn_beyond": beyond}


def compare_tables(old_path: str, new_path: str) -> dict:
    """Two block tables of one device id, block by block on their common keys: the ratio new / old, and
    how well one factor explains it (on one CPU one factor should leave only the blocks' own repeat;
    factors that differ by block type say another machine). The twelfth round found the 2026-12-02
    "AMD EPYC" table to be another machine this way."""
    old, new = read_table(old_path), read_table(new_path)
    keys = sorted(set(old) & set(new))
    if not keys:
        raise SystemExit(f"--compare-tables: {old_path} and {new_path} share no block key")
    r = np.array([new[k] / old[k] for k in keys])
    dev = np.abs(r / np.median(r) - 1)
    out = {"old": old_path, "new": new_path, "n": len(keys), "ratio_median": float(np.median(r)),
           "ratio_p10": float(np.percentile(r, 10)), "ratio_p90": float(np.percentile(r, 90)),
           "within_10_after_factor": float(np.mean(dev <= 0.10)), "median_dev_after_factor": float(np.median(dev)),
           "p90_dev_after_factor": float(np.percentile(dev, 90)), "per_type": {}}
    print(f"{len(keys)} common blocks; new / old ratio median {out['ratio_median']:.3f} (p10 {out['ratio_p10']:.3f}, "
          f"p90 {out['ratio_p90']:.3f}); after that one factor {out['within_10_after_factor']:.1%} within 10 %, "
          f"median {out['median_dev_after_factor']:.1%}, p90 {out['p90_dev_after_factor']:.1%}")
    for t in sorted({k.split("_", 1)[0] for k in keys}):
        rt = np.array([new[k] / old[k] for k in keys if k.split("_", 1)[0] == t])
        out["per_type"][t] = {"n": len(rt), "ratio_median": float(np.median(rt))}
        print(f"  {t:<10} n={len(rt):>3} ratio median {np.median(rt):.3f} (p10 {np.percentile(rt, 10):.3f}, "
              f"p90 {np.percentile(rt, 90):.3f})")
    return out


def grid_subsets(kept: list, table: dict) -> dict[str, np.ndarray]:
    """The attention subsets and the kernel-7 ones (nn-Meter's conv blocks have kernels 3 and 5 only),
    and ``in_grid``: neither, the networks a phone table covers without extrapolating (twelfth round)."""
    k7 = np.array([has_kernel7_local_agg(c) for c in kept], bool)
    attn = attention_subsets(kept, table)
    return {"k7_local": k7, "no_k7": ~k7, **attn, "in_grid": ~k7 & attn["attn_in"]}


def subset_rows(label: str, truth: np.ndarray, pred: np.ndarray, subsets: dict[str, np.ndarray], out: dict) -> None:
    """``pred`` judged on every subset of >= 3 networks (each with its own scalar): into ``out[f"{label}_{name}"]``, printed."""
    for name, idx in subsets.items():
        if idx.sum() >= 3:
            out[f"{label}_{name}"] = rescaled(truth[idx], pred[idx])
            row("", out[f"{label}_{name}"], name)


def variants(mappings: list[str], table: dict, *extensions: dict | None) -> dict[str, tuple[str, dict, float]]:
    """label -> (mapping, block table, weight ms per MB): every mapping on the table as it is; with an
    extension (section 1b), the last mapping on the extended table, then with the weight traffic too
    (one pair of rows per extension: a run's own, and one measured later, ``--extension``)."""
    out = {m: (m, table, 0.0) for m in mappings}
    for extension in extensions:
        if not extension:
            continue
        m = mappings[-1]
        ext_table = extension.get("table", table)
        if extension.get("table_label"):  # what an extended --table already held, as that run named it
            label = f"{m} {extension['table_label']}"
        else:
            label = m + (f" +k{extension['kernel']['kernel']}" if "kernel" in extension else "")
        label += f" +d{len(extension['dense']['keys'])}" if "dense" in extension else ""
        label += f" +a{len(extension['attention']['keys'])}" if "attention" in extension else ""
        if label in out or label + " +w" in out:  # a second run of the same extension: named by its run
            label += f" ({extension.get('run', len(out))})"
        if label != m:
            out[label] = (m, ext_table, 0.0)
        if "weight_traffic" in extension:
            out[label + " +w"] = (m, ext_table, extension["weight_traffic"]["ms_per_mb_table_unit"])
    return out


def judge(device: str, table: dict, kept: list, meas: np.ndarray, sets: np.ndarray, mapping: str,
          weight: float = 0.0, base: dict | None = None) -> dict:
    """One mapping version fitted on ``table`` and judged on the measured networks (all, random, held-out);
    ``weight``: the device's weight traffic (ms per MB, in the table's unit), 0 for nn-Meter's sum of blocks;
    ``base``: the table the attention subsets are drawn on (default ``table``; an extended table's are
    the un-extended one's, so every row of a run judges the same subsets)."""
    pred = PhoneLatencyPredictor(device, mapping=mapping, weight_ms_per_mb=weight).fit(list(table), list(table.values()))
    parts = pred.predict_parts(kept)
    p = np.array([x.total_ms for x in parts])
    sd = np.array([x.std_ms for x in parts])
    entry = {"all": rescaled(meas, p), "attribution": attribution(meas, parts), "predicted_ms": p.tolist(),
             "predicted_std_ms": sd.tolist(), "coverage": {"all": coverage(meas, p, sd)},
             "heldout_blocks": {t: h["model"] for t, h in pred.heldout_.items()},
             "kinds": {t: r.kind_ for t, r in pred.regressors_.items()}}
    for s in ("random", "held_out"):
        idx = sets == s
        entry[s] = rescaled(meas[idx], p[idx])
    for name, idx in grid_subsets(kept, base or table).items():
        if idx.sum() >= 3:
            entry[name] = rescaled(meas[idx], p[idx])
            entry["coverage"][name] = coverage(meas[idx], p[idx], sd[idx])
    return entry


PART_KINDS = ("stem", "patch_embed", "local_agg", "attn_r>1", "attn_r1", "head")


def part_by_part(device: str, vs: dict, chosen: list, measured_parts: dict, whole: dict, scalars: dict,
                 weight_run: float = 0.0) -> dict:
    """Section 6: every variant's half-block predictions (times its network-level scalar) against the
    measured half-blocks, summed by kind; each network's measured half-blocks against its whole; and
    the sum of the measured half-blocks as a predictor (the ceiling of any sum of blocks timed alone),
    and with ``weight_run`` (ms per MB in the unit of the measured half-blocks) plus the weight traffic."""
    out = {"arch_ids": [c.arch_id for c in chosen], "measured": measured_parts, "whole_ms": whole, "mappings": {}}
    for label, s_ in scalars.items():
        mapping, table, weight = vs[label]
        pred = PhoneLatencyPredictor(device, mapping=mapping, weight_ms_per_mb=weight).fit(list(table), list(table.values()))
        per_kind = {k: [0.0, 0.0] for k in PART_KINDS}
        rows_ = []
        for c in chosen:
            hb_pred = pred.predict_parts([c])[0].half_blocks()
            for hb, ms in measured_parts[c.arch_id].items():
                k = part_kind(c, hb)
                per_kind[k][0] += ms
                per_kind[k][1] += hb_pred.get(hb, 0.0)
            rows_.append({"arch_id": c.arch_id, "whole_ms": whole[c.arch_id],
                          "sum_parts_ms": sum(measured_parts[c.arch_id].values()), "predicted_ms": sum(hb_pred.values()),
                          "half_blocks_predicted_ms": hb_pred})
        # LocalAgg at kernel 7, beyond nn-Meter's conv grid (kernels 3 and 5): each half-block's miss
        k7 = [r["half_blocks_predicted_ms"][hb] * s_ / ms for c, r in zip(chosen, rows_)
              for hb, ms in measured_parts[c.arch_id].items()
              if part_kind(c, hb) == "local_agg" and c.stages[int(hb.split(".")[1])].kernel_size == 7
              and hb.endswith("blocks.0.local_agg")]
        out_k7 = {"pred_over_meas": k7, "rms_log": float(np.sqrt(np.mean(np.log(k7) ** 2))) if k7 else None}
        # attention over more tokens than the un-extended table's attention blocks (nn-Meter's grid: 32 x 32), the
        # same halves for every variant: each half's miss
        side = table_attention_side(next(iter(vs.values()))[1])
        wide, seen = [], set()
        for c, r in zip(chosen, rows_):
            for hb, ms in measured_parts[c.arch_id].items():
                i = int(hb.split(".")[1]) if hb.startswith("stages.") else -1
                if hb.endswith(".self_attn") and (c.arch_id, i) not in seen and stage_attention_side(c, i) > side:
                    seen.add((c.arch_id, i))  # the stage's blocks are identical: its first stands for them
                    wide.append(r["half_blocks_predicted_ms"][hb] * s_ / ms)
        out_wide = {"pred_over_meas": wide, "rms_log": float(np.sqrt(np.mean(np.log(wide) ** 2))) if wide else None}
        out["mappings"][label] = {"scalar": s_, "per_kind": per_kind, "networks": rows_, "local_agg_kernel7": out_k7,
                                  "attention_beyond_table": out_wide}
        print(f"  {label} (predicted x {s_:.3f}, the network-level scalar)")
        print(f"    {'kind':<12} {'measured':>9} {'predicted':>9} {'pred/meas':>9}")
        for k, (mm, pp) in per_kind.items():
            if mm > 0:
                print(f"    {k:<12} {mm:>9.2f} {pp * s_:>9.2f} {pp * s_ / mm:>9.3f}")
        if k7:
            print(f"    LocalAgg at kernel 7, first of each stage ({len(k7)}): pred/meas "
                  f"{', '.join(f'{v:.2f}' for v in k7)}; RMS log error {out_k7['rms_log']:.2f}")
        if wide:
            print(f"    attention beyond the table's {side} x {side} tokens, first of each stage ({len(wide)}): pred/meas "
                  f"{', '.join(f'{v:.2f}' for v in wide)}; RMS log error {out_wide['rms_log']:.2f}")
    for r in out["mappings"][next(iter(scalars))]["networks"]:
        print(f"  {r['arch_id']}: whole {r['whole_ms']:.2f} ms, sum of its measured half-blocks {r['sum_parts_ms']:.2f} ms "
              f"({r['sum_parts_ms'] / r['whole_ms'] - 1:+.1%})")
    w = np.array([whole[c.arch_id] for c in chosen])
    summed = np.array([sum(measured_parts[c.arch_id].values()) for c in chosen])
    mb = np.array([fp32_weight_mb(c) for c in chosen])
    per_mb = (w - summed) / mb
    out["whole_minus_sum_ms_per_mb"] = per_mb.tolist()
    print(f"  the whole minus the sum of its half-blocks, per MB of fp32 weights: median {np.median(per_mb):.3f} ms/MB "
          f"({per_mb.min():.3f} to {per_mb.max():.3f})")
    out["sum_of_measured_parts"] = rescaled(w, summed)
    print(f"  the sum of the measured half-blocks as a predictor of the whole, one scalar: {len(w)} networks, "
          f"{out['sum_of_measured_parts']['within_10']:.1%} within 10 %, {out['sum_of_measured_parts']['within_5']:.1%} "
          f"within 5 %, tau {out['sum_of_measured_parts']['kendall_tau']:.3f}")
    if weight_run > 0:
        r = out["sum_of_measured_parts_plus_weights"] = rescaled(w, summed + weight_run * mb)
        print(f"  ... plus the measured weight traffic ({weight_run:.3f} ms/MB x fp32 weights): {r['within_10']:.1%} "
              f"within 10 %, {r['within_5']:.1%} within 5 %, tau {r['kendall_tau']:.3f}")
    return out


def table_cpu(table: str) -> tuple[str | None, str | None] | None:
    """The CPU that measured a block table, from the results JSON of the run that wrote it (None: no
    such run in bench/results, e.g. a table from ``nas farm calibrate --blocks``)."""
    for f in sorted(RESULTS.glob("*.json")):
        try:
            d = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        t = d.get("table") if isinstance(d, dict) else None
        if not isinstance(t, dict) or t.get("path") != table:
            continue
        measured = t.get("measured_in_this_run")
        if measured is None:  # written before the field: such a run measured its table unless given one
            measured = "--table" not in str(d.get("command", ""))
        if measured:
            return _cpu_of(d)
    return None


def _cpu_of(doc: dict) -> tuple[str | None, str | None]:
    """(model name, exact id) of the CPU a results document was measured on (the id: since 2026-12-03)."""
    m = doc.get("machine") or {}
    return m.get("cpu"), m.get("cpu_id")


def one_cpu(sources: dict[str, tuple[str | None, str | None] | None]) -> None:
    """Refuse to judge measurements of several CPUs as one device's (``--cross-device`` allows it).

    Each session may run on another machine of this kind; on 2026-12-03 one changed from an Intel
    Xeon to an AMD EPYC between sessions unnoticed, and a Xeon block table was judged against AMD
    networks as if it were a same-device check (bench/RESULTS.md, the correction after the tenth
    round). The results' ``machine.cpu`` says which CPU measured what, ``machine.cpu_id`` (where every
    file has it) exactly: two "AMD EPYC" of different generations differ only there."""
    known = {name: c for name, c in sources.items() if c and c[0]}
    exact = all(c[1] for c in known.values())
    known = {name: c[1] if exact else c[0] for name, c in known.items()}
    if len(set(known.values())) > 1:
        raise SystemExit("--recorded: measured on different CPUs (" + "; ".join(f"{n}: {c}" for n, c in known.items())
                         + "): not one device; --cross-device judges them anyway")


def recorded(path: Path, mappings: list[str], table_path: str | None = None, repeat: list[Path] | None = None,
             extensions: list[Path] | None = None, suffix: str = "", cross_device: bool = False) -> None:
    """Every mapping judged on a written run's block table and network latencies (no measurement).

    ``table_path``: another block table (another device's) in place of the run's own: how well one
    device's table predicts the networks measured on another. ``repeat``: a second run that measured
    the same networks on the same device later (``--table`` with the same ``--seed``): the truth is
    then the geometric mean of the two runs on the networks both measured, and the first run judged
    as a predictor of the second (the *instrument* row) is printed beside the mappings: the ceiling
    no predictor can pass. ``extensions``: JSONs of ``--extension-only`` runs on the same device
    (each an extended table and weight traffic, in the block table's unit): judged beside the run's own.
    Every one of them must come from one CPU (:func:`one_cpu`), the run's own table included (not an
    explicit ``table_path``, which is another device's by definition), unless ``cross_device``."""
    run = json.loads(path.read_text())
    device = run["device"]
    if not cross_device:
        cpus = {str(path): _cpu_of(run)}
        if not table_path:
            cpus[run["table"]["path"]] = table_cpu(run["table"]["path"])
        for f in [*(repeat or []), *(extensions or [])]:
            cpus[str(f)] = _cpu_of(json.loads(f.read_text()))
        one_cpu(cpus)
    table = read_table(table_path or RESULTS.parent.parent / run["table"]["path"])
    was = parser().parse_args(shlex.split(run["command"])[2:])  # the networks that run drew
    nets = {c.arch_id: (s, c) for s, c in networks(was.random, was.held_out, was.seed)}
    ids = run["networks"]["arch_ids"]
    missing = [a for a in ids if a not in nets]
    if missing:
        raise SystemExit(f"--recorded: {len(missing)} networks of {path} are not those its command draws "
                         f"(e.g. {missing[0]}): was it written by another version of this script?")
    sets = np.array(run["networks"]["sets"])
    meas = np.array(run["networks"]["latency_ms"])
    instrument = None
    if repeat:
        others = []
        for rp in repeat:
            again = json.loads(rp.read_text())
            if again["device"] != device:
                raise SystemExit(f"--repeat: {rp} measured {again['device']}, {path} measured {device}: not a repeat")
            others.append(dict(zip(again["networks"]["arch_ids"], again["networks"]["latency_ms"])))
        both = [i for i, a in enumerate(ids) if all(a in o for o in others)]
        if len(both) < 3:
            raise SystemExit(f"--repeat: {len(both)} of the {len(ids)} networks of {path} were measured by every "
                             "repeat (needs >= 3)")
        runs_ms = np.array([meas[both]] + [[o[ids[i]] for i in both] for o in others])
        instrument = rescaled(runs_ms[1], runs_ms[0])  # run 1 as a predictor of run 2
        # Each run is in its own store's unit (its reference candles): a factor per run, which the
        # geometric mean carries as one factor and the one-scalar rescale removes.
        ids, sets, meas = [ids[i] for i in both], sets[both], np.exp(np.log(runs_ms).mean(axis=0))
    kept = [nets[a][1] for a in ids]
    macs = np.array([ss.cost(c).macs for c in kept], float)
    params = np.array([ss.cost(c).params for c in kept], float)
    print(f"{len(kept)} networks measured on {device} ({run['date']}), {len(table)} blocks; no new measurement")
    if instrument is not None:
        print(f"  truth: the geometric mean of this run and {', '.join(str(r) for r in repeat)}, the {len(kept)} "
              "networks every run measured")
    print(f"  {'predictor':<28} {'set':<9} {'n':>3} {'ratio':>6} {'<=10%':>6} {'<=5%':>6} {'tau':>6} {'rho':>6}")
    out = {"recorded": str(path), "recorded_date": run["date"], "device": device, "mappings": {},
           "baselines": {"macs": rescaled(meas, macs), "linear_macs_params_cv5": linear_cv(meas, np.c_[macs, params])}}
    ext = None
    if run.get("extension") and not table_path:  # the run's extended table and weight traffic
        ext = dict(run["extension"], table=read_table(RESULTS.parent.parent / run["extension"]["table_path"]))
    later = []
    runs = [x.stem.split("extension_")[-1] for x in extensions or []]  # each extension run's tag
    for extension, run_tag in zip(extensions or [], runs):
        e = json.loads(extension.read_text())
        if e["device"] != device:
            raise SystemExit(f"--extension: {extension} measured {e['device']}, {path} measured {device}")
        later.append(dict(e["extension"], table=read_table(RESULTS.parent.parent / e["extension"]["table_path"]),
                          run=run_tag))
    if extensions:
        out["extension"] = [str(x) for x in extensions]
    vs = variants(mappings, table, ext, *later)
    for label, (mapping, tab, weight) in vs.items():
        e = out["mappings"][label] = judge(device, tab, kept, meas, sets, mapping, weight, base=table)
        row(f"phone model, {label}", e["all"])
        for s in ("random", "held_out", "k7_local", "no_k7", "attn_in", "attn_beyond", "in_grid"):
            if s in e:
                row("", e[s], s)
    row("MACs (one scalar)", out["baselines"]["macs"])
    subsets = grid_subsets(kept, table)
    subset_rows("macs", meas, macs, subsets, out["baselines"])
    row("linear MACs+params (CV)", out["baselines"]["linear_macs_params_cv5"])
    if instrument is not None:
        out["instrument"], out["repeat"] = instrument, [str(r) for r in repeat]
        row("instrument (run 1 -> run 2)", instrument)
        subset_rows("instrument", runs_ms[1], runs_ms[0], subsets, out)
    print("\nis sigma honest? networks inside the predictor's intervals after the same scalar rescale")
    for label in vs:
        cov = out["mappings"][label]["coverage"]
        for s in ("all", "in_grid", "k7_local", "attn_beyond"):
            if s in cov:
                coverage_row(label if s == "all" else "", cov[s], s)
    print("\nwhere the error sits (share of the prediction; NNLS coefficient: measured ~ sum of c x part)")
    for label in vs:
        a = out["mappings"][label]["attribution"]
        print(f"  {label}: " + ", ".join(f"{k} {a['share'][k]:.2f} (c={a['nnls_by_provenance'][k]:.2f})"
                                         for k in PROVENANCES))
    if "parts" in run and instrument is None:  # section 6 again, from the half-blocks that run measured
        chosen = [nets[a][1] for a in run["parts"]["arch_ids"]]
        whole = {a: float(meas[ids.index(a)]) for a in run["parts"]["arch_ids"]}
        print(f"\npart by part on {len(chosen)} networks (half-blocks measured by that run)")
        out["parts"] = part_by_part(device, vs, chosen, run["parts"]["measured"], whole,
                                    {m: out["mappings"][m]["all"]["median_ratio"] for m in vs},
                                    (ext or {}).get("weight_traffic", {}).get("ms_per_mb", 0.0))
    if table_path:
        out["table_override"] = str(table_path)
    # named by the run's tag, or else by the recorded file's own name, so two untagged runs never share a file
    own = was.tag or path.stem.removeprefix("phone_validation").strip("_")
    write_result("phone_validation_recorded" + (f"_{own}" if own else "") + ("_cross" if table_path else "")
                 + ("_repeat" if repeat else "") + "".join(f"_{r}" for r in runs) + suffix,
                 {**out, "own_attention_kind": phone_model.OWN_ATTENTION_KIND})


def design_queries(device: str, table: dict, seed: int, n_design: int, judged: set[str]) -> tuple[list, np.ndarray]:
    """The blocks ``n_design`` random candidates (``seed``; none of the ``judged`` arch ids) query, and
    each one's predicted time on ``table``: where a device table needs measured blocks."""
    design = [c for c in ss.DEFAULT_SPACE.sample_random(n_design, seed=seed) if c.arch_id not in judged]
    queries = [p.spec for c in design for p in map_candidate(c) if p.spec is not None]
    return queries, PhoneLatencyPredictor(device).fit(list(table), list(table.values())).predict_blocks(queries)


def extend(farm, profile, table: dict, args) -> dict:
    """Section 1b: the table extended where nn-Meter's grid stops, and the device's weight traffic.

    ``--extend-kernel K``: conv blocks at kernel K (:func:`kernel_extension_keys`; nn-Meter measured
    3 and 5, the search space also has 7). ``--weights``: the cost per MB of weights a whole network
    fetches and a block timed alone keeps cached (:func:`measure_weight_traffic`). Both are measured in
    this run's store; a table an earlier run wrote (``--table``) is in that run's unit (every store
    fixes its own reference candles), so its conv blocks are measured again first and the median
    ratio, the *bridge*, brings the new values into the table's unit. The extended table is written
    beside the run's files."""
    out: dict = {"table_label": args.table_label} if args.table_label else {}
    factor = 1.0
    dense: list[str] = []
    attn: list[str] = []
    if args.densify or args.extend_attention:  # one design set (and one fit) for both
        judged = {c.arch_id for _, c in networks(args.random, args.held_out, args.seed)}
        queries, weights = design_queries(args.device, table, args.densify_seed, args.densify_design, judged)
        # the nn-Meter keys (s21's key set, conv also at kernels beyond it) nearest the queries, and the
        # attention blocks exactly as queried; neither already in the table
        dense = neighbour_keys(list(load_table("s21")), queries, args.densify, weights=weights, exclude=list(table))
        attn = attention_extension_keys(queries, args.extend_attention, weights=weights, exclude=list(table))
    if args.table:
        new_types = {k.split("_", 1)[0] for k in dense + attn}
        types = sorted(new_types | ({"conv"} if args.extend_kernel or not new_types else set()))
        per = max(1, args.bridge_n // len(types))
        keys = [k for t in types for k in sorted(k for k in table if k.startswith(t + "_"))[:per]]
        print(f"\n[1b] bridge: {len(keys)} of the table's blocks ({', '.join(types)}) measured again in this run's store",
              flush=True)
        again, inf = measure_block_table(farm, profile, keys)
        ratio = np.array([again[k] / table[k] for k in keys if k in again])
        factor = float(np.median(ratio))
        dev = np.abs(ratio / factor - 1)
        by_type = {t: float(np.median([again[k] / table[k] for k in keys if k in again and k.startswith(t + "_")]))
                   for t in types}
        out["bridge"] = {"n": int(len(ratio)), "factor": factor, "median_rel": float(np.median(dev)),
                         "p90_rel": float(np.quantile(dev, 0.9)), "disturbed": len(inf["disturbed"]),
                         "factor_by_type": by_type}
        print(f"  this run / the table: x{factor:.3f} (by type: {', '.join(f'{t} x{v:.3f}' for t, v in by_type.items())}); "
              f"after that factor the blocks repeat to {np.median(dev):.1%} median, {np.quantile(dev, 0.9):.1%} p90 "
              f"({len(inf['disturbed'])} disturbed)")
    ext_table = dict(table)
    k_beyond = sorted(k for k in table if k.startswith("conv_") and parse_key(k).kernel not in (3, 5))
    if k_beyond and not args.extend_kernel:  # an extended table given as --table: say so in the labels
        out["kernel"] = {"kernel": max(parse_key(k).kernel for k in k_beyond), "keys": k_beyond,
                         "measured_by": f"an earlier run ({args.table})"}
    if args.extend_kernel:
        keys = kernel_extension_keys(list(load_table("s21")), args.extend_kernel, args.extend_n)
        print(f"[1b] {len(keys)} conv blocks at kernel {args.extend_kernel} (beyond nn-Meter's grid)", flush=True)
        new, inf = measure_block_table(farm, profile, keys)
        ext_table.update({k: v / factor for k, v in new.items()})
        out["kernel"] = {"kernel": args.extend_kernel, "keys": sorted(new), "failed": inf["failed"],
                         "disturbed": inf["disturbed"]}
    design = {"n": args.densify_design, "seed": args.densify_seed}
    for name, keys, what in (
            ("dense", dense, "blocks nearest the queries of {n} design networks (seed {seed}): the density a "
                             "phone's table has where EdgeViT queries it"),
            ("attention", attn, "attention blocks as {n} design networks (seed {seed}) query them: own head "
                                "count, no position bias, v_scale 1, sides beyond nn-Meter's 32")):
        if not keys:
            continue
        print(f"[1b] {len(keys)} " + what.format(**design), flush=True)

        def progress(key, m, i, n):
            if i % 25 == 0 or m.status != "ok" or name == "attention":  # attention blocks: slow, each shown
                print(f"  block {i}/{n} {key}: {m.status}", flush=True)

        new, inf = measure_block_table(farm, profile, keys, on_result=progress)
        ext_table.update({k: v / factor for k, v in new.items()})
        out[name] = {"keys": sorted(new), "failed": inf["failed"], "disturbed": inf["disturbed"], "design": design}
    if args.weights:
        w = measure_weight_traffic(farm, profile)
        w["ms_per_mb_table_unit"] = w["ms_per_mb"] / factor
        out["weight_traffic"] = w
        print(f"[1b] weight traffic: chains of {', '.join(w['latency_ms'])} Linear layers: "
              f"{w['cached_ms_per_layer'] * 1e3:.1f} us per cached layer, {w['streamed_ms_per_layer'] * 1e3:.1f} us per "
              f"streamed one ({w['layer_mb']:.3f} MB): {w['ms_per_mb']:.3f} ms per MB of weights")
    tag = f"_{args.tag}" if args.tag else ""
    path = write_table(RESULTS / f"{args.device}{tag}_extended_blocks.json.gz", ext_table)
    out["table_path"] = str(path.relative_to(RESULTS.parent.parent))
    out["table"] = ext_table
    return out


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="host-litert")
    ap.add_argument("--store", type=Path, default=Path("runs/farm/measurements.sqlite"))
    ap.add_argument("--per-type", type=int, default=40, help="keys per large block type (conv, transds, transattn, transffn)")
    ap.add_argument("--small", type=int, default=12, help="keys of firstconv and of mbpool")
    ap.add_argument("--random", type=int, default=60)
    ap.add_argument("--held-out", type=int, default=9)
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--mappings", nargs="+", default=list(MAPPINGS))
    ap.add_argument("--parts", type=int, default=2, help="random networks measured half-block by half-block (besides "
                                                          "the presets; -1: no part-by-part check)")
    ap.add_argument("--table", help="a block table an earlier run wrote (e.g. bench/results/host-litert_blocks.json.gz): "
                                    "used as it is, only the networks are measured; writes phone_validation_table.json")
    ap.add_argument("--extend-kernel", type=int, choices=(7,), help="also measure conv blocks at this kernel, "
                                                                     "beyond nn-Meter's grid (section 1b)")
    ap.add_argument("--extend-n", type=int, default=24, help="conv blocks measured at --extend-kernel")
    ap.add_argument("--bridge-n", type=int, default=16, help="with --table and section 1b: the table's conv blocks "
                                                              "measured again to put new blocks in its unit")
    ap.add_argument("--weights", action="store_true", help="measure the device's weight traffic (ms per MB) and "
                                                           "judge the model with it too (section 1b)")
    ap.add_argument("--densify", type=int, default=0, help="section 1b: measure this many nn-Meter keys nearest the "
                                                           "blocks design networks query (neighbour_keys)")
    ap.add_argument("--extend-attention", type=int, default=0, help="section 1b: measure this many attention blocks as "
                                                                    "design networks query them (own heads, v_scale 1, "
                                                                    "sides beyond 32; attention_extension_keys)")
    ap.add_argument("--densify-seed", type=int, default=1000, help="seed of the design networks of --densify and "
                                                                   "--extend-attention")
    ap.add_argument("--densify-design", type=int, default=200, help="design networks of --densify and --extend-attention")
    ap.add_argument("--table-label", help="with --table from an earlier extension: what it holds beyond nn-Meter's "
                                          "keys, for the printed labels (e.g. '+k7 +d150')")
    ap.add_argument("--extension-only", action="store_true", help="stop after section 1b; writes "
                                                                  "phone_validation_extension[_TAG].json for --extension")
    ap.add_argument("--extension", type=Path, nargs="+", help="with --recorded: --extension-only runs' JSONs, each "
                                                              "judged beside the run's own extension")
    ap.add_argument("--own-attention-kind", choices=("hybrid", "rate"),
                    help="the regressor kind for attention blocks a table measured itself (_h, _nopos keys; default "
                         "the shipped OWN_ATTENTION_KIND, hybrid); the tenth round compared the two on draws measured on "
                         "another CPU than the tables (cross-device: see bench/RESULTS.md, the correction after it)")
    ap.add_argument("--tag", help="suffix of the files written (another machine's run beside the stored one: --tag xeon)")
    ap.add_argument("--recorded", type=Path, help="no measurement: judge every mapping on the block table and the "
                                                   "network latencies a run wrote (its phone_validation.json)")
    ap.add_argument("--cross-device", action="store_true", help="with --recorded: judge runs, repeats, extensions "
                                                                    "and the run's table measured on different CPUs "
                                                                    "(refused otherwise: not a same-device check)")
    ap.add_argument("--compare-tables", nargs=2, metavar=("OLD", "NEW"), help="no measurement: two block tables "
                    "of one device id, block by block (one CPU, or another machine?); writes "
                    "phone_validation_tables[_TAG].json")
    ap.add_argument("--repeat", type=Path, nargs="+", help="with --recorded: later runs of the same networks on the same "
                                                            "device (truth: the geometric mean of all; the instrument "
                                                            "row: the first run against the second)")
    return ap


def main() -> None:
    args = parser().parse_args()
    if args.own_attention_kind:  # the kind every predictor of this run gives a table's own attention blocks
        phone_model.OWN_ATTENTION_KIND = args.own_attention_kind
    if args.compare_tables:
        write_result("phone_validation_tables" + (f"_{args.tag}" if args.tag else ""), compare_tables(*args.compare_tables))
        return
    if args.recorded:
        recorded(args.recorded, args.mappings, args.table, args.repeat, args.extension,
                 f"_own_{args.own_attention_kind}" if args.own_attention_kind else "", args.cross_device)
        return

    profile = get_profile(args.device)
    farm = Farm(MeasurementStore(args.store))
    t0 = time.perf_counter()
    if args.table:
        table = read_table(args.table)
        info = {"overhead_ms": None, "failed": {}, "disturbed": [], "runtime_version": runtime_version(profile)}
        if args.parts >= 0:  # half-blocks are measured here: subtract this run's per-call overhead from them
            null = NullNetwork()
            m0 = stored(farm, profile, null, info["runtime_version"]) or measure_once(farm, profile, null)
            if m0.status == "failed":
                raise SystemExit(f"--parts: the per-call overhead model did not measure on {profile.id}: {m0.error}")
            info["overhead_ms"] = float(m0.latency_ms if m0.status == "ok" else m0.median_ms)
        table_path, t_blocks = Path(args.table), 0.0
    else:
        per_type = quota(args.per_type, args.small)
        keys = stratified_keys(list(load_table("s21")), per_type, seed=0)

        def progress(key, m, i, n):
            if i % 25 == 0 or m.status != "ok":
                print(f"  block {i}/{n} {key}: {m.status} {m.latency_ms if m.status == 'ok' else m.error}", flush=True)

        table, info = measure_block_table(farm, profile, keys, on_result=progress)
        tag = f"_{args.tag}" if args.tag else ""
        table_path = write_table(RESULTS / f"{args.device}{tag}_blocks.json.gz", table).relative_to(RESULTS.parent.parent)
        t_blocks = time.perf_counter() - t0
    counts = {}
    for k in table:
        counts[k.split("_", 1)[0]] = counts.get(k.split("_", 1)[0], 0) + 1
    if args.table:
        print(f"\n[1] block table {args.table}: {len(table)} blocks {counts} (measured by an earlier run)")
    else:
        print(f"\n[1] block table of {args.device}: {len(table)} blocks {counts}; per-call overhead "
              f"{info['overhead_ms'] * 1e3:.1f} us subtracted; {len(info['disturbed'])} disturbed (candle-normalised "
              f"value used), {len(info['failed'])} failed; wrote {table_path}")
    for k, why in info["failed"].items():
        print(f"    failed {k}: {why}")

    results: dict = {"device": args.device, "profile": profile.calibration_summary(), "table": {
        "n": len(table), "per_type": counts, "overhead_ms": info["overhead_ms"], "failed": info["failed"],
        "disturbed": info["disturbed"], "runtime_version": info["runtime_version"], "path": str(table_path),
        "measured_in_this_run": not args.table}}
    ext = None
    if args.extend_kernel or args.weights or args.densify or args.extend_attention:
        ext = extend(farm, profile, table, args)
        results["extension"] = {k: v for k, v in ext.items() if k != "table"}
    if args.extension_only:
        if not ext:
            raise SystemExit("--extension-only: nothing to measure; add --extend-kernel, --extend-attention, --weights "
                             "or --densify")
        results["seconds"] = {"total": time.perf_counter() - t0}
        write_result("phone_validation_extension" + (f"_{args.tag}" if args.tag else ""), results)
        return

    nets = networks(args.random, args.held_out, args.seed)
    meas, kept, sets, clean = [], [], [], []
    for i, (s, cfg) in enumerate(nets):
        m = stored(farm, profile, cfg, info["runtime_version"]) or measure_once(farm, profile, cfg)
        ms, ok = latency_of(m, farm)
        if ms is None:
            print(f"  network {cfg.arch_id} ({s}): {m.status} {m.error}")
            continue
        meas.append(ms)
        kept.append(cfg)
        sets.append(s)
        clean.append(ok)
        if (i + 1) % 10 == 0:
            print(f"  networks {i + 1}/{len(nets)}", flush=True)
    meas = np.array(meas)
    sets = np.array(sets)
    macs = np.array([ss.cost(c).macs for c in kept], float)
    params = np.array([ss.cost(c).params for c in kept], float)
    print(f"\n[3] {len(kept)} networks measured on {args.device} ({', '.join(f'{k} {int(np.sum(sets == k))}' for k in ('preset', 'random', 'held_out'))}),"
          f" {meas.min():.1f}-{meas.max():.1f} ms; {len(clean) - sum(clean)} of them disturbed (candle-normalised value used)")
    header = f"  {'predictor':<28} {'set':<9} {'n':>3} {'ratio':>6} {'<=10%':>6} {'<=5%':>6} {'tau':>6} {'rho':>6}"
    print(header)
    results["networks"] = {"n": len(kept), "latency_ms": meas.tolist(), "sets": sets.tolist(),
                           "arch_ids": [c.arch_id for c in kept], "clean": clean}
    results["baselines"] = {"macs": rescaled(meas, macs), "linear_macs_params_cv5": linear_cv(meas, np.c_[macs, params])}
    results["mappings"] = {}

    fits = {}
    vs = variants(args.mappings, table, ext)
    for label, (mapping, tab, weight) in vs.items():
        t1 = time.perf_counter()
        entry = judge(args.device, tab, kept, meas, sets, mapping, weight, base=table)
        fits[label] = entry["fit_seconds"] = time.perf_counter() - t1
        cl = np.array(clean)
        if cl.sum() >= 3:
            entry["clean_only"] = rescaled(meas[cl], np.array(entry["predicted_ms"])[cl])
        results["mappings"][label] = entry
        row(f"phone model, {label}", entry["all"])
        for s in ("random", "held_out", "clean_only", "k7_local", "no_k7", "attn_in", "attn_beyond", "in_grid"):
            if s in entry:
                row("", entry[s], s)
    row("MACs (one scalar)", results["baselines"]["macs"])
    subset_rows("macs", meas, macs, grid_subsets(kept, table), results["baselines"])
    row("linear MACs+params (CV)", results["baselines"]["linear_macs_params_cv5"])
    print("  ratio: median measured / predicted (the one scalar); <=10 %, <=5 %: after it; tau, rho: ranks")

    print("\n[2] block regressors on this device's table, held-out random 20 % (within 10 % / tau)")
    first = results["mappings"][args.mappings[0]]["heldout_blocks"]
    for t, m in first.items():
        if m is None:
            print(f"  {t:<10} too few blocks for a held-out split")
            continue
        print(f"  {t:<10} n={m['n']:>3} within 10 % {m['within_10']:.1%}  tau {m['kendall_tau']:.3f}")

    print("\n[4] where the error sits (share of the prediction; NNLS coefficient: measured ~ sum of c x part)")
    for mapping in vs:
        a = results["mappings"][mapping]["attribution"]
        print(f"  {mapping}: " + ", ".join(f"{k} {a['share'][k]:.2f} (c={a['nnls_by_provenance'][k]:.2f})"
                                               for k in PROVENANCES))
        for g in a["groups"]:
            print(f"      {g['block_type']:<10} {g['provenance']:<12} share {g['share']:.3f}  c={g['nnls']:.2f}")

    print("\n[5] presets (224x224): measured vs predicted")
    for mapping in vs:
        p = np.array(results["mappings"][mapping]["predicted_ms"])
        s = results["mappings"][mapping]["all"]["median_ratio"]
        for name in ("edgevit_xxs", "edgevit_xs", "edgevit_s"):
            i = next(j for j, c in enumerate(kept) if c.arch_id == ss.PRESETS[name].arch_id)
            print(f"  {mapping:<4} {name:<12} measured {meas[i]:7.2f} ms  predicted {p[i]:7.2f} ms  rescaled "
                  f"{s * p[i]:7.2f} ms ({s * p[i] / meas[i] - 1:+.1%})")
    if args.parts >= 0:
        chosen = [c for s_, c in zip(sets, kept) if s_ == "preset"] + [c for s_, c in zip(sets, kept) if s_ == "random"][:args.parts]
        print(f"\n[6] part by part on {len(chosen)} networks: measured half-blocks against predicted (ms, summed by kind)")
        measured_parts = {c.arch_id: measure_parts(farm, profile, c, info["overhead_ms"], info["runtime_version"])
                          for c in chosen}
        whole = {c.arch_id: float(meas[kept.index(c)]) for c in chosen}
        scalars = {m: results["mappings"][m]["all"]["median_ratio"] for m in vs}
        results["parts"] = part_by_part(args.device, vs, chosen, measured_parts, whole, scalars,
                                        (ext or {}).get("weight_traffic", {}).get("ms_per_mb", 0.0))
    results["seconds"] = {"blocks": t_blocks, "total": time.perf_counter() - t0, "fit": fits}
    write_result(("phone_validation_table" if args.table else "phone_validation") + (f"_{args.tag}" if args.tag else ""),
                 results)


if __name__ == "__main__":
    main()
