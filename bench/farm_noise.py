"""Figure: does the host's latency instrument repeat? Two passes, separate processes, time apart.

The same N constructor-like EdgeViTs (``search_space.held_out.official_like``, never used to train
anything) are measured in two passes, each pass its own process, the second starting at least
``--gap`` seconds (default 600) after the first ended: what a user sees when they measure today and
again later. Each pass measures every candidate with two protocols, alternating which goes first:

- ``interleaved`` (the farm's default since issue #13): candle(s) and candidate alternating in one
  worker, several sessions; reported raw (median of the candidate's timings), normalised as stored
  (``norm_ms``: ``device_farm.measure.normalised_ms``, the candles' ratios x their fixed references,
  weighted by where the candidate lies between them), and every other way of forming it from the
  same ratios (:func:`estimates`), so that a change of definition is chosen on data;
- ``before/after`` (the protocol of issue #3, the baseline): candle before and after, candidate until
  its median converges; reported raw and as candle ratio.

Both passes start from one store holding the device's reference candles (set once, before pass 1),
so a normalised latency means the same in both. Reported for candidates clean in both passes: the
median, 90th percentile and maximum of the relative difference between the passes; statuses;
measurement time per candidate. Target (issue #13): median <= 1.5 %, p90 <= 4 % for the latency the
project stores as truth.

Run: ``python bench/farm_noise.py [--n 40] [--seed 2026] [--gap 600] [--protocols interleaved]
[--set held-out]`` (about 35 min with the default gap and both protocols, 25 min with the interleaved
one alone); writes ``bench/results/farm_noise.json`` (``farm_noise_held_out.json`` with ``--set
held-out``: the latency predictors' held-out set, extremes of width and depth included).
``--stores FIRST SECOND`` prints the same variants for two stores that measured the same networks
against the same reference candles (no measurement); ``--json bench/results/farm_noise.json`` the
same from a run's JSON. ``--tag T`` writes ``farm_noise_T.json`` (a further run beside the recorded
ones). ``--pass K --work DIR`` runs one pass (what the script spawns). ``--tally`` prints every recorded
pair's repeat for the stored definition and on how many the target held (no measurement) and writes
``farm_noise_tally.json``, which ``nas predictor show --device host`` prints.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from benchlib import RESULTS, setup, write_result

setup()
from device_farm import MeasurementStore, get_profile  # noqa: E402
from device_farm.measure import (  # noqa: E402
    CANDLES, LOW_QUANTILES, Farm, MeasureProtocol, normalised_ms, onnx_path_for)
from search_space import PRESETS  # noqa: E402
from search_space.held_out import held_out_set, official_like  # noqa: E402

PROTOCOLS = {"interleaved": MeasureProtocol(), "before/after": MeasureProtocol(interleave=False)}


def candidates(which: str, n: int, seed: int) -> list:
    """``official_like``: n constructor-like networks (seed); ``held-out``: the latency predictors' whole
    held-out set (n constructor-like networks of its fixed seed, the presets, the width/depth extremes)."""
    return official_like(n, seed) if which == "official_like" else held_out_set(n)


def run_pass(work: Path, k: int, n: int, seed: int, protocols: list[str], which: str = "official_like") -> None:
    """One pass in this process: every candidate under the protocols, into the pass's own stores."""
    cfgs = candidates(which, n, seed)
    profile = get_profile("host")
    rows = {}
    t_pass = time.time()
    for i, cfg in enumerate(cfgs):
        names = protocols if (i + k) % 2 == 0 else protocols[::-1]
        for name in names:
            store = work / f"pass{k}-{name.replace('/', '_')}.sqlite"
            if not store.exists():
                shutil.copy(work / "reference.sqlite", store)
            farm = Farm(MeasurementStore(store), cache_dir=work / "onnx", protocol=PROTOCOLS[name])
            t0 = time.perf_counter()
            m = farm.measure(cfg, profile)
            refs = farm.store.candle_references(m.device, m.runtime_version, m.threads)
            rows.setdefault(cfg.arch_id, {})[name] = {
                "status": m.status, "median_ms": m.median_ms, "norm_ms": m.norm_ms, "candle_ratio": m.candle_ratio,
                "candle": m.env.get("candle", "candle"), "seconds": time.perf_counter() - t0, "error": m.error,
                "candle_ratios": m.env.get("candle_ratios"), "reference_candles_ms": refs,
                "anchor_k": (m.env.get("anchor") or {}).get("k"), "p10_ms": m.p10_ms,
                "memory_ratio": m.env.get("session_memory_ratio"), "memory_reference": m.env.get("memory_reference"),
                "memory_busy_ratios": m.env.get("memory_busy_ratios"),
                **{k: m.env.get(k) for k in LOW_QUANTILES}}
        r = rows[cfg.arch_id]
        print(f"  pass {k} {i + 1:>2}/{len(cfgs)} {cfg.arch_id} "
              + "  ".join(f"{name}: {v['status']} raw {v['median_ms'] or float('nan'):8.3f}" for name, v in r.items())
              + f"  norm {r['interleaved']['norm_ms'] or float('nan'):8.3f}", flush=True)
    (work / f"pass{k}.json").write_text(json.dumps({"start": t_pass, "end": time.time(), "rows": rows}))


