"""The accuracy prior: ImageNet-1k top-1 as a function of parameters, MACs, resolution and depth,
fitted on published results of light networks.

Why: on real ImageNet-1k no zero-cost proxy ranks light models better than counting their
parameters (``bench/RESULTS.md``, proxies_imagenet), and a proxy percentile is not a top-1 anyway.
What does carry over from one light network to another is how top-1 grows with size and compute.
This module fits that growth on the published top-1 of light models that timm builds (the table
``data/imagenet_light.json``, written once by ``bench/imagenet_light_table.py``, which states the
selection rule and how every count was made) plus EdgeViT's own Table 1, and answers with an
estimated top-1 and an uncertainty.

Features (logs, because top-1 grows roughly linearly in log size over this range):

- ``log_params``: parameters of the network as built (timm ``pretrained=False``; EdgeViT: analytic);
- ``log_macs``: multiply-accumulates of one image at the published resolution (torch's
  ``FlopCounterMode`` FLOPs / 2, attention unfused; EdgeViT: the analytic count, which equals it);
- ``log_res``: that resolution;
- ``log_depth``: weighted layers executed in one forward pass (every convolution, depthwise
  included, transposed convolution and linear layer, the classifier included). It is countable on
  any module and, for EdgeViT, from the operator graph (``search_space.graph``), which is why this
  definition rather than a per-family block count;
- ``log_macs_sq``: the square of standardised ``log_macs``, a saturation term (top-1 flattens as
  compute grows).

Candidate forms (:data:`FORMS`) are Bayesian linear regressions (:class:`sklearn.linear_model.BayesianRidge`)
on standardised features. Protocol, fixed before any held-out number was seen: every form's error is
measured leaving one *family* out at a time (all variants of a family, every resolution, are held
out together: variants of one family share a design and a recipe, so holding out single rows would
flatter every form), pooled over all rows; the form with the lowest leave-one-family-out mean absolute
error wins, except that a form with fewer features within :data:`TIE_POINTS` of it is preferred.
The predictive standard deviation is the regression's own (noise plus coefficient uncertainty, so it
grows away from the data), multiplied by the root mean square of the leave-one-family-out z-scores,
so that held-out families see intervals of the right width on average.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.stats import kendalltau
from sklearn.linear_model import BayesianRidge

from search_space import EdgeViTConfig, cost
from search_space.files import loads

from ..base import AccuracyEstimator, ModelFileError, check_targets, estimator_from_dict, fitted, register, \
    state_array, state_number
from .domain import Domain

__all__ = ["FEATURES", "FORMS", "TIE_POINTS", "WEIGHTED_KINDS", "PriorRow", "AccuracyPrior", "row_of", "load_table",
           "table_rows", "load_prior", "TABLE", "SHIPPED_PRIOR"]

FEATURES: tuple[str, ...] = ("log_params", "log_macs", "log_res", "log_depth", "log_macs_sq")
#: Candidate forms: name -> features. ``params`` and ``macs`` are the trivial baselines.
FORMS: dict[str, tuple[str, ...]] = {
    "params": ("log_params",),
    "macs": ("log_macs",),
    "params+macs": ("log_params", "log_macs"),
    "params+macs+res": ("log_params", "log_macs", "log_res"),
    "params+macs+res+depth": ("log_params", "log_macs", "log_res", "log_depth"),
    "params+macs+res+sat": ("log_params", "log_macs", "log_res", "log_macs_sq"),
    "params+macs+res+depth+sat": ("log_params", "log_macs", "log_res", "log_depth", "log_macs_sq"),
}
#: A form with fewer features is preferred when its leave-one-family-out MAE is within this many points.
TIE_POINTS = 0.05
#: Operator kinds of ``search_space.graph`` that are weighted layers (the depth count).
WEIGHTED_KINDS: frozenset[str] = frozenset({"conv", "dwconv", "pwconv", "conv_transpose", "linear"})
#: Package data: the training table and the fitted prior.
TABLE = "data/imagenet_light.json"
SHIPPED_PRIOR = "data/accuracy_prior.json"


@dataclass(frozen=True)
class PriorRow:
    """One network the prior knows or is asked about. ``family`` groups variants for leave-one-family-out."""

    params: float
    macs: float
    resolution: int
    depth: int
    family: str = ""
    name: str = ""

    def __post_init__(self) -> None:
        for f in ("params", "macs", "resolution", "depth"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{f}={v!r}: allowed: a finite number > 0")


def row_of(cfg: EdgeViTConfig) -> PriorRow:
    """An EdgeViT candidate as the prior sees it: analytic params and MACs, its resolution, its
    weighted layers counted on the operator graph (equal to the count on the module, tested)."""
    from search_space.graph import operators

    c = cost(cfg)
    depth = sum(op.kind in WEIGHTED_KINDS for op in operators(cfg))
    return PriorRow(float(c.params), float(c.macs), int(cfg.resolution), int(depth), "edgevit", cfg.name or cfg.arch_id)


def _raw(rows: Sequence[PriorRow]) -> np.ndarray:
    return np.array([[math.log(r.params), math.log(r.macs), math.log(r.resolution), math.log(r.depth)] for r in rows],
                    dtype=float)


def _design(raw: np.ndarray, mean: np.ndarray, scale: np.ndarray, form: str) -> np.ndarray:
    z = (raw - mean) / scale
    cols = {"log_params": z[:, 0], "log_macs": z[:, 1], "log_res": z[:, 2], "log_depth": z[:, 3],
            "log_macs_sq": z[:, 1] ** 2}
    return np.column_stack([cols[f] for f in FORMS[form]])


def _regression(raw: np.ndarray, y: np.ndarray, form: str) -> tuple[BayesianRidge, np.ndarray, np.ndarray]:
    mean = raw.mean(axis=0)
    scale = raw.std(axis=0)
    scale[scale <= 0] = 1.0
    model = BayesianRidge(max_iter=1000, tol=1e-8).fit(_design(raw, mean, scale, form), y)
    return model, mean, scale


def _predict(model: BayesianRidge, mean: np.ndarray, scale: np.ndarray, raw: np.ndarray, form: str
             ) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = model.predict(_design(raw, mean, scale, form), return_std=True)
    return np.asarray(mu, float), np.asarray(sd, float)


def lofo(rows: Sequence[PriorRow], y: np.ndarray, form: str) -> tuple[np.ndarray, np.ndarray]:
    """Held-out mean and (uncalibrated) std of every row, from a fit without the row's family."""
    raw, fams = _raw(rows), np.array([r.family for r in rows])
    mu, sd = np.full(len(rows), np.nan), np.full(len(rows), np.nan)
    for f in np.unique(fams):
        test = fams == f
        if test.all():
            continue
        model, m, s = _regression(raw[~test], y[~test], form)
        mu[test], sd[test] = _predict(model, m, s, raw[test], form)
    return mu, sd


