"""What a search produces: its distinct candidates, progress events and the result."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from statistics import NormalDist
from typing import Any, Sequence

import numpy as np

from search_space import EdgeViTConfig

from .config import SearchConfig

__all__ = ["Candidate", "SearchProgress", "SearchResult", "jsonable", "make_candidate"]


@dataclass
class Candidate:
    """One distinct architecture the search scored (the first trial that proposed it)."""

    arch_id: str
    trial: int
    cfg: EdgeViTConfig
    score: float
    score_std: float
    latency_ms: float
    latency_std_ms: float
    energy_mj: float | None
    energy_std_mj: float | None
    params: int
    macs: int
    n_trials: int = 1
    preset: str | None = None
    feasible: bool = True
    violation: float = 0.0
    pareto: bool = False
    chosen: bool = False
    measured_ms: float | None = None
    measured_status: str | None = None
    latency_refit_ms: float | None = None

    @property
    def effective_latency_ms(self) -> float:
        """Measured latency where a clean measurement exists, else the (refitted) prediction."""
        if self.latency_known:
            return self.measured_ms
        return self.latency_refit_ms if self.latency_refit_ms is not None else self.latency_ms

    @property
    def latency_known(self) -> bool:
        """A clean measurement stands for the latency: no model uncertainty left to allow for."""
        return self.measured_ms is not None and self.measured_status == "ok"

    def latency_bound_ms(self, z: float = 0.0) -> float:
        """The latency a budget is checked against: the effective latency plus ``z`` of the model's
        sigma (none for a clean measurement)."""
        return self.effective_latency_ms + (0.0 if self.latency_known else z * self.latency_std_ms)

    def p_within(self, budget_ms: float) -> float:
        """Probability that the latency is within ``budget_ms`` under the model's normal error
        (1 or 0 for a clean measurement)."""
        if self.latency_known or not self.latency_std_ms > 0:
            return float(self.effective_latency_ms <= budget_ms)
        return NormalDist(self.effective_latency_ms, self.latency_std_ms).cdf(budget_ms)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "cfg"}
        d["config"] = self.cfg.to_dict()
        return {k: jsonable(v) for k, v in d.items()}


def jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (np.floating, np.integer)):
        return jsonable(v.item())
    return v


@dataclass
class SearchProgress:
    """What a progress bar shows; ``phase`` is ``models``, ``search``, ``measure`` or ``outputs``."""

    phase: str
    done: int = 0
    total: int = 0
    unique: int = 0
    feasible: int = 0
    best: tuple[str, float, float] | None = None  # (arch_id, score, latency ms) of the best feasible so far
    message: str = ""


@dataclass
class SearchResult:
    run_dir: Path
    config: SearchConfig
    candidates: list[Candidate]
    pareto: list[Candidate]
    best: Candidate | None
    fastest: Candidate | None
    presets: dict[str, Candidate]
    calibration: str
    accuracy: str
    accuracy_unit: str
    energy: str
    n_trials: int
    measured: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: where the accuracy score was validated (``predictors.accuracy.domain.Domain``); candidates
    #: outside it are flagged in the tables and the report
    accuracy_domain: Any = None

    @property
    def feasible(self) -> list[Candidate]:
        return [c for c in self.candidates if c.feasible]


def make_candidate(aid: str, number: int, c: EdgeViTConfig, r: dict[str, Any], cons: Sequence[float],
               preset: str | None = None) -> Candidate:
    energy = r.get("energy_mj")
    known = energy is not None and math.isfinite(energy)
    return Candidate(aid, number, c, r["score"], r["score_std"], r["latency_ms"], r["latency_std_ms"],
                     energy if known else None, r.get("energy_std_mj") if known else None, r["params"], r["macs"],
                     preset=preset, feasible=all(x <= 0 for x in cons))

