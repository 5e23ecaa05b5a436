"""One question for the search: "how accurate will this candidate be, and how sure are we?".

Two sources answer it, and :func:`load_accuracy_model` picks the better one *by measurement*:

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
   same results; otherwise :meth:`ProxyAccuracy.describe` says why not.
"""
from __future__ import annotations

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
from .proxies import DEFAULT_PROXIES, PROXIES
from .reference import REFERENCE_SIZE, ProxySettings, raw_scores, reference_configs, transform
from .results import DEFAULT_RESULTS, ResultRecord, read_results

__all__ = ["ProxyAccuracy", "AccuracyPredictor", "MIN_RESULTS", "load_accuracy_model", "load_reference"]

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
        unknown = [n for n in self.proxies if n not in PROXIES]
        if unknown or not self.proxies:
            raise ValueError(f"proxies={','.join(unknown) or '(none)'}: allowed: {', '.join(PROXIES)}")
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
             f"{len(self.reference_)} reference EdgeViTs (higher is better; not a top-1)")
        return s + (f"; {self.note_}" if getattr(self, "note_", "") else "")

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


#: Results needed before the predictor is even considered; fewer cannot be cross-validated usefully.
MIN_RESULTS = 5


@register
class AccuracyPredictor(AccuracyEstimator):
    """Gaussian-process regression of top-1 on structure, costs and raw proxy scores.

    A GP because results are few (tens, not thousands) and the search needs an honest uncertainty
    that grows away from what was trained; the kernel's white-noise term absorbs seed-to-seed
    training noise. ``proxy`` is the fitted :class:`ProxyAccuracy` whose raw scores are features and
    whose percentile is the rival in leave-one-out; ``dataset`` names what the top-1 were measured on.
    """

    kind = "gp"
    unit = "top-1 %"

    def __init__(self, proxy: ProxyAccuracy | None = None, dataset: str = "imagenet-1k", seed: int = 0):
        self.proxy = proxy
        self.dataset = dataset
        self.seed = seed

    def _features(self, cfgs: Sequence[EdgeViTConfig]) -> np.ndarray:
        rows = []
        for c in cfgs:
            r = self.proxy.raw(c)
            rows.append(_structure(c) + [r.get(n, 0.0) if math.isfinite(r.get(n, float("nan"))) else 0.0
                                         for n in self.proxy.proxies])
        return np.array(rows, dtype=float)

    def fit(self, cfgs: Sequence[EdgeViTConfig], y: Sequence[float]) -> "AccuracyPredictor":
        if self.proxy is None:
            raise ValueError("proxy: the predictor needs a fitted ProxyAccuracy")
        fitted(self.proxy)
        cfgs = check_configs(cfgs)
        y = check_targets(y, len(cfgs), positive=False)
        X = self._features(cfgs)
        self.loo_tau_ = self.loo_mae_ = float("nan")
        with warnings.catch_warnings():  # few points: the kernel's bounds are often hit; that is expected
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model_ = _gp(self.seed).fit(X, y)
            if len(y) >= 4:
                loo = cross_val_predict(_gp(self.seed), X, y, cv=LeaveOneOut())
                self.loo_tau_ = _kendall(loo, y)
                self.loo_mae_ = float(np.mean(np.abs(loo - y)))
        self.proxy_tau_ = _kendall(self.proxy.predict(cfgs)[0], y)
        self.X_, self.y_ = X, y
        return self

    def predict(self, cfgs: Sequence[EdgeViTConfig]) -> tuple[np.ndarray, np.ndarray]:
        fitted(self)
        cfgs = check_configs(cfgs)
        if not cfgs:
            return np.zeros(0), np.zeros(0)
        X = self._features(cfgs)
        scaler, gp = self.model_.steps[0][1], self.model_.steps[1][1]
        mean, std = gp.predict(scaler.transform(X), return_std=True)
        return np.asarray(mean, float), np.asarray(std, float)

    @property
    def beats_proxy(self) -> bool:
        return len(self.y_) >= MIN_RESULTS and math.isfinite(self.loo_tau_) and (
            not math.isfinite(self.proxy_tau_) or self.loo_tau_ > self.proxy_tau_)

    def summary(self) -> str:
        if not math.isfinite(self.loo_tau_):
            return f"{len(self.y_)} training results on {self.dataset}: too few for leave-one-out"
        return (f"{len(self.y_)} training results on {self.dataset}: leave-one-out Kendall tau {self.loo_tau_:.2f} "
                f"(MAE {self.loo_mae_:.2f} points) against the proxy's {self.proxy_tau_:.2f}")

    def describe(self) -> str:
        return f"accuracy score: predicted top-1 % (Gaussian process; {self.summary()})"

    def _get_state(self) -> dict[str, Any]:
        gp = self.model_.steps[1][1]
        return {"X": self.X_.tolist(), "y": self.y_.tolist(), "theta": gp.kernel_.theta.tolist(),
                "loo_tau": self.loo_tau_, "loo_mae": self.loo_mae_, "proxy_tau": self.proxy_tau_}

    def _set_state(self, s: Mapping[str, Any]) -> None:
        if self.proxy is None:
            raise ModelFileError("proxy: a saved predictor carries its proxy score")
        self.X_ = state_array(s, "X", ndim=2)
        self.y_ = state_array(s, "y", ndim=1, size=len(self.X_))
        if self.X_.shape[1] != _N_STRUCTURE + len(self.proxy.proxies):
            raise ModelFileError("state.X: the feature count does not match")
        kernel = _gp(self.seed).steps[1][1].kernel.clone_with_theta(state_array(s, "theta", ndim=1, size=3))
        self.model_ = _gp(self.seed, kernel).fit(self.X_, self.y_)
        self.loo_tau_, self.loo_mae_, self.proxy_tau_ = (float(s[k]) for k in ("loo_tau", "loo_mae", "proxy_tau"))