def set_references(farm: Farm, device: str, tries: int = 5) -> None:
    """Give ``farm``'s store the device's reference candles, measured now. The store sets them at its first
    *clean* measurement: until one is clean, measure again (a disturbed one leaves none, and every later
    store or pass would then set its own: another unit each)."""
    for _ in range(tries):
        m = farm.measure(PRESETS["edgevit_xs"], get_profile(device))
        if farm.store.candle_references(m.device, m.runtime_version, m.threads):
            return
    raise SystemExit(f"no clean reference measurement in {tries} tries: the machine is too busy to set the candles")


def two_passes(script: str, work: Path, cfgs: list, gap: float, pass_args: list[str]) -> tuple[dict, dict]:
    """Export ``cfgs`` and the candles into ``work``, set the device's reference candles once in a store
    both passes start from (so a normalised latency means the same in both), then run ``script
    --pass K --work work *pass_args`` for K = 1, 2, each its own process, the second ``gap`` seconds
    after the first ended. Returns the two passes' ``pass<K>.json``."""
    for cfg in [*CANDLES, *cfgs]:  # export first so no pass pays for it
        onnx_path_for(cfg, work / "onnx")
    set_references(Farm(MeasurementStore(work / "reference.sqlite"), cache_dir=work / "onnx"), "host")
    for k in (1, 2):
        if k == 2:
            print(f"waiting {gap:.0f} s before pass 2", flush=True)
            time.sleep(gap)
        subprocess.run([sys.executable, script, "--pass", str(k), "--work", str(work), *pass_args], check=True)
    return tuple(json.loads((work / f"pass{k}.json").read_text()) for k in (1, 2))


def estimates(r: dict) -> dict[str, float]:
    """The interleaved row's normalised latency under each way of forming it (same timings, no new runs).

    ``norm_ms``: as the measuring version stored it (before issue #13's second round: the nearest
    candle's ratio x its reference x the anchor factor); ``nearest, no anchor``: without the anchor
    factor; ``large candle only``: the large candle's ratio x its reference; ``all candles, no anchor``: the geometric mean over the
    candles of ratio x reference (no choice of candle that could flip between runs); ``candles
    weighted``: the values of the candles either side of the candidate weighted by where it lies
    between them in log latency (the nearest one counts most, and nothing flips; what the farm
    stores); ``small + large weighted`` and ``middle candle only``: for the rows of issue #13's
    third-round trial of a middle candle (EdgeViT-XXS at 224 px, not kept), the stored definition from
    the small and large candles alone and the middle one alone; ``all candles x anchor``: with the
    anchor factor.
    """
    out = {"norm_ms": r["norm_ms"]}
    refs, ratios, k = r.get("reference_candles_ms") or {}, r.get("candle_ratios") or {}, r.get("anchor_k") or 1.0
    if r["candle_ratio"] is not None and r.get("candle") in refs:
        out["nearest, no anchor"] = r["candle_ratio"] * refs[r["candle"]]
    if ratios.get("candle_large") and "candle_large" in refs:
        out["large candle only"] = ratios["candle_large"] * refs["candle_large"]
    if ratios.get("candle_mid") and "candle_mid" in refs:
        out["middle candle only"] = ratios["candle_mid"] * refs["candle_mid"]
        two = {c: ratios[c] for c in ("candle", "candle_large") if ratios.get(c)}
        if len(two) == 2:
            out["small + large weighted"] = normalised_ms(two, refs)
    both = [ratios[c] * refs[c] for c in ratios if c in refs and ratios[c]]
    if both:
        g = float(np.exp(np.mean(np.log(both))))
        out["all candles, no anchor"] = g
        out["all candles x anchor"] = g * k
        out["candles weighted, no anchor"] = normalised_ms(ratios, refs)  # what the farm stores since issue #13
    if r.get("p10_ms"):
        out["raw p10"] = r["p10_ms"]
    for key, label in (("candle_ratios_p10", "p10, candles weighted"), ("candle_ratios_min", "min, candles weighted")):
        if r.get(key) and normalised_ms(r[key], refs) is not None:
            out[label] = normalised_ms(r[key], refs)
    return out


