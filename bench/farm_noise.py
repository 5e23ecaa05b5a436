"""Figure: does the host's latency instrument repeat? Two passes, separate processes, time apart.

The same N constructor-like EdgeViTs (``search_space.held_out.official_like``, never used to train
anything) are measured in two passes, each pass its own process, the second starting at least
``--gap`` seconds (default 600) after the first ended: what a user sees when they measure today and
again later. Each pass measures every candidate with two protocols, alternating which goes first:

- ``interleaved`` (the farm's default since issue #13): candle(s) and candidate alternating in one
  worker, several sessions; reported raw (median of the candidate's timings) and normalised
  (``norm_ms`` = median candidate/candle ratio x the device's fixed reference candle);
- ``before/after`` (the protocol of issue #3, the baseline): candle before and after, candidate until
  its median converges; reported raw and as candle ratio.

Both passes start from one store holding the device's reference candles (set once, before pass 1),
so a normalised latency means the same in both. Reported for candidates clean in both passes: the
median, 90th percentile and maximum of the relative difference between the passes; statuses;
measurement time per candidate. Target (issue #13): median <= 1.5 %, p90 <= 4 % for the latency the
project stores as truth.

Run: ``python bench/farm_noise.py [--n 40] [--seed 2026] [--gap 600]`` (about 35 min with the
default gap); writes ``bench/results/farm_noise.json``. ``--pass K --work DIR`` runs one pass (what
the script spawns).
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

from benchlib import setup, write_result

setup()
from device_farm import MeasurementStore, get_profile  # noqa: E402
from device_farm.measure import CANDLES, Farm, MeasureProtocol, onnx_path_for  # noqa: E402
from search_space import PRESETS  # noqa: E402
from search_space.held_out import official_like  # noqa: E402

PROTOCOLS = {"interleaved": MeasureProtocol(), "before/after": MeasureProtocol(interleave=False)}


def run_pass(work: Path, k: int, n: int, seed: int) -> None:
    """One pass in this process: every candidate under both protocols, into the pass's own stores."""
    cfgs = official_like(n, seed)
    profile = get_profile("host")
    rows = {}
    t_pass = time.time()
    for i, cfg in enumerate(cfgs):
        names = list(PROTOCOLS) if (i + k) % 2 == 0 else list(PROTOCOLS)[::-1]
        for name in names:
            store = work / f"pass{k}-{name.replace('/', '_')}.sqlite"
            if not store.exists():
                shutil.copy(work / "reference.sqlite", store)
            farm = Farm(MeasurementStore(store), cache_dir=work / "onnx", protocol=PROTOCOLS[name])
            t0 = time.perf_counter()
            m = farm.measure(cfg, profile)
            rows.setdefault(cfg.arch_id, {})[name] = {
                "status": m.status, "median_ms": m.median_ms, "norm_ms": m.norm_ms, "candle_ratio": m.candle_ratio,
                "candle": m.env.get("candle", "candle"), "seconds": time.perf_counter() - t0, "error": m.error}
        r = rows[cfg.arch_id]
        print(f"  pass {k} {i + 1:>2}/{len(cfgs)} {cfg.arch_id} "
              + "  ".join(f"{name}: {v['status']} raw {v['median_ms'] or float('nan'):8.3f}" for name, v in r.items())
              + f"  norm {r['interleaved']['norm_ms'] or float('nan'):8.3f}", flush=True)
    (work / f"pass{k}.json").write_text(json.dumps({"start": t_pass, "end": time.time(), "rows": rows}))


def rel_diff(a: dict, b: dict, ids: list[str], proto: str, key: str) -> np.ndarray:
    return np.array([abs(a[i][proto][key] / b[i][proto][key] - 1) for i in ids])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--gap", type=float, default=600.0, help="seconds between the end of pass 1 and pass 2")
    ap.add_argument("--pass", dest="pass_", type=int, help="run one pass in this process (internal)")
    ap.add_argument("--work", type=Path)
    args = ap.parse_args()
    if args.pass_:
        run_pass(args.work, args.pass_, args.n, args.seed)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cfgs = official_like(args.n, args.seed)
        for cfg in [*CANDLES, *cfgs]:  # export first so no pass pays for it
            onnx_path_for(cfg, work / "onnx")
        # The device's reference candles, set once in a store both passes start from.
        Farm(MeasurementStore(work / "reference.sqlite"), cache_dir=work / "onnx").measure(
            PRESETS["edgevit_xs"], get_profile("host"))
        for k in (1, 2):
            if k == 2:
                print(f"waiting {args.gap:.0f} s before pass 2", flush=True)
                time.sleep(args.gap)
            subprocess.run([sys.executable, __file__, "--pass", str(k), "--work", str(work), "--n", str(args.n),
                            "--seed", str(args.seed)], check=True)
        a = json.loads((work / "pass1.json").read_text())
        b = json.loads((work / "pass2.json").read_text())
    gap_s = b["start"] - a["end"]
    A, B = a["rows"], b["rows"]
    table, results = [], {}
    for proto, keys in (("interleaved", ("median_ms", "norm_ms")), ("before/after", ("median_ms", "candle_ratio"))):
        ids = [c.arch_id for c in cfgs if A[c.arch_id][proto]["status"] == "ok" == B[c.arch_id][proto]["status"]]
        for key in keys:
            d = rel_diff(A, B, ids, proto, key)
            label = f"{proto} {'raw median' if key == 'median_ms' else 'normalised' if key == 'norm_ms' else 'candle ratio'}"
            results[label] = {"n": len(ids), "median": float(np.median(d)), "p90": float(np.percentile(d, 90)),
                              "max": float(d.max())}
            table.append(f"{label:32} {len(ids):>4} {np.median(d):>8.2%} {np.percentile(d, 90):>8.2%} {d.max():>8.2%}")
    statuses = {p: {s: sum(r[p]["status"] == s for r in [*A.values(), *B.values()]) for s in ("ok", "disturbed", "failed")}
                for p in PROTOCOLS}
    seconds = {p: float(np.median([r[p]["seconds"] for r in [*A.values(), *B.values()]])) for p in PROTOCOLS}
    lat = np.array([A[c.arch_id]["interleaved"]["median_ms"] or np.nan for c in cfgs])
    print(f"\n{len(cfgs)} constructor-like candidates, latency {np.nanmin(lat):.1f}-{np.nanmax(lat):.1f} ms "
          f"(median {np.nanmedian(lat):.1f}); pass 2 began {gap_s / 60:.1f} min after pass 1 ended")
    print(f"{'relative difference, pass 1 vs 2':32} {'n':>4} {'median':>8} {'p90':>8} {'max':>8}")
    print("\n".join(table))
    print(f"statuses over both passes: {statuses}")
    print("median seconds per candidate: " + ", ".join(f"{p} {s:.1f}" for p, s in seconds.items()))
    write_result("farm_noise", {
        "n": args.n, "seed": args.seed, "candidates": "search_space.held_out.official_like", "gap_s": gap_s,
        "pass_times": {"pass1": [a["start"], a["end"]], "pass2": [b["start"], b["end"]]},
        "protocols": {p: asdict(pr) for p, pr in PROTOCOLS.items()},
        "rel_diff": results, "statuses": statuses, "seconds_per_candidate": seconds,
        "latency_ms": {"min": float(np.nanmin(lat)), "median": float(np.nanmedian(lat)), "max": float(np.nanmax(lat))},
        "per_candidate": {i: {"pass1": A[i], "pass2": B[i]} for i in A}, "table": table,
    }, threads=1)


if __name__ == "__main__":
    main()
