"""One question for the search: "how accurate will this candidate be, and how sure are we?".

**The default** (:data:`DEFAULT_SOURCE` ``"prior"``): an estimated ImageNet-1k top-1 with an
uncertainty. Its mean is the accuracy prior (:mod:`predictors.accuracy.prior`: top-1 from
parameters, MACs, resolution and depth, fitted on published results of light networks), and a
Gaussian process on the residuals of the user's own training results (``runs/results.jsonl``,
plus the paper's three anchors) corrects it near them (:class:`AccuracyPredictor` with a ``prior``).
It is the default because on real ImageNet-1k no zero-cost proxy ranks light networks better than
#params or MACs (``bench/proxy_selection.py``, held-out protocol; ``bench/RESULTS.md``).

**Proxies are opt-in** (``proxies=...``, ``nas search --proxies ...``). Then two sources answer,
and :func:`load_accuracy_model` picks the better one *by measurement*:

1. **proxy** (:class:`ProxyAccuracy`, always available): the candidate's zero-cost proxies
   (:data:`~predictors.accuracy.proxies.DEFAULT_PROXIES`) placed among a fixed reference population
   of EdgeViTs (:mod:`predictors.accuracy.reference`), aggregated AZ-NAS style (sum of log
   percentiles, each percentile smoothed as ``Phi`` of a robust z-score so that it keeps ordering
   beyond the population's extremes) and reported as their geometric mean, the **proxy percentile**
   in (0, 1): 0.7 means "scores like the 70th percentile of random candidates". Fitting it means
   scoring the reference population; a fresh install reads the shipped scores instead.
2. **predictor** (:class:`AccuracyPredictor`): a Gaussian process on proxy scores, costs and
   structure, trained on real training results (``nas train`` records plus the paper's three
   anchors, :mod:`predictors.accuracy.results`). It gives top-1 with an uncertainty. It is used
   only when its leave-one-out Kendall tau on those results beats the proxy percentile's tau on the
   same results; otherwise :meth:`ProxyAccuracy.describe` says why not. On ImageNet-1k its mean is
   the accuracy prior too.

Every estimator here states the :class:`~predictors.accuracy.domain.Domain` it was validated on
(``domain()``); the search flags candidates outside it.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import platform
import warnings
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy.special import log_ndtr
from scipy.stats import kendalltau
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.model_selection import LeaveOneOut, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from search_space import EdgeViTConfig, cost
from search_space.config import NUM_STAGES
from search_space.files import FileFormatError, loads, read_json, write_json

from ..base import AccuracyEstimator, ModelFileError, check_configs, check_targets, fitted, register, state_array
from .domain import Domain
from .prior import AccuracyPrior, load_prior, table_rows
from .proxy_names import ALL_PROXIES, DEFAULT_PROXIES
from .reference import REFERENCE_SIZE, ProxySettings, raw_scores, reference_configs, transform
from .results import DEFAULT_RESULTS, ResultRecord, read_results

__all__ = ["ProxyAccuracy", "AccuracyPredictor", "MIN_RESULTS", "DEFAULT_SOURCE", "PRIOR_DATASET", "load_accuracy_model",
           "load_reference", "proxy_names"]

#: What the search scores with when no proxies are asked for: ``"prior"`` (estimated top-1, the
#: accuracy prior corrected by training results) or ``"proxies"`` (the percentile of
#: :data:`~predictors.accuracy.proxies.DEFAULT_PROXIES`). Set by the held-out protocol of
#: ``bench/proxy_selection.py`` (its rule is in its docstring).
DEFAULT_SOURCE = "prior"
#: The data set the prior's top-1 are measured on; on another one the prior only ranks.
PRIOR_DATASET = "imagenet-1k"

log = logging.getLogger(__name__)

_SHIPPED = "data/proxy_reference.json"


@register
class ProxyAccuracy(AccuracyEstimator):
    """The proxy percentile against a fixed reference population (module docstring).

    ``fit(cfgs)`` scores the reference population ``cfgs`` (no targets); ``predict(cfgs)`` gives the
    percentile and a NaN std (a proxy has no calibrated uncertainty).
    """

    kind = "proxy"
    unit = "proxy percentile"

    def __init__(self, proxies: Sequence[str] = DEFAULT_PROXIES, batch_size: int = 8, seed: int = 0):
        self.proxies = proxies
        self.batch_size = batch_size
        self.seed = seed

    @property
    def settings(self) -> ProxySettings:
        return ProxySettings(tuple(self.proxies), int(self.batch_size), int(self.seed))

    def fit(self, cfgs: Sequence[EdgeViTConfig], y: Any = None, progress=None) -> "ProxyAccuracy":
        cfgs = check_configs(cfgs)
        unknown = [n for n in self.proxies if n not in ALL_PROXIES]
        if unknown or not self.proxies:
            raise ValueError(f"proxies={','.join(unknown) or '(none)'}: allowed: {', '.join(ALL_PROXIES)}")
        scores = {}
        for i, c in enumerate(cfgs):
            scores[c.arch_id] = raw_scores(c, self.settings)
            if progress:
                progress(i + 1, len(cfgs))
        self.reference_ = scores
        self.key_ = self.settings.key
        self.provenance_ = (f"{len(cfgs)} reference candidates (search_space.reference_set), scored "
                            f"{datetime.now(timezone.utc):%Y-%m-%d} on {platform.processor() or platform.machine()}")
        self._compute_scales()
        self.note_ = ""
        return self

    def _compute_scales(self) -> None:
        """Robust location and scale of each proxy over the population (median, 1.4826 x MAD)."""
        self.scales_: dict[str, tuple[float, float]] = {}
        for name in self.proxies:
            ref = np.array([transform(name, s[name]) for s in self.reference_.values()], dtype=float)
            ref = ref[np.isfinite(ref)]
            if not len(ref):
                raise ModelFileError(f"proxy reference: no finite {name} score in the population")
            med = float(np.median(ref))
            mad = 1.4826 * float(np.median(np.abs(ref - med)))
            self.scales_[name] = (med, mad if mad > 0 else float(np.std(ref)) or 1.0)

    def score_raw(self, raw: Mapping[str, float]) -> float:
        """Geometric mean over proxies of the candidate's smoothed percentile in the population.

        Each proxy's percentile is ``Phi(z)``, ``z`` its robust z-score in the population (params
        and MACs on a log scale): the Gaussian-copula analogue of AZ-NAS's log-rank aggregation.
        Unlike an empirical rank among 67 networks it keeps ordering candidates beyond the
        population's extremes instead of tying them all at the top rank. A NaN counts as the worst.
        """
        logs = []
        for n in self.proxies:
            x = transform(n, raw.get(n, float("nan")))
            if not math.isfinite(x):
                logs.append(float(log_ndtr(-8.0)))
                continue
            med, scale = self.scales_[n]
            logs.append(float(log_ndtr((x - med) / scale)))
        return float(math.exp(sum(logs) / len(logs)))

    def raw(self, cfg: EdgeViTConfig) -> dict[str, float]:
        """The candidate's raw proxy scores (from the population when it is a member)."""
        return self.reference_.get(cfg.arch_id) or raw_scores(cfg, self.settings)

    def predict(self, cfgs: Sequence[EdgeViTConfig]) -> tuple[np.ndarray, np.ndarray]:
        fitted(self)
        vals = [self.score_raw(self.raw(c)) for c in check_configs(cfgs)]
        return np.array(vals, dtype=float), np.full(len(vals), np.nan)

    def describe(self) -> str:
        s = (f"accuracy score: proxy percentile of {'+'.join(self.proxies)} among "
             f"{len(self.reference_)} reference EdgeViTs (a rank, higher is better; not a top-1)")
        return s + (f"; {self.note_}" if getattr(self, "note_", "") else "")

    def domain(self) -> Domain:
        """The light networks whose real ImageNet-1k top-1 the proxies were checked against
        (``nas proxy eval --bench imagenet-light``); a percentile says nothing beyond them."""
        rows, _ = table_rows()
        return Domain.of([r.params for r in rows], [r.macs for r in rows], [r.resolution for r in rows],
                         f"a rank, not a top-1: proxies checked against the ImageNet-1k top-1 of {len(rows)} light "
                         "networks (nas proxy eval --bench imagenet-light), ViT-Bench-101 and NAS-Bench-201")

    def _get_state(self) -> dict[str, Any]:
        return {"key": self.key_, "provenance": self.provenance_, "scores": self.reference_}

    def _set_state(self, s: Mapping[str, Any]) -> None:
        scores = s["scores"]
        if not isinstance(scores, dict) or not scores:
            raise ModelFileError("state.scores: expected a JSON object of raw scores by arch_id")
        for aid, row in scores.items():
            if not isinstance(row, dict) or set(row) < set(self.proxies):
                raise ModelFileError(f"state.scores[{aid[:20]!r}]: needs the proxies {', '.join(self.proxies)}")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row.values()):
                raise ModelFileError(f"state.scores[{aid[:20]!r}]: values must be numbers")
        self.reference_ = {str(k): {n: float(v) for n, v in row.items()} for k, row in scores.items()}
        self.key_ = str(s["key"])
        self.provenance_ = str(s.get("provenance", ""))
        self._compute_scales()
        self.note_ = ""


