"""Figure: host latency predictors in distribution and on networks drawn differently, beside the baselines
and the instrument's own repeat.

Every method of ``predictors.latency`` (MACs power law and linear MACs/params fit: the trivial
baselines; kernel sum; kernel sum with correction; whole-graph trees; the operator-level model) on
the same data in the same run:

1. **in distribution**: 5-fold cross-validation over the training measurements (random candidates of
   the search space, ``nas farm sample``);
2. **held out, drawn differently**: each method fitted on all training measurements and judged on
   ``search_space.held_out.held_out_set()`` (constructor-like EdgeViTs: one head_dim, LGL where r > 1,
   global where r = 1, kernel 5, 160-256 px; the three presets; width/depth extremes), which no method
   ever trains on; figures as predicted and after one scalar rescale (geometric mean of measured over
   predicted).

Truth: ``norm_ms`` (interleaved candle protocol, issue #13) where measured, else the raw median.
The instrument's repeat over every recorded ``bench/results/farm_noise*.json`` pair is printed beside
(its range, and on how many pairs issue #13's target held): no predictor can be checked to better than
it. Targets (issue #13) on the held-out set after one rescale: >= 95 % within 10 %, >= 75 % within
5 %, Kendall tau >= 0.97, better than both baselines on every column. Then prediction throughput for
10,000 candidates.

**A second measurement of the held-out networks** (``--repeat``: a store or CSV of the same networks
measured again later in a separate process, against the same reference candles; by default the shipped
``tests/data/host_v2_heldout_repeat.csv`` when present) makes the truth the geometric mean of the two
passes, and gives the instrument's own figures on exactly these networks: the first pass used as a
predictor of the second (same columns, same rescale). A predictor cannot be checked to better than
that row; every method is also scored against each pass alone, so the effect of the truth's own
noise is visible.

Run: ``python bench/latency_predictors.py [--store runs/farm/host_v2.sqlite] [--repeat F]``; without a
store it uses the measurements shipped in ``tests/data/`` (``host_v2.csv`` and its operator profiles
``host_v2_op_profiles.csv.gz``, issue #13). Writes ``bench/results/latency_predictors.json``.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchlib import RESULTS, ROOT, setup, write_result

setup()
import search_space as ss  # noqa: E402
from device_farm import MeasurementStore  # noqa: E402
from predictors.latency import METHODS, cross_validate, dataset, features  # noqa: E402
from predictors.latency.estimators import fit_method  # noqa: E402
from predictors.latency.training import held_out_figures, profiles_of  # noqa: E402
from predictors.metrics import regression_metrics  # noqa: E402
from search_space.held_out import held_out_set  # noqa: E402

SHIPPED = ROOT / "tests" / "data"
TARGETS = {"within_10": 0.95, "within_5": 0.75, "kendall_tau": 0.97}


def shipped_store() -> MeasurementStore:
    """A temporary store holding the shipped host measurements and their operator profiles."""
    from device_farm.store import import_op_profiles

    store = MeasurementStore(Path(tempfile.mkdtemp()) / "m.sqlite")
    store.import_csv(SHIPPED / "host_v2.csv")
    ops = SHIPPED / "host_v2_op_profiles.csv.gz"
    if ops.exists():
        import_op_profiles(store, ops)
    return store


def repeat_truth(path: Path, device: str, held_ids: list[str], first: np.ndarray) -> tuple[np.ndarray, dict]:
    """The held-out truth as the geometric mean of two passes, and the instrument's figures between them.

    ``path``: a store or CSV holding the second pass. Networks clean in both passes are kept (a mask
    over ``held_ids``); the first pass as a predictor of the second is scored like any method.
    """
    if path.suffix == ".csv":
        rep = MeasurementStore(Path(tempfile.mkdtemp()) / "r.sqlite")
        rep.import_csv(path)
    else:
        rep = MeasurementStore(path)
    second = {}
    for r in rep.query(device=device, status="ok"):
        v = r.norm_ms if r.norm_ms is not None else r.median_ms
        second[r.arch_id] = v  # the latest row wins
    keep = np.array([a in second for a in held_ids])
    b = np.array([second[a] for a, k in zip(held_ids, keep) if k])
    a = first[keep]
    scale = float(np.exp(np.mean(np.log(b / a))))
    rel = np.abs(b / a - 1)
    info = {"source": str(path), "n_both_ok": int(keep.sum()), "n_first": len(held_ids),
            "rel_diff": {"median": float(np.median(rel)), "p90": float(np.percentile(rel, 90)), "max": float(rel.max())},
            "first_predicts_second": regression_metrics(b, a * scale).as_dict(), "scale": scale}
    return keep, {"second": b, "info": info}


def recorded_repeat_pairs() -> dict | None:
    """The instrument's repeat over every recorded ``bench/farm_noise.py`` pair (the stored definition in
    one unit): one pair is one machine state, so the range over all of them is the honest ceiling beside
    these figures, not the latest or best pair."""
    from farm_noise import recorded_pairs, tally

    rows = recorded_pairs(RESULTS)
    return tally(rows) if rows else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--device", default="host")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=Path, default=None,
                    help="a second measurement of the held-out networks (store or CSV; default: the shipped "
                         "tests/data/host_v2_heldout_repeat.csv when the shipped data are used)")
    args = ap.parse_args()
    if args.repeat is None and args.store is None and (SHIPPED / "host_v2_heldout_repeat.csv").exists():
        args.repeat = SHIPPED / "host_v2_heldout_repeat.csv"
    store = MeasurementStore(args.store) if args.store else shipped_store()
    source = str(args.store) if args.store else "tests/data (shipped)"
    cfgs, y, rows = dataset(store, args.device)
    held = {c.arch_id for c in held_out_set()}
    tr = [i for i, c in enumerate(cfgs) if c.arch_id not in held]
    te = [i for i, c in enumerate(cfgs) if c.arch_id in held]
    profiles = profiles_of(store, rows)
    methods = [m for m in METHODS if profiles is not None or not getattr(METHODS[m], "needs_profiles", False)]
    tr_cfgs, tr_y = [cfgs[i] for i in tr], y[tr]
    tr_prof = [profiles[i] for i in tr] if profiles is not None else None
    truth = "norm_ms" if all(r.norm_ms is not None for r in rows) else "median_ms"
    print(f"{len(tr)} training and {len(te)} held-out {args.device} measurements from {source}; truth {truth}; "
          f"latency {y.min():.1f}-{y.max():.1f} ms; methods: {', '.join(methods)}")

    t0 = time.perf_counter()
    cv = {m: cross_validate(m, tr_cfgs, tr_y, folds=5, seed=args.seed, profiles=tr_prof)[0] for m in methods}
    cv_s = time.perf_counter() - t0
    te_cfgs, te_y = [cfgs[i] for i in te], y[te]
    repeat, passes = None, {}
    if args.repeat is not None and te:
        keep, rep = repeat_truth(args.repeat, args.device, [c.arch_id for c in te_cfgs], te_y)
        repeat = rep["info"]
        first, second = te_y[keep], rep["second"]
        te_cfgs = [c for c, k in zip(te_cfgs, keep) if k]
        passes = {"first pass": first, "second pass": second}
        te_y = np.sqrt(first * second)  # the truth: geometric mean of the two passes
        repeat["truth"] = "geometric mean of the two passes"
    ho = held_out_figures(methods, tr_cfgs, tr_y, tr_prof, te_cfgs, te_y, args.seed) if te else {}
    per_pass = {k: held_out_figures(methods, tr_cfgs, tr_y, tr_prof, te_cfgs, v, args.seed) for k, v in passes.items()}

    noise = recorded_repeat_pairs()

    def show(title: str, table: dict[str, dict]) -> None:
        print(f"\n{title}")
        print(f"{'method':12} {'<=5%':>7} {'<=10%':>7} {'RMSE ms':>8} {'tau':>6} {'rho':>6}")
        for m, r in table.items():
            print(f"{m:12} {r['within_5']:>7.1%} {r['within_10']:>7.1%} {r['rmse']:>8.3f} {r['kendall_tau']:>6.3f} "
                  f"{r['spearman']:>6.3f}")

    show(f"in distribution: 5-fold cross-validation over {len(tr)} random candidates", {m: r.as_dict() for m, r in cv.items()})
    verdict = {}
    if ho:
        what = " (truth: geometric mean of two passes)" if repeat else ""
        show(f"held out ({len(te_y)} constructor-like, presets, extremes), as predicted{what}",
             {m: ho[m]["as_predicted"] for m in methods})
        rows_ = {m: ho[m]["rescaled"] for m in methods}
        if repeat:
            rows_["instrument"] = repeat["first_predicts_second"]
        show(f"held out, after one scalar rescale{what}" + ("; 'instrument': the first pass as a predictor of "
                                                           "the second, the ceiling" if repeat else ""), rows_)
        for k, figs in per_pass.items():
            show(f"held out against the {k} alone, after one scalar rescale", {m: figs[m]["rescaled"] for m in methods})
        base = {k: max(ho[b]["rescaled"][k] for b in ("macs", "linear")) for k in TARGETS}
        for m in methods:
            r = ho[m]["rescaled"]
            verdict[m] = {"targets_met": all(r[k] >= v for k, v in TARGETS.items()),
                          "beats_baselines_on_every_column": all(r[k] > base[k] for k in TARGETS),
                          "margin_over_best_baseline": {k: r[k] - base[k] for k in TARGETS}}
        print("\nheld-out targets (>= 95% within 10%, >= 75% within 5%, tau >= 0.97) and margin over the best "
              "baseline (macs, linear) per column:")
        for m, v in verdict.items():
            mg = v["margin_over_best_baseline"]
            print(f"  {m:12} targets {'met' if v['targets_met'] else 'missed'}; margin <=10% {mg['within_10']:+.1%}, "
                  f"<=5% {mg['within_5']:+.1%}, tau {mg['kendall_tau']:+.3f}")
    if repeat:
        d = repeat["rel_diff"]
        print(f"\ninstrument repeat on these held-out networks ({repeat['n_both_ok']} clean in both passes, "
              f"{args.repeat}): median {d['median']:.2%}, p90 {d['p90']:.2%}, max {d['max']:.2%}")
    if noise:
        print(f"\ninstrument repeat over the {noise['pairs']} recorded bench/farm_noise.py pairs (stored definition, "
              f"runs >= 10 min apart): medians {noise['median_range'][0]:.2%}-{noise['median_range'][1]:.2%}, "
              f"p90 {noise['p90_range'][0]:.2%}-{noise['p90_range'][1]:.2%}; target (1.5% / 4%) met on "
              f"{noise['met']} of {noise['pairs']}")

    best = max(cv, key=lambda m: (cv[m].within_10, cv[m].within_5, -cv[m].rmse))
    est = fit_method(best, tr_cfgs, tr_y, tr_prof, n_folds_sigma=0)
    many = ss.DEFAULT_SPACE.sample_random(10_000, seed=123)
    for cached in (features._local_vector, features._attn_vector, features._edge_vector):
        cached.cache_clear()  # a truly cold start: no half-block seen before
    t0 = time.perf_counter()
    est.predict(many)
    cold = time.perf_counter() - t0
    many2 = ss.DEFAULT_SPACE.sample_random(10_000, seed=456)
    t0 = time.perf_counter()
    est.predict(many2)
    warm = time.perf_counter() - t0
    print(f"\nthroughput ({best}): 10,000 candidates in {cold:.2f} s (cold caches), {warm:.2f} s (10,000 other "
          f"candidates, warm caches); cross-validation of all methods {cv_s:.0f} s")
    write_result("latency_predictors", {
        "source": source, "device": args.device, "truth": truth, "n_train": len(tr), "n_held_out": len(te),
        "cv5": {m: r.as_dict() for m, r in cv.items()}, "held_out": ho, "verdict": verdict, "targets": TARGETS,
        "noise_floor": noise, "repeat": repeat,
        "held_out_per_pass": {k: {m: f[m]["rescaled"] for m in methods} for k, f in per_pass.items()},
        "best_cv": best, "throughput_10k_s": {"cold": cold, "warm": warm},
    })


if __name__ == "__main__":
    main()
