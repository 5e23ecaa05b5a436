"""Figure: how long the search takes and what it costs besides scoring (issue #16).

Targets (issue #16, this machine kind, first use included): the README's main command ``nas search
--budget-ms 30 --device s21`` within 60 s wall; a 2,000-trial predictor-only search within 60 s;
the driver's cost per trial within 10 ms; and no loss of search quality.

1. **The README's main command as a new user runs it**: a new process (imports, embedded Ray,
   models), an empty predictor folder (a fresh clone: the shipped s21 fit is loaded, nothing is
   fitted), default trials, sampler and score. Timed for this code and, as the baseline measured in
   the same run, for the code given by ``--baseline DIR`` (a checkout of an earlier commit; ``git
   worktree add /tmp/base <commit>``).
2. **A 2,000-trial predictor-only search** (the instant analytic score ``proxies=("params",)``, a
   host kernel model trained on ``tests/data/host_v2.csv`` (not timed), 20 ms budget, default sampler and workers, embedded Ray, the run's journal):
   wall time, the driver's time per trial (ask + define-by-run sampling + tell, scoring excluded,
   measured inside :func:`nas.search.run_search`), and the driver's time per trial in the first and
   last 200 trials (does the study's growth slow it down?).
3. **Where the driver's time goes**: the same ask/sample/tell loop, no scoring, 200 trials, on
   Optuna's in-memory storage, the run's journal (:class:`nas.search.storage.RunJournal`), Optuna's
   own journal file backend and SQLite.
4. **Search quality at equal trials and seed**: best feasible score of ``nas search --device s21
   --budget-ms 30 --proxies params --trials 200 --seed S`` for seeds 0-2, this code against the
   baseline code (the same score on both sides, so that only the search machinery differs).

Run: ``python bench/search_overhead.py [--baseline /tmp/base] [--trials 2000]``; writes
``bench/results/search_overhead.json``.
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import optuna

from benchlib import ROOT, setup, write_result

setup()
from nas.search import SearchConfig, SearchProgress, run_search  # noqa: E402
from nas.search.storage import RunJournal  # noqa: E402
from search_space import DEFAULT_SPACE, EdgeViTConfig  # noqa: E402

README_COMMAND = ["search", "--device", "s21", "--budget-ms", "30"]
QUALITY_SEEDS = (0, 1, 2)


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


def storages(tmp: Path, n: int = 200) -> dict[str, float]:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return {"in-memory": 1000 * storage_loop(None, n),
            "run journal (nas search default)": 1000 * storage_loop(JournalStorage(RunJournal(tmp / "run.log")), n),
            "Optuna JournalFileBackend": 1000 * storage_loop(JournalStorage(JournalFileBackend(str(tmp / "o.log"))), n),
            "SQLite": 1000 * storage_loop(f"sqlite:///{tmp / 'loop.db'}", n)}


def predictor_only(n: int, device: str, budget_ms: float, tmp: Path) -> dict:
    marks: list[tuple[int, float]] = []  # (trials done, wall seconds since the start)
    t_start = time.perf_counter()

    def record(p: SearchProgress) -> None:
        if p.phase == "search":
            marks.append((p.done, time.perf_counter() - t_start))

    from device_farm import MeasurementStore
    from predictors.latency import default_path, train

    store = MeasurementStore(tmp / "host.sqlite")  # the shipped host data set, a kernel model on it
    store.import_csv(ROOT / "tests" / "data" / "host_v2.csv")
    train(store, device, method="kernel").save(default_path(device, "latency", tmp / "pred"))
    t_start = time.perf_counter()
    cfg = SearchConfig(device=device, budget_ms=budget_ms, n_trials=n, proxies=("params",), seed_presets=False,
                       run_dir=str(tmp / "predictor-only"), predictor_root=str(tmp / "pred"))
    res = run_search(cfg, progress=record)
    wall = time.perf_counter() - t_start
    t = res.timings
    driver = t["ask"] + t["tell"]

    def rate(lo: int, hi: int) -> float:
        a = next(m for m in marks if m[0] >= lo)
        b = next(m for m in marks if m[0] >= hi)
        return (b[1] - a[1]) / max(1, b[0] - a[0])

    return {"trials": n, "device": device, "budget_ms": budget_ms, "workers": res.config.workers,
            "sampler": res.config.sampler, "wall_s": wall, "search_s": t["search"], "models_s": t["models"],
            "score_s": t["score"], "ask_s": t["ask"], "tell_s": t["tell"], "driver_ms_per_trial": 1000 * driver / n,
            "wall_ms_per_trial_first_200": 1000 * rate(0, min(200, n)),
            "wall_ms_per_trial_last_200": 1000 * rate(max(0, n - 200), n), "distinct": len(res.candidates)}


def cli_run(code: Path, args: list[str], tmp: Path, name: str) -> dict:
    """``nas <args>`` in a new process of the code at ``code``, with an empty predictor folder (a fresh
    clone); wall time and the run's best feasible candidate."""
    out, pred = tmp / f"{name}-runs", tmp / f"{name}-pred"
    env = {**os.environ, "PYTHONPATH": str(code)}
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "nas", *args, "--out", str(out), "--run-id", "r", "--predictors",
                        str(pred)], cwd=code, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{code}: nas {' '.join(args)} failed:\n{p.stdout[-1500:]}\n{p.stderr[-1500:]}")
    best = out / "r" / "best.json"
    row: dict = {}
    if best.exists():  # best.json is the configuration; its score and latency are in candidates.csv
        arch = EdgeViTConfig.from_json(best.read_text()).arch_id
        with open(out / "r" / "candidates.csv", newline="") as f:
            row = next(r for r in csv.DictReader(f) if r["arch_id"] == arch)
    return {"wall_s": wall, "best_score": float(row["score"]) if row else None,
            "best_latency_ms": float(row["latency_ms"]) if row else None, "best_arch": row.get("arch_id")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--baseline", type=Path, help="checkout of the code to compare against (git worktree add ...)")
    args = ap.parse_args()
    doc: dict = {"targets": {"readme_command_s": 60, "predictor_only_2000_s": 60, "driver_ms_per_trial": 10}}
    codes = {"this": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    if args.baseline:
        doc["baseline_commit"] = subprocess.run(["git", "-C", str(args.baseline), "rev-parse", "--short", "HEAD"],
                                                capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        doc["readme_command"] = {k: cli_run(c, README_COMMAND, tmp, f"readme-{k}") for k, c in codes.items()}
        print("| nas " + " ".join(README_COMMAND) + " (new process, empty predictor folder) | wall s | best score "
              "| best ms |\n|---|---|---|---|")
        for k, r in doc["readme_command"].items():
            print(f"| {k} | {r['wall_s']:.1f} | {r['best_score']} | {r['best_latency_ms']} |")
        p = doc["predictor_only"] = predictor_only(args.trials, "host", 20.0, tmp)
        doc["storage_loop_ms_per_trial"] = storages(tmp)
        print(f"\n| measure | value |\n|---|---|\n| {p['trials']}-trial predictor-only search on host ({p['sampler']}, "
              f"Ray, {p['workers']} workers), wall | {p['wall_s']:.1f} s |")
        print(f"| driver time per trial (ask + sample + tell, scoring excluded) | {p['driver_ms_per_trial']:.1f} ms |")
        print(f"| scoring time per trial (Ray round trip of the analytic score) | {1000 * p['score_s'] / p['trials']:.1f} ms |")
        print(f"| wall per trial, first / last 200 trials | {p['wall_ms_per_trial_first_200']:.1f} / "
              f"{p['wall_ms_per_trial_last_200']:.1f} ms |")
        for k, v in doc["storage_loop_ms_per_trial"].items():
            print(f"| the loop without scoring, 200 trials, {k} | {v:.1f} ms per trial |")
        q = doc["quality"] = {k: [cli_run(c, ["search", "--device", "s21", "--budget-ms", "30", "--proxies", "params",
                                              "--trials", "200", "--seed", str(s)], tmp, f"q-{k}-{s}")
                                  for s in QUALITY_SEEDS] for k, c in codes.items()}
        print("\n| best feasible score, s21 @ 30 ms, params score, 200 trials | " +
              " | ".join(f"seed {s}" for s in QUALITY_SEEDS) + " |\n|---|" + "---|" * len(QUALITY_SEEDS))
        for k, runs in q.items():
            print(f"| {k} | " + " | ".join(f"{r['best_score']:.4f}" if r["best_score"] is not None else "none"
                                          for r in runs) + " |")
    write_result("search_overhead", doc)


if __name__ == "__main__":
    main()
