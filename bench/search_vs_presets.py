"""Figure: the search against the hand design, on this machine's CPU (``host``).

1. EdgeViT-XXS, -XS and -S are measured on the host with the farm (full protocol) and stored.
2. For each preset in turn, ``nas search`` runs with the budget set to that preset's *measured*
   latency: default accuracy score (the accuracy model ``nas search`` uses by default), NSGA-II,
   the embedded local Ray, ``--measure 2`` (the two best candidates are measured on the host, the host
   latency model is retrained on the store, and a new winner is measured in turn). The presets are
   *not* seeded into the study (``seed_presets=False``), so a winner is something the search found,
   never the preset itself.
3. Reported for every winner: predicted latency (at search time, and after the refit) and measured
   latency, whether the measured latency is within the budget, and its accuracy score against the
   preset's score under the same accuracy model.

The measurements go to a copy of the project's store and the retraining to a copy of
``runs/predictors`` (both under ``runs/bench/search_vs_presets/``), so the shared ones are untouched.

``--proxies params`` repeats it with the analytic score (parameter count percentile), a capacity
criterion that does not depend on the torch proxies' view of these networks.

Run: ``python bench/search_vs_presets.py [--trials 200] [--proxies params]``; writes
``bench/results/search_vs_presets.json`` (``search_vs_presets_<proxies>.json`` with ``--proxies``).
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from benchlib import RESULTS, setup, write_result

setup()
from device_farm import DEFAULT_STORE, MeasurementStore, get_profile  # noqa: E402
from device_farm.measure import Farm  # noqa: E402
from nas.search import SearchConfig, run_search  # noqa: E402
from search_space import PRESETS  # noqa: E402

OUT = RESULTS / "search_vs_presets.json"
WORK = Path("runs") / "bench" / "search_vs_presets"


def _ms(v: float | None) -> str:
    return "" if v is None else f"{v:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--measure", type=int, default=2)
    ap.add_argument("--proxies", help="accuracy score proxies (default: the search's default)")
    ap.add_argument("--store", default=DEFAULT_STORE, help="the store the host model was trained on (its unit: "
                                                          "normalised latencies refer to its reference candle)")
    args = ap.parse_args()
    proxies = tuple(args.proxies.split(",")) if args.proxies else None
    out = OUT.with_name(f"search_vs_presets_{'_'.join(proxies)}.json") if proxies else OUT
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    store, root = WORK / "measurements.sqlite", WORK / "predictors"
    if Path(args.store).exists():
        shutil.copy(args.store, store)
    shutil.copytree("runs/predictors", root)
    farm = Farm(MeasurementStore(store))
    profile = get_profile("host")
    measured = {}
    for name, cfg in PRESETS.items():
        m = farm.measure(cfg, profile)
        measured[name] = m
        print(f"{name}: {m.status} {m.latency_ms:.2f} ms (raw median {m.median_ms:.2f}, CI ±{(m.ci95_rel or 0):.1%}, "
              f"n={m.repeats})", flush=True)
    rows = []
    for name, cfg in PRESETS.items():
        m = measured[name]
        if m.status != "ok":
            print(f"{name}: measurement {m.status}; skipped")
            continue
        budget = round(m.latency_ms, 2)  # the unit the host model predicts (normalised where the store gives it)
        t0 = time.perf_counter()
        res = run_search(SearchConfig(device="host", budget_ms=budget, n_trials=args.trials, seed=args.seed,
                                      measure_top_k=args.measure, seed_presets=False, store=str(store), proxies=proxies,
                                      predictor_root=str(root), run_dir=str(WORK / f"budget-{name}")))
        wall = time.perf_counter() - t0
        preset = res.presets[name]
        b = res.best
        row = {"preset": name, "budget_ms": budget, "preset_score": preset.score, "accuracy": res.accuracy,
               "calibration": res.calibration, "wall_s": wall, "trials": res.n_trials, "notes": res.notes,
               "measured": res.measured}
        if b is None:
            row.update(winner=None)
        else:
            meas = next((d for d in res.measured if d["arch_id"] == b.arch_id), {})
            row.update(winner=b.arch_id, config=b.cfg.to_dict(), score=b.score, predicted_ms=b.latency_ms,
                       predicted_std_ms=b.latency_std_ms, refit_ms=b.latency_refit_ms, measured_ms=b.measured_ms,
                       measured_status=b.measured_status, measured_ci95_rel=meas.get("ci95_rel"),
                       within_budget=(b.measured_ms is not None and b.measured_status == "ok" and b.measured_ms <= budget),
                       score_at_least_preset=b.score >= preset.score, beats_preset=b.score > preset.score, params=b.params, macs=b.macs)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("config", "measured", "notes")}), flush=True)
    lines = ["| preset | budget = its measured ms | winner | winner score | preset score | predicted ms (search) | "
             "predicted ms (refit) | measured ms | within budget | score > preset |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("winner") is None:
            lines.append(f"| {r['preset']} | {r['budget_ms']:.2f} | none | | {r['preset_score']:.3f} | | | | no | no |")
            continue
        lines.append(f"| {r['preset']} | {r['budget_ms']:.2f} | {r['winner']} | {r['score']:.3f} | {r['preset_score']:.3f} | "
                     f"{r['predicted_ms']:.2f} ± {r['predicted_std_ms']:.2f} | {_ms(r['refit_ms'])} | "
                     f"{_ms(r['measured_ms'])} ({r['measured_status']}) | {'yes' if r['within_budget'] else 'no'} | "
                     f"{'yes' if r['beats_preset'] else 'no'} |")
    lines.append("")
    lines.append("| every measured candidate | preset run | predicted ms | refit ms | measured ms | status |")
    lines.append("|---|---|---|---|---|---|")
    for r in rows:
        for d in r["measured"]:
            lines.append(f"| {d['arch_id']} | {r['preset']} | {d['predicted_ms']:.2f} | "
                         f"{'' if d.get('refit_ms') is None else format(d['refit_ms'], '.2f')} | "
                         f"{'' if d.get('latency_ms') is None else format(d['latency_ms'], '.2f')} | {d['status']} |")
    table = "\n".join(lines)
    print(table)
    write_result(out.stem, {
        "trials": args.trials, "seed": args.seed, "proxies": list(proxies) if proxies else "default", "measure_top_k": args.measure, "presets_seeded": False,
        "store": str(args.store),
        "presets_measured": {n: {"status": m.status, "latency_ms": m.latency_ms, "median_ms": m.median_ms, "ci95_rel": m.ci95_rel,
                                 "repeats": m.repeats} for n, m in measured.items()},
        "rows": rows, "table": table})


if __name__ == "__main__":
    main()