VARIANTS = ("nearest, no anchor", "large candle only", "middle candle only", "small + large weighted",
            "all candles, no anchor", "candles weighted, no anchor", "all candles x anchor", "raw p10",
            "p10, candles weighted", "min, candles weighted")


def rel_diff(a: dict, b: dict, ids: list[str], proto: str, key: str) -> np.ndarray:
    if key in ("median_ms", "norm_ms", "candle_ratio"):
        return np.array([abs(a[i][proto][key] / b[i][proto][key] - 1) for i in ids])
    return np.array([abs(estimates(a[i][proto])[key] / estimates(b[i][proto])[key] - 1) for i in ids])


def store_rows(path: Path, device: str = "host") -> dict[str, dict]:
    """Interleaved rows of a store in the form a pass records them (``norm_ms`` as first stored)."""
    store = MeasurementStore(path)
    out = {}
    for m in store.query(device=device):
        out[m.arch_id] = {"interleaved": {
            "status": m.status, "median_ms": m.median_ms, "norm_ms": m.env.get("norm_ms_before", m.norm_ms),
            "candle_ratio": m.candle_ratio, "candle": m.env.get("candle"), "candle_ratios": m.env.get("candle_ratios"),
            "reference_candles_ms": store.candle_references(m.device, m.runtime_version, m.threads),
            "anchor_k": (m.env.get("anchor") or {}).get("k"), "p10_ms": m.p10_ms,
            **{k: m.env.get(k) for k in LOW_QUANTILES}}}
    return out


def compare_stores(first: Path, second: Path) -> None:
    """The variants table for two stores' common networks, clean in both (prints; writes nothing)."""
    variants_table(store_rows(first), store_rows(second), f"{first} and {second}")


def one_unit(A: dict, B: dict, proto: str = "interleaved") -> int:
    """Re-express the second run's interleaved rows in the first run's reference candles, where they
    differ (its stored ratios x the first run's references; ``norm_ms_own_refs`` keeps its own value):
    runs before the reference fix of ``two_passes`` could set different references per pass when the
    reference measurement was disturbed. Returns how many rows changed."""
    changed = 0
    for i, b in B.items():
        a, r = (A.get(i) or {}).get(proto), b.get(proto)
        if not a or not r or not r.get("candle_ratios") or r.get("reference_candles_ms") == a.get("reference_candles_ms"):
            continue
        refs = a["reference_candles_ms"]
        r["norm_ms_own_refs"], r["reference_candles_ms"] = r["norm_ms"], refs
        if r["norm_ms"] is not None:
            r["norm_ms"] = normalised_ms(r["candle_ratios"], refs)
        changed += 1
    return changed


def memory_summary(rows: list[dict]) -> str:
    """The memory probe's sessions in quiet passes (its false alarms): memory ratio over the device's
    reference, kept and set-aside sessions together."""
    rel, aside, n = [], 0, 0
    for r in rows:
        r = r.get("interleaved") or {}
        ref = r.get("memory_reference")
        if not ref:
            continue
        n += 1
        rel += [x / ref for x in r.get("memory_ratio") or [] if x] + list(r.get("memory_busy_ratios") or [])
        aside += bool(r.get("memory_busy_ratios"))
    if not rel:
        return "memory probe: no session judged against a reference"
    q = np.percentile(rel, [1, 50, 99])
    return (f"memory probe: {len(rel)} sessions of {n} measurements, copy/candle over the reference "
            f"p1 {q[0]:.3f} median {q[1]:.3f} p99 {q[2]:.3f} max {max(rel):.3f}; measurements with a session set aside: {aside}")


def variants_table(A: dict, B: dict, what: str) -> None:
    """Every way of forming the normalised latency (:func:`estimates`), first run against second."""
    if one_unit(A, B):
        print("the second run's references differed from the first's: its rows re-expressed in the first's")
    ids = [i for i in B if i in A and A[i]["interleaved"]["status"] == "ok" == B[i]["interleaved"]["status"]]
    print(f"{len(ids)} networks clean in both {what}")
    print(f"{'relative difference, first vs second':50} {'median':>8} {'p90':>8} {'max':>8}")
    for key in ("median_ms", "norm_ms", *VARIANTS):
        if key in VARIANTS and not all(key in estimates(A[i]["interleaved"]) and key in estimates(B[i]["interleaved"])
                                       for i in ids):
            continue  # a variant these rows cannot form (no middle candle before issue #13's third round)
        d = rel_diff(A, B, ids, "interleaved", key)
        print(f"{key:50} {np.median(d):>8.2%} {np.percentile(d, 90):>8.2%} {d.max():>8.2%}")