def load_accuracy_model(dataset: str = "imagenet-1k", proxies: Iterable[str] | None = None,
                        results: str | os.PathLike | Sequence[ResultRecord] = DEFAULT_RESULTS,
                        root: str | os.PathLike = "runs/predictors", fidelity: str = "full",
                        use_predictor: bool | None = None, progress=None) -> AccuracyEstimator:
    """The accuracy model the search uses (module docstring).

    ``use_predictor``: ``None`` decides by cross-validation, ``False`` forces the proxy, ``True``
    forces the predictor when there are any results at all.
    """
    names = tuple(proxies) if proxies is not None else DEFAULT_PROXIES
    unknown = [n for n in names if n not in PROXIES]
    if unknown or not names:
        from search_space.config import ConfigError

        raise ConfigError("proxies", ",".join(unknown) or "(none)", "allowed: " + ", ".join(PROXIES))
    proxy = load_reference(ProxySettings(names), root, progress)
    recs = list(results) if not isinstance(results, (str, os.PathLike)) else read_results(results, dataset=dataset, fidelity=fidelity)
    recs = [r for r in recs if r.dataset == dataset and r.fidelity == fidelity]
    if use_predictor is False:
        proxy.note_ = "accuracy predictor switched off"
        return proxy
    if len(recs) < 2:
        proxy.note_ = f"accuracy predictor not used: {len(recs)} training results on {dataset}"
        return proxy
    pred = AccuracyPredictor(proxy, dataset=dataset).fit([r.cfg for r in recs], [r.best_top1 for r in recs])
    if use_predictor or pred.beats_proxy:
        return pred
    why = (f"needs >= {MIN_RESULTS} results" if len(recs) < MIN_RESULTS else "it does not beat the proxy yet")
    proxy.note_ = f"accuracy predictor not used ({why}): {pred.summary()}"
    return proxy
