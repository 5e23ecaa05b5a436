"""How proxy scores are computed for an EdgeViT candidate, and the fixed population they are placed in.

The proxies are computed at batch 8 on an input side scaled from the candidate's own resolution by
128/224 (the nearest side its sampling ratios allow, clamped to [96, 160]): the public validation ran
at 32 px (NAS-Bench-201) and 64 px (ViT-Bench-101), so a reduced side is what was validated, and it
keeps the default score near or under 1 s per candidate on one CPU thread (``bench/proxy_cost.py``)
while still letting resolution matter.

The reference population is :func:`search_space.reference_set` (EdgeViT-XXS, XS, S and 64 seeded
random candidates): a fixed population makes the score of a candidate independent of which other
candidates a search happened to see, which a rank within the batch would not be.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

from search_space import EdgeViTConfig, cost, reference_set

from .proxy_names import DEFAULT_PROXIES

__all__ = ["ANALYTIC_PROXIES", "REFERENCE_SIZE", "ProxySettings", "proxy_input_side", "raw_scores",
           "reference_configs", "transform"]

#: Proxies computed in closed form from :func:`search_space.cost` (no torch, microseconds): used by
#: fast searches and benchmarks with ``proxies=("params",)``.
ANALYTIC_PROXIES: tuple[str, ...] = ("params", "macs")
#: Random candidates in the reference population (plus the three presets).
REFERENCE_SIZE = 64


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


def transform(name: str, value: float) -> float:
    """Proxies that are counts (params, MACs) compare on a log scale; the others are already logs
    or sums of logs (synflow, zico) or used as they are."""
    if name in ANALYTIC_PROXIES:
        return math.log(value) if value > 0 else float("nan")
    return float(value)


def reference_configs(n: int = REFERENCE_SIZE) -> list[EdgeViTConfig]:
    """The reference population: the three presets and ``n`` seeded random candidates."""
    return reference_set(n + 3)
