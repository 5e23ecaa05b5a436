"""Figure: the accuracy prior's leave-one-family-out error, beside the #params-only and MACs-only fits.

Reads the shipped training table (``predictors/accuracy/data/imagenet_light.json``, written by
``bench/imagenet_light_table.py``), fits :class:`predictors.accuracy.prior.AccuracyPrior` with
``form="auto"``, which measures every candidate form leaving one family out at a time and keeps the
winner by the rule fixed in ``predictors/accuracy/prior.py`` (lowest mean absolute error; a form
with fewer features within 0.05 points is preferred), and prints per form: MAE, RMSE, Kendall tau
of the held-out predictions, and the share of rows within 1 and 2 calibrated sigma; then the
paper's three EdgeViTs predicted with their family held out, and the error per held-out family.
Writes the fitted prior the package ships (``predictors/accuracy/data/accuracy_prior.json``) and
``bench/results/accuracy_prior.json``.

Run: ``python bench/accuracy_prior.py`` (seconds).
"""
from __future__ import annotations

import numpy as np

from benchlib import ROOT, setup, write_result

setup()
from predictors.accuracy.prior import FORMS, AccuracyPrior, load_table, table_rows  # noqa: E402
from search_space.files import write_json  # noqa: E402

SHIPPED = ROOT / "predictors" / "accuracy" / "data" / "accuracy_prior.json"
SOURCE = "published ImageNet-1k results (timm; EdgeViT Table 1)"


def main() -> None:
    rows, y = table_rows()
    prior = AccuracyPrior(source=SOURCE).fit(rows, y)
    fams = np.array([r.family for r in rows])
    print(f"{len(rows)} rows (distilled left out), {len(set(fams))} families; leave-one-family-out, top-1 points")
    print(f"{'form':30s} {'MAE':>6s} {'RMSE':>6s} {'tau':>6s} {'cov1s':>6s} {'cov2s':>6s} {'sigma x':>8s}")
    for f, s in prior.lofo_.items():
        mark = "  <- chosen" if f == prior.form_ else ""
        print(f"{f:30s} {s['mae']:6.2f} {s['rmse']:6.2f} {s['kendall']:6.3f} {s['cov1']:6.2f} {s['cov2']:6.2f} "
              f"{s['z_rms']:8.2f}{mark}")
    print("\nEdgeViT with its family held out (the paper's top-1 vs predicted, chosen form ± 1 sigma; baselines):")
    edge = [i for i, r in enumerate(rows) if r.family == "edgevit"]
    ch = prior.lofo_[prior.form_]
    for i in edge:
        print(f"  {rows[i].name:12s} paper {y[i]:5.1f}  {prior.form_} {ch['pred'][i]:5.1f} ± {ch['std'][i]:.1f}  "
              f"params {prior.lofo_['params']['pred'][i]:5.1f}  macs {prior.lofo_['macs']['pred'][i]:5.1f}")
    print("\nper held-out family: MAE of the chosen form / #params / MACs (n rows)")
    per = {}
    for f in sorted(set(fams)):
        ix = np.flatnonzero(fams == f)
        per[f] = {k: float(np.mean(np.abs(np.array(prior.lofo_[k]["pred"])[ix] - y[ix])))
                  for k in (prior.form_, "params", "macs")}
        per[f]["n"] = int(len(ix))
        print(f"  {f:20s} {per[f][prior.form_]:5.2f} / {per[f]['params']:5.2f} / {per[f]['macs']:5.2f}  ({len(ix)})")
    coef = dict(zip(FORMS[prior.form_], prior.model_.coef_.round(3).tolist()))
    print(f"\nchosen: {prior.form_}; coefficients on standardised features {coef}, intercept "
          f"{prior.model_.intercept_:.2f}; sigma multiplier {prior.scale_:.2f}")
    print(prior.describe())
    write_json(SHIPPED, prior.to_dict(), indent=1)
    print(f"wrote {SHIPPED.relative_to(ROOT)}")
    write_result("accuracy_prior", {
        "table": {k: load_table()[k] for k in ("source", "rule", "counted", "date")},
        "rows": len(rows), "families": len(set(fams)), "chosen": prior.form_, "rule": "lowest LOFO MAE; fewer features within 0.05 points",
        "lofo": {f: {k: v for k, v in s.items() if k not in ("pred", "std")} for f, s in prior.lofo_.items()},
        "edgevit": {rows[i].name: {"paper": float(y[i]), **{f: prior.lofo_[f]["pred"][i] for f in FORMS},
                                    "std": ch["std"][i]} for i in edge},
        "per_family_mae": per, "coefficients": coef, "intercept": float(prior.model_.intercept_),
        "sigma_multiplier": prior.scale_, "describe": prior.describe()})


if __name__ == "__main__":
    main()
