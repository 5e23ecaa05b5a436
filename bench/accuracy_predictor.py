"""Figure: when does a learned accuracy predictor beat the zero-cost proxy? A learning curve.

EdgeViT has only three trained points in public (the paper's XXS/XS/S), so the predictor's own data
cannot show this yet. ViT-Bench-101 can: 100 trained transformers per space with raw proxy scores
(stored by ``bench/proxies_vitbench.py``). For n = 5, 10, 20, 40 training results (10 random draws
each) the package's Gaussian process (``predictors.accuracy.model._gp``, same kernel)
is fitted on [log params, log MACs, synflow, zico] and scored on the remaining networks beside the
default proxy score and #params on the same held-out networks. Also reported: the coverage of the
GP's +-1 and +-2 sigma intervals (0.68 / 0.95 if calibrated).

Run: ``python bench/accuracy_predictor.py``; writes ``bench/results/accuracy_predictor.json``.
"""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
from scipy.stats import kendalltau
from sklearn.exceptions import ConvergenceWarning

from benchlib import RESULTS, setup, write_result

setup()
from predictors.accuracy.model import _gp  # noqa: E402
from predictors.accuracy.proxies import DEFAULT_PROXIES, rank_normalised  # noqa: E402

TARGETS = (("autoformer", "cifar100_distill"), ("autoformer", "cifar100"), ("pit", "cifar100"), ("pit", "cifar100_distill"))
SIZES = (5, 10, 20, 40)
DRAWS = 10


def main() -> None:
    warnings.simplefilter("ignore", ConvergenceWarning)
    vb = json.loads((RESULTS / "proxies_vitbench.json").read_text())["results"]
    rows, out = [], []
    for space, col in TARGETS:
        r = vb[space]
        ks = [k for k in r["scores"] if r["accuracy"][k].get(col) is not None]
        sc = {p: np.array([r["scores"][k][p] for k in ks], float) for p in ("params", "macs", *DEFAULT_PROXIES)}
        y = np.array([r["accuracy"][k][col] for k in ks], float)
        X = np.column_stack([np.log(sc["params"]), np.log(sc["macs"])] + [sc[p] for p in DEFAULT_PROXIES])
        for n in SIZES:
            rng = np.random.default_rng(n)
            t_gp, t_px, t_pa, c1, c2 = [], [], [], [], []
            for _ in range(DRAWS):
                perm = rng.permutation(len(y))
                tr, te = perm[:n], perm[n:]
                gp = _gp().fit(X[tr], y[tr])
                scaler, reg = gp.steps[0][1], gp.steps[1][1]
                mean, std = reg.predict(scaler.transform(X[te]), return_std=True)
                proxy = sum(np.log(rank_normalised(sc[p][te])) for p in DEFAULT_PROXIES)
                t_gp.append(kendalltau(mean, y[te])[0])
                t_px.append(kendalltau(proxy, y[te])[0])
                t_pa.append(kendalltau(sc["params"][te], y[te])[0])
                z = np.abs(mean - y[te]) / np.maximum(std, 1e-9)
                c1.append(float(np.mean(z <= 1)))
                c2.append(float(np.mean(z <= 2)))
            row = {"space": space, "column": col, "n_train": n, "gp_tau": float(np.nanmean(t_gp)),
                   "proxy_tau": float(np.mean(t_px)), "params_tau": float(np.mean(t_pa)),
                   "gp_beats_proxy": int(sum(a > b for a, b in zip(t_gp, t_px))), "draws": DRAWS,
                   "coverage_1sigma": float(np.mean(c1)), "coverage_2sigma": float(np.mean(c2))}
            out.append(row)
            rows.append(row)
    print(f"{'target':32s} {'n':>3s} {'GP tau':>7s} {'proxy':>7s} {'params':>7s} {'GP>proxy':>9s} {'cov1s':>6s} {'cov2s':>6s}")
    for r in rows:
        print(f"{r['space'] + '/' + r['column']:32s} {r['n_train']:3d} {r['gp_tau']:7.3f} {r['proxy_tau']:7.3f} "
              f"{r['params_tau']:7.3f} {r['gp_beats_proxy']:>4d}/{r['draws']:<4d} {r['coverage_1sigma']:6.2f} "
              f"{r['coverage_2sigma']:6.2f}")
    write_result("accuracy_predictor", {
        "features": ["log params", "log macs", *DEFAULT_PROXIES], "default_proxies": list(DEFAULT_PROXIES),
        "source": "bench/results/proxies_vitbench.json raw scores (ViT-Bench-101)", "rows": out})
    assert all(math.isfinite(r["proxy_tau"]) for r in rows)


if __name__ == "__main__":
    main()
