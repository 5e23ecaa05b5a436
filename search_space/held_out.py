"""Candidates drawn unlike the search space's uniform draws, to check predictors on data they never saw.

Predictors are trained on :meth:`SearchSpace.sample_random` draws: every block kind chosen
independently, a head dimension, MLP ratio, sampling ratio and kernel per stage. A figure measured
only on more such draws says little about the networks a user will actually ask about, which look
like the released EdgeViTs. Two sets of a different distribution:

- :func:`official_like`: networks as the official constructor builds them (saic-fi/edgevit,
  ``src/edgevit.py``, as reproduced in :mod:`.presets`): one head dimension for all stages, heads
  growing stage by stage, MLP ratio 4, sampling ratios (4, 2, 2, 1), LGL blocks where r > 1 and
  global blocks where r = 1, LocalAgg kernel 5, at 160-256 px.
- :func:`extremes`: the corners of the default space in width and depth (all narrowest and
  shallowest, all widest and deepest, wide and shallow, narrow and deep) at its smallest and largest
  resolution.
"""
from __future__ import annotations

import numpy as np

from .config import NUM_STAGES, EdgeViTConfig, StageConfig
from .space import DEFAULT_SPACE, SearchSpace

__all__ = ["OFFICIAL_RATIOS", "HELD_OUT_SEED", "official_like", "extremes", "held_out_set"]

#: Sampling ratio per stage in every released EdgeViT (src/edgevit.py: sr_ratios=[4, 2, 2, 1]).
OFFICIAL_RATIOS = (4, 2, 2, 1)
_HEAD_DIMS = (24, 32, 36, 48, 64)
#: Heads per stage the constructor-like draws choose from (the released models use 1, 2, 4-5, 8).
_HEADS = ((1, 2), (2, 3), (3, 4, 5, 6), (6, 8, 10))
_DEPTHS = ((1, 2), (1, 2, 3), (2, 3, 4, 5, 6), (1, 2, 3))
_RESOLUTIONS = (160, 192, 224, 256)
#: Seed of the held-out constructor-like networks every predictor is judged on (fixed: figures
#: measured on another set are not comparable).
HELD_OUT_SEED = 2026


def _stage(width: int, depth: int, head_dim: int, r: int) -> StageConfig:
    return StageConfig(width=width, blocks=("lgl" if r > 1 else "global",) * depth, mlp_ratio=4, head_dim=head_dim,
                       sr_ratio=r, kernel_size=5)


def official_like(n: int, seed: int = 0) -> list[EdgeViTConfig]:
    """``n`` distinct constructor-like networks (module docstring), seeded."""
    rng = np.random.default_rng(seed)
    out: dict[str, EdgeViTConfig] = {}
    while len(out) < n:
        hd = int(rng.choice(_HEAD_DIMS))
        heads = [int(rng.choice(h)) for h in _HEADS]
        depths = [int(rng.choice(d)) for d in _DEPTHS]
        stages = tuple(_stage(hd * h, d, hd, r) for h, d, r in zip(heads, depths, OFFICIAL_RATIOS))
        cfg = EdgeViTConfig(stages=stages, resolution=int(rng.choice(_RESOLUTIONS)), name="official_like")
        out.setdefault(cfg.arch_id, cfg)
    return list(out.values())


def extremes(space: SearchSpace = DEFAULT_SPACE) -> list[EdgeViTConfig]:
    """The width/depth corners of ``space`` at its smallest and largest resolution, official-style stages."""
    hd = 32
    narrow = [max(space.heads[i][0], 1) * hd for i in range(NUM_STAGES)]
    wide = [space.heads[i][1] * hd for i in range(NUM_STAGES)]
    shallow = [space.depths[i][0] for i in range(NUM_STAGES)]
    deep = [space.depths[i][1] for i in range(NUM_STAGES)]
    out = []
    for res in (min(space.resolutions), max(space.resolutions)):
        for name, widths, depths in (("narrow_shallow", narrow, shallow), ("wide_deep", wide, deep),
                                     ("wide_shallow", wide, shallow), ("narrow_deep", narrow, deep)):
            stages = tuple(_stage(w, d, hd, r) for w, d, r in zip(widths, depths, OFFICIAL_RATIOS))
            out.append(EdgeViTConfig(stages=stages, resolution=res, name=f"{name}_{res}"))
    return out


def held_out_set(n: int = 40) -> list[EdgeViTConfig]:
    """What latency predictors are judged on and never trained on: ``n`` constructor-like networks
    (seed :data:`HELD_OUT_SEED`), EdgeViT-XXS, XS and S, and the width/depth extremes."""
    from .presets import PRESETS

    out: dict[str, EdgeViTConfig] = {}
    for c in official_like(n, HELD_OUT_SEED) + [PRESETS[k] for k in ("edgevit_xxs", "edgevit_xs", "edgevit_s")] + extremes():
        out.setdefault(c.arch_id, c)
    return list(out.values())
