"""Closed-form parameters and MACs, per half-block, per stage and in total.

All numbers are sums over :func:`search_space.graph.operators`; nothing here builds a model, so a
search can cost tens of thousands of candidates per second.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from .config import EdgeViTConfig
from .graph import Op, operators

__all__ = ["StageCost", "Cost", "cost", "block_costs"]


@dataclass(frozen=True)
class StageCost:
    index: int
    side: int
    width: int
    blocks: tuple[str, ...]
    heads: int | None
    sr_ratio: int | None
    attention_tokens: int | None  # tokens Q, K and V come from, (side / r)^2; None without attention
    params: int
    macs: int


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int
    stages: tuple[StageCost, ...]
    head_params: int
    head_macs: int
    macs_by_kind: tuple[tuple[str, int], ...]

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def mparams(self) -> float:
        return self.params / 1e6


def block_costs(cfg: EdgeViTConfig) -> dict[str, tuple[int, int]]:
    """``{half-block name: (params, macs)}`` in execution order, e.g. ``stages.2.blocks.0.self_attn``."""
    out: dict[str, tuple[int, int]] = {}
    for op in operators(cfg):
        p, m = out.get(op.block, (0, 0))
        out[op.block] = (p + op.params, m + op.macs)
    return out


@lru_cache(maxsize=4096)
def cost(cfg: EdgeViTConfig) -> Cost:
    """Analytic cost of ``cfg`` (cached: configurations are frozen and hashable)."""
    ops: list[Op] = operators(cfg)
    per_stage = [[0, 0] for _ in cfg.stages]
    head = [0, 0]
    by_kind: Counter[str] = Counter()
    for op in ops:
        acc = head if op.stage is None else per_stage[op.stage]
        acc[0] += op.params
        acc[1] += op.macs
        by_kind[op.kind] += op.macs
    stages = []
    for i, st in enumerate(cfg.stages):
        side = cfg.feature_side(i)
        tokens = (side // st.sr_ratio) ** 2 if st.has_attention else None
        stages.append(StageCost(i, side, st.width, st.blocks, st.heads, st.sr_ratio, tokens, *per_stage[i]))
    return Cost(
        params=sum(p for p, _ in per_stage) + head[0],
        macs=sum(m for _, m in per_stage) + head[1],
        stages=tuple(stages),
        head_params=head[0],
        head_macs=head[1],
        macs_by_kind=tuple(sorted(by_kind.items(), key=lambda kv: -kv[1])),
    )
