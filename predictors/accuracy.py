"""One question for the search: "how accurate will this candidate be, and how sure are we?".

Two sources answer it, and :func:`load_accuracy_model` picks the better one *by measurement*:

1. **proxy** (always available): the candidate's zero-cost proxies (:data:`DEFAULT_PROXIES`,
   params + zico + dss, chosen on held-out splits of ViT-Bench-101 and NAS-Bench-201 among the
   subsets that order EdgeViT-XXS < XS < S, ``bench/proxy_selection.py``) placed
   among a fixed reference population of random EdgeViTs, aggregated AZ-NAS style (sum of log
   percentiles, each percentile smoothed as ``Phi`` of a robust z-score so that it keeps ordering
   beyond the population's extremes) and reported as their geometric mean, the **proxy percentile**
   in (0, 1): 0.7 means "scores like the 70th percentile of random candidates". A fixed population makes the score of a
   candidate independent of which other candidates a search happened to see, which a rank within
   the batch would not be.
2. **predictor**: a Gaussian process on proxy scores, costs and structure, trained on real training
   results (``nas train`` records plus the paper's three anchors, :mod:`predictors.results`). It
   gives top-1 with an uncertainty. It is used only when its leave-one-out Kendall tau on those
   results beats the proxy percentile's tau on the same results; otherwise :meth:`describe` says
   why not.

The proxies are computed at batch 8 on an input side scaled from the candidate's own resolution by
128/224 (the nearest side its sampling ratios allow, clamped to [96, 160]): the public validation ran
at 32 px (NAS-Bench-201) and 64 px (ViT-Bench-101), so a reduced side is what was validated, and it
keeps the default score near or under 1 s per candidate on one CPU thread (``bench/proxy_cost.py``)
while still letting resolution matter.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from search_space import DEFAULT_SPACE, PRESETS, EdgeViTConfig, cost

from . import proxies as _P
from .results import DEFAULT_RESULTS, ResultRecord, read_results

__all__ = [
    "DEFAULT_PROXIES", "ANALYTIC_PROXIES", "ProxySettings", "ProxyReference", "proxy_input_side",
    "raw_scores", "AccuracyModel", "ProxyAccuracy", "AccuracyPredictor", "load_accuracy_model",
    "reference_configs",
]

log = logging.getLogger(__name__)

#: The default proxy set (params + zico + dss): see :mod:`predictors.proxies` for how it was chosen.
DEFAULT_PROXIES: tuple[str, ...] = _P.DEFAULT_PROXIES

#: Proxies computed in closed form from :func:`search_space.cost` (no torch, microseconds): used by
#: fast searches and benchmarks with ``proxies=("params",)``.
ANALYTIC_PROXIES: tuple[str, ...] = ("params", "macs")

REFERENCE_SEED = 20221023  # the EdgeViT paper's arXiv date; any fixed seed would do
REFERENCE_SIZE = 64
_SHIPPED = "data/proxy_reference.json"


def proxy_input_side(cfg: EdgeViTConfig) -> int:
    """Input side the proxies use for ``cfg`` (module docstring): the side the network runs at
    nearest to its resolution x 128/224 clamped to [96, 160] (an r that divides only the full
    resolution keeps it)."""
    return cfg.nearest_side(min(160.0, max(96.0, cfg.resolution * 128 / 224)))


@dataclass(frozen=True)
class ProxySettings:
    """How proxies are computed; part of every cache key."""

    names: tuple[str, ...] = DEFAULT_PROXIES
    batch_size: int = 8
    seed: int = 0

    @property
    def analytic(self) -> bool:
        return all(n in ANALYTIC_PROXIES for n in self.names)

    @property
    def key(self) -> str:
        blob = json.dumps({"names": sorted(self.names), "batch": self.batch_size, "seed": self.seed, "side": "res*128/224 v2"})
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def raw_scores(cfg: EdgeViTConfig, settings: ProxySettings = ProxySettings()) -> dict[str, float]:
    """The raw proxy values of one candidate (analytic ones from the cost model, others from torch)."""
    out: dict[str, float] = {}
    c = cost(cfg)
    for n in settings.names:
        if n == "params":
            out[n] = float(c.params)
        elif n == "macs":
            out[n] = float(c.macs)
    rest = [n for n in settings.names if n not in out]
    if rest:
        import torch

        from search_space import build_model

        from .proxies import score

        torch.manual_seed(settings.seed)
        side = proxy_input_side(cfg)
        model = build_model(cfg)
        out.update(score(model, (3, side, side), rest, batch_size=settings.batch_size, num_classes=cfg.num_classes,
                         seed=settings.seed))
    return out


def _transform(name: str, value: float) -> float:
    """Proxies that are counts (params, MACs) compare on a log scale; the others are already logs
    or sums of logs (synflow, zico) or used as they are."""
    if name in ANALYTIC_PROXIES:
        return math.log(value) if value > 0 else float("nan")
    return float(value)


def reference_configs(n: int = REFERENCE_SIZE, seed: int = REFERENCE_SEED) -> list[EdgeViTConfig]:
    """The reference population: ``n`` random candidates of the default space plus the three presets."""
    return DEFAULT_SPACE.sample_random(n, seed=seed) + [PRESETS[k] for k in sorted(PRESETS)]


@dataclass
class ProxyReference:
    """Raw proxy scores of the reference population, one row per candidate."""

    settings: ProxySettings
    scores: dict[str, dict[str, float]]  # arch_id -> proxy -> value
    provenance: str = ""
    _scales: dict[str, tuple[float, float]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def _scale(self, name: str) -> tuple[float, float]:
        """Robust location and scale of a proxy over the population (median, 1.4826 x MAD), cached."""
        cache = self._scales
        if name not in cache:
            ref = np.array([_transform(name, s[name]) for s in self.scores.values()], dtype=float)
            ref = ref[np.isfinite(ref)]
            med = float(np.median(ref))
            mad = 1.4826 * float(np.median(np.abs(ref - med)))
            cache[name] = (med, mad if mad > 0 else float(np.std(ref)) or 1.0)
        return cache[name]

    def percentile(self, raw: dict[str, float]) -> float:
        """Geometric mean over proxies of the candidate's smoothed percentile in the population.

        Each proxy's percentile is ``Phi(z)``, ``z`` its robust z-score in the population (params
        and MACs on a log scale): the Gaussian-copula analogue of AZ-NAS's log-rank aggregation.
        Unlike an empirical rank among 67 networks it keeps ordering candidates beyond the
        population's extremes instead of tying them all at the top rank. A NaN counts as the worst.
        """
        from scipy.special import log_ndtr

        logs = []
        for n in self.settings.names:
            x = _transform(n, raw.get(n, float("nan")))
            if not math.isfinite(x):
                logs.append(float(log_ndtr(-8.0)))
                continue
            med, scale = self._scale(n)
            logs.append(float(log_ndtr((x - med) / scale)))
        return float(math.exp(sum(logs) / len(logs)))

    def to_dict(self) -> dict[str, Any]:
        return {"settings": {"names": list(self.settings.names), "batch_size": self.settings.batch_size,
                             "seed": self.settings.seed}, "key": self.settings.key, "provenance": self.provenance,
                "scores": self.scores}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ProxyReference":
        s = d["settings"]
        return cls(ProxySettings(tuple(s["names"]), int(s["batch_size"]), int(s["seed"])), d["scores"], d.get("provenance", ""))

    @classmethod
    def build(cls, settings: ProxySettings, progress=None) -> "ProxyReference":
        import platform
        from datetime import datetime, timezone

        cfgs = reference_configs()
        scores = {}
        for i, c in enumerate(cfgs):
            scores[c.arch_id] = raw_scores(c, settings)
            if progress:
                progress(i + 1, len(cfgs))
        prov = (f"{REFERENCE_SIZE} random candidates (DEFAULT_SPACE.sample_random seed {REFERENCE_SEED}) + 3 presets, "
                f"scored {datetime.now(timezone.utc):%Y-%m-%d} on {platform.processor() or platform.machine()}")
        return cls(settings, scores, prov)

    @classmethod
    def load(cls, settings: ProxySettings, root: str | os.PathLike = "runs/predictors", progress=None) -> "ProxyReference":
        """The shipped reference when its settings match, else a cached one in ``root``, else built and cached."""
        try:
            shipped = json.loads(resources.files("predictors").joinpath(_SHIPPED).read_text())
            if shipped.get("key") == settings.key:
                return cls.from_dict(shipped)
        except FileNotFoundError:
            pass
        path = Path(root) / f"proxy-reference-{settings.key}.json"
        if path.exists():
            return cls.from_dict(json.loads(path.read_text()))
        ref = cls.build(settings, progress)
        if not settings.analytic:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps(ref.to_dict()))
            os.replace(tmp, path)
        return ref


class AccuracyModel:
    """What the search calls: ``estimate(cfgs) -> (mean, std)``, higher is better; std NaN if unknown."""

    kind: str = ""
    unit: str = ""

    def estimate(self, cfgs: Sequence[EdgeViTConfig]) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass
class ProxyAccuracy(AccuracyModel):
    """The proxy percentile against a fixed reference population (module docstring)."""

    reference: ProxyReference
    note: str = ""
    kind: str = field(default="proxy", init=False)
    unit: str = field(default="proxy percentile", init=False)

    @property
    def settings(self) -> ProxySettings:
        return self.reference.settings

    def score_raw(self, raw: dict[str, float]) -> float:
        return self.reference.percentile(raw)

    def estimate(self, cfgs: Sequence[EdgeViTConfig]) -> tuple[np.ndarray, np.ndarray]:
        vals = [self.score_raw(self.reference.scores.get(c.arch_id) or raw_scores(c, self.settings)) for c in cfgs]
        return np.array(vals, dtype=float), np.full(len(vals), np.nan)

    def describe(self) -> str:
        s = (f"accuracy score: proxy percentile of {'+'.join(self.settings.names)} among "
             f"{len(self.reference.scores)} reference EdgeViTs (higher is better; not a top-1)")
        return s + (f"; {self.note}" if self.note else "")


def _structure(cfg: EdgeViTConfig) -> list[float]:
    c = cost(cfg)
    att = sum(s.depth for s in cfg.stages if s.has_attention)
    return [math.log(c.params), math.log(c.macs), cfg.resolution / 224.0, *cfg.depths,
            *[math.log(w) for w in cfg.widths], float(att)]


def _kendall(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import kendalltau

    if len(a) < 3 or np.allclose(a, a[0]) or np.allclose(b, b[0]):
        return float("nan")
    return float(kendalltau(a, b)[0])


@dataclass
class AccuracyPredictor(AccuracyModel):
    """Gaussian-process regression of top-1 on structure, costs and raw proxy scores.

    A GP because results are few (tens, not thousands) and the search needs an honest uncertainty
    that grows away from what was trained; the kernel's white-noise term absorbs seed-to-seed
    training noise.
    """

    proxy: ProxyAccuracy
    records: list[ResultRecord]
    loo_tau: float = float("nan")
    proxy_tau: float = float("nan")
    loo_mae: float = float("nan")
    kind: str = field(default="predictor", init=False)
    unit: str = field(default="top-1 %", init=False)

    def _raw(self, cfg: EdgeViTConfig) -> dict[str, float]:
        return self.proxy.reference.scores.get(cfg.arch_id) or raw_scores(cfg, self.proxy.settings)

    def _features(self, cfgs: Sequence[EdgeViTConfig], raws: Sequence[dict[str, float]] | None = None) -> np.ndarray:
        raws = raws if raws is not None else [self._raw(c) for c in cfgs]
        rows = []
        for c, r in zip(cfgs, raws):
            rows.append(_structure(c) + [r.get(n, 0.0) if math.isfinite(r.get(n, float("nan"))) else 0.0
                                         for n in self.proxy.settings.names])
        return np.array(rows, dtype=float)

    @staticmethod
    def _gp(seed: int = 0):
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, RBF, WhiteKernel
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        kernel = ConstantKernel(1.0) * RBF(length_scale=3.0, length_scale_bounds=(0.1, 100.0)) + WhiteKernel(0.1, (1e-4, 10.0))
        return make_pipeline(StandardScaler(), GaussianProcessRegressor(kernel, normalize_y=True, random_state=seed))

    def fit(self) -> "AccuracyPredictor":
        cfgs = [r.cfg for r in self.records]
        raws = [self._raw(c) for c in cfgs]
        X, y = self._features(cfgs, raws), np.array([r.best_top1 for r in self.records])
        with warnings.catch_warnings():  # few points: the kernel's bounds are often hit; that is expected
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model_ = self._gp().fit(X, y)
            if len(y) >= 4:
                loo = np.empty_like(y)
                for i in range(len(y)):
                    keep = np.arange(len(y)) != i
                    loo[i] = self._gp().fit(X[keep], y[keep]).predict(X[i:i + 1])[0]
                self.loo_tau = _kendall(loo, y)
                self.loo_mae = float(np.mean(np.abs(loo - y)))
        self.proxy_tau = _kendall(np.array([self.proxy.score_raw(r) for r in raws]), y)
        return self

    def estimate(self, cfgs: Sequence[EdgeViTConfig]) -> tuple[np.ndarray, np.ndarray]:
        X = self._features(cfgs)
        scaler, gp = self.model_.steps[0][1], self.model_.steps[1][1]
        mean, std = gp.predict(scaler.transform(X), return_std=True)
        return np.asarray(mean, float), np.asarray(std, float)

    @property
    def beats_proxy(self) -> bool:
        return len(self.records) >= MIN_RESULTS and math.isfinite(self.loo_tau) and (
            not math.isfinite(self.proxy_tau) or self.loo_tau > self.proxy_tau)

    def summary(self) -> str:
        ds = self.records[0].dataset if self.records else "?"
        if not math.isfinite(self.loo_tau):
            return f"{len(self.records)} training results on {ds}: too few for leave-one-out"
        return (f"{len(self.records)} training results on {ds}: leave-one-out Kendall tau {self.loo_tau:.2f} "
                f"(MAE {self.loo_mae:.2f} points) against the proxy's {self.proxy_tau:.2f}")

    def describe(self) -> str:
        return f"accuracy score: predicted top-1 % (Gaussian process; {self.summary()})"


#: Results needed before the predictor is even considered; fewer cannot be cross-validated usefully.
MIN_RESULTS = 5


def load_accuracy_model(dataset: str = "imagenet-1k", proxies: Iterable[str] | None = None,
                        results: str | os.PathLike | Sequence[ResultRecord] = DEFAULT_RESULTS,
                        root: str | os.PathLike = "runs/predictors", fidelity: str = "full",
                        use_predictor: bool | None = None, progress=None) -> AccuracyModel:
    """The accuracy model the search uses (module docstring).

    ``use_predictor``: ``None`` decides by cross-validation, ``False`` forces the proxy, ``True``
    forces the predictor when there are any results at all.
    """
    from .proxies import PROXIES

    names = tuple(proxies) if proxies is not None else DEFAULT_PROXIES
    unknown = [n for n in names if n not in PROXIES]
    if unknown or not names:
        from search_space.config import ConfigError

        raise ConfigError("proxies", ",".join(unknown) or "(none)", "allowed: " + ", ".join(PROXIES))
    proxy = ProxyAccuracy(ProxyReference.load(ProxySettings(names), root, progress))
    recs = list(results) if not isinstance(results, (str, os.PathLike)) else read_results(results, dataset=dataset, fidelity=fidelity)
    recs = [r for r in recs if r.dataset == dataset and r.fidelity == fidelity]
    if use_predictor is False:
        proxy.note = "accuracy predictor switched off"
        return proxy
    if len(recs) < 2:
        proxy.note = f"accuracy predictor not used: {len(recs)} training results on {dataset}"
        return proxy
    pred = AccuracyPredictor(proxy, recs).fit()
    if use_predictor or pred.beats_proxy:
        return pred
    why = (f"needs >= {MIN_RESULTS} results" if len(recs) < MIN_RESULTS else "it does not beat the proxy yet")
    proxy.note = f"accuracy predictor not used ({why}): {pred.summary()}"
    return proxy