TARGET = (0.015, 0.04)  # issue #13 item 1: median, p90 of the relative difference between the passes


def stored_repeat(path: Path) -> dict | None:
    """One recorded pair's repeat for the latency the farm stores (candles weighted by position), from a
    written JSON's per-candidate rows: in one unit (:func:`one_unit`), over the networks clean in both
    passes; for the third round's three-candle rows, from the small and large candles alone (the stored
    definition). None for a file without per-candidate interleaved rows."""
    d = json.loads(path.read_text())
    pc = d.get("per_candidate") or {}
    A = {i: v["pass1"] for i, v in pc.items() if "interleaved" in v.get("pass1", {})}
    B = {i: v["pass2"] for i, v in pc.items() if "interleaved" in v.get("pass2", {})}
    one_unit(A, B)
    ids = [i for i in B if i in A and A[i]["interleaved"]["status"] == "ok" == B[i]["interleaved"]["status"]]
    if not ids:
        return None
    key = ("small + large weighted" if "small + large weighted" in estimates(A[ids[0]]["interleaved"])
           else "candles weighted, no anchor")
    diff = rel_diff(A, B, ids, "interleaved", key)
    med, p90 = float(np.median(diff)), float(np.percentile(diff, 90))
    return {"file": path.name, "date": d.get("date", ""), "cpu": (d.get("machine") or {}).get("cpu", ""),
            "n": len(ids), "median": med, "p90": p90, "met": med <= TARGET[0] and p90 <= TARGET[1]}


def recorded_pairs(root: Path = RESULTS) -> list[dict]:
    """:func:`stored_repeat` of every ``farm_noise*.json`` in ``root``, oldest first: one pair is one machine
    state, so the instrument's repeat is their range and how many met the target, never one pair alone."""
    rows = [r for f in sorted(root.glob("farm_noise*.json")) if (r := stored_repeat(f))]
    return sorted(rows, key=lambda r: r["date"])


def tally(rows: list[dict]) -> dict:
    """The recorded pairs in one record: their ranges and on how many the target held."""
    med, p90 = [r["median"] for r in rows], [r["p90"] for r in rows]
    return {"pairs": len(rows), "met": sum(r["met"] for r in rows), "target": {"median": TARGET[0], "p90": TARGET[1]},
            "median_range": [min(med), max(med)], "p90_range": [min(p90), max(p90)],
            "first": rows[0]["date"], "last": rows[-1]["date"], "per_pair": rows}