def _summary(y: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> dict[str, Any]:
    ok = np.isfinite(mu)
    err, z = mu[ok] - y[ok], (mu[ok] - y[ok]) / sd[ok]
    k = float(np.sqrt(np.mean(z ** 2)))
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2))),
            "kendall": float(kendalltau(mu[ok], y[ok])[0]), "z_rms": k,
            "cov1": float(np.mean(np.abs(z) <= k)), "cov2": float(np.mean(np.abs(z) <= 2 * k)), "n": int(ok.sum()),
            "pred": [float(v) for v in mu], "std": [float(v) * k for v in sd]}


def choose_form(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """The protocol's rule (module docstring): lowest LOFO MAE; fewer features within TIE_POINTS win."""
    best = min(summaries, key=lambda f: summaries[f]["mae"])
    near = [f for f in summaries if summaries[f]["mae"] <= summaries[best]["mae"] + TIE_POINTS]
    return min(near, key=lambda f: (len(FORMS[f]), summaries[f]["mae"]))


@register
class AccuracyPrior(AccuracyEstimator):
    """Estimated top-1 from size, compute, resolution and depth (module docstring).

    ``fit(rows, top1)``: :class:`PriorRow` s with their families; ``form``: ``"auto"`` (chosen by the
    protocol) or one of :data:`FORMS`; ``source``: what the rows are, for :meth:`describe`.
    ``predict`` takes EdgeViT configurations or :class:`PriorRow` s.
    """

    kind = "prior"
    unit = "top-1 %"

    def __init__(self, form: str = "auto", source: str = "published ImageNet-1k results"):
        self.form = form
        self.source = source

    def fit(self, X: Sequence[PriorRow], y: Sequence[float]) -> "AccuracyPrior":
        rows = _check_rows(X)
        y = check_targets(y, len(rows), positive=False)
        if self.form != "auto" and self.form not in FORMS:
            raise ValueError(f"form={self.form!r}: allowed: auto, {', '.join(FORMS)}")
        if len({r.family for r in rows}) < 3:
            raise ValueError("rows: need networks of at least 3 families (leave-one-family-out)")
        self.lofo_ = {f: _summary(y, *lofo(rows, y, f)) for f in FORMS}
        self.form_ = choose_form(self.lofo_) if self.form == "auto" else self.form
        self.rows_, self.y_ = list(rows), y
        self._refit()
        return self

    def _refit(self) -> None:
        self.scale_ = float(self.lofo_[self.form_]["z_rms"])
        self.model_, self.mean_, self.std_ = _regression(_raw(self.rows_), self.y_, self.form_)
        fams = sorted({r.family for r in self.rows_})
        self.domain_ = Domain.of([r.params for r in self.rows_], [r.macs for r in self.rows_],
                                 [r.resolution for r in self.rows_],
                                 f"{len(self.rows_)} {self.source} of {len(fams)} families of light networks; "
                                 f"leave-one-family-out MAE {self.lofo_[self.form_]['mae']:.1f} top-1 points")

    def predict(self, X: Sequence[EdgeViTConfig | PriorRow]) -> tuple[np.ndarray, np.ndarray]:
        fitted(self)
        rows = [row_of(x) if isinstance(x, EdgeViTConfig) else x for x in X]
        if not rows:
            return np.zeros(0), np.zeros(0)
        rows = _check_rows(rows)
        mu, sd = _predict(self.model_, self.mean_, self.std_, _raw(rows), self.form_)
        return mu, sd * self.scale_

    def domain(self) -> Domain:
        fitted(self)
        return self.domain_

    def lofo_mae(self, form: str | None = None) -> float:
        fitted(self)
        return float(self.lofo_[form or self.form_]["mae"])

    def short(self) -> str:
        """One phrase: what the prior rests on and its held-out error beside the trivial fits."""
        fams = len({r.family for r in self.rows_})
        return (f"accuracy prior ({self.form_}, Bayesian linear in log features) fitted on {len(self.rows_)} "
                f"{self.source} of {fams} families; leave-one-family-out MAE {self.lofo_mae():.2f} top-1 points "
                f"(#params alone {self.lofo_mae('params'):.2f}, MACs alone {self.lofo_mae('macs'):.2f})")

    def describe(self) -> str:
        s = (f"accuracy score: estimated ImageNet-1k top-1 % ± 1 sigma from the {self.short()}; "
             f"validated on {self.domain_.range_text()}")
        return s + (f"; {self.note_}" if getattr(self, "note_", "") else "")

    def _get_state(self) -> dict[str, Any]:
        return {"form": self.form_, "rows": [[r.params, r.macs, r.resolution, r.depth, r.family, r.name]
                                             for r in self.rows_],
                "y": self.y_.tolist(), "lofo": self.lofo_}

    def _set_state(self, s: Mapping[str, Any]) -> None:
        form = s["form"]
        if form not in FORMS:
            raise ModelFileError(f"state.form={str(form)[:40]!r}: allowed: {', '.join(FORMS)}")
        raw = s["rows"]
        if not isinstance(raw, list) or not raw or len(raw) > 100_000:
            raise ModelFileError("state.rows: expected a non-empty list of rows")
        try:
            rows = [PriorRow(float(p), float(m), int(r), int(d), str(f), str(n)) for p, m, r, d, f, n in raw]
        except (TypeError, ValueError) as e:
            raise ModelFileError(f"state.rows: {str(e)[:120]}") from None
        y = state_array(s, "y", ndim=1, size=len(rows))
        lofo_ = s["lofo"]
        if not isinstance(lofo_, dict) or set(lofo_) != set(FORMS):
            raise ModelFileError(f"state.lofo: expected one summary per form ({', '.join(FORMS)})")
        for f, summ in lofo_.items():
            if not isinstance(summ, dict):
                raise ModelFileError(f"state.lofo.{f}: expected an object")
            for k in ("mae", "rmse", "kendall", "z_rms", "cov1", "cov2"):
                state_number(summ, k, allow_nan=(k == "kendall"))
            if state_number(summ, "z_rms") <= 0:
                raise ModelFileError(f"state.lofo.{f}.z_rms: must be > 0")
        self.form_, self.rows_, self.y_, self.lofo_ = form, rows, y, lofo_
        self._refit()


def _check_rows(X: Any) -> list[PriorRow]:
    rows = list(X)
    for i, r in enumerate(rows):
        if not isinstance(r, PriorRow):
            raise TypeError(f"X[{i}]: expected a PriorRow or an EdgeViTConfig, got {type(r).__name__}")
    if not rows:
        raise ValueError("X: no rows")
    return rows


# ------------------------------------------------------------------------------------ shipped data
@lru_cache(maxsize=1)
def load_table() -> dict[str, Any]:
    """The shipped training table (``data/imagenet_light.json``): rows, the rule, how they were counted."""
    text = resources.files("predictors.accuracy").joinpath(TABLE).read_text()
    return loads(text, f"shipped {TABLE}")


def table_rows(include_distilled: bool = False) -> tuple[list[PriorRow], np.ndarray]:
    """The prior's training rows and top-1 from the shipped table. Distilled results are left out by
    default: their top-1 owes part of itself to a teacher that ``nas train``'s recipe does not use."""
    rows, y = [], []
    for r in load_table()["rows"]:
        if r["distilled"] and not include_distilled:
            continue
        rows.append(PriorRow(float(r["params"]), float(r["macs"]), int(r["img_size"]), int(r["depth"]), r["family"],
                             r["model"]))
        y.append(float(r["top1"]))
    return rows, np.array(y, dtype=float)


@lru_cache(maxsize=1)
def load_prior() -> AccuracyPrior:
    """The shipped fitted prior (``data/accuracy_prior.json``, written by ``bench/accuracy_prior.py``);
    fitted from the shipped table when that file is absent."""
    try:
        text = resources.files("predictors.accuracy").joinpath(SHIPPED_PRIOR).read_text()
    except FileNotFoundError:
        return AccuracyPrior().fit(*table_rows())
    est = estimator_from_dict(loads(text, f"shipped {SHIPPED_PRIOR}"))
    if not isinstance(est, AccuracyPrior):
        raise ModelFileError(f"shipped {SHIPPED_PRIOR}: kind={est.kind!r}, expected 'prior'")
    return est
