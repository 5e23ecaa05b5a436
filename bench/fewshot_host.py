"""Figure: few-shot calibration of the host from 20 of its measurements, against baselines fitted on
the same 20 and evaluated on all the other measured candidates.

The few-shot adapter (``predictors.latency.fewshot``) regresses the host's log latency on the phones'
predicted log latencies (nn-Meter block models of s21, pixel4, pixel1) and log MACs. Baselines on the
same 20 points: MACs power law, linear fit on MACs and params, the kernel-sum model, and the
nearest device (the base device whose predictions have the highest Spearman with the 20
measurements, rescaled by a power law). Five seeds; each seed draws a different 20.

Run: ``python bench/fewshot_host.py [--store runs/farm/measurements.sqlite]``; writes
``bench/results/fewshot_host.json``.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from benchlib import ROOT, setup, write_result

setup()
from device_farm import MeasurementStore  # noqa: E402
from predictors.latency import METHODS, FewShotAdapter, dataset, load_device_model  # noqa: E402
from predictors.metrics import regression_metrics  # noqa: E402

BASES = ("s21", "pixel4", "pixel1")


class _Cached:
    """A base whose predictions for the evaluated candidates were computed once (the phone models are
    slow to evaluate 5 x 2 times over the same few hundred candidates)."""

    def __init__(self, pred: np.ndarray, index: dict[str, int]):
        self.pred, self.index = pred, index

    def __call__(self, cfgs):
        return self.pred[[self.index[c.arch_id] for c in cfgs]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=Path("runs/farm/measurements.sqlite"))
    ap.add_argument("--shots", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    store = MeasurementStore(args.store) if args.store.exists() else None
    source = str(args.store)
    if store is None or not dataset(store, "host")[1].size:
        store = MeasurementStore(Path(tempfile.mkdtemp()) / "m.sqlite")
        store.import_csv(ROOT / "tests" / "data" / "host_measurements.csv")
        source = "tests/data/host_measurements.csv"
    cfgs, y, _ = dataset(store, "host")
    index = {c.arch_id: i for i, c in enumerate(cfgs)}
    cached = {b: _Cached(load_device_model(b).predict(cfgs)[0], index) for b in BASES}
    print(f"{len(y)} host measurements from {source}; {args.shots} shots; bases {', '.join(BASES)}")

    rows: dict[str, list] = {}
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        idx = rng.permutation(len(y))
        tr, te = idx[: args.shots], idx[args.shots:]
        ctr, cte = [cfgs[i] for i in tr], [cfgs[i] for i in te]
        preds = {"few-shot (phones + MACs)": FewShotAdapter(bases=cached).fit(ctr, y[tr]).predict(cte)[0]}
        for m in ("macs", "linear", "kernel"):
            preds[f"{m} on the {args.shots}"] = METHODS[m](n_folds_sigma=0).fit(ctr, y[tr]).predict(cte)[0]
        near = max(BASES, key=lambda b: spearmanr(cached[b](ctr), y[tr])[0])
        coef = np.polyfit(np.log(cached[near](ctr)), np.log(y[tr]), 1)
        preds["nearest device"] = np.exp(np.polyval(coef, np.log(cached[near](cte))))
        for name, p in preds.items():
            rows.setdefault(name, []).append(regression_metrics(y[te], p))
    print(f"\n{'method':28} {'<=5%':>7} {'<=10%':>7} {'tau':>7} {'rho':>7}   (mean over {args.seeds} seeds, "
          f"{len(y) - args.shots} held-out candidates each)")
    summary = {}
    for name, ms in rows.items():
        s = {k: float(np.mean([getattr(m, k) for m in ms])) for k in ("within_5", "within_10", "kendall_tau", "spearman")}
        summary[name] = s
        print(f"{name:28} {s['within_5']:>7.1%} {s['within_10']:>7.1%} {s['kendall_tau']:>7.3f} {s['spearman']:>7.3f}")
    write_result("fewshot_host", {"source": source, "n": len(y), "shots": args.shots, "seeds": args.seeds,
                                  "bases": BASES, "summary": summary})


if __name__ == "__main__":
    main()