def print_tally(rows: list[dict]) -> None:
    print(f"{'pair':34} {'date (UTC)':17} {'cpu':28} {'n':>3} {'median':>8} {'p90':>8}  target")
    for r in rows:
        print(f"{r['file']:34} {r['date'][:16]:17} {r['cpu'][:28]:28} {r['n']:>3} {r['median']:>8.2%} {r['p90']:>8.2%}  "
              f"{'met' if r['met'] else 'missed'}")
    print(f"target (median <= {TARGET[0]:.1%}, p90 <= {TARGET[1]:.0%}) met on {sum(r['met'] for r in rows)} of "
          f"{len(rows)} recorded pairs (bench/farm_sessions.py's pairs and the held-out store pair are in "
          "bench/RESULTS.md, not here)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--gap", type=float, default=600.0, help="seconds between the end of pass 1 and pass 2")
    ap.add_argument("--pass", dest="pass_", type=int, help="run one pass in this process (internal)")
    ap.add_argument("--work", type=Path)
    ap.add_argument("--set", dest="which", choices=("official_like", "held-out"), default="official_like",
                    help="official_like: --n constructor-like networks of --seed; held-out: the latency predictors' "
                         "held-out set (--n constructor-like, the presets, the width/depth extremes)")
    ap.add_argument("--protocols", nargs="+", choices=list(PROTOCOLS), default=list(PROTOCOLS),
                    help="which protocols each pass measures (default both; the interleaved one alone takes "
                         "about half the time)")
    ap.add_argument("--stores", nargs=2, type=Path, metavar=("FIRST", "SECOND"),
                    help="no measurement: compare two stores holding the same networks measured against the same "
                         "reference candles (e.g. runs/farm/host_v2.sqlite and a re-measurement of its held-out set)")
    ap.add_argument("--json", type=Path, help="no measurement: the variants table of a written farm_noise.json")
    ap.add_argument("--tag", help="suffix of the JSON written (a further run beside the recorded ones)")
    ap.add_argument("--tally", action="store_true", help="no measurement: every recorded pair's repeat (stored definition)")
    args = ap.parse_args()
    if args.tally:
        rows = recorded_pairs()
        print_tally(rows)
        write_result("farm_noise_tally", tally(rows))  # what `nas predictor show --device host` prints
        return
    if args.pass_:
        run_pass(args.work, args.pass_, args.n, args.seed, args.protocols, args.which)
        return
    if args.stores:
        compare_stores(*args.stores)
        return
    if args.json:
        d = json.loads(args.json.read_text())
        pc = d["per_candidate"]
        variants_table({i: v["pass1"] for i, v in pc.items()}, {i: v["pass2"] for i, v in pc.items()}, str(args.json))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cfgs = candidates(args.which, args.n, args.seed)
        a, b = two_passes(__file__, work, cfgs, args.gap, ["--n", str(args.n), "--seed", str(args.seed),
                                                           "--set", args.which, "--protocols", *args.protocols])
    gap_s = b["start"] - a["end"]
    A, B = a["rows"], b["rows"]
    if one_unit(A, B):
        print("the passes' reference candles differed: pass 2 re-expressed in pass 1's (see one_unit)")
    table, results = [], {}
    for proto, keys in (("interleaved", ("median_ms", "norm_ms", *VARIANTS)),
                        ("before/after", ("median_ms", "candle_ratio"))):
        if proto not in args.protocols:
            continue
        ids = [c.arch_id for c in cfgs if A[c.arch_id][proto]["status"] == "ok" == B[c.arch_id][proto]["status"]]
        for key in keys:
            if key in VARIANTS:
                have = [i for i in ids if key in estimates(A[i][proto]) and key in estimates(B[i][proto])]
                if len(have) < len(ids):
                    continue
            d = rel_diff(A, B, ids, proto, key)
            label = f"{proto} " + {"median_ms": "raw median", "norm_ms": "normalised", "candle_ratio": "candle ratio",
                                        "raw p10": "raw 10th percentile"}.get(
                key, f"normalised ({key})")
            results[label] = {"n": len(ids), "median": float(np.median(d)), "p90": float(np.percentile(d, 90)),
                              "max": float(d.max())}
            table.append(f"{label:50} {len(ids):>4} {np.median(d):>8.2%} {np.percentile(d, 90):>8.2%} {d.max():>8.2%}")
    statuses = {p: {s: sum(r[p]["status"] == s for r in [*A.values(), *B.values()]) for s in ("ok", "disturbed", "failed")}
                for p in args.protocols}
    seconds = {p: float(np.median([r[p]["seconds"] for r in [*A.values(), *B.values()]])) for p in args.protocols}
    lat = np.array([A[c.arch_id]["interleaved"]["median_ms"] or np.nan for c in cfgs])
    print(f"\n{len(cfgs)} candidates ({args.which}), latency {np.nanmin(lat):.1f}-{np.nanmax(lat):.1f} ms "
          f"(median {np.nanmedian(lat):.1f}); pass 2 began {gap_s / 60:.1f} min after pass 1 ended")
    print(f"{'relative difference, pass 1 vs 2':50} {'n':>4} {'median':>8} {'p90':>8} {'max':>8}")
    print("\n".join(table))
    print(f"statuses over both passes: {statuses}")
    if "interleaved" in args.protocols:
        print(memory_summary([*A.values(), *B.values()]))
    print("median seconds per candidate: " + ", ".join(f"{p} {s:.1f}" for p, s in seconds.items()))
    write_result(("farm_noise" if args.which == "official_like" else "farm_noise_held_out")
                 + (f"_{args.tag}" if args.tag else ""), {
        "n": args.n, "seed": args.seed, "gap_s": gap_s,
        "candidates": "search_space.held_out." + ("official_like" if args.which == "official_like" else "held_out_set"),
        "pass_times": {"pass1": [a["start"], a["end"]], "pass2": [b["start"], b["end"]]},
        "protocols": {p: asdict(PROTOCOLS[p]) for p in args.protocols},
        "rel_diff": results, "statuses": statuses, "seconds_per_candidate": seconds,
        "latency_ms": {"min": float(np.nanmin(lat)), "median": float(np.nanmedian(lat)), "max": float(np.nanmax(lat))},
        "per_candidate": {i: {"pass1": A[i], "pass2": B[i]} for i in A}, "table": table,
    }, threads=1)


if __name__ == "__main__":
    main()
