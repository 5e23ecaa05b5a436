"""What defines a search: the settings saved in ``command.json`` so that a resume repeats them."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from statistics import NormalDist
from typing import Any

from search_space.config import ConfigError

__all__ = ["AUTO_TPE_MAX_TRIALS", "MODES", "OBJECTIVES", "SAMPLERS", "DEFAULT_TRIALS", "DEFAULT_WORKERS", "SearchConfig", "new_run_id"]

#: Objective name -> Optuna direction.
OBJECTIVES: dict[str, str] = {"accuracy": "maximize", "latency": "minimize", "energy": "minimize"}
SAMPLERS: tuple[str, ...] = ("auto", "nsga2", "tpe", "gp", "random")
#: ``auto`` is TPE up to this many trials and NSGA-II beyond. bench/search_efficiency.py (s21, 30 ms,
#: default score, 5 seeds, 2026-12-02): TPE finds the better best feasible score at 100 and 200
#: trials and the larger hypervolume at 50, 100 and 200; but its cost per trial grows with the
#: history (about 65 ms a trial on average over 200 trials here, against NSGA-II's flat few ms), so
#: thousands of trials would take many minutes. NSGA-II's cost stays flat.
AUTO_TPE_MAX_TRIALS = 300
#: What the sampler optimises. ``front`` (the default): every objective at once, the budgets as
#: constraints. ``budget``: the accuracy score alone, the budgets as constraints. The benchmark above
#: found ``front`` better at the budget too (best feasible score at 200 trials 75.9 against 74.5
#: for TPE, 75.5 against 74.9 for NSGA-II): candidates just under the budget are reached through
#: the front's faster neighbours. The reported Pareto front is computed from all candidates in both.
MODES: tuple[str, ...] = ("front", "budget")
#: 200 trials: 27 s for ``nas search --device s21 --budget-ms 30`` in a new process with the default
#: score on this project's 2-core machine (bench/search_overhead.py, 2026-12-02), first use included;
#: 30 s on a busier 2026-12-04, against 43 s for the code before the lazy imports in the same run.
DEFAULT_TRIALS = 200
#: Trials asked per round before they are told: part of what defines the trial sequence, so it does
#: not follow the core count (the same command gives the same trials on any machine).
DEFAULT_WORKERS = 4


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a search; saved in ``command.json`` so that a resume repeats it.

    ``workers``: trials asked per round before they are told (``None``: :data:`DEFAULT_WORKERS`, with
    Ray or without; the cores only decide how many tasks score a round). ``storage``: an Optuna
    storage URL; ``None`` is the run directory's journal (:mod:`nas.search.storage`).
    ``proxies``: ``None`` scores with the default source (``predictors.accuracy.DEFAULT_SOURCE``: the
    accuracy prior's estimated top-1, corrected by ``runs/results.jsonl``); a tuple opts in to the
    zero-cost proxy percentile of those proxies (``("default",)``: params+zico+dss; ``("params",)`` is
    an instant analytic rank for quick runs). ``seed_presets``: enqueue EdgeViT-XXS/XS/S as the first trials.
    ``sampler``: :data:`SAMPLERS` (``auto``: :data:`AUTO_TPE_MAX_TRIALS`). ``mode``: :data:`MODES`.
    ``confidence``: the probability with which a budget must hold under the estimators' own
    uncertainty: a candidate is feasible when ``mean + z sigma <= budget`` with ``z`` the standard
    normal quantile of ``confidence`` (0.9: z = 1.28); ``None`` judges the mean, as before. A clean
    measurement counts as it is. Why: a phone figure extrapolated beyond its block tables carries a
    wide sigma (kernel-7 LocalAgg, early global attention; bench/RESULTS.md, phone_validation) that
    the mean alone ignores; how honest each device's sigma is, is measured there too.
    """

    device: str
    budget_ms: float | None = None
    budget_mj: float | None = None
    objectives: tuple[str, ...] = ("accuracy", "latency")
    sampler: str = "auto"
    n_trials: int = DEFAULT_TRIALS
    seed: int = 0
    workers: int | None = None
    ray: bool = True
    ray_address: str | None = None
    storage: str | None = None
    study_name: str | None = None
    run_dir: str | None = None
    measure_top_k: int = 0
    proxies: tuple[str, ...] | None = None
    dataset: str = "imagenet-1k"
    seed_presets: bool = True
    population_size: int | None = None
    predictor_root: str = "runs/predictors"
    store: str | None = None
    mode: str = "front"
    confidence: float | None = None

    @property
    def z(self) -> float:
        """Standard deviations added to a predicted latency or energy before the budget check
        (0 without ``confidence``)."""
        if self.confidence is None:
            return 0.0
        return NormalDist().inv_cdf(self.confidence)

    @property
    def effective_sampler(self) -> str:
        """The sampler ``auto`` stands for at this trial count (:data:`AUTO_TPE_MAX_TRIALS`)."""
        if self.sampler != "auto":
            return self.sampler
        return "tpe" if self.n_trials <= AUTO_TPE_MAX_TRIALS else "nsga2"

    def validate(self) -> "SearchConfig":
        """Raise :class:`ConfigError` (or ``ProfileError`` for an unknown device) naming the bad field."""
        from device_farm import get_profile

        get_profile(self.device)
        for name in ("budget_ms", "budget_mj"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(name, v, "must be a number > 0")
        objs = tuple(self.objectives)
        bad = [o for o in objs if o not in OBJECTIVES]
        if bad or len(set(objs)) != len(objs) or "accuracy" not in objs or "latency" not in objs:
            raise ConfigError("objectives", ",".join(objs), "allowed: accuracy,latency or accuracy,latency,energy")
        if self.mode not in MODES:
            raise ConfigError("mode", self.mode, "allowed: " + ", ".join(MODES))
        if self.mode == "budget" and self.budget_ms is None and self.budget_mj is None:
            raise ConfigError("mode", self.mode, "needs a budget (budget_ms or budget_mj); 'front' searches without one")
        c = self.confidence
        if c is not None and not (isinstance(c, (int, float)) and 0.5 <= c < 1):
            raise ConfigError("confidence", c, "must be a probability in [0.5, 1), e.g. 0.9 (or none: the mean)")
        if self.sampler not in SAMPLERS:
            raise ConfigError("sampler", self.sampler, "allowed: " + ", ".join(SAMPLERS))
        for name, lo in (("n_trials", 1), ("measure_top_k", 0), ("seed", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or v < lo:
                raise ConfigError(name, v, f"must be an integer >= {lo}")
        for name in ("workers", "population_size"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < (1 if name == "workers" else 2)):
                raise ConfigError(name, v, f"must be an integer >= {1 if name == 'workers' else 2}")
        if self.storage:
            from .storage import check_url

            check_url(self.storage)
        if self.ray_address and not self.ray:
            raise ConfigError("ray_address", self.ray_address, "needs Ray scoring (ray=True)")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["objectives"] = list(self.objectives)
        d["proxies"] = list(self.proxies) if self.proxies is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SearchConfig":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["objectives"] = tuple(d.get("objectives", ("accuracy", "latency")))
        if d.get("proxies") is not None:
            d["proxies"] = tuple(d["proxies"])
        d.setdefault("mode", "front")  # runs saved before modes existed optimised the whole front
        return cls(**d)


def new_run_id(config: SearchConfig, now: datetime | None = None) -> str:
    """``<device>-<budget>ms-<UTC time>``, e.g. ``s21-30ms-20261125-101500``."""
    now = now or datetime.now(timezone.utc)
    budget = f"-{config.budget_ms:g}ms" if config.budget_ms else ""
    energy = f"-{config.budget_mj:g}mJ" if config.budget_mj else ""
    return f"{config.device}{budget}{energy}-{now:%Y%m%d-%H%M%S}"

