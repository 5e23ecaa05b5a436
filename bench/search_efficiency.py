"""Figure: search efficiency, hypervolume after N trials for each sampler against random search.

The problem is the flagship one, ``nas search --device s21 --budget-ms 30``: maximise the accuracy
score, minimise predicted S21 latency, latency <= 30 ms as a constraint. To make several seeds of
several samplers affordable on 2 cores, the accuracy score is the instant analytic one
(``proxies=("params",)``: the parameter count's percentile among the reference EdgeViTs), not the
default torch proxies; the samplers see the same kind of landscape (a score that grows with size
against a latency that grows with size), but the numbers are not those of a default search.
Presets are not seeded (they are all over 30 ms on the S21 anyway), scoring runs in-process, and
each run has its own SQLite study, as ``nas search`` does.

Hypervolume: the area dominated by the feasible candidates in (score, latency) and bounded by
(score 0, latency = budget), divided by the budget, so 1.0 is "score 1 at 0 ms". Reported after
N/4, N/2 and N trials: mean and std over seeds, and how often each sampler beats random search on
the same seed.

Run: ``python bench/search_efficiency.py [--trials 200] [--seeds 5] [--samplers nsga2,tpe,random]``;
writes ``bench/results/search_efficiency.json``.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna

from benchlib import setup, write_result

setup()
from nas.search import SearchConfig, hypervolume_2d, run_search  # noqa: E402



def hv_curve(run_dir: Path, budget: float, checkpoints: list[int]) -> list[float]:
    """Hypervolume of the feasible candidates among the first n trials, for each n in ``checkpoints``."""
    study = optuna.load_study(study_name=run_dir.name, storage=f"sqlite:///{run_dir / 'study.db'}")
    trials = sorted((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.number)
    out = []
    for n in checkpoints:
        pts = [(-t.user_attrs["result"]["score"], t.user_attrs["result"]["latency_ms"]) for t in trials[:n]
               if t.user_attrs["result"]["latency_ms"] <= budget]
        out.append(hypervolume_2d(np.array(pts), (0.0, budget)) / budget if pts else 0.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--samplers", default="nsga2,tpe,random")
    ap.add_argument("--device", default="s21")
    ap.add_argument("--budget-ms", type=float, default=30.0)
    args = ap.parse_args()
    samplers = args.samplers.split(",")
    checkpoints = sorted({args.trials // 4, args.trials // 2, args.trials})
    runs: dict[str, list[dict]] = {s: [] for s in samplers}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for s in samplers:
                cfg = SearchConfig(device=args.device, budget_ms=args.budget_ms, sampler=s, n_trials=args.trials,
                                   seed=seed, workers=1, ray=False, proxies=("params",), seed_presets=False,
                                   run_dir=str(Path(tmp) / f"{s}-{seed}"))
                t0 = time.perf_counter()
                res = run_search(cfg)
                wall = time.perf_counter() - t0
                hv = hv_curve(res.run_dir, args.budget_ms, checkpoints)
                best = res.best.score if res.best else None
                runs[s].append({"seed": seed, "hv": hv, "best_score": best, "distinct": len(res.candidates),
                                "feasible": len(res.feasible), "wall_s": wall})
                print(f"{s:7} seed {seed}: hv {' '.join(f'{h:.4f}' for h in hv)}  best {best}  "
                      f"distinct {len(res.candidates)}  feasible {len(res.feasible)}  {wall:.0f} s", flush=True)
    summary = {}
    for s in samplers:
        hv = np.array([r["hv"] for r in runs[s]])
        rand = np.array([r["hv"] for r in runs.get("random", [])]) if "random" in runs else None
        summary[s] = {
            "hv_mean": hv.mean(0).tolist(), "hv_std": hv.std(0).tolist(),
            "beats_random": (None if rand is None or s == "random" else
                             [int(x) for x in (hv > rand).sum(0)]),
            "best_score_mean": float(np.mean([r["best_score"] or 0.0 for r in runs[s]])),
            "distinct_mean": float(np.mean([r["distinct"] for r in runs[s]])),
            "feasible_mean": float(np.mean([r["feasible"] for r in runs[s]])),
            "wall_s_mean": float(np.mean([r["wall_s"] for r in runs[s]])),
        }
    head = " | ".join(f"HV@{n}" for n in checkpoints)
    lines = [f"| sampler | {head} | beats random (of {args.seeds} seeds, per N) | best score | distinct | feasible | s/run |",
             "|---|" + "---|" * (len(checkpoints) + 5)]
    for s, r in summary.items():
        hv = " | ".join(f"{m:.4f} ± {d:.4f}" for m, d in zip(r["hv_mean"], r["hv_std"]))
        beats = "-" if r["beats_random"] is None else "/".join(str(b) for b in r["beats_random"])
        lines.append(f"| {s} | {hv} | {beats} | {r['best_score_mean']:.3f} | {r['distinct_mean']:.0f} | "
                     f"{r['feasible_mean']:.0f} | {r['wall_s_mean']:.0f} |")
    table = "\n".join(lines)
    print(table)
    write_result("search_efficiency", {
        "problem": {"device": args.device, "budget_ms": args.budget_ms, "accuracy": "params percentile (analytic)",
                    "trials": args.trials, "seeds": args.seeds, "checkpoints": checkpoints, "presets_seeded": False},
        "summary": summary, "runs": runs, "table": table})


if __name__ == "__main__":
    main()