def load_reference(settings: ProxySettings, root: str | os.PathLike = "runs/predictors", progress=None
                   ) -> ProxyAccuracy:
    """The fitted proxy score for ``settings``: the shipped population when its settings match, else
    one cached in ``root``, else the population scored now (and cached unless it is analytic)."""
    est = ProxyAccuracy(settings.names, settings.batch_size, settings.seed)
    shipped = resources.files("predictors.accuracy").joinpath(_SHIPPED)
    try:
        d = ProxyAccuracy.from_dict(loads(shipped.read_text(), f"shipped {_SHIPPED}"))
        if d.key_ == settings.key:
            return d
    except FileNotFoundError:
        pass
    path = Path(root) / f"proxy-reference-{settings.key}.json"
    if path.exists():
        try:
            cached = ProxyAccuracy.from_dict(read_json(path, what="proxy reference"))
            if cached.key_ == settings.key:
                return cached
        except (ModelFileError, FileFormatError) as e:
            log.warning("%s: %s; scoring the reference population again", path, e)
    est.fit(reference_configs(REFERENCE_SIZE), progress=progress)
    if not settings.analytic:
        write_json(path, est.to_dict())
    return est


def _structure(cfg: EdgeViTConfig) -> list[float]:
    c = cost(cfg)
    att = sum(s.depth for s in cfg.stages if s.has_attention)
    return [math.log(c.params), math.log(c.macs), cfg.resolution / 224.0, *cfg.depths,
            *[math.log(w) for w in cfg.widths], float(att)]


