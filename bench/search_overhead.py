"""Figure: what the search costs besides scoring, and how long the default search takes.

1. **Driver time per trial** (ask + define-by-run sampling + tell, scoring excluded): measured inside
   :func:`nas.search.run_search` (``SearchResult.timings``) during a 2,000-trial predictor-only search
   (``proxies=("params",)``, the instant analytic score; the host latency model, 20 ms budget; NSGA-II; the embedded
   local Ray with the default workers; SQLite study). Its wall time is reported too, and the driver
   time per trial in the first and last 200 trials (does the study's growth slow it down?).
2. **Where the driver time goes**: the same ask/sample/tell loop, no scoring, 200 trials, on Optuna's
   in-memory storage against the SQLite storage ``nas search`` uses.
3. ``--default``: wall time of ``nas search --device s21 --budget-ms 30`` as a user runs it (default
   trials, default proxies), which is what the default trial count was chosen against.

Run: ``python bench/search_overhead.py [--trials 2000] [--default]``; writes
``bench/results/search_overhead.json`` (a ``--default`` run adds its part to the existing file).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import optuna

from benchlib import RESULTS, setup, write_result

setup()
from nas.search import DEFAULT_TRIALS, SearchConfig, SearchProgress, run_search  # noqa: E402
from search_space import DEFAULT_SPACE  # noqa: E402



def storage_loop(storage, n: int) -> float:
    """Seconds per trial of ask + sample + a few user attributes + tell, without scoring."""
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"],
                                sampler=optuna.samplers.NSGAIISampler(seed=0, population_size=50))
    t0 = time.perf_counter()
    for i in range(n):
        t = study.ask()
        cfg = DEFAULT_SPACE.sample(t)
        for k in ("run", "arch_id", "result", "constraints", "config"):
            t.set_user_attr(k, cfg.arch_id)
        study.tell(t, [i % 7, i % 5])
    return (time.perf_counter() - t0) / n


def predictor_only(n: int, device: str, budget_ms: float, tmp: Path) -> dict:
    marks: list[tuple[int, float]] = []  # (trials done, wall seconds since the start)
    t_start = time.perf_counter()

    def record(p: SearchProgress) -> None:
        if p.phase == "search":
            marks.append((p.done, time.perf_counter() - t_start))

    cfg = SearchConfig(device=device, budget_ms=budget_ms, n_trials=n, proxies=("params",), seed_presets=False,
                       run_dir=str(tmp / "predictor-only"))
    res = run_search(cfg, progress=record)
    wall = time.perf_counter() - t_start
    t = res.timings
    driver = t["ask"] + t["tell"]

    def rate(lo: int, hi: int) -> float:
        a = next(m for m in marks if m[0] >= lo)
        b = next(m for m in marks if m[0] >= hi)
        return (b[1] - a[1]) / max(1, b[0] - a[0])

    return {"trials": n, "device": device, "budget_ms": budget_ms, "workers": res.config.workers, "wall_s": wall,
            "search_s": t["search"], "models_s": t["models"], "score_s": t["score"], "ask_s": t["ask"],
            "tell_s": t["tell"], "driver_ms_per_trial": 1000 * driver / n,
            "wall_ms_per_trial_first_200": 1000 * rate(0, min(200, n)),
            "wall_ms_per_trial_last_200": 1000 * rate(max(0, n - 200), n),
            "distinct": len(res.candidates)}


def default_search(tmp: Path) -> dict:
    t0 = time.perf_counter()
    res = run_search(SearchConfig(device="s21", budget_ms=30.0, run_dir=str(tmp / "default")))
    wall = time.perf_counter() - t0
    t = res.timings
    return {"command": "nas search --device s21 --budget-ms 30", "trials": DEFAULT_TRIALS, "wall_s": wall,
            "search_s": t["search"], "score_s": t["score"], "driver_s": t["ask"] + t["tell"], "models_s": t["models"],
            "workers": res.config.workers, "accuracy": res.accuracy, "distinct": len(res.candidates),
            "feasible": len(res.feasible), "best_score": res.best.score if res.best else None,
            "best_latency_ms": res.best.latency_ms if res.best else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--device", default="host")
    ap.add_argument("--budget-ms", type=float, default=20.0)
    ap.add_argument("--default", action="store_true", help="time the default search instead")
    args = ap.parse_args()
    out = RESULTS / "search_overhead.json"
    doc = json.loads(out.read_text()) if out.exists() else {}
    for k in ("date", "command", "machine"):
        doc.pop(k, None)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.default:
            d = doc["default_search"] = default_search(tmp)
            print(f"| {d['command']} | {d['trials']} trials | wall {d['wall_s']:.0f} s | scoring {d['score_s']:.0f} s | "
                  f"driver {d['driver_s']:.0f} s | models {d['models_s']:.1f} s | workers {d['workers']} |")
        else:
            p = doc["predictor_only"] = predictor_only(args.trials, args.device, args.budget_ms, tmp)
            mem = storage_loop(None, 200)
            sql = storage_loop(f"sqlite:///{tmp / 'loop.db'}", 200)
            doc["storage_loop_ms_per_trial"] = {"in-memory": 1000 * mem, "sqlite": 1000 * sql}
            print("| measure | value |\n|---|---|")
            print(f"| {p['trials']}-trial predictor-only search on {p['device']} (Ray, {p['workers']} workers), wall | "
                  f"{p['wall_s']:.0f} s |")
            print(f"| driver time per trial (ask + sample + tell, scoring excluded) | {p['driver_ms_per_trial']:.0f} ms |")
            print(f"| scoring time per trial (Ray round trip of the analytic score) | "
                  f"{1000 * p['score_s'] / p['trials']:.0f} ms |")
            print(f"| wall per trial, first / last 200 trials | {p['wall_ms_per_trial_first_200']:.0f} / "
                  f"{p['wall_ms_per_trial_last_200']:.0f} ms |")
            print(f"| same loop without scoring, 200 trials: in-memory / SQLite storage | {1000 * mem:.1f} / "
                  f"{1000 * sql:.1f} ms per trial |")
    write_result("search_overhead", doc)


if __name__ == "__main__":
    main()
