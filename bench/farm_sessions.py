"""Figure: would more sessions, sessions spread in time, or another agreement gate make the host's
latency repeat better? (issue #13 item 1)

``bench/farm_noise.py`` measures the stored protocol (two sessions per candidate, more when they
disagree, the closest pair kept). This script takes it apart on one data set, so that a change to the
protocol is chosen on data rather than tried blind:

- each pass (its own process; the second starts ``--gap`` seconds after the first ended) sweeps the
  same N constructor-like networks (``search_space.held_out.official_like``) ``--sweeps`` times,
  each sweep measuring every candidate with exactly two back-to-back interleaved sessions (no retry:
  ``MeasureProtocol(sessions=2, max_sessions=2)``); every session's ratio to every candle is kept
  (``env["session_candle_ratios"]``), so that several protocols can be formed from the same timings:
  one session, two back-to-back (what the farm stores), two spread over the pass (one per sweep, minutes
  apart), all four;
- the agreement gate: the first two sessions' difference as a predictor of how far the value moves
  between passes (rank correlation), and the repeat of the candidates each threshold keeps;
- the same gate and the farm's retry rule (up to four sessions, the closest pair kept) on the
  shipped held-out pair (``tests/data/host_v2.csv`` and ``host_v2_heldout_repeat.csv``: the same 51
  networks measured 3.6 h apart with the stored protocol), from the nearest candle's session ratios
  those rows record.

Every value is normalised as the farm stores it (``device_farm.measure.normalised_ms`` on the mean
of the chosen sessions' ratios; the held-out pair: nearest candle only, the one ratio per session
its rows kept). Differences are |pass 1 / pass 2 - 1| over every candidate (nothing rejected unless
a gate says so).

``--pin CPU``: instead of the second sweep, every network is measured twice in a row, free and pinned
to that CPU (the order alternating), so that both arms see the same machine states: does pinning
the worker repeat better? (written to ``farm_sessions_pin.json``)

Run: ``python bench/farm_sessions.py [--n 32] [--gap 600] [--sweeps 2] [--pin 1]`` (about 35 min for 32 networks);
``--work DIR`` judges an existing run's work directory (its ``pass1.json`` and ``pass2.json``) without
measuring; ``--json bench/results/farm_sessions.json`` re-prints a written result. Writes
``bench/results/farm_sessions.json``.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import shutil
import time
from itertools import combinations
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from benchlib import ROOT, setup, write_result

setup()
from device_farm import MeasurementStore, get_profile  # noqa: E402
from device_farm.measure import CANDLES, Farm, MeasureProtocol, normalised_ms  # noqa: E402
from farm_noise import two_passes  # noqa: E402
from search_space.held_out import official_like  # noqa: E402

#: Two sessions, never a third: the retry rule is judged separately (on the held-out pair).
FIXED_TWO = MeasureProtocol(sessions=2, max_sessions=2)
GATES = (0.015, 0.03, 0.05, None)


def run_pass(work: Path, k: int, n: int, seed: int, sweeps: int, pin: int | None = None) -> None:
    """One pass in this process: ``sweeps`` sweeps over the candidates, two sessions each. With ``pin``:
    one sweep, each candidate measured twice in a row (free, then pinned to CPU ``pin``, the order
    alternating), stored as sweeps 1 (free) and 2 (pinned)."""
    cfgs, profile, rows, t = official_like(n, seed), get_profile("host"), {}, time.time()
    if pin is None:
        order = [(sweep, i, FIXED_TWO) for sweep in range(1, sweeps + 1) for i in range(len(cfgs))]
    else:
        pinned = dataclasses.replace(FIXED_TWO, pin_cpus=(pin,))
        order = [(sweep, i, FIXED_TWO if sweep == 1 else pinned) for i in range(len(cfgs))
                 for sweep in ((1, 2) if (i + k) % 2 == 0 else (2, 1))]
    for sweep, i, protocol in order:
        cfg = cfgs[i]
        store = work / f"pass{k}-sweep{sweep}.sqlite"
        if not store.exists():
            shutil.copy(work / "reference.sqlite", store)
        farm = Farm(MeasurementStore(store), cache_dir=work / "onnx", protocol=protocol)
        m = farm.measure(cfg, profile)
        rows.setdefault(cfg.arch_id, {})[f"sweep{sweep}"] = {
            "status": m.status, "median_ms": m.median_ms, "norm_ms": m.norm_ms, "error": m.error,
            "sessions": m.env.get("session_candle_ratios"), "started": m.env.get("session_started"),
            "refs": farm.store.candle_references(m.device, m.runtime_version, m.threads),
            "pinned_cpus": m.env.get("pinned_cpus")}
        print(f"  pass {k} sweep {sweep} {i + 1:>2}/{len(cfgs)} {cfg.arch_id} {m.status:9} "
              f"raw {m.median_ms or float('nan'):8.3f}", flush=True)
        (work / f"pass{k}.json").write_text(json.dumps({"start": t, "end": time.time(), "rows": rows}))


def value(row: dict, picks: list[tuple[int, int]]) -> float:
    """``norm_ms`` from the mean ratios of the chosen (sweep, session) pairs."""
    ss = [row[f"sweep{w}"]["sessions"][j] for w, j in picks]
    return normalised_ms({c: float(np.mean([s[c] for s in ss])) for c in ss[0]}, row["sweep1"]["refs"])


def variants(sweeps: int, pin: int | None = None) -> dict[str, list[tuple[int, int]]]:
    out = {"1 session": [(1, 0)], "2 back-to-back (stored protocol, no retry)": [(1, 0), (1, 1)]}
    if pin is not None:
        return out | {"1 session, pinned": [(2, 0)], f"2 back-to-back, pinned to CPU {pin}": [(2, 0), (2, 1)],
                      "4 (free and pinned)": [(w, j) for w in (1, 2) for j in (0, 1)]}
    if sweeps >= 2:
        out |= {"2 back-to-back, second sweep": [(2, 0), (2, 1)],
                "2 spread (first session of each sweep)": [(1, 0), (2, 0)],
                "2 spread (second session of each sweep)": [(1, 1), (2, 1)],
                "4 (two sweeps x two sessions)": [(w, j) for w in (1, 2) for j in (0, 1)]}
    return out


def stats(d) -> dict[str, float]:
    d = np.abs(np.asarray(d, dtype=float))
    return {"n": int(len(d)), "median": float(np.median(d)), "p90": float(np.percentile(d, 90)), "max": float(d.max())}


def judge_run(A: dict, B: dict, sweeps: int, pin: int | None = None) -> dict:
    ids = [i for i in A if i in B and all(len((A[i].get(f"sweep{w}") or {}).get("sessions") or []) == 2 and
                                          len((B[i].get(f"sweep{w}") or {}).get("sessions") or []) == 2
                                          for w in range(1, sweeps + 1))]
    out = {"n": len(ids), "variants": {}, "gate": {}, "within_pass": {}, "per_candle": {}}
    for name, picks in variants(sweeps, pin).items():
        out["variants"][name] = stats([value(A[i], picks) / value(B[i], picks) - 1 for i in ids])
    two = [(1, 0), (1, 1)]
    agree = [max(abs(value(P[i], [(1, 0)]) / value(P[i], [(1, 1)]) - 1) for P in (A, B)) for i in ids]
    moved = [abs(value(A[i], two) / value(B[i], two) - 1) for i in ids]
    out["gate_spearman"] = float(spearmanr(agree, moved)[0])
    for g in GATES:
        kept = [m for a, m in zip(agree, moved) if g is None or a <= g]
        out["gate"][str(g)] = stats(kept) if kept else {"n": 0}
    for P, name in ((A, "pass1"), (B, "pass2")):
        out["within_pass"][name] = {
            "back_to_back": stats([value(P[i], [(1, 0)]) / value(P[i], [(1, 1)]) - 1 for i in ids])}
        if pin is not None:
            out["within_pass"][name]["pinned_back_to_back"] = stats(
                [value(P[i], [(2, 0)]) / value(P[i], [(2, 1)]) - 1 for i in ids])
        elif sweeps >= 2:
            out["within_pass"][name]["sweep_to_sweep"] = stats(
                [value(P[i], two) / value(P[i], [(2, 0), (2, 1)]) - 1 for i in ids])
    every = [(w, j) for w in range(1, sweeps + 1) for j in (0, 1)]
    for c in CANDLES:  # one candle's ratio alone, all sessions: does either reference follow the candidates?
        r = [np.mean([A[i][f"sweep{w}"]["sessions"][j][c.name] for w, j in every]) /
             np.mean([B[i][f"sweep{w}"]["sessions"][j][c.name] for w, j in every]) - 1 for i in ids]
        out["per_candle"][c.name] = stats(r)
    rel = {name: float(np.median([s["candle_large"] / s["candle"] for i in ids for w, j in every
                                  for s in [P[i][f"sweep{w}"]["sessions"][j]]])) for P, name in ((A, "pass1"), (B, "pass2"))}
    out["candle_relation_small_over_large"] = rel
    out["raw_median"] = stats([A[i]["sweep1"]["median_ms"] / B[i]["sweep1"]["median_ms"] - 1 for i in ids])
    out["clean_first_sweep"] = {name: sum(P[i]["sweep1"]["status"] == "ok" for i in ids) for P, name in ((A, "pass1"), (B, "pass2"))}
    out["per_candidate_signed"] = {i: value(A[i], every) / value(B[i], every) - 1 for i in ids}
    return out


def _held_out_rows(path: Path) -> dict[str, dict]:
    rows = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            env = json.loads(r["env"] or "{}")
            if r["device"] == "host" and env.get("session_ratios"):
                rows[r["arch_id"]] = env
    return rows


def judge_held_out_pair() -> dict:
    """The gate and the retry rule on the shipped held-out pair (nearest candle, its session ratios)."""
    data = ROOT / "tests" / "data"
    A, B = _held_out_rows(data / "host_v2.csv"), _held_out_rows(data / "host_v2_heldout_repeat.csv")
    ids = [i for i in B if i in A and A[i]["candle"] == B[i]["candle"]]

    def first_two(r):
        a, b = r[:2]
        return max(a, b) / min(a, b) - 1, (a + b) / 2

    def closest(r):  # the farm's retry rule: sessions until two agree, up to four, the closest pair kept
        return min((max(a, b) / min(a, b) - 1, (a + b) / 2) for a, b in combinations(r, 2))

    out = {"n": len(ids), "sessions_used": {
        name: {str(k): sum(len(P[i]["session_ratios"]) == k for i in ids) for k in (2, 3, 4)} for P, name in ((A, "first"), (B, "repeat"))}}
    for fn, name in ((first_two, "first two sessions"), (closest, "closest pair of up to four (stored rule)")):
        pairs = [(max(fn(A[i]["session_ratios"])[0], fn(B[i]["session_ratios"])[0]),
                  fn(A[i]["session_ratios"])[1] / fn(B[i]["session_ratios"])[1] - 1) for i in ids]
        out[name] = {str(g): stats([m for a, m in pairs if g is None or a <= g]) for g in GATES}
    for fn, name in ((np.mean, "mean of all sessions"), (np.median, "median of all sessions")):
        out[name] = {"None": stats([fn(A[i]["session_ratios"]) / fn(B[i]["session_ratios"]) - 1 for i in ids])}
    return out


def _row(label: str, s: dict) -> str:
    if not s.get("n"):
        return f"{label:48} {0:>4}"
    return f"{label:48} {s['n']:>4} {s['median']:>8.2%} {s['p90']:>8.2%} {s['max']:>8.2%}"


def report(run: dict, held: dict) -> list[str]:
    head = f"{'':48} {'n':>4} {'median':>8} {'p90':>8} {'max':>8}"
    lines = ["difference between the passes, every candidate (no gate)", head]
    lines += [_row(name, s) for name, s in run["variants"].items()]
    lines += [_row("raw median (first sweep)", run["raw_median"])]
    lines += [_row(f"one candle alone: {c}", s) for c, s in run["per_candle"].items()]
    lines += ["", "within a pass", head]
    for p, w in run["within_pass"].items():
        lines += [_row(f"{p}: {k.replace('_', ' ')}", s) for k, s in w.items()]
    lines += ["", f"agreement gate on the two back-to-back sessions (both passes); rank correlation of their "
                  f"difference with the move between passes: {run['gate_spearman']:.2f}", head]
    lines += [_row(f"sessions within {float(g):.1%}" if g != "None" else "no gate", s) for g, s in run["gate"].items()]
    lines += ["", f"shipped held-out pair (3.6 h apart, stored protocol, nearest candle): {held['n']} networks; "
                  f"sessions used {held['sessions_used']}", head]
    for rule in ("first two sessions", "closest pair of up to four (stored rule)", "mean of all sessions",
                 "median of all sessions"):
        lines += [_row(f"{rule}, " + (f"within {float(g):.1%}" if g != "None" else "no gate"), s)
                  for g, s in held[rule].items()]
    signed = list(run["per_candidate_signed"].values())
    lines += ["", f"each network, all its sessions, pass 1 / pass 2 - 1: {min(signed):+.1%} to {max(signed):+.1%}"]
    rel = run["candle_relation_small_over_large"]
    lines += ["", f"candles' relation (small candle / large candle latency within one session, median): pass 1 {rel['pass1']:.4f}, "
                  f"pass 2 {rel['pass2']:.4f} ({rel['pass1'] / rel['pass2'] - 1:+.2%}); first sweep clean "
                  f"(sessions within 1.5%): {run['clean_first_sweep']}"]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--gap", type=float, default=600.0, help="seconds between the end of pass 1 and pass 2")
    ap.add_argument("--sweeps", type=int, default=2, choices=(1, 2))
    ap.add_argument("--pin", type=int, help="instead of a second sweep: every candidate measured free and pinned to "
                                             "this CPU, alternately (does pinning repeat better?)")
    ap.add_argument("--pass", dest="pass_", type=int, help="run one pass in this process (internal)")
    ap.add_argument("--work", type=Path, help="with --pass: the run's directory; alone: judge that run, no measurement")
    ap.add_argument("--json", type=Path, help="no measurement: re-print a written farm_sessions.json")
    args = ap.parse_args()
    if args.pass_:
        run_pass(args.work, args.pass_, args.n, args.seed, args.sweeps, args.pin)
        return
    if args.json:
        d = json.loads(args.json.read_text())
        print("\n".join(report(d["run"], d["held_out_pair"])))
        return
    work = args.work
    if work is None:
        work = Path(f"runs/farm_sessions-{time.strftime('%Y%m%d-%H%M%S')}")
        work.mkdir(parents=True)
        two_passes(__file__, work, official_like(args.n, args.seed), args.gap,
                   ["--n", str(args.n), "--seed", str(args.seed), "--sweeps", str(args.sweeps)]
                   + (["--pin", str(args.pin)] if args.pin is not None else []))
    a, b = (json.loads((work / f"pass{k}.json").read_text()) for k in (1, 2))
    sweeps = max(int(w[5:]) for r in a["rows"].values() for w in r)
    pins = {tuple(r["sweep2"].get("pinned_cpus") or ()) for r in a["rows"].values() if "sweep2" in r}
    pin = next((p[0] for p in pins if len(p) == 1), None)  # a --pin run: sweep 2 is the pinned arm
    run, held = judge_run(a["rows"], b["rows"], sweeps, pin), judge_held_out_pair()
    lines = report(run, held)
    print(f"{run['n']} networks, {sweeps} sweep(s) per pass; pass 2 began {(b['start'] - a['end']) / 60:.1f} min after "
          "pass 1 ended\n" + "\n".join(lines))
    write_result("farm_sessions" + ("_pin" if pin is not None else ""), {
        "n": run["n"], "seed": args.seed, "sweeps": sweeps, "pin": pin, "gap_s": b["start"] - a["end"],
        "pass_times": {"pass1": [a["start"], a["end"]], "pass2": [b["start"], b["end"]]},
        "protocol": FIXED_TWO.__dict__, "run": run, "held_out_pair": held, "table": lines,
        "per_candidate": {i: {"pass1": a["rows"][i], "pass2": b["rows"][i]} for i in a["rows"]}}, threads=1)


if __name__ == "__main__":
    main()