_N_STRUCTURE = 3 + 2 * NUM_STAGES + 1  # log params, log MACs, resolution, depths, log widths, attention blocks


def _kendall(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.allclose(a, a[0]) or np.allclose(b, b[0]):
        return float("nan")
    return float(kendalltau(a, b)[0])


def _gp(seed: int = 0, kernel=None):
    if kernel is None:
        kernel = (ConstantKernel(1.0) * RBF(length_scale=3.0, length_scale_bounds=(0.1, 100.0))
                  + WhiteKernel(0.1, (1e-4, 10.0)))
        return make_pipeline(StandardScaler(), GaussianProcessRegressor(kernel, normalize_y=True, random_state=seed))
    return make_pipeline(StandardScaler(), GaussianProcessRegressor(kernel, normalize_y=True, optimizer=None,
                                                                    random_state=seed))


#: Length scale of the residual GP on top of the prior, in standard deviations of the results' features.
LENGTH_BOUNDS = (0.3, 3.0)
#: Noise of a training result in prior sigmas (z units, a variance): the floor keeps a trained network's
#: interval at about 0.1 top-1 points (0.055 of the prior's sigma of about 1.8) instead of zero.
NOISE_BOUNDS = (3e-3, 1.0)
#: Results needed before the predictor is even considered; fewer cannot be cross-validated usefully.
MIN_RESULTS = 5


@register
class AccuracyPredictor(AccuracyEstimator):
    """Gaussian-process regression of top-1 on structure, costs and (opt-in) raw proxy scores.

    A GP because results are few (tens, not thousands) and the search needs an honest uncertainty
    that grows away from what was trained; the kernel's white-noise term absorbs seed-to-seed
    training noise. ``proxy``: a fitted :class:`ProxyAccuracy` whose raw scores are features and
    whose percentile is the rival in leave-one-out (``None``: no proxies). ``prior``: an
    :class:`~predictors.accuracy.prior.AccuracyPrior` that is the mean; the GP then models the
    residual in units of the prior's own standard deviation, ``z = (top-1 - m(x)) / s(x)``, with unit
    amplitude, so that far from the results the prediction is the prior's, mean and interval, and
    near them it follows them. ``dataset`` names what the top-1 were measured on.
    """

    kind = "gp"
    unit = "top-1 %"

    def __init__(self, proxy: ProxyAccuracy | None = None, dataset: str = "imagenet-1k", seed: int = 0,
                 prior: AccuracyPrior | None = None):
        self.proxy = proxy
        self.dataset = dataset
        self.seed = seed
        self.prior = prior

    def _features(self, cfgs: Sequence[EdgeViTConfig]) -> np.ndarray:
        rows = []
        for c in cfgs:
            extra = []
            if self.proxy is not None:
                r = self.proxy.raw(c)
                extra = [r.get(n, 0.0) if math.isfinite(r.get(n, float("nan"))) else 0.0 for n in self.proxy.proxies]
            rows.append(_structure(c) + extra)
        return np.array(rows, dtype=float)

    def _n_features(self) -> int:
        return _N_STRUCTURE + (len(self.proxy.proxies) if self.proxy is not None else 0)

    def _model(self, kernel=None):
        if self.prior is None:
            return _gp(self.seed, kernel)
        if kernel is None:
            # amplitude fixed at the prior's own sigma (z units); the length scale bounded, because a
            # handful of results otherwise prefers an infinite one and shrinks every interval alike
            kernel = (ConstantKernel(1.0, "fixed") * RBF(length_scale=1.0, length_scale_bounds=LENGTH_BOUNDS)
                      + WhiteKernel(0.05, NOISE_BOUNDS))
            return make_pipeline(StandardScaler(), GaussianProcessRegressor(kernel, normalize_y=False,
                                                                            random_state=self.seed))
        return make_pipeline(StandardScaler(), GaussianProcessRegressor(kernel, normalize_y=False, optimizer=None,
                                                                        random_state=self.seed))

    def _prior_of(self, cfgs: Sequence[EdgeViTConfig]) -> tuple[np.ndarray, np.ndarray]:
        if self.prior is None:
            return np.zeros(len(cfgs)), np.ones(len(cfgs))
        return self.prior.predict(cfgs)

    def fit(self, cfgs: Sequence[EdgeViTConfig], y: Sequence[float]) -> "AccuracyPredictor":
        if self.proxy is not None:
            fitted(self.proxy)
        if self.prior is not None:
            fitted(self.prior)
        cfgs = check_configs(cfgs)
        y = check_targets(y, len(cfgs), positive=False)
        if not len(y):
            raise ValueError("y: the predictor needs at least one training result")
        X = self._features(cfgs)
        m, s = self._prior_of(cfgs)
        z = (y - m) / s
        self.loo_tau_ = self.loo_mae_ = float("nan")
        with warnings.catch_warnings():  # few points: the kernel's bounds are often hit; that is expected
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model_ = self._model().fit(X, z)
            if len(y) >= 4:
                loo = m + s * cross_val_predict(self._model(), X, z, cv=LeaveOneOut())
                self.loo_tau_ = _kendall(loo, y)
                self.loo_mae_ = float(np.mean(np.abs(loo - y)))
        self.proxy_tau_ = _kendall(self.proxy.predict(cfgs)[0], y) if self.proxy is not None else float("nan")
        self.prior_tau_ = _kendall(m, y) if self.prior is not None else float("nan")
        self.prior_mae_ = float(np.mean(np.abs(m - y))) if self.prior is not None else float("nan")
        self.X_, self.y_, self.z_ = X, y, z
        self.ranges_ = [(float(cost(c).params), float(cost(c).macs), int(c.resolution)) for c in cfgs]
        return self

    def predict(self, cfgs: Sequence[EdgeViTConfig]) -> tuple[np.ndarray, np.ndarray]:
        fitted(self)
        cfgs = check_configs(cfgs)
        if not cfgs:
            return np.zeros(0), np.zeros(0)
        X = self._features(cfgs)
        scaler, gp = self.model_.steps[0][1], self.model_.steps[1][1]
        mean, std = gp.predict(scaler.transform(X), return_std=True)
        m, s = self._prior_of(cfgs)
        return m + s * np.asarray(mean, float), s * np.asarray(std, float)

    @property
    def beats_proxy(self) -> bool:
        return len(self.y_) >= MIN_RESULTS and math.isfinite(self.loo_tau_) and (
            not math.isfinite(self.proxy_tau_) or self.loo_tau_ > self.proxy_tau_)

    def summary(self) -> str:
        n = f"{len(self.y_)} training results on {self.dataset}"
        if not math.isfinite(self.loo_tau_):
            return f"{n}: too few for leave-one-out"
        if self.proxy is not None:
            return (f"{n}: leave-one-out Kendall tau {self.loo_tau_:.2f} (MAE {self.loo_mae_:.2f} points) against "
                    f"the proxy's {self.proxy_tau_:.2f}")
        if self.prior is not None:
            return (f"{n}: leave-one-out MAE {self.loo_mae_:.2f} points, Kendall tau {self.loo_tau_:.2f} (the prior "
                    f"alone: MAE {self.prior_mae_:.2f}, tau {self.prior_tau_:.2f})")
        return f"{n}: leave-one-out Kendall tau {self.loo_tau_:.2f} (MAE {self.loo_mae_:.2f} points)"

    def domain(self) -> Domain:
        fitted(self)
        own = Domain.of(*zip(*self.ranges_), f"{len(self.y_)} training results on {self.dataset}")
        if self.prior is None:
            return own
        return self.prior.domain().union(own, f"{self.prior.domain().what}; and {own.what}")

    def describe(self) -> str:
        if self.prior is not None:
            return (f"accuracy score: estimated top-1 % ± 1 sigma on {self.dataset}: the {self.prior.short()}, "
                    f"corrected by a Gaussian process on {self.summary()}; validated on {self.domain().range_text()}")
        return f"accuracy score: predicted top-1 % (Gaussian process; {self.summary()})"

    def _get_state(self) -> dict[str, Any]:
        gp = self.model_.steps[1][1]
        return {"X": self.X_.tolist(), "y": self.y_.tolist(), "theta": gp.kernel_.theta.tolist(),
                "loo_tau": self.loo_tau_, "loo_mae": self.loo_mae_, "proxy_tau": self.proxy_tau_,
                "prior_tau": self.prior_tau_, "prior_mae": self.prior_mae_, "ranges": self.ranges_,
                "z": self.z_.tolist()}

    def _set_state(self, s: Mapping[str, Any]) -> None:
        self.X_ = state_array(s, "X", ndim=2)
        self.y_ = state_array(s, "y", ndim=1, size=len(self.X_))
        if self.X_.shape[1] != self._n_features():
            raise ModelFileError("state.X: the feature count does not match")
        base = self._model().steps[1][1].kernel
        kernel = base.clone_with_theta(state_array(s, "theta", ndim=1, size=len(base.theta)))
        ranges = s.get("ranges")
        if not isinstance(ranges, list) or len(ranges) != len(self.y_):
            raise ModelFileError("state.ranges: expected one [params, macs, resolution] per result")
        self.ranges_ = [(float(p), float(m), int(r)) for p, m, r in ranges]
        self.loo_tau_, self.loo_mae_, self.proxy_tau_ = (float(s[k]) for k in ("loo_tau", "loo_mae", "proxy_tau"))
        self.prior_tau_, self.prior_mae_ = float(s.get("prior_tau", "nan")), float(s.get("prior_mae", "nan"))
        # the GP's target: top-1 itself, or the residual in prior sigmas when a prior is the mean
        self.z_ = state_array(s, "z", ndim=1, size=len(self.y_)) if "z" in s or self.prior is not None else self.y_
        self.model_ = self._model(kernel).fit(self.X_, self.z_)


def proxy_names(proxies: Iterable[str] | None) -> tuple[str, ...] | None:
    """``None`` stays ``None`` (the default source); ``default`` and ``all`` expand; unknown names are one line."""
    if proxies is None:
        return None
    names: list[str] = []
    for n in proxies:
        names += list(DEFAULT_PROXIES if n == "default" else ALL_PROXIES if n == "all" else [n])
    unknown = [n for n in names if n not in ALL_PROXIES]
    if unknown or not names:
        from search_space.config import ConfigError

        raise ConfigError("proxies", ",".join(unknown) or "(none)", "allowed: default, all, " + ", ".join(ALL_PROXIES))
    return tuple(dict.fromkeys(names))


def _with_note(est, note: str):
    est = copy.deepcopy(est)
    est.note_ = note
    return est


def load_accuracy_model(dataset: str = "imagenet-1k", proxies: Iterable[str] | None = None,
                        results: str | os.PathLike | Sequence[ResultRecord] = DEFAULT_RESULTS,
                        root: str | os.PathLike = "runs/predictors", fidelity: str = "full",
                        use_predictor: bool | None = None, progress=None) -> AccuracyEstimator:
    """The accuracy model the search uses (module docstring).

    ``proxies``: ``None`` for the default source (:data:`DEFAULT_SOURCE`), else the proxies of the
    opt-in proxy score (``"default"`` and ``"all"`` expand). ``use_predictor``: ``None`` decides by
    cross-validation, ``False`` forces the prior / the proxy, ``True`` forces the predictor when
    there are any results at all.
    """
    names = proxy_names(proxies)
    recs = list(results) if not isinstance(results, (str, os.PathLike)) else read_results(results, dataset=dataset, fidelity=fidelity)
    recs = [r for r in recs if r.dataset == dataset and r.fidelity == fidelity]
    on_prior_data = dataset == PRIOR_DATASET and fidelity == "full"
    if names is None and DEFAULT_SOURCE == "prior":
        prior = load_prior()
        if use_predictor is False or not recs:
            return _with_note(prior, "no training results used" if recs else f"no training results on {dataset}")
        if on_prior_data:
            return AccuracyPredictor(dataset=dataset, prior=prior).fit([r.cfg for r in recs], [r.best_top1 for r in recs])
        # another data set: the ImageNet-1k prior only ranks there; a GP on its own results replaces it when it ranks better
        pred = AccuracyPredictor(dataset=dataset).fit([r.cfg for r in recs], [r.best_top1 for r in recs])
        rival = _kendall(prior.predict([r.cfg for r in recs])[0], pred.y_)
        if use_predictor or (len(recs) >= MIN_RESULTS and math.isfinite(pred.loo_tau_)
                             and (not math.isfinite(rival) or pred.loo_tau_ > rival)):
            return pred
        why = f"needs >= {MIN_RESULTS} results" if len(recs) < MIN_RESULTS else "it does not beat the prior's ranking yet"
        return _with_note(prior, f"used as a rank on {dataset}; accuracy predictor not used ({why}): {pred.summary()}")
    names = names or DEFAULT_PROXIES
    proxy = load_reference(ProxySettings(names), root, progress)
    prior = load_prior() if on_prior_data else None
    if use_predictor is False:
        proxy.note_ = "accuracy predictor switched off"
        return proxy
    if len(recs) < 2:
        proxy.note_ = f"accuracy predictor not used: {len(recs)} training results on {dataset}"
        return proxy
    pred = AccuracyPredictor(proxy, dataset=dataset, prior=prior).fit([r.cfg for r in recs], [r.best_top1 for r in recs])
    if use_predictor or pred.beats_proxy:
        return pred
    why = (f"needs >= {MIN_RESULTS} results" if len(recs) < MIN_RESULTS else "it does not beat the proxy yet")
    proxy.note_ = f"accuracy predictor not used ({why}): {pred.summary()}"
    return proxy
