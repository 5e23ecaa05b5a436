"""Figure: search efficiency, per sampler and mode, against random search on the same seeds.

The problem is the flagship one, ``nas search --device s21 --budget-ms 30``, scored with the search's
default accuracy score (the accuracy prior's estimated ImageNet-1k top-1, issue #15) unless
``--proxies`` opts in to another: maximise it, predicted S21 latency <= 30 ms. Each sampler runs in
both modes (``budget``: one objective, the score, the budget a constraint -- the default when a
budget is given; ``front``: score and latency at once). Presets are not seeded, scoring runs
in-process, each run has its own journal, as ``nas search`` does.

Two figures per checkpoint (N/4, N/2, N trials), mean and std over seeds:

- best feasible score: what ``nas search --budget-ms`` returns (the question a budget asks);
- hypervolume of the feasible candidates in (score, latency), bounded by score 50 top-1 % (0 for a
  proxy percentile) and latency = budget, divided by the budget: how well the front under the budget
  is covered (the question ``nas family`` asks).

and how often each beats random search of the same mode and seed at N.

Run: ``python bench/search_efficiency.py [--trials 200] [--seeds 5] [--samplers nsga2,tpe,gp,random]
[--modes budget,front]``; writes ``bench/results/search_efficiency.json``.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchlib import setup, write_result

setup()
from nas.search import SearchConfig, hypervolume_2d, run_search  # noqa: E402


def curves(res, budget: float, checkpoints: list[int], floor: float) -> tuple[list[float], list[float]]:
    """Best feasible score and hypervolume among the candidates first seen in the first n trials."""
    cands = sorted(res.candidates, key=lambda c: c.trial)
    best, hv = [], []
    for n in checkpoints:
        feas = [c for c in cands if c.trial < n and c.feasible]
        best.append(max((c.score for c in feas), default=float("nan")))
        pts = np.array([(-(c.score - floor), c.latency_ms) for c in feas if c.score > floor])
        hv.append(hypervolume_2d(pts, (0.0, budget)) / budget if len(pts) else 0.0)
    return best, hv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--samplers", default="nsga2,tpe,gp,random")
    ap.add_argument("--modes", default="budget,front")
    ap.add_argument("--device", default="s21")
    ap.add_argument("--budget-ms", type=float, default=30.0)
    ap.add_argument("--proxies", help="opt in to a proxy score (e.g. params); default: the search's default score")
    ap.add_argument("--predictors", help="predictor folder (default: the shipped ones)")
    ap.add_argument("--name", default="search_efficiency", help="result name (bench/results/<name>.json)")
    args = ap.parse_args()
    samplers, modes = args.samplers.split(","), args.modes.split(",")
    proxies = tuple(args.proxies.split(",")) if args.proxies else None
    floor = 0.0 if proxies else 50.0
    checkpoints = sorted({args.trials // 4, args.trials // 2, args.trials})
    keys = [f"{s}/{m}" for s in samplers for m in modes]
    runs: dict[str, list[dict]] = {k: [] for k in keys}
    unit = None
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for s in samplers:
                for mode in modes:
                    cfg = SearchConfig(device=args.device, budget_ms=args.budget_ms, sampler=s, n_trials=args.trials,
                                       seed=seed, workers=1, ray=False, proxies=proxies, seed_presets=False, mode=mode,
                                       run_dir=str(Path(tmp) / f"{s}-{mode}-{seed}"),
                                       **({"predictor_root": args.predictors} if args.predictors else {}))
                    t0 = time.perf_counter()
                    res = run_search(cfg)
                    wall = time.perf_counter() - t0
                    unit = res.accuracy_unit
                    best, hv = curves(res, args.budget_ms, checkpoints, floor)
                    runs[f"{s}/{mode}"].append({"seed": seed, "best": best, "hv": hv, "distinct": len(res.candidates),
                                                "feasible": len(res.feasible), "wall_s": wall})
                    print(f"{s:6} {mode:6} seed {seed}: best {' '.join(f'{b:.3f}' for b in best)}  "
                          f"hv {' '.join(f'{h:.4f}' for h in hv)}  distinct {len(res.candidates)}  "
                          f"feasible {len(res.feasible)}  {wall:.0f} s", flush=True)
    summary = {}
    for k in keys:
        mode = k.split("/")[1]
        best = np.array([r["best"] for r in runs[k]])
        hv = np.array([r["hv"] for r in runs[k]])
        rand = runs.get(f"random/{mode}")
        rb = np.array([r["best"] for r in rand]) if rand and not k.startswith("random/") else None
        rh = np.array([r["hv"] for r in rand]) if rand and not k.startswith("random/") else None
        summary[k] = {
            "best_mean": best.mean(0).tolist(), "best_std": best.std(0).tolist(),
            "hv_mean": hv.mean(0).tolist(), "hv_std": hv.std(0).tolist(),
            "best_beats_random": None if rb is None else int((best[:, -1] > rb[:, -1]).sum()),
            "hv_beats_random": None if rh is None else int((hv[:, -1] > rh[:, -1]).sum()),
            "distinct_mean": float(np.mean([r["distinct"] for r in runs[k]])),
            "feasible_mean": float(np.mean([r["feasible"] for r in runs[k]])),
            "wall_s_mean": float(np.mean([r["wall_s"] for r in runs[k]])),
        }
    head = " | ".join(f"best@{n}" for n in checkpoints) + " | " + " | ".join(f"HV@{n}" for n in checkpoints)
    lines = [f"| sampler/mode | {head} | beats random at {checkpoints[-1]} (best, HV; of {args.seeds}) | distinct | "
             "feasible | s/run |", "|---|" + "---|" * (2 * len(checkpoints) + 4)]
    for k, r in summary.items():
        b = " | ".join(f"{m:.3f} ± {d:.3f}" for m, d in zip(r["best_mean"], r["best_std"]))
        h = " | ".join(f"{m:.4f} ± {d:.4f}" for m, d in zip(r["hv_mean"], r["hv_std"]))
        beats = "-" if r["best_beats_random"] is None else f"{r['best_beats_random']}, {r['hv_beats_random']}"
        lines.append(f"| {k} | {b} | {h} | {beats} | {r['distinct_mean']:.0f} | {r['feasible_mean']:.0f} | "
                     f"{r['wall_s_mean']:.0f} |")
    table = "\n".join(lines)
    print(f"score: {unit}")
    print(table)
    write_result(args.name, {
        "problem": {"device": args.device, "budget_ms": args.budget_ms, "score": unit,
                    "proxies": list(proxies) if proxies else None, "hv_floor": floor,
                    "trials": args.trials, "seeds": args.seeds, "checkpoints": checkpoints, "presets_seeded": False},
        "summary": summary, "runs": runs, "table": table})


if __name__ == "__main__":
    main()
